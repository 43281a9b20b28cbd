//! OCI hooks: programs run at fixed points of the lifecycle with the container's state on
//! their standard input. A hook that fails (non-zero exit, timeout) fails the operation,
//! except poststart and poststop, whose failures are only logged, as the spec says.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;

use crate::container::OciState;
use crate::error::{Error, Result};

/// Refuse hooks whose path is not absolute, as the runtime spec requires: a relative one would
/// be looked up in PATH or the runtime's working directory, whatever they are at that moment.
pub fn validate(h: &oci_spec::runtime::Hooks) -> Result<()> {
    let all = [
        h.prestart(),
        h.create_runtime(),
        h.create_container(),
        h.start_container(),
        h.poststart(),
        h.poststop(),
    ];
    for hook in all.into_iter().flatten().flatten() {
        if !hook.path().is_absolute() {
            return Err(Error::Hook {
                path: hook.path().clone(),
                reason: "the path of a hook must be absolute".into(),
            });
        }
    }
    Ok(())
}

/// Run `hooks` in order with `state` on stdin.
pub fn run(hooks: &[Hook], state: &OciState) -> Result<()> {
    run_with_env(hooks, state, None)
}

/// As [`run`]; a hook without its own env list gets `default_env` (the container process's,
/// for startContainer) or, when that is None, the runtime's environment.
pub fn run_with_env(
    hooks: &[Hook],
    state: &OciState,
    default_env: Option<&[String]>,
) -> Result<()> {
    let json = serde_json::to_vec(state)
        .map_err(|e| Error::sys("encode state for hooks", std::io::Error::other(e)))?;
    for h in hooks {
        run_one(h, &json, default_env)?;
    }
    Ok(())
}

fn run_one(h: &Hook, state: &[u8], default_env: Option<&[String]>) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        path: h.path().clone(),
        reason,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some(first) = args.first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(first);
        }
        cmd.args(args.iter().skip(1));
    }
    // A hook with an env list gets exactly that; without one it inherits the environment of
    // whoever runs it (the runtime, or for startContainer the container's process), as runc.
    if let Some(env) = h.env().as_deref().or(default_env) {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input must not fail the write (EPIPE), nor kill the
        // container's init, which runs with SIGPIPE at its default (it runs some hooks).
        let _ = berth_sys::with_sigpipe_ignored(|| stdin.write_all(state));
    }
    let status = match h.timeout() {
        Some(t) if t <= 0 => return Err(fail(format!("timeout {t} must be positive"))),
        Some(t) => {
            let pidfd = berth_sys::pidfd_open(child.id() as i32)
                .map_err(|e| fail(format!("pidfd_open: {e}")))?;
            let mut fds = [nix::poll::PollFd::new(
                pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ms = (t as u64 * 1000).min(i32::MAX as u64) as i32;
            let ready = nix::poll::poll(
                &mut fds,
                nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
            )
            .map_err(|e| fail(format!("wait: {e}")))?;
            if ready == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {t}s")));
            }
            child.wait()
        }
        None => child.wait(),
    }
    .map_err(|e| fail(format!("wait: {e}")))?;
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    Ok(())
}
