//! Snapshots, the union file system: each image layer unpacked once into
//! `<snapshots>/<n>/fs`, keyed by its chain ID and shared by every image that has it; a
//! container's writable snapshot is a new upper + work directory over the image's chain.
//! Snapshotters return mounts as data ([`Mount`]); [`mount`] performs them.

use crate::db::Cached;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use crate::db::{now, Db};
use crate::error::{Error, Result};

/// One mount to perform, as data (like containerd's `mount.Mount`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// `overlay` or `bind`.
    pub fstype: String,
    pub source: String,
    /// Mount options; for overlay `lowerdir=` lists the layers top-first.
    pub options: Vec<String>,
}

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Writable, from `prepare`.
    Active,
    /// Read-only, from `view`.
    View,
    /// Read-only and immutable, from `commit`; can be a parent.
    Committed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
    fn parse(s: &str) -> Kind {
        match s {
            "active" => Kind::Active,
            "view" => Kind::View,
            _ => Kind::Committed,
        }
    }
}

/// What is known about a snapshot.
#[derive(Debug, Clone)]
pub struct Info {
    pub key: String,
    pub parent: Option<String>,
    pub kind: Kind,
    /// Directory number under the snapshots root.
    pub id: i64,
    pub created: String,
}

/// Disk usage of a snapshot's own layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

/// Snapshot management, containerd's interface: it never mounts anything itself.
pub trait Snapshotter {
    /// A writable snapshot over `parent` (a committed key); returns the mounts for it.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// A read-only view of `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// The mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Turns active snapshot `key` into committed snapshot `name`.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Removes a snapshot that has no children.
    fn remove(&self, key: &str) -> Result<()>;
    /// What is known about `key`.
    fn stat(&self, key: &str) -> Result<Info>;
    /// Disk usage of the snapshot's own layer.
    fn usage(&self, key: &str) -> Result<Usage>;
    /// Every snapshot.
    fn list(&self) -> Result<Vec<Info>>;
}

/// The overlayfs snapshotter.
#[derive(Clone)]
pub struct OverlaySnapshotter {
    root: PathBuf,
    db: Db,
    spares: std::sync::Arc<std::sync::Mutex<Option<SpareSource>>>,
}

/// Where a new active snapshot may take a spare directory from (see
/// [`OverlaySnapshotter::set_spare_source`]).
pub type SpareSource = Box<dyn Fn() -> Option<PathBuf> + Send + Sync>;

