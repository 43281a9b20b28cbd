//! The v1 backend on a real kernel (this machine is hybrid: v1 controllers plus a cgroup2
//! tree with hugetlb). Needs root; skips with a reason elsewhere, fails under CI=true.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use berth_cgroups::{AnyManager, CgroupManager, ContainerMount, Error, Hierarchy};
use common::suite;
use common::*;

const CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids",
];

/// Check the host can run these tests; print why not otherwise.
fn requirements() -> bool {
    if !is_root() {
        return !skip("not root", None);
    }
    if berth_cgroups::detect() != Hierarchy::V1 {
        return !skip("host is not cgroup v1/hybrid", None);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for c in CONTROLLERS {
        let mounted = mountinfo.lines().any(|l| {
            l.split(" - ").nth(1).is_some_and(|r| {
                r.starts_with("cgroup ")
                    && r.rsplit(' ')
                        .next()
                        .is_some_and(|o| o.split(',').any(|x| x == *c))
            })
        });
        if !mounted {
            return !skip(&format!("v1 controller {c} is not mounted"), None);
        }
    }
    true
}

fn v1(m: &AnyManager) -> &berth_cgroups::v1::Manager {
    match m {
        AnyManager::V1(m) => m,
        AnyManager::V2(_) => panic!("expected the v1 backend"),
    }
}

fn dir(cg: &Cgroup, controller: &str) -> PathBuf {
    v1(cg)
        .controller_dir(controller)
        .unwrap_or_else(|| panic!("{controller} not mounted"))
}

#[test]
fn invalid_paths_are_refused() {
    suite::invalid_paths_are_refused();
}

#[test]
fn memory_limit_oom_kills() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let mem = suite::memory_limit_oom_kills(&cg);
    let d = dir(&cg, "memory");
    assert_eq!(
        read(&d.join("memory.limit_in_bytes")),
        suite::OOM_LIMIT.to_string()
    );
    assert!(keyed(&d.join("memory.oom_control"), "oom_kill") >= 1);
    // The peak reached the limit (failcnt is not reliable: recent kernels leave it at 0).
    assert!(mem.usage.max >= suite::OOM_LIMIT * 3 / 4, "{mem:?}");
}

#[test]
fn pids_limit_stops_forks() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    suite::pids_limit_stops_forks(&cg);
    assert_eq!(read(&dir(&cg, "pids").join("pids.max")), "10");
}

#[test]
fn cpu_quota_shares_and_cpuset() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    // A new cpuset level is seeded from its parent, or no task could join it.
    let cpuset = dir(&cg, "cpuset");
    let parent_cpus = read(&cpuset.parent().unwrap().join("cpuset.cpus"));
    assert!(!parent_cpus.is_empty());
    assert_eq!(read(&cpuset.join("cpuset.cpus")), parent_cpus);
    assert!(!read(&cpuset.join("cpuset.mems")).is_empty());

    cg.set(&resources(
        r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}}"#,
    ))
    .unwrap();
    let cpu = dir(&cg, "cpu");
    assert_eq!(read(&cpu.join("cpu.shares")), "512");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpuset.join("cpuset.cpus")), "0");
    assert_eq!(read(&cpuset.join("cpuset.mems")), "0");

    // A task can join and runs on the allowed cpu only.
    let mut child = Script::spawn("grep Cpus_allowed_list /proc/self/status");
    cg.apply(child.pid()).unwrap();
    child.start();
    let (status, out, _) = child.finish(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        out.trim().ends_with("\t0") || out.trim().ends_with(" 0"),
        "{out:?}"
    );

    // Unlimited again.
    cg.set(&resources(r#"{"cpu": {"quota": -1}}"#)).unwrap();
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "-1");
}

#[test]
fn devices_deny_and_update() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    suite::devices_deny_and_update(&cg);
    // The kernel's own list after the last update: everything denied but /dev/zero.
    assert_eq!(read(&dir(&cg, "devices").join("devices.list")), "c 1:5 rwm");
}

#[test]
fn freeze_and_thaw() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let state = dir(&cg, "freezer").join("freezer.state");
    suite::freeze_and_thaw(&cg, |frozen| {
        assert_eq!(read(&state), if frozen { "FROZEN" } else { "THAWED" });
    });
}

#[test]
fn stats_and_pids() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let stats = suite::stats_and_pids(&cg);
    assert!(!stats.cpu.as_ref().unwrap().usage.percpu.is_empty());
    assert!(stats.blkio.is_some());
}

