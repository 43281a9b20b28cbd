//! Test harness for end-to-end tests of the berth binary: busybox bundles from Debian's
//! busybox-static, unique container ids, a guard that force-deletes the container and checks
//! that its cgroup is gone, and requirement checks that skip with a reason (or fail under CI).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

pub fn berth() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Print why a test cannot run here and return true (the caller returns). Under CI
/// (`CI=true`) a missing requirement is a failure instead: CI machines must have it.
pub fn skip(reason: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("requirement missing under CI: {reason}");
    }
    eprintln!("SKIP: {reason}");
    true
}

pub fn require_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        return skip("needs root");
    }
    if !Path::new("/bin/busybox").exists() {
        return skip("needs /bin/busybox (apt-get install busybox-static)");
    }
    false
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Make a busybox root filesystem: the static binary and a symlink per applet.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// A bundle in a temporary directory, with the runtime's state under it too, so tests do
/// not see each other's containers.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub spec: Value,
}

impl Bundle {
    /// A bundle whose config.json is `berth runtime spec`'s default, with `args`.
    pub fn new(prefix: &str, args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e")
            .tempdir()
            .unwrap();
        busybox_rootfs(&dir.path().join("rootfs"));
        let out = Command::new(berth())
            .args(["runtime", "spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = args.iter().map(|a| Value::String(a.to_string())).collect();
        let id = unique_id(prefix);
        spec["linux"]["cgroupsPath"] = Value::String(format!("/berth-test/{id}"));
        Bundle { dir, id, spec }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write_spec(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    /// `berth runtime --root <state> ARGS`
    pub fn runtime(&self, args: &[&str]) -> Output {
        Command::new(berth())
            .arg("runtime")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Write the spec and `run` the container to completion.
    pub fn run(&self) -> Output {
        self.write_spec();
        let bundle = self.path().to_str().unwrap().to_string();
        self.runtime(&["run", "--bundle", &bundle, &self.id])
    }

    /// Write the spec and `create`. The container's init inherits stdio, so stdout goes to
    /// /dev/null and stderr to a file: a pipe would hold the caller until the container exits.
    pub fn create(&self) -> Output {
        self.write_spec();
        let bundle = self.path().to_str().unwrap().to_string();
        let errf = self.path().join("create.err");
        let status = Command::new(berth())
            .arg("runtime")
            .arg("--root")
            .arg(self.root())
            .args(["create", "--bundle", &bundle, &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errf).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&errf).unwrap_or_default(),
        }
    }

    pub fn state(&self) -> Value {
        let out = self.runtime(&["state", &self.id]);
        assert!(
            out.status.success(),
            "state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap_or("").to_string()
    }

    /// Directories that would remain if delete leaked the cgroup.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let p = e.path().join("berth-test").join(&self.id);
                if p.exists() {
                    v.push(p);
                }
            }
        }
        let p = Path::new("/sys/fs/cgroup/berth-test").join(&self.id);
        if p.exists() {
            v.push(p);
        }
        v
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.runtime(&["delete", "--force", &self.id]);
        // the parent the bundles share, once no other test's container is in it
        let _ = berth_cgroups::remove_unused("/berth-test");
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

// Scenarios both cgroup suites (this host's v1 and the v2 VM) check the same way.

/// dd with a 64 MiB buffer, then its exit status: 137 under a 32 MiB memory limit.
pub const DD_64M: &str = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?";

/// Limit the bundle's memory (and memory+swap) to 32 MiB.
pub fn limit_memory_32m(b: &mut Bundle) {
    b.spec["linux"]["resources"]["memory"] =
        serde_json::json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
}

/// 30 background processes under pids.max=10: the shell cannot fork them all.
pub fn assert_pids_limit_stops_a_fork_bomb(prefix: &str) {
    let mut b = Bundle::new(
        prefix,
        &[
            "sh",
            "-c",
            "for i in $(seq 30); do sleep 2 & done; echo all-forked",
        ],
    );
    b.spec["linux"]["resources"]["pids"] = serde_json::json!({"limit": 10});
    let out = b.run();
    assert!(
        !stdout(&out).contains("all-forked"),
        "30 processes started under pids.max=10"
    );
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
}

/// /dev/mem is in the spec's devices but not in the allowed rules: it exists and cannot be
/// opened, while /dev/null can.
pub fn assert_a_device_outside_the_rules_is_denied(prefix: &str) {
    let mut b = Bundle::new(prefix, &["sh", "-c", "head -c1 /dev/mem >/dev/null 2>&1 && echo mem-open; echo x > /dev/null && echo null-ok"]);
    b.spec["linux"]["devices"] = serde_json::json!([{"path": "/dev/mem", "type": "c", "major": 1, "minor": 1, "fileMode": 438}]);
    let text = ok(&b.run());
    assert!(text.contains("null-ok"), "{text}");
    assert!(
        !text.contains("mem-open"),
        "/dev/mem could be opened: {text}"
    );
}

/// Create and start a busy loop under a quota of 0.1 CPU, let it run ~1.5 s, and check from
/// `events --stats` that it ran but used no more than its quota allows (with slack: an
/// unthrottled loop would use ~10x). Returns the stats for further checks.
pub fn assert_cpu_quota_holds(b: &Bundle) -> Value {
    // the container uses CPU from create on (its init's setup), so measure from there
    let started = std::time::Instant::now();
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ev = ok(&b.runtime(&["events", "--stats", &b.id]));
    // the loop ran at most for this long (slow machines and VMs take a while per command)
    let elapsed_ns = started.elapsed().as_nanos() as u64;
    let allowed_ns = elapsed_ns / 10 * 2 + 100_000_000;
    let v: Value = serde_json::from_str(&ev).unwrap();
    let used_ns = v["data"]["cpu"]["usage"]["total"].as_u64().unwrap();
    assert!(used_ns > 10_000_000, "the loop did not run: {ev}");
    assert!(
        used_ns < allowed_ns,
        "quota of 0.1 CPU not enforced: {used_ns} ns used in {elapsed_ns} ns"
    );
    v
}