impl OverlaySnapshotter {
    /// Snapshots under `root`, metadata in `db`.
    pub fn new(root: impl AsRef<Path>, db: Db) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        crate::store::ensure_private_dir(&root, crate::store::PRIVATE_DIR_MODE)?;
        let snaps = OverlaySnapshotter {
            root,
            db,
            spares: Default::default(),
        };
        snaps.fix_modes()?;
        Ok(snaps)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A source of spare directories for new active snapshots: directories under the root
    /// holding an empty `fs` (root-owned, 0755, no extended attributes) and a `work`, left by
    /// removed containers (the engine's trash makes them). A new container's snapshot is
    /// then a rename instead of three new directories, which on a journal-less ext4 cost
    /// a scan past every recently deleted inode each.
    pub fn set_spare_source(&self, source: SpareSource) {
        *self.spares.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// A spare renamed to `dir` (which does not exist), if one could be.
    fn take_spare(&self, dir: &Path) -> bool {
        let spare = match &*self.spares.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(source) => source(),
            None => None,
        };
        let Some(spare) = spare else {
            return false;
        };
        match fs::rename(&spare, dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(spare = %spare.display(), error = %e, "a spare snapshot directory could not be used");
                let _ = fs::remove_dir_all(&spare);
                false
            }
        }
    }

    /// Makes every snapshot directory 0700 (stores made before the modes were set had 0755).
    /// Overlay mounts are made by root, which needs no permission bits on the lower dirs.
    fn fix_modes(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let rd = fs::read_dir(&self.root).map_err(|e| Error::io("list", &self.root, e))?;
        for ent in rd.flatten() {
            let p = ent.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() && md.permissions().mode() & 0o7777 != crate::store::PRIVATE_DIR_MODE {
                fs::set_permissions(
                    &p,
                    fs::Permissions::from_mode(crate::store::PRIVATE_DIR_MODE),
                )
                .map_err(|e| Error::io("set the mode of", &p, e))?;
            }
        }
        Ok(())
    }

    fn dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// The directory of the snapshot with row id `id`.
    pub(crate) fn dir_of(&self, id: i64) -> PathBuf {
        self.dir(id)
    }

    /// The directory holding the files of snapshot `key` (the upper directory of an active
    /// one). Used to unpack layers straight into it and to diff a container's changes.
    pub fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir(self.stat(key)?.id).join("fs"))
    }

    /// The fs directories of `key` and its ancestors, top first.
    pub fn chain_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut cur = Some(key.to_string());
        while let Some(k) = cur {
            let info = self.stat(&k)?;
            out.push(self.dir(info.id).join("fs"));
            cur = info.parent;
        }
        Ok(out)
    }

    /// Whether a snapshot with this key exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let conn = self.db.lock();
        let n: i64 = conn
            .row_c(
                "SELECT COUNT(*) FROM snapshots WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .map_err(Error::db("look up snapshot"))?;
        Ok(n > 0)
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Info> {
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("begin"))?;
        let exists: Option<i64> = tx
            .row_c("SELECT id FROM snapshots WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(Error::db("look up snapshot"))?;
        if exists.is_some() {
            return Err(Error::SnapshotExists {
                key: key.to_string(),
            });
        }
        if let Some(p) = parent {
            let pk: Option<String> = tx
                .row_c("SELECT kind FROM snapshots WHERE key = ?1", [p], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(Error::db("look up parent snapshot"))?;
            match pk.as_deref() {
                None => return Err(Error::SnapshotNotFound { key: p.to_string() }),
                Some("committed") => {}
                Some(_) => {
                    return Err(Error::SnapshotState {
                        key: p.to_string(),
                        reason: "parent is not committed".into(),
                    })
                }
            }
        }
        let created = now();
        tx.exec_c(
            "INSERT INTO snapshots (key, parent, kind, created) VALUES (?1, ?2, ?3, ?4)",
            params![key, parent, kind.as_str(), created],
        )
        .map_err(Error::db("insert snapshot"))?;
        let id = tx.last_insert_rowid();
        let dir = self.dir(id);
        // a directory left by a crash before its row was committed would be stale
        let _ = fs::remove_dir_all(&dir);
        let reused = kind == Kind::Active && self.take_spare(&dir);
        // the layer's own directory is private (see ImageStore::open); fs/ inside keeps the
        // mode the layer gives its root
        crate::store::ensure_private_dir(&dir, crate::store::PRIVATE_DIR_MODE)?;
        let mk = |p: PathBuf| {
            fs::create_dir_all(&p).map_err(|e| Error::io("create snapshot directory", p, e))
        };
        if !reused {
            mk(dir.join("fs"))?;
            if kind == Kind::Active {
                mk(dir.join("work"))?;
            }
        }
        tx.commit().map_err(Error::db("commit"))?;
        tracing::debug!(key, id, ?kind, "snapshot created");
        Ok(Info {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            kind,
            id,
            created,
        })
    }

    fn mounts_for(&self, info: &Info) -> Result<Vec<Mount>> {
        let dir = self.dir(info.id);
        let lowers = match &info.parent {
            Some(p) => self.chain_dirs(p)?,
            None => Vec::new(),
        };
        let s = |p: &Path| p.to_string_lossy().into_owned();
        match info.kind {
            Kind::Active if lowers.is_empty() => Ok(vec![Mount {
                fstype: "bind".into(),
                source: s(&dir.join("fs")),
                options: vec!["rbind".into(), "rw".into()],
            }]),
            Kind::Active => Ok(vec![Mount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!(
                        "lowerdir={}",
                        lowers.iter().map(|p| s(p)).collect::<Vec<_>>().join(":")
                    ),
                    format!("upperdir={}", s(&dir.join("fs"))),
                    format!("workdir={}", s(&dir.join("work"))),
                    // a renamed directory must be copied up whole, not recorded as a
                    // redirect xattr: the upper directory is turned into a layer by reading
                    // it alone (diff.rs), which a redirect (or metacopy, which needs it)
                    // would break. Some kernels enable redirect_dir by default.
                    "redirect_dir=off".into(),
                ],
            }]),
            Kind::View if lowers.len() <= 1 => Ok(vec![Mount {
                fstype: "bind".into(),
                source: s(lowers.first().unwrap_or(&dir.join("fs"))),
                options: vec!["rbind".into(), "ro".into()],
            }]),
            Kind::View => Ok(vec![Mount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!(
                    "lowerdir={}",
                    lowers.iter().map(|p| s(p)).collect::<Vec<_>>().join(":")
                )],
            }]),
            Kind::Committed => Err(Error::SnapshotState {
                key: info.key.clone(),
                reason: "a committed snapshot has no mounts; view or prepare over it".into(),
            }),
        }
    }

    /// Commits active snapshot `key` as `name` with parent key `parent` (which need not be
    /// committed yet: layers are unpacked in parallel and each commits when done; an image is
    /// registered only once its whole chain exists) and its unpacked size.
    pub(crate) fn commit_as(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
        size: u64,
    ) -> Result<()> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active || info.parent.is_some() {
            return Err(Error::SnapshotState {
                key: key.to_string(),
                reason: "only a parentless active snapshot can be committed onto a parent".into(),
            });
        }
        self.mark_committed(name, key, info.id, Some((parent, size)))
    }

    /// Turn active snapshot `key` into committed `name` in one transaction (a taken name is
    /// refused), setting its parent and size when given; leases on it follow it. Its work
    /// directory is no longer needed.
    fn mark_committed(
        &self,
        name: &str,
        key: &str,
        id: i64,
        parent_size: Option<(Option<&str>, u64)>,
    ) -> Result<()> {
        {
            let mut conn = self.db.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(Error::db("begin"))?;
            let taken: i64 = tx
                .row_c(
                    "SELECT COUNT(*) FROM snapshots WHERE key = ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(Error::db("look up snapshot"))?;
            if taken > 0 {
                return Err(Error::SnapshotExists {
                    key: name.to_string(),
                });
            }
            match parent_size {
                Some((parent, size)) => tx.exec_c(
                    "UPDATE snapshots SET key = ?1, kind = 'committed', parent = ?2, size = ?3 WHERE key = ?4",
                    params![name, parent, size as i64, key],
                ),
                None => tx.exec_c(
                    "UPDATE snapshots SET key = ?1, kind = 'committed' WHERE key = ?2",
                    params![name, key],
                ),
            }
            .map_err(Error::db("commit snapshot"))?;
            tx.exec_c(
                "UPDATE leases SET snapshot_key = ?1 WHERE snapshot_key = ?2",
                params![name, key],
            )
            .map_err(Error::db("move leases"))?;
            tx.commit().map_err(Error::db("commit"))?;
        }
        let work = self.dir(id).join("work");
        if let Err(e) = fs::remove_dir_all(&work) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %work.display(), error = %e, "could not remove work directory");
            }
        }
        Ok(())
    }

    /// Records the unpacked size of a committed layer (known from extraction, so no walk).
    pub fn set_size(&self, key: &str, size: u64) -> Result<()> {
        let conn = self.db.lock();
        conn.exec_c(
            "UPDATE snapshots SET size = ?1 WHERE key = ?2",
            params![size as i64, key],
        )
        .map_err(Error::db("update snapshot size"))?;
        Ok(())
    }

    /// The recorded size of a committed layer.
    pub fn recorded_size(&self, key: &str) -> Result<u64> {
        let conn = self.db.lock();
        let n: Option<i64> = conn
            .row_c("SELECT size FROM snapshots WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(Error::db("look up snapshot"))?;
        n.map(|n| n as u64).ok_or_else(|| Error::SnapshotNotFound {
            key: key.to_string(),
        })
    }

    /// Holds `key` (and so its ancestors) against garbage collection for `owner` (a
    /// container ID).
    pub fn add_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.stat(key)?;
        let conn = self.db.lock();
        conn.exec_c(
            "INSERT OR IGNORE INTO leases (snapshot_key, owner, created) VALUES (?1, ?2, ?3)",
            params![key, owner, now()],
        )
        .map_err(Error::db("add lease"))?;
        Ok(())
    }

    /// Drops `owner`'s hold on `key`.
    pub fn remove_lease(&self, key: &str, owner: &str) -> Result<()> {
        let conn = self.db.lock();
        conn.exec_c(
            "DELETE FROM leases WHERE snapshot_key = ?1 AND owner = ?2",
            params![key, owner],
        )
        .map_err(Error::db("remove lease"))?;
        Ok(())
    }

    /// Removes an active snapshot that nothing uses (a failed extraction): its directory
    /// first, to give the space back before the database has to write (a full disk is a
    /// common reason for the failure), then its row. A crash in between leaves a row without a
    /// directory, which `remove` then takes away as usual.
    pub fn discard_active(&self, key: &str) -> Result<()> {
        let info = self.stat(key)?;
        let dir = self.dir(info.id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove snapshot directory", dir, e)),
        }
        self.remove(key)
    }

    /// Snapshot keys that leases hold.
    pub fn leased(&self) -> Result<Vec<String>> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare("SELECT DISTINCT snapshot_key FROM leases")
            .map_err(Error::db("list leases"))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(Error::db("list leases"))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::db("list leases"))
    }

    /// Removes snapshot directories that no row describes (left by a crash, or by a
    /// remover that died between deleting the row and the directory). A directory whose id is
    /// above the highest id committed is a snapshot being created (its row not yet
    /// committed) and is left alone.
    pub fn remove_orphan_dirs(&self) -> Result<usize> {
        let (ids, max_id) = {
            let mut conn = self.db.lock();
            let tx = conn.transaction().map_err(Error::db("begin"))?;
            let ids: std::collections::HashSet<i64> = {
                let mut st = tx
                    .prepare("SELECT id FROM snapshots")
                    .map_err(Error::db("list snapshots"))?;
                let rows = st
                    .query_map([], |r| r.get::<_, i64>(0))
                    .map_err(Error::db("list snapshots"))?;
                rows.collect::<std::result::Result<_, _>>()
                    .map_err(Error::db("list snapshots"))?
            };
            let max_id: i64 = tx
                .row_c(
                    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'snapshots'), 0)",
                    [],
                    |r| r.get(0),
                )
                .map_err(Error::db("read snapshot sequence"))?;
            (ids, max_id)
        };
        let mut n = 0;
        let rd = fs::read_dir(&self.root).map_err(|e| Error::io("list", &self.root, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name();
            if let Some(id) = name.to_str().and_then(|s| s.parse::<i64>().ok()) {
                if id <= max_id && !ids.contains(&id) {
                    let p = ent.path();
                    match fs::remove_dir_all(&p) {
                        Ok(()) => n += 1,
                        // another remover got there first
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("remove orphan snapshot directory", &p, e)),
                    }
                }
            }
        }
        Ok(n)
    }

    /// Removes `key`'s row (refused while it has children) and returns its directory, which
    /// the caller deletes: now (`remove`) or later, off a request's path. Until then it is an
    /// orphan directory, which `remove_orphan_dirs` also deletes after a crash.
    pub fn forget(&self, key: &str) -> Result<PathBuf> {
        let info = self.stat(key)?;
        {
            let mut conn = self.db.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(Error::db("begin"))?;
            let children: i64 = tx
                .row_c(
                    "SELECT COUNT(*) FROM snapshots WHERE parent = ?1",
                    [key],
                    |r| r.get(0),
                )
                .map_err(Error::db("count children"))?;
            if children > 0 {
                return Err(Error::SnapshotState {
                    key: key.to_string(),
                    reason: format!("has {children} child snapshot(s)"),
                });
            }
            tx.exec_c("DELETE FROM snapshots WHERE key = ?1", [key])
                .map_err(Error::db("delete snapshot"))?;
            tx.exec_c("DELETE FROM leases WHERE snapshot_key = ?1", [key])
                .map_err(Error::db("delete leases"))?;
            tx.commit().map_err(Error::db("commit"))?;
        }
        // the row is gone first: a crash before the directory is deleted leaves an orphan
        // directory, which remove_orphan_dirs cleans, never a row pointing at nothing
        Ok(self.dir(info.id))
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let info = self.create(key, parent, Kind::Active)?;
        self.mounts_for(&info)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let info = self.create(key, parent, Kind::View)?;
        self.mounts_for(&info)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.stat(key)?;
        self.mounts_for(&info)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active {
            return Err(Error::SnapshotState {
                key: key.to_string(),
                reason: "only an active snapshot can be committed".into(),
            });
        }
        self.mark_committed(name, key, info.id, None)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let dir = self.forget(key)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove snapshot directory", dir, e)),
        }
    }

    fn stat(&self, key: &str) -> Result<Info> {
        let conn = self.db.lock();
        conn.row_c(
            "SELECT id, key, parent, kind, created FROM snapshots WHERE key = ?1",
            [key],
            |r| {
                Ok(Info {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    parent: r.get(2)?,
                    kind: Kind::parse(&r.get::<_, String>(3)?),
                    created: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(Error::db("look up snapshot"))?
        .ok_or_else(|| Error::SnapshotNotFound {
            key: key.to_string(),
        })
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let dir = self.upper_dir(key)?;
        let mut u = Usage::default();
        let mut seen = std::collections::HashSet::new();
        for ent in walkdir::WalkDir::new(&dir).follow_links(false) {
            let ent = ent.map_err(|e| Error::io("walk", &dir, e.into()))?;
            let md = ent
                .metadata()
                .map_err(|e| Error::io("stat", ent.path(), e.into()))?;
            use std::os::unix::fs::MetadataExt;
            if seen.insert((md.dev(), md.ino())) {
                u.inodes += 1;
                u.size += md.blocks() * 512;
            }
        }
        Ok(u)
    }

    fn list(&self) -> Result<Vec<Info>> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare("SELECT id, key, parent, kind, created FROM snapshots ORDER BY id")
            .map_err(Error::db("list snapshots"))?;
        let rows = st
            .query_map([], |r| {
                Ok(Info {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    parent: r.get(2)?,
                    kind: Kind::parse(&r.get::<_, String>(3)?),
                    created: r.get(4)?,
                })
            })
            .map_err(Error::db("list snapshots"))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::db("list snapshots"))
    }
}

/// Performs `mounts` at `target` (in order; normally there is one).
///
/// Many layers: the classic `mount(2)` data page is 4096 bytes, which ~100 absolute lowerdir
/// paths overflow. berth uses the new mount API, passing each layer with its own
/// `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", path)` call (Linux 6.8+), so there is no length
/// limit and no chdir (chdir is process-wide, so unusable in a threaded daemon). On older
/// kernels it falls back to `mount(2)`, shortening the paths by naming their common parent
/// through `/proc/self/fd/<fd>` (a few characters per layer instead of the full path).
pub fn mount(mounts: &[Mount], target: &Path) -> Result<()> {
    mount_with(mounts, target, MountMethod::Auto)
}

/// How [`mount_with`] mounts overlays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMethod {
    /// The new mount API with `lowerdir+`, falling back to `mount(2)` if the kernel lacks it.
    Auto,
    /// Only `mount(2)` (with `/proc/self/fd` shortening for long layer lists): tests of the
    /// fallback path.
    Classic,
}

