//! Links, addresses and routes through rtnetlink. Each call opens its own netlink socket on a
//! small current-thread runtime: the engine is synchronous, and a socket opened by a thread
//! that has entered a container's network namespace speaks to that namespace, which is how
//! the inside of a container is configured without entering it with a process.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::Handle;

use crate::{errno, Error, Result};

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

pub(crate) struct Nl {
    rt: tokio::runtime::Runtime,
    pub(crate) h: Handle,
}

impl Nl {
    /// A netlink socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Nl> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(Error::io("start", "netlink runtime"))?;
        let (conn, h, _) = {
            let _g = rt.enter();
            rtnetlink::new_connection().map_err(Error::io("open", "netlink socket"))?
        };
        rt.spawn(conn);
        Ok(Nl { rt, h })
    }

    pub(crate) fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    pub(crate) fn index(&self, name: &str) -> Result<Option<u32>> {
        let h = self.h.clone();
        self.block(async move {
            let mut s = h.link().get().match_name(name.to_string()).execute();
            match s.try_next().await {
                Ok(Some(m)) => Ok(Some(m.header.index)),
                Ok(None) => Ok(None),
                Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
                Err(e) => Err(Error::nl("look up link", name)(e)),
            }
        })
    }

    pub(crate) fn must_index(&self, name: &str) -> Result<u32> {
        self.index(name)?.ok_or_else(|| Error::Io {
            op: "look up link",
            object: name.to_string(),
            source: std::io::Error::from_raw_os_error(ENODEV),
        })
    }

    pub(crate) fn delete(&self, name: &str) -> Result<bool> {
        let Some(i) = self.index(name)? else {
            return Ok(false);
        };
        let h = self.h.clone();
        self.block(async move {
            match h.link().del(i).execute().await {
                Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
                r => r.map(|_| true).map_err(Error::nl("delete link", name)),
            }
        })
    }

    pub(crate) fn up(&self, name: &str) -> Result<()> {
        let i = self.must_index(name)?;
        let h = self.h.clone();
        self.block(async move { h.link().set(i).up().execute().await })
            .map_err(Error::nl("set up", name))
    }

    fn add_addr(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        self.add_ip(name, IpAddr::V4(ip), prefix)
    }

    /// An address of either family; a v6 one is marked NODAD: berth hands out each address
    /// once, so the duplicate address detection would only delay its use by a second or so
    /// (the address stays tentative, unusable as a source, until DAD ends).
    fn add_ip(&self, name: &str, ip: IpAddr, prefix: u8) -> Result<()> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlag, AddressHeaderFlag};
        let i = self.must_index(name)?;
        let h = self.h.clone();
        self.block(async move {
            let mut req = h.address().add(i, ip, prefix);
            if ip.is_ipv6() {
                let m = req.message_mut();
                m.header.flags.push(AddressHeaderFlag::Nodad);
                m.attributes
                    .push(AddressAttribute::Flags(vec![AddressFlag::Nodad]));
            }
            match req.execute().await {
                Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
                r => r,
            }
        })
        .map_err(Error::nl("add address", format!("{ip}/{prefix} to {name}")))
    }
}

/// A bridge as a network wants it.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    pub name: String,
    /// The gateway address, given to the bridge.
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    pub mtu: Option<u32>,
    /// The IPv6 gateway address and prefix of a dual-stack network.
    pub gateway6: Option<(Ipv6Addr, u8)>,
}

/// Creates the bridge if it is not there (an existing one is adopted: a daemon restart),
/// gives it the gateway address and brings it up. `route_localnet` lets a DNAT from
/// 127.0.0.1 leave through it (published ports reachable on the host's loopback).
pub fn ensure_bridge(b: &BridgeSpec) -> Result<()> {
    let nl = Nl::open()?;
    if nl.index(&b.name)?.is_none() {
        let h = nl.h.clone();
        let name = b.name.clone();
        nl.block(async move {
            match h.link().add().bridge(name).execute().await {
                Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
                r => r,
            }
        })
        .map_err(Error::nl("create bridge", &b.name))?;
    }
    if let Some(mtu) = b.mtu {
        let i = nl.must_index(&b.name)?;
        let h = nl.h.clone();
        nl.block(async move { h.link().set(i).mtu(mtu).execute().await })
            .map_err(Error::nl("set mtu", &b.name))?;
    }
    nl.add_addr(&b.name, b.gateway, b.prefix)?;
    if let Some((gw6, p6)) = b.gateway6 {
        // a host with IPv6 off by default would refuse the address
        crate::sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", b.name), "0")?;
        nl.add_ip(&b.name, IpAddr::V6(gw6), p6)?;
    }
    nl.up(&b.name)?;
    crate::sysctl(&format!("net/ipv4/conf/{}/route_localnet", b.name), "1")?;
    Ok(())
}

/// Deletes a link (a bridge, or a veth and so its peer); a missing one is not an error.
pub fn delete_link(name: &str) -> Result<bool> {
    Nl::open()?.delete(name)
}

