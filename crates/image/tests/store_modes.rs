//! The store is not traversable by other users (issue 12, item 1): a setuid-root binary that an
//! image carries cannot be run by `nobody` straight from the store, and a store made with
//! 0755 directories by an older berth is fixed when it is opened.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::archive::{self, ImportOptions};
use berth_image::ImageStore;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// A rootfs tarball with `probe`, a copy of cat that is setuid root.
fn setuid_rootfs() -> Vec<u8> {
    let cat = fs::read("/bin/cat").expect("read /bin/cat");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(cat.len() as u64);
    h.set_mtime(1_700_000_000);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "probe", &cat[..]).expect("append");
    b.into_inner().expect("finish")
}

/// Every `probe` file under `root` (wherever the store unpacked it).
fn find_probes(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() == "probe" && e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Runs `probe /etc/shadow` as nobody; returns (success, stderr).
fn run_as_nobody(probe: &Path) -> (bool, String) {
    // runuser, not setpriv: setpriv keeps its capabilities until the execve, whose path
    // lookup then bypasses the directory modes this test is about
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(probe)
        .arg("/etc/shadow")
        .output()
        .expect("run setpriv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn setuid_probe_from_image_is_unreachable_for_nobody() {
    let test = "setuid_probe_from_image_is_unreachable_for_nobody";
    if !common::require(common::is_root(), test, "needs root (chown, setuid files)")
        || !common::require(
            Path::new("/usr/sbin/runuser").exists(),
            test,
            "needs runuser (util-linux) to run as nobody",
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // the temporary directory itself is 0700; open it up so that only the store's own modes
    // stand between nobody and the layer
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod tmp");
    let root = tmp.path().join("data");
    let store = ImageStore::open(&root).expect("open store");
    let opts = ImportOptions {
        source: "probe.tar".into(),
        ..Default::default()
    };
    archive::import(
        &store,
        &setuid_rootfs()[..],
        Some(&"probe:1".parse().expect("ref")),
        &opts,
    )
    .expect("import");
    let probes = find_probes(&root.join("snapshots"));
    assert_eq!(probes.len(), 1, "{probes:?}");
    let probe = &probes[0];
    assert_eq!(mode(probe), 0o4755, "the layer keeps its setuid bit");
    assert_eq!(mode(&root), 0o710);
    assert_eq!(mode(&root.join("snapshots")), 0o700);
    assert_eq!(mode(&root.join("content")), 0o700);
    let (ok, err) = run_as_nobody(probe);
    assert!(!ok, "nobody ran the setuid probe: {err}");
    assert!(err.contains("Permission denied"), "{err}");

    // a store made by an older berth (0755 everywhere): reopening fixes it
    drop(store);
    for d in [root.clone(), root.join("snapshots"), root.join("content")] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let layer_dir = probe
        .parent()
        .and_then(|fs_dir| fs_dir.parent())
        .expect("layer dir")
        .to_path_buf();
    fs::set_permissions(&layer_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    // proves the probe works as an exploit when the store is open, so the EACCES below is the
    // modes' doing and not the probe's
    let (ok, err) = run_as_nobody(probe);
    assert!(
        ok,
        "the probe should read /etc/shadow through an open store: {err}"
    );
    let _store = ImageStore::open(&root).expect("reopen store");
    assert_eq!(mode(&root), 0o710);
    assert_eq!(mode(&root.join("snapshots")), 0o700);
    assert_eq!(mode(&layer_dir), 0o700);
    let (ok, err) = run_as_nobody(probe);
    assert!(!ok, "nobody ran the setuid probe after reopen: {err}");
    assert!(err.contains("Permission denied"), "{err}");
}
