//! Directories of removed containers, deleted off the request path.
//!
//! Deleting a container's directory right after unmounting its root filesystem can wait for
//! the kernel (a directory that was a mount point, maybe still in another mount namespace
//! that is being torn down, is detached there and waits for an RCU grace period: 5–15 ms
//! here, more than the rest of `run --rm` together). So removal renames the directory out
//! of the way (`.removed-<name>`, one rename on the same file system), finishes the removal
//! the API reports, and a worker thread deletes the renamed tree. A directory left renamed
//! by a crash is deleted when the next engine opens.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

const PREFIX: &str = ".removed-";

pub struct Trash {
    worker: OnceLock<Mutex<Sender<PathBuf>>>,
}

impl Trash {
    /// A trash for directories under `dirs`; queues what a crashed engine left renamed there.
    pub fn start(dirs: &[&Path]) -> Trash {
        let t = Trash {
            worker: OnceLock::new(),
        };
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for ent in rd.flatten() {
                if ent.file_name().to_string_lossy().starts_with(PREFIX) {
                    t.queue(ent.path());
                }
            }
        }
        t
    }

    /// Removes `dir` (a directory directly under the trash's directory, or any directory on
    /// the same file system): renamed now, deleted by the worker. If it cannot be renamed it
    /// is deleted here. A missing `dir` is not an error.
    pub fn remove_dir(&self, dir: &Path) -> std::io::Result<()> {
        let Some(name) = dir.file_name() else {
            return std::fs::remove_dir_all(dir);
        };
        let to = dir.with_file_name(format!("{PREFIX}{}", name.to_string_lossy()));
        match std::fs::rename(dir, &to) {
            Ok(()) => {
                self.queue(to);
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
        let tx = self.worker.get_or_init(|| {
            let (tx, rx) = channel::<PathBuf>();
            let spawned = std::thread::Builder::new()
                .name("berth-trash".into())
                .spawn(move || {
                    berth_sys::lower_thread_priority(10);
                    for p in rx {
                        delete(&p);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "start the trash worker; deleting in place");
            }
            Mutex::new(tx)
        });
        let sent = tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(path.clone());
        if sent.is_err() {
            delete(&path);
        }
    }
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
}
