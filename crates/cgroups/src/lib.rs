//! Control groups for berth: one [`CgroupManager`] interface with two backends, `v1` (which
//! also covers hybrid hosts) and `v2` (the unified hierarchy). The caller picks nothing: it
//! calls [`create`] with the OCI `cgroupsPath` and gets an [`AnyManager`] that dispatches.
//!
//! INTERFACE CONTRACT (the runtime is written against this; keep the signatures):
//! - `detect()` tells which hierarchy the host has.
//! - `create(path, id)` makes (or reuses) the container's cgroup(s) and returns a manager.
//! - `open(path)` re-opens an existing cgroup for `state`, `kill`, `delete`, `update`, `events`.
//! - `apply(pid)` puts a process in it; `set(resources)` writes limits; `freeze`/`thaw`;
//!   `pids()`; `stats()`; `destroy()` removes every directory it made (after the processes
//!   are gone; it kills stragglers with SIGKILL and waits for them first).
//! - `mounts()` tells the runtime what to mount at /sys/fs/cgroup inside a container.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
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

/// Tell which hierarchy the host has (/sys/fs/cgroup is cgroup2 → V2).
pub fn detect() -> Hierarchy {
    todo_contract()
}

/// Create (or reuse) the container's cgroup at `cgroups_path` (absolute, relative to each
/// hierarchy's root; a relative path is put under the runtime's parent, `berth/<id>` when empty).
pub fn create(cgroups_path: Option<&str>, id: &str) -> Result<AnyManager> {
    let _ = (cgroups_path, id);
    todo_contract()
}

/// Open an existing cgroup (made by `create`) without changing it.
pub fn open(cgroups_path: &str) -> Result<AnyManager> {
    let _ = cgroups_path;
    todo_contract()
}

/// Dispatches to the backend the host has.
pub enum AnyManager {}

fn todo_contract() -> ! {
    panic!("berth-cgroups: not written yet")
}