/// [`mount`] with a chosen method.
pub fn mount_with(mounts: &[Mount], target: &Path, method: MountMethod) -> Result<()> {
    for m in mounts {
        match m.fstype.as_str() {
            "bind" => mount_bind(m, target)?,
            "overlay" if method == MountMethod::Classic => mount_overlay_classic(m, target)?,
            "overlay" => mount_overlay(m, target)?,
            other => {
                return Err(Error::Mount {
                    target: target.to_path_buf(),
                    reason: format!("unsupported mount type {other:?}"),
                })
            }
        }
    }
    Ok(())
}

/// Unmounts `target` (lazily if busy is not wanted; here a plain unmount, with detach as the
/// fallback so a busy mount does not leak).
pub fn unmount(target: &Path) -> Result<()> {
    use rustix::mount::{unmount, UnmountFlags};
    match unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            unmount(target, UnmountFlags::DETACH).map_err(|e| Error::Mount {
                target: target.to_path_buf(),
                reason: format!("unmount: {e}"),
            })
        }
        Err(e) => Err(Error::Mount {
            target: target.to_path_buf(),
            reason: format!("unmount: {e}"),
        }),
    }
}

fn mount_bind(m: &Mount, target: &Path) -> Result<()> {
    use rustix::mount::{mount_bind_recursive, mount_remount, MountFlags};
    let err = |what: &str, e: rustix::io::Errno| Error::Mount {
        target: target.to_path_buf(),
        reason: format!("{what} {}: {e}", m.source),
    };
    mount_bind_recursive(m.source.as_str(), target).map_err(|e| err("bind", e))?;
    if m.options.iter().any(|o| o == "ro") {
        mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(|e| err("remount read-only", e))?;
    }
    Ok(())
}

