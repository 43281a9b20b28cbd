//! The `Snapshotter` conformance suite: one generic set of checks (containerd's snapshotter
//! contract: prepare/view/commit/remove/mounts/stat/usage/list) that every backend runs.
//! Today the backend is `OverlaySnapshotter`; mounting the returned mounts is covered by
//! union.rs.

use std::fs;

use berth_image::db::Db;
use berth_image::snapshot::{Kind, Snapshotter};
use berth_image::{Error, OverlaySnapshotter};

/// Writes a file into snapshot `key` the way an unpacker would (through the backend's own
/// notion of where a snapshot's files live).
type WriteFile<'a> = &'a dyn Fn(&str, &str, &[u8]);

fn conformance<S: Snapshotter>(s: &S, write: WriteFile<'_>) {
    // prepare with no parent, fill, commit
    let m = s.prepare("active-1", None).unwrap();
    assert!(!m.is_empty());
    write("active-1", "a", b"1");
    assert_eq!(s.stat("active-1").unwrap().kind, Kind::Active);
    s.commit("layer-1", "active-1").unwrap();
    assert!(matches!(
        s.stat("active-1"),
        Err(Error::SnapshotNotFound { .. })
    ));
    let info = s.stat("layer-1").unwrap();
    assert_eq!((info.kind, info.parent.as_deref()), (Kind::Committed, None));
    assert!(s.usage("layer-1").unwrap().size > 0 || s.usage("layer-1").unwrap().inodes > 0);
    // a committed snapshot has no mounts; an active one over it does
    assert!(matches!(
        s.mounts("layer-1"),
        Err(Error::SnapshotState { .. })
    ));
    s.prepare("active-2", Some("layer-1")).unwrap();
    assert_eq!(
        s.stat("active-2").unwrap().parent.as_deref(),
        Some("layer-1")
    );
    write("active-2", "b", b"2");
    s.commit("layer-2", "active-2").unwrap();
    // views and containers over the chain
    let v = s.view("view-1", Some("layer-2")).unwrap();
    assert_eq!(v, s.mounts("view-1").unwrap());
    assert!(v
        .iter()
        .all(|m| m.options.iter().any(|o| o == "ro") || m.fstype == "overlay"));
    let c = s.prepare("container-1", Some("layer-2")).unwrap();
    assert_eq!(c, s.mounts("container-1").unwrap());
    // errors: duplicate key, missing parent, parent not committed, commit of a non-active,
    // removal of a parent
    assert!(matches!(
        s.prepare("container-1", Some("layer-2")),
        Err(Error::SnapshotExists { .. })
    ));
    assert!(matches!(
        s.prepare("x", Some("nope")),
        Err(Error::SnapshotNotFound { .. })
    ));
    assert!(matches!(
        s.prepare("x", Some("container-1")),
        Err(Error::SnapshotState { .. })
    ));
    assert!(matches!(
        s.commit("y", "view-1"),
        Err(Error::SnapshotState { .. })
    ));
    assert!(matches!(
        s.commit("layer-1", "container-1"),
        Err(Error::SnapshotExists { .. })
    ));
    assert!(matches!(
        s.remove("layer-1"),
        Err(Error::SnapshotState { .. })
    ));
    // list, then remove children before parents
    let mut keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    keys.sort();
    assert_eq!(keys, vec!["container-1", "layer-1", "layer-2", "view-1"]);
    for k in ["container-1", "view-1", "layer-2", "layer-1"] {
        s.remove(k).unwrap();
    }
    assert!(s.list().unwrap().is_empty());
    assert!(matches!(
        s.remove("layer-1"),
        Err(Error::SnapshotNotFound { .. })
    ));
}

#[test]
fn overlay_snapshotter_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(
        dir.path().join("snapshots"),
        Db::open(&dir.path().join("t.db")).unwrap(),
    )
    .unwrap();
    let write = |key: &str, name: &str, data: &[u8]| {
        fs::write(sn.upper_dir(key).unwrap().join(name), data).unwrap();
    };
    conformance(&sn, &write);
    // nothing left on disk but the (empty) root
    let left: Vec<_> = fs::read_dir(sn.root()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
