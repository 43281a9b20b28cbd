//! Container networking below the engine: bridges, veth pairs, addresses, routes and MTUs
//! through netlink (`link`), network namespaces bind-mounted to files (`netns`), and NAT and
//! filtering in berth's own nftables table (`nft`). It knows no database and no container
//! record: the engine decides what exists, this crate makes the kernel agree.
#![forbid(unsafe_code)]

pub mod link;
pub mod netns;
pub mod nft;
pub mod pool;
pub mod sctp;
pub mod tc;

pub use link::{Attach, BridgeSpec};
pub use nft::{FirewallState, NetRules, PortRule};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink: {op} {object}: {source}")]
    Netlink {
        op: &'static str,
        object: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("{op} {object}: {source}")]
    Io {
        op: &'static str,
        object: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {object}: {source}")]
    Sys {
        op: &'static str,
        object: String,
        #[source]
        source: nix::Error,
    },
    #[error("nftables: {0}")]
    Nft(String),
}

impl Error {
    pub(crate) fn nl(
        op: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> Error {
        let object = object.into();
        move |source| Error::Netlink {
            op,
            object,
            source: Box::new(source),
        }
    }
    pub(crate) fn io(
        op: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let object = object.into();
        move |source| Error::Io { op, object, source }
    }
    pub(crate) fn sys(
        op: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(nix::Error) -> Error {
        let object = object.into();
        move |source| Error::Sys { op, object, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The errno of a netlink NACK, if that is what the error is.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Writes a sysctl under /proc/sys (`net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let p = format!("/proc/sys/{key}");
    std::fs::write(&p, value).map_err(Error::io("write sysctl", p))
}

/// The MAC address Docker derives from an IPv4 address (02:42 and the four bytes), so the
/// same address always has the same MAC and ARP caches of peers stay right after a restart.
pub fn mac_of(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    // a multicast MAC on an interface breaks unicast ARP
    if m[0] & 1 != 0 {
        return None;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn macs() {
        let m = mac_of("172.30.0.2".parse().unwrap());
        assert_eq!(format_mac(&m), "02:42:ac:1e:00:02");
        assert_eq!(parse_mac("02:42:ac:1e:00:02"), Some(m));
        assert_eq!(parse_mac("01:00:00:00:00:00"), None);
        assert_eq!(parse_mac("02:42:ac:1e:00"), None);
        assert_eq!(parse_mac("zz:42:ac:1e:00:02"), None);
    }
}
