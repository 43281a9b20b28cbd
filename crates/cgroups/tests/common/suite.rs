//! The conformance suite of `CgroupManager`: behaviour every backend must show, observed
//! through the trait only (limits enforced on real processes, stats, freeze, destroy). Each
//! backend's test file runs every case, then checks its own kernel files.

use std::path::PathBuf;
use std::time::Duration;

use berth_cgroups::{CgroupManager, Error, MemoryStats, Stats};

use super::*;

pub const OOM_LIMIT: u64 = 32 << 20;

pub fn invalid_paths_are_refused() {
    for bad in ["/a/../b", "system.slice:docker:abc", "/", "a/../../etc"] {
        match berth_cgroups::create(Some(bad), "x") {
            Err(Error::InvalidPath(..)) => {}
            other => panic!("{bad}: expected InvalidPath, got {other:?}"),
        }
    }
}

/// A child allocating far beyond a 32 MiB limit is OOM-killed, and the kill is counted.
pub fn memory_limit_oom_kills(cg: &Cgroup) -> MemoryStats {
    cg.set(&resources(&format!(
        r#"{{"memory": {{"limit": {OOM_LIMIT}, "swap": {OOM_LIMIT}}}}}"#
    )))
    .unwrap();
    // `tail` keeps everything it reads when there is no newline.
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
    let mem = cg.stats().unwrap().memory.expect("memory stats");
    assert_eq!(mem.usage.limit, OOM_LIMIT);
    assert!(mem.oom_kill >= 1);
    mem
}

/// Under pids.max=10 a shell starting 50 background processes sees forks fail.
pub fn pids_limit_stops_forks(cg: &Cgroup) {
    cg.set(&resources(r#"{"pids": {"limit": 10}}"#)).unwrap();
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
    assert!(pids.current <= 10 && pids.current >= 1);
}

fn run_device_script(cg: &Cgroup) -> String {
    let mut child = Script::spawn(DEVICE_SCRIPT);
    cg.apply(child.pid()).unwrap();
    child.start();
    let (_, out, err) = child.finish(Duration::from_secs(20));
    assert!(
        out.contains("zero-ok"),
        "allowed /dev/zero refused: {out:?} {err:?}"
    );
    out
}

/// /dev/null denied while /dev/zero is allowed; an update allows it; another denies it again
/// (so each update replaces the previous rules rather than adding to them).
pub fn devices_deny_and_update(cg: &Cgroup) {
    cg.set(&device_rules(false)).unwrap();
    let out = run_device_script(cg);
    assert!(out.contains("null-denied"), "{out:?}");
    cg.set(&device_rules(true)).unwrap();
    let out = run_device_script(cg);
    assert!(out.contains("null-ok"), "{out:?}");
    cg.set(&device_rules(false)).unwrap();
    let out = run_device_script(cg);
    assert!(out.contains("null-denied"), "{out:?}");
}

/// A looping child stops while frozen and resumes after thaw; `frozen_files(true/false)`
/// lets the backend check its own files in each state. Destroy copes with a frozen cgroup.
pub fn freeze_and_thaw(cg: &Cgroup, frozen_files: impl Fn(bool)) {
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
    frozen_files(true);
    let frozen_at = read(&counter);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(read(&counter), frozen_at, "a frozen task kept running");

    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    frozen_files(false);
    assert!(
        eventually(Duration::from_secs(10), || read(&counter) != frozen_at),
        "the task did not resume after thaw"
    );
    cg.freeze().unwrap();
    cg.destroy().unwrap();
    assert!(!cg.exists());
    let (status, _, _) = child.finish(Duration::from_secs(10));
    assert!(!status.success());
}

/// One `sleep`: pids() lists exactly it, stats count it and show usage.
pub fn stats_and_pids(cg: &Cgroup) -> Stats {
    let mut child = Script::spawn("exec sleep 100");
    cg.apply(child.pid()).unwrap();
    child.start();
    // asleep in `sleep`, not merely exec'd: the CPU time of a task still on a CPU is charged
    // to its cgroup only when it leaves it (seen in CI: a usage of 0 read in between)
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{}/exe", child.pid()))
            .is_ok_and(|p| p.to_string_lossy().contains("sleep"))
            && std::fs::read_to_string(format!("/proc/{}/stat", child.pid())).is_ok_and(|st| {
                st.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('S'))
            })
    }));
    assert_eq!(cg.pids().unwrap(), vec![child.pid()]);
    let stats = cg.stats().unwrap();
    assert_eq!(stats.pids.as_ref().expect("pids stats").current, 1);
    let mem = stats.memory.as_ref().expect("memory stats");
    assert!(mem.usage.usage > 0, "memory usage is 0");
    assert!(!mem.raw.is_empty());
    assert!(
        stats.cpu.as_ref().expect("cpu stats").usage.total > 0,
        "cpu usage is 0"
    );
    // Serialised like runc's `events --stats`.
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["cpu"]["throttling"]["throttledPeriods"].is_u64());
    assert!(json["memory"]["usage"]["limit"].is_u64());
    stats
}

/// destroy() through a manager from open(), with a live process in a nested path: the
/// process dies and `dirs` (the backend's directories for the cgroup, listed before) are
/// gone; the parents stay, as runc leaves them, until remove_unused takes them (the test's
/// top directory refused while it still holds a cgroup). A second destroy succeeds.
pub fn destroy_kills_and_removes_everything(dirs: impl Fn(&Cgroup) -> Vec<PathBuf>) {
    let top = unique_path();
    let path = format!("{top}/pod/ctr");
    let cg = Cgroup::create(&path);
    let dirs = dirs(&cg);
    assert!(!dirs.is_empty());
    let reopened = berth_cgroups::open(&path).unwrap();
    assert!(reopened.exists());
    assert_eq!(reopened.path(), path);
    let mut child = Script::spawn("exec sleep 100");
    reopened.apply(child.pid()).unwrap();
    child.start();
    reopened.destroy().unwrap();
    let (status, _, _) = child.finish(Duration::from_secs(20));
    assert!(!status.success(), "the process survived destroy");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
        assert!(
            d.parent().unwrap().exists(),
            "{}: the parent went too",
            d.display()
        );
    }
    assert!(!cg.exists());
    reopened.destroy().unwrap();
    // the top holds "pod": left alone; then "pod" goes, and the top after it
    berth_cgroups::remove_unused(&top).unwrap();
    for d in &dirs {
        assert!(d.parent().unwrap().parent().unwrap().exists());
    }
    berth_cgroups::remove_unused(&format!("{top}/pod")).unwrap();
    berth_cgroups::remove_unused(&top).unwrap();
    for d in &dirs {
        let top_dir = d.parent().unwrap().parent().unwrap();
        assert!(!top_dir.exists(), "{} left behind", top_dir.display());
    }
}
