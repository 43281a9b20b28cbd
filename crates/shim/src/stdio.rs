//! The stdio of a container process (its init or an exec'd one): pipes, or a pty whose master
//! arrives on a console socket (runc's protocol). The runtime library still gives the process
//! the caller's fds 0-2, so the process's ends are put there for the duration of the create or
//! exec call only, and the shim's own 0-2 point at /dev/null the rest of the time.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::SigSet;

use crate::Error;

/// What the shim keeps of a process's stdio: its ends of the pipes, or the pty master.
#[derive(Default)]
pub(crate) struct Streams {
    /// The pty master (for resize); `out` and `stdin` are duplicates of it.
    pub tty: Option<File>,
    pub stdin: Option<File>,
    pub out: Option<File>,
    pub err: Option<File>,
}

pub(crate) struct Prepared {
    /// What the process gets as 0, 1, 2.
    child: [OwnedFd; 3],
    streams: Streams,
    console: Option<(UnixListener, PathBuf)>,
}

pub(crate) fn nonblocking(f: &impl AsRawFd) -> Result<(), Error> {
    fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map(|_| ())
        .map_err(|e| Error::sys("set O_NONBLOCK", e))
}

fn dev_null() -> Result<OwnedFd, Error> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::sys("open /dev/null", e))
}

/// Point 0-2 at /dev/null: the shim's own stdio belongs to nobody.
pub(crate) fn quiet(null: &OwnedFd) {
    for i in 0..3 {
        let _ = nix::unistd::dup2(null.as_raw_fd(), i);
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))
}

/// Make the process's stdio. With `tty`, a console socket is bound at `console_path` for the
/// runtime to send the pty master to.
pub(crate) fn prepare(tty: bool, stdin: bool, console_path: &Path) -> Result<Prepared, Error> {
    if tty {
        let _ = std::fs::remove_file(console_path);
        let l = UnixListener::bind(console_path).map_err(|source| Error::Bind {
            path: console_path.to_path_buf(),
            source,
        })?;
        return Ok(Prepared {
            child: [dev_null()?, dev_null()?, dev_null()?],
            streams: Streams::default(),
            console: Some((l, console_path.to_path_buf())),
        });
    }
    let mut streams = Streams::default();
    let child_in = if stdin {
        let (r, w) = pipe()?;
        let w = File::from(w);
        nonblocking(&w)?;
        streams.stdin = Some(w);
        r
    } else {
        dev_null()?
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (out_r, err_r) = (File::from(out_r), File::from(err_r));
    nonblocking(&out_r)?;
    nonblocking(&err_r)?;
    streams.out = Some(out_r);
    streams.err = Some(err_r);
    Ok(Prepared {
        child: [child_in, out_w, err_w],
        streams,
        console: None,
    })
}

impl Prepared {
    /// The console socket's path to give the runtime, when there is a terminal.
    pub(crate) fn console_socket(&self) -> Option<PathBuf> {
        self.console.as_ref().map(|(_, p)| p.clone())
    }

    /// Run `f` (the runtime's create or exec) with the process's stdio on 0-2 and with no
    /// signal blocked, so that the process inherits neither the shim's mask nor its files;
    /// `blocked` is the shim's mask, put back afterwards. An error means `f` did not run.
    pub(crate) fn around<R>(&self, blocked: &SigSet, f: impl FnOnce() -> R) -> Result<R, Error> {
        let null = dev_null()?;
        for (i, fd) in self.child.iter().enumerate() {
            if let Err(e) = nix::unistd::dup2(fd.as_raw_fd(), i as i32) {
                quiet(&null);
                return Err(Error::sys("dup2", e));
            }
        }
        if let Err(e) = SigSet::empty().thread_set_mask() {
            quiet(&null);
            return Err(Error::sys("unblock signals", e));
        }
        let r = f();
        // Neither can fail with valid arguments; a failure would be a bug, not a condition.
        let _ = blocked.thread_set_mask();
        quiet(&null);
        Ok(r)
    }

    /// After a successful create/exec: close the process's ends here (so that its exit is
    /// seen as end of file) and, with a terminal, take the pty master from the console socket.
    pub(crate) fn finish(self, id: &str, want_stdin: bool) -> Result<Streams, Error> {
        let Prepared {
            child,
            mut streams,
            console,
        } = self;
        drop(child);
        let Some((listener, path)) = console else {
            return Ok(streams);
        };
        let bad = |reason: String| Error::Console {
            id: id.to_string(),
            path: path.clone(),
            reason,
        };
        // The runtime connected before it cloned the process, and the process sent the
        // master before it reported ready: the connection and the message are queued.
        listener
            .set_nonblocking(true)
            .map_err(|e| bad(e.to_string()))?;
        let accepted = listener.accept();
        let _ = std::fs::remove_file(&path);
        let (conn, _) = accepted
            .map_err(|e| bad(format!("{e} (does the spec's process.terminal say true?)")))?;
        conn.set_nonblocking(true).map_err(|e| bad(e.to_string()))?;
        let mut name = [0u8; 256];
        let (_, fds) = berth_sys::recv_with_fds(std::os::fd::AsFd::as_fd(&conn), &mut name)
            .map_err(|e| bad(format!("{e} (does the spec's process.terminal say true?)")))?;
        let master = fds
            .into_iter()
            .next()
            .map(File::from)
            .ok_or_else(|| bad("no descriptor in the message".into()))?;
        nonblocking(&master)?;
        let dup = |f: &File| {
            f.try_clone()
                .map_err(|e| Error::sys("dup the pty master", e))
        };
        streams.out = Some(dup(&master)?);
        if want_stdin {
            streams.stdin = Some(dup(&master)?);
        }
        streams.tty = Some(master);
        Ok(streams)
    }

    /// After a failed create/exec.
    pub(crate) fn abandon(self) {
        if let Some((_, p)) = &self.console {
            let _ = std::fs::remove_file(p);
        }
    }
}
