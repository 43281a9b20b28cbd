//! The image store end to end (needs root to unpack layers): registering from blobs and from
//! an index (platform choice), concurrent registration of one image by two store handles,
//! diff ID verification, tags and their history, rmi rules (multiple repositories,
//! containers), commit of a container's changes, and gc with leases.

mod common;

use std::fs;
use std::time::Duration;

use berth_image::manifest::{self, Descriptor, Index, Platform};
use berth_image::{Digest, Error, ImageStore, Reference, Snapshotter};
use common::RawTar;

fn root_or_skip(test: &str) -> bool {
    common::require(
        common::is_root(),
        test,
        "needs root to unpack layers (chown, mknod)",
    )
}

#[test]
fn register_from_index_picks_platform_and_verifies() {
    if !root_or_skip("register_from_index") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let img = common::make_image(&store, &[common::layer(&[("a", Some(b"1"))])], "base:1");
    // an index with this platform's manifest and a foreign one whose blobs are absent
    let msize = store.content().size(&img.manifest_digest).unwrap();
    let mut here = Descriptor::new(&img.manifest_media_type, img.manifest_digest.clone(), msize);
    here.platform = Some(Platform::host());
    let mut foreign = Descriptor::new(manifest::OCI_MANIFEST, Digest::of(b"absent"), 10);
    foreign.platform = Some(Platform::new("linux", "s390x", None));
    let idx = Index {
        schema_version: 2,
        media_type: Some(manifest::OCI_INDEX.into()),
        manifests: vec![foreign, here],
        annotations: None,
        extra: Default::default(),
    };
    let (idx_digest, mt) = store
        .store_manifest(&serde_json::to_vec(&idx).unwrap(), None)
        .unwrap();
    assert_eq!(mt, manifest::OCI_INDEX);
    let r: Reference = "localhost:5000/multi:v1".parse().unwrap();
    let got = store.register(&r, &idx_digest).unwrap();
    assert_eq!(got.id, img.id);
    assert_eq!(got.manifest_digest, img.manifest_digest);
    // pulled by the index digest: that is the repo digest
    assert_eq!(got.repo_digests[0].digest.as_ref(), Some(&idx_digest));
    assert_eq!(
        store
            .resolve(&format!("localhost:5000/multi@{idx_digest}"))
            .unwrap()
            .id,
        img.id
    );
    // an s390x store refuses it, naming what is available
    let s390 = ImageStore::open(tmp.path())
        .unwrap()
        .with_platform(Platform::new("linux", "s390x", None));
    let err = s390.register(&r, &idx_digest).unwrap_err();
    assert!(matches!(err, Error::BlobNotFound { .. }), "{err}");
    let arm = ImageStore::open(tmp.path())
        .unwrap()
        .with_platform(Platform::new("linux", "riscv64", None));
    let err = arm.register(&r, &idx_digest).unwrap_err().to_string();
    assert!(
        err.contains("linux/riscv64") && err.contains("linux/s390x"),
        "{err}"
    );
    // (un)pushed manifest bytes are what a push sends
    let (bytes, mt) = store.manifest_bytes(&got).unwrap();
    assert_eq!(Digest::of(&bytes), got.manifest_digest);
    assert_eq!(mt, manifest::OCI_MANIFEST);
}

#[test]
fn wrong_diff_id_is_refused_and_leaves_nothing() {
    if !root_or_skip("wrong_diff_id") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let layer = berth_image::diff::tar_to_blob(
        store.content(),
        &common::layer(&[("x", Some(b"x"))])[..],
        "l",
    )
    .unwrap();
    let mut bad = layer.clone();
    bad.diff_id = Digest::of(b"not the layer");
    let p = Platform::host();
    let cfg = berth_image::ImageConfig {
        created: None,
        author: None,
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: None,
        config: None,
        rootfs: manifest::RootFs {
            typ: "layers".into(),
            diff_ids: vec![bad.diff_id.clone()],
        },
        history: None,
        extra: Default::default(),
    };
    let err = store.create_image(&cfg, &[bad], None).unwrap_err();
    assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err}");
    assert!(err.to_string().contains(layer.diff_id.as_str()), "{err}");
    assert!(
        store.snapshotter().list().unwrap().is_empty(),
        "the failed layer must not stay"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn concurrent_register_unpacks_once() {
    if !root_or_skip("concurrent_register") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| common::layer(&[(&format!("f{i}"), Some(&vec![b'x'; 100_000][..]))]))
        .collect();
    let img = common::make_image(&store, &layers, "conc:1");
    // forget the image and its snapshots, keep the blobs
    for c in img.chain_ids.iter().rev() {
        store
            .db()
            .lock()
            .execute("DELETE FROM image_layers WHERE chain_id = ?1", [c.as_str()])
            .unwrap();
    }
    store.db().lock().execute("DELETE FROM images", []).unwrap();
    for c in img.chain_ids.iter().rev() {
        store.snapshotter().remove(c.as_str()).unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..3 {
            let root = tmp.path().to_path_buf();
            let md = img.manifest_digest.clone();
            s.spawn(move || {
                let st = ImageStore::open(&root).unwrap();
                let r: Reference = format!("conc:t{t}").parse().unwrap();
                st.register(&r, &md).unwrap();
            });
        }
    });
    let snaps = store.snapshotter().list().unwrap();
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    let img2 = store.resolve("conc:t0").unwrap();
    assert_eq!(img2.id, img.id);
    assert_eq!(store.layer_refcount(&img.chain_ids[0]).unwrap(), 1);
}

