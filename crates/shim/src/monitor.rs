//! The long-lived half of the shim: set-up (session, subreaper, signals, socket, stdio,
//! runtime create), the report to the spawner, and the event loop (one epoll, fixed buffers)
//! that moves the container's output to the log and to attached clients, serves requests,
//! reaps the init and anything reparented to us, and cleans up after the init has exited.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use serde_json::{json, Value};

use crate::logfile::JsonLog;
use crate::stdio::{self, Streams};
use crate::{Diag, Error, LogDriver, ShimArgs};

const T_SIGNAL: u64 = 1;
const T_LISTEN: u64 = 2;
const K_OUT: u64 = 1 << 32;
const K_ERR: u64 = 2 << 32;
const K_IN: u64 = 3 << 32;
const K_CONN: u64 = 4 << 32;
const INDEX: u64 = 0xffff_ffff;
/// How long an ended exec's exit code stays with the shim before its slot may be reused.
const EXEC_KEPT: Duration = Duration::from_secs(60);

/// A client that has this much output queued is too slow: it is dropped, never waited for.
const MAX_CLIENT_BUFFER: usize = 1 << 20;
/// Input queued for a process that does not read it; beyond this, clients' input is paused.
const MAX_STDIN_PENDING: usize = 256 << 10;
/// A request line longer than this is refused (an exec's process JSON fits easily).
const MAX_REQUEST: usize = 1 << 20;
/// After a process exits, how long its output is still read: orphaned grandchildren may hold
/// the pipes open for ever.
const DRAIN: Duration = Duration::from_secs(1);
/// After the container has exited, how long clients get to take their last output.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The longest the init's output is held for clients announced to attach (--hold-output):
/// one that never comes (its client gone) must not keep the output, the log and the exit
/// back for longer.
const HOLD_MAX: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 32 * 1024;

/// A process whose stdio the shim holds: the container's init (index 0) or an exec'd one.
struct Proc {
    exec_id: Option<String>,
    pid: i32,
    streams: Streams,
    stdin_pending: Vec<u8>,
    stdin_registered: bool,
    /// Close stdin once the pending input is written.
    stdin_closing: bool,
    exit: Option<(i32, String)>,
    exited_at: Option<Instant>,
    /// Exited, output drained, clients told.
    done: bool,
}

enum Mode {
    Request,
    Stream {
        proc: usize,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Wait,
    ExecWait(usize),
    /// Send what is queued, then close.
    Close,
}

struct Conn {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    mode: Mode,
    eof: bool,
    paused: bool,
    registered: EpollFlags,
    dead: bool,
}

struct Shim {
    args: ShimArgs,
    rt: Runtime,
    ep: Epoll,
    blocked: SigSet,
    sfd: SignalFd,
    listener: UnixListener,
    /// The inode of the socket file this shim bound: the file at that path may be a later
    /// run's by the time this shim exits.
    sock_ino: u64,
    procs: Vec<Proc>,
    conns: Vec<Option<Conn>>,
    log: Option<JsonLog>,
    diag: Diag,
    started: bool,
    /// The exit line (exit.json's content), once the container has finished.
    finished: Option<String>,
    close_deadline: Option<Instant>,
    exec_seq: u64,
    /// While the init's output is held (--hold-output): how many attaches are still to come,
    /// and until when at most.
    hold: Option<(u32, Instant)>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn sock_path(a: &ShimArgs) -> PathBuf {
    a.state_dir.join("shim.sock")
}

/// Has the epoll wake us for process `i`'s output.
fn watch_output(ep: &Epoll, i: usize, streams: &Streams) -> Result<(), Error> {
    for (f, kind) in [(&streams.out, K_OUT), (&streams.err, K_ERR)] {
        if let Some(f) = f {
            ep.add(f, EpollEvent::new(EpollFlags::EPOLLIN, kind | i as u64))
                .map_err(|e| Error::sys("epoll_ctl", e))?;
        }
    }
    Ok(())
}

/// The long-lived shim; returns its exit status.
pub(crate) fn run(args: ShimArgs) -> i32 {
    // The daemon reads one line from our stdout; everything else goes to shim.log.
    let Ok(report) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return 1;
    };
    let mut report = File::from(report);
    let _ = nix::unistd::setsid();
    let mut diag = Diag(None);
    let prepared = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)
        .map_err(|source| Error::StateDir {
            path: args.state_dir.clone(),
            source,
        })
        .and_then(|()| {
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(|e| Error::sys("prctl PR_SET_CHILD_SUBREAPER", e))
        });
    if let Err(e) = prepared {
        let _ = writeln!(report, "{}", json!({ "error": e.to_string() }));
        return 1;
    }
    diag.0 = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.state_dir.join("shim.log"))
        .ok();
    let id = args.id.clone();
    let rt = Runtime::new(&args.runtime_root);
    // With --start the process runs before the report; a start that fails is a failed
    // start-up like any other (the container, made already, is deleted).
    let mut shim = match setup(args, diag) {
        Ok(s) => s,
        Err(failed) => {
            let (e, created, args, mut diag) = *failed;
            diag.say(format_args!("start-up failed: {e}"));
            if created {
                if let Err(de) = rt.delete(&id, true) {
                    diag.say(format_args!("delete after failed start-up: {de}"));
                }
            }
            let _ = std::fs::remove_file(sock_path(&args));
            let _ = writeln!(report, "{}", json!({ "error": e.to_string() }));
            quiet_stdio();
            return 1;
        }
    };
    let pid = shim.procs[0].pid;
    let line = json!({ "pid": pid, "shim_pid": std::process::id(), "started": shim.started });
    if let Err(e) = report.write_all(format!("{line}\n").as_bytes()) {
        shim.diag
            .say(format_args!("report to the spawner failed: {e}"));
    }
    drop(report);
    quiet_stdio();
    shim.diag
        .say(format_args!("container {id} created, init pid {pid}"));
    // What start-up allocated (arguments, the spec, the runtime's work) is freed by now; an
    // idle shim should not keep it (the goal is a few hundred KiB per container).
    berth_sys::release_free_heap();
    shim.event_loop();
    shim.cleanup();
    0
}

fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        stdio::quiet(&null.into());
    }
}

type SetupError = Box<(Error, bool, ShimArgs, Diag)>;

fn setup(args: ShimArgs, diag: Diag) -> Result<Shim, SetupError> {
    // The daemon's process-group signals and a closed terminal must not end us, and a client
    // gone mid-write must be an EPIPE, not a death. Handlers, not SIG_IGN: execve resets a
    // handled signal to its default, so the container's processes do not inherit them.
    let survived = Arc::new(AtomicBool::new(false));
    for s in [
        libc::SIGPIPE,
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGQUIT,
    ] {
        if let Err(e) = signal_hook::flag::register(s, Arc::clone(&survived)) {
            return Err(Box::new((
                Error::sys("install a signal handler", e),
                false,
                args,
                diag,
            )));
        }
    }
    let mut blocked = SigSet::empty();
    // only for the signalfd; unblocked around create and exec (the mask survives execve)
    blocked.add(Signal::SIGCHLD);
    let fail = |e: Error, created: bool, args: ShimArgs, diag: Diag| {
        Err(Box::new((e, created, args, diag)))
    };
    if let Err(e) = blocked.thread_block() {
        return fail(Error::sys("block signals", e), false, args, diag);
    }
    let sfd = match SignalFd::with_flags(&blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => return fail(Error::sys("signalfd", e), false, args, diag),
    };
    let ep = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(e) => e,
        Err(e) => return fail(Error::sys("epoll_create", e), false, args, diag),
    };
    let path = sock_path(&args);
    let _ = std::fs::remove_file(&path);
    // 0600 from the start: nobody but root may drive the container through it.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&path);
    nix::sys::stat::umask(old);
    let listener = match bound {
        Ok(l) => l,
        Err(source) => return fail(Error::Bind { path, source }, false, args, diag),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        return fail(Error::sys("set O_NONBLOCK", e), false, args, diag);
    }
    let sock_ino = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
    let log = match args.log_driver {
        LogDriver::None => None,
        LogDriver::JsonFile => {
            match JsonLog::open(&args.log_path, args.log_max_size, args.log_max_file) {
                Ok(l) => Some(l),
                Err(e) => return fail(e, false, args, diag),
            }
        }
    };
    let rt = Runtime::new(&args.runtime_root);
    let prepared = match stdio::prepare(args.tty, args.stdin, &args.state_dir.join("console.sock"))
    {
        Ok(p) => p,
        Err(e) => return fail(e, false, args, diag),
    };
    let opts = CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        console_socket: prepared.console_socket(),
        // create and start in one: the process runs as soon as it is ready
        start: args.start,
        ..Default::default()
    };
    let created = match prepared.around(&blocked, || rt.create(&opts)) {
        Ok(Ok(c)) => c,
        Ok(Err(source)) => {
            prepared.abandon();
            let e = Error::Runtime {
                op: "create",
                id: args.id.clone(),
                source,
            };
            return fail(e, false, args, diag);
        }
        Err(e) => {
            prepared.abandon();
            return fail(e, false, args, diag);
        }
    };
    let streams = match prepared.finish(&args.id, args.stdin) {
        Ok(s) => s,
        Err(e) => return fail(e, true, args, diag),
    };
    let pid = created.record.pid;
    let hold = (args.hold_output > 0).then(|| (args.hold_output, Instant::now() + HOLD_MAX));
    let mut shim = Shim {
        rt,
        ep,
        blocked,
        sfd,
        listener,
        sock_ino,
        procs: Vec::new(),
        conns: Vec::new(),
        log,
        started: args.start,
        args,
        diag,
        finished: None,
        close_deadline: None,
        exec_seq: 0,
        hold,
    };
    let registered = shim
        .ep
        .add(&shim.sfd, EpollEvent::new(EpollFlags::EPOLLIN, T_SIGNAL))
        .and_then(|()| {
            shim.ep.add(
                &shim.listener,
                EpollEvent::new(EpollFlags::EPOLLIN, T_LISTEN),
            )
        })
        .map_err(|e| Error::sys("epoll_ctl", e))
        .and_then(|()| shim.add_proc(None, pid, streams).map(|_| ()))
        .and_then(|()| {
            crate::write_atomic(
                &shim.args.state_dir.join("shim.pid"),
                std::process::id().to_string().as_bytes(),
            )
        });
    if let Err(e) = registered {
        return Err(Box::new((e, true, shim.args, shim.diag)));
    }
    shim.reap();
    Ok(shim)
}

