//! The runtime library as a long-lived single-threaded caller (the shim) uses it: containers
//! created and exec'd from one process, stdio as descriptors, and the caller's own state
//! (namespaces, signal mask) unchanged afterwards; the container's processes start with a clean
//! signal state whatever the caller's is.
//!
//! A plain program (no libtest harness): the runtime refuses to fork from a multithreaded
//! process, and libtest runs tests on threads. Run: `cargo test -p berth-runtime --test library`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::container::exec::ExecOutcome;
use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use nix::sys::signal::{SigSet, Signal};
use serde_json::{json, Value};

/// A missing requirement: say so and stop, or under CI fail.
fn skip(reason: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("requirement missing under CI: {reason}");
    }
    println!("SKIP: {reason}");
    true
}

fn requirements_missing() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        return skip("needs root");
    }
    if !Path::new("/bin/busybox").exists() {
        return skip("needs /bin/busybox (apt-get install busybox-static)");
    }
    false
}

fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "grep", "sleep", "cat", "readlink", "echo", "tty"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// One container: its bundle and runtime root in a temporary directory; deleted (and its init,
/// our child, reaped) on drop, also when the test fails.
struct Ctr {
    rt: Runtime,
    id: String,
    bundle: tempfile::TempDir,
    pid: Option<i32>,
}

impl Ctr {
    fn new(name: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> Ctr {
        let bundle = tempfile::Builder::new()
            .prefix("berth-lib")
            .tempdir()
            .unwrap();
        busybox_rootfs(&bundle.path().join("rootfs"));
        let id = format!("lib-{name}-{}", std::process::id());
        let mut spec = serde_json::to_value(berth_runtime::spec::default_spec(false)).unwrap();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        spec["root"]["path"] = json!("rootfs");
        spec["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        edit(&mut spec);
        std::fs::write(
            bundle.path().join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        Ctr {
            rt: Runtime::new(bundle.path().join("state")),
            id,
            bundle,
            pid: None,
        }
    }

    fn opts(&self, stdio: Option<[OwnedFd; 3]>) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.path().to_path_buf(),
            stdio,
            ..Default::default()
        }
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self.rt.delete(&self.id, true);
        if let Some(pid) = self.pid {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        // the parent the tests share, once no other test's container is in it
        let _ = berth_cgroups::remove_unused("/berth-test");
    }
}

/// stdin from /dev/null, stdout and stderr into one pipe; returns the read end too.
fn piped_stdio() -> ([OwnedFd; 3], std::fs::File) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    ([null, w, w2], std::fs::File::from(r))
}

fn read_all(mut f: std::fs::File) -> String {
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

/// grep itself, not through a shell: busybox's sh changes its own signal state.
const SIGNAL_STATE: [&str; 4] = ["grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status"];

/// Both lines, each all zeros.
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

fn ns(path: &str) -> PathBuf {
    std::fs::read_link(path).unwrap()
}

fn exec_in(c: &Ctr, args: &[&str]) -> String {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(c.bundle.path().join("config.json")).unwrap())
            .unwrap();
    let mut p: oci_spec::runtime::Process =
        serde_json::from_value(spec["process"].clone()).unwrap();
    p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    let (stdio, out) = piped_stdio();
    let outcome =
        c.rt.exec(
            &c.id,
            ExecOptions {
                process: p,
                stdio: Some(stdio),
                console: None,
                console_socket: None,
                pid_file: None,
                detach: false,
                preserve_fds: 0,
                ignore_paused: false,
            },
        )
        .unwrap();
    assert!(matches!(outcome, ExecOutcome::Exited(0)), "exec failed");
    read_all(out)
}

/// Create and start a container with its stdio on a pipe; returns what it wrote once every
/// writer is gone.
fn started(c: &mut Ctr) -> std::fs::File {
    let (stdio, out) = piped_stdio();
    let created = c.rt.create(&c.opts(Some(stdio))).unwrap();
    // the options (our copies of the pipe's write end) are dropped: EOF when the container's
    // processes are done with it
    c.pid = Some(created.record.pid);
    c.rt.start(&c.id).unwrap();
    out
}

/// SigBlk and SigIgn of a process, read from the host.
fn signal_state_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn the_caller_is_unchanged_and_containers_start_clean() {
    // The shim's state: SIGCHLD (for a signalfd) and others blocked; SIGPIPE is ignored by
    // Rust's runtime already.
    let mut blocked = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGUSR1] {
        blocked.add(s);
    }
    blocked.thread_block().unwrap();
    let mask_before = SigSet::thread_get_mask().unwrap();
    let own_pid_ns = ns("/proc/self/ns/pid");
    let time_ns = Path::new("/proc/self/ns/time").exists();
    let own_time = time_ns.then(|| ns("/proc/self/ns/time_for_children"));

