//! End-to-end tests of `berth runtime`: real containers on this kernel, checked from inside.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

#[test]
fn run_prints_from_inside_and_propagates_exit_code() {
    if require_root() {
        return;
    }
    let b = Bundle::new(
        "hello",
        &["sh", "-c", "echo hello from $(hostname); exit 3"],
    );
    let out = b.run();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(stdout(&out).starts_with("hello from"), "{}", stdout(&out));
    // run deletes the container afterwards: nothing left
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(!b.root().join(&b.id).exists());
}

#[test]
fn namespaces_are_new_and_hostname_is_set() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("ns", &["sh", "-c", "echo pid=$$; hostname; for n in mnt uts ipc pid net cgroup; do echo $n=$(readlink /proc/self/ns/$n); done"]);
    b.spec["hostname"] = json!("berth-box");
    let nss = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    if !nss.iter().any(|n| n["type"] == "cgroup") {
        nss.push(json!({"type": "cgroup"}));
    }
    let text = ok(&b.run());
    assert!(text.contains("pid=1\n"), "{text}");
    assert!(text.contains("berth-box\n"), "{text}");
    for n in ["mnt", "uts", "ipc", "pid", "net", "cgroup"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{n}=")))
            .unwrap();
        assert_ne!(
            line,
            format!("{n}={}", host.display()),
            "{n} namespace is the host's"
        );
    }
}

#[test]
fn joins_a_namespace_by_path() {
    if require_root() {
        return;
    }
    // join this test process's own UTS namespace by path: the hostname seen inside is ours
    let mut b = Bundle::new("join", &["hostname"]);
    let nss = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "uts");
    nss.push(json!({"type": "uts", "path": format!("/proc/{}/ns/uts", std::process::id())}));
    let text = ok(&b.run());
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(text.trim(), host.to_string_lossy());
}

#[test]
fn mounts_devices_masked_and_readonly_paths() {
    if require_root() {
        return;
    }
    let b = Bundle::new(
        "mounts",
        &["sh", "-c", "grep -E ' /proc | /dev | /dev/pts | /dev/shm | /dev/mqueue | /sys ' /proc/self/mounts | cut -d' ' -f2,3 | sort; ls -l /dev/null | cut -c1; wc -c < /proc/kcore; echo 1 > /proc/sys/kernel/domainname && echo sys-writable; ls /proc/acpi | wc -l; readlink /dev/fd; readlink /dev/ptmx"],
    );
    let text = ok(&b.run());
    for m in [
        "/proc proc",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys sysfs",
    ] {
        assert!(text.contains(m), "missing mount {m}: {text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"c"),
        "/dev/null is not a char device: {text}"
    );
    assert!(lines.contains(&"0"), "/proc/kcore is not masked: {text}");
    assert!(
        !text.contains("sys-writable"),
        "/proc/sys is writable: {text}"
    );
    assert!(lines.contains(&"/proc/self/fd"));
    assert!(lines.contains(&"pts/ptmx"));
}

#[test]
fn capabilities_are_the_spec_sets() {
    if require_root() {
        return;
    }
    let b = Bundle::new("caps", &["grep", "^Cap", "/proc/self/status"]);
    let text = ok(&b.run());
    // the default spec: CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10)
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let line = text.lines().find(|l| l.starts_with(set)).unwrap();
        assert!(line.ends_with(&want), "{line} (want {want})");
    }
    // runc's default spec (and so berth's) also lists them as ambient
    let amb = text.lines().find(|l| l.starts_with("CapAmb")).unwrap();
    assert!(amb.ends_with(&want), "{amb}");
    // an empty ambient set in the spec gives none
    let mut b = Bundle::new("caps2", &["grep", "^CapAmb", "/proc/self/status"]);
    b.spec["process"]["capabilities"]["ambient"] = json!([]);
    let text = ok(&b.run());
    assert!(text.trim_end().ends_with("0000000000000000"), "{text}");
}

