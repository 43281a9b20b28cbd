//! Import and export round trips: import of a busybox rootfs tarball; save → load into an
//! empty store gives the same image IDs and tags; OCI layout export → load likewise; a
//! legacy docker-archive (`<id>/layer.tar`, `<hex>.json`) loads with the config's ID.

mod common;

use std::fs;
use std::io::Write;

use berth_image::archive::{self, ImportOptions};
use berth_image::{Digest, ImageStore, Reference};

fn store(dir: &std::path::Path) -> ImageStore {
    ImageStore::open(dir).unwrap()
}

#[test]
fn import_save_load_export_round_trip() {
    if !common::require(
        common::is_root(),
        "archive round trip",
        "needs root to unpack layers (chown, mknod)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(tarball) = common::busybox_tarball(tmp.path()) else {
        common::require(
            false,
            "archive round trip",
            "tests/make-busybox-rootfs.sh failed (no busybox-static?)",
        );
        return;
    };
    let a = store(&tmp.path().join("a"));
    let r: Reference = "busybox:latest".parse().unwrap();
    let opts = ImportOptions {
        source: "rootfs.tar".into(),
        ..Default::default()
    };
    let img = archive::import(&a, fs::File::open(&tarball).unwrap(), Some(&r), &opts).unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.repo_tags, vec![r.clone()]);
    // the layer is unpacked: busybox and its applet links are there
    let top = a
        .snapshotter()
        .upper_dir(&img.top_snapshot().unwrap())
        .unwrap();
    assert!(top.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(top.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    assert!(img.size > 1_000_000, "size {}", img.size);
    // resolve by name, full ID, short ID
    assert_eq!(a.resolve("busybox").unwrap().id, img.id);
    assert_eq!(a.resolve(img.id.as_str()).unwrap().id, img.id);
    assert_eq!(a.resolve(img.id.short()).unwrap().id, img.id);
    assert_eq!(a.resolve(&img.id.hex()[..4]).unwrap().id, img.id);
    assert!(a.resolve("nosuch").is_err());

    // a second, two-layer image with a whiteout, tagged twice
    let l1 = common::layer(&[
        ("etc/", None),
        ("etc/motd", Some(b"hello")),
        ("keep", Some(b"k")),
    ]);
    let l2 = common::RawTar::new()
        .file(".wh.keep", b"")
        .file("new", b"n")
        .finish();
    let img2 = common::make_image(&a, &[l1, l2], "localhost:5000/two:v1");
    a.tag(&img2, &"two:latest".parse().unwrap()).unwrap();

    // save → load into an empty store
    let saved = archive::save(
        &a,
        &[
            "busybox".into(),
            "localhost:5000/two:v1".into(),
            "two".into(),
        ],
        Vec::new(),
    )
    .unwrap();
    let b = store(&tmp.path().join("b"));
    let loaded = archive::load(&b, &saved[..]).unwrap();
    let mut ids: Vec<Digest> = loaded.iter().map(|l| l.id.clone()).collect();
    ids.sort();
    let mut want = vec![img.id.clone(), img2.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(b.resolve("busybox:latest").unwrap().id, img.id);
    assert_eq!(b.resolve("localhost:5000/two:v1").unwrap().id, img2.id);
    assert_eq!(b.resolve("two").unwrap().id, img2.id);
    assert_eq!(
        b.resolve("busybox").unwrap().manifest_digest,
        img.manifest_digest
    );
    // the whiteout survived
    let b2 = b.resolve("two").unwrap();
    let top = b
        .snapshotter()
        .upper_dir(&b2.top_snapshot().unwrap())
        .unwrap();
    assert!(fs::symlink_metadata(top.join("keep"))
        .unwrap()
        .file_type()
        .is_char_device_like());

    // OCI layout export → load
    let layout = tmp.path().join("layout");
    archive::export_oci_layout(&a, &["busybox:latest".into()], &layout).unwrap();
    assert!(layout.join("oci-layout").is_file() && layout.join("index.json").is_file());
    let c = store(&tmp.path().join("c"));
    let loaded = archive::load_oci_dir(&c, &layout).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, img.id);
    assert_eq!(c.resolve("busybox").unwrap().id, img.id);

    // remove and gc: everything goes
    let acts = b.remove("two:latest", false).unwrap();
    assert_eq!(acts.len(), 1, "{acts:?}"); // untag only: another tag remains
    let acts = b.remove("localhost:5000/two:v1", false).unwrap();
    assert!(
        acts.iter()
            .any(|a| matches!(a, berth_image::store::RemoveAction::Deleted(_))),
        "{acts:?}"
    );
    assert!(b.resolve(img2.id.as_str()).is_err());
    assert!(!b.content().has(&img2.id));
    assert_eq!(b.list().unwrap().len(), 1);
}

trait CharDev {
    fn is_char_device_like(&self) -> bool;
}
impl CharDev for fs::FileType {
    fn is_char_device_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_char_device(self)
    }
}