    // The init's stdio is a pipe; it reports its own signal state there.
    let mut first = Ctr::new("first", &SIGNAL_STATE, |_| {});
    let out = started(&mut first);
    assert_clean_signal_state("init", &read_all(out));
    drop(first);

    // Two containers that stay up; b has a time namespace of its own when the kernel has them.
    let sleep = ["sleep", "1000"];
    let mut a = Ctr::new("a", &sleep, |_| {});
    let mut b = Ctr::new("b", &sleep, |spec| {
        if time_ns {
            spec["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "time"}));
        }
    });
    drop(started(&mut a));
    drop(started(&mut b));
    for c in [&a, &b] {
        let pid = c.pid.unwrap_or(0);
        assert_clean_signal_state("init", &signal_state_of(pid));
    }
    for c in [&a, &b, &a, &b] {
        assert_clean_signal_state("exec", &exec_in(c, &SIGNAL_STATE));
        // the exec'd process is in the container's pid namespace, not the caller's
        let text = exec_in(c, &["readlink", "/proc/self/ns/pid"]);
        assert_ne!(
            text.trim(),
            own_pid_ns.display().to_string(),
            "exec stayed in the caller's pid namespace"
        );
    }

    assert_eq!(ns("/proc/self/ns/pid"), own_pid_ns);
    assert_eq!(ns("/proc/self/ns/pid_for_children"), own_pid_ns);
    if let Some(t) = own_time {
        assert_eq!(ns("/proc/self/ns/time_for_children"), t);
    }
    assert_eq!(
        SigSet::thread_get_mask().unwrap(),
        mask_before,
        "the caller's signal mask changed"
    );
    // The caller can still start threads, and its children are born in its own namespace.
    std::thread::spawn(|| ()).join().unwrap();
    let out = Command::new("/bin/busybox")
        .args(["readlink", "/proc/self/ns/pid"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        own_pid_ns.display().to_string(),
        "a child of the caller landed in another pid namespace"
    );
    blocked.thread_unblock().unwrap();
}

/// A container whose init fails during setup must not write out the caller's buffered output
/// (std::process::exit in the forked child would flush it a second time).
fn a_failing_child_does_not_flush_the_callers_output() {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("BERTH_LIBTEST_CHILD", "unflushed")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("UNFLUSHED-MARK").count(),
        1,
        "the caller's buffered output was written more than once: {text:?}"
    );
}

/// In the child of `a_failing_child_does_not_flush_the_callers_output`.
fn unflushed_child() {
    use std::io::Write;
    // line-buffered and without a newline: still in the buffer when the runtime forks
    print!("UNFLUSHED-MARK");
    let c = Ctr::new("unflushed", &["/no/such/program"], |_| {});
    let e = c.rt.create(&c.opts(None));
    assert!(e.is_err(), "a missing program was accepted");
    std::io::stdout().flush().unwrap();
}

/// `start: true` creates and starts in one: the program runs without a `start`, no exec fifo
/// is made, the state is past created, and a poststart hook has run when create returns.
fn created_and_started_in_one() {
    let mark = tempfile::NamedTempFile::new().unwrap();
    let mark_path = mark.path().to_string_lossy().into_owned();
    drop(mark);
    let mut c = Ctr::new("atonce", &["echo", "ran at once"], |spec| {
        spec["hooks"] = json!({"poststart": [{"path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {mark_path}")]}]});
    });
    let (stdio, out) = piped_stdio();
    let created =
        c.rt.create(&CreateOptions {
            start: true,
            ..c.opts(Some(stdio))
        })
        .unwrap();
    c.pid = Some(created.record.pid);
    assert!(
        !created.fifo_path().exists(),
        "an exec fifo was made for a container started at once"
    );
    assert_ne!(
        created.status(),
        berth_runtime::Status::Created,
        "a container started at once reads as created"
    );
    let state: Value = serde_json::from_str(&std::fs::read_to_string(&mark_path).unwrap())
        .expect("the poststart hook got the state on its stdin");
    assert_eq!(state["pid"], json!(created.record.pid));
    let _ = std::fs::remove_file(&mark_path);
    // no start: the program has run all the same
    assert_eq!(read_all(out), "ran at once\n");
}

