//! The cgroup v2 backend (unified hierarchy): one directory, controllers enabled from the root
//! down through `cgroup.subtree_control`, each controller's files written by its own module;
//! devices are policed by an eBPF program (`devices` builds it, `bpf` loads and attaches it).

#[allow(unsafe_code)]
mod bpf;
mod cpu;
mod cpuset;
mod devices;
mod freezer;
pub(crate) mod hugetlb;
mod io;
mod memory;
mod pids;
mod unified;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::common::{self, join, read_flat_keyed, read_trimmed, write_file};
use crate::mountinfo::CgroupMounts;
use crate::{CgroupManager, ContainerMount, Error, Result, Stats};

/// A container's cgroup on a cgroup v2 host.
#[derive(Debug)]
pub struct Manager {
    path: String,
    root: PathBuf,
    dir: PathBuf,
}

/// Create `root/<path>`, enabling in each ancestor's `cgroup.subtree_control` every
/// controller it offers, so the leaf gets them all (stats need them even when no limit is
/// set). The leaf itself enables nothing: a cgroup with processes cannot have controllers in
/// its subtree_control ("no internal processes").
pub(crate) fn create_dir(root: &Path, path: &str) -> Result<PathBuf> {
    common::create_levels(root, path, |parent, _dir| enable_controllers(parent))
}

