//! Directories of removed containers, deleted off the request path.
//!
//! Deleting a container's directory right after unmounting its root filesystem can wait for
//! the kernel (a directory that was a mount point, maybe still in another mount namespace
//! that is being torn down, is detached there and waits for an RCU grace period: 5–15 ms
//! here, more than the rest of `run --rm` together). So removal renames the directory out
//! of the way (`.removed-<name>`, one rename on the same file system), finishes the removal
//! the API reports, and a worker thread deletes the renamed tree. A directory left renamed
//! by a crash is deleted when the next engine opens.
//!
//! A container's own directory is recycled instead when it holds only what every container's
//! does (see [`Trash::recycle_container_dir`]): emptied files kept, it waits as a spare for
//! the next `create`, which renames it into place. On this machine's ext4 (no journal) every
//! new inode is found by scanning past the inodes deleted in the last minutes, and with a
//! container created and removed every few milliseconds that scan was a fifth of the
//! daemon's time on `run --rm` (perf, bench/RESULTS.md); a spare needs no new inode.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

const PREFIX: &str = ".removed-";
const SPARE: &str = ".spare-";
/// Spare container directories kept at most: enough for a burst of `run --rm` in a row.
const SPARES_MAX: usize = 8;
/// The files of a container's directory that a spare keeps (emptied).
const KEPT_FILES: [&str; 4] = ["hostname", "hosts", "resolv.conf", "config.json"];

/// What may become of a removed directory besides its deletion.
enum Recycle {
    /// A container's directory, whose log file has this name.
    Container(String),
    /// A container's snapshot (`fs` and `work`).
    Snapshot,
}

/// One directory for the worker: deleted, or recycled into a spare if it can be.
type Job = (PathBuf, Option<Recycle>);

pub type Spares = std::sync::Arc<Mutex<Vec<PathBuf>>>;

pub struct Trash {
    worker: OnceLock<Mutex<Sender<Job>>>,
    spares: Spares,
    snapshot_spares: Spares,
}

impl Trash {
    /// A trash for directories under `dirs`; queues what a crashed engine left renamed there.
    pub fn start(dirs: &[&Path]) -> Trash {
        let t = Trash {
            worker: OnceLock::new(),
            spares: Default::default(),
            snapshot_spares: Default::default(),
        };
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for ent in rd.flatten() {
                let name = ent.file_name();
                let name = name.to_string_lossy();
                // a previous engine's spares are not known to be what a spare must be
                if name.starts_with(PREFIX) || name.starts_with(SPARE) {
                    t.queue(ent.path());
                }
            }
        }
        t
    }

    /// A spare container directory (see [`Trash::recycle_container_dir`]), if one is ready:
    /// its files (those of [`KEPT_FILES`]) empty, `rootfs` an empty
    /// directory, nothing else. The caller renames it into place.
    pub fn take_spare(&self) -> Option<PathBuf> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// [`Trash::remove_dir`] for a container's directory whose log file is named `log`: the
    /// worker keeps it as a spare when it holds only what every container's does.
    pub fn recycle_container_dir(&self, dir: &Path, log: &str) -> std::io::Result<()> {
        self.remove(dir, Some(Recycle::Container(log.to_string())))
    }

    /// [`Trash::remove_dir`] for a container's snapshot directory: the worker keeps it as a
    /// spare (for the image store's snapshotter, through [`Trash::snapshot_spares`]) when
    /// it is as a new one is.
    pub fn recycle_snapshot_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.remove(dir, Some(Recycle::Snapshot))
    }

    /// The spare snapshot directories, taken by the image store's snapshotter.
    pub fn snapshot_spares(&self) -> Spares {
        self.snapshot_spares.clone()
    }

    /// Removes `dir` (a directory directly under the trash's directory, or any directory on
    /// the same file system): renamed now, deleted by the worker. If it cannot be renamed it
    /// is deleted here. A missing `dir` is not an error.
    pub fn remove_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.remove(dir, None)
    }

    fn remove(&self, dir: &Path, recycle: Option<Recycle>) -> std::io::Result<()> {
        let Some(name) = dir.file_name() else {
            return std::fs::remove_dir_all(dir);
        };
        let to = dir.with_file_name(format!("{PREFIX}{}", name.to_string_lossy()));
        match std::fs::rename(dir, &to) {
            Ok(()) => {
                self.send((to, recycle));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(_) => match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        }
    }

    /// Deletes `path` (already out of every reader's way) on the worker thread.
    pub fn queue(&self, path: PathBuf) {
        self.send((path, None))
    }

    fn send(&self, job: Job) {
        let tx = self.worker.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let spares = self.spares.clone();
            let snapshot_spares = self.snapshot_spares.clone();
            let spawned = std::thread::Builder::new()
                .name("berth-trash".into())
                .spawn(move || {
                    berth_sys::sched_idle_self();
                    for (p, recycle) in rx {
                        let kept = match recycle {
                            Some(Recycle::Container(log)) => keep_spare(&p, &log, &spares),
                            Some(Recycle::Snapshot) => keep_snapshot_spare(&p, &snapshot_spares),
                            None => false,
                        };
                        if !kept {
                            delete(&p);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "start the trash worker; deleting in place");
            }
            Mutex::new(tx)
        });
        let sent = tx.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        if let Err(std::sync::mpsc::SendError((path, _))) = sent {
            delete(&path);
        }
    }
}