#[test]
fn hugetlb_limit_in_the_hybrid_tree() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let Some(unified) = v1(&cg).unified_dir() else {
        skip(
            "no cgroup2 tree with controllers beside v1 (not hybrid)",
            None,
        );
        return;
    };
    if v1(&cg).controller_dir("hugetlb").is_some() || !unified.join("hugetlb.2MB.max").exists() {
        skip("hugetlb 2MB is not in the hybrid cgroup2 tree here", None);
        return;
    }
    cg.set(&resources(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
    ))
    .unwrap();
    assert_eq!(read(&unified.join("hugetlb.2MB.max")), "4194304");
    let stats = cg.stats().unwrap();
    assert!(stats.hugetlb.contains_key("2MB"), "{:?}", stats.hugetlb);
    // The process joins the cgroup2 tree too, so the limit applies to it.
    let mut child = Script::spawn("exec sleep 100");
    cg.apply(child.pid()).unwrap();
    child.start();
    assert_eq!(read(&unified.join("cgroup.procs")), child.pid().to_string());
}

#[test]
fn container_mount_lists_every_hierarchy() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let path = unique_path();
    let cg = Cgroup::create(&path);
    let ContainerMount::V1(mounts) = cg.container_mount() else {
        panic!("v1 host must give V1 mounts");
    };
    for c in CONTROLLERS {
        let m = mounts
            .iter()
            .find(|m| m.options.split(',').any(|o| o == *c))
            .unwrap_or_else(|| panic!("no mount for {c}: {mounts:?}"));
        assert!(m.host_path.ends_with(path.trim_start_matches('/')));
        assert!(m.host_path.is_dir(), "{}", m.host_path.display());
    }
    if let Some(systemd) = mounts.iter().find(|m| m.options.contains("name=systemd")) {
        assert_eq!(systemd.name, "systemd");
        assert_eq!(systemd.options, "none,name=systemd");
        assert!(systemd.host_path.is_dir());
    }
}

#[test]
fn destroy_kills_and_removes_everything() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    suite::destroy_kills_and_removes_everything(|cg| {
        let ContainerMount::V1(mounts) = cg.container_mount() else {
            panic!("v1 host must give V1 mounts");
        };
        let mut dirs: Vec<PathBuf> = mounts.into_iter().map(|m| m.host_path).collect();
        dirs.extend(v1(cg).unified_dir());
        dirs
    });
}

#[test]
fn memory_and_pids_knobs() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    cg.set(&resources(
        r#"{"memory": {"limit": 67108864, "reservation": 16777216, "swappiness": 10,
                       "disableOOMKiller": true},
            "pids": {"limit": -1}}"#,
    ))
    .unwrap();
    let mem = dir(&cg, "memory");
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(&mem.join("memory.soft_limit_in_bytes")), "16777216");
    assert_eq!(read(&mem.join("memory.swappiness")), "10");
    assert!(read(&mem.join("memory.oom_control")).contains("oom_kill_disable 1"));
    assert_eq!(read(&dir(&cg, "pids").join("pids.max")), "max");
    // Raising the limit above memory+swap, then unlimited: the write order keeps the kernel's
    // memsw >= memory invariant.
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        cg.set(&resources(
            r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#,
        ))
        .unwrap();
        cg.set(&resources(
            r#"{"memory": {"limit": 134217728, "swap": 268435456}}"#,
        ))
        .unwrap();
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), "134217728");
        assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), "268435456");
        cg.set(&resources(r#"{"memory": {"limit": -1, "swap": -1}}"#))
            .unwrap();
        let unlimited: u64 = read(&mem.join("memory.limit_in_bytes")).parse().unwrap();
        assert!(unlimited > 1 << 60);
    }
    let err = cg
        .set(&resources(
            r#"{"memory": {"limit": 33554432, "swap": 1048576}}"#,
        ))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResource { .. }), "{err}");
}

#[test]
fn blkio_throttles() {
    if !requirements() {
        return;
    }
    let Some(disk) = first_disk() else {
        skip("no block device to throttle", None);
        return;
    };
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let (major, minor) = disk.split_once(':').unwrap();
    cg.set(&resources(&format!(
        r#"{{"blockIO": {{"throttleReadBpsDevice": [{{"major": {major}, "minor": {minor}, "rate": 1048576}}],
                         "throttleWriteIopsDevice": [{{"major": {major}, "minor": {minor}, "rate": 100}}]}}}}"#
    )))
    .unwrap();
    let blkio = dir(&cg, "blkio");
    assert_eq!(
        read(&blkio.join("blkio.throttle.read_bps_device")),
        format!("{disk} 1048576")
    );
    assert_eq!(
        read(&blkio.join("blkio.throttle.write_iops_device")),
        format!("{disk} 100")
    );
}
