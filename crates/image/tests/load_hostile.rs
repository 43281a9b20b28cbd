//! Hostile and broken input to `load` (issue 12, items 2 and 4 and the should-fix list): an
//! archive of many large JSON entries stays within a small memory bound; an OCI layout whose
//! blob is a symlink to /dev/zero or a FIFO is refused at once; `manifest.json` of `[]`, an
//! invalid tag, a layer that fails to unpack and a tar header with a wrong size are clear
//! errors; and every failed load leaves the store exactly as it was.

mod common;
#[path = "common/store_state.rs"]
mod store_state;
use store_state::state;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::archive;
use berth_image::{Digest, ImageStore};
use common::RawTar;

fn root_or_skip(test: &str) -> bool {
    common::require(
        common::is_root(),
        test,
        "needs root to unpack layers (chown, mknod)",
    )
}

/// A store with one image in it already, so "unchanged" means something.
fn seeded_store(dir: &Path) -> ImageStore {
    let store = ImageStore::open(&dir.join("data")).expect("open store");
    common::make_image(
        &store,
        &[common::layer(&[("seed", Some(b"seed"))])],
        "seed:1",
    );
    store
}

fn config_json(diff_ids: &[Digest]) -> Vec<u8> {
    let p = berth_image::Platform::host();
    serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture,
        "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/bin/sh"]},
    }))
    .expect("config json")
}

/// A legacy docker-archive: `<n>/layer.tar` per layer (plain tar; a layer's diff ID is its
/// own digest, so a broken one is given with `diff_ids`), `<config>.json`, manifest.json.
fn legacy_archive(layers: &[Vec<u8>], diff_ids: Option<Vec<Digest>>, tags: &[&str]) -> Vec<u8> {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| Digest::of(l)).collect());
    let config = config_json(&diff_ids);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut t = RawTar::new();
    let mut layer_names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{i}/layer.tar");
        t = t.file(&name, l);
        layer_names.push(name);
    }
    t = t.file(&config_name, &config);
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": layer_names,
    }]);
    t.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("manifest json"),
    )
    .finish()
}

fn load_err(store: &ImageStore, bytes: &[u8]) -> String {
    match archive::load(store, bytes) {
        Ok(l) => panic!("load succeeded: {l:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_manifest_json_says_the_archive_holds_no_images() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&tmp.path().join("data")).expect("open");
    let before = state(&store);
    let ar = RawTar::new().file("manifest.json", b"[]").finish();
    let err = load_err(&store, &ar);
    assert!(err.contains("holds no images"), "{err}");
    let ar = RawTar::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#)
        .finish();
    let err = load_err(&store, &ar);
    assert!(err.contains("holds no images"), "{err}");
    assert_eq!(state(&store), before);
}

#[test]
fn invalid_tag_registers_nothing() {
    if !root_or_skip("invalid_tag_registers_nothing") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = seeded_store(tmp.path());
    let before = state(&store);
    let ar = legacy_archive(
        &[common::layer(&[("hello", Some(b"hi"))])],
        None,
        &["Not//A:Valid::Tag"],
    );
    let err = load_err(&store, &ar);
    assert!(
        err.contains("invalid tag") && err.contains("Not//A"),
        "{err}"
    );
    assert_eq!(state(&store), before, "no <none> image, no layer, no blob");
}

#[test]
fn failed_layer_leaves_no_unpacked_layers() {
    if !root_or_skip("failed_layer_leaves_no_unpacked_layers") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = seeded_store(tmp.path());
    let before = state(&store);
    // three good layers and a last one whose content does not match its diff ID
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| common::layer(&[(&format!("f{i}"), Some(format!("{i}").as_bytes()))]))
        .collect();
    let mut diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    diff_ids[3] = Digest::of(b"something else");
    let ar = legacy_archive(&layers, Some(diff_ids), &["broken:1"]);
    let err = load_err(&store, &ar);
    assert!(err.contains("diff ID"), "{err}");
    assert_eq!(state(&store), before);
}

#[test]
fn second_image_failing_takes_the_first_out_again() {
    if !root_or_skip("second_image_failing_takes_the_first_out_again") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = seeded_store(tmp.path());
    let before = state(&store);
    let good = common::layer(&[("good", Some(b"1"))]);
    let good_cfg = config_json(&[Digest::of(&good)]);
    let bad = common::layer(&[("bad", Some(b"2"))]);
    let bad_cfg = config_json(&[Digest::of(b"not the layer")]);
    let name = |c: &[u8]| format!("{}.json", Digest::of(c).hex());
    let manifest = serde_json::json!([
        {"Config": name(&good_cfg), "RepoTags": ["good:1"], "Layers": ["g/layer.tar"]},
        {"Config": name(&bad_cfg), "RepoTags": ["bad:1"], "Layers": ["b/layer.tar"]},
    ]);
    let ar = RawTar::new()
        .file("g/layer.tar", &good)
        .file("b/layer.tar", &bad)
        .file(&name(&good_cfg), &good_cfg)
        .file(&name(&bad_cfg), &bad_cfg)
        .file(
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        )
        .finish();
    let err = load_err(&store, &ar);
    assert!(err.contains("diff ID"), "{err}");
    assert_eq!(state(&store), before, "good:1 must not stay behind");
}

#[test]
fn tar_header_with_a_wrong_size_names_the_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&tmp.path().join("data")).expect("open");
    let before = state(&store);
    let mut ar = RawTar::new()
        .file("first.json", b"{}")
        .file("victim/layer.tar", b"0123456789")
        .file("manifest.json", b"[]")
        .finish();
    // the size field of the second header (offset 124, 12 octal digits) made garbage
    let second = 512 + 512;
    ar[second + 124..second + 136].copy_from_slice(b"zz9999999999");
    // keep the checksum right so that only the size is wrong
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(&ar[second..second + 512]);
    h.set_cksum();
    ar[second..second + 512].copy_from_slice(h.as_bytes());
    let err = load_err(&store, &ar);
    assert!(err.contains("victim/layer.tar"), "{err}");
    // a size larger than what follows: the entry's data ends early
    let mut ar = RawTar::new()
        .file("victim2/layer.tar", b"0123456789")
        .finish();
    ar.truncate(512 + 512);
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(&ar[..512]);
    h.set_size(1 << 20);
    h.set_cksum();
    ar[..512].copy_from_slice(h.as_bytes());
    let err = load_err(&store, &ar);
    assert!(err.contains("victim2/layer.tar"), "{err}");
    assert_eq!(state(&store), before);
}

