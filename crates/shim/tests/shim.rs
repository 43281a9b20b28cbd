//! `berth shim` end to end, as root: the real binary started the way the daemon starts it,
//! real containers (busybox), driven through shim.sock.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{read_frames, require_root, wait_answer, Shim};
use serde_json::{json, Value};

fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

#[test]
fn attach_receives_frames_and_wait_and_exit_json_have_the_exit_code() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle(
        "shim-attach",
        &["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"],
    );
    s.start_shim(&[]);
    let state = s.call(json!({"op": "state"}));
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["pid"], s.pid);
    assert_eq!(state["exit_code"], Value::Null);

    let (mut attach, r) =
        s.request(json!({"op": "attach", "stdin": false, "stdout": true, "stderr": true}));
    assert_eq!(r, json!({"ok": true}));
    let (mut only_err, r) =
        s.request(json!({"op": "attach", "stdin": false, "stdout": false, "stderr": true}));
    assert_eq!(r, json!({"ok": true}));
    let waiter = s.waiter();
    s.start();

    let (out, err) = read_frames(&mut attach);
    assert_eq!(String::from_utf8_lossy(&out), "out\npartial");
    assert_eq!(String::from_utf8_lossy(&err), "err\n");
    let (out, err) = read_frames(&mut only_err);
    assert!(out.is_empty());
    assert_eq!(String::from_utf8_lossy(&err), "err\n");

    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 3, "{w}");
    assert_eq!(w["oom_killed"], false, "{w}");
    let at = w["finished_at"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert!(
        at.ends_with('Z') && parsed.timestamp_subsec_nanos() > 0,
        "{at}"
    );

    let exit: Value =
        serde_json::from_slice(&std::fs::read(s.state_dir().join("exit.json")).unwrap()).unwrap();
    assert_eq!(exit, w);

    let logs = s.log_records();
    let got: Vec<(&str, &str)> = logs
        .iter()
        .map(|r| (r["stream"].as_str().unwrap(), r["log"].as_str().unwrap()))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.contains(&("stdout", "out\n")), "{got:?}");
    assert!(got.contains(&("stderr", "err\n")), "{got:?}");
    assert_eq!(got.last(), Some(&("stdout", "partial")), "{got:?}");
    s.assert_nothing_left();
}

#[test]
fn stdin_is_forwarded_and_stdin_once_ends_it() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-stdin", &["sh", "-c", "cat; echo eof >&2"]);
    s.start_shim(&["--stdin", "--stdin-once"]);
    let (r, resp) =
        s.request(json!({"op": "attach", "stdin": true, "stdout": true, "stderr": true}));
    assert_eq!(resp, json!({"ok": true}));
    let waiter = s.waiter();
    s.start();
    let mut sock = r.into_inner();
    sock.write_all(b"hello\nworld\n").unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let (out, err) = read_frames(&mut sock);
    assert_eq!(String::from_utf8_lossy(&out), "hello\nworld\n");
    // cat saw end of file: the container's stdin was closed
    assert_eq!(String::from_utf8_lossy(&err), "eof\n");
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 0, "{w}");
    s.assert_nothing_left();
}

#[test]
fn sigkill_of_the_init_is_exit_code_137() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-kill", &["sleep", "1000"]);
    s.start_shim(&[]);
    s.start();
    let st = s.call(json!({"op": "state"}));
    assert_eq!(st["status"], "running", "{st}");
    let waiter = s.waiter();
    kill(s.pid, nix::sys::signal::SIGKILL);
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 137, "{w}");
    s.assert_nothing_left();
    let exit: Value =
        serde_json::from_slice(&std::fs::read(s.state_dir().join("exit.json")).unwrap()).unwrap();
    assert_eq!(exit["exit_code"], 137);
}

#[test]
fn a_terminal_carries_raw_output_and_takes_a_resize() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-tty", &["sh", "-c", "stty size; echo to-stderr >&2"]);
    s.spec["process"]["terminal"] = json!(true);
    s.start_shim(&["--tty"]);
    let r = s.call(json!({"op": "resize", "height": 33, "width": 101}));
    assert_eq!(r, json!({"ok": true}));
    let (mut attach, r) =
        s.request(json!({"op": "attach", "stdin": false, "stdout": true, "stderr": true}));
    assert_eq!(r, json!({"ok": true}));
    s.start();
    let mut raw = Vec::new();
    attach.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    // raw bytes through the pty (its line discipline turns \n into \r\n), no frame headers
    assert_eq!(text, "33 101\r\nto-stderr\r\n");
    let logs = s.log_records();
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|r| r["stream"] == "stdout"), "{logs:?}");
    let joined: String = logs.iter().map(|r| r["log"].as_str().unwrap()).collect();
    assert_eq!(joined, "33 101\r\nto-stderr\r\n");
    s.assert_nothing_left();
}

