//! `exec`: run another process inside a running container. An intermediate child enters the
//! container's pid (and time) namespace, which apply to its children, and clones the process
//! as the caller's child; that process joins the rest (user first, mount last), is put in the
//! container's cgroup, and goes through the same final steps as init: user, capabilities,
//! seccomp, exec.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use berth_cgroups::CgroupManager;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::channel::{self, Msg};
use crate::container::Status;
use crate::error::{Error, Result};
use crate::namespaces;
use crate::Runtime;

pub struct ExecOptions {
    pub process: Process,
    /// The process's stdin, stdout and stderr; None: the caller's own 0, 1 and 2.
    pub stdio: Option<[OwnedFd; 3]>,
    /// With `process.terminal`: a connected socket that receives the pty master (the same
    /// protocol as `console_socket`, without a path to bind). Wins over `console_socket`.
    pub console: Option<std::os::unix::net::UnixStream>,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: i32,
    /// Allow exec into a paused container (runc refuses it unless asked).
    pub ignore_paused: bool,
}

pub enum ExecOutcome {
    /// `--detach`: the process runs on; its pid.
    Detached(i32),
    /// The process's exit code.
    Exited(i32),
}

impl Runtime {
    /// Run `o.process` in the container. Forks: call it from a single-threaded process only
    /// (see the crate's documentation). Without `detach`, waits for the process and forwards
    /// the signals the caller receives meanwhile; the caller's signal mask is restored after.
    pub fn exec(&self, id: &str, o: ExecOptions) -> Result<ExecOutcome> {
        berth_sys::require_single_thread().map_err(|e| Error::sys("exec", e))?;
        let keep_fds = crate::process::inherited_fds(o.preserve_fds);
        let c = self.load(id)?;
        let status = c.status();
        let paused_ok = o.ignore_paused && status == Status::Paused;
        if !matches!(status, Status::Running | Status::Created) && !paused_ok {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                op: "exec",
            });
        }
        let spec = c.spec()?;
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        if let Some(s) = &seccomp {
            crate::seccomp::precompile(s, &self.root.join("seccomp"));
        }
        // Open the container's namespaces through its init, now (pinning them).
        let mut nss: Vec<(LinuxNamespaceType, OwnedFd, PathBuf)> = Vec::new();
        let own_ns = |n: &str| std::fs::read_link(format!("/proc/self/ns/{n}")).ok();
        for (name, _) in &c.record.namespaces {
            let Some(t) = namespaces::from_proc_name(name) else {
                continue;
            };
            let path = PathBuf::from(format!("/proc/{}/ns/{name}", c.record.pid));
            // joining the namespace we are already in would be refused for user namespaces
            if std::fs::read_link(&path).ok() == own_ns(name) {
                continue;
            }
            let f = File::open(&path).map_err(|e| Error::io("open namespace", &path, e))?;
            nss.push((t, f.into(), path));
        }
        if !c.init_alive() {
            return Err(Error::WrongState {
                id: id.into(),
                status: "stopped".into(),
                op: "exec",
            });
        }
        nss.sort_by_key(|(t, _, _)| match t {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        let cgroup = berth_cgroups::open(&c.record.cgroup_path)?;
        let console = match &o.console {
            Some(sock) => Some(
                sock.try_clone()
                    .map_err(|e| Error::sys("duplicate the console socket", e))?,
            ),
            None => crate::container::connect_console(o.console_socket.as_deref())?,
        };
        let in_user_ns = c.record.user_ns;
        let agent = crate::container::create::connect_agent(&spec, &c.oci_state())?;
        // Blocked while we wait (the signalfd forwards them), restored after: the caller's
        // mask is the caller's.
        let restore = if o.detach {
            None
        } else {
            Some(
                nix::sys::signal::SigSet::thread_get_mask()
                    .map_err(|e| Error::sys("read the signal mask", e))?,
            )
        };
        let sigs = if o.detach {
            None
        } else {
            Some(crate::wait::block_forwarded()?)
        };
        let result = exec_forked(
            o, &nss, &cgroup, console, in_user_ns, agent, seccomp, keep_fds, sigs,
        );
        if let Some(old) = restore {
            let _ = old.thread_set_mask();
        }
        result
    }
}

