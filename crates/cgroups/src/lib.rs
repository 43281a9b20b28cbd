//! Control groups for berth: one [`CgroupManager`] interface with two backends, `v1` (which
//! also covers hybrid hosts) and `v2` (the unified hierarchy). The caller picks nothing: it
//! calls [`create`] with the OCI `cgroupsPath` and gets an [`AnyManager`] that dispatches.
//!
//! INTERFACE CONTRACT (the runtime is written against this; keep the signatures):
//! - `detect()` tells which hierarchy the host has.
//! - `create(path, id)` makes (or reuses) the container's cgroup(s) and returns a manager.
//! - `open(path)` re-opens an existing cgroup for `state`, `kill`, `delete`, `update`, `events`.
//! - `apply(pid)` puts a process in it; `set(resources)` writes limits; `freeze`/`thaw`;
//!   `pids()`; `stats()`; `destroy()` kills stragglers with SIGKILL, waits for them, then
//!   removes the container's directory (and its sub-cgroups) in every hierarchy, and every
//!   parent left empty, up to but not including the hierarchy root.
//! - `container_mount()` tells the runtime what to mount at /sys/fs/cgroup inside a container.
//! - `begin(path, id)` + `complete()` is `create` in two stages, and `birth_dir()` + `entry()`
//!   let a new process enter the cgroup without a move by pid (see [`Entry`] for why), so a
//!   runtime can start the container's process while its v1 directories are being made.
//!
//! Decisions worth knowing:
//! - Hybrid hosts: the v1 backend also makes the container's directory in the cgroup2 tree
//!   (when that tree offers a controller) and puts its processes there, because that is
//!   where hugetlb lives on such hosts; `hugepageLimits` go to `hugetlb.<size>.max` there
//!   unless a v1 hugetlb hierarchy is mounted.
//! - Devices: rules are applied in order, the last match wins, nothing matching is denied
//!   (v1: "deny all" then the rules as `devices.allow`/`devices.deny` lines; v2: an eBPF
//!   program, replaced on `update`). An allow rule covers a request only if it grants every
//!   requested access; a deny rule blocks a request that asks for any access it names.
//! - Fields without a kernel knob on this host (v1 kernel memory on new kernels, v2
//!   swappiness, disableOOMKiller, leafWeight) are ignored with a `tracing` warning; fields
//!   that would silently lose a limit the user asked for (realtime on v2, blkio weight without
//!   a proportional I/O scheduler, a missing controller) fail with [`Error::Unsupported`].
//!
//! Unsafe code is denied everywhere but in `v2::bpf`, the one module that issues the raw
//! `bpf(2)` calls for the v2 device controller.

#![deny(unsafe_code)]

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

mod common;
mod devices;
mod mountinfo;
pub mod v1;
pub mod v2;

pub use mountinfo::{CgroupMounts, V1Hierarchy};
use serde::{Deserialize, Serialize};

/// Which cgroup hierarchy the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hierarchy {
    /// Only v1 controllers (possibly with a controller-less cgroup2 at /sys/fs/cgroup/unified).
    V1,
    /// Only the unified v2 hierarchy at /sys/fs/cgroup.
    V2,
}

/// Failures, each naming the operation and the file it touched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to write {data:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        data: String,
        source: std::io::Error,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid cgroups path {0:?}: {1}")]
    InvalidPath(String, String),
    #[error("{0} is not supported on this host: {1}")]
    Unsupported(String, String),
    #[error("device cgroup program: {0}")]
    Bpf(String),
    /// A resource value the spec allows syntactically but the kernel cannot take
    /// (swap below the memory limit, a bad device access string, a unified key with `/`).
    #[error("invalid linux.resources.{field}: {reason}")]
    InvalidResource { field: String, reason: String },
    #[error("failed to send SIGKILL to pid {pid}: {source}")]
    Kill { pid: i32, source: nix::errno::Errno },
    #[error("timed out {what} {path}")]
    Timeout { what: String, path: PathBuf },
    /// The cgroup a new container would use already holds processes: they would be counted,
    /// limited and, at delete, killed as the container's.
    #[error("cgroup {path} already exists and holds processes ({pids:?}) that are not the container's: refusing to use it (choose another cgroupsPath)")]
    Occupied { path: PathBuf, pids: Vec<i32> },
}