#[test]
fn seccomp_denies_with_the_specs_errno() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new(
        "seccomp",
        &[
            "sh",
            "-c",
            "mkdir /tmp/x; echo rc=$?; grep Seccomp: /proc/self/status",
        ],
    );
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    });
    let out = b.run();
    let text = ok(&out);
    assert!(text.contains("rc=1"), "{text}");
    assert!(
        stderr(&out).contains("Permission denied"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(text.contains("Seccomp:\t2"), "{text}");
}

#[test]
fn user_namespace_with_mappings() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("userns", &["sh", "-c", "cat /proc/self/uid_map; id -u"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // the rootfs must be reachable by the mapped root
    let out = b.run();
    let text = ok(&out);
    assert!(text.contains("100000"), "{text}");
    assert!(text.trim_end().ends_with('0'), "{text}");
}

#[test]
fn lifecycle_create_start_state_kill_delete() {
    if require_root() {
        return;
    }
    let b = Bundle::new("life", &["sleep", "100"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let st = b.state();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert!(!b.cgroup_dirs().is_empty(), "no cgroup made");
    ok(&b.runtime(&["start", &b.id]));
    assert_eq!(b.status(), "running");
    // a second start is refused with a clear message
    let again = b.runtime(&["start", &b.id]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("running"), "{}", stderr(&again));
    // ps lists the process
    let ps = ok(&b.runtime(&["ps", "--format", "json", &b.id]));
    let pids: Vec<i64> = serde_json::from_str(&ps).unwrap();
    assert!(pids.contains(&pid), "{ps}");
    // pause / resume
    ok(&b.runtime(&["pause", &b.id]));
    assert_eq!(b.status(), "paused");
    ok(&b.runtime(&["resume", &b.id]));
    assert_eq!(b.status(), "running");
    // delete without force is refused while running
    assert!(!b.runtime(&["delete", &b.id]).status.success());
    ok(&b.runtime(&["kill", &b.id, "KILL"]));
    // state works after the process died (the zombie is reaped by our harness's parent chain
    // eventually; the pidfd-based status sees it as stopped either way)
    for _ in 0..100 {
        if b.status() == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(b.status(), "stopped");
    ok(&b.runtime(&["delete", &b.id]));
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    let gone = b.runtime(&["state", &b.id]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("does not exist"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn delete_force_kills_and_cleans_up() {
    if require_root() {
        return;
    }
    let b = Bundle::new("force", &["sleep", "100"]);
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    ok(&b.runtime(&["delete", "--force", &b.id]));
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(!b.root().join(&b.id).exists());
}

#[test]
fn exec_joins_the_container() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("exec", &["sleep", "100"]);
    b.spec["hostname"] = json!("exec-box");
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    let out = b.runtime(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("exec-box"), "{text}");
    assert!(text.contains("sleep 100"), "{text}");
    // a process.json as containerd passes it
    let proc_file = b.path().join("process.json");
    std::fs::write(
        &proc_file,
        serde_json::to_vec(&json!({"args": ["sh", "-c", "id -u"], "cwd": "/", "user": {"uid": 65534, "gid": 65534}, "env": ["PATH=/bin"]})).unwrap(),
    )
    .unwrap();
    let out = b.runtime(&["exec", "--process", proc_file.to_str().unwrap(), &b.id]);
    assert_eq!(ok(&out).trim(), "65534");
    let bad = b.runtime(&["exec", &b.id, "no-such-program"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("executable file not found"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn no_host_descriptor_leaks_into_the_container() {
    if require_root() {
        return;
    }
    use std::os::fd::AsRawFd;
    // a descriptor without close-on-exec in the caller, as a careless supervisor might leave
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let fd = nix::unistd::dup(f.as_raw_fd()).unwrap();
    let b = Bundle::new("fds", &["ls", "/proc/self/fd"]);
    let text = ok(&b.run());
    let _ = nix::unistd::close(fd);
    let fds: Vec<&str> = text.split_whitespace().collect();
    // 0, 1, 2 and the directory ls itself opened
    assert!(
        fds.len() <= 4,
        "leaked descriptors: {fds:?} (host fd was {fd})"
    );
    assert!(
        !fds.contains(&fd.to_string().as_str()) || fd <= 3,
        "fd {fd} leaked: {fds:?}"
    );
}

#[test]
fn symlinks_in_the_image_cannot_redirect_mounts_to_the_host() {
    if require_root() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let mut b = Bundle::new("symlink", &["true"]);
    std::os::unix::fs::symlink(outside.path(), b.path().join("rootfs/evil")).unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/evil/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
    }));
    let _ = b.run();
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "a mount target was created on the host through an image symlink"
    );
}

#[test]
fn rlimit_above_the_hard_limit_is_a_clear_error() {
    if require_root() {
        return;
    }
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let caps = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = caps.lines().find(|l| l.starts_with("CapEff")).unwrap();
    let eff = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    if eff & (1 << 24) != 0 {
        // with CAP_SYS_RESOURCE raising works: nothing to check here
        skip("this process has CAP_SYS_RESOURCE, so raising a hard limit succeeds");
        return;
    }
    let mut b = Bundle::new("rlimit", &["true"]);
    b.spec["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "hard": hard + 1000, "soft": 1024}]);
    let out = b.run();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("RLIMIT_NOFILE") || e.contains("RlimitNofile"),
        "{e}"
    );
    assert!(e.contains("CAP_SYS_RESOURCE"), "{e}");
    assert!(b.cgroup_dirs().is_empty(), "failed create left a cgroup");
    assert!(!b.root().join(&b.id).exists(), "failed create left state");
}

#[test]
fn hooks_run_with_the_state() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("hooks", &["true"]);
    let log = b.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", log.display())]});
    b.spec["hooks"] = json!({
        "createRuntime": [hook("createRuntime")],
        "createContainer": [hook("createContainer")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")]
    });
    ok(&b.run());
    let text = std::fs::read_to_string(&log).unwrap();
    for name in ["createRuntime", "createContainer", "poststart", "poststop"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} did not run: {text}"));
        let state: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(state["id"], b.id.as_str());
        if name != "poststop" {
            // the init's pid as the runtime sees it, also for hooks the init itself runs
            assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{name}: {state}");
        }
    }
}

#[test]
fn memory_limit_oom_kills() {
    if require_root() {
        return;
    }
    // dd's 64 MiB buffer cannot fit under a 32 MiB limit: the OOM killer ends dd (137)
    let mut b = Bundle::new("oom", &["sh", "-c", DD_64M]);
    limit_memory_32m(&mut b);
    let text = ok(&b.run());
    assert!(text.contains("dd=137"), "dd was not OOM-killed: {text}");
    // and without the limit, the same command succeeds (the limit is what killed it)
    let b2 = Bundle::new("nooom", &["sh", "-c", DD_64M]);
    assert!(ok(&b2.run()).contains("dd=0"));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if require_root() {
        return;
    }
    assert_pids_limit_stops_a_fork_bomb("pids");
}

#[test]
fn cpu_quota_holds() {
    if require_root() {
        return;
    }
    // 0.1 CPU for a busy loop; after ~1.5 s of wall time, it may have used at most ~0.15 s
    // plus scheduling slack.
    let mut b = Bundle::new("cpu", &["sh", "-c", "while :; do :; done"]);
    b.spec["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000});
    let v = assert_cpu_quota_holds(&b);
    let throttled = v["data"]["cpu"]["throttling"]["throttledPeriods"]
        .as_u64()
        .unwrap_or(0);
    assert!(throttled > 0, "no throttled periods: {v}");
}

#[test]
fn a_device_outside_the_rules_is_denied() {
    if require_root() {
        return;
    }
    assert_a_device_outside_the_rules_is_denied("dev");
}

#[test]
fn bad_input_gets_clear_errors() {
    if require_root() {
        return;
    }
    let b = Bundle::new("bad", &["true"]);
    // no such bundle
    let out = b.runtime(&["create", "--bundle", "/nonexistent-bundle", "x1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent-bundle"),
        "{}",
        stderr(&out)
    );
    // an id that would escape the state directory
    let out = b.runtime(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "../escape",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
    // a malformed config.json
    std::fs::write(b.path().join("config.json"), b"{ not json").unwrap();
    let out = b.runtime(&["create", "--bundle", b.path().to_str().unwrap(), "x2"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    // a program that is not there: create fails, nothing left behind
    let mut b2 = Bundle::new("bad2", &["/no/such/program"]);
    b2.spec["process"]["args"] = json!(["/no/such/program"]);
    let out = b2.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/no/such/program"),
        "{}",
        stderr(&out)
    );
    assert!(b2.cgroup_dirs().is_empty());
    assert!(!b2.root().join(&b2.id).exists());
}

#[test]
fn the_runtime_binary_cannot_be_overwritten_from_a_container() {
    if require_root() {
        return;
    }
    // CVE-2019-5736: while berth sets up or joins a container, /proc/<its pid>/exe must not be
    // the host's writable binary. A createRuntime hook is a child of the runtime: it opens its
    // parent's exe for writing with O_TRUNC, which on an unprotected binary fails only with
    // "Text file busy" (and succeeds once the runtime has exited — the attack); protected, it
    // fails because the mount is read-only (or the memfd copy is sealed).
    let mut b = Bundle::new("cve", &["true"]);
    let log = b.path().join("exe.log");
    b.spec["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c",
        format!("readlink /proc/$PPID/exe > {0}; (echo x > /proc/$PPID/exe) 2>> {0} || echo write-refused >> {0}", log.display())]}]});
    ok(&b.run());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("write-refused"),
        "the runtime's binary was writable: {text}"
    );
    assert!(
        !text.contains("Text file busy"),
        "the runtime ran from its writable binary: {text}"
    );
    assert!(
        text.contains("Read-only file system") || text.starts_with("/memfd:berth-runtime"),
        "{text}"
    );
    // and the host's binary is intact
    assert!(std::fs::metadata(berth()).unwrap().len() > 0);
}

#[test]
fn no_pivot_domainname_oom_score_adj_and_time_namespace() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new(
        "misc",
        &["sh", "-c", "cat /proc/sys/kernel/domainname; cat /proc/self/oom_score_adj; cut -d' ' -f1 /proc/uptime; ls /proc/self/root/ | wc -l"],
    );
    b.spec["domainname"] = json!("berth.test");
    b.spec["process"]["oomScoreAdj"] = json!(500);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    // a boot clock ten days ahead of the host's
    b.spec["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}});
    b.write_spec();
    let bundle = b.path().to_str().unwrap().to_string();
    let out = b.runtime(&["run", "--no-pivot", "--bundle", &bundle, &b.id]);
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "berth.test", "{text}");
    assert_eq!(lines[1], "500", "{text}");
    let uptime: f64 = lines[2].parse().unwrap();
    assert!(
        uptime >= 864000.0,
        "boottime offset not applied: uptime {uptime}"
    );
}

#[test]
fn update_changes_a_running_containers_limits() {
    if require_root() {
        return;
    }
    let b = Bundle::new("update", &["sleep", "100"]);
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    ok(&b.runtime(&["update", "--memory", "64m", "--pids-limit", "20", &b.id]));
    let ev = ok(&b.runtime(&["events", "--stats", &b.id]));
    let v: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(
        v["data"]["memory"]["usage"]["limit"].as_u64(),
        Some(64 << 20),
        "{ev}"
    );
    assert_eq!(v["data"]["pids"]["limit"].as_u64(), Some(20), "{ev}");
    // resources from a file (-r), as containerd passes them
    let r = b.path().join("r.json");
    std::fs::write(&r, br#"{"pids": {"limit": 30}}"#).unwrap();
    ok(&b.runtime(&["update", "-r", r.to_str().unwrap(), &b.id]));
    let ev = ok(&b.runtime(&["events", "--stats", &b.id]));
    let v: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(v["data"]["pids"]["limit"].as_u64(), Some(30), "{ev}");
}

#[test]
fn recursive_mount_options_reach_submounts() {
    if require_root() {
        return;
    }
    // the host's /sys has submounts (/sys/fs/cgroup, ...): "rro" makes them read-only too,
    // where a plain "ro" bind would leave them writable
    let mut b = Bundle::new(
        "rro",
        &[
            "sh",
            "-c",
            "grep ' /hostsys/fs/cgroup ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1",
        ],
    );
    b.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hostsys", "type": "bind", "source": "/sys", "options": ["rbind", "rro", "rnosuid"]
    }));
    let text = ok(&b.run());
    assert_eq!(text.trim(), "ro", "submount is not read-only: {text}");
}

#[test]
fn seccomp_notify_hands_the_descriptor_to_the_agent() {
    if require_root() {
        return;
    }
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let mut b = Bundle::new("notify", &["sh", "-c", "mkdir /tmp/x; echo rc=$?"]);
    let sock_path = b.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock_path,
        "listenerMetadata": "berth-test-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    // The agent: take the message and the descriptor, check them, then close the descriptor,
    // which makes the notified syscalls fail with ENOSYS.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
                fds.extend(f);
            }
        }
        let n = msg.bytes;
        let v: Value = serde_json::from_slice(&buf[..n]).unwrap();
        for fd in &fds {
            let _ = nix::unistd::close(*fd);
        }
        (v, fds.len())
    });
    let out = b.run();
    let (v, nfds) = agent.join().unwrap();
    assert_eq!(nfds, 1, "no descriptor received: {v}");
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["metadata"], "berth-test-metadata");
    assert_eq!(v["state"]["id"], b.id.as_str());
    assert!(v["pid"].as_i64().unwrap() > 1, "{v}");
    let text = stdout(&out);
    assert!(
        text.contains("rc=1"),
        "mkdir was not intercepted: {text} {}",
        stderr(&out)
    );
}