#[allow(clippy::too_many_arguments)]
fn exec_forked(
    o: ExecOptions,
    nss: &[(LinuxNamespaceType, OwnedFd, PathBuf)],
    cgroup: &berth_cgroups::AnyManager,
    console: Option<std::os::unix::net::UnixStream>,
    in_user_ns: bool,
    agent: Option<crate::seccomp::NotifyAgent>,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    keep_fds: Vec<i32>,
    sigs: Option<nix::sys::signal::SigSet>,
) -> Result<ExecOutcome> {
    let (parent_chan, child_chan) = channel::pair()?;
    let entry = cgroup.entry()?;
    let birth = cgroup.birth_dir()?;
    // pid and time namespaces apply to children only: entered in an intermediate process
    let child_only: Vec<_> = nss
        .iter()
        .filter(|(t, _, _)| matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time))
        .collect();
    let enter = || -> Result<()> {
        for (t, fd, path) in &child_only {
            namespaces::enter(fd.as_fd(), *t, path)?;
        }
        Ok(())
    };
    let (forked, must_move) = crate::container::fork_into(
        0,
        birth.as_ref().map(|d| d.as_fd()),
        (!child_only.is_empty()).then_some(&enter as &dyn Fn() -> Result<()>),
    )?;
    drop(child_only);
    drop(birth);
    match forked {
        berth_sys::Forked::Child => {
            drop(parent_chan);
            let entered = entry.enter_self().map_err(Error::from);
            drop(entry);
            let err = match entered
                .and_then(|()| match &o.stdio {
                    Some(s) => crate::process::install_stdio(s),
                    None => Ok(()),
                })
                .and_then(|()| {
                    exec_child(
                        &child_chan,
                        nss,
                        &o.process,
                        seccomp.as_ref(),
                        console.as_ref(),
                        &keep_fds,
                        in_user_ns,
                        agent.as_ref(),
                    )
                }) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = child_chan.send(&Msg::Failed(err.to_string()));
            berth_sys::exit_child(1);
        }
        berth_sys::Forked::Parent(pid) => {
            drop(child_chan);
            drop(console);
            drop(entry);
            let fail = |e: Error| {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                let _ = crate::wait::reap(pid);
                e
            };
            if must_move {
                if let Err(e) = cgroup.apply(pid) {
                    return Err(fail(e.into()));
                }
            }
            parent_chan.send(&Msg::Go(pid)).map_err(fail)?;
            // End of file means the exec succeeded (the channel is close-on-exec).
            match parent_chan.recv() {
                Ok(None) => {}
                Ok(Some(Msg::Failed(m))) => {
                    let _ = crate::wait::reap(pid);
                    return Err(Error::Init(m));
                }
                Ok(Some(other)) => {
                    return Err(fail(Error::Init(format!("unexpected message {other:?}"))))
                }
                Err(e) => return Err(fail(e)),
            }
            if let Some(p) = &o.pid_file {
                crate::container::create::write_atomic(p, pid.to_string().as_bytes())?;
            }
            match sigs {
                None => Ok(ExecOutcome::Detached(pid)),
                Some(set) => Ok(ExecOutcome::Exited(crate::wait::forward_and_wait(
                    pid, &set,
                )?)),
            }
        }
    }
}

enum Never {}

#[allow(clippy::too_many_arguments)]
fn exec_child(
    chan: &channel::Channel,
    nss: &[(LinuxNamespaceType, OwnedFd, PathBuf)],
    p: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    console: Option<&std::os::unix::net::UnixStream>,
    keep_fds: &[i32],
    in_user_ns: bool,
    agent: Option<&crate::seccomp::NotifyAgent>,
) -> Result<Never> {
    // not reachable through /proc/<pid>/exe by the container while we still run berth's code
    let _ = nix::sys::prctl::set_dumpable(false);
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::sys("prctl PR_SET_PDEATHSIG", e))?;
    let notify_pid = match chan.recv()? {
        Some(Msg::Go(pid)) => pid,
        _ => return Err(Error::Init("the runtime went away".into())),
    };
    for (t, fd, path) in nss {
        if !matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time) {
            namespaces::enter(fd.as_fd(), *t, path)?;
        }
    }
    crate::process::chdir(p)?;
    let prepared = crate::process::prepare(p, seccomp)?;
    crate::process::set_rlimits(p)?;
    if let Some(adj) = p.oom_score_adj() {
        let _ = std::fs::write("/proc/self/oom_score_adj", adj.to_string());
    }
    if p.terminal().unwrap_or(false) {
        match console {
            Some(sock) => crate::tty::attach_new_pty(sock, p)?,
            None => {
                let _ = nix::unistd::setsid();
                let _ = berth_sys::set_controlling_terminal(std::io::stdin().as_fd());
            }
        }
    }
    let _ = nix::sys::prctl::set_pdeathsig(None);
    Err(crate::process::finish_and_exec(
        p,
        prepared,
        keep_fds,
        in_user_ns,
        agent.map(|ag| (ag, notify_pid)),
    ))
}