fn split_overlay_options(m: &Mount) -> (Vec<String>, Vec<String>) {
    let mut lowers = Vec::new();
    let mut rest = Vec::new();
    for o in &m.options {
        match o.strip_prefix("lowerdir=") {
            Some(l) => lowers.extend(l.split(':').filter(|s| !s.is_empty()).map(str::to_string)),
            None => rest.push(o.clone()),
        }
    }
    (lowers, rest)
}

fn mount_overlay(m: &Mount, target: &Path) -> Result<()> {
    match mount_overlay_new_api(m, target) {
        Ok(()) => Ok(()),
        Err((unsupported, reason)) if unsupported => {
            tracing::debug!(
                reason,
                "new mount API unavailable for overlay, falling back to mount(2)"
            );
            mount_overlay_classic(m, target)
        }
        Err((_, reason)) => Err(Error::Mount {
            target: target.to_path_buf(),
            reason,
        }),
    }
}

// Err((true, _)) means "this kernel lacks the feature": fall back.
fn mount_overlay_new_api(m: &Mount, target: &Path) -> std::result::Result<(), (bool, String)> {
    use rustix::io::Errno;
    use rustix::mount::{
        fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        (
            matches!(e, Errno::NOSYS | Errno::PERM),
            format!("fsopen: {e}"),
        )
    })?;
    // what /proc/self/mountinfo shows as the source, as with mount(2)
    fsconfig_set_string(&fs, "source", m.source.as_str())
        .map_err(|e| (false, format!("source {}: {e}", m.source)))?;
    let (lowers, rest) = split_overlay_options(m);
    for l in &lowers {
        fsconfig_set_string(&fs, "lowerdir+", l.as_str())
            .map_err(|e| (e == Errno::INVAL, format!("lowerdir+ {l}: {e}")))?;
    }
    for o in &rest {
        match o.split_once('=') {
            Some((k, v)) => {
                fsconfig_set_string(&fs, k, v).map_err(|e| (false, format!("option {o}: {e}")))?
            }
            None if o == "rw" => {}
            None => fsconfig_set_flag(&fs, o.as_str())
                .map_err(|e| (false, format!("option {o}: {e}")))?,
        }
    }
    // Before Linux 6.5 overlay parses options the legacy way: `lowerdir+` is accepted as a
    // string and refused only here, with EINVAL (Debian 12's 6.1): fall back to mount(2).
    fsconfig_create(&fs).map_err(|e| (e == Errno::INVAL, format!("create overlay: {e}")))?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| (false, format!("fsmount: {e}")))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| (false, format!("move_mount: {e}")))?;
    Ok(())
}