#[test]
fn preserve_fds_passes_only_the_callers_descriptors() {
    if require_root() {
        return;
    }
    let b = Bundle::new("preserve", &["ls", "-l", "/proc/self/fd/"]);
    b.write_spec();
    let run = |n: &str, open_fd3: bool| {
        let redirect = if open_fd3 {
            "exec 3</etc/hostname; "
        } else {
            ""
        };
        let cmd = format!(
            "{redirect}exec {} runtime --root {} run --preserve-fds {n} --bundle {} {}-{n}",
            berth().display(),
            b.root().display(),
            b.path().display(),
            b.id
        );
        std::process::Command::new("sh")
            .args(["-c", &cmd])
            .output()
            .unwrap()
    };
    // the caller's fd 3 is passed on
    let text = ok(&run("1", true));
    assert!(text.contains(" 3 -> /"), "fd 3 not passed: {text}");
    // a large count passes whatever the caller had open (cargo's jobserver, say), but nothing
    // of the runtime's own: its exec fifo, its sockets
    let text = ok(&run("100", false));
    assert!(!text.contains("exec.fifo"), "the exec fifo leaked: {text}");
    assert!(!text.contains("socket:"), "a runtime socket leaked: {text}");
}

#[test]
fn proc_on_a_symlink_and_bad_oci_versions_are_refused() {
    if require_root() {
        return;
    }
    let b = Bundle::new("procsym", &["true"]);
    std::fs::remove_dir(b.path().join("rootfs/proc")).unwrap();
    std::os::unix::fs::symlink("/tmp", b.path().join("rootfs/proc")).unwrap();
    let out = b.run();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));

    let mut b = Bundle::new("ociver", &["true"]);
    b.spec["ociVersion"] = json!("not-a-version");
    let out = b.run();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ociVersion"), "{}", stderr(&out));
}

