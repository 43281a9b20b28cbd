//! Network namespaces prepared ahead of need, so that starting a container on a bridge costs
//! two netlink round trips instead of a namespace, a veth pair and a dozen requests.
//!
//! [`prepare`] (a background worker's job) makes a namespace bound to a file, with `lo` up
//! and a veth pair whose inside end is already `eth0` and whose host end waits, down and on
//! no bridge, under a name of the pool's. It keeps a netlink socket opened inside the
//! namespace: a socket speaks to the namespace it was made in, so the inside is configured
//! later without a thread entering the namespace. [`Prepared::claim`] renames the host end to
//! the container's name, plugs it into the network's bridge and brings it up (one request on
//! the host), then sets the MAC, address and default route inside (one batch). Nothing here
//! decides which namespace goes to whom: the engine does.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlag, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{unshare, CloneFlags};

use crate::{Error, Result};

const EEXIST: i32 = 17;

/// A blocking rtnetlink socket: a batch of requests goes out in one datagram and their acks
/// come back together, without an async runtime (the engine calling it is synchronous).
pub struct Sock {
    s: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Sock {
    /// A socket in the calling thread's network namespace, for good.
    pub fn open() -> Result<Sock> {
        let mut s = Socket::new(NETLINK_ROUTE).map_err(Error::io("open", "netlink socket"))?;
        s.bind_auto().map_err(Error::io("bind", "netlink socket"))?;
        s.connect(&SocketAddr::new(0, 0))
            .map_err(Error::io("connect", "netlink socket"))?;
        Ok(Sock {
            s,
            seq: 0,
            buf: Vec::with_capacity(32 * 1024),
        })
    }

    /// Sends `reqs` (each with the extra header flags it needs) in one datagram and returns,
    /// in order, each one's errno (0 for success).
    fn batch(&mut self, reqs: Vec<(RouteNetlinkMessage, u16)>) -> io::Result<Vec<i32>> {
        let first = self.seq.wrapping_add(1);
        let mut out = Vec::new();
        for (m, flags) in reqs {
            self.seq = self.seq.wrapping_add(1);
            let mut hdr = NetlinkHeader::default();
            hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            hdr.sequence_number = self.seq;
            let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(m));
            msg.finalize();
            let at = out.len();
            out.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut out[at..]);
        }
        let n = self.seq.wrapping_sub(first).wrapping_add(1) as usize;
        self.s.send(&out, 0)?;
        let mut codes = vec![None::<i32>; n];
        while codes.iter().any(Option::is_none) {
            self.buf.clear();
            let len = self.s.recv(&mut self.buf, 0)?;
            let mut off = 0;
            while off < len.min(self.buf.len()) {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let mlen = m.header.length as usize;
                let i = m.header.sequence_number.wrapping_sub(first) as usize;
                if let (NetlinkPayload::Error(e), Some(slot)) = (&m.payload, codes.get_mut(i)) {
                    *slot = Some(e.code.map_or(0, |c| -c.get()));
                }
                if mlen == 0 {
                    break;
                }
                // messages are 4-byte aligned in a datagram
                off += (mlen + 3) & !3;
            }
        }
        Ok(codes.into_iter().map(|c| c.unwrap_or(0)).collect())
    }

    fn one(&mut self, m: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        match self.batch(vec![(m, flags)])?.first() {
            Some(0) | None => Ok(()),
            Some(&e) => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// The index of the link called `name`, if there is one.
    pub fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST;
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(
            hdr,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(m)),
        );
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.s.send(&out, 0)?;
        loop {
            self.buf.clear();
            let len = self.s.recv(&mut self.buf, 0)?;
            if len == 0 {
                return Ok(None);
            }
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                &self.buf[..len.min(self.buf.len())],
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if m.header.sequence_number != self.seq {
                continue;
            }
            return match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    Ok(Some(l.header.index))
                }
                NetlinkPayload::Error(e) => match e.code.map(|c| -c.get()) {
                    Some(19) | None => Ok(None),
                    Some(c) => Err(io::Error::from_raw_os_error(c)),
                },
                _ => Ok(None),
            };
        }
    }

    /// Sets a link up by index.
    pub fn up(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags.push(LinkFlag::Up);
        m.header.change_mask.push(LinkFlag::Up);
        self.one(RouteNetlinkMessage::SetLink(m), 0)
    }
}

/// A namespace made ahead, with its veth, waiting for a container.
pub struct Prepared {
    /// The nsfs bind mount that keeps the namespace.
    pub path: PathBuf,
    /// The host end's name while it waits in the pool.
    pub host_if: String,
    host_index: u32,
    eth0: u32,
    /// The bridge the host end is already a port of, both ends up (see [`prepare_on`]).
    on: Option<String>,
    /// Opened inside the namespace. It holds a reference to the namespace, so it is closed
    /// (dropped with this) once the container has it.
    inside: Sock,
}