/// A terminal through a socket the caller already holds (no path to bind): the pty master
/// arrives on it during create, and the container's output comes out of it.
fn a_terminal_through_a_connected_console_socket() {
    let c = Ctr::new("console", &["tty"], |spec| {
        spec["process"]["terminal"] = json!(true);
    });
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let created =
        c.rt.create(&CreateOptions {
            console: Some(theirs),
            ..c.opts(None)
        })
        .unwrap();
    let mut c = c;
    c.pid = Some(created.record.pid);
    let mut buf = [0u8; 256];
    let (n, mut fds) = berth_sys::recv_with_fds(std::os::fd::AsFd::as_fd(&ours), &mut buf).unwrap();
    assert!(
        n > 0 && fds.len() == 1,
        "no pty master on the console socket"
    );
    let slave = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut master = std::fs::File::from(fds.remove(0));
    c.rt.start(&c.id).unwrap();
    // read until the slave side is closed (EIO) or end of file
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    while let Ok(n) = master.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("/dev/pts/"),
        "tty printed {out:?} (slave {slave})"
    );
}

/// The daemon's case: a multithreaded process may not fork a container's process. The refusal
/// says why and what to do, and leaves nothing behind.
fn a_multithreaded_caller_is_refused_with_a_clear_error() {
    let c = Ctr::new("threads", &["true"], |_| {});
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let err = c.rt.create(&c.opts(None));
    drop(tx);
    other.join().unwrap();
    let msg = match err {
        Ok(_) => panic!("create from a multithreaded process was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("single-threaded"), "{msg}");
    assert!(
        !c.bundle.path().join("state").join(&c.id).exists(),
        "a refused create left state behind"
    );
}

fn main() {
    if std::env::var("BERTH_LIBTEST_CHILD").as_deref() == Ok("unflushed") {
        unflushed_child();
        return;
    }
    if requirements_missing() {
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 5] = [
        (
            "the_caller_is_unchanged_and_containers_start_clean",
            the_caller_is_unchanged_and_containers_start_clean,
        ),
        ("created_and_started_in_one", created_and_started_in_one),
        (
            "a_failing_child_does_not_flush_the_callers_output",
            a_failing_child_does_not_flush_the_callers_output,
        ),
        (
            "a_terminal_through_a_connected_console_socket",
            a_terminal_through_a_connected_console_socket,
        ),
        // last: once a thread has run, the process may keep one (the allocator's, say)
        (
            "a_multithreaded_caller_is_refused_with_a_clear_error",
            a_multithreaded_caller_is_refused_with_a_clear_error,
        ),
    ];
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|p| !name.contains(p)) {
            continue;
        }
        println!("test {name} ...");
        f();
        println!("test {name} ... ok");
    }
}
