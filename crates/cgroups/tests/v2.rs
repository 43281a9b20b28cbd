//! The v2 backend on a real kernel whose only hierarchy is cgroup v2. This machine is hybrid,
//! so these run in a VM (.ci/cgroup2-vm-tests); here they skip, unless
//! BERTH_REQUIRE_CGROUP2=1 says the host must be v2.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use berth_cgroups::{AnyManager, CgroupManager, ContainerMount, Error, Hierarchy};
use common::suite;
use common::*;

const REQUIRE: &str = "BERTH_REQUIRE_CGROUP2";

fn requirements() -> bool {
    if berth_cgroups::detect() != Hierarchy::V2 {
        // Not a CI failure: CI runs these in the cgroup v2 VM with BERTH_REQUIRE_CGROUP2=1.
        if std::env::var(REQUIRE).as_deref() == Ok("1") {
            panic!("{REQUIRE}=1 but /sys/fs/cgroup is not cgroup2");
        }
        println!("SKIP: host is not cgroup v2 (runs in .ci/cgroup2-vm-tests)");
        return false;
    }
    if !is_root() {
        return !skip("not root", Some(REQUIRE));
    }
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    for c in ["cpu", "cpuset", "memory", "pids"] {
        if !controllers.split_whitespace().any(|x| x == c) {
            return !skip(
                &format!("cgroup v2 controller {c} is not available"),
                Some(REQUIRE),
            );
        }
    }
    true
}

fn dir(cg: &Cgroup) -> PathBuf {
    match &cg.0 {
        AnyManager::V2(m) => m.dir().to_path_buf(),
        AnyManager::V1(_) => panic!("expected the v2 backend"),
    }
}

#[test]
fn invalid_paths_are_refused() {
    suite::invalid_paths_are_refused();
}

#[test]
fn controllers_enabled_down_the_tree() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let top = unique_path();
    let cg = Cgroup::create(&format!("{top}/pod/ctr"));
    assert_eq!(cg.container_mount(), ContainerMount::Cgroup2);
    let leaf = dir(&cg);
    let leaf_controllers = read(&leaf.join("cgroup.controllers"));
    for c in ["cpu", "memory", "pids"] {
        assert!(
            leaf_controllers.split_whitespace().any(|x| x == c),
            "{c} missing from {leaf_controllers:?}"
        );
    }
    // The leaf enables nothing below itself, so it can hold processes.
    assert_eq!(read(&leaf.join("cgroup.subtree_control")), "");
    let mut child = Script::spawn("exec sleep 100");
    cg.apply(child.pid()).unwrap();
    child.start();
    assert_eq!(cg.pids().unwrap(), vec![child.pid()]);
}

#[test]
fn memory_limit_oom_kills() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    suite::memory_limit_oom_kills(&cg);
    let d = dir(&cg);
    assert_eq!(read(&d.join("memory.max")), suite::OOM_LIMIT.to_string());
    if d.join("memory.swap.max").exists() {
        // OCI swap is memory+swap: equal to the limit means no swap at all.
        assert_eq!(read(&d.join("memory.swap.max")), "0");
    }
    assert!(keyed(&d.join("memory.events"), "oom_kill") >= 1);
}

#[test]
fn pids_limit_stops_forks() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    suite::pids_limit_stops_forks(&cg);
    assert_eq!(read(&dir(&cg).join("pids.max")), "10");
    assert!(keyed(&dir(&cg).join("pids.events"), "max") >= 1);
}

