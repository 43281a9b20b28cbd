//! Waiting for a process the runtime started (foreground `run` and `exec`) while passing on the
//! signals the runtime receives, so that Ctrl-C or a supervisor's SIGTERM reach the container.
//! A signalfd and a pidfd polled together: no polling loop, no race with pid reuse.

use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};

const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGPIPE,
];

/// Block the signals that will be forwarded, before the child exists, so none is lost.
pub fn block_forwarded() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| Error::sys("block signals", e))?;
    Ok(set)
}

/// Wait for `pid` (our child), forwarding signals; returns its exit code the way a shell
/// reports it (128 + signal when killed).
pub fn forward_and_wait(pid: i32, set: &SigSet) -> Result<i32> {
    let sfd =
        SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::sys("signalfd", e))?;
    let pidfd = berth_sys::pidfd_open(pid).map_err(|e| Error::sys("pidfd_open", e))?;
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let sig_ready = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let pid_ready = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                let _ = berth_sys::pidfd_send_signal(pidfd.as_fd(), info.ssi_signo as i32);
            }
        }
        if pid_ready {
            return reap(pid);
        }
    }
}

/// Collect the exit status of our child `pid`.
pub fn reap(pid: i32) -> Result<i32> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("waitpid", e)),
        }
    }
}