fn controllers(path: &Path) -> Result<BTreeSet<String>> {
    Ok(read_trimmed(path)?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

fn enable_controllers(dir: &Path) -> Result<()> {
    let available = controllers(&dir.join("cgroup.controllers"))?;
    let enabled = controllers(&dir.join("cgroup.subtree_control"))?;
    for c in available.difference(&enabled) {
        // One write per controller: one that cannot be enabled (e.g. cpu beside a realtime
        // task) must not stop the others. `set` reports it by name if it is needed.
        if let Err(e) = write_file(&dir.join("cgroup.subtree_control"), &format!("+{c}")) {
            tracing::warn!(error = %e, controller = %c, "cannot enable cgroup controller");
        }
    }
    Ok(())
}

/// The cgroup2 mount that is the host's hierarchy: /sys/fs/cgroup when it is cgroup2, else
/// the first cgroup2 mount.
fn unified_root(mounts: &CgroupMounts) -> Result<PathBuf> {
    let default = Path::new("/sys/fs/cgroup");
    mounts
        .v2
        .iter()
        .find(|p| p.as_path() == default)
        .or_else(|| mounts.v2.first())
        .cloned()
        .ok_or_else(|| {
            Error::Unsupported(
                "cgroup v2".to_string(),
                "no cgroup2 filesystem is mounted (see /proc/self/mountinfo)".to_string(),
            )
        })
}

impl Manager {
    pub fn create(path: String, mounts: &CgroupMounts) -> Result<Self> {
        let manager = Self::open(path, mounts)?;
        create_dir(&manager.root, &manager.path)?;
        Ok(manager)
    }

    pub fn open(path: String, mounts: &CgroupMounts) -> Result<Self> {
        let root = unified_root(mounts)?;
        let dir = join(&root, &path);
        Ok(Self { path, root, dir })
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The container's directory (`/sys/fs/cgroup/<path>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fail by name when the spec asks for a resource whose controller the leaf lacks.
    fn require(&self, controller: &str, field: &str) -> Result<()> {
        let have = controllers(&self.dir.join("cgroup.controllers"))?;
        if have.contains(controller) {
            Ok(())
        } else {
            Err(Error::Unsupported(
                format!("linux.resources.{field}"),
                format!(
                    "the {controller} controller is not enabled for {} (cgroup.controllers: {})",
                    self.dir.display(),
                    have.into_iter().collect::<Vec<_>>().join(" ")
                ),
            ))
        }
    }

    fn has(&self, controller: &str) -> Result<bool> {
        Ok(controllers(&self.dir.join("cgroup.controllers"))?.contains(controller))
    }
}

impl CgroupManager for Manager {
    fn apply(&self, pid: i32) -> Result<()> {
        write_file(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        if let Some(c) = r.cpu() {
            if c.cpus().is_some() || c.mems().is_some() {
                self.require("cpuset", "cpu.cpus/mems")?;
                cpuset::set(&self.dir, c)?;
            }
            if cpu::wants_cpu_controller(c) {
                self.require("cpu", "cpu")?;
            }
            cpu::set(&self.dir, c)?;
        }
        if let Some(m) = r.memory() {
            self.require("memory", "memory")?;
            memory::set(&self.dir, m)?;
        }
        if let Some(p) = r.pids() {
            self.require("pids", "pids")?;
            pids::set(&self.dir, p)?;
        }
        if let Some(b) = r.block_io() {
            self.require("io", "blockIO")?;
            io::set(&self.dir, b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            if !h.is_empty() {
                self.require("hugetlb", "hugepageLimits")?;
                hugetlb::set(&self.dir, h)?;
            }
        }
        if let Some(rules) = r.devices() {
            devices::set(&self.dir, rules)?;
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(Error::Unsupported(
                    "linux.resources.network".to_string(),
                    "net_cls/net_prio do not exist in cgroup v2".to_string(),
                ));
            }
        }
        if let Some(u) = r.unified() {
            unified::set(&self.dir, u)?;
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            tracing::warn!(path = %self.path, "linux.resources.rdma is ignored");
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        freezer::set(&self.dir, true)
    }

    fn thaw(&self) -> Result<()> {
        freezer::set(&self.dir, false)
    }

    fn is_frozen(&self) -> Result<bool> {
        freezer::is_frozen(&self.dir)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        common::pids_recursive(&self.dir)
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats {
            cpu: Some(cpu::stats(&self.dir)?),
            ..Stats::default()
        };
        if self.has("memory")? {
            stats.memory = Some(memory::stats(&self.dir)?);
        }
        if self.has("pids")? {
            stats.pids = Some(pids::stats(&self.dir)?);
        }
        if self.has("io")? {
            stats.blkio = Some(io::stats(&self.dir)?);
        }
        if self.has("hugetlb")? {
            stats.hugetlb = hugetlb::stats(&self.dir)?;
        }
        Ok(stats)
    }

    fn destroy(&self) -> Result<()> {
        if !self.dir.exists() {
            return common::remove_cgroup_dirs(&self.root, &self.path);
        }
        let kill_file = self.dir.join("cgroup.kill");
        let populated = || -> Result<bool> {
            let events = read_flat_keyed(&self.dir.join("cgroup.events"))?;
            Ok(events.get("populated").copied().unwrap_or(0) != 0)
        };
        let empty = common::wait_until(Duration::from_secs(10), || {
            match populated() {
                Ok(false) => return Ok(true),
                Ok(true) => {}
                Err(e) if e.is_not_found() => return Ok(true),
                Err(e) => return Err(e),
            }
            if kill_file.exists() {
                // Kills the whole subtree at once, frozen or not, with no pid races
                // (Linux 5.14+).
                match write_file(&kill_file, "1") {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => return Ok(true),
                    Err(e) => return Err(e),
                }
            } else {
                // Older kernels: a frozen task would not die before thawing.
                if freezer::is_frozen(&self.dir).unwrap_or(false) {
                    freezer::set(&self.dir, false)?;
                }
                common::kill_all(&common::pids_recursive(&self.dir)?)?;
            }
            Ok(false)
        })?;
        if !empty {
            return Err(Error::Timeout {
                what: "waiting for the processes of".to_string(),
                path: self.dir.clone(),
            });
        }
        common::remove_cgroup_dirs(&self.root, &self.path)
    }

    fn oom_kills(&self) -> Result<u64> {
        memory::oom_kills(&self.dir)
    }

    fn container_mount(&self) -> ContainerMount {
        ContainerMount::Cgroup2
    }

    fn path(&self) -> &str {
        &self.path
    }
}