#[test]
fn cpu_weight_max_and_cpuset() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    cg.set(&resources(
        r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}}"#,
    ))
    .unwrap();
    let d = dir(&cg);
    // 1 + (512 - 2) * 9999 / 262142
    assert_eq!(read(&d.join("cpu.weight")), "20");
    assert_eq!(read(&d.join("cpu.max")), "50000 100000");
    assert_eq!(read(&d.join("cpuset.cpus")), "0");
    assert_eq!(read(&d.join("cpuset.mems")), "0");
    let mut child = Script::spawn("grep Cpus_allowed_list /proc/self/status");
    cg.apply(child.pid()).unwrap();
    child.start();
    let (status, out, _) = child.finish(Duration::from_secs(20));
    assert!(status.success());
    assert!(out.trim().ends_with('0'), "{out:?}");
    // update: quota only, the period stays.
    cg.set(&resources(r#"{"cpu": {"quota": -1}}"#)).unwrap();
    assert_eq!(read(&d.join("cpu.max")), "max 100000");
    // Realtime has no v2 knob: refused by name.
    let err = cg
        .set(&resources(r#"{"cpu": {"realtimeRuntime": 1000}}"#))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(..)), "{err}");
}

#[test]
fn devices_ebpf_deny_and_update() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    // v2 has no devices files: only the eBPF program can be doing this. Were an update to
    // leave the previous program attached, /dev/null would stay denied after the update.
    suite::devices_deny_and_update(&cg);
}

#[test]
fn freeze_and_thaw() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let d = dir(&cg);
    suite::freeze_and_thaw(&cg, |frozen| {
        assert_eq!(
            read(&d.join("cgroup.freeze")),
            if frozen { "1" } else { "0" }
        );
        assert_eq!(keyed(&d.join("cgroup.events"), "frozen"), u64::from(frozen));
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
    assert!(stats.memory.as_ref().unwrap().raw.contains_key("anon"));
}

#[test]
fn unified_map() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    cg.set(&resources(
        r#"{"unified": {"memory.high": "50000000", "pids.max": "20"}}"#,
    ))
    .unwrap();
    // memory.high is rounded down to whole pages.
    let high: u64 = read(&dir(&cg).join("memory.high")).parse().unwrap();
    assert!(high <= 50_000_000 && high > 49_990_000, "{high}");
    assert_eq!(read(&dir(&cg).join("pids.max")), "20");
    for bad in [
        r#"{"unified": {"../cgroup.procs": "1"}}"#,
        r#"{"unified": {"a/b": "1"}}"#,
    ] {
        let err = cg.set(&resources(bad)).unwrap_err();
        assert!(matches!(err, Error::InvalidResource { .. }), "{err}");
    }
    let err = cg
        .set(&resources(r#"{"unified": {"no.such.file": "1"}}"#))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(..)), "{err}");
}

#[test]
fn destroy_kills_and_removes_everything() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    suite::destroy_kills_and_removes_everything(|cg| vec![dir(cg)]);
}

#[test]
fn memory_and_io_knobs() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    cg.set(&resources(
        r#"{"memory": {"limit": 67108864, "reservation": 16777216, "swap": 134217728},
            "pids": {"limit": 0}}"#,
    ))
    .unwrap();
    let d = dir(&cg);
    assert_eq!(read(&d.join("memory.max")), "67108864");
    assert_eq!(read(&d.join("memory.low")), "16777216");
    if d.join("memory.swap.max").exists() {
        assert_eq!(read(&d.join("memory.swap.max")), "67108864");
    }
    assert_eq!(read(&d.join("pids.max")), "max");
    cg.set(&resources(r#"{"memory": {"limit": -1, "swap": -1}}"#))
        .unwrap();
    assert_eq!(read(&d.join("memory.max")), "max");
    if d.join("io.weight").exists() {
        cg.set(&resources(r#"{"blockIO": {"weight": 500}}"#))
            .unwrap();
        // 1 + (500 - 10) * 9999 / 990
        assert!(read(&d.join("io.weight")).starts_with("default 4950"));
    }
    let Some(disk) = first_disk() else {
        println!("SKIP (io.max part): no block device here");
        return;
    };
    println!("throttling {disk}");
    let (major, minor) = disk.split_once(':').unwrap();
    cg.set(&resources(&format!(
        r#"{{"blockIO": {{"throttleReadBpsDevice": [{{"major": {major}, "minor": {minor}, "rate": 1048576}}]}}}}"#
    )))
    .unwrap();
    assert!(
        read(&d.join("io.max")).contains(&format!("{disk} rbps=1048576")),
        "{}",
        read(&d.join("io.max"))
    );
}

#[test]
fn hugetlb_limit() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let d = dir(&cg);
    if !d.join("hugetlb.2MB.max").exists() {
        skip("no hugetlb 2MB pages in this cgroup v2 tree", Some(REQUIRE));
        return;
    }
    cg.set(&resources(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
    ))
    .unwrap();
    assert_eq!(read(&d.join("hugetlb.2MB.max")), "4194304");
    assert!(cg.stats().unwrap().hugetlb.contains_key("2MB"));
    let err = cg
        .set(&resources(
            r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#,
        ))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(..)), "{err}");
}
