//! Union semantics on real overlay mounts (needs root): a file deleted in an upper layer is
//! gone in the mount, an opaque directory hides the lower one, a write in one container's
//! mount changes neither the image layer nor another container's mount; 150 layers mount
//! (with the new mount API and with the classic mount(2) fallback); the diff of a
//! container's upper directory has the right whiteouts. Mounts are undone by guards.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use berth_image::snapshot::{self, MountMethod, Snapshotter};
use berth_image::ImageStore;
use common::RawTar;

struct MountGuard(PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = snapshot::unmount(&self.0) {
            eprintln!("cleanup: unmount {}: {e}", self.0.display());
        }
    }
}

fn can_overlay() -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|s| s.contains("overlay"))
        .unwrap_or(false)
}

fn mount_container(
    store: &ImageStore,
    key: &str,
    img: &berth_image::Image,
    at: &Path,
    method: MountMethod,
) -> MountGuard {
    let mounts = store.prepare_container(key, img).unwrap();
    fs::create_dir_all(at).unwrap();
    snapshot::mount_with(&mounts, at, method).unwrap();
    MountGuard(at.to_path_buf())
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn union_semantics() {
    if !common::require(
        common::is_root(),
        "union_semantics",
        "needs root for overlay mounts",
    ) || !common::require(can_overlay(), "union_semantics", "kernel has no overlayfs")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let lower = RawTar::new()
        .file("deleted", b"lower")
        .file("kept", b"lower")
        .dir("opaque/")
        .file("opaque/hidden", b"lower")
        .dir("merged/")
        .file("merged/old", b"lower")
        .finish();
    let upper = RawTar::new()
        .file(".wh.deleted", b"")
        .dir("opaque/")
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/visible", b"upper")
        .file("merged/new", b"upper")
        .finish();
    let img = common::make_image(&store, &[lower, upper], "union:test");

    let c1 = tmp.path().join("c1");
    let c2 = tmp.path().join("c2");
    let g1 = mount_container(&store, "c1", &img, &c1, MountMethod::Auto);
    let g2 = mount_container(&store, "c2", &img, &c2, MountMethod::Auto);
    for c in [&c1, &c2] {
        assert!(
            !c.join("deleted").exists(),
            "a whiteout hides the lower file"
        );
        assert_eq!(fs::read(c.join("kept")).unwrap(), b"lower");
        assert!(
            !c.join("opaque/hidden").exists(),
            "an opaque dir hides the lower dir's content"
        );
        assert_eq!(fs::read(c.join("opaque/visible")).unwrap(), b"upper");
        assert!(
            c.join("merged/old").exists() && c.join("merged/new").exists(),
            "a plain dir merges"
        );
    }

    // writes in c1 change neither the image layers nor c2
    fs::write(c1.join("kept"), b"changed in c1").unwrap();
    fs::write(c1.join("created"), b"c1").unwrap();
    fs::remove_file(c1.join("merged/old")).unwrap();
    fs::remove_dir_all(c1.join("opaque")).unwrap();
    fs::create_dir(c1.join("opaque")).unwrap();
    fs::write(c1.join("opaque/fresh"), b"c1").unwrap();
    assert_eq!(fs::read(c2.join("kept")).unwrap(), b"lower");
    assert!(!c2.join("created").exists());
    assert!(c2.join("merged/old").exists());
    let chains = &img.chain_ids;
    let l0 = store.snapshotter().upper_dir(chains[0].as_str()).unwrap();
    assert_eq!(fs::read(l0.join("kept")).unwrap(), b"lower");
    assert!(l0.join("merged/old").exists());

    // redirect_dir=off: renaming a lower directory is refused with EXDEV (tools then copy),
    // so the upper directory alone always describes the change
    let err = fs::rename(c2.join("merged"), c2.join("moved")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");

    // the diff of c1's upper: changed file, new file, whiteout, opaque dir
    drop(g1);
    let up = store.snapshotter().upper_dir("c1").unwrap();
    let diff = berth_image::diff::write_diff(&up, Vec::new()).unwrap();
    let names = tar_names(&diff);
    for want in [
        "kept",
        "created",
        "merged/.wh.old",
        "opaque/",
        "opaque/.wh..wh..opq",
        "opaque/fresh",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "diff lacks {want}: {names:?}"
        );
    }
    // committing the diff as a new image layer and mounting it gives c1's view
    let blob = berth_image::diff::diff_to_blob(store.content(), &up).unwrap();
    assert_eq!(blob.diff_id, berth_image::Digest::of(&diff));

    drop(g2);
    store.remove_container_snapshot("c1").unwrap();
    store.remove_container_snapshot("c2").unwrap();
}

#[test]
fn many_layers_mount() {
    if !common::require(
        common::is_root(),
        "many_layers_mount",
        "needs root for overlay mounts",
    ) || !common::require(
        can_overlay(),
        "many_layers_mount",
        "kernel has no overlayfs",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(
        &tmp.path()
            .join("a-rather-long-data-root-name-to-stress-the-mount-data-page"),
    )
    .unwrap();
    let n = 150;
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            RawTar::new()
                .file(&format!("f{i}"), format!("{i}").as_bytes())
                .finish()
        })
        .collect();
    let img = common::make_image(&store, &layers, "many:layers");
    let mounts = store
        .snapshotter()
        .prepare("probe", img.top_snapshot().as_deref())
        .unwrap();
    let opts_len: usize = mounts[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        opts_len > 4096,
        "the test must exceed the mount data page ({opts_len} bytes)"
    );
    store.snapshotter().remove("probe").unwrap();
    for (key, method) in [
        ("new-api", MountMethod::Auto),
        ("classic", MountMethod::Classic),
    ] {
        let at = tmp.path().join(key);
        let _g = mount_container(&store, key, &img, &at, method);
        for i in [0, 1, n / 2, n - 1] {
            assert_eq!(
                fs::read_to_string(at.join(format!("f{i}"))).unwrap(),
                i.to_string(),
                "{key}"
            );
        }
        assert_eq!(fs::read_dir(&at).unwrap().count(), n, "{key}");
    }
    store.remove_container_snapshot("new-api").unwrap();
    store.remove_container_snapshot("classic").unwrap();
    // nothing holds the image's layers any more: removing it collects them all
    store.remove("many:layers", false).unwrap();
    assert!(store.snapshotter().list().unwrap().is_empty());
}
