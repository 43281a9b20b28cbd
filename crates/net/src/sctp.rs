//! The host-side check of a published SCTP port: std has no SCTP socket, and a TCP bind on
//! the same number says nothing about SCTP, so a real SCTP socket is bound.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{Error, Result};

const IPPROTO_SCTP: i32 = 132;
const EPROTONOSUPPORT: i32 = 93;
const ESOCKTNOSUPPORT: i32 = 94;

/// An SCTP socket. A kernel without SCTP (CONFIG_IP_SCTP unset, or the sctp module not
/// loadable) is an error that says so, since nothing could be published or served on SCTP.
fn socket(ip: Ipv4Addr, port: u16) -> Result<Socket> {
    Socket::new(
        Domain::IPV4,
        Type::STREAM,
        Some(Protocol::from(IPPROTO_SCTP)),
    )
    .map_err(|e| {
        let object = if matches!(e.raw_os_error(), Some(EPROTONOSUPPORT | ESOCKTNOSUPPORT)) {
            format!("{ip}:{port}/sctp: this kernel has no SCTP support (load the sctp module, or build the kernel with CONFIG_IP_SCTP)")
        } else {
            format!("{ip}:{port}/sctp")
        };
        Error::Io {
            op: "open an SCTP socket to check host port",
            object,
            source: e,
        }
    })
}

/// Whether an SCTP socket can bind `ip:port` now (nothing else holds it).
pub fn bindable(ip: Ipv4Addr, port: u16) -> Result<bool> {
    let s = socket(ip, port)?;
    Ok(s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, port)).into())
        .is_ok())
}

/// A free SCTP port chosen by the kernel (a bind to port 0).
pub fn free_port(ip: Ipv4Addr) -> Result<Option<u16>> {
    let s = socket(ip, 0)?;
    if s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())
        .is_err()
    {
        return Ok(None);
    }
    Ok(s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port()))
}
