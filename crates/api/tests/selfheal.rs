//! Restart policies and health checks against a real daemon: containers really die (the
//! test kills their init with SIGKILL), the daemon itself is killed with SIGKILL and started
//! again, health probes really run in the container. Needs root, overlayfs and the berth
//! binary built beside this test (cargo build -p berth).
//!
//! Waits poll the daemon until a condition holds, bounded only against a hang (a minute):
//! no assertion depends on how fast the machine is. Delays are checked from below (a
//! restart never comes before its backoff), never from above.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{berth_bin, call as req, create, inspect, logs, skip, start, start_daemon};

const HANG: Duration = Duration::from_secs(90);

/// Polls inspect until `pred` holds; panics (with the last state) only if it never does.
fn wait_for(sock: &Path, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v = inspect(sock, id);
        if pred(&v) {
            return v;
        }
        assert!(
            t0.elapsed() < HANG,
            "{what}: never happened; last state {}",
            v["State"]
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn kill9(pid: i64) {
    assert!(pid > 0, "no pid to kill");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the container's init");
}

/// The daemon's events for one container, as they come.
struct Events {
    rx: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Events {
    fn subscribe(sock: &Path, id: &str) -> Events {
        let filters = format!("{{\"container\":[\"{id}\"]}}");
        let mut s = UnixStream::connect(sock).expect("connect for events");
        write!(
            s,
            "GET /events?filters={} HTTP/1.1\r\nHost: berth\r\n\r\n",
            filters
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        )
        .expect("ask for events");
        let (tx, rx) = mpsc::channel();
        let mut r = BufReader::new(s);
        // The head first, so no event after this function returns is missed.
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        std::thread::spawn(move || {
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                line.clear();
            }
        });
        Events {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for the next event with `action` (earlier ones are kept in `seen`).
    fn until(&mut self, action: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let left = HANG.saturating_sub(t0.elapsed());
            let v = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {action:?} event; saw {:?}", self.actions()));
            self.seen.push(v.clone());
            if v["Action"] == action {
                return v;
            }
        }
    }

    fn actions(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|v| v["Action"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn needs() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() && skip("needs root") {
        return None;
    }
    match berth_bin() {
        Some(b) => Some(b),
        None => {
            skip("target/debug/berth is not built (cargo build -p berth)");
            None
        }
    }
}

fn restart_policy(name: &str, max: i64) -> Value {
    json!({"Name": name, "MaximumRetryCount": max})
}

#[test]
fn restart_policies_restart_back_off_and_yield_to_the_user() {
    let Some(berth) = needs() else { return };
    let d = start_daemon(&berth, "berth-selfheal-restart", true);
    let s = &d.sock;

    // Bad input: refused at create, nothing created.
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=bogus",
        Some(json!({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "bogus"}}})),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("bogus"), "{v}");
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=rm_always",
        Some(
            json!({"Image": "busybox", "HostConfig": {"AutoRemove": true, "RestartPolicy": restart_policy("always", 0)}}),
        ),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("--rm"), "{v}");
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=always_max",
        Some(
            json!({"Image": "busybox", "HostConfig": {"RestartPolicy": restart_policy("always", 3)}}),
        ),
    );
    assert_eq!(code, 400, "{v}");
    let (_, all) = req(s, "GET", "/containers/json?all=1", None);
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(0),
        "nothing created: {all}"
    );

    // on-failure:2 — two restarts, then it stays exited.
    let of = create(
        s,
        "onfail",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "echo ran; exit 3"],
               "HostConfig": {"RestartPolicy": restart_policy("on-failure", 2)}}),
    );
    let mut ev = Events::subscribe(s, &of);
    start(s, &of);
    for _ in 0..3 {
        ev.until("die");
    }
    let v = wait_for(s, &of, "on-failure:2 gives up", |v| {
        v["State"]["Status"] == "exited"
    });
    assert_eq!(v["RestartCount"], 2, "{v}");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(
        ev.actions().iter().filter(|a| *a == "start").count(),
        3,
        "{:?}",
        ev.actions()
    );
    assert_eq!(
        logs(s, &of).matches("ran").count(),
        3,
        "the log is appended"
    );

    // Backoff: each restart waits at least twice the one before (100 ms, 200, 400, 800).
    let bo = create(
        s,
        "backoff",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "exit 1"],
               "HostConfig": {"RestartPolicy": restart_policy("on-failure", 4)}}),
    );
    let mut ev = Events::subscribe(s, &bo);
    start(s, &bo);
    let mut gaps = Vec::new();
    ev.until("start");
    for _ in 0..4 {
        let die = ev.until("die")["timeNano"].as_i64().expect("timeNano");
        let st = ev.until("start")["timeNano"].as_i64().expect("timeNano");
        gaps.push(Duration::from_nanos((st - die) as u64));
    }
    for (i, g) in gaps.iter().enumerate() {
        let min = Duration::from_millis(100 << i);
        assert!(
            *g >= min,
            "restart {} came after {g:?}, before its backoff {min:?}",
            i + 1
        );
    }
    assert!(gaps[3] > gaps[0], "the delay grows: {gaps:?}");
    wait_for(s, &bo, "backoff container gives up", |v| {
        v["State"]["Status"] == "exited" && v["RestartCount"] == 4
    });

    // always: the init killed from outside comes back, with its log appended; then a
    // user's stop suspends the policy, and a start brings it back.
    let al = create(
        s,
        "always",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "echo up; exec sleep 1000"],
               "HostConfig": {"RestartPolicy": restart_policy("always", 0)}}),
    );
    start(s, &al);
    let v = wait_for(s, &al, "always runs", |v| v["State"]["Running"] == true);
    // Killed only once it has said so, or the first run's line would never be there.
    let t0 = Instant::now();
    while !logs(s, &al).contains("up") {
        assert!(t0.elapsed() < HANG, "the first run never logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (pid, started) = (
        v["State"]["Pid"].as_i64().unwrap_or(0),
        v["State"]["StartedAt"].clone(),
    );
    kill9(pid);
    let v = wait_for(s, &al, "always restarts after kill -9", |v| {
        v["State"]["Status"] == "running" && v["State"]["StartedAt"] != started
    });
    assert_eq!(v["RestartCount"], 1);
    assert_ne!(v["State"]["Pid"].as_i64(), Some(pid));
    // The second "up" may be on its way to the log still.
    let t0 = Instant::now();
    while logs(s, &al).matches("up").count() < 2 {
        assert!(t0.elapsed() < HANG, "log not appended: {:?}", logs(s, &al));
        std::thread::sleep(Duration::from_millis(30));
    }
    let (code, v) = req(s, "POST", &format!("/containers/{al}/stop?t=1"), None);
    assert_eq!(code, 204, "{v}");
    // Ten times the first delay: a restart, if the stop had not suspended it, comes by then.
    std::thread::sleep(Duration::from_secs(1));
    let v = inspect(s, &al);
    assert_eq!(v["State"]["Status"], "exited", "stop suspends the policy");
    assert_eq!(v["RestartCount"], 1);
    start(s, &al);
    let v = wait_for(s, &al, "a start after stop", |v| {
        v["State"]["Running"] == true
    });
    assert_eq!(
        v["RestartCount"], 0,
        "a user's start resets the count, as Docker"
    );
    // The policy applies again after that start.
    kill9(v["State"]["Pid"].as_i64().unwrap_or(0));
    wait_for(s, &al, "restart after the user's start", |v| {
        v["State"]["Running"] == true && v["RestartCount"] == 1
    });
    // kill through the API is the user's, like stop.
    let (code, _) = req(s, "POST", &format!("/containers/{al}/kill"), None);
    assert_eq!(code, 204);
    wait_for(s, &al, "killed by the user", |v| {
        v["State"]["Status"] == "exited"
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(inspect(s, &al)["State"]["Status"], "exited");

    // A container waiting for its restart is stopped there: it stays exited.
    let crash = create(
        s,
        "crash",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "exit 2"],
               "HostConfig": {"RestartPolicy": restart_policy("always", 0)}}),
    );
    start(s, &crash);
    wait_for(s, &crash, "crash waits for its third restart", |v| {
        v["State"]["Restarting"] == true && v["RestartCount"].as_i64() >= Some(3)
    });
    let (code, v) = req(s, "POST", &format!("/containers/{crash}/stop?t=1"), None);
    assert_eq!(code, 204, "{v}");
    let count = wait_for(s, &crash, "stopped", |v| v["State"]["Status"] == "exited")
        ["RestartCount"]
        .clone();
    std::thread::sleep(Duration::from_secs(2));
    let v = inspect(s, &crash);
    assert_eq!(v["State"]["Status"], "exited", "{}", v["State"]);
    assert_eq!(v["RestartCount"], count);

    // update: the policy of an existing container changes; a bad one is refused.
    let up = create(
        s,
        "upd",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "exec sleep 1000"]}),
    );
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{up}/update"),
        Some(json!({"RestartPolicy": {"Name": "bogus"}})),
    );
    assert_eq!(code, 400, "{v}");
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{up}/update"),
        Some(json!({"RestartPolicy": restart_policy("unless-stopped", 0), "Memory": 0})),
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["Warnings"].is_array(), "{v}");
    assert_eq!(
        inspect(s, &up)["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    start(s, &up);
    let v = wait_for(s, &up, "upd runs", |v| v["State"]["Running"] == true);
    kill9(v["State"]["Pid"].as_i64().unwrap_or(0));
    wait_for(s, &up, "the updated policy restarts it", |v| {
        v["State"]["Running"] == true && v["RestartCount"] == 1
    });
}

/// `berth daemon` as its own process, so the test can kill it with SIGKILL.
struct ProcDaemon {
    berth: PathBuf,
    dir: tempfile::TempDir,
    sock: PathBuf,
    child: Option<Child>,
}

impl ProcDaemon {
    fn new(berth: &Path) -> ProcDaemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-selfheal-kill")
            .tempdir()
            .expect("tempdir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let st = Command::new("sh")
            .arg(repo.join("tests/make-busybox-rootfs.sh"))
            .arg(dir.path().join("rootfs"))
            .arg(dir.path().join("bb.tar"))
            .stdout(Stdio::null())
            .status()
            .expect("make busybox rootfs");
        assert!(st.success());
        let sock = dir.path().join("berth.sock");
        let mut d = ProcDaemon {
            berth: berth.to_path_buf(),
            dir,
            sock,
            child: None,
        };
        d.start();
        // Imported through the API, as a client would.
        let tar = std::fs::read(d.dir.path().join("bb.tar")).expect("read bb.tar");
        let (status, body) = common::http(
            &d.sock,
            "POST",
            "/images/create?fromSrc=-&repo=busybox&tag=latest",
            &[("Content-Type", "application/x-tar")],
            &tar,
        );
        let text = String::from_utf8_lossy(&body);
        assert!(
            status == 200 && !text.contains("errorDetail"),
            "import busybox: {status} {text}"
        );
        d
    }

    fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Starts the daemon and waits until it serves; an error (never a panic: Drop uses it).
    fn try_start(&mut self) -> Result<(), String> {
        let p = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p.join("daemon.log"))
            .map_err(|e| format!("daemon log: {e}"))?;
        let child = Command::new(&self.berth)
            .arg("daemon")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("run"))
            .arg("--pidfile")
            .arg(p.join("berth.pid"))
            .arg("--config-file")
            .arg(p.join("no-daemon.json"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start berth daemon: {e}"))?;
        self.child = Some(child);
        // Served once /_ping answers (the socket exists a moment before).
        let t0 = Instant::now();
        loop {
            if let Ok(mut s) = UnixStream::connect(&self.sock) {
                let _ = s.write_all(b"GET /_ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            if t0.elapsed() > HANG {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err("berth daemon did not serve".into());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9 the daemon");
            let _ = c.wait();
        }
    }
}

impl Drop for ProcDaemon {
    fn drop(&mut self) {
        // A test that failed while the daemon was down: up again, to remove what it made.
        if self.child.is_none() {
            let _ = self.try_start();
        }
        if self.child.is_some() {
            common::remove_all_containers(&self.sock);
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("data/containers"))
            .stderr(Stdio::null())
            .status();
        common::remove_daemon_networks(&self.dir.path().join("data"));
        common::sweep_leaked_netns(
            &self.dir.path().join("run"),
            Some(&self.dir.path().join("daemon.log")),
        );
    }
}

#[test]
fn restart_policies_survive_a_daemon_killed_with_sigkill() {
    let Some(berth) = needs() else { return };
    let mut d = ProcDaemon::new(&berth);
    let s = d.sock.clone();

    // A container that fails six times, then runs: the daemon is killed while it waits
    // for its sixth restart (3.2 s of backoff).
    let flaky = create(
        &s,
        "flaky",
        json!({"Image": "busybox",
               "Cmd": ["sh", "-c", "c=$(cat /count 2>/dev/null || echo 0); c=$((c+1)); echo $c > /count; echo run $c; [ $c -gt 6 ] && exec sleep 1000; exit 1"],
               "HostConfig": {"RestartPolicy": restart_policy("always", 0)}}),
    );
    // unless-stopped and always, both stopped by the user before the daemon dies.
    let us = create(
        &s,
        "unless",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"],
               "HostConfig": {"RestartPolicy": restart_policy("unless-stopped", 0)}}),
    );
    let al = create(
        &s,
        "always_stopped",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"],
               "HostConfig": {"RestartPolicy": restart_policy("always", 0)}}),
    );
    // Running when the daemon dies; its init is killed while the daemon is away.
    let orphan = create(
        &s,
        "orphan",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "echo hello; exec sleep 1000"],
               "HostConfig": {"RestartPolicy": restart_policy("always", 0)}}),
    );
    // Health-checked: the new daemon goes on probing it.
    let hc = create(
        &s,
        "hcboot",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"],
               "Healthcheck": {"Test": ["CMD", "true"], "Interval": 200_000_000}}),
    );
    for id in [&us, &al, &orphan, &hc] {
        start(&s, id);
    }
    wait_for(&s, &hc, "hcboot healthy", |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    for id in [&us, &al] {
        let (code, v) = req(&s, "POST", &format!("/containers/{id}/stop?t=1"), None);
        assert_eq!(code, 204, "{v}");
    }
    let orphan_pid = wait_for(&s, &orphan, "orphan runs", |v| {
        v["State"]["Running"] == true
    })["State"]["Pid"]
        .as_i64()
        .unwrap_or(0);
    start(&s, &flaky);
    let v = wait_for(&s, &flaky, "flaky waits for its sixth restart", |v| {
        v["RestartCount"] == 6 && v["State"]["Restarting"] == true
    });
    assert_eq!(v["State"]["Status"], "restarting");
    assert_eq!(
        v["State"]["Running"], true,
        "Docker counts a restarting container as running"
    );
    let (code, body) = req(&s, "DELETE", &format!("/containers/{flaky}"), None);
    assert_eq!(
        code, 409,
        "rm of a restarting container needs force: {body}"
    );
    d.kill9();
    kill9(orphan_pid);

    // The old daemon is gone: a probe that starts after now is the new daemon's.
    let dead_at = chrono::Utc::now();
    let probed_since = |v: &Value| {
        v["State"]["Health"]["Log"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|p| p["Start"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > dead_at)
    };
    d.start();
    wait_for(&s, &hc, "the new daemon probes hcboot", |v| {
        probed_since(v) && v["State"]["Health"]["Status"] == "healthy"
    });
    let v = wait_for(&s, &flaky, "flaky restarted by the new daemon", |v| {
        v["State"]["Running"] == true && v["State"]["Restarting"] == false
    });
    assert_eq!(v["RestartCount"], 6, "{v}");
    let t0 = Instant::now();
    while !logs(&s, &flaky).contains("run 7") {
        assert!(t0.elapsed() < HANG, "log: {:?}", logs(&s, &flaky));
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        logs(&s, &flaky).contains("run 1\n"),
        "the log keeps every run"
    );

    let v = wait_for(
        &s,
        &orphan,
        "orphan restarted after dying while the daemon was away",
        |v| v["State"]["Running"] == true && v["RestartCount"] == 1,
    );
    assert_ne!(v["State"]["Pid"].as_i64(), Some(orphan_pid));
    wait_for(
        &s,
        &al,
        "an always container stopped by the user starts with the daemon",
        |v| v["State"]["Running"] == true,
    );
    // Both were scheduled together at the daemon's start; the always one has started.
    std::thread::sleep(Duration::from_secs(1));
    let v = inspect(&s, &us);
    assert_eq!(
        v["State"]["Status"], "exited",
        "unless-stopped stopped by the user stays stopped"
    );
}

#[test]
fn health_checks_probe_by_exec_and_report_transitions() {
    let Some(berth) = needs() else { return };
    let d = start_daemon(&berth, "berth-selfheal-health", true);
    let s = &d.sock;
    let ms = |n: i64| n * 1_000_000;

    // A bad health check is refused at create.
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=badhc",
        Some(json!({"Image": "busybox", "Healthcheck": {"Test": ["BOGUS", "x"]}})),
    );
    assert_eq!(code, 400, "{v}");

    let hc = create(
        s,
        "hc",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "touch /tmp/ok; exec sleep 1000"],
               "Healthcheck": {"Test": ["CMD-SHELL", "cat /tmp/ok && echo fine"],
                               "Interval": ms(200), "Timeout": ms(5000), "Retries": 2}}),
    );
    let mut ev = Events::subscribe(s, &hc);
    start(s, &hc);
    ev.until("health_status: healthy");
    let v = inspect(s, &hc);
    let h = &v["State"]["Health"];
    assert_eq!(h["Status"], "healthy", "{h}");
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["ExitCode"], 0, "{h}");
    assert!(
        last["Output"].as_str().unwrap_or("").contains("fine"),
        "{h}"
    );
    let (_, ps) = req(
        s,
        "GET",
        "/containers/json?filters=%7B%22health%22%3A%5B%22healthy%22%5D%7D",
        None,
    );
    let row = ps
        .as_array()
        .and_then(|a| a.iter().find(|c| c["Id"] == hc.as_str()))
        .cloned();
    let row = row.unwrap_or_else(|| panic!("ps health=healthy lacks it: {ps}"));
    assert!(
        row["Status"].as_str().unwrap_or("").ends_with("(healthy)"),
        "{row}"
    );

    // The file the probe checks goes: unhealthy after two failures.
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{hc}/exec"),
        Some(json!({"Cmd": ["rm", "/tmp/ok"]})),
    );
    assert_eq!(code, 201, "{v}");
    let exec = v["Id"].as_str().unwrap_or("").to_string();
    let (code, v) = req(
        s,
        "POST",
        &format!("/exec/{exec}/start"),
        Some(json!({"Detach": true})),
    );
    assert_eq!(code, 200, "{v}");
    ev.until("health_status: unhealthy");
    let h = inspect(s, &hc)["State"]["Health"].clone();
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(h["FailingStreak"].as_i64().unwrap_or(0) >= 2, "{h}");
    let log = h["Log"].as_array().cloned().unwrap_or_default();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert_ne!(log.last().map(|l| l["ExitCode"].clone()), Some(json!(0)));
    let (_, ps) = req(
        s,
        "GET",
        "/containers/json?filters=%7B%22health%22%3A%5B%22unhealthy%22%5D%7D",
        None,
    );
    assert!(
        ps.as_array()
            .is_some_and(|a| a.iter().any(|c| c["Id"] == hc.as_str())),
        "{ps}"
    );

    // A probe that hangs is killed at its timeout: exit code -1, Docker's message.
    let hang = create(
        s,
        "hang",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"],
               "Healthcheck": {"Test": ["CMD", "sleep", "777"],
                               "Interval": ms(100), "Timeout": ms(300), "Retries": 1}}),
    );
    let mut ev = Events::subscribe(s, &hang);
    start(s, &hang);
    ev.until("health_status: unhealthy");
    let h = inspect(s, &hang)["State"]["Health"].clone();
    let first = h["Log"][0].clone();
    assert_eq!(first["ExitCode"], -1, "{h}");
    assert!(
        first["Output"]
            .as_str()
            .unwrap_or("")
            .contains("exceeded timeout"),
        "{h}"
    );
    // The killed probe does not linger in the container.
    let t0 = Instant::now();
    loop {
        let (_, top) = req(s, "GET", &format!("/containers/{hang}/top"), None);
        let probes = top["Processes"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter(|r| r.to_string().contains("sleep 777"))
                    .count()
            })
            .unwrap_or(0);
        // One probe may be running now, never one per interval since the start.
        if probes <= 1 {
            break;
        }
        assert!(
            t0.elapsed() < HANG,
            "timed-out probes were left running: {top}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Within its start period a failing check stays "starting".
    let st = create(
        s,
        "startp",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"],
               "Healthcheck": {"Test": ["CMD", "false"], "Interval": ms(100),
                               "StartPeriod": ms(600_000), "StartInterval": ms(100), "Retries": 1}}),
    );
    let ev = Events::subscribe(s, &st);
    start(s, &st);
    // Three probes have run once the third exec's process has come and gone.
    let t0 = Instant::now();
    loop {
        let h = inspect(s, &st)["State"]["Health"].clone();
        if h["Log"].as_array().map_or(0, Vec::len) >= 3 {
            assert_eq!(h["Status"], "starting", "{h}");
            assert_eq!(h["FailingStreak"], 0, "{h}");
            break;
        }
        assert!(t0.elapsed() < HANG, "no probes: {h}");
        std::thread::sleep(Duration::from_millis(30));
    }
    let (_, ps) = req(s, "GET", "/containers/json", None);
    let row = ps
        .as_array()
        .and_then(|a| a.iter().find(|c| c["Id"] == st.as_str()))
        .cloned();
    assert!(
        row.as_ref()
            .and_then(|r| r["Status"].as_str())
            .is_some_and(|x| x.ends_with("(health: starting)")),
        "{row:?}"
    );
    assert!(!ev.actions().iter().any(|a| a.starts_with("health_status")));
    // Stopped, it is unhealthy (as dockerd reports a stopped container), and not probed.
    let (code, _) = req(s, "POST", &format!("/containers/{st}/stop?t=1"), None);
    assert_eq!(code, 204);
    assert_eq!(inspect(s, &st)["State"]["Health"]["Status"], "unhealthy");

    // --no-healthcheck: the image's check (none here) and the container's are off.
    let none = create(
        s,
        "nohc",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"], "Healthcheck": {"Test": ["NONE"]}}),
    );
    start(s, &none);
    assert!(inspect(s, &none)["State"]["Health"].is_null());
}

