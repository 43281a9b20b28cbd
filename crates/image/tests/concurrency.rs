//! The store as a daemon uses it (issue 13): one `Arc<ImageStore>` shared by threads that
//! load and import images (which share a base layer), remove them, prune, and prepare and
//! remove container snapshots, all at once. No operation may fail for a reason other than the
//! documented conflicts, and afterwards every image still has every layer, blob and
//! directory it needs.

mod common;

use std::fs;
use std::sync::Arc;

use berth_image::archive::{self, ImportOptions};
use berth_image::{Digest, Error, ImageStore, Snapshotter};

const ROUNDS: usize = 30;

fn assert_send_sync<T: Send + Sync>() {}

fn config_json(diff_ids: &[Digest]) -> Vec<u8> {
    let p = berth_image::Platform::host();
    serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture,
        "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config json")
}

/// A legacy docker-archive of the shared base layer plus one layer of its own.
fn archive_with(base: &[u8], own: &[u8], tag: &str) -> Vec<u8> {
    let config = config_json(&[Digest::of(base), Digest::of(own)]);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": ["base/layer.tar", "own/layer.tar"],
    }]);
    common::RawTar::new()
        .file("base/layer.tar", base)
        .file("own/layer.tar", own)
        .file(&config_name, &config)
        .file(
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        )
        .finish()
}

/// Errors the daemon would report as conflicts or not-found, which concurrent removal makes
/// legitimate (an image removed by one thread while another names it).
fn expected_race(e: &Error) -> bool {
    matches!(e, Error::ImageInUse { .. } | Error::ImageNotFound { .. })
}

#[test]
fn loads_rmi_prune_and_container_snapshots_at_once() {
    assert_send_sync::<ImageStore>();
    if !common::require(
        common::is_root(),
        "loads_rmi_prune_and_container_snapshots_at_once",
        "needs root to unpack layers (chown, mknod)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ImageStore::open(&tmp.path().join("data")).expect("open"));
    let base = common::layer(&[
        ("bin", None),
        ("bin/sh", Some(b"#!shell".as_slice())),
        ("etc", None),
    ]);
    // the image containers run from; never removed, so its layers must survive everything
    archive::load(
        &store,
        &archive_with(&base, &common::layer(&[("keep", Some(b"keep"))]), "keep:1")[..],
    )
    .expect("load keep:1");
    let errors = std::sync::Mutex::new(Vec::<String>::new());
    let report = |what: &str, e: Error| {
        errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{what}: {e}"));
    };
    let report = &report;
    std::thread::scope(|s| {
        // loaders: images that share the base layer with keep:1 and with each other
        for t in 0..2 {
            let store = Arc::clone(&store);
            let base = base.clone();
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let own = common::layer(&[(&format!("own-{t}-{i}"), Some(b"x".as_slice()))]);
                    let tag = format!("churn{t}:{i}");
                    if let Err(e) = archive::load(&store, &archive_with(&base, &own, &tag)[..]) {
                        report("load", e);
                    }
                }
            });
        }
        // an importer: one-layer images
        {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let tar = common::layer(&[(&format!("imp-{i}"), Some(b"i".as_slice()))]);
                    let r = format!("imported:{i}").parse().expect("ref");
                    let opts = ImportOptions {
                        source: "-".into(),
                        ..Default::default()
                    };
                    match archive::import(&store, &tar[..], Some(&r), &opts) {
                        Ok(_) => {}
                        // registered, then removed by the rmi thread before import read it
                        // back to return it
                        Err(Error::ImageNotFound { .. }) => {}
                        Err(e) => report("import", e),
                    }
                }
            });
        }
        // rmi: every image but keep:1, over and over, while the loaders add them
        {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for _ in 0..ROUNDS * 2 {
                    let images = match store.list() {
                        Ok(v) => v,
                        Err(e) => {
                            report("list", e);
                            continue;
                        }
                    };
                    for img in images {
                        if img.repo_tags.iter().any(|t| t.familiar() == "keep:1") {
                            continue;
                        }
                        match store.remove(img.id.as_str(), true) {
                            Ok(_) => {}
                            Err(e) if expected_race(&e) => {}
                            Err(e) => report("rmi", e),
                        }
                    }
                }
            });
        }
        // prune: gc as `image prune` runs it
        {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for _ in 0..ROUNDS * 2 {
                    if let Err(e) = store.gc() {
                        report("gc", e);
                    }
                }
            });
        }
        // containers over keep:1
        for t in 0..2 {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for i in 0..ROUNDS * 2 {
                    let img = match store.resolve("keep:1") {
                        Ok(i) => i,
                        Err(e) => {
                            report("resolve keep:1", e);
                            continue;
                        }
                    };
                    let key = format!("ctr-{t}-{i}");
                    match store.prepare_container(&key, &img) {
                        Ok(mounts) => {
                            if mounts.is_empty() {
                                report(
                                    "prepare",
                                    Error::InvalidArgument(format!("{key}: no mounts")),
                                );
                            }
                        }
                        Err(e) => {
                            report("prepare", e);
                            continue;
                        }
                    }
                    if let Err(e) = store.remove_container_snapshot(&key) {
                        report("remove container snapshot", e);
                    }
                }
            });
        }
    });
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        errors.is_empty(),
        "{} errors:\n{}",
        errors.len(),
        errors.join("\n")
    );

    // every image left has all it needs
    let snaps = store.snapshotter();
    let images = store.list().expect("list");
    assert!(images
        .iter()
        .any(|i| i.repo_tags.iter().any(|t| t.familiar() == "keep:1")));
    for img in &images {
        for c in &img.chain_ids {
            let dir = snaps
                .upper_dir(c.as_str())
                .unwrap_or_else(|e| panic!("image {}: layer {c}: {e}", img.id));
            assert!(
                dir.is_dir(),
                "image {}: layer {c}: {} missing",
                img.id,
                dir.display()
            );
        }
        for d in img.layers.iter().chain([&img.id, &img.manifest_digest]) {
            assert!(store.content().has(d), "image {}: blob {d} missing", img.id);
        }
    }
    // no container snapshot, no registration lease left
    for info in snaps.list().expect("snapshots") {
        assert!(
            !info.key.starts_with("ctr-") && !info.key.starts_with("extract-"),
            "left behind: {}",
            info.key
        );
    }
    let leases: i64 = store
        .db()
        .lock()
        .query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0))
        .expect("count leases");
    let blob_leases: i64 = store
        .db()
        .lock()
        .query_row("SELECT COUNT(*) FROM blob_leases", [], |r| r.get(0))
        .expect("count blob leases");
    assert_eq!((leases, blob_leases), (0, 0));
    // and the keep:1 rootfs still mounts as a container's
    let keep = store.resolve("keep:1").expect("keep:1");
    store
        .prepare_container("final", &keep)
        .expect("prepare final");
    let lowers = snaps
        .chain_dirs(&keep.top_snapshot().expect("top"))
        .expect("chain");
    for l in lowers {
        assert!(fs::read_dir(&l).is_ok(), "{} unreadable", l.display());
    }
    store
        .remove_container_snapshot("final")
        .expect("remove final");
}

