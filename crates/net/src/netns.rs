//! Named network namespaces: a namespace made by a short-lived thread and kept alive by a
//! bind mount of its nsfs file (as `ip netns` and podman do), so it belongs to no process:
//! the runtime joins it by path, and it outlives a daemon that is killed.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::link::Nl;
use crate::{Error, Result};

/// Creates a network namespace with loopback up and binds it to `path` (whose directory
/// must exist). An existing binding at `path` is kept (adopted).
pub fn create(path: &Path) -> Result<()> {
    if is_bound(path) {
        return Ok(());
    }
    let r = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            std::fs::File::create(path)
                .map_err(Error::io("create netns file", path.display().to_string()))?;
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(Error::sys("unshare netns for", path.display().to_string()))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(Error::sys("bind netns to", path.display().to_string()))?;
            Nl::open()?.up("lo")
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Nft("netns thread panicked".into())))
    });
    if r.is_err() {
        let _ = remove(path);
    }
    r
}

/// Whether `path` is a bound network namespace (an nsfs mount).
pub fn is_bound(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Unbinds and unlinks; the namespace, and the veth ends in it, go when nothing else holds it.
pub fn remove(path: &Path) -> Result<()> {
    while is_bound(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(Error::sys("unmount netns", path.display().to_string()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
            "remove netns file",
            path.display().to_string(),
        )(e)),
        _ => Ok(()),
    }
}

/// Binds the namespace bound at `from` to `to` as well (a new file): the namespace then has
/// the name its container is known by, whatever name it was made under.
pub fn bind(from: &Path, to: &Path) -> Result<()> {
    std::fs::File::create(to).map_err(Error::io("create netns file", to.display().to_string()))?;
    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        let _ = std::fs::remove_file(to);
        Error::sys("bind netns to", to.display().to_string())(e)
    })
}