/// `restart` is a stop and a start: the monitor of the stopped run reports its exit late,
/// sometimes after the next run has begun, and that report must not end the new run (it
/// did: the container showed exited, its rootfs unmounted, while its process ran on).
/// Ten `restart -t 0` in a row, each followed by a look at the run it ended and the one it
/// started.
#[test]
fn a_late_exit_report_of_the_old_run_does_not_end_the_new_one() {
    let Some(berth) = needs() else { return };
    let d = start_daemon(&berth, "berth-selfheal-restarts", true);
    let id = create(
        &d.sock,
        "restarts",
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": {"NetworkMode": "none"}}),
    );
    start(&d.sock, &id);
    let mut pid = inspect(&d.sock, &id)["State"]["Pid"].as_i64().unwrap_or(0);
    for i in 0..10 {
        let (code, v) = req(
            &d.sock,
            "POST",
            &format!("/containers/{id}/restart?t=0"),
            None,
        );
        assert_eq!(code, 204, "restart {i}: {v}");
        // the old monitor's report, if late, lands within moments of the restart's answer
        std::thread::sleep(Duration::from_millis(150));
        let v = inspect(&d.sock, &id);
        let now = v["State"]["Pid"].as_i64().unwrap_or(0);
        assert_eq!(
            v["State"]["Status"], "running",
            "after restart {i}: {}",
            v["State"]
        );
        assert!(now > 0 && now != pid, "restart {i}: pid {pid} -> {now}");
        assert!(
            Path::new(&format!("/proc/{now}")).exists(),
            "restart {i}: the new init {now} is gone"
        );
        // `-t 0` is at once SIGKILL (a zero timeout once made the daemon give up on the
        // shim and mark a live container exited)
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "restart {i}: the old init {pid} still runs"
        );
        pid = now;
    }
    let (code, v) = req(
        &d.sock,
        "DELETE",
        &format!("/containers/{id}?force=1"),
        None,
    );
    assert_eq!(code, 204, "rm -f: {v}");
}