#[test]
fn a_terminal_takes_input_from_attach() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-tty-in", &["sh", "-c", "read line; echo got:$line"]);
    s.spec["process"]["terminal"] = json!(true);
    s.start_shim(&["--tty", "--stdin"]);
    let (r, resp) = s.request(json!({"op": "attach", "stdin": true, "stdout": true}));
    assert_eq!(resp, json!({"ok": true}));
    s.start();
    let mut sock = r.into_inner();
    sock.write_all(b"abc\n").unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    // the terminal echoes the input, then the shell's answer
    assert!(text.contains("got:abc"), "{text:?}");
    s.assert_nothing_left();
}

#[test]
fn exec_streams_its_output_and_reports_its_exit_code() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-exec", &["sleep", "1000"]);
    s.start_shim(&[]);
    s.start();
    let mut process = s.spec["process"].clone();
    process["args"] = json!(["sh", "-c", "echo hi; echo oops >&2; exit 5"]);
    let (mut stream, r) = s.request(json!({
        "op": "exec", "exec_id": "e1", "process": process, "stdin": false
    }));
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["pid"].as_i64().is_some_and(|p| p > 0), "{r}");
    let (out, err) = read_frames(&mut stream);
    assert_eq!(String::from_utf8_lossy(&out), "hi\n");
    assert_eq!(String::from_utf8_lossy(&err), "oops\n");
    assert_eq!(
        s.call(json!({"op": "exec_wait", "exec_id": "e1"})),
        json!({"exit_code": 5})
    );
    assert_eq!(
        s.call(json!({"op": "exec_wait", "exec_id": "nope"})),
        json!({"error": "no such exec"})
    );
    let dup = s.call(json!({"op": "exec", "exec_id": "e1", "process": process}));
    assert_eq!(dup["ok"], false, "{dup}");

    // input to an exec'd process, ended by the client's shutdown
    let mut cat = s.spec["process"].clone();
    cat["args"] = json!(["cat"]);
    let (r, resp) = s.request(json!({
        "op": "exec", "exec_id": "e2", "process": cat, "stdin": true
    }));
    assert_eq!(resp["ok"], true, "{resp}");
    let mut sock = r.into_inner();
    sock.write_all(b"echoed\n").unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let (out, _) = read_frames(&mut sock);
    assert_eq!(String::from_utf8_lossy(&out), "echoed\n");
    assert_eq!(
        s.call(json!({"op": "exec_wait", "exec_id": "e2"})),
        json!({"exit_code": 0})
    );

    // exec output is not the container's log
    assert!(s.log_records().is_empty());
    let r = s.call(json!({"op": "exec_resize", "exec_id": "e1", "height": 1, "width": 1}));
    assert_eq!(r["ok"], false, "{r}");

    let waiter = s.waiter();
    kill(s.pid, nix::sys::signal::SIGKILL);
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 137, "{w}");
    s.assert_nothing_left();
}

#[test]
fn bad_requests_get_an_error_and_the_shim_serves_on() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-bad", &["sleep", "1000"]);
    s.start_shim(&[]);
    let mut sock = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
    sock.write_all(b"this is not json\n").unwrap();
    let mut line = String::new();
    BufReader::new(&mut sock).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bad request"), "{v}");

    let v = s.call(json!({"op": "fly"}));
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("fly"), "{v}");
    let v = s.call(json!({"op": "resize", "height": 10, "width": 10}));
    assert_eq!(v["ok"], false, "no terminal: {v}");
    let v = s.call(json!({"op": "exec", "exec_id": "x", "process": {"args": 7}}));
    assert_eq!(v["ok"], false, "{v}");
    // a client that goes away mid-request
    drop(std::os::unix::net::UnixStream::connect(s.sock()).unwrap());

    s.start();
    let v = s.call(json!({"op": "start"}));
    assert_eq!(v["ok"], false, "a second start: {v}");
    assert_eq!(s.call(json!({"op": "state"}))["status"], "running");
}