impl Error {
    /// True when the error is "no such file or directory" (a cgroup that is gone, a knob
    /// this kernel lacks).
    pub fn is_not_found(&self) -> bool {
        common::is_not_found(self)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Statistics of one cgroup, serialised like runc's `events --stats` data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio: Option<BlkioStats>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hugetlb: std::collections::BTreeMap<String, HugetlbStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUsage {
    /// nanoseconds
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Throttling {
    pub periods: u64,
    #[serde(rename = "throttledPeriods")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryStats {
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    /// Number of times the OOM killer ran in this cgroup.
    #[serde(default)]
    pub oom_kill: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub raw: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsStats {
    pub current: u64,
    /// 0 means no limit.
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlkioStats {
    #[serde(rename = "ioServiceBytesRecursive", default)]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", default)]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HugetlbStats {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// What the runtime mounts at /sys/fs/cgroup inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerMount {
    /// Mount a fresh cgroup2 filesystem (the container is in a cgroup namespace, or the
    /// host is v2: the kernel shows the namespace root).
    Cgroup2,
    /// v1: a tmpfs at the destination, then one entry per hierarchy: `name` is the directory
    /// under the destination (`cpu`, `memory`, `name=systemd` → `systemd`, ...), `options` the
    /// mount options that select it (`cpu`, `memory`, `none,name=systemd`), `host_path` the
    /// container's own cgroup directory on the host (bind-mounted when there is no cgroup
    /// namespace).
    V1(Vec<V1Mount>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub name: String,
    pub options: String,
    pub host_path: PathBuf,
}

/// One interface, every backend.
pub trait CgroupManager {
    /// Put a process (and so its future children) into the cgroup.
    fn apply(&self, pid: i32) -> Result<()>;
    /// Write the resource limits (create and `update`). Fields that are `None` are untouched.
    fn set(&self, resources: &LinuxResources) -> Result<()>;
    /// Freeze every process (pause).
    fn freeze(&self) -> Result<()>;
    /// Thaw (resume).
    fn thaw(&self) -> Result<()>;
    /// True when frozen.
    fn is_frozen(&self) -> Result<bool>;
    /// Every pid in the cgroup (and its descendants).
    fn pids(&self) -> Result<Vec<i32>>;
    /// Usage statistics.
    fn stats(&self) -> Result<Stats>;
    /// Kill whatever is left with SIGKILL, wait for it to go, and remove the cgroup
    /// directories this manager created. Removing a cgroup that is already gone is success.
    fn destroy(&self) -> Result<()>;
    /// Number of OOM kills so far (for `events` and the engine's OOMKilled flag).
    fn oom_kills(&self) -> Result<u64>;
    /// What to mount at /sys/fs/cgroup in the container.
    fn container_mount(&self) -> ContainerMount;
    /// The cgroup path relative to the hierarchy root (as given, normalised).
    fn path(&self) -> &str;
}

/// Fills this process's cache of the cgroup mounts (see [`mountinfo::read`]), so that a
/// process forked from it finds them without reading /proc/self/mountinfo (whose size grows
/// with every container's mounts). Best effort: a failure is met again, and reported, by the
/// first real use.
pub fn warm_up() {
    let _ = mountinfo::read();
}

/// Tell which hierarchy the host has (/sys/fs/cgroup is cgroup2 → V2). Anything else,
/// including a host where /sys/fs/cgroup cannot be examined, is V1: `create` then fails with
/// an error that names the missing hierarchy.
pub fn detect() -> Hierarchy {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Hierarchy::V2,
        _ => Hierarchy::V1,
    }
}

/// Create (or reuse) the container's cgroup at `cgroups_path` (absolute or relative, both
/// taken relative to each hierarchy's root; `None` or empty gives `/berth/<id>`). Paths with
/// `..` and systemd's `slice:prefix:name` form are refused with [`Error::InvalidPath`].
pub fn create(cgroups_path: Option<&str>, id: &str) -> Result<AnyManager> {
    let manager = begin(cgroups_path, id)?;
    manager.complete()?;
    Ok(manager)
}

/// [`create`] in two stages, for a runtime that starts the container's process while its
/// cgroups are being made: `begin` makes only the cgroup2 directory the process is born into
/// ([`AnyManager::birth_dir`]: the whole cgroup on v2, the hybrid tree's directory on v1),
/// and [`AnyManager::complete`] the rest (the v1 hierarchies), before the process enters
/// them with an [`Entry`].
pub fn begin(cgroups_path: Option<&str>, id: &str) -> Result<AnyManager> {
    let path = common::normalize_cgroups_path(cgroups_path, id)?;
    let mounts = mountinfo::read()?;
    match detect() {
        Hierarchy::V1 => Ok(AnyManager::V1(v1::Manager::begin(path, &mounts)?)),
        Hierarchy::V2 => Ok(AnyManager::V2(v2::Manager::create(path, &mounts)?)),
    }
}

/// Refuse a `cgroups_path` (as [`create`] takes it) that names an existing cgroup with
/// processes in it, in any hierarchy (each v1 hierarchy, the hybrid cgroup2 tree, or the v2
/// tree), descendants included: runc 1.2 refuses it too. Creates nothing.
pub fn refuse_occupied(cgroups_path: Option<&str>, id: &str) -> Result<()> {
    let path = common::normalize_cgroups_path(cgroups_path, id)?;
    let mounts = mountinfo::read()?;
    let dirs: Vec<PathBuf> = match detect() {
        Hierarchy::V1 => v1::Manager::open(path, &mounts)?.dirs_with_unified(),
        Hierarchy::V2 => vec![v2::Manager::open(path, &mounts)?.dir().to_path_buf()],
    };
    for dir in dirs {
        let pids = common::pids_recursive(&dir)?;
        if !pids.is_empty() {
            return Err(Error::Occupied { path: dir, pids });
        }
    }
    Ok(())
}

/// Open an existing cgroup (made by `create`) without changing it. Pass the value
/// [`CgroupManager::path`] returned at create time. Nothing is checked on disk: a cgroup that
/// is already gone makes `destroy` succeed and reads fail with a NotFound
/// ([`Error::is_not_found`]); [`AnyManager::exists`] asks explicitly.
pub fn open(cgroups_path: &str) -> Result<AnyManager> {
    let path = common::normalize_existing(cgroups_path)?;
    let mounts = mountinfo::read()?;
    match detect() {
        Hierarchy::V1 => Ok(AnyManager::V1(v1::Manager::open(path, &mounts)?)),
        Hierarchy::V2 => Ok(AnyManager::V2(v2::Manager::open(path, &mounts)?)),
    }
}

/// Removes the cgroup `cgroups_path` in every hierarchy where it holds no cgroup and no
/// process, and leaves it where it does (rmdir refuses then). For a parent that a caller
/// made for a group of containers ([`CgroupManager::destroy`] leaves parents alone) once the
/// group is done: a test suite's `/berth-test`, say. Never kills anything.
pub fn remove_unused(cgroups_path: &str) -> Result<()> {
    let path = common::normalize_existing(cgroups_path)?;
    let mounts = mountinfo::read()?;
    let dirs: Vec<PathBuf> = match detect() {
        Hierarchy::V1 => v1::Manager::open(path, &mounts)?.dirs_with_unified(),
        Hierarchy::V2 => vec![v2::Manager::open(path, &mounts)?.dir().to_path_buf()],
    };
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Dispatches to the backend the host has.
#[derive(Debug)]
pub enum AnyManager {
    V1(v1::Manager),
    V2(v2::Manager),
}

impl AnyManager {
    /// Which backend this is.
    pub fn hierarchy(&self) -> Hierarchy {
        match self {
            AnyManager::V1(_) => Hierarchy::V1,
            AnyManager::V2(_) => Hierarchy::V2,
        }
    }

    /// Whether the container's cgroup directory exists (in any v1 hierarchy).
    pub fn exists(&self) -> bool {
        match self {
            AnyManager::V1(m) => m.exists(),
            AnyManager::V2(m) => m.exists(),
        }
    }
}

/// How a process gets into a container's cgroup without being moved there by its pid. A move
/// by pid (a write to `cgroup.procs`) takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, and the first such write after a quiet spell waits for an RCU grace period: ~8 ms
/// on this host, once the largest single cost of starting a container on cgroup v1. Two ways
/// avoid that lock:
/// - in the unified hierarchy the process is born in its cgroup (`clone3` with
///   `CLONE_INTO_CGROUP` and [`AnyManager::birth_dir`]), which takes the lock only for reading;
/// - in a v1 hierarchy a single-threaded process moves itself by writing `0` to the `tasks`
///   file ([`Entry::enter_self`]): migrating one thread that is `current` is the case the
///   kernel exempts from the global lock (see `cgroup_procs_write_start`).
///
/// The files are opened by the runtime on the host; the new process may receive them over a
/// socket ([`Entry::into_parts`], [`Entry::from_parts`]) and use them from inside its new
/// namespaces: v1 checks the credentials of whoever opened the file.
#[derive(Debug)]
pub struct Entry {
    tasks: Vec<(PathBuf, std::os::fd::OwnedFd)>,
}

impl Entry {
    /// In the new process: move the calling process into the container's cgroup in every v1
    /// hierarchy. The process must be single-threaded: only the calling thread moves.
    pub fn enter_self(&self) -> Result<()> {
        for (path, fd) in &self.tasks {
            nix::unistd::write(fd, b"0").map_err(|e| Error::Write {
                path: path.clone(),
                data: "0".into(),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// The files' paths (for messages) and descriptors, to send to another process.
    pub fn into_parts(self) -> (Vec<PathBuf>, Vec<std::os::fd::OwnedFd>) {
        self.tasks.into_iter().unzip()
    }

    /// Rebuild an entry from [`Entry::into_parts`] (paths and descriptors in the same order).
    pub fn from_parts(paths: Vec<PathBuf>, fds: Vec<std::os::fd::OwnedFd>) -> Entry {
        Entry {
            tasks: paths.into_iter().zip(fds).collect(),
        }
    }
}

impl AnyManager {
    /// The second stage of [`begin`]: make the v1 hierarchies' directories (nothing on v2).
    pub fn complete(&self) -> Result<()> {
        match self {
            AnyManager::V1(m) => m.complete(),
            AnyManager::V2(_) => Ok(()),
        }
    }

    /// The cgroup2 directory to create a process in (`clone3` with `CLONE_INTO_CGROUP`), if
    /// there is one: the container's cgroup on v2, its directory in the hybrid tree on v1.
    /// A process not born there (a kernel without `clone3`, before 5.7) needs
    /// [`CgroupManager::apply`] instead.
    pub fn birth_dir(&self) -> Result<Option<std::os::fd::OwnedFd>> {
        let dir = match self {
            AnyManager::V2(m) => Some(m.dir().to_path_buf()),
            AnyManager::V1(m) => m.unified_dir(),
        };
        dir.map(|dir| {
            std::fs::File::open(&dir)
                .map(Into::into)
                .map_err(|source| Error::Read { path: dir, source })
        })
        .transpose()
    }

    /// Open the v1 `tasks` files a process writes to enter this cgroup itself (see
    /// [`Entry`]); none on v2.
    pub fn entry(&self) -> Result<Entry> {
        let mut tasks = Vec::new();
        if let AnyManager::V1(m) = self {
            for dir in m.all_dirs() {
                let path = dir.join("tasks");
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| Error::Write {
                        path: path.clone(),
                        data: "0".into(),
                        source,
                    })?;
                tasks.push((path, f.into()));
            }
        }
        Ok(Entry { tasks })
    }
}

macro_rules! dispatch {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            AnyManager::V1($m) => $e,
            AnyManager::V2($m) => $e,
        }
    };
}

impl CgroupManager for AnyManager {
    fn apply(&self, pid: i32) -> Result<()> {
        dispatch!(self, m => m.apply(pid))
    }
    fn set(&self, resources: &LinuxResources) -> Result<()> {
        dispatch!(self, m => m.set(resources))
    }
    fn freeze(&self) -> Result<()> {
        dispatch!(self, m => m.freeze())
    }
    fn thaw(&self) -> Result<()> {
        dispatch!(self, m => m.thaw())
    }
    fn is_frozen(&self) -> Result<bool> {
        dispatch!(self, m => m.is_frozen())
    }
    fn pids(&self) -> Result<Vec<i32>> {
        dispatch!(self, m => m.pids())
    }
    fn stats(&self) -> Result<Stats> {
        dispatch!(self, m => m.stats())
    }
    fn destroy(&self) -> Result<()> {
        dispatch!(self, m => m.destroy())
    }
    fn oom_kills(&self) -> Result<u64> {
        dispatch!(self, m => m.oom_kills())
    }
    fn container_mount(&self) -> ContainerMount {
        dispatch!(self, m => m.container_mount())
    }
    fn path(&self) -> &str {
        dispatch!(self, m => m.path())
    }
}
