//! Terminals: a new pseudo-terminal opened inside the container's devpts, its master sent to
//! the console socket (SCM_RIGHTS, as runc's protocol: conmon and containerd's shim listen on
//! it), its slave made the process's stdio and controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Error, Result};

pub fn attach_new_pty(sock: &UnixStream, p: &oci_spec::runtime::Process) -> Result<()> {
    let (master, slave_path) =
        berth_sys::open_pty(Path::new("/dev/ptmx")).map_err(|e| Error::sys("open /dev/ptmx", e))?;
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {slave_path}"), e))?;
    if let Some(size) = p.console_size() {
        let _ = berth_sys::set_winsize(master.as_fd(), size.height() as u16, size.width() as u16);
    }
    let fds = [master.as_raw_fd()];
    let name = slave_path.as_bytes();
    let iov = [IoSlice::new(name)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        // an error, not a SIGPIPE, when the listener is gone: SIGPIPE is at its default here
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::sys("send the terminal to the console socket", e))?;
    drop(master);
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    for target in 0..3 {
        nix::unistd::dup2(slave, target).map_err(|e| Error::sys("dup2 terminal", e))?;
    }
    let stdin = std::io::stdin();
    berth_sys::set_controlling_terminal(stdin.as_fd()).map_err(|e| Error::sys("TIOCSCTTY", e))?;
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}