#[test]
fn a_failed_create_is_reported_and_leaves_nothing() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-fail", &["/no/such/program"]);
    let r = s.spawn(&[]);
    let e = r["error"].as_str().unwrap_or_else(|| panic!("report: {r}"));
    assert!(e.contains("/no/such/program"), "{e}");
    assert!(!s.sock().exists());
    assert!(!s.runtime_root().join(&s.id).exists());
    assert!(common::cgroup_dirs(&s.id).is_empty());
}

#[test]
fn the_shim_survives_its_spawner_and_keeps_logging() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle(
        "shim-orphan",
        &[
            "sh",
            "-c",
            "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done",
        ],
    );
    s.spec["process"]["terminal"] = json!(false);
    // A daemon-like parent: a process group that spawns the shim and lives on.
    let mut cmd = vec![common::berth().display().to_string()];
    cmd.extend(s.command_args(&[]));
    let quoted: Vec<String> = cmd.iter().map(|a| format!("'{a}'")).collect();
    std::fs::write(
        s.dir.path().join("bundle/config.json"),
        serde_json::to_vec(&s.spec).unwrap(),
    )
    .unwrap();
    let mut daemon = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{} && exec sleep 1000", quoted.join(" ")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    s.take_report(&line);
    assert!(s.shim_pid > 0, "report: {line}");
    s.start();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    daemon.wait().unwrap();
    let logged_at_kill = s.log_records().len();
    // what a dying daemon's terminal or service manager may send it
    for sig in [
        nix::sys::signal::SIGTERM,
        nix::sys::signal::SIGHUP,
        nix::sys::signal::SIGINT,
        nix::sys::signal::SIGPIPE,
    ] {
        kill(s.shim_pid, sig);
    }
    assert_eq!(s.call(json!({"op": "state"}))["status"], "running");

    // still there, still streaming, and still logging what it streams
    let (mut attach, r) = s.request(json!({"op": "attach", "stdout": true}));
    assert_eq!(r, json!({"ok": true}));
    let mut header = [0u8; 8];
    attach.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 1);
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut payload = vec![0u8; len];
    attach.read_exact(&mut payload).unwrap();
    assert!(String::from_utf8_lossy(&payload).starts_with("tick "));
    let waiter = s.waiter();
    kill(s.pid, nix::sys::signal::SIGKILL);
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 137, "{w}");
    s.assert_nothing_left();
    let logs = s.log_records();
    assert!(
        logs.len() > logged_at_kill,
        "nothing logged after the spawner died ({} records)",
        logs.len()
    );
    // the shim was the one that reparented nothing to the dead group: it had its own session
    assert!(logs.iter().all(|r| r["stream"] == "stdout"));
}

#[test]
fn log_driver_none_writes_no_file_and_rotation_keeps_max_file() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-nolog", &["sh", "-c", "echo a; echo b"]);
    s.start_shim(&["--log-driver", "none"]);
    let waiter = s.waiter();
    s.start();
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 0);
    s.assert_nothing_left();
    assert!(!s.log_path().exists());

    let mut s = Shim::bundle(
        "shim-rotate",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    s.start_shim(&["--log-max-size", "2000", "--log-max-file", "3"]);
    let waiter = s.waiter();
    s.start();
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 0);
    s.assert_nothing_left();
    let p = s.log_path();
    let rotated = |n: u32| {
        let mut x = p.clone().into_os_string();
        x.push(format!(".{n}"));
        std::path::PathBuf::from(x)
    };
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists());
    for f in [p.clone(), rotated(1), rotated(2)] {
        assert!(
            std::fs::metadata(&f).unwrap().len() <= 2000,
            "{}",
            f.display()
        );
    }
    let last = s.log_records();
    assert_eq!(last.last().unwrap()["log"], "line 199\n");
}

#[test]
fn a_client_that_does_not_read_is_dropped_and_blocks_nothing() {
    if require_root() {
        return;
    }
    const TOTAL: usize = 3_000_000;
    let mut s = Shim::bundle(
        "shim-slow",
        &[
            "sh",
            "-c",
            &format!("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {TOTAL}"),
        ],
    );
    s.start_shim(&[]);
    // attached, but reads nothing until the container is over
    let (mut slow, r) = s.request(json!({"op": "attach", "stdout": true}));
    assert_eq!(r, json!({"ok": true}));
    let (mut fast, r) = s.request(json!({"op": "attach", "stdout": true}));
    assert_eq!(r, json!({"ok": true}));
    let reader = std::thread::spawn(move || read_frames(&mut fast));
    let waiter = s.waiter();
    s.start();
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 0, "{w}");
    let (out, _) = reader.join().unwrap();
    assert_eq!(out.len(), TOTAL, "a reading client gets everything");
    let logged: usize = s
        .log_records()
        .iter()
        .map(|r| r["log"].as_str().unwrap().len())
        .sum();
    assert_eq!(logged, TOTAL, "the log has everything");
    let mut got = Vec::new();
    slow.read_to_end(&mut got).unwrap();
    assert!(
        got.len() < TOTAL,
        "the slow client was dropped, not waited for"
    );
    s.assert_nothing_left();
}