#[test]
fn without_a_mount_namespace_the_root_is_a_chroot() {
    if require_root() {
        return;
    }
    // nothing may be mounted (it would be the host's mount table): the rootfs's /proc stays
    // an empty directory, and the process sees the rootfs as its root
    let mut b = Bundle::new("nomnt", &["sh", "-c", "ls /bin/busybox; ls /proc | wc -l"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "mount");
    let text = ok(&b.run());
    assert!(text.contains("/bin/busybox"), "{text}");
    assert_eq!(
        text.lines().last().unwrap().trim(),
        "0",
        "something was mounted on /proc: {text}"
    );
}

#[test]
fn start_container_hooks_inherit_the_process_environment() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("hookenv", &["true"]);
    b.spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    // the hook runs inside the container: write where the container can (its /tmp is the
    // rootfs's), then read it from the host side
    b.spec["root"]["readonly"] = json!(false);
    b.spec["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo FOO=$FOO > /tmp/env.log"]}]});
    ok(&b.run());
    let text = std::fs::read_to_string(b.path().join("rootfs/tmp/env.log")).unwrap();
    assert_eq!(text.trim(), "FOO=bar");
}

/// Every line of /proc/<pid>/cgroup (each v1 hierarchy and the cgroup2 tree) names the
/// container's cgroup.
fn assert_in_container_cgroup(pid: &str, id: &str) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("/berth-test/{id}");
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        // a v1 hierarchy, or the hybrid cgroup2 tree when the runtime uses it (it has a
        // controller to offer)
        let unified_used = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .map(|c| !c.trim().is_empty())
            .unwrap_or(true);
        if line.starts_with("0::") && !unified_used {
            continue;
        }
        assert_eq!(
            path, want,
            "pid {pid} is outside the container's cgroup: {text}"
        );
    }
}

