//! Helpers shared by the privileged cgroup tests: requirement checks that skip (or fail under
//! CI), uniquely named cgroups removed by a guard, and child processes that wait on stdin
//! until they have been moved into the cgroup.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::ops::Deref;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod suite;

use berth_cgroups::{AnyManager, CgroupManager};

/// cgroups are host-global: one test at a time per binary.
static HOST: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    HOST.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Print `SKIP: <reason>` and return true, or fail when the environment demands the test
/// runs (`CI=true`, or the variable named by `require_var` set to 1).
pub fn skip(reason: &str, require_var: Option<&str>) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("requirement missing under CI=true: {reason}");
    }
    if let Some(var) = require_var {
        if std::env::var(var).as_deref() == Ok("1") {
            panic!("requirement missing with {var}=1: {reason}");
        }
    }
    println!("SKIP: {reason}");
    true
}

/// `/berth-test-<pid>-<n>`: unique per process and call.
pub fn unique_path() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/berth-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup that is destroyed when the test ends, panicking or not.
pub struct Cgroup(pub AnyManager);

impl Cgroup {
    pub fn create(path: &str) -> Self {
        match berth_cgroups::create(Some(path), "unused") {
            Ok(m) => Cgroup(m),
            Err(e) => panic!("create {path}: {e}"),
        }
    }
}

impl Deref for Cgroup {
    type Target = AnyManager;
    fn deref(&self) -> &AnyManager {
        &self.0
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup: destroy {}: {e}", self.0.path());
        }
        // destroy leaves the parents of a nested test path: they go here, deepest first
        let mut p = self.0.path().to_string();
        while let Some(i) = p.rfind('/') {
            p.truncate(i);
            if p.is_empty() {
                break;
            }
            let _ = berth_cgroups::remove_unused(&p);
        }
    }
}

/// A `sh -c` child that blocks on stdin until `start`, so it can be put into the cgroup
/// before it runs the script. Killed and reaped on drop.
pub struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Script {
    pub fn spawn(script: &str) -> Self {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn /bin/sh");
        let stdin = child.stdin.take();
        Script { child, stdin }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Let the script run.
    pub fn start(&mut self) {
        let mut stdin = self.stdin.take().expect("started twice");
        stdin.write_all(b"go\n").expect("write to child stdin");
    }

    /// Wait (bounded) for the script to end; returns status, stdout, stderr.
    pub fn finish(&mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                start.elapsed() < timeout,
                "child did not finish in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, out, err)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll until `f` is true (bounded); for counters the kernel updates asynchronously.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The value of `key` in a flat-keyed cgroup file (memory.events, cgroup.events, ...); 0
/// when absent.
pub fn keyed(path: &std::path::Path, key: &str) -> u64 {
    read(path)
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key} "))
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

/// Resources from JSON, as the runtime gets them from config.json.
pub fn resources(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("valid LinuxResources JSON")
}

/// The device rules of the tests: deny everything, allow /dev/zero (1:5); optionally
/// /dev/null (1:3) too.
pub fn device_rules(allow_null: bool) -> oci_spec::runtime::LinuxResources {
    let null = if allow_null {
        r#",{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}"#
    } else {
        ""
    };
    resources(&format!(
        r#"{{"devices": [
            {{"allow": false, "access": "rwm"}},
            {{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}}{null}
        ]}}"#
    ))
}

pub const DEVICE_SCRIPT: &str =
    "echo x > /dev/zero && echo zero-ok; if echo x > /dev/null; then echo null-ok; else echo null-denied; fi";

/// A shell that tries to start 50 background sleeps; under a pids limit most forks fail.
/// The sleeps must not hold the test's stdout/stderr pipes open.
pub fn fork_bomb_script() -> String {
    let list: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    format!(
        "for i in {}; do sleep 30 </dev/null >/dev/null 2>&1 & done; echo all-forked",
        list.join(" ")
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// "major:minor" of a block device to throttle: the first whole disk in /proc/partitions,
/// else a loop device (a VM booted on 9p has no disk; the kernel takes io.max for loop too).
pub fn first_disk() -> Option<String> {
    let text = std::fs::read_to_string("/proc/partitions").ok()?;
    let devices: Vec<(String, String)> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = *f.get(3)?;
            std::path::Path::new("/sys/block")
                .join(name)
                .exists()
                .then(|| (name.to_string(), format!("{}:{}", f[0], f[1])))
        })
        .collect();
    let virtual_dev =
        |n: &str| n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram");
    devices
        .iter()
        .find(|(n, _)| !virtual_dev(n))
        .or_else(|| devices.iter().find(|(n, _)| n.starts_with("loop")))
        .map(|(_, d)| d.clone())
        .or_else(|| {
            let dev = std::fs::read_to_string("/sys/block/loop0/dev").ok()?;
            Some(dev.trim().to_string())
        })
}
