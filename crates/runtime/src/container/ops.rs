//! The small operations on an existing container: kill, delete, pause, resume, update, ps,
//! stats.

use std::os::fd::AsFd;

use berth_cgroups::{CgroupManager, Stats};
use oci_spec::runtime::LinuxResources;

use crate::container::{Container, Status};
use crate::error::{Error, Result};
use crate::Runtime;

/// Parse a signal as runc does: a number, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::InvalidSpec(format!("signal {n} is out of range")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::InvalidSpec(format!("unknown signal {s:?}")))
}

fn cgroup_of(c: &Container) -> Result<berth_cgroups::AnyManager> {
    Ok(berth_cgroups::open(&c.record.cgroup_path)?)
}

impl Runtime {
    /// Send `signal` to the container's init, or with `all` to every process in its cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let c = self.load(id)?;
        let status = c.status();
        if status == Status::Stopped && !all {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                op: "kill",
            });
        }
        if all {
            let cg = cgroup_of(&c)?;
            for pid in cg.pids()? {
                // someone else's process moved into the container's cgroup is not ours to signal
                if !c.owns_process(pid) {
                    tracing::warn!(container = id, pid, "not signalling a process in the container's cgroup that is not the container's");
                    continue;
                }
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::try_from(signal).ok(),
                );
            }
            if status == Status::Paused && signal == libc::SIGKILL {
                // a frozen process does not die until thawed
                let _ = cg.thaw();
            }
            return Ok(());
        }
        // A pidfd pins the process: the check above and the signal below cannot hit a
        // process that reused the pid in between.
        let pidfd = berth_sys::pidfd_open(c.record.pid).map_err(|e| Error::sys("pidfd_open", e))?;
        if !c.init_alive() {
            return Err(Error::WrongState {
                id: id.into(),
                status: "stopped".into(),
                op: "kill",
            });
        }
        berth_sys::pidfd_send_signal(pidfd.as_fd(), signal)
            .map_err(|e| Error::sys(format!("send signal {signal} to {id}"), e))?;
        if status == Status::Paused && signal == libc::SIGKILL {
            let _ = cgroup_of(&c)?.thaw();
        }
        Ok(())
    }

    /// Remove a stopped (or, with `force`, any) container: its processes, cgroup and state.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let c = match self.load(id) {
            Ok(c) => c,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let status = c.status();
        match status {
            Status::Stopped | Status::Created | Status::Creating => {}
            _ if force => {}
            _ => {
                return Err(Error::WrongState {
                    id: id.into(),
                    status: status.to_string(),
                    op: "delete (use --force)",
                })
            }
        }
        if status != Status::Stopped {
            self.kill_and_wait(&c)?;
        }
        match berth_cgroups::open(&c.record.cgroup_path) {
            Ok(cg) => {
                // Removing the cgroup kills what is in it: refuse while it holds processes
                // that are not the container's (moved there after create).
                let foreign: Vec<i32> = match cg.pids() {
                    Ok(p) => p.into_iter().filter(|p| !c.owns_process(*p)).collect(),
                    Err(_) => Vec::new(),
                };
                if !foreign.is_empty() {
                    return Err(Error::ForeignProcesses {
                        id: id.into(),
                        cgroup: c.record.cgroup_path.clone(),
                        pids: foreign,
                    });
                }
                cg.destroy()?
            }
            Err(e) => tracing::debug!(error = %e, "cgroup already gone"),
        }
        let spec = if c.record.has_poststop {
            c.spec().ok()
        } else {
            None
        };
        match std::fs::remove_dir_all(&c.dir) {
            Ok(()) => {}
            // a concurrent delete (or `run` cleaning up after its container) got there first
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && force => {}
            Err(e) => return Err(Error::io("remove state", &c.dir, e)),
        }
        if let Some(h) = spec
            .as_ref()
            .and_then(|s| s.hooks().as_ref())
            .and_then(|h| h.poststop().as_ref())
        {
            let mut st = c.oci_state();
            st.status = Status::Stopped;
            if let Err(e) = crate::hooks::run(h, &st) {
                tracing::warn!(container = id, error = %e, "poststop hook failed");
            }
        }
        Ok(())
    }

    /// SIGKILL the init (the kernel then kills the whole pid namespace) and wait until it is
    /// gone, through a pidfd: no polling.
    fn kill_and_wait(&self, c: &Container) -> Result<()> {
        let Ok(pidfd) = berth_sys::pidfd_open(c.record.pid) else {
            return Ok(());
        };
        if !c.init_alive() {
            return Ok(());
        }
        let _ = berth_sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        if let Ok(cg) = berth_cgroups::open(&c.record.cgroup_path) {
            let _ = cg.thaw();
        }
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        // The init is someone else's child (the supervisor's), so it stays a zombie until
        // reaped; POLLIN fires at exit all the same. Bound the wait: a process stuck in the
        // kernel (D state) must not hang delete forever.
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16));
        Ok(())
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let c = self.load(id)?;
        let status = c.status();
        if status != Status::Running {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                op: "pause",
            });
        }
        Ok(cgroup_of(&c)?.freeze()?)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let c = self.load(id)?;
        let status = c.status();
        if status != Status::Paused {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                op: "resume",
            });
        }
        Ok(cgroup_of(&c)?.thaw()?)
    }

    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let c = self.load(id)?;
        let status = c.status();
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                op: "update",
            });
        }
        Ok(cgroup_of(&c)?.set(resources)?)
    }

    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let c = self.load(id)?;
        Ok(cgroup_of(&c)?.pids()?)
    }

    pub fn stats(&self, id: &str) -> Result<Stats> {
        let c = self.load(id)?;
        if c.status() == Status::Stopped {
            return Err(Error::WrongState {
                id: id.into(),
                status: "stopped".into(),
                op: "read stats",
            });
        }
        Ok(cgroup_of(&c)?.stats()?)
    }

    pub fn oom_kills(&self, id: &str) -> Result<u64> {
        let c = self.load(id)?;
        Ok(cgroup_of(&c)?.oom_kills()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_runc() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