#[test]
fn init_and_exec_processes_enter_every_cgroup_hierarchy() {
    if require_root() {
        return;
    }
    // The init moves itself into the v1 hierarchies (and is born in the cgroup2 one); the
    // same must hold with a user namespace, where it is no longer root on the host.
    for userns in [false, true] {
        let mut b = Bundle::new("cgin", &["sleep", "100"]);
        if userns {
            let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
            ns.push(json!({"type": "user"}));
            b.spec["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            b.spec["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
        let out = b.create();
        assert!(
            out.status.success(),
            "create (userns {userns}): {}",
            stderr(&out)
        );
        let pid = b.state()["pid"].as_i64().unwrap().to_string();
        assert_in_container_cgroup(&pid, &b.id);
        ok(&b.runtime(&["start", &b.id]));
        let pid_file = b.path().join("exec.pid");
        // a detached process keeps its stdio: not the harness's pipes, or we would wait on it
        let status = std::process::Command::new(common::berth())
            .args([
                "runtime",
                "--root",
                b.root().to_str().unwrap(),
                "exec",
                "--detach",
            ])
            .args([
                "--pid-file",
                pid_file.to_str().unwrap(),
                &b.id,
                "sleep",
                "50",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "exec --detach (userns {userns})");
        let exec_pid = std::fs::read_to_string(&pid_file).unwrap();
        assert_in_container_cgroup(exec_pid.trim(), &b.id);
        // and the runtime's own cgroups are untouched: it is not in the container's
        let me = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(!me.contains(&b.id), "{me}");
    }
}

#[test]
fn delete_force_kills_every_process_without_a_pid_namespace() {
    if require_root() {
        return;
    }
    // Sharing the host's pid namespace, killing the init does not take the others with it:
    // delete --force must find them through the cgroup and wait until they are gone.
    let mut b = Bundle::new(
        "hostpid",
        &["sh", "-c", "sleep 2311 & sleep 2312 & sleep 2313"],
    );
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    let sleepers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("cmdline"))
                    .map(|c| c.starts_with("sleep\x00231"))
                    .unwrap_or(false)
            })
            .count()
    };
    for _ in 0..100 {
        if sleepers() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(sleepers(), 3, "the container's processes did not start");
    ok(&b.runtime(&["delete", "--force", &b.id]));
    // gone when delete returns (zombies have an empty cmdline)
    assert_eq!(sleepers(), 0, "processes outlived delete --force");
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
}

