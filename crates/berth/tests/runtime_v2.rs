//! End-to-end runtime tests that need a pure cgroup v2 host. This machine is hybrid, so they
//! run in the cgroup2 VM (.ci/cgroup2-vm-tests, with BERTH_REQUIRE_CGROUP2=1); elsewhere they
//! skip with the reason. They show, through real containers: a memory limit that OOM-kills,
//! a pids limit that stops a fork bomb, cpu.max and cpu.weight written and holding, a device
//! denied by the eBPF program, and stats read back.

mod common;

use common::*;
use serde_json::json;

fn require_v2() -> bool {
    if require_root() {
        return true;
    }
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if v2 {
        return false;
    }
    if std::env::var("BERTH_REQUIRE_CGROUP2").as_deref() == Ok("1") {
        panic!("BERTH_REQUIRE_CGROUP2=1 but /sys/fs/cgroup is not cgroup2");
    }
    eprintln!("SKIP: host is not cgroup v2 (runs in .ci/cgroup2-vm-tests)");
    true
}

#[test]
fn v2_memory_limit_oom_kills() {
    if require_v2() {
        return;
    }
    let cmd = format!("cat /sys/fs/cgroup/memory.max; {DD_64M}");
    let mut b = Bundle::new("v2oom", &["sh", "-c", &cmd]);
    limit_memory_32m(&mut b);
    let text = ok(&b.run());
    assert!(
        text.contains("33554432"),
        "memory.max not seen inside: {text}"
    );
    assert!(text.contains("dd=137"), "dd was not OOM-killed: {text}");
}

#[test]
fn v2_pids_limit_stops_a_fork_bomb() {
    if require_v2() {
        return;
    }
    assert_pids_limit_stops_a_fork_bomb("v2pids");
}

#[test]
fn v2_cpu_max_and_weight_hold_and_stats_read_back() {
    if require_v2() {
        return;
    }
    let mut b = Bundle::new("v2cpu", &["sh", "-c", "while :; do :; done"]);
    b.spec["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000, "shares": 512});
    let v = assert_cpu_quota_holds(&b);
    let dir = std::path::Path::new("/sys/fs/cgroup/berth-test").join(&b.id);
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
        "10000 100000"
    );
    // shares 512 → weight 1 + (510 * 9999) / 262142 = 20
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.weight"))
            .unwrap()
            .trim(),
        "20"
    );
    assert!(v["data"]["pids"]["current"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{v}"
    );
    // update changes cpu.max on the running container
    ok(&b.runtime(&["update", "--cpu-quota", "50000", &b.id]));
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
        "50000 100000"
    );
    ok(&b.runtime(&["delete", "--force", &b.id]));
    assert!(!dir.exists(), "cgroup left after delete");
}

#[test]
fn v2_device_denied_by_the_ebpf_program() {
    if require_v2() {
        return;
    }
    assert_a_device_outside_the_rules_is_denied("v2dev");
}

#[test]
fn v2_pause_resume_and_cgroup_namespace() {
    if require_v2() {
        return;
    }
    let b = Bundle::new("v2pause", &["sh", "-c", "cat /proc/self/cgroup; sleep 100"]);
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    ok(&b.runtime(&["pause", &b.id]));
    assert_eq!(b.status(), "paused");
    ok(&b.runtime(&["resume", &b.id]));
    assert_eq!(b.status(), "running");
    let out = b.runtime(&["exec", &b.id, "cat", "/proc/self/cgroup"]);
    // in its own cgroup namespace the container sees itself at the root
    assert_eq!(ok(&out).trim(), "0::/");
}
