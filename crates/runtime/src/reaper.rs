//! berth's minimal init (`docker run --init`): when a spec carries the annotation
//! [`INIT_ANNOTATION`], the container's init forks just before its final exec. The child
//! execs the container's command; the parent stays PID 1 of the container: it reaps every
//! process that ends up as its child (orphans are reparented to PID 1 of a pid namespace) and
//! passes every signal it gets on to the command, and it exits with the command's status.
//!
//! It is the runtime's own process, so no binary has to exist inside the image (Docker mounts
//! a static tini as /sbin/docker-init). It is fully confined already (namespaces, cgroup,
//! capabilities, seccomp and no_new_privs are applied before the fork), never execs, and stays
//! non-dumpable, so the container's processes cannot ptrace it.

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The annotation that asks for berth's init in a container with its own pid namespace.
pub const INIT_ANNOTATION: &str = "org.berth.init";

/// Returns in the child, which goes on to exec the command; the parent never returns.
pub fn split_off_command(argv: &[std::ffi::CString]) -> Result<()> {
    // Block every signal before the fork, so none meant for the parent (a SIGCHLD from a
    // command that exits at once, a SIGTERM) is lost between the fork and the wait.
    let all = SigSet::all();
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut old))
        .map_err(|e| Error::sys("block signals for the init", e))?;
    // The container sees PID 1 as what it is, not as the shim it was forked from (whose
    // command line names host paths): rewritten before the fork, so that the command, which
    // may read /proc/1/cmdline at once, never sees the shim's. (The child's copy is replaced
    // by its exec.)
    let mut words: Vec<&[u8]> = vec![b"berth-init", b"--"];
    words.extend(argv.iter().map(|a| a.as_bytes()));
    let _ = berth_sys::set_cmdline(&words);
    match berth_sys::clone_fork(0).map_err(|e| Error::sys("fork the command from the init", e))? {
        berth_sys::Forked::Child => {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)
                .map_err(|e| Error::sys("restore the signal mask", e))?;
            Ok(())
        }
        berth_sys::Forked::Parent(pid) => berth_sys::exit_child(reap(Pid::from_raw(pid), &all)),
    }
}

fn reap(command: Pid, all: &SigSet) -> i32 {
    loop {
        let sig = match all.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != nix::sys::signal::Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(command, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == command => return code,
                Ok(WaitStatus::Signaled(p, s, _)) if p == command => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