/// Makes the removed container directory `p` a spare if there is room and it holds exactly
/// what a spare may: the files of [`KEPT_FILES`] (regular files, emptied here), the log
/// file `log` (deleted: a `logs -f` of the removed container may still hold it open, and
/// must not read the next container's), and `rootfs`, an empty directory on the same file
/// system (not a mount point). Anything else (a file the container's options added, a
/// rootfs still mounted) and it is deleted instead. Whether it was kept.
fn keep_spare(p: &Path, log: &str, spares: &Mutex<Vec<PathBuf>>) -> bool {
    use std::os::unix::fs::MetadataExt;
    if spares.lock().unwrap_or_else(|p| p.into_inner()).len() >= SPARES_MAX {
        return false;
    }
    let Ok(top) = std::fs::symlink_metadata(p) else {
        return false;
    };
    let Ok(rd) = std::fs::read_dir(p) else {
        return false;
    };
    let mut files = Vec::new();
    for ent in rd {
        let Ok(ent) = ent else { return false };
        let name = ent.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        let Ok(md) = std::fs::symlink_metadata(ent.path()) else {
            return false;
        };
        let ok = match name {
            "rootfs" => {
                md.is_dir()
                    && md.dev() == top.dev()
                    && std::fs::read_dir(ent.path()).is_ok_and(|mut d| d.next().is_none())
            }
            n if KEPT_FILES.contains(&n) => {
                files.push(ent.path());
                md.is_file()
            }
            n if n == log => md.is_file(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    for f in &files {
        let emptied = std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .and_then(|h| h.set_len(0));
        if emptied.is_err() {
            return false;
        }
    }
    if std::fs::remove_file(p.join(log)).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound) {
        return false;
    }
    add_spare(p, spares)
}

/// Renames `p` to a spare's name beside it and adds it to `spares`.
fn add_spare(p: &Path, spares: &Mutex<Vec<PathBuf>>) -> bool {
    // named apart from the container it was: nothing of that one stays
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spare = p.with_file_name(format!("{SPARE}{}.{n}", std::process::id()));
    if std::fs::rename(p, &spare).is_err() {
        return false;
    }
    spares.lock().unwrap_or_else(|p| p.into_inner()).push(spare);
    true
}

/// Whether `fs` (an upper directory) has no extended attribute but the one overlayfs gives
/// every upper root (`trusted.overlay.uuid`, its identity), which is removed: the next
/// container's mount makes its own.
fn forget_overlay_identity(fs: &Path) -> bool {
    const UUID: &str = "trusted.overlay.uuid";
    let Ok(names) = xattr::list(fs) else {
        return false;
    };
    for n in names {
        if n != UUID || xattr::remove(fs, UUID).is_err() {
            return false;
        }
    }
    true
}

/// Makes the removed snapshot directory `p` a spare if there is room and it is as a new
/// active snapshot's: `fs`, the container's writable layer, an empty directory with the
/// mode, owner and (no) extended attributes a new one has, on the same file system; `work`,
/// a directory holding at most overlayfs's own `work` and `incompat` (removed here); nothing
/// else.
fn keep_snapshot_spare(p: &Path, spares: &Mutex<Vec<PathBuf>>) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if spares.lock().unwrap_or_else(|p| p.into_inner()).len() >= SPARES_MAX {
        return false;
    }
    let Ok(top) = std::fs::symlink_metadata(p) else {
        return false;
    };
    let names = |d: &Path| -> Option<Vec<String>> {
        let mut v = Vec::new();
        for ent in std::fs::read_dir(d).ok()? {
            v.push(ent.ok()?.file_name().into_string().ok()?);
        }
        v.sort();
        Some(v)
    };
    if names(p).as_deref() != Some(&["fs".to_string(), "work".to_string()][..]) {
        return false;
    }
    let (fs, work) = (p.join("fs"), p.join("work"));
    let pristine = std::fs::symlink_metadata(&fs).is_ok_and(|m| {
        m.is_dir()
            && m.dev() == top.dev()
            && m.permissions().mode() & 0o7777 == 0o755
            && m.uid() == 0
            && m.gid() == 0
    }) && names(&fs).is_some_and(|v| v.is_empty())
        && forget_overlay_identity(&fs);
    let work_ok = std::fs::symlink_metadata(&work)
        .is_ok_and(|m| m.is_dir() && m.dev() == top.dev())
        && names(&work).is_some_and(|v| v.iter().all(|n| n == "work" || n == "incompat"));
    if !(pristine && work_ok) {
        return false;
    }
    // overlayfs's scratch directories go now, here, rather than at the next mount (which
    // would empty `work/work` itself, and before which the engine removes the volatile
    // marker): off the start's path
    for d in ["work", "incompat"] {
        if std::fs::remove_dir_all(work.join(d))
            .is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
        {
            return false;
        }
    }
    add_spare(p, spares)
}

fn delete(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "delete a removed directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_directories_disappear_and_leftovers_are_collected() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir_all(a.join("x/y")).unwrap();
        std::fs::write(a.join("x/y/f"), b"data").unwrap();
        // what a crash left renamed
        let left = tmp.path().join(format!("{PREFIX}old"));
        std::fs::create_dir_all(left.join("z")).unwrap();
        let t = Trash::start(&[tmp.path()]);
        t.remove_dir(&a).unwrap();
        assert!(!a.exists(), "the directory is out of the way at once");
        t.remove_dir(&tmp.path().join("missing")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(tmp.path()).unwrap().next().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "trash not emptied: {:?}",
                std::fs::read_dir(tmp.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_container_directory_with_only_its_own_files_becomes_a_spare() {
        let tmp = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(d.join("rootfs")).unwrap();
            for f in KEPT_FILES {
                std::fs::write(d.join(f), format!("{name} {f}")).unwrap();
            }
            std::fs::write(d.join(format!("{name}-json.log")), "a line\n").unwrap();
            d
        };
        let t = Trash::start(&[tmp.path()]);
        let a = make("a");
        t.recycle_container_dir(&a, "a-json.log").unwrap();
        assert!(!a.exists());
        wait_for("no spare", || t.spares.lock().unwrap().len() == 1);
        let spare = t.take_spare().expect("a spare");
        assert!(t.take_spare().is_none(), "one spare only");
        let mut names: Vec<String> = std::fs::read_dir(&spare)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["config.json", "hostname", "hosts", "resolv.conf", "rootfs"]
        );
        for n in names.iter().filter(|n| *n != "rootfs") {
            assert_eq!(
                std::fs::read(spare.join(n)).unwrap(),
                b"",
                "{n} not emptied"
            );
        }
        // one with a file of its own, or something in its rootfs, is deleted
        let b = make("b");
        std::fs::write(b.join("secret"), "x").unwrap();
        let c = make("c");
        std::fs::write(c.join("rootfs/left"), "x").unwrap();
        t.recycle_container_dir(&b, "b-json.log").unwrap();
        t.recycle_container_dir(&c, "c-json.log").unwrap();
        wait_for("b and c not deleted", || {
            std::fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .all(|e| e.path() == spare)
        });
        assert!(t.take_spare().is_none());
        // and a spare a previous engine left is deleted when the next one starts
        let t2 = Trash::start(&[tmp.path()]);
        wait_for("the old spare is still there", || !spare.exists());
        assert!(t2.take_spare().is_none());
    }

    #[test]
    fn a_snapshot_directory_as_new_becomes_a_spare_and_no_other() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(d.join("fs")).unwrap();
            std::fs::create_dir_all(d.join("work/work")).unwrap();
            std::fs::create_dir_all(d.join("work/incompat/volatile")).unwrap();
            std::fs::set_permissions(d.join("fs"), std::fs::Permissions::from_mode(0o755)).unwrap();
            d
        };
        let t = Trash::start(&[tmp.path()]);
        let a = make("1");
        t.recycle_snapshot_dir(&a).unwrap();
        wait_for("no snapshot spare", || {
            t.snapshot_spares().lock().unwrap().len() == 1
        });
        let spare = t.snapshot_spares().lock().unwrap().pop().unwrap();
        assert!(spare.join("fs").is_dir() && spare.join("work").is_dir());
        assert!(
            std::fs::read_dir(spare.join("work"))
                .unwrap()
                .next()
                .is_none(),
            "overlayfs's scratch directories are removed"
        );
        // a layer the container wrote to, or whose root it changed, is deleted
        let b = make("2");
        std::fs::write(b.join("fs/file"), "x").unwrap();
        let c = make("3");
        std::fs::set_permissions(c.join("fs"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let d = make("4");
        xattr::set(d.join("fs"), "user.berth-test", b"1").ok();
        // (a file system without user xattrs cannot show that one)
        if xattr::get(d.join("fs"), "user.berth-test")
            .ok()
            .flatten()
            .is_none()
        {
            std::fs::remove_dir_all(&d).unwrap();
        }
        for x in [&b, &c, &d] {
            t.recycle_snapshot_dir(x).unwrap();
        }
        wait_for("2, 3 and 4 not deleted", || {
            std::fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .all(|e| e.path() == spare)
        });
        assert!(t.snapshot_spares().lock().unwrap().is_empty());
    }
}