#[test]
fn a_limit_the_kernel_refuses_fails_create_and_leaves_nothing() {
    if require_root() {
        return;
    }
    // Limits are written while the init already sets up: a bad one must still fail create
    // with the field named, kill the init and remove the cgroup and the state.
    let mut b = Bundle::new("badlimit", &["sleep", "100"]);
    b.spec["linux"]["resources"]["memory"] = json!({"limit": 100 << 20, "swap": 50 << 20});
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("linux.resources.memory.swap"),
        "{}",
        stderr(&out)
    );
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(!b.root().join(&b.id).exists(), "state left");
    let list = ok(&b.runtime(&["list", "-q"]));
    assert!(!list.contains(&b.id), "{list}");
}

/// `docker run -v ./cfg.yml:/cfg.yml`: a file bind-mounted onto a path directly under the
/// container's root, which does not exist in the image.
#[test]
fn a_file_bind_mounts_directly_under_the_root() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("filebind", &["cat", "/cfg.yml"]);
    let src = b.path().join("cfg.yml");
    std::fs::write(&src, "key: value\n").unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/cfg.yml", "type": "bind", "source": src, "options": ["rbind", "ro"]
    }));
    assert_eq!(ok(&b.run()), "key: value\n");
}

/// Both lines of /proc/self/status, each all zeros.
fn assert_clean_signal_state(who: &str, text: &str) {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("SigBlk:") || l.starts_with("SigIgn:"))
        .collect();
    assert_eq!(lines.len(), 2, "{who}: {text:?}");
    for l in lines {
        let mask = l.split_whitespace().nth(1).unwrap_or("");
        assert!(
            !mask.is_empty() && mask.bytes().all(|b| b == b'0'),
            "{who} starts with signals blocked or ignored: {l}"
        );
    }
}

