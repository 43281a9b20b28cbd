//! The v2 backend on a real kernel whose only hierarchy is cgroup v2. This machine is hybrid,
//! so these run in a VM (.ci/cgroup2-vm-tests); here they skip, unless
//! BERTH_REQUIRE_CGROUP2=1 says the host must be v2.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use berth_cgroups::{AnyManager, CgroupManager, ContainerMount, Error, Hierarchy};
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

fn events(path: &std::path::Path, key: &str) -> u64 {
    read(path)
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key} "))
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or(0)
}

#[test]
fn invalid_paths_are_refused() {
    for bad in ["/a/../b", "system.slice:docker:abc", "/"] {
        match berth_cgroups::create(Some(bad), "x") {
            Err(Error::InvalidPath(..)) => {}
            other => panic!("{bad}: expected InvalidPath, got {other:?}"),
        }
    }
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
    let limit: u64 = 32 << 20;
    cg.set(&resources(&format!(
        r#"{{"memory": {{"limit": {limit}, "swap": {limit}}}}}"#
    )))
    .unwrap();
    let d = dir(&cg);
    assert_eq!(read(&d.join("memory.max")), limit.to_string());
    if d.join("memory.swap.max").exists() {
        // OCI swap is memory+swap: equal to the limit means no swap at all.
        assert_eq!(read(&d.join("memory.swap.max")), "0");
    }
    let mut child = Script::spawn("head -c 200M /dev/zero | tail");
    cg.apply(child.pid()).unwrap();
    child.start();
    let (status, _, _) = child.finish(Duration::from_secs(120));
    assert!(
        !status.success(),
        "the allocation beyond the limit survived"
    );
    assert!(
        eventually(Duration::from_secs(5), || cg.oom_kills().unwrap() >= 1),
        "no OOM kill counted"
    );
    assert!(events(&d.join("memory.events"), "oom_kill") >= 1);
    let mem = cg.stats().unwrap().memory.expect("memory stats");
    assert_eq!(mem.usage.limit, limit);
    assert!(mem.oom_kill >= 1);
}

#[test]
fn pids_limit_stops_forks() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    cg.set(&resources(r#"{"pids": {"limit": 10}}"#)).unwrap();
    assert_eq!(read(&dir(&cg).join("pids.max")), "10");
    let mut child = Script::spawn(&fork_bomb_script());
    cg.apply(child.pid()).unwrap();
    child.start();
    let (_, _, err) = child.finish(Duration::from_secs(60));
    assert!(
        err.to_lowercase().contains("fork"),
        "no fork failure reported: {err:?}"
    );
    let left = cg.pids().unwrap();
    assert!(
        left.len() <= 10,
        "{} processes under pids.max=10",
        left.len()
    );
    let pids = cg.stats().unwrap().pids.expect("pids stats");
    assert_eq!(pids.limit, 10);
    assert!(pids.current <= 10);
    assert!(events(&dir(&cg).join("pids.events"), "max") >= 1);
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
    cg.set(&device_rules(false)).unwrap();
    let mut child = Script::spawn(DEVICE_SCRIPT);
    cg.apply(child.pid()).unwrap();
    child.start();
    let (_, out, err) = child.finish(Duration::from_secs(20));
    assert!(out.contains("zero-ok"), "{out:?} {err:?}");
    assert!(out.contains("null-denied"), "{out:?} {err:?}");

    // update: the new program replaces the old one (were the old one still attached, it
    // would still deny /dev/null).
    cg.set(&device_rules(true)).unwrap();
    let mut child = Script::spawn(DEVICE_SCRIPT);
    cg.apply(child.pid()).unwrap();
    child.start();
    let (_, out, err) = child.finish(Duration::from_secs(20));
    assert!(
        out.contains("zero-ok") && out.contains("null-ok"),
        "{out:?} {err:?}"
    );

    // And back: denial returns.
    cg.set(&device_rules(false)).unwrap();
    let mut child = Script::spawn(DEVICE_SCRIPT);
    cg.apply(child.pid()).unwrap();
    child.start();
    let (_, out, err) = child.finish(Duration::from_secs(20));
    assert!(out.contains("null-denied"), "{out:?} {err:?}");
}

#[test]
fn freeze_and_thaw() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let tmp = tempfile::tempdir().unwrap();
    let counter = tmp.path().join("n");
    let mut child = Script::spawn(&format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.02; done",
        counter.display()
    ));
    cg.apply(child.pid()).unwrap();
    child.start();
    assert!(eventually(Duration::from_secs(10), || counter.exists()
        && !read(&counter).is_empty()));

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    assert_eq!(read(&dir(&cg).join("cgroup.freeze")), "1");
    assert_eq!(events(&dir(&cg).join("cgroup.events"), "frozen"), 1);
    let frozen_at = read(&counter);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&counter), frozen_at, "a frozen task kept running");

    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    assert!(
        eventually(Duration::from_secs(10), || read(&counter) != frozen_at),
        "the task did not resume after thaw"
    );
    cg.freeze().unwrap();
    cg.destroy().unwrap();
    assert!(!cg.exists());
}

#[test]
fn stats_and_pids() {
    if !requirements() {
        return;
    }
    let _serial = serial();
    let cg = Cgroup::create(&unique_path());
    let mut child = Script::spawn("exec sleep 100");
    cg.apply(child.pid()).unwrap();
    child.start();
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{}/exe", child.pid()))
            .is_ok_and(|p| p.to_string_lossy().contains("sleep"))
    }));
    assert_eq!(cg.pids().unwrap(), vec![child.pid()]);
    let stats = cg.stats().unwrap();
    assert_eq!(stats.pids.as_ref().unwrap().current, 1);
    let mem = stats.memory.as_ref().unwrap();
    assert!(mem.usage.usage > 0, "memory usage is 0");
    assert!(mem.raw.contains_key("anon"));
    assert!(
        stats.cpu.as_ref().unwrap().usage.total > 0,
        "cpu usage is 0"
    );
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["cpu"]["throttling"]["throttledPeriods"].is_u64());
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
    let top = unique_path();
    let path = format!("{top}/pod/ctr");
    let cg = Cgroup::create(&path);
    let reopened = berth_cgroups::open(&path).unwrap();
    assert!(reopened.exists());
    let mut child = Script::spawn("exec sleep 100");
    reopened.apply(child.pid()).unwrap();
    child.start();
    let leaf = dir(&cg);
    reopened.destroy().unwrap();
    let (status, _, _) = child.finish(Duration::from_secs(20));
    assert!(!status.success(), "the process survived destroy");
    assert!(!leaf.exists(), "{} left behind", leaf.display());
    let top_dir = leaf.parent().unwrap().parent().unwrap();
    assert!(!top_dir.exists(), "{} left behind", top_dir.display());
    reopened.destroy().unwrap();
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
    let Some(disk) = first_disk() else {
        println!("SKIP (io part): no block device in this VM");
        return;
    };
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
