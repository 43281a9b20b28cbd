//! The cgroup v1 backend, hybrid hosts included: one directory per mounted hierarchy (found in
//! mountinfo), each controller's knobs written by its own module. On a hybrid host the
//! container also gets a directory in the cgroup2 tree, which is where hugetlb lives there.

mod blkio;
mod cpu;
mod cpuacct;
mod cpuset;
mod devices;
mod freezer;
mod hugetlb;
mod memory;
mod network;
pub(crate) mod pids;

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::common::{self, join, write_file};
use crate::mountinfo::{CgroupMounts, V1Hierarchy};
use crate::{CgroupManager, ContainerMount, Error, Result, Stats, V1Mount};

/// A container's cgroup on a v1 (or hybrid) host.
#[derive(Debug)]
pub struct Manager {
    path: String,
    hierarchies: Vec<V1Hierarchy>,
    /// The hybrid cgroup2 mount point (`/sys/fs/cgroup/unified`), when there is one.
    unified: Option<PathBuf>,
}

impl Manager {
    /// Make the container's directory in every mounted v1 hierarchy (and in the hybrid
    /// cgroup2 tree), preparing each new cpuset level so it can take tasks.
    pub fn create(path: String, mounts: &CgroupMounts) -> Result<Self> {
        let manager = Self::begin(path, mounts)?;
        manager.complete()?;
        Ok(manager)
    }

    /// The first stage of [`Manager::create`]: only the directory in the hybrid cgroup2 tree,
    /// which a process is born into (see [`crate::Entry`]).
    pub fn begin(path: String, mounts: &CgroupMounts) -> Result<Self> {
        let mut manager = Self::open(path, mounts)?;
        if let Some(root) = &manager.unified {
            match crate::v2::create_dir(root, &manager.path) {
                Ok(_) => {}
                // A read-only or foreign cgroup2 tree (berth itself in a container): the v1
                // hierarchies are what matters; only hugetlb is lost, and `set` says so.
                Err(Error::Create { path, source })
                    if source.kind() == std::io::ErrorKind::PermissionDenied
                        || source.raw_os_error() == Some(libc::EROFS) =>
                {
                    tracing::warn!(path = %path.display(), error = %source, "not using the hybrid cgroup2 tree");
                    manager.unified = None;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(manager)
    }

    /// The second stage: the directories in the v1 hierarchies.
    pub fn complete(&self) -> Result<()> {
        for h in &self.hierarchies {
            let is_cpuset = h.controllers.iter().any(|c| c == "cpuset");
            common::create_levels(&h.mount_point, &self.path, |parent, dir| {
                if is_cpuset {
                    cpuset::init_level(parent, dir)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// A manager for an existing cgroup; touches nothing.
    pub fn open(path: String, mounts: &CgroupMounts) -> Result<Self> {
        if mounts.v1.is_empty() {
            return Err(Error::Unsupported(
                "cgroup v1".to_string(),
                "no cgroup v1 hierarchy is mounted (see /proc/self/mountinfo)".to_string(),
            ));
        }
        // The hybrid tree is used only when it lives beside the v1 hierarchies and has a
        // controller to offer; a bare cgroup2 mount elsewhere is someone else's.
        let unified = mounts
            .v2
            .iter()
            .find(|p| {
                std::fs::read_to_string(p.join("cgroup.controllers"))
                    .map(|c| !c.trim().is_empty())
                    .unwrap_or(false)
            })
            .cloned();
        Ok(Self {
            path,
            hierarchies: mounts.v1.clone(),
            unified,
        })
    }

    /// Whether the container's directory exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.hierarchies
            .iter()
            .any(|h| join(&h.mount_point, &self.path).is_dir())
    }

    /// The container's directory in the v1 hierarchy that has `controller`, if one is
    /// mounted.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.dir(controller)
    }

    /// The container's directory in the hybrid cgroup2 tree (where hugetlb lives on hybrid
    /// hosts), if the host has one with controllers.
    pub fn unified_dir(&self) -> Option<PathBuf> {
        self.unified.as_ref().map(|root| join(root, &self.path))
    }

    /// The container's directory in every hierarchy (v1 ones and the hybrid cgroup2 tree),
    /// whether it exists or not.
    pub fn dirs_with_unified(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| join(&h.mount_point, &self.path))
            .chain(self.unified_dir())
            .collect()
    }

    fn dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| join(&h.mount_point, &self.path))
    }

    fn require(&self, controller: &str, what: &str) -> Result<PathBuf> {
        self.dir(controller).ok_or_else(|| {
            Error::Unsupported(
                what.to_string(),
                format!("the {controller} cgroup controller is not mounted"),
            )
        })
    }

    /// The directory whose cgroup.procs lists the container's processes: any real
    /// controller hierarchy will do; prefer the ones every host has.
    fn procs_dir(&self) -> Option<PathBuf> {
        ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| {
                self.hierarchies
                    .first()
                    .map(|h| join(&h.mount_point, &self.path))
            })
    }

    pub(crate) fn all_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| join(&h.mount_point, &self.path))
            .collect()
    }
}

