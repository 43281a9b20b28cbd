//! Harness for the shim's end-to-end tests: the real `berth` binary (built once), a busybox
//! bundle per test, `berth shim` started as the daemon starts it, a client for its socket,
//! and a guard that ends the container and checks that nothing of it is left.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// Print why a test cannot run here and return true; under CI a missing requirement fails.
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

/// The berth binary of this target directory, built once per test run (the binary of
/// another crate is not a dependency cargo builds for us).
pub fn berth() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/debug/deps/<test> → target/debug
        let exe = std::env::current_exe().expect("own path");
        let debug = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("test binary under target/debug/deps");
        let target = debug.parent().expect("target dir");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "berth"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("run cargo build -p berth");
        assert!(status.success(), "cargo build -p berth failed");
        debug.join("berth")
    })
    .clone()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn busybox_rootfs(dir: &Path) {
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
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A container run by a `berth shim`, everything in one temporary directory.
pub struct Shim {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub spec: Value,
    /// The init's pid and the shim's, from the shim's report.
    pub pid: i32,
    pub shim_pid: i32,
}

impl Shim {
    /// A bundle whose process runs `args` (no terminal).
    pub fn bundle(prefix: &str, args: &[&str]) -> Shim {
        let dir = tempfile::Builder::new()
            .prefix("berth-shim")
            .tempdir()
            .unwrap();
        busybox_rootfs(&dir.path().join("bundle/rootfs"));
        let out = Command::new(berth())
            .args(["runtime", "spec", "--bundle"])
            .arg(dir.path().join("bundle"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("bundle/config.json")).unwrap())
                .unwrap();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        let id = unique_id(prefix);
        spec["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        Shim {
            dir,
            id,
            spec,
            pid: 0,
            shim_pid: 0,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("shim")
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("container.log")
    }
    pub fn sock(&self) -> PathBuf {
        self.state_dir().join("shim.sock")
    }

    /// The `berth shim` command line for this container, plus `extra` flags.
    pub fn command_args(&self, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "shim".into(),
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            self.dir.path().join("bundle").display().to_string(),
            "--runtime-root".into(),
            self.runtime_root().display().to_string(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
            "--log-path".into(),
            self.log_path().display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    fn write_spec(&self) {
        std::fs::write(
            self.dir.path().join("bundle/config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    /// Start `berth shim` as the daemon does (stdin /dev/null, stdout and stderr pipes) and
    /// read its report; the spawned process must have exited with 0 already.
    pub fn spawn(&mut self, extra: &[&str]) -> Value {
        self.write_spec();
        let mut child = Command::new(berth())
            .args(self.command_args(extra))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "the spawned shim exited with {status}");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.take_report(&line)
    }

    /// Parse the shim's report line; remember the pids.
    pub fn take_report(&mut self, line: &str) -> Value {
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("report {line:?} is not JSON: {e}"));
        if let (Some(p), Some(s)) = (v["pid"].as_i64(), v["shim_pid"].as_i64()) {
            self.pid = p as i32;
            self.shim_pid = s as i32;
        }
        v
    }

    /// `spawn`, and insist that it succeeded.
    pub fn start_shim(&mut self, extra: &[&str]) {
        let r = self.spawn(extra);
        assert!(r["pid"].as_i64().is_some_and(|p| p > 0), "report: {r}");
        assert!(r["shim_pid"].as_i64().is_some_and(|p| p > 0), "report: {r}");
    }

    /// Send one request; return the connection (positioned after the response line) and the
    /// response.
    pub fn request(&self, req: Value) -> (BufReader<UnixStream>, Value) {
        let mut s = UnixStream::connect(self.sock()).unwrap();
        s.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("response {line:?} to {req} is not JSON: {e}"));
        (r, v)
    }

    /// A request whose connection ends after its response.
    pub fn call(&self, req: Value) -> Value {
        self.request(req).1
    }

    /// A `wait` sent now, answered when the init has exited: connect it before whatever makes
    /// the container exit, since the shim is gone soon after.
    pub fn waiter(&self) -> BufReader<UnixStream> {
        let mut sock = UnixStream::connect(self.sock()).unwrap();
        sock.write_all(b"{\"op\":\"wait\"}\n").unwrap();
        BufReader::new(sock)
    }

    pub fn start(&self) {
        let r = self.call(json!({"op": "start"}));
        assert_eq!(r, json!({"ok": true}));
    }

    /// Block until the shim has gone (it is no child of ours: a pidfd tells).
    pub fn wait_shim_gone(&self) -> bool {
        let Ok(fd) = berth_sys::pidfd_open(self.shim_pid) else {
            return true;
        };
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(30_000u16)).unwrap_or(0) == 1
    }

    /// The log's records, each checked to be Docker's json-file shape.
    pub fn log_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}"));
                assert!(v["log"].is_string(), "{l}");
                assert!(
                    matches!(v["stream"].as_str(), Some("stdout" | "stderr")),
                    "{l}"
                );
                let t = v["time"].as_str().unwrap();
                assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{l}");
                v
            })
            .collect()
    }

    /// After the shim has exited: no socket, pid file, runtime state or cgroup remains.
    pub fn assert_nothing_left(&self) {
        assert!(self.wait_shim_gone(), "the shim did not exit");
        assert!(!self.sock().exists(), "shim.sock remains");
        assert!(
            !self.state_dir().join("shim.pid").exists(),
            "shim.pid remains"
        );
        assert!(
            !self.runtime_root().join(&self.id).exists(),
            "the runtime's state remains"
        );
        let left = cgroup_dirs(&self.id);
        assert!(left.is_empty(), "cgroups remain: {left:?}");
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // what the shim said, for the failure's report
            let diag = std::fs::read_to_string(self.state_dir().join("shim.log"));
            eprintln!("{}: shim.log: {diag:?}", self.id);
        }
        // Ending the container makes the shim finish and clean up by itself.
        let _ = Command::new(berth())
            .arg("runtime")
            .arg("--root")
            .arg(self.runtime_root())
            .args(["kill", &self.id, "KILL"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.shim_pid > 0 && !self.wait_shim_gone() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.shim_pid),
                nix::sys::signal::SIGKILL,
            );
        }
        let _ = Command::new(berth())
            .arg("runtime")
            .arg("--root")
            .arg(self.runtime_root())
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // the parent the tests share, once no other test's container is in it
        let _ = berth_cgroups::remove_unused("/berth-test");
    }
}

pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let p = e.path().join("berth-test").join(id);
            if p.exists() {
                v.push(p);
            }
        }
    }
    v
}

/// The answer to a [`Shim::waiter`].
pub fn wait_answer(mut r: BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("wait answer {line:?}: {e}"))
}

/// Read a stream of Docker's multiplexed frames to its end: (stdout, stderr).
pub fn read_frames(r: &mut impl Read) -> (Vec<u8>, Vec<u8>) {
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    split_frames(&all)
}

pub fn split_frames(mut all: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while !all.is_empty() {
        assert!(all.len() >= 8, "a truncated frame header: {all:?}");
        assert_eq!(&all[1..4], &[0, 0, 0], "frame header {:?}", &all[..8]);
        let len = u32::from_be_bytes([all[4], all[5], all[6], all[7]]) as usize;
        assert!(all.len() >= 8 + len, "a truncated frame");
        let payload = &all[8..8 + len];
        match all[0] {
            1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            s => panic!("unknown stream {s} in a frame"),
        }
        all = &all[8 + len..];
    }
    (out, err)
}