/// What a container's first interface needs at claim.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The host end's name from now on (the engine's deterministic one).
    pub host_if: &'a str,
    pub bridge: &'a str,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
}

/// Makes a namespace bound to `path` (whose directory must exist) with `lo` up and a veth
/// pair: `host_if` down on the host, its peer `eth0` inside. On failure nothing is left.
pub fn prepare(path: &Path, host_if: &str) -> Result<Prepared> {
    prepare_on(path, host_if, None)
}

/// [`prepare`], and with `bridge` (the default network's) the host end is plugged into it and
/// both ends are up already: a claim onto that bridge then only renames the host end and
/// sets the MAC (a veth's may change while it is up), address and route, leaving the ports'
/// set-up (sysfs entries, IPv6 link-local addresses) to the pool's worker. A missing bridge
/// is not an error: the entry waits on none.
pub fn prepare_on(path: &Path, host_if: &str, bridge: Option<&str>) -> Result<Prepared> {
    let r = prepare_inner(path, Some(host_if)).and_then(|mut p| {
        if let Some(b) = bridge {
            p.plug(b)?;
        }
        Ok(p)
    });
    if r.is_err() {
        let _ = crate::link::delete_link(host_if);
        let _ = crate::netns::remove(path);
    }
    r
}

/// Makes a namespace bound to `path` with only `lo` (up): for `--network none`.
pub fn prepare_lo(path: &Path) -> Result<Prepared> {
    let r = prepare_inner(path, None);
    if r.is_err() {
        let _ = crate::netns::remove(path);
    }
    r
}