#[test]
fn legacy_docker_archive_loads() {
    if !common::require(
        common::is_root(),
        "legacy archive",
        "needs root to unpack layers",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layer = common::layer(&[("hello.txt", Some(b"hi there"))]);
    let diff_id = Digest::of(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": ["/hello"]}, "container_config": {"Cmd": null}, "docker_version": "19.03",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "ADD hello.txt /"}]
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_id = Digest::of(&config_bytes);
    let layer_dir = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mj = serde_json::json!([{"Config": format!("{}.json", config_id.hex()), "RepoTags": ["legacy:1"],
        "Layers": [format!("{layer_dir}/layer.tar")]}]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&format!("{layer_dir}/VERSION"), b"1.0");
    add(&format!("{layer_dir}/json"), b"{}");
    add(&format!("{layer_dir}/layer.tar"), &layer);
    add(&format!("{}.json", config_id.hex()), &config_bytes);
    add("manifest.json", &serde_json::to_vec(&mj).unwrap());
    add("repositories", br#"{"legacy":{"1":"0123"}}"#);
    let bytes = b.into_inner().unwrap();
    // and gzip-compressed, as `docker save | gzip` gives
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let gz = gz.finish().unwrap();
    let s = store(&tmp.path().join("s"));
    let loaded = archive::load(&s, &gz[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, config_id);
    let img = s.resolve("legacy:1").unwrap();
    assert_eq!(img.id, config_id);
    assert_eq!(img.config.extra["docker_version"], "19.03");
    let top = s
        .snapshotter()
        .upper_dir(&img.top_snapshot().unwrap())
        .unwrap();
    assert_eq!(fs::read(top.join("hello.txt")).unwrap(), b"hi there");
}

#[test]
fn corrupt_blob_in_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let d = Digest::of(b"real");
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), &b"fake"[..])
        .unwrap();
    let bytes = b.into_inner().unwrap();
    let s = store(&tmp.path().join("s"));
    let err = archive::load(&s, &bytes[..]).unwrap_err().to_string();
    assert!(err.contains(d.as_str()), "{err}");
    let err = archive::load(&s, &RawTarEmpty::bytes()[..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neither manifest.json nor index.json"),
        "{err}"
    );
}

struct RawTarEmpty;
impl RawTarEmpty {
    fn bytes() -> Vec<u8> {
        tar::Builder::new(Vec::new()).into_inner().unwrap()
    }
}

/// What `docker save` of Docker 25+ writes: an OCI layout (uncompressed layer tars under
/// blobs/, an OCI manifest, index.json with the image name) plus manifest.json whose Layers
/// point into blobs/, and LayerSources / repositories that berth ignores.
#[test]
fn docker25_style_archive_loads_with_its_manifest() {
    if !common::require(
        common::is_root(),
        "docker25 archive",
        "needs root to unpack layers",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let l1 = common::layer(&[("etc/", None), ("etc/issue", Some(b"berth"))]);
    let l2 = common::RawTar::new()
        .file("etc/.wh.issue", b"")
        .file("new", b"n")
        .finish();
    let (d1, d2) = (Digest::of(&l1), Digest::of(&l2));
    let config = serde_json::json!({"architecture": berth_image::Platform::host().architecture, "os": "linux",
        "created": "2024-05-01T00:00:00Z", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [d1, d2]}});
    let cbytes = serde_json::to_vec(&config).unwrap();
    let cd = Digest::of(&cbytes);
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": berth_image::manifest::OCI_MANIFEST,
        "config": {"mediaType": berth_image::manifest::OCI_CONFIG, "digest": cd, "size": cbytes.len()},
        "layers": [{"mediaType": berth_image::manifest::OCI_LAYER_TAR, "digest": d1, "size": l1.len()},
                   {"mediaType": berth_image::manifest::OCI_LAYER_TAR, "digest": d2, "size": l2.len()}]});
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = Digest::of(&mbytes);
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": berth_image::manifest::OCI_INDEX,
        "manifests": [{"mediaType": berth_image::manifest::OCI_MANIFEST, "digest": md, "size": mbytes.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/d25:latest", "org.opencontainers.image.ref.name": "latest"}}]});
    let mj = serde_json::json!([{"Config": format!("blobs/sha256/{}", cd.hex()), "RepoTags": ["d25:latest"],
        "Layers": [format!("blobs/sha256/{}", d1.hex()), format!("blobs/sha256/{}", d2.hex())],
        "LayerSources": {}}]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    for (d, data) in [
        (&d1, &l1[..]),
        (&d2, &l2[..]),
        (&cd, &cbytes[..]),
        (&md, &mbytes[..]),
    ] {
        add(format!("blobs/sha256/{}", d.hex()), data);
    }
    add("index.json".into(), &serde_json::to_vec(&index).unwrap());
    add("manifest.json".into(), &serde_json::to_vec(&mj).unwrap());
    add("oci-layout".into(), br#"{"imageLayoutVersion": "1.0.0"}"#);
    add("repositories".into(), br#"{"d25":{"latest":"x"}}"#);
    let bytes = b.into_inner().unwrap();
    let s = store(&tmp.path().join("s"));
    let loaded = archive::load(&s, &bytes[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    let img = s.resolve("d25").unwrap();
    assert_eq!(img.id, cd);
    assert_eq!(img.manifest_digest, md, "docker's own manifest is kept");
    let top = s
        .snapshotter()
        .upper_dir(&img.top_snapshot().unwrap())
        .unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &fs::symlink_metadata(top.join("etc/issue"))
            .unwrap()
            .file_type()
    ));
}