/// rmi and gc do not wait for an unpack in progress (they once waited for every unpack to
/// end, behind a store-wide lock), and what they do meanwhile does not break it. The layer
/// being unpacked is read from a FIFO that the test feeds only after rmi and gc returned; the
/// test opens it for writing only once the unpack has opened it for reading, so the rmi
/// really runs in the middle of the unpack. (On the old code this test never ends.)
#[test]
fn rmi_and_gc_do_not_wait_for_an_unpack() {
    if !common::require(
        common::is_root(),
        "rmi_and_gc_do_not_wait_for_an_unpack",
        "needs root to unpack layers (chown, mknod)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ImageStore::open(&tmp.path().join("data")).expect("open"));
    common::make_image(&store, &[common::layer(&[("a", Some(b"a"))])], "a:1");
    // image b, whose one layer blob is a FIFO
    let layer = common::layer(&[("b", Some(b"b"))]);
    let layer_digest = Digest::of(&layer);
    let config = config_json(std::slice::from_ref(&layer_digest));
    let config_digest = store.content().write_bytes(&config).expect("config");
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let manifest_digest = store
        .content()
        .write_bytes(&serde_json::to_vec(&m).expect("json"))
        .expect("manifest");
    let fifo = store.content().blob_path(&layer_digest);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let registering = {
        let store = Arc::clone(&store);
        let md = manifest_digest.clone();
        std::thread::spawn(move || store.register_tagged(&md, &["b:1".parse().expect("ref")]))
    };
    // returns once the unpack has opened the blob: the registration is mid-unpack
    let mut w = fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let removed = store
        .remove("a:1", false)
        .expect("rmi a:1 during the unpack");
    assert_eq!(removed.len(), 2, "{removed:?}");
    store
        .gc_with_grace(std::time::Duration::ZERO)
        .expect("gc during the unpack");
    // the registration's blobs survived the gc: it leases them
    assert!(store.content().has(&config_digest) && store.content().has(&manifest_digest));
    std::io::Write::write_all(&mut w, &layer).expect("feed the layer");
    drop(w);
    let id = registering
        .join()
        .expect("register thread")
        .expect("register b:1");
    let b = store.resolve("b:1").expect("b:1");
    assert_eq!(b.id, id);
    let dir = store
        .snapshotter()
        .upper_dir(&b.top_snapshot().expect("top"))
        .expect("layer of b");
    assert_eq!(fs::read(dir.join("b")).expect("read b"), b"b");
    assert!(store.resolve("a:1").is_err());
}