impl CgroupManager for Manager {
    fn apply(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for dir in self.all_dirs() {
            write_file(&dir.join("cgroup.procs"), &pid)?;
        }
        if let Some(dir) = self.unified_dir() {
            write_file(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        // cpuset first: the other controllers do not care, but a task moved in later needs
        // the cpus/mems the container will have.
        if let Some(cpu) = r.cpu() {
            if cpu.cpus().is_some() || cpu.mems().is_some() {
                cpuset::set(
                    &self.require("cpuset", "linux.resources.cpu.cpus/mems")?,
                    cpu,
                )?;
            }
            if cpu::wants_cpu_controller(cpu) {
                cpu::set(&self.require("cpu", "linux.resources.cpu")?, cpu)?;
            }
        }
        if let Some(mem) = r.memory() {
            memory::set(&self.require("memory", "linux.resources.memory")?, mem)?;
        }
        if let Some(p) = r.pids() {
            pids::set(&self.require("pids", "linux.resources.pids")?, p)?;
        }
        if let Some(b) = r.block_io() {
            blkio::set(&self.require("blkio", "linux.resources.blockIO")?, b)?;
        }
        if let Some(limits) = r.hugepage_limits() {
            if !limits.is_empty() {
                match (self.dir("hugetlb"), self.unified_dir()) {
                    (Some(dir), _) => hugetlb::set_v1(&dir, limits)?,
                    (None, Some(dir)) => crate::v2::hugetlb::set(&dir, limits)?,
                    (None, None) => {
                        return Err(Error::Unsupported(
                            "linux.resources.hugepageLimits".to_string(),
                            "no hugetlb controller in a v1 hierarchy or in the cgroup2 tree"
                                .to_string(),
                        ))
                    }
                }
            }
        }
        if let Some(rules) = r.devices() {
            devices::set(&self.require("devices", "linux.resources.devices")?, rules)?;
        }
        if let Some(net) = r.network() {
            network::set(self.dir("net_cls"), self.dir("net_prio"), net)?;
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::Unsupported(
                "linux.resources.unified".to_string(),
                "it applies to cgroup v2 only and this host is v1".to_string(),
            ));
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            tracing::warn!(path = %self.path, "linux.resources.rdma is ignored");
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        freezer::freeze(&self.require("freezer", "freeze")?)
    }

    fn thaw(&self) -> Result<()> {
        freezer::thaw(&self.require("freezer", "thaw")?)
    }

    fn is_frozen(&self) -> Result<bool> {
        freezer::is_frozen(&self.require("freezer", "freeze")?)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        match self.procs_dir() {
            Some(dir) => common::pids_recursive(&dir),
            None => Ok(Vec::new()),
        }
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        if let Some(dir) = self.dir("cpuacct") {
            let mut cpu = cpuacct::stats(&dir)?;
            if let Some(cpu_dir) = self.dir("cpu") {
                cpu.throttling = cpu::throttling(&cpu_dir)?;
            }
            stats.cpu = Some(cpu);
        }
        if let Some(dir) = self.dir("memory") {
            stats.memory = Some(memory::stats(&dir)?);
        }
        if let Some(dir) = self.dir("pids") {
            stats.pids = Some(pids::stats(&dir)?);
        }
        if let Some(dir) = self.dir("blkio") {
            stats.blkio = Some(blkio::stats(&dir)?);
        }
        if let Some(dir) = self.dir("hugetlb") {
            stats.hugetlb = hugetlb::stats_v1(&dir)?;
        } else if let Some(dir) = self.unified_dir() {
            stats.hugetlb = crate::v2::hugetlb::stats(&dir)?;
        }
        Ok(stats)
    }

    fn destroy(&self) -> Result<()> {
        // A frozen task cannot act on SIGKILL until thawed (v1 freezer), so thaw first.
        if let Some(dir) = self.dir("freezer") {
            match freezer::thaw(&dir) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let procs_dir = self.procs_dir();
        if let Some(dir) = &procs_dir {
            let gone = common::wait_until(Duration::from_secs(10), || {
                let pids = common::pids_recursive(dir)?;
                common::kill_all(&pids)?;
                Ok(pids.is_empty())
            })?;
            if !gone {
                return Err(Error::Timeout {
                    what: "waiting for the processes of".to_string(),
                    path: dir.clone(),
                });
            }
        }
        for h in &self.hierarchies {
            common::remove_cgroup_dirs(&h.mount_point, &self.path)?;
        }
        if let Some(root) = &self.unified {
            common::remove_cgroup_dirs(root, &self.path)?;
        }
        Ok(())
    }

    fn oom_kills(&self) -> Result<u64> {
        memory::oom_kills(&self.require("memory", "oom_kills")?)
    }

    fn container_mount(&self) -> ContainerMount {
        ContainerMount::V1(
            self.hierarchies
                .iter()
                .map(|h| V1Mount {
                    name: h.dir_name(),
                    options: h.mount_options(),
                    host_path: join(&h.mount_point, &self.path),
                })
                .collect(),
        )
    }

    fn path(&self) -> &str {
        &self.path
    }
}

/// Write a signed OCI value to a v1 knob, where -1 means unlimited and anything below is
/// a mistake.
pub(crate) fn write_i64(path: &Path, field: &str, value: i64) -> Result<()> {
    if value < -1 {
        return Err(Error::InvalidResource {
            field: field.to_string(),
            reason: format!("{value} is below -1"),
        });
    }
    write_file(path, &value.to_string())
}

/// Write a knob the kernel may lack (deprecated or compiled out): absent or refused as
/// unsupported means warn and go on, as the OCI spec allows for best-effort fields.
pub(crate) fn write_optional(path: &Path, data: &str, field: &str) -> Result<()> {
    match write_file(path, data) {
        Ok(()) => Ok(()),
        Err(Error::Write { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            tracing::warn!(path = %path.display(), field, "not supported by this kernel; ignored");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_dirs_follow_mountinfo() {
        let mounts = crate::mountinfo::parse(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /nonexistent/unified rw - cgroup2 cgroup2 rw\n",
        );
        let m = Manager::open("/docker/abc".to_string(), &mounts).unwrap();
        // The cgroup2 mount offers no controllers (cannot even be read): not used.
        assert_eq!(m.unified_dir(), None);
        // cpu and cpuacct share one co-mounted hierarchy.
        assert_eq!(
            m.controller_dir("cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc"))
        );
        assert_eq!(m.controller_dir("cpu"), m.controller_dir("cpuacct"));
        assert_eq!(m.controller_dir("pids"), None);
        let ContainerMount::V1(v1) = m.container_mount() else {
            panic!("v1 manager must give V1 mounts");
        };
        let summary: Vec<(String, String, PathBuf)> = v1
            .into_iter()
            .map(|e| (e.name, e.options, e.host_path))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "cpu,cpuacct".to_string(),
                    "cpu,cpuacct".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc")
                ),
                (
                    "memory".to_string(),
                    "memory".to_string(),
                    PathBuf::from("/sys/fs/cgroup/memory/docker/abc")
                ),
                (
                    "systemd".to_string(),
                    "none,name=systemd".to_string(),
                    PathBuf::from("/sys/fs/cgroup/systemd/docker/abc")
                ),
            ]
        );
        // A request for an unmounted controller is refused by name.
        let err = m
            .set(
                &serde_json::from_str(r#"{"pids": {"limit": 5}}"#)
                    .expect("valid LinuxResources JSON"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("pids"), "{err}");
        assert!(Manager::open("/x".to_string(), &CgroupMounts::default()).is_err());
    }
}
