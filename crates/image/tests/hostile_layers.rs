//! Hostile layer tarballs: each is extracted into a layer directory inside a sandbox, and
//! nothing outside the layer directory may change (the sandbox tree is compared before and
//! after), nor may anything appear at the host paths the layer aims at. Refusals must name
//! the entry.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_image::extract::extract_layer;
use common::RawTar;

/// Everything under `root` except `skip`: path → (type, mode, uid, size, mtime, content).
fn tree(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.path() != skip)
    {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let content = if md.is_file() {
            fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        let link = fs::read_link(e.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        out.insert(
            e.path().to_path_buf(),
            format!(
                "{:o} {} {} {} {} {:?} {}",
                md.mode(),
                md.uid(),
                md.size(),
                md.mtime(),
                md.nlink(),
                content,
                link
            ),
        );
    }
    out
}

struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    layer: PathBuf,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    // the layer sits two levels down, so `../..` from inside it still lands in the sandbox
    let layer = root.join("a/b/layer");
    fs::create_dir_all(&layer).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("a/outside.txt"), "victim").unwrap();
    fs::write(root.join("a/b/outside.txt"), "victim").unwrap();
    Sandbox {
        _dir: dir,
        root,
        layer,
    }
}

/// Extracts `tar` in a fresh sandbox; checks nothing outside the layer changed and the host
/// paths in `must_not_exist` were not created. Returns the result and the layer directory
/// (kept alive by the returned sandbox).
fn run(name: &str, tar: &[u8], must_not_exist: &[&str]) -> (Result<(), String>, Sandbox) {
    let sb = sandbox();
    let before = tree(&sb.root, &sb.layer);
    let res = extract_layer(tar, &sb.layer, name, None)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let after = tree(&sb.root, &sb.layer);
    assert_eq!(
        before, after,
        "{name}: the sandbox outside the layer changed"
    );
    for p in must_not_exist {
        assert!(
            fs::symlink_metadata(p).is_err(),
            "{name}: {p} was created on the host"
        );
    }
    (res, sb)
}

fn refused(name: &str, tar: &[u8], entry: &str, must_not_exist: &[&str]) {
    let (res, _sb) = run(name, tar, must_not_exist);
    let err = res.expect_err(&format!("{name}: should be refused"));
    assert!(
        err.contains(entry),
        "{name}: error should name entry {entry:?}: {err}"
    );
    eprintln!("{name}: refused: {err}");
}

fn uniq(tag: &str) -> String {
    format!("berth-hostile-{tag}-{}", std::process::id())
}

#[test]
fn path_traversal() {
    let n = uniq("trav");
    refused(
        "traversal",
        &RawTar::new().file(&format!("../../{n}"), b"x").finish(),
        &format!("../../{n}"),
        &[],
    );
    refused(
        "traversal-etc",
        &RawTar::new().file("../../../etc/x", b"x").finish(),
        "../../../etc/x",
        &["/etc/x"],
    );
    refused(
        "traversal-mid",
        &RawTar::new().file("d/../../x", b"x").finish(),
        "d/../../x",
        &[],
    );
}

#[test]
fn absolute_path_is_contained() {
    if !common::require(
        common::is_root(),
        "absolute_path_is_contained",
        "needs root to chown extracted files",
    ) {
        return;
    }
    let n = uniq("abs");
    let host = format!("/tmp/{n}");
    let (res, sb) = run(
        "absolute",
        &RawTar::new().file(&host, b"x").finish(),
        &[&host],
    );
    res.unwrap();
    assert_eq!(fs::read(sb.layer.join("tmp").join(&n)).unwrap(), b"x");
}

#[test]
fn symlink_to_root_then_write_through_it() {
    let n = uniq("symroot");
    let host = format!("/tmp/{n}");
    let tar = RawTar::new()
        .symlink("escape", "/")
        .file(&format!("escape/tmp/{n}"), b"x")
        .finish();
    if !common::require(
        common::is_root(),
        "symlink_to_root",
        "needs root to chown extracted files",
    ) {
        return;
    }
    refused("symlink-root", &tar, &format!("escape/tmp/{n}"), &[&host]);
}

#[test]
fn symlink_up_then_write_through_it() {
    if !common::require(
        common::is_root(),
        "symlink_up",
        "needs root to chown extracted files",
    ) {
        return;
    }
    let tar = RawTar::new()
        .symlink("up", "../../..")
        .file("up/planted", b"x")
        .finish();
    refused("symlink-up", &tar, "up/planted", &[]);
    // the same through a relative symlink made deeper in the tree
    let tar = RawTar::new()
        .dir("x/")
        .symlink("x/up", "../../")
        .dir("x/up/etc/")
        .file("x/up/etc/passwd", b"pwned")
        .finish();
    let (res, sb) = run("symlink-up-dir", &tar, &[]);
    assert!(res.is_err(), "writing through x/up must be refused");
    assert!(res.unwrap_err().contains("x/up/etc"));
    drop(sb);
}

