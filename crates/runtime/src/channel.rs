//! The channel between the runtime and the process it creates: a SOCK_SEQPACKET pair (one
//! message per send, so no framing), close-on-exec on both ends so that a successful exec in
//! the child reads as end-of-file in the parent.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    /// parent → child: the cgroup and the id mappings are in place; go on. Carries the
    /// child's pid as the runtime sees it (for the seccomp agent).
    Go(i32),
    /// parent → child: the container's cgroup is complete; enter it (sent after Go, so the
    /// child sets up its mounts meanwhile). Carries the paths of the v1 `tasks` files whose
    /// descriptors come with the message (see `berth_cgroups::Entry`).
    Attached(Vec<std::path::PathBuf>),
    /// child → parent: namespaces exist, run createRuntime (and prestart) hooks now.
    RunRuntimeHooks,
    /// parent → child: those hooks are done.
    HooksDone,
    /// child → parent: the container is created and waits for `start`.
    Ready,
    /// child → parent: setup failed.
    Failed(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fds(msg, &[])
    }

    /// Send a message with descriptors (SCM_RIGHTS) attached.
    pub fn send_with_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        let data = serde_json::to_vec(msg)
            .map_err(|e| Error::sys("encode message", std::io::Error::other(e)))?;
        let iov = [std::io::IoSlice::new(&data)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("send to the container process", e)),
            }
        }
    }

    /// The next message and the descriptors that came with it, or None at end of file.
    pub fn recv_with_fds(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match berth_sys::recv_with_fds(self.fd.as_fd(), &mut buf) {
                Ok((0, _)) => return Ok(None),
                Ok((n, fds)) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(|m| Some((m, fds)))
                        .map_err(|e| Error::sys("decode message", std::io::Error::other(e)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(None),
                Err(e) => return Err(Error::sys("receive from the runtime", e)),
            }
        }
    }

    /// A message already waiting, without blocking (None when there is none).
    pub fn try_recv(&self) -> Option<Msg> {
        let mut buf = vec![0u8; 64 * 1024];
        match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n > 0 => serde_json::from_slice(&buf[..n]).ok(),
            _ => None,
        }
    }

    /// The next message, or None at end of file (the peer exec'd or exited).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(|e| Error::sys("decode message", std::io::Error::other(e)))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // ECONNRESET: the peer died with the message unread
                Err(nix::errno::Errno::ECONNRESET) => return Ok(None),
                Err(e) => return Err(Error::sys("receive from the container process", e)),
            }
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