#[test]
fn tags_rmi_commit_gc() {
    if !root_or_skip("tags_rmi_commit_gc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let img = common::make_image(
        &store,
        &[common::layer(&[("etc/", None), ("etc/os", Some(b"base"))])],
        "app:1",
    );
    store.tag(&img, &"other/app:2".parse().unwrap()).unwrap();
    // by ID with tags in two repositories: refused without force
    let err = store.remove(img.id.as_str(), false).unwrap_err();
    assert_eq!(err.kind(), berth_image::ErrorKind::Conflict, "{err}");
    // a container over the image holds it
    store.prepare_container("ctr1", &img).unwrap();
    let up = store.snapshotter().upper_dir("ctr1").unwrap();
    fs::write(up.join("added"), b"by the container").unwrap();
    let err = store.remove("app:1", false);
    assert!(err.is_ok(), "untagging one of two tags is fine: {err:?}");
    let err = store.remove("other/app:2", false).unwrap_err();
    assert!(err.to_string().contains("ctr1"), "{err}");
    // commit the container's change as a new image on top
    let committed = store
        .commit_container(
            "ctr1",
            Some(&img),
            None,
            "berth commit ctr1",
            Some("test"),
            Some(&"app:committed".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(committed.layers.len(), 2);
    assert_eq!(committed.chain_ids[0], img.chain_ids[0]);
    let top = store
        .snapshotter()
        .upper_dir(&committed.top_snapshot().unwrap())
        .unwrap();
    assert_eq!(fs::read(top.join("added")).unwrap(), b"by the container");
    assert_eq!(store.layer_refcount(&img.chain_ids[0]).unwrap(), 2);
    // history of tags
    let h = store.tag_history(Some(&"app:1".parse().unwrap())).unwrap();
    let actions: Vec<&str> = h.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(actions, vec!["tag", "untag"]);
    // force removal works while the container exists, its layers stay for it
    store.remove("other/app:2", true).unwrap();
    assert!(store
        .snapshotter()
        .exists(img.chain_ids[0].as_str())
        .unwrap());
    // once the container is gone and the committed image too, gc leaves nothing
    store.remove_container_snapshot("ctr1").unwrap();
    store.remove("app:committed", false).unwrap();
    let report = store.gc_with_grace(Duration::ZERO).unwrap();
    let _ = report;
    assert!(store.snapshotter().list().unwrap().is_empty());
    assert!(
        store.content().list().unwrap().is_empty(),
        "{:?}",
        store.content().list().unwrap()
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn missing_layer_blob_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let layer = RawTar::new().file("x", b"x").finish();
    let diff_id = Digest::of(&layer);
    let cfg = serde_json::json!({"architecture": Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    let cfg_digest = store
        .content()
        .write_bytes(&serde_json::to_vec(&cfg).unwrap())
        .unwrap();
    let absent = Digest::of(b"absent layer");
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::DOCKER_MANIFEST,
        "config": {"mediaType": manifest::DOCKER_CONFIG, "digest": cfg_digest, "size": 10},
        "layers": [{"mediaType": manifest::DOCKER_LAYER_GZIP, "digest": absent, "size": 10}]});
    let (md, _) = store
        .store_manifest(&serde_json::to_vec(&m).unwrap(), None)
        .unwrap();
    let err = store.register(&"x:1".parse().unwrap(), &md).unwrap_err();
    assert!(err.to_string().contains(absent.as_str()), "{err}");
    assert_eq!(err.kind(), berth_image::ErrorKind::NotFound);
}

#[test]
fn layers_unpacked_ahead_are_reused_by_register() {
    if !root_or_skip("unpack_ahead") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let l1 = berth_image::diff::tar_to_blob(
        store.content(),
        &common::layer(&[("a", Some(b"1"))])[..],
        "l1",
    )
    .unwrap();
    let l2 = berth_image::diff::tar_to_blob(
        store.content(),
        &common::layer(&[("b", Some(b"2"))])[..],
        "l2",
    )
    .unwrap();
    let chains = manifest::chain_ids(&[l1.diff_id.clone(), l2.diff_id.clone()]);
    // the top layer first, as a download that finished early would
    store
        .unpack_layer_blob(&l2.digest, &l2.diff_id, &chains[1], Some(&chains[0]))
        .unwrap();
    store
        .unpack_layer_blob(&l1.digest, &l1.diff_id, &chains[0], None)
        .unwrap();
    let before: Vec<i64> = store
        .snapshotter()
        .list()
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    let p = Platform::host();
    let cfg = berth_image::ImageConfig {
        created: None,
        author: None,
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: None,
        config: None,
        rootfs: manifest::RootFs {
            typ: "layers".into(),
            diff_ids: vec![l1.diff_id.clone(), l2.diff_id.clone()],
        },
        history: None,
        extra: Default::default(),
    };
    let img = store
        .create_image(&cfg, &[l1, l2], Some(&"ahead:1".parse().unwrap()))
        .unwrap();
    let after: Vec<i64> = store
        .snapshotter()
        .list()
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(before, after, "register must reuse the snapshots");
    let dirs = store
        .snapshotter()
        .chain_dirs(&img.top_snapshot().unwrap())
        .unwrap();
    assert!(dirs[0].join("b").exists() && dirs[1].join("a").exists());
}

#[test]
fn blob_leases_hold_against_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let kept = store.content().write_bytes(b"build cache").unwrap();
    let loose = store.content().write_bytes(b"nobody's").unwrap();
    store.add_blob_ref(&kept, "build-1").unwrap();
    let r = store.gc_with_grace(Duration::ZERO).unwrap();
    assert_eq!(r.blobs, vec![loose.clone()]);
    assert!(store.content().has(&kept));
    store.remove_blob_refs("build-1", None).unwrap();
    store.gc_with_grace(Duration::ZERO).unwrap();
    assert!(!store.content().has(&kept));
    // the default grace keeps fresh blobs (a pull may be about to register them)
    let fresh = store.content().write_bytes(b"fresh").unwrap();
    store.gc().unwrap();
    assert!(store.content().has(&fresh));
}

/// `commit_container` makes the layer from the container's upper directory in one pass:
/// the committed layer holds the change (a new file, a whiteout for a deleted one) and is
/// what the layer blob unpacks to.
#[test]
fn commit_container_layer_matches_its_blob() {
    if !root_or_skip("commit_container_layer_matches_its_blob") {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let img = common::make_image(
        &store,
        &[common::layer(&[("a", Some(b"1")), ("b", Some(b"2"))])],
        "base:1",
    );
    store.prepare_container("c1", &img).unwrap();
    let upper = store.snapshotter().upper_dir("c1").unwrap();
    fs::write(upper.join("added"), b"new").unwrap();
    // overlayfs records the deletion of b as a 0/0 character device
    nix::sys::stat::mknod(
        &upper.join("b"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o000),
        0,
    )
    .unwrap();
    let committed = store
        .commit_container("c1", Some(&img), None, "commit", None, None)
        .unwrap();
    let top = store
        .snapshotter()
        .upper_dir(&committed.top_snapshot().unwrap())
        .unwrap();
    assert_eq!(fs::read(top.join("added")).unwrap(), b"new");
    let wh = fs::symlink_metadata(top.join("b")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!top.join("a").exists());
    // the blob unpacks to the same tree, and its diff ID is the config's
    let out = tmp.path().join("from-blob");
    fs::create_dir(&out).unwrap();
    let blob = committed.layers.last().unwrap();
    let diff_id = committed.diff_ids.last().unwrap();
    berth_image::extract::extract_layer(
        store.content().open_blob(blob).unwrap(),
        &out,
        "check",
        Some(diff_id),
    )
    .unwrap();
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&top), names(&out));
    // no temporary commit snapshot is left
    let keys: Vec<String> = store
        .snapshotter()
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert!(!keys.iter().any(|k| k.starts_with("commit-")), "{keys:?}");
    store.remove_container_snapshot("c1").unwrap();
}