/// The names of the host's links that start with `prefix` (a pool's leftovers after a crash).
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let nl = Nl::open()?;
    let h = nl.h.clone();
    nl.block(async move {
        let mut out = Vec::new();
        let mut s = h.link().get().execute();
        while let Some(m) = s.try_next().await? {
            for a in m.attributes {
                if let netlink_packet_route::link::LinkAttribute::IfName(n) = a {
                    if n.starts_with(prefix) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    })
    .map_err(Error::nl("list links", prefix))
}

pub fn link_exists(name: &str) -> Result<bool> {
    Ok(Nl::open()?.index(name)?.is_some())
}

/// One interface of a container on a bridge.
#[derive(Debug, Clone)]
pub struct Attach<'a> {
    /// The container's network namespace, a bind-mounted nsfs file.
    pub netns: &'a Path,
    /// The host end's name; its peer is created under `peer_tmp` and renamed `ifname` inside.
    pub host_if: &'a str,
    pub peer_tmp: &'a str,
    pub ifname: &'a str,
    pub bridge: &'a str,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    /// The default route, for the container's first network only.
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
}

/// Creates the veth pair, puts one end into the namespace as `ifname` with its address, MAC
/// and default route, and plugs the other into the bridge. On failure the pair is removed.
pub fn attach(a: &Attach<'_>) -> Result<()> {
    let r = std::thread::scope(|s| {
        s.spawn(|| attach_in_thread(a))
            .join()
            .unwrap_or_else(|_| Err(Error::Nft("netlink thread panicked".into())))
    });
    if r.is_err() {
        if let Ok(nl) = Nl::open() {
            let _ = nl.delete(a.host_if);
            let _ = nl.delete(a.peer_tmp);
        }
    }
    r
}

fn attach_in_thread(a: &Attach<'_>) -> Result<()> {
    let ns = File::open(a.netns).map_err(Error::io("open netns", a.netns.display().to_string()))?;
    let host = Nl::open()?;
    let create = || {
        let h = host.h.clone();
        let (hn, pn) = (a.host_if.to_string(), a.peer_tmp.to_string());
        host.block(async move { h.link().add().veth(hn, pn).execute().await })
    };
    match create() {
        Err(e) if errno(&e) == Some(EEXIST) => {
            // a veth left by a crash between its creation and the record of it, or one
            // whose namespace the kernel is still tearing down
            host.delete(a.host_if)?;
            host.delete(a.peer_tmp)?;
            create().map_err(Error::nl("create veth", a.host_if))?;
        }
        r => r.map_err(Error::nl("create veth", a.host_if))?,
    }
    let bi = host.must_index(a.bridge)?;
    let hi = host.must_index(a.host_if)?;
    let pi = host.must_index(a.peer_tmp)?;
    let h = host.h.clone();
    let (mac, mtu) = (a.mac, a.mtu);
    host.block(async move {
        let mut req = h.link().set(pi).address(mac.to_vec());
        if let Some(m) = mtu {
            req = req.mtu(m);
        }
        req.execute().await?;
        h.link()
            .set(pi)
            .setns_by_fd(ns.as_raw_fd())
            .execute()
            .await?;
        let mut req = h.link().set(hi).controller(bi);
        if let Some(m) = mtu {
            req = req.mtu(m);
        }
        req.execute().await?;
        h.link().set(hi).up().execute().await
    })
    .map_err(Error::nl("plumb veth", a.host_if))?;
    let ns = File::open(a.netns).map_err(Error::io("open netns", a.netns.display().to_string()))?;
    // this thread only: the network namespace is per thread, and the thread ends here
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
        .map_err(Error::sys("enter netns", a.netns.display().to_string()))?;
    let inner = Nl::open()?;
    let pi = inner.must_index(a.peer_tmp)?;
    let h = inner.h.clone();
    let ifname = a.ifname.to_string();
    inner
        .block(async move { h.link().set(pi).name(ifname).execute().await })
        .map_err(Error::nl("rename", a.peer_tmp))?;
    inner.add_addr(a.ifname, a.addr, a.prefix)?;
    inner.up(a.ifname)?;
    inner.up("lo")?;
    if let Some(gw) = a.gateway {
        let h = inner.h.clone();
        inner
            .block(async move {
                match h.route().add().v4().gateway(gw).execute().await {
                    Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
                    r => r,
                }
            })
            .map_err(Error::nl("add default route via", gw.to_string()))?;
    }
    Ok(())
}

/// Gives an interface inside a namespace (attached before) its IPv6 address, and a default
/// IPv6 route via `gateway` when one is given; IPv6 is enabled on the interface first, since
/// a namespace inherits nothing of the host's settings but its compiled-in defaults.
pub fn configure_v6(
    netns: &Path,
    ifname: &str,
    addr: Ipv6Addr,
    prefix: u8,
    gateway: Option<Ipv6Addr>,
) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            let ns =
                File::open(netns).map_err(Error::io("open netns", netns.display().to_string()))?;
            // this thread only, which ends here; /proc/sys/net is the opener's namespace's
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(Error::sys("enter netns", netns.display().to_string()))?;
            let key = format!("net/ipv6/conf/{ifname}/disable_ipv6");
            if std::fs::read_to_string(format!("/proc/sys/{key}")).is_ok_and(|v| v.trim() != "0") {
                crate::sysctl(&key, "0")?;
            }
            let nl = Nl::open()?;
            nl.add_ip(ifname, IpAddr::V6(addr), prefix)?;
            if let Some(gw) = gateway {
                let h = nl.h.clone();
                nl.block(async move {
                    match h.route().add().v6().gateway(gw).execute().await {
                        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
                        r => r,
                    }
                })
                .map_err(Error::nl("add default IPv6 route via", gw.to_string()))?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Nft("netlink thread panicked".into())))
    })
}

/// Removes one interface from a namespace (a `network disconnect`): deleting the inside end
/// deletes the pair.
pub fn detach(netns: &Path, ifname: &str, host_if: &str) -> Result<()> {
    let r = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            let ns =
                File::open(netns).map_err(Error::io("open netns", netns.display().to_string()))?;
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(Error::sys("enter netns", netns.display().to_string()))?;
            Nl::open()?.delete(ifname).map(|_| ())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Nft("netlink thread panicked".into())))
    });
    // the host end, whatever became of the namespace
    let _ = delete_link(host_if);
    r
}