#[test]
fn exec_with_a_terminal_takes_input_and_a_resize() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle("shim-exec-tty", &["sleep", "1000"]);
    s.start_shim(&[]);
    s.start();
    let mut process = s.spec["process"].clone();
    process["terminal"] = json!(true);
    process["args"] = json!(["sh", "-c", "read x; stty size; exit 4"]);
    let (r, resp) = s.request(json!({
        "op": "exec", "exec_id": "t1", "process": process, "stdin": true
    }));
    assert_eq!(resp["ok"], true, "{resp}");
    let r2 = s.call(json!({"op": "exec_resize", "exec_id": "t1", "height": 12, "width": 34}));
    assert_eq!(r2, json!({"ok": true}));
    let mut sock = r.into_inner();
    sock.write_all(b"\n").unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("12 34\r\n"), "{text:?}");
    assert_eq!(
        s.call(json!({"op": "exec_wait", "exec_id": "t1"})),
        json!({"exit_code": 4})
    );
}

#[test]
fn container_processes_start_with_no_signal_blocked_or_ignored() {
    if require_root() {
        return;
    }
    let check = |who: &str, out: &[u8], err: &[u8]| {
        let text = String::from_utf8_lossy(out);
        assert!(err.is_empty(), "{who}: {}", String::from_utf8_lossy(err));
        assert_eq!(text.lines().count(), 2, "{who}: {text}");
        for line in text.lines() {
            let (name, hex) = line.split_once(":\t").unwrap();
            let mask = u64::from_str_radix(hex.trim(), 16).unwrap();
            // The standard signals (1-31). Signals 32 and 33 are glibc's own (SIGCANCEL,
            // SIGSETXID), which glibc refuses to touch: an ignored one inherited from whoever
            // started the shim is the runtime's to reset in the child.
            assert_eq!(mask & 0x7fff_ffff, 0, "{who}: {name} {hex}");
        }
    };
    let grep = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"];
    let mut s = Shim::bundle("shim-sigs", &grep);
    s.start_shim(&[]);
    let (mut attach, _) = s.request(json!({"op": "attach", "stdout": true, "stderr": true}));
    s.start();
    let (out, err) = read_frames(&mut attach);
    check("init", &out, &err);

    let mut s = Shim::bundle("shim-sigs-exec", &["sleep", "1000"]);
    s.start_shim(&[]);
    s.start();
    let mut process = s.spec["process"].clone();
    process["args"] = json!(grep);
    let (mut stream, r) = s.request(json!({"op": "exec", "exec_id": "g", "process": process}));
    assert_eq!(r["ok"], true, "{r}");
    let (out, err) = read_frames(&mut stream);
    check("exec", &out, &err);
}

/// The next run of a container may begin while the shim of the last one is still at work
/// (a daemon that found no answer from that shim and restarted the container by its policy),
/// by the same names: the state directory, the runtime's state, the socket. The old shim's
/// end must leave that run alone: it once deleted the runtime state of a run being created,
/// leaving a container that nothing could kill. The old shim is stopped (SIGSTOP) while the
/// next run is made, so that it ends after it, every time.
#[test]
fn an_old_shim_ending_leaves_the_next_run_of_its_container_alone() {
    if require_root() {
        return;
    }
    use nix::sys::signal::Signal;
    let mut s = Shim::bundle("rerun", &["sleep", "1000"]);
    s.start_shim(&[]);
    s.start();
    let old = s.shim_pid;
    let old_fd = berth_sys::pidfd_open(old).expect("pidfd of the first shim");
    kill(old, Signal::SIGSTOP);
    // What the engine does to start the next run: the state directory afresh, the runtime's
    // state of the last run force-deleted (which kills its process).
    std::fs::remove_dir_all(s.state_dir()).expect("remove the state dir");
    let root = s.runtime_root();
    let runtime = |args: &[&str]| {
        Command::new(common::berth())
            .arg("runtime")
            .arg("--root")
            .arg(&root)
            .args(args)
            .status()
            .expect("berth runtime")
            .success()
    };
    assert!(runtime(&["delete", "--force", &s.id]));
    s.start_shim(&[]);
    assert_ne!(s.shim_pid, old);
    s.start();
    // the first shim goes on: it reaps its process and ends
    kill(old, Signal::SIGCONT);
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&old_fd),
        nix::poll::PollFlags::POLLIN,
    )];
    assert!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(30_000u16)).unwrap_or(0) == 1,
        "the first shim did not exit"
    );
    assert!(s.sock().exists(), "the second run's socket was removed");
    assert!(
        !s.state_dir().join("exit.json").exists(),
        "the first run's exit was written into the second run's directory"
    );
    assert_eq!(
        std::fs::read_to_string(s.state_dir().join("shim.pid")).unwrap_or_default(),
        s.shim_pid.to_string(),
        "the second run's pid file"
    );
    assert_eq!(s.call(json!({"op": "state"}))["status"], "running");
    // the runtime still knows the second run, so it can be ended
    let w = s.waiter();
    assert!(
        runtime(&["kill", &s.id, "KILL"]),
        "the second run's runtime state is gone"
    );
    assert_eq!(wait_answer(w)["exit_code"], 137);
    s.assert_nothing_left();
}