fn prepare_inner(path: &Path, host_if: Option<&str>) -> Result<Prepared> {
    let shown = || path.display().to_string();
    // the namespace is made by a thread of its own (a namespace is per thread, and this one
    // ends here), which also opens the socket that stays inside it
    let mut inside = std::thread::scope(|s| {
        s.spawn(|| -> Result<Sock> {
            File::create(path).map_err(Error::io("create netns file", shown()))?;
            unshare(CloneFlags::CLONE_NEWNET).map_err(Error::sys("unshare netns for", shown()))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(Error::sys("bind netns to", shown()))?;
            let mut s = Sock::open()?;
            // lo is index 1 in every namespace
            s.up(1).map_err(Error::io("set up lo in", shown()))?;
            Ok(s)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Nft("netns thread panicked".into())))
    })?;
    let Some(host_if) = host_if else {
        return Ok(Prepared {
            path: path.to_path_buf(),
            host_if: String::new(),
            host_index: 0,
            eth0: 0,
            on: None,
            inside,
        });
    };
    let ns = File::open(path).map_err(Error::io("open netns", shown()))?;
    let mut host = Sock::open()?;
    // the peer is made in the namespace directly, already called eth0
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName("eth0".into()));
    peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    let mut m = LinkMessage::default();
    m.attributes
        .push(LinkAttribute::IfName(host_if.to_string()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    match host.one(
        RouteNetlinkMessage::NewLink(m.clone()),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Err(e) if e.raw_os_error() == Some(EEXIST) => {
            // an entry of the same name whose namespace the kernel is still destroying, or
            // a crash's leftover
            let _ = crate::link::delete_link(host_if);
            host.one(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        }
        r => r,
    }
    .map_err(Error::io("create veth", host_if))?;
    let host_index = host
        .index(host_if)
        .map_err(Error::io("look up link", host_if))?
        .ok_or_else(|| Error::Io {
            op: "look up link",
            object: host_if.to_string(),
            source: io::Error::from_raw_os_error(19),
        })?;
    let eth0 = inside
        .index("eth0")
        .map_err(Error::io("look up eth0 in", shown()))?
        .ok_or_else(|| Error::Io {
            op: "look up eth0 in",
            object: shown(),
            source: io::Error::from_raw_os_error(19),
        })?;
    Ok(Prepared {
        path: path.to_path_buf(),
        host_if: host_if.to_string(),
        host_index,
        eth0,
        on: None,
        inside,
    })
}

impl Prepared {
    /// Gives the namespace its container's interface: `host` is a socket in the host's
    /// namespace (the caller's long-lived one). On failure the caller discards the entry.
    fn plug(&mut self, bridge: &str) -> Result<()> {
        let mut host = Sock::open()?;
        let Some(bi) = host
            .index(bridge)
            .map_err(Error::io("look up bridge", bridge))?
        else {
            return Ok(());
        };
        let mut m = LinkMessage::default();
        m.header.index = self.host_index;
        m.header.flags.push(LinkFlag::Up);
        m.header.change_mask.push(LinkFlag::Up);
        m.attributes.push(LinkAttribute::Controller(bi));
        host.one(RouteNetlinkMessage::SetLink(m), 0)
            .map_err(Error::io(
                "plug veth",
                format!("{} into {bridge}", self.host_if),
            ))?;
        self.inside
            .up(self.eth0)
            .map_err(Error::io("set up eth0 in", self.path.display().to_string()))?;
        self.on = Some(bridge.to_string());
        Ok(())
    }

    pub fn claim(self, host: &mut Sock, c: &Claim<'_>) -> Result<()> {
        if self.on.as_deref() == Some(c.bridge) {
            let mut m = LinkMessage::default();
            m.header.index = self.host_index;
            m.attributes
                .push(LinkAttribute::IfName(c.host_if.to_string()));
            if let Some(mtu) = c.mtu {
                m.attributes.push(LinkAttribute::Mtu(mtu));
            }
            match host.one(RouteNetlinkMessage::SetLink(m.clone()), 0) {
                Err(e) if e.raw_os_error() == Some(EEXIST) => {
                    let _ = crate::link::delete_link(c.host_if);
                    host.one(RouteNetlinkMessage::SetLink(m), 0)
                }
                r => r,
            }
            .map_err(Error::io(
                "rename veth",
                format!("{} to {}", self.host_if, c.host_if),
            ))?;
            return self.configure_inside(c);
        }
        let bridge_index = host
            .index(c.bridge)
            .map_err(Error::io("look up bridge", c.bridge))?
            .ok_or_else(|| Error::Io {
                op: "look up bridge",
                object: c.bridge.to_string(),
                source: io::Error::from_raw_os_error(19),
            })?;
        let mut m = LinkMessage::default();
        m.header.index = self.host_index;
        m.header.flags.push(LinkFlag::Up);
        m.header.change_mask.push(LinkFlag::Up);
        m.attributes
            .push(LinkAttribute::IfName(c.host_if.to_string()));
        m.attributes.push(LinkAttribute::Controller(bridge_index));
        if let Some(mtu) = c.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        match host.one(RouteNetlinkMessage::SetLink(m.clone()), 0) {
            Err(e) if e.raw_os_error() == Some(EEXIST) => {
                // the container's previous veth, its namespace still being torn down by the
                // kernel (a restart right after an exit)
                let _ = crate::link::delete_link(c.host_if);
                host.one(RouteNetlinkMessage::SetLink(m), 0)
            }
            r => r,
        }
        .map_err(Error::io(
            "plug veth",
            format!("{} as {}", self.host_if, c.host_if),
        ))?;

        self.configure_inside(c)
    }

    /// MAC (and MTU) and up, address, default route: one batch on the inside socket.
    fn configure_inside(mut self, c: &Claim<'_>) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = self.eth0;
        link.header.flags.push(LinkFlag::Up);
        link.header.change_mask.push(LinkFlag::Up);
        link.attributes.push(LinkAttribute::Address(c.mac.to_vec()));
        if let Some(mtu) = c.mtu {
            link.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        addr.header.prefix_len = c.prefix;
        addr.header.index = self.eth0;
        let ip = IpAddr::V4(c.addr);
        addr.attributes.push(AddressAttribute::Address(ip));
        addr.attributes.push(AddressAttribute::Local(ip));
        let brd = if c.prefix >= 32 {
            c.addr
        } else {
            Ipv4Addr::from(u32::MAX >> u32::from(c.prefix) | u32::from(c.addr))
        };
        addr.attributes.push(AddressAttribute::Broadcast(brd));
        let mut reqs = vec![
            (RouteNetlinkMessage::SetLink(link), 0),
            (
                RouteNetlinkMessage::NewAddress(addr),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
        ];
        if let Some(gw) = c.gateway {
            let mut r = RouteMessage::default();
            r.header.address_family = AddressFamily::Inet;
            r.header.table = RouteHeader::RT_TABLE_MAIN;
            r.header.protocol = RouteProtocol::Static;
            r.header.scope = RouteScope::Universe;
            r.header.kind = RouteType::Unicast;
            r.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
            reqs.push((RouteNetlinkMessage::NewRoute(r), NLM_F_CREATE | NLM_F_EXCL));
        }
        let what = ["set up eth0", "add address", "add default route"];
        let codes = self.inside.batch(reqs).map_err(Error::io(
            "configure eth0 in",
            self.path.display().to_string(),
        ))?;
        for (code, op) in codes.into_iter().zip(what) {
            if code != 0 {
                return Err(Error::Io {
                    op,
                    object: format!("eth0 in {}", self.path.display()),
                    source: io::Error::from_raw_os_error(code),
                });
            }
        }
        Ok(())
    }
}

/// Removes a prepared namespace that will not be used: unbinding it lets the kernel destroy
/// it, and its veth pair with it, off the caller's path.
pub fn discard(p: Prepared) -> Result<()> {
    let Prepared { path, inside, .. } = p;
    drop(inside);
    crate::netns::remove(&path)
}