impl Shim {
    fn add_proc(
        &mut self,
        exec_id: Option<String>,
        pid: i32,
        streams: Streams,
    ) -> Result<usize, Error> {
        let i = self.reusable_slot().unwrap_or(self.procs.len());
        // (a held init's output is registered when the hold ends)
        if i > 0 || self.hold.is_none() {
            watch_output(&self.ep, i, &streams)?;
        }
        let p = Proc {
            exec_id,
            pid,
            streams,
            stdin_pending: Vec::new(),
            stdin_registered: false,
            stdin_closing: false,
            exit: None,
            exited_at: None,
            done: false,
        };
        match self.procs.get_mut(i) {
            Some(slot) => *slot = p,
            None => self.procs.push(p),
        }
        Ok(i)
    }

    /// The slot of an exec'd process that ended more than [`EXEC_KEPT`] ago, whose clients
    /// are all gone, to hold a new one: so that a container probed by a health check every
    /// few seconds for weeks does not grow its shim by one entry per probe. (Its exit code
    /// was long since collected: the daemon records it when the exec ends.)
    fn reusable_slot(&self) -> Option<usize> {
        let now = Instant::now();
        (1..self.procs.len()).find(|&i| {
            let p = &self.procs[i];
            p.done
                && p.exited_at
                    .is_some_and(|t| now.duration_since(t) > EXEC_KEPT)
                && p.streams.stdin.is_none()
                && p.streams.out.is_none()
                && p.streams.err.is_none()
                && !self.conns.iter().flatten().any(|c| match c.mode {
                    Mode::Stream { proc, .. } => proc == i,
                    Mode::ExecWait(j) => j == i,
                    _ => false,
                })
        })
    }