/// The init killed while an exec is being made (a health check's probe runs every few
/// hundred milliseconds): the shim unblocks SIGCHLD while the runtime makes the process, and
/// the init's SIGCHLD then went to its default disposition. Its exit was never seen: a zombie
/// init, a `wait` never answered, a container `rm -f` could not remove. The kill lands in that
/// window in some of the rounds (an exec takes milliseconds); every round's exit must be seen.
#[test]
fn the_init_killed_during_an_exec_is_still_reaped() {
    if require_root() {
        return;
    }
    for round in 0..8 {
        let mut s = Shim::bundle("exec-race", &["sleep", "1000"]);
        s.start_shim(&[]);
        s.start();
        let waiter = s.waiter();
        let mut process = s.spec["process"].clone();
        process["args"] = json!(["true"]);
        let mut sock = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
        let req = json!({"op": "exec", "exec_id": "probe", "process": process, "stdin": false});
        sock.write_all(format!("{req}\n").as_bytes()).unwrap();
        // a little later each round, from at once to ~3.5 ms into the exec
        std::thread::sleep(std::time::Duration::from_micros(500 * round));
        kill(s.pid, nix::sys::signal::SIGKILL);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait_answer(waiter));
        });
        let w = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("round {round}: the init's exit was never seen"));
        assert_eq!(w["exit_code"], 137, "round {round}: {w}");
        drop(sock);
        s.assert_nothing_left();
    }
}

/// `--start --hold-output N`: the process runs at once, but its output waits for the N
/// clients announced to attach, even when the process has exited before they come: they get
/// all of it, and the exit is reported only after it has been delivered.
#[test]
fn held_output_waits_for_the_announced_attaches() {
    if require_root() {
        return;
    }
    let mut s = Shim::bundle(
        "shim-hold",
        &["sh", "-c", "echo first; echo second >&2; exit 5"],
    );
    s.start_shim(&["--start", "--hold-output", "2"]);
    let waiter = s.waiter();
    // The process has run and exited by now; nothing is reported while the output is held.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = s.call(json!({"op": "state"}));
    assert_eq!(
        st["status"], "exited",
        "the process was started by the shim: {st}"
    );
    assert!(
        s.log_records().is_empty(),
        "the output was read before the attaches came"
    );
    let (mut a, r) =
        s.request(json!({"op": "attach", "stdin": false, "stdout": true, "stderr": true}));
    assert_eq!(r, json!({"ok": true}));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        s.log_records().is_empty(),
        "released after one of the two attaches"
    );
    let (mut b, r) =
        s.request(json!({"op": "attach", "stdin": false, "stdout": false, "stderr": true}));
    assert_eq!(r, json!({"ok": true}));
    let (out, err) = read_frames(&mut a);
    assert_eq!(String::from_utf8_lossy(&out), "first\n");
    assert_eq!(String::from_utf8_lossy(&err), "second\n");
    let (out, err) = read_frames(&mut b);
    assert!(out.is_empty());
    assert_eq!(String::from_utf8_lossy(&err), "second\n");
    let w = wait_answer(waiter);
    assert_eq!(w["exit_code"], 5, "{w}");
    assert_eq!(s.log_records().len(), 2);
    s.assert_nothing_left();
}