fn mount_overlay_classic(m: &Mount, target: &Path) -> Result<()> {
    use rustix::mount::{mount, MountFlags};
    let (lowers, rest) = split_overlay_options(m);
    let mut data = build_data(&lowers, &rest);
    // keeps the fd (and so the /proc/self/fd path) alive until mount returns
    let mut _keep = None;
    if data.len() >= 4096 {
        let common = common_parent(&lowers).ok_or_else(|| Error::Mount {
            target: target.to_path_buf(),
            reason: format!("overlay options are {} bytes (limit 4095) and the layers share no parent directory", data.len()),
        })?;
        let dirfd = fs::File::open(&common).map_err(|e| Error::io("open", &common, e))?;
        let short = format!("/proc/self/fd/{}", dirfd.as_raw_fd());
        let prefix = common.to_string_lossy().into_owned();
        let lowers: Vec<String> = lowers
            .iter()
            .map(|l| format!("{short}{}", &l[prefix.len()..]))
            .collect();
        data = build_data(&lowers, &rest);
        _keep = Some(dirfd);
        if data.len() >= 4096 {
            return Err(Error::Mount {
                target: target.to_path_buf(),
                reason: format!(
                    "{} layers do not fit in the 4096-byte mount data page even shortened",
                    lowers.len()
                ),
            });
        }
    }
    let data = std::ffi::CString::new(data).map_err(|_| Error::Mount {
        target: target.to_path_buf(),
        reason: "mount options contain a NUL byte".into(),
    })?;
    mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| Error::Mount {
        target: target.to_path_buf(),
        reason: format!("mount overlay: {e}"),
    })
}