#[test]
fn symlink_replaced_by_directory_does_not_chmod_target() {
    if !common::require(
        common::is_root(),
        "symlink_replaced",
        "needs root to chown extracted files",
    ) {
        return;
    }
    // a symlink to the sandbox's etc, then a directory entry of the same name with mode 0777:
    // the symlink is replaced, the target's mode is untouched
    let tar = RawTar::new()
        .symlink("e", "../../../etc")
        .dir("e/")
        .file("e/passwd", b"pwned")
        .finish();
    let (res, sb) = run("symlink-then-dir", &tar, &[]);
    res.unwrap();
    assert!(fs::symlink_metadata(sb.layer.join("e")).unwrap().is_dir());
    assert_eq!(fs::read(sb.layer.join("e/passwd")).unwrap(), b"pwned");
}

#[test]
fn hard_links_out_are_refused() {
    if !common::require(
        common::is_root(),
        "hard_links_out",
        "needs root to chown extracted files",
    ) {
        return;
    }
    refused(
        "hardlink-etc-passwd",
        &RawTar::new().hardlink("pw", "/etc/passwd").finish(),
        "pw",
        &[],
    );
    refused(
        "hardlink-dotdot",
        &RawTar::new().hardlink("o", "../outside.txt").finish(),
        "o",
        &[],
    );
    let tar = RawTar::new()
        .symlink("s", "../../../etc")
        .hardlink("pw", "s/passwd")
        .finish();
    refused("hardlink-through-symlink", &tar, "pw", &[]);
    // a legitimate hard link inside the layer works
    let (res, sb) = run(
        "hardlink-inside",
        &RawTar::new().file("f", b"data").hardlink("g", "f").finish(),
        &[],
    );
    res.unwrap();
    assert_eq!(
        fs::metadata(sb.layer.join("f")).unwrap().ino(),
        fs::metadata(sb.layer.join("g")).unwrap().ino()
    );
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    if !common::require(
        common::is_root(),
        "whiteouts_dotdot",
        "needs root for whiteout device nodes",
    ) {
        return;
    }
    refused(
        "whiteout-dotdot",
        &RawTar::new().dir("d/").file("d/.wh...", b"").finish(),
        "d/.wh...",
        &[],
    );
    refused(
        "whiteout-dot",
        &RawTar::new().file(".wh..", b"").finish(),
        ".wh..",
        &[],
    );
    // a normal whiteout is a 0:0 character device in the layer
    let (res, sb) = run(
        "whiteout",
        &RawTar::new().dir("d/").file("d/.wh.gone", b"").finish(),
        &[],
    );
    res.unwrap();
    let md = fs::symlink_metadata(sb.layer.join("d/gone")).unwrap();
    assert_eq!(md.mode() & 0o170000, 0o020000);
    assert_eq!(md.rdev(), 0);
}

#[test]
fn device_node_stays_in_layer() {
    if !common::require(common::is_root(), "device_node", "needs root (CAP_MKNOD)") {
        return;
    }
    let (res, sb) = run(
        "device",
        &RawTar::new().dir("dev/").device("dev/mem", 1, 1).finish(),
        &[],
    );
    res.unwrap();
    let md = fs::symlink_metadata(sb.layer.join("dev/mem")).unwrap();
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 1));
}

#[test]
fn oversized_names_and_headers_are_refused() {
    let long = vec![b'n'; 5000];
    let (res, _sb) = run(
        "long-name",
        &RawTar::new().long_name_file(&long, b"x").finish(),
        &[],
    );
    let err = res.unwrap_err();
    assert!(err.contains("longer than"), "{err}");
    let comp = format!("d/{}", "c".repeat(300));
    let (res, _sb) = run(
        "long-component",
        &RawTar::new().long_name_file(comp.as_bytes(), b"x").finish(),
        &[],
    );
    assert!(res.unwrap_err().contains("longer than"));
    let (res, _sb) = run("big-pax", &RawTar::new().big_pax(2 << 20).finish(), &[]);
    let err = res.unwrap_err();
    assert!(
        err.contains("extension header") && err.contains("PaxHeaders/x"),
        "{err}"
    );
}

#[test]
fn garbage_is_refused_cleanly() {
    let (res, _sb) = run(
        "garbage",
        b"this is not a tar archive at all, just text, longer than a block? no",
        &[],
    );
    // a short non-tar stream reads as an empty or broken archive, never a panic
    let _ = res;
    let mut bad = RawTar::new().file("f", b"data").finish();
    bad[148] ^= 0x55; // break the checksum
    let (res, _sb) = run("bad-checksum", &bad, &[]);
    assert!(res.is_err());
}