/// A minimal OCI layout in `dir` for one one-layer image; returns the layer's path.
fn oci_layout(dir: &Path) -> PathBuf {
    let layer = common::layer(&[("x", Some(b"x"))]);
    let cfg = config_json(&[Digest::of(&layer)]);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    let put = |b: &[u8]| {
        let d = Digest::of(b);
        fs::write(blobs.join(d.hex()), b).expect("write blob");
        d
    };
    let ld = put(&layer);
    let cd = put(&cfg);
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    });
    let mb = serde_json::to_vec(&m).expect("json");
    let md = put(&mb);
    let idx = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mb.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/layout:1"}}],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&idx).expect("json"),
    )
    .expect("write");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    blobs.join(ld.hex())
}

#[test]
fn oci_layout_blob_symlink_to_dev_zero_is_refused() {
    if !root_or_skip("oci_layout_blob_symlink_to_dev_zero_is_refused") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = seeded_store(tmp.path());
    let layout = tmp.path().join("layout");
    let layer = oci_layout(&layout);
    // the good layout loads (so the refusals below are about the blob)
    let ok = archive::load_oci_dir(&store, &layout).expect("load layout");
    assert_eq!(ok.len(), 1);
    store.remove("layout:1", true).expect("rmi");
    store.gc_with_grace(std::time::Duration::ZERO).expect("gc");
    let before = state(&store);
    fs::remove_file(&layer).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &layer).expect("symlink");
    let err = archive::load_oci_dir(&store, &layout)
        .expect_err("symlink blob loaded")
        .to_string();
    assert!(
        err.contains("symbolic link") && err.contains(&*layer.to_string_lossy()),
        "{err}"
    );
    assert_eq!(state(&store), before, "no ingest left, nothing registered");
    // a symlinked blobs/ directory is refused the same way
    let real = tmp.path().join("elsewhere");
    fs::rename(layout.join("blobs"), &real).expect("mv");
    std::os::unix::fs::symlink(&real, layout.join("blobs")).expect("symlink");
    let err = archive::load_oci_dir(&store, &layout)
        .expect_err("symlinked blobs dir loaded")
        .to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(state(&store), before);
}