    fn event_loop(&mut self) {
        let mut events = [EpollEvent::empty(); 32];
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            if self.hold.is_some_and(|(_, until)| Instant::now() >= until) {
                self.diag.say(format_args!(
                    "attaches announced did not all come: output released"
                ));
                self.release_output();
            }
            self.check_procs();
            self.remove_dead();
            if self.should_exit() {
                // A client that connected just before the end may still sit in the listen
                // backlog: going now would reset its connection unanswered. Take it first
                // (until the close deadline), then go when nobody is left.
                let before = self.conns.iter().flatten().count();
                self.accept();
                let deadline_passed = self.close_deadline.is_some_and(|d| Instant::now() >= d);
                if deadline_passed || self.conns.iter().flatten().count() == before {
                    return;
                }
                continue;
            }
            let timeout = self.next_timeout();
            let n = match self.ep.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    self.diag.say(format_args!("epoll_wait: {e}; giving up"));
                    return;
                }
            };
            for ev in &events[..n] {
                let (token, flags) = (ev.data(), ev.events());
                match (token & !INDEX, (token & INDEX) as usize) {
                    (0, _) if token == T_SIGNAL => self.signals(),
                    (0, _) if token == T_LISTEN => self.accept(),
                    (K_OUT, i) => {
                        self.read_output(i, 0, &mut buf);
                    }
                    (K_ERR, i) => {
                        self.read_output(i, 1, &mut buf);
                    }
                    (K_IN, i) => self.flush_stdin(i),
                    (K_CONN, slot) => self.conn_event(slot, flags, &mut buf),
                    _ => {}
                }
            }
        }
    }

    fn should_exit(&self) -> bool {
        if self.finished.is_none() {
            return false;
        }
        let idle = self
            .conns
            .iter()
            .flatten()
            .all(|c| matches!(c.mode, Mode::Close) && c.out.is_empty());
        idle || self.close_deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Ends the hold of the init's output: from now on it is read, logged and sent to the
    /// clients attached. The drain time of an init that exited meanwhile starts now.
    fn release_output(&mut self) {
        if self.hold.take().is_none() {
            return;
        }
        if let Err(e) = watch_output(&self.ep, 0, &self.procs[0].streams) {
            self.diag.say(format_args!("{e}"));
        }
        if let Some(at) = self.procs[0].exited_at.as_mut() {
            *at = Instant::now();
        }
    }

    fn next_timeout(&self) -> EpollTimeout {
        let mut next: Option<Instant> = [self.close_deadline, self.hold.map(|(_, until)| until)]
            .into_iter()
            .flatten()
            .min();
        for p in &self.procs {
            if let (false, Some(t)) = (p.done, p.exited_at) {
                let d = t + DRAIN;
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        match next {
            None => EpollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // round up, so that we do not wake just before the deadline
                let ms = left.as_millis().saturating_add(1).min(60_000) as u16;
                EpollTimeout::from(ms)
            }
        }
    }

    fn signals(&mut self) {
        let mut child = false;
        loop {
            match self.sfd.read_signal() {
                Ok(Some(si)) => child |= si.ssi_signo == Signal::SIGCHLD as u32,
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.diag.say(format_args!("read signalfd: {e}"));
                    break;
                }
            }
        }
        if child {
            self.reap();
        }
    }

    /// Reap every exited child: ours, and orphans reparented to us as subreaper. SIGCHLDs
    /// coalesce, so one may stand for several.
    fn reap(&mut self) {
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.diag.say(format_args!("waitpid: {e}"));
                    return;
                }
            };
            if let Some(p) = self
                .procs
                .iter_mut()
                .find(|p| p.pid == pid && p.exit.is_none())
            {
                p.exit = Some((code, now_rfc3339()));
                p.exited_at = Some(Instant::now());
                let what = p.exec_id.as_deref().unwrap_or("init");
                self.diag
                    .say(format_args!("{what} (pid {pid}) exited with {code}"));
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let slot = match self.conns.iter().position(|c| c.is_none()) {
                        Some(s) => s,
                        None => {
                            self.conns.push(None);
                            self.conns.len() - 1
                        }
                    };
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, K_CONN | slot as u64);
                    if let Err(e) = self.ep.add(&sock, ev) {
                        self.diag.say(format_args!("epoll_ctl for a client: {e}"));
                        continue;
                    }
                    self.conns[slot] = Some(Conn {
                        sock,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        mode: Mode::Request,
                        eof: false,
                        paused: false,
                        registered: EpollFlags::EPOLLIN,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.diag.say(format_args!("accept: {e}"));
                    return;
                }
            }
        }
    }

    /// Reads what process `i` wrote on `stream` (0 stdout, 1 stderr), once; logs it and sends
    /// it to its clients. False when there was nothing to read (none yet, or the end).
    fn read_output(&mut self, i: usize, stream: usize, buf: &mut [u8]) -> bool {
        let Some(p) = self.procs.get_mut(i) else {
            return false;
        };
        let f = if stream == 0 {
            &mut p.streams.out
        } else {
            &mut p.streams.err
        };
        let Some(file) = f else {
            return false;
        };
        let n = match file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return false
            }
            // EIO from a pty master: every slave is closed; like end of file.
            Err(_) => 0,
        };
        if n == 0 {
            if let Some(file) = f.take() {
                let _ = self.ep.delete(&file);
            }
            return false;
        }
        let data = &buf[..n];
        if i == 0 {
            if let Some(log) = &mut self.log {
                if let Err(e) = log.write(stream, data) {
                    self.diag.say(format_args!("{e}"));
                }
            }
        }
        self.fan_out(i, stream, data);
        true
    }

    /// Queue output for every client attached to process `i`, and send what it can take now.
    fn fan_out(&mut self, i: usize, stream: usize, data: &[u8]) {
        let tty = self.procs[i].streams.tty.is_some();
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            let wants = match c.mode {
                Mode::Stream {
                    proc,
                    stdout,
                    stderr,
                    ..
                } if proc == i && !c.dead => {
                    if stream == 0 {
                        stdout
                    } else {
                        stderr
                    }
                }
                _ => false,
            };
            if !wants {
                continue;
            }
            if !tty {
                c.out.push(if stream == 0 { 1 } else { 2 });
                c.out.extend_from_slice(&[0, 0, 0]);
                c.out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            }
            c.out.extend_from_slice(data);
            if c.out.len() > MAX_CLIENT_BUFFER {
                self.diag.say(format_args!(
                    "dropping a client that does not read its output"
                ));
                c.dead = true;
                continue;
            }
            self.write_conn(slot);
        }
    }

    /// Once a process has exited and its output is drained (or the drain time is over):
    /// close its stdio and tell its clients; for the init, finish the container.
    fn check_procs(&mut self) {
        let now = Instant::now();
        for i in 0..self.procs.len() {
            let p = &mut self.procs[i];
            let Some(at) = p.exited_at else {
                continue;
            };
            if p.done {
                continue;
            }
            if i == 0 && self.hold.is_some() {
                continue;
            }
            let drained = p.streams.out.is_none() && p.streams.err.is_none();
            if !drained && now < at + DRAIN {
                continue;
            }
            if !drained {
                // The drain time is for pipes that a process left behind keeps open (no end
                // of file comes); what the exited process wrote is in them already, and is
                // not lost to a shim that was slow to get to it.
                let mut buf = vec![0u8; READ_BUFFER];
                for stream in 0..2 {
                    let mut rounds = 0;
                    while rounds < 64 && self.read_output(i, stream, &mut buf) {
                        rounds += 1;
                    }
                }
            }
            let p = &mut self.procs[i];
            p.done = true;
            for f in [p.streams.out.take(), p.streams.err.take()]
                .into_iter()
                .flatten()
            {
                let _ = self.ep.delete(&f);
            }
            self.close_stdin_now(i);
            let code = self.procs[i].exit.as_ref().map_or(0, |e| e.0);
            if i == 0 {
                self.finish_container();
                continue;
            }
            let line = json!({ "exit_code": code }).to_string();
            for slot in 0..self.conns.len() {
                let Some(c) = self.conns[slot].as_mut() else {
                    continue;
                };
                match c.mode {
                    Mode::Stream { proc, .. } if proc == i => c.mode = Mode::Close,
                    Mode::ExecWait(j) if j == i => {
                        c.out.extend_from_slice(line.as_bytes());
                        c.out.push(b'\n');
                        c.mode = Mode::Close;
                    }
                    _ => continue,
                }
                self.write_conn(slot);
            }
        }
    }

    /// Whether the state directory is still this run's: a next run of the container binds
    /// its own socket there (see [`Shim::cleanup`]).
    fn owns_state_dir(&self) -> bool {
        std::fs::metadata(sock_path(&self.args)).is_ok_and(|m| m.ino() == self.sock_ino)
    }

    fn finish_container(&mut self) {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.flush() {
                self.diag.say(format_args!("{e}"));
            }
        }
        let ours = self.owns_state_dir();
        // (the runtime's state, by name, is a next run's once the directory is)
        let oom = ours
            && self
                .rt
                .oom_kills(&self.args.id)
                .map(|n| n > 0)
                .unwrap_or(false);
        let (code, at) = self.procs[0].exit.clone().unwrap_or((0, now_rfc3339()));
        let line = json!({ "exit_code": code, "finished_at": at, "oom_killed": oom }).to_string();
        let path = self.args.state_dir.join("exit.json");
        if !ours {
            self.diag.say(format_args!(
                "a later run owns the state directory: no exit.json"
            ));
        } else if let Err(e) = crate::write_atomic(&path, line.as_bytes()) {
            self.diag.say(format_args!("{e}"));
        }
        // Before the report: the daemon thread it wakes is often put on this CPU (a socket's
        // wake-up is a "sync" one, which assumes the waker is about to sleep), where our
        // clean-up that follows would keep it waiting ~1 ms; as SCHED_IDLE we yield at once.
        berth_sys::sched_idle_self();
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            match c.mode {
                Mode::Wait => {
                    c.out.extend_from_slice(line.as_bytes());
                    c.out.push(b'\n');
                }
                Mode::Stream { .. } => {}
                // A request not read yet (a "wait" sent just before the end) is answered
                // when it is read; closing now would reset the client's connection.
                // ExecWait is answered when that process is done. Both, or dropped at the
                // deadline.
                Mode::Request | Mode::ExecWait(_) | Mode::Close => continue,
            }
            c.mode = Mode::Close;
            self.write_conn(slot);
        }
        self.finished = Some(line);
        self.close_deadline = Some(Instant::now() + CLOSE_GRACE);
    }

    fn remove_dead(&mut self) {
        for slot in 0..self.conns.len() {
            let gone = match &self.conns[slot] {
                Some(c) => c.dead || (matches!(c.mode, Mode::Close) && c.out.is_empty()),
                None => false,
            };
            if gone {
                if let Some(c) = self.conns[slot].take() {
                    let _ = self.ep.delete(&c.sock);
                }
            }
        }
        while matches!(self.conns.last(), Some(None)) {
            self.conns.pop();
        }
    }

    fn conn_event(&mut self, slot: usize, flags: EpollFlags, buf: &mut [u8]) {
        let live = matches!(self.conns.get(slot), Some(Some(c)) if !c.dead);
        if !live {
            return;
        }
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP) {
            self.read_conn(slot, buf);
        }
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.write_conn(slot);
        }
        if let Some(c) = self.conns[slot].as_mut() {
            if flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                c.dead = true;
            }
        }
        self.update_interest(slot);
    }

    fn read_conn(&mut self, slot: usize, buf: &mut [u8]) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if c.eof {
            return;
        }
        let n = match c.sock.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return
            }
            Err(_) => {
                c.dead = true;
                return;
            }
        };
        if n == 0 {
            c.eof = true;
            match c.mode {
                Mode::Request => c.dead = true,
                // An exec's input ends with its client's; the init's only with --stdin-once.
                Mode::Stream {
                    proc, stdin: true, ..
                } if proc != 0 || self.args.stdin_once => self.close_stdin(proc),
                _ => {}
            }
            return;
        }
        match c.mode {
            Mode::Request => {
                c.inbuf.extend_from_slice(&buf[..n]);
                let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') else {
                    if c.inbuf.len() > MAX_REQUEST {
                        self.respond(slot, json!({"ok": false, "error": "request too long"}));
                        self.set_mode(slot, Mode::Close);
                    }
                    return;
                };
                let mut line = std::mem::take(&mut c.inbuf);
                let rest = line.split_off(nl + 1);
                self.request(slot, &line);
                if !rest.is_empty() {
                    self.client_input(slot, &rest);
                }
            }
            Mode::Stream { .. } => {
                let data = buf[..n].to_vec();
                self.client_input(slot, &data);
            }
            // nothing to read in the other modes
            _ => {}
        }
    }

    fn client_input(&mut self, slot: usize, data: &[u8]) {
        let Some(c) = self.conns[slot].as_ref() else {
            return;
        };
        if let Mode::Stream {
            proc, stdin: true, ..
        } = c.mode
        {
            self.feed_stdin(proc, data);
        }
    }

    fn set_mode(&mut self, slot: usize, mode: Mode) {
        if let Some(c) = self.conns[slot].as_mut() {
            c.mode = mode;
        }
    }

    fn respond(&mut self, slot: usize, v: Value) {
        if let Some(c) = self.conns[slot].as_mut() {
            let _ = serde_json::to_writer(&mut c.out, &v);
            c.out.push(b'\n');
        }
        self.write_conn(slot);
    }

    fn write_conn(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else {
            return;
        };
        while !c.out.is_empty() && !c.dead {
            match c.sock.write(&c.out) {
                Ok(0) => c.dead = true,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => c.dead = true,
            }
        }
        // give back a burst's memory: an idle shim should hold none
        if c.out.is_empty() && c.out.capacity() > 64 * 1024 {
            c.out = Vec::new();
        }
        self.update_interest(slot);
    }

    fn update_interest(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else {
            return;
        };
        if c.dead {
            return;
        }
        let mut want = EpollFlags::empty();
        let reads = matches!(c.mode, Mode::Request | Mode::Stream { .. });
        if reads && !c.eof && !c.paused {
            want |= EpollFlags::EPOLLIN;
        }
        if !c.out.is_empty() {
            want |= EpollFlags::EPOLLOUT;
        }
        if want != c.registered {
            let mut ev = EpollEvent::new(want, K_CONN | slot as u64);
            if self.ep.modify(&c.sock, &mut ev).is_err() {
                c.dead = true;
            } else {
                c.registered = want;
            }
        }
    }

    fn feed_stdin(&mut self, i: usize, data: &[u8]) {
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        let Some(stdin) = p.streams.stdin.as_mut() else {
            return;
        };
        if p.stdin_closing {
            return;
        }
        let mut data = data;
        if p.stdin_pending.is_empty() {
            loop {
                match stdin.write(data) {
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // the process closed its input: nothing more will be read
                        self.close_stdin_now(i);
                        return;
                    }
                }
                if data.is_empty() {
                    return;
                }
            }
        }
        p.stdin_pending.extend_from_slice(data);
        if !p.stdin_registered {
            if let Some(f) = &p.streams.stdin {
                let ev = EpollEvent::new(EpollFlags::EPOLLOUT, K_IN | i as u64);
                p.stdin_registered = self.ep.add(f, ev).is_ok();
            }
        }
        if p.stdin_pending.len() > MAX_STDIN_PENDING {
            self.pause_input(i, true);
        }
    }

    fn flush_stdin(&mut self, i: usize) {
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        let Some(stdin) = p.streams.stdin.as_mut() else {
            return;
        };
        while !p.stdin_pending.is_empty() {
            match stdin.write(&p.stdin_pending) {
                Ok(n) => {
                    p.stdin_pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close_stdin_now(i);
                    return;
                }
            }
        }
        p.stdin_pending = Vec::new();
        if p.stdin_registered {
            if let Some(f) = &p.streams.stdin {
                let _ = self.ep.delete(f);
            }
            p.stdin_registered = false;
        }
        if p.stdin_closing {
            self.close_stdin_now(i);
        }
        self.pause_input(i, false);
    }

    /// The process's input ends once what is queued for it has been written.
    fn close_stdin(&mut self, i: usize) {
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        if p.stdin_pending.is_empty() {
            self.close_stdin_now(i);
        } else {
            p.stdin_closing = true;
        }
    }

    fn close_stdin_now(&mut self, i: usize) {
        let p = &mut self.procs[i];
        if let Some(f) = p.streams.stdin.take() {
            if p.stdin_registered {
                let _ = self.ep.delete(&f);
            }
        }
        p.stdin_registered = false;
        p.stdin_pending = Vec::new();
        p.stdin_closing = false;
    }

    fn pause_input(&mut self, i: usize, pause: bool) {
        for slot in 0..self.conns.len() {
            if let Some(c) = self.conns[slot].as_mut() {
                if matches!(c.mode, Mode::Stream { proc, stdin: true, .. } if proc == i) {
                    c.paused = pause;
                }
            }
            self.update_interest(slot);
        }
    }

    fn request(&mut self, slot: usize, line: &[u8]) {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                self.refuse(slot, format!("bad request: {e}"));
                return;
            }
        };
        let op = v.get("op").and_then(|o| o.as_str()).unwrap_or("");
        let flag = |k: &str| v.get(k).and_then(|b| b.as_bool()).unwrap_or(false);
        match op {
            "start" => {
                let r = if self.started {
                    Err(format!("container {} is already started", self.args.id))
                } else {
                    self.rt.start(&self.args.id).map_err(|e| e.to_string())
                };
                match r {
                    Ok(()) => {
                        self.started = true;
                        self.respond(slot, json!({"ok": true}));
                        self.set_mode(slot, Mode::Close);
                        berth_sys::release_free_heap();
                    }
                    Err(e) => self.refuse(slot, e),
                }
            }
            "attach" => {
                self.respond(slot, json!({"ok": true}));
                let mode = if self.procs[0].done {
                    Mode::Close
                } else {
                    Mode::Stream {
                        proc: 0,
                        stdin: flag("stdin"),
                        stdout: flag("stdout"),
                        stderr: flag("stderr"),
                    }
                };
                self.set_mode(slot, mode);
                if let Some((left, _)) = self.hold.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.release_output();
                    }
                }
            }
            "resize" => self.resize(slot, 0, &v),
            "exec_resize" => match self.find_exec(&v) {
                Some(i) => self.resize(slot, i, &v),
                None => self.refuse(slot, "no such exec".into()),
            },
            "wait" => match &self.finished {
                Some(line) => {
                    let line = line.clone();
                    if let Some(c) = self.conns[slot].as_mut() {
                        c.out.extend_from_slice(line.as_bytes());
                        c.out.push(b'\n');
                        c.mode = Mode::Close;
                    }
                    self.write_conn(slot);
                }
                None => self.set_mode(slot, Mode::Wait),
            },
            "state" => {
                let init = &self.procs[0];
                let status = if init.exit.is_some() {
                    "exited"
                } else if self.started {
                    "running"
                } else {
                    "created"
                };
                let code = init.exit.as_ref().map(|e| e.0);
                let r = json!({"status": status, "pid": init.pid, "exit_code": code});
                self.respond(slot, r);
                self.set_mode(slot, Mode::Close);
            }
            "exec" => match self.exec(&v) {
                Ok((i, pid)) => {
                    self.respond(slot, json!({"ok": true, "pid": pid}));
                    self.set_mode(
                        slot,
                        Mode::Stream {
                            proc: i,
                            stdin: flag("stdin"),
                            stdout: true,
                            stderr: true,
                        },
                    );
                    // it may be over already
                    self.reap();
                }
                Err(e) => self.refuse(slot, e),
            },
            "exec_wait" => match self.find_exec(&v) {
                Some(i) if self.procs[i].done => {
                    let code = self.procs[i].exit.as_ref().map_or(0, |e| e.0);
                    self.respond(slot, json!({"exit_code": code}));
                    self.set_mode(slot, Mode::Close);
                }
                Some(i) => self.set_mode(slot, Mode::ExecWait(i)),
                None => {
                    self.respond(slot, json!({"error": "no such exec"}));
                    self.set_mode(slot, Mode::Close);
                }
            },
            "" => self.refuse(slot, "the request has no \"op\"".into()),
            other => self.refuse(slot, format!("unknown op {other:?}")),
        }
        self.update_interest(slot);
    }

    fn refuse(&mut self, slot: usize, error: String) {
        self.respond(slot, json!({"ok": false, "error": error}));
        self.set_mode(slot, Mode::Close);
    }

    fn find_exec(&self, v: &Value) -> Option<usize> {
        let id = v.get("exec_id")?.as_str()?;
        self.procs
            .iter()
            .position(|p| p.exec_id.as_deref() == Some(id))
    }

    fn resize(&mut self, slot: usize, i: usize, v: &Value) {
        let dim = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .and_then(|x| u16::try_from(x).ok())
        };
        let r = match (dim("height"), dim("width"), &self.procs[i].streams.tty) {
            (Some(h), Some(w), Some(tty)) => {
                berth_sys::set_winsize(tty.as_fd(), h, w).map_err(|e| format!("TIOCSWINSZ: {e}"))
            }
            (Some(_), Some(_), None) => Err("the process has no terminal".to_string()),
            _ => Err("resize needs \"height\" and \"width\" (0-65535)".to_string()),
        };
        match r {
            Ok(()) => self.respond(slot, json!({"ok": true})),
            Err(e) => self.respond(slot, json!({"ok": false, "error": e})),
        }
        self.set_mode(slot, Mode::Close);
    }

    fn exec(&mut self, v: &Value) -> Result<(usize, i32), String> {
        let exec_id = v
            .get("exec_id")
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .ok_or("exec needs an \"exec_id\"")?
            .to_string();
        if self.find_exec(v).is_some() {
            return Err(format!("exec {exec_id} already exists"));
        }
        if self.procs[0].exit.is_some() {
            return Err(format!("container {} has exited", self.args.id));
        }
        let process: oci_spec::runtime::Process =
            serde_json::from_value(v.get("process").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("exec: bad \"process\": {e}"))?;
        let stdin = v.get("stdin").and_then(|b| b.as_bool()).unwrap_or(false);
        let tty = process.terminal().unwrap_or(false);
        self.exec_seq += 1;
        let console = self
            .args
            .state_dir
            .join(format!("exec-{}.sock", self.exec_seq));
        let prepared = stdio::prepare(tty, stdin, &console).map_err(|e| e.to_string())?;
        let opts = ExecOptions {
            process,
            console_socket: prepared.console_socket(),
            pid_file: None,
            detach: true,
            preserve_fds: 0,
            ignore_paused: false,
            stdio: None,
            console: None,
        };
        let rt = &self.rt;
        let id = self.args.id.clone();
        let r = prepared.around(&self.blocked, || rt.exec(&id, opts));
        // SIGCHLD was not blocked while the runtime worked (the process must not inherit the
        // block): a child that ended meanwhile (the init killed during a health check's
        // exec, say) signalled its default disposition, not our signalfd, and would wait as
        // a zombie for the next SIGCHLD, or forever. So a reap follows, once this exec's
        // process is known (its exit, if it came already, must be recorded).
        let added = match r {
            Ok(Ok(berth_runtime::container::exec::ExecOutcome::Detached(pid))) => prepared
                .finish(&id, stdin)
                .and_then(|s| self.add_proc(Some(exec_id.clone()), pid, s))
                .map(|i| (i, pid))
                .map_err(|e| e.to_string()),
            other => {
                prepared.abandon();
                Err(match other {
                    Ok(Ok(berth_runtime::container::exec::ExecOutcome::Exited(code))) => {
                        format!("exec {exec_id} ran in the foreground (exit {code})")
                    }
                    Ok(Ok(_)) => format!("exec {exec_id}: unexpected outcome"),
                    Ok(Err(e)) => format!("exec {exec_id}: {e}"),
                    Err(e) => format!("exec {exec_id}: {e}"),
                })
            }
        };
        self.reap();
        let (i, pid) = added?;
        self.diag
            .say(format_args!("exec {exec_id} started, pid {pid}"));
        Ok((i, pid))
    }

    /// The container has exited and its clients are served: remove it and our files.
    /// What this run leaves goes, by name, as the daemon finds things by name: the runtime's
    /// state, the socket, the pid file. The names are the container's, and a next run of it
    /// may have begun before this shim ends (a policy restart, a start by a daemon that never
    /// knew this shim): what that run made is not this shim's to remove. Deleting its
    /// runtime state while it was being created left a container nothing could kill.
    fn cleanup(&mut self) {
        let ours = match berth_runtime::container::Container::load(&self.rt.root, &self.args.id) {
            Ok(c) => c.record.pid == self.procs[0].pid,
            // gone (the daemon deleted it) or unreadable: a forced delete is harmless then
            Err(_) => true,
        };
        if !ours {
            self.diag.say(format_args!(
                "a later run owns the runtime state: left to it"
            ));
        } else if let Err(e) = self.rt.delete(&self.args.id, true) {
            self.diag.say(format_args!("delete: {e}"));
        }
        if self.owns_state_dir() {
            let _ = std::fs::remove_file(sock_path(&self.args));
            let _ = std::fs::remove_file(self.args.state_dir.join("shim.pid"));
        }
        self.diag.say(format_args!("shim exits"));
    }
}