/// `run` blocks the signals it forwards and Rust ignores SIGPIPE; neither may reach the
/// container's processes: init in the foreground and with -d, and exec'd ones.
#[test]
fn container_processes_start_with_no_signal_blocked_or_ignored() {
    if require_root() {
        return;
    }
    // grep itself, not through a shell: busybox's sh changes its own signal state
    let grep = ["grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status"];
    let b = Bundle::new("sigfg", &grep);
    assert_clean_signal_state("run", &ok(&b.run()));

    let b = Bundle::new("sigd", &grep);
    b.write_spec();
    let bundle = b.path().to_str().unwrap().to_string();
    assert_clean_signal_state(
        "run -d",
        &ok(&b.runtime(&["run", "-d", "--bundle", &bundle, &b.id])),
    );

    let b = Bundle::new("sigexec", &["sleep", "100"]);
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    let mut args = vec!["exec", b.id.as_str()];
    args.extend(grep);
    assert_clean_signal_state("exec", &ok(&b.runtime(&args)));
}

/// Issue 12 item 5: joining the host's network namespace by path does not make a net.*
/// sysctl the container's: it would be written into the host's. Refused, host value kept.
#[test]
fn a_namespaced_sysctl_in_the_hosts_namespace_is_refused() {
    if require_root() {
        return;
    }
    let key = "/proc/sys/net/core/somaxconn";
    let before = std::fs::read_to_string(key).unwrap();
    // should the runtime write it after all, the host gets its value back
    struct Restore(&'static str, String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0, &self.1);
        }
    }
    let _restore = Restore(key, before.clone());
    let other = (before.trim().parse::<u64>().unwrap() + 1).to_string();
    let mut b = Bundle::new("sysctlhost", &["true"]);
    let nss = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "network");
    // this test's own namespace, the host's here (/proc/1 may be out of reach in a sandbox)
    nss.push(json!({"type": "network", "path": format!("/proc/{}/ns/net", std::process::id())}));
    b.spec["linux"]["sysctl"] = json!({"net.core.somaxconn": other});
    let out = b.run();
    assert!(!out.status.success(), "a host sysctl was accepted");
    let e = stderr(&out);
    assert!(
        e.contains("net.core.somaxconn") && e.contains("host"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(key).unwrap(),
        before,
        "host value changed"
    );
    assert!(b.cgroup_dirs().is_empty(), "refused create left a cgroup");
}

/// Issue 12 should-fix: errors that name their cause.
#[test]
fn hooks_namespace_paths_rlimit_as_and_config_shape_get_clear_errors() {
    if require_root() {
        return;
    }
    // a relative hook path
    let mut b = Bundle::new("relhook", &["true"]);
    b.spec["hooks"] = json!({"prestart": [{"path": "true"}]});
    let e = stderr(&b.run());
    assert!(e.contains("must be absolute") && e.contains("true"), "{e}");

    // a namespace path that is a regular file
    let mut b = Bundle::new("nsfile", &["true"]);
    let file = b.path().join("not-a-namespace");
    std::fs::write(&file, b"").unwrap();
    let nss = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "uts");
    nss.push(json!({"type": "uts", "path": file}));
    let e = stderr(&b.run());
    assert!(
        e.contains("regular file") && e.contains(file.to_str().unwrap()),
        "{e}"
    );

    // an address-space limit the init itself cannot run under
    let mut b = Bundle::new("rlimitas", &["true"]);
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_AS", "hard": 1048576, "soft": 1048576}]);
    let out = b.run();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("RLIMIT_AS"), "{}", stderr(&out));

    // config.json that is not an object
    let b = Bundle::new("cfgarray", &["true"]);
    std::fs::write(b.path().join("config.json"), b"[]").unwrap();
    let bundle = b.path().to_str().unwrap().to_string();
    let e = stderr(&b.runtime(&["run", "--bundle", &bundle, &b.id]));
    assert!(e.contains("must be a JSON object"), "{e}");
}