#[test]
fn oci_layout_blob_fifo_is_refused_without_hanging() {
    if !root_or_skip("oci_layout_blob_fifo_is_refused_without_hanging") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = seeded_store(tmp.path());
    let layout = tmp.path().join("layout");
    let layer = oci_layout(&layout);
    let before = state(&store);
    fs::remove_file(&layer).expect("rm");
    nix::unistd::mkfifo(&layer, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let err = archive::load_oci_dir(&store, &layout)
        .expect_err("fifo blob loaded")
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
    assert_eq!(state(&store), before);
    // a blob larger than its descriptor says is not read past that size
    fs::remove_file(&layer).expect("rm");
    fs::write(&layer, vec![0u8; 1 << 20]).expect("write");
    let err = archive::load_oci_dir(&store, &layout)
        .expect_err("oversized blob loaded")
        .to_string();
    assert!(err.contains("more than the"), "{err}");
    assert_eq!(state(&store), before);
}

/// The archive that once took gigabytes: 3000 JSON entries of 1 MiB each (gzip makes it a few
/// MB). Loaded in a child process (this same test, run again by the test binary with the
/// archive and store named in its environment) whose peak RSS is read from wait4's rusage.
#[test]
fn load_of_json_bomb_stays_small() {
    if let (Ok(archive_path), Ok(store_path)) = (
        std::env::var("BERTH_TEST_LOAD_ARCHIVE"),
        std::env::var("BERTH_TEST_LOAD_STORE"),
    ) {
        // the child: load and report; the parent checks the result and the memory
        let store = ImageStore::open(Path::new(&store_path)).expect("open");
        let f = fs::File::open(&archive_path).expect("open archive");
        match archive::load(&store, std::io::BufReader::new(f)) {
            Ok(l) => println!("LOAD-RESULT: ok {l:?}"),
            Err(e) => println!("LOAD-RESULT: error {e}"),
        }
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bomb.tar.gz");
    {
        let f = fs::File::create(&path).expect("create");
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let body = vec![b' '; 1 << 20];
        for i in 0..3000 {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, format!("junk{i}.json"), &body[..])
                .expect("append");
        }
        let mut gz = b.into_inner().expect("finish tar");
        gz.flush().expect("flush");
        gz.finish().expect("finish gzip");
    }
    let data = tmp.path().join("data");
    ImageStore::open(&data).expect("open");
    // prlimit bounds the old behaviour (gigabytes) so that a regression fails here instead of
    // taking the machine's memory
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new("prlimit")
        .arg("--as=2147483648")
        .arg("--")
        .arg(exe)
        .args(["--exact", "load_of_json_bomb_stays_small", "--nocapture"])
        .env("BERTH_TEST_LOAD_ARCHIVE", &path)
        .env("BERTH_TEST_LOAD_STORE", &data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        std::io::Read::read_to_string(&mut so, &mut out).expect("read child output");
    }
    let status = child.wait().expect("wait");
    // after the wait, RUSAGE_CHILDREN holds the largest waited-for child's peak RSS: this
    // one (the test binary runs no other child at the same time in this test file's tests
    // that could be larger)
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let max_rss_kib = usage.max_rss();
    assert!(status.success(), "child: {status:?}\n{out}");
    assert!(out.contains("LOAD-RESULT:"), "{out}");
    assert!(
        out.contains("exceed") || out.contains("LOAD-RESULT: ok"),
        "the load neither failed cleanly nor succeeded: {out}"
    );
    assert!(
        max_rss_kib < 200 * 1024,
        "peak RSS {max_rss_kib} KiB (>= 200 MiB)\n{out}"
    );
    let store = ImageStore::open(&data).expect("reopen");
    assert!(state(&store).blobs.is_empty(), "junk left in the store");
    assert!(state(&store).ingest.is_empty(), "ingest left in the store");
}

/// A tmpfs mounted for one test, unmounted on drop (also when the test fails).
struct TmpfsGuard(PathBuf);

impl TmpfsGuard {
    fn mount(dir: &Path, size: &str) -> Option<TmpfsGuard> {
        fs::create_dir_all(dir).ok()?;
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .ok()?;
        Some(TmpfsGuard(dir.to_path_buf()))
    }
}

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

#[test]
fn disk_full_during_load_and_import_leaves_the_store_consistent() {
    let test = "disk_full_during_load_and_import_leaves_the_store_consistent";
    if !root_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(_mnt) = TmpfsGuard::mount(&tmp.path().join("fs"), "8m") else {
        common::require(false, test, "cannot mount a tmpfs");
        return;
    };
    let store = ImageStore::open(&tmp.path().join("fs/data")).expect("open store");
    common::make_image(
        &store,
        &[common::layer(&[("seed", Some(b"seed"))])],
        "seed:1",
    );
    let before = state(&store);
    // 16 MiB of incompressible data: the blob itself does not fit
    let big = common::layer(&[("big", Some(&random_bytes(16 << 20)))]);
    let err = load_err(
        &store,
        &legacy_archive(std::slice::from_ref(&big), None, &["big:1"]),
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(state(&store), before);
    // 5 MiB: the blob fits, its unpacked copy does not
    let mid = common::layer(&[("mid", Some(&random_bytes(5 << 20)))]);
    let err = load_err(
        &store,
        &legacy_archive(std::slice::from_ref(&mid), None, &["mid:1"]),
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(state(&store), before);
    for layer in [&big, &mid] {
        let err = archive::import(
            &store,
            &layer[..],
            Some(&"imported:1".parse().expect("ref")),
            &archive::ImportOptions {
                source: "-".into(),
                ..Default::default()
            },
        )
        .expect_err("import on a full disk")
        .to_string();
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(state(&store), before);
    }
    // and the store still works once there is room
    archive::load(
        &store,
        &legacy_archive(
            &[common::layer(&[("small", Some(b"s"))])],
            None,
            &["small:1"],
        )[..],
    )
    .expect("load after disk full");
    drop(store);
}