fn build_data(lowers: &[String], rest: &[String]) -> String {
    let mut opts = vec![format!("lowerdir={}", lowers.join(":"))];
    opts.extend(rest.iter().cloned());
    opts.join(",")
}

fn common_parent(paths: &[String]) -> Option<PathBuf> {
    let first = Path::new(paths.first()?);
    let mut common = first.parent()?.to_path_buf();
    loop {
        if paths.iter().all(|p| Path::new(p).starts_with(&common)) {
            return Some(common);
        }
        common = common.parent()?.to_path_buf();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_commit_view() {
        let dir = tempfile::tempdir().unwrap();
        let sn = OverlaySnapshotter::new(dir.path(), Db::open_in_memory().unwrap()).unwrap();
        let m = sn.prepare("x1", None).unwrap();
        assert_eq!(m[0].fstype, "bind");
        sn.commit("L1", "x1").unwrap();
        sn.prepare("x2", Some("L1")).unwrap();
        sn.commit("L2", "x2").unwrap();
        let m = sn.prepare("c1", Some("L2")).unwrap();
        assert_eq!(m[0].fstype, "overlay");
        let lower = m[0]
            .options
            .iter()
            .find(|o| o.starts_with("lowerdir="))
            .unwrap();
        let l2 = sn.upper_dir("L2").unwrap();
        let l1 = sn.upper_dir("L1").unwrap();
        assert_eq!(
            lower,
            &format!("lowerdir={}:{}", l2.display(), l1.display())
        );
        assert!(matches!(
            sn.prepare("c1", Some("L2")),
            Err(Error::SnapshotExists { .. })
        ));
        assert!(matches!(
            sn.prepare("c2", Some("c1")),
            Err(Error::SnapshotState { .. })
        ));
        assert!(matches!(sn.remove("L2"), Err(Error::SnapshotState { .. })));
        let v = sn.view("v", Some("L1")).unwrap();
        assert_eq!(v[0].options, vec!["rbind".to_string(), "ro".to_string()]);
        sn.remove("c1").unwrap();
        sn.remove("v").unwrap();
        sn.remove("L2").unwrap();
        assert_eq!(sn.list().unwrap().len(), 1);
        assert!(
            common_parent(&["/a/b/1/fs".into(), "/a/b/2/fs".into()]) == Some(PathBuf::from("/a/b"))
        );
    }
}
