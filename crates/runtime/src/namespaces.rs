//! Namespaces of a spec: which are new (one clone flag each, so the first process is born in
//! them), which are joined by path (setns, user namespace first), and the two that only apply
//! to children (pid, time), which an intermediate child of the runtime enters before it clones
//! (see `container::fork_into`), so that the caller's own namespaces never change.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME, which nix 0.29 does not name
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x80),
    }
}

/// The name of the namespace under /proc/<pid>/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

pub fn from_proc_name(s: &str) -> Option<LinuxNamespaceType> {
    Some(match s {
        "mnt" => LinuxNamespaceType::Mount,
        "cgroup" => LinuxNamespaceType::Cgroup,
        "uts" => LinuxNamespaceType::Uts,
        "ipc" => LinuxNamespaceType::Ipc,
        "user" => LinuxNamespaceType::User,
        "pid" => LinuxNamespaceType::Pid,
        "net" => LinuxNamespaceType::Network,
        "time" => LinuxNamespaceType::Time,
        _ => return None,
    })
}

/// A namespace to join, already opened (so the path is resolved on the host, once).
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// The namespaces a spec asks for.
pub struct Plan {
    /// New namespaces created by clone: user and pid, the ones a process cannot make for
    /// itself (cgroup and time are handled apart, see below).
    pub clone_flags: CloneFlags,
    /// New namespaces the init makes with unshare, after joining the spec's paths (so that
    /// they belong to a joined user namespace, as runc's do) and while the runtime completes
    /// the cgroup: creating a network namespace alone takes ~0.5 ms.
    pub unshare_flags: CloneFlags,
    pub new_cgroup: bool,
    pub new_time: bool,
    pub new_user: bool,
    pub new_mount: bool,
    pub new_uts: bool,
    pub new_net: bool,
    pub joins: Vec<Join>,
    /// Every namespace type the container has (new or joined), for `exec`.
    pub types: Vec<LinuxNamespaceType>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clone_flags: CloneFlags::empty(),
            unshare_flags: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
            new_user: false,
            new_mount: false,
            new_uts: false,
            new_net: false,
            joins: Vec::new(),
            types: Vec::new(),
        }
    }
}

pub fn plan(spec: &Spec) -> Result<Plan> {
    let mut p = Plan::default();
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in &list {
        let t = ns.typ();
        if p.types.contains(&t) {
            return Err(Error::InvalidSpec(format!(
                "namespace {} is listed twice",
                proc_name(t)
            )));
        }
        p.types.push(t);
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                let f = File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
                // setns on anything else fails later in the init with a bare EINVAL
                const NSFS_MAGIC: i64 = 0x6e73_6673;
                let fs = nix::sys::statfs::fstatfs(&f)
                    .map_err(|e| Error::sys(format!("statfs namespace {}", path.display()), e))?;
                if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
                    let kind = match f.metadata() {
                        Ok(m) if m.is_file() => "a regular file",
                        Ok(m) if m.is_dir() => "a directory",
                        _ => "not a namespace file",
                    };
                    return Err(Error::InvalidSpec(format!(
                        "namespace {} path {} is {kind}, not a namespace (such as /proc/<pid>/ns/{})",
                        proc_name(t),
                        path.display(),
                        proc_name(t)
                    )));
                }
                p.joins.push(Join {
                    typ: t,
                    fd: f.into(),
                    path: path.clone(),
                });
            }
            _ => match t {
                LinuxNamespaceType::Cgroup => p.new_cgroup = true,
                LinuxNamespaceType::Time => p.new_time = true,
                other => {
                    if matches!(other, LinuxNamespaceType::User | LinuxNamespaceType::Pid) {
                        p.clone_flags |= flag(other);
                    } else {
                        p.unshare_flags |= flag(other);
                    }
                    match other {
                        LinuxNamespaceType::User => p.new_user = true,
                        LinuxNamespaceType::Mount => p.new_mount = true,
                        LinuxNamespaceType::Uts => p.new_uts = true,
                        LinuxNamespaceType::Network => p.new_net = true,
                        _ => {}
                    }
                }
            },
        }
    }
    // The user namespace is joined first: joining it gives the capabilities the other joins
    // need inside it.
    p.joins.sort_by_key(|j| match j.typ {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    let linux = spec.linux().as_ref();
    let has_maps = linux
        .map(|l| {
            l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        })
        .unwrap_or(false);
    if p.new_user && !has_maps {
        return Err(Error::InvalidSpec(
            "a new user namespace needs uidMappings and gidMappings".into(),
        ));
    }
    if has_maps && !p.types.contains(&LinuxNamespaceType::User) {
        return Err(Error::InvalidSpec(
            "uidMappings/gidMappings are set but there is no user namespace".into(),
        ));
    }
    if spec.hostname().is_some() && !p.types.contains(&LinuxNamespaceType::Uts) {
        return Err(Error::InvalidSpec(
            "hostname is set but there is no UTS namespace: it would change the host's".into(),
        ));
    }
    Ok(p)
}

/// setns into an opened namespace.
pub fn enter(fd: impl AsFd, t: LinuxNamespaceType, path: &Path) -> Result<()> {
    nix::sched::setns(fd, flag(t)).map_err(|e| {
        Error::sys(
            format!("join {} namespace {}", proc_name(t), path.display()),
            e,
        )
    })
}