/// A host process in a cgroup, killed and reaped on drop (also when the test fails).
struct Victim(std::process::Child);

impl Victim {
    fn spawn() -> Victim {
        Victim(
            std::process::Command::new("/bin/busybox")
                .args(["sleep", "300"])
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup made by the test (relative path), removed on drop from every hierarchy where it
/// exists, including those a runtime that did not refuse it would have made.
struct TestCgroup(String);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path().join(&self.0));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.0));
    }
}

/// Issue 12 item 3: a bundle naming an existing cgroup with someone's process in it is refused
/// at create, and nothing of the runtime kills that process.
#[test]
fn an_occupied_cgroup_is_refused_and_its_process_survives() {
    if require_root() {
        return;
    }
    let b = Bundle::new("occupied", &["true"]);
    let name = format!("berth-test/{}-pre", b.id);
    let hierarchy = if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        "/sys/fs/cgroup/memory"
    } else {
        "/sys/fs/cgroup"
    };
    let dir = Path::new(hierarchy).join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let _cg = TestCgroup(name.clone());
    let mut victim = Victim::spawn();
    std::fs::write(dir.join("cgroup.procs"), victim.pid().to_string()).unwrap();

    let mut b = b;
    b.spec["linux"]["cgroupsPath"] = json!(format!("/{name}"));
    let out = b.run();
    assert!(!out.status.success(), "an occupied cgroup was accepted");
    let e = stderr(&out);
    assert!(e.contains("holds processes") && e.contains(&name), "{e}");
    ok(&b.runtime(&["delete", "--force", &b.id]));
    assert!(
        victim.alive(),
        "the process in the pre-existing cgroup was killed"
    );
    drop(victim);
}

/// A process moved into a running container's cgroup (it has its own pid namespace) is not
/// the container's: `kill --all` skips it and `delete --force` refuses rather than kill it.
#[test]
fn kill_all_and_delete_force_spare_a_process_the_container_did_not_create() {
    if require_root() {
        return;
    }
    let b = Bundle::new("foreign", &["sleep", "300"]);
    assert!(b.create().status.success());
    ok(&b.runtime(&["start", &b.id]));
    let mut victim = Victim::spawn();
    let dirs = b.cgroup_dirs();
    assert!(!dirs.is_empty());
    for d in &dirs {
        std::fs::write(d.join("cgroup.procs"), victim.pid().to_string()).unwrap();
    }
    ok(&b.runtime(&["kill", "--all", &b.id, "KILL"]));
    let out = b.runtime(&["delete", "--force", &b.id]);
    assert!(
        !out.status.success(),
        "delete --force removed a cgroup with a foreign process"
    );
    assert!(
        stderr(&out).contains(&victim.pid().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(
        victim.alive(),
        "a process the container did not create was killed"
    );
    // moved back out, the container deletes cleanly
    for d in &dirs {
        let mut root = d.clone();
        while root.file_name().is_some_and(|n| n != "berth-test") {
            root.pop();
        }
        root.pop();
        std::fs::write(root.join("cgroup.procs"), victim.pid().to_string()).unwrap();
    }
    ok(&b.runtime(&["delete", "--force", &b.id]));
    assert!(b.cgroup_dirs().is_empty());
    assert!(victim.alive());
}

/// The init runs createContainer hooks with SIGPIPE at its default (the program must start
/// so): a hook that exits without reading a state larger than a pipe holds must not kill it.
#[test]
fn a_hook_that_does_not_read_its_input_does_not_kill_the_init() {
    if require_root() {
        return;
    }
    let mut b = Bundle::new("hookpipe", &["echo", "started"]);
    // without a pid namespace of its own: the init of one ignores signals at their default
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    b.spec["annotations"] = json!({"big": "x".repeat(256 * 1024)});
    b.spec["hooks"] =
        json!({"createContainer": [{"path": "/bin/busybox", "args": ["busybox", "true"]}]});
    assert_eq!(ok(&b.run()), "started\n");
}
