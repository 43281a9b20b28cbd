//! IPv6 on berth's bridge networks (dual stack, as Docker has it): a network's v6 subnet,
//! gateway and range in `networks_v6`, the v6 leases in `leases_v6` (UNIQUE per network, so
//! never handed out twice; released with the v4 lease, and swept at reconcile after a crash),
//! and the berth-chosen ULA /48 that `--ipv6` without a subnet takes its /64s from. The v4
//! tables are left as they are: a network without a row here is v4-only.

use std::net::Ipv6Addr;
use std::path::Path;

use bollard_stubs::models::{ContainerCreateBody, EndpointSettings, IpamConfig};
use ipnet::Ipv6Net;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use super::{bad, Endpoint, NetRecord};
use crate::engine::Engine;
use crate::error::{Error, Result};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks_v6 (
    network TEXT PRIMARY KEY,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    ip_range TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS leases_v6 (
    container TEXT NOT NULL,
    network TEXT NOT NULL,
    ip TEXT NOT NULL,
    PRIMARY KEY (container, network),
    UNIQUE (network, ip)
);
CREATE TABLE IF NOT EXISTS net_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// A network's IPv6 side.
#[derive(Debug, Clone, PartialEq)]
pub struct Net6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    pub ip_range: Option<Ipv6Net>,
}

/// Whether an IPAM config entry is IPv6 (by its subnet, or its gateway when it has none).
pub(crate) fn is_v6_config(c: &IpamConfig) -> bool {
    match c.subnet.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s.contains(':'),
        None => c.gateway.as_deref().is_some_and(|g| g.contains(':')),
    }
}

fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The host's IPv6 routes that a network must not shadow: link-local and multicast left out.
fn host_routes6() -> Vec<Ipv6Net> {
    let text = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut out = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[9] == "lo" {
            continue;
        }
        let (Ok(d), Ok(p)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16)) else {
            continue;
        };
        let Ok(n) = Ipv6Net::new(Ipv6Addr::from(d), p) else {
            continue;
        };
        let a = n.network().segments()[0];
        if p == 0 || (a & 0xffc0) == 0xfe80 || (a & 0xff00) == 0xff00 {
            continue;
        }
        out.push(n);
    }
    out
}

fn v6_of(n: &Ipv6Net, i: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(n.network()) + i)
}

fn net6_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn parse_net6((id, s, g, r): (String, String, String, String)) -> Option<(String, Net6)> {
    Some((
        id,
        Net6 {
            subnet: s.parse().ok()?,
            gateway: g.parse().ok()?,
            ip_range: r.parse().ok(),
        },
    ))
}

impl Engine {
    /// The IPv6 side of network `id`, None for a v4-only network.
    pub(crate) fn net6(&self, id: &str) -> Option<Net6> {
        let c = self.db.lock();
        c.query_row(
            "SELECT network, subnet, gateway, ip_range FROM networks_v6 WHERE network = ?1",
            [id],
            net6_row,
        )
        .optional()
        // a read that fails is logged and taken as "no IPv6": the v4 side still works
        .inspect_err(|e| tracing::warn!(network = id, error = %e, "read IPv6 network"))
        .ok()
        .flatten()
        .and_then(parse_net6)
        .map(|(_, n)| n)
    }

    fn nets6(&self) -> Result<Vec<(String, Net6)>> {
        let c = self.db.lock();
        let mut st = c
            .prepare("SELECT network, subnet, gateway, ip_range FROM networks_v6")
            .map_err(Error::db("list IPv6 networks"))?;
        let rows = st
            .query_map([], net6_row)
            .map_err(Error::db("list IPv6 networks"))?
            .filter_map(|r| r.ok().and_then(parse_net6))
            .collect();
        Ok(rows)
    }

    /// At `network create`: the v6 side the request asks for, checked. `--ipv6` with no v6
    /// subnet gets a free /64 of this daemon's ULA /48, as Docker 28 picks one.
    pub(crate) fn plan_net6(&self, enable: bool, cfgs: &[IpamConfig]) -> Result<Option<Net6>> {
        if !enable {
            if let Some(c) = cfgs.first() {
                let what = c.subnet.clone().or(c.gateway.clone()).unwrap_or_default();
                return Err(bad(format!(
                    "IPv6 subnet or gateway {what} given, but IPv6 is not enabled on the network (--ipv6, EnableIPv6)"
                )));
            }
            return Ok(None);
        }
        if cfgs.len() > 1 {
            return Err(bad(
                "one IPv6 IPAM config (one IPv6 subnet) per network is supported",
            ));
        }
        let cfg = cfgs.first().cloned().unwrap_or_default();
        let taken = self.nets6()?;
        let subnet = match cfg.subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let n: Ipv6Net = s
                    .parse()
                    .map_err(|_| bad(format!("invalid IPv6 subnet {s:?}")))?;
                if n.trunc() != n {
                    return Err(bad(format!(
                        "invalid IPv6 subnet {s}: it has host bits set (did you mean {}?)",
                        n.trunc()
                    )));
                }
                if n.prefix_len() > 124 || n.prefix_len() < 8 {
                    return Err(bad(format!(
                        "invalid IPv6 subnet {s}: prefix length /{} is outside /8 to /124",
                        n.prefix_len()
                    )));
                }
                if let Some((id, o)) = taken.iter().find(|(_, o)| overlaps6(&n, &o.subnet)) {
                    let name = self.find_network(id).map(|r| r.name).unwrap_or_default();
                    return Err(bad(format!(
                        "invalid pool request: IPv6 subnet {s} overlaps {} of network {name}",
                        o.subnet
                    )));
                }
                if let Some(r) = host_routes6().into_iter().find(|r| overlaps6(&n, r)) {
                    return Err(bad(format!("IPv6 subnet {s} overlaps the host route {r}")));
                }
                n
            }
            None => {
                if cfg.gateway.is_some() || cfg.ip_range.is_some() {
                    return Err(bad("an IPv6 gateway or IP range needs an IPv6 subnet"));
                }
                self.free_subnet6(&taken)?
            }
        };
        let gateway = match cfg.gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(g) => {
                let g: Ipv6Addr = g
                    .parse()
                    .map_err(|_| bad(format!("invalid IPv6 gateway {g:?}")))?;
                if !subnet.contains(&g) || g == subnet.network() {
                    return Err(bad(format!(
                        "IPv6 gateway {g} is not a host address of subnet {subnet}"
                    )));
                }
                g
            }
            None => v6_of(&subnet, 1),
        };
        let ip_range = match cfg.ip_range.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let r: Ipv6Net = r
                    .parse()
                    .map_err(|_| bad(format!("invalid IPv6 IP range {r:?}")))?;
                if !subnet.contains(&r) {
                    return Err(bad(format!(
                        "IPv6 IP range {r} is not inside subnet {subnet}"
                    )));
                }
                Some(r.trunc())
            }
            None => None,
        };
        Ok(Some(Net6 {
            subnet,
            gateway,
            ip_range,
        }))
    }

    /// This daemon's ULA /48 (RFC 4193: fd00::/8 and 40 random bits), chosen once and kept.
    fn ula48(&self) -> Result<Ipv6Net> {
        let c = self.db.lock();
        let have: Option<String> = c
            .query_row("SELECT value FROM net_meta WHERE key = 'ula48'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(Error::db("read the ULA prefix"))?;
        if let Some(n) = have.and_then(|s| s.parse::<Ipv6Net>().ok()) {
            return Ok(n);
        }
        use rand::RngCore;
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        rand::thread_rng().fill_bytes(&mut b[1..6]);
        let n = Ipv6Net::new(Ipv6Addr::from(b), 48)
            .map_err(|e| bad(format!("ULA prefix: {e}")))?
            .trunc();
        c.execute(
            "INSERT OR IGNORE INTO net_meta (key, value) VALUES ('ula48', ?1)",
            [n.to_string()],
        )
        .map_err(Error::db("record the ULA prefix"))?;
        // a concurrent first use may have won: its choice is the one kept
        let kept: String = c
            .query_row("SELECT value FROM net_meta WHERE key = 'ula48'", [], |r| {
                r.get(0)
            })
            .map_err(Error::db("read the ULA prefix"))?;
        Ok(kept.parse().unwrap_or(n))
    }

    fn free_subnet6(&self, taken: &[(String, Net6)]) -> Result<Ipv6Net> {
        let ula = self.ula48()?;
        let routes = host_routes6();
        let subs = ula
            .subnets(64)
            .map_err(|e| bad(format!("split {ula}: {e}")))?;
        for c in subs {
            if !taken.iter().any(|(_, t)| overlaps6(&c, &t.subnet))
                && !routes.iter().any(|r| overlaps6(&c, r))
            {
                return Ok(c);
            }
        }
        Err(Error::Conflict(format!(
            "no free IPv6 /64 left in {ula} for a new network"
        )))
    }

    pub(crate) fn insert_net6(&self, id: &str, n: Option<&Net6>) -> Result<()> {
        let Some(n) = n else { return Ok(()) };
        let c = self.db.lock();
        c.execute(
            "INSERT INTO networks_v6 (network, subnet, gateway, ip_range) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                n.subnet.to_string(),
                n.gateway.to_string(),
                n.ip_range.map(|r| r.to_string()).unwrap_or_default()
            ],
        )
        .map_err(Error::db("insert IPv6 network"))?;
        drop(c);
        enable_forwarding6();
        Ok(())
    }

    pub(crate) fn delete_net6(&self, id: &str) {
        let c = self.db.lock();
        let _ = c.execute("DELETE FROM leases_v6 WHERE network = ?1", [id]);
        if let Err(e) = c.execute("DELETE FROM networks_v6 WHERE network = ?1", [id]) {
            tracing::warn!(network = id, error = %e, "delete IPv6 network");
        }
    }

    /// A static `IPv6Address` must be a host address of the network's v6 subnet.
    pub(crate) fn check_endpoint6(&self, n: &NetRecord, cfg: &EndpointSettings) -> Result<()> {
        let Some(s) = cfg
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv6_address.as_deref())
            .filter(|s| !s.is_empty())
        else {
            return Ok(());
        };
        let ip: Ipv6Addr = s
            .parse()
            .map_err(|_| bad(format!("invalid IPv6 address {s:?}")))?;
        let Some(n6) = self.net6(&n.id) else {
            return Err(bad(format!(
                "invalid IPv6 address {ip}: network {} has no IPv6 (create it with --ipv6)",
                n.name
            )));
        };
        if !n6.subnet.contains(&ip) || ip == n6.subnet.network() || ip == n6.gateway {
            return Err(bad(format!(
                "invalid IPv6 address {ip}: it is not a free host address of subnet {} of network {}",
                n6.subnet, n.name
            )));
        }
        Ok(())
    }

    /// The v6 lease of an endpoint on a dual-stack network: the requested address if free,
    /// else the lowest free one of the range. None on a v4-only network.
    fn lease6(&self, e: &Endpoint, n: &NetRecord) -> Result<Option<(Ipv6Addr, Net6)>> {
        let Some(n6) = self.net6(&n.id) else {
            return Ok(None);
        };
        let c = self.db.lock();
        let ip = super::lease::take(&c, &super::lease::V6, e, n, |used| {
            let pool = n6.ip_range.unwrap_or(n6.subnet);
            let size = 1u128
                .checked_shl(128 - u32::from(pool.prefix_len()))
                .unwrap_or(u128::MAX);
            // at most used+3 candidates: the network address, the gateway and the used
            // ones are all that can be skipped
            let limit = (used.len() as u128 + 3).min(size);
            (0..limit).map(|i| v6_of(&pool, i)).find(|a| {
                n6.subnet.contains(a)
                    && *a != n6.subnet.network()
                    && *a != n6.gateway
                    && !used.contains(a)
            })
        })?;
        Ok(Some((ip, n6)))
    }

    /// After the endpoint's veth is in the container (as `ifname`): its v6 lease, address and,
    /// for `default_route`, the default v6 route. Nothing on a v4-only network, which keeps
    /// only the link-local address it always had.
    pub(crate) fn attach6(
        &self,
        e: &Endpoint,
        n: &NetRecord,
        netns: &Path,
        ifname: &str,
        default_route: &mut bool,
    ) -> Result<()> {
        let Some((ip, n6)) = self.lease6(e, n)? else {
            return Ok(());
        };
        let gw = (*default_route && !n.internal).then_some(n6.gateway);
        berth_net::link::configure_v6(netns, ifname, ip, n6.subnet.prefix_len(), gw)?;
        if gw.is_some() {
            *default_route = false;
        }
        Ok(())
    }

    pub(crate) fn lease6_of(&self, container: &str, network: &str) -> Option<Ipv6Addr> {
        let c = self.db.lock();
        c.query_row(
            "SELECT ip FROM leases_v6 WHERE container = ?1 AND network = ?2",
            params![container, network],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
    }

    /// Releases a container's v6 leases (on one network, or all).
    pub(crate) fn release6(&self, container: &str, network: Option<&str>) {
        let c = self.db.lock();
        let r = match network {
            Some(n) => c.execute(
                "DELETE FROM leases_v6 WHERE container = ?1 AND network = ?2",
                params![container, n],
            ),
            None => c.execute("DELETE FROM leases_v6 WHERE container = ?1", [container]),
        };
        if let Err(e) = r {
            tracing::warn!(container, error = %e, "release IPv6 leases");
        }
    }

    /// At reconcile: v6 leases whose endpoint holds no v4 lease (the container is not
    /// running, or is gone) are what a crash left; they go.
    pub(crate) fn sweep_leases6(&self) {
        let c = self.db.lock();
        if let Err(e) = c.execute(
            "DELETE FROM leases_v6 WHERE NOT EXISTS (SELECT 1 FROM endpoints e \
             WHERE e.container = leases_v6.container AND e.network = leases_v6.network \
             AND e.ip IS NOT NULL)",
            [],
        ) {
            tracing::warn!(error = %e, "sweep IPv6 leases");
        }
    }

    /// At `connect`: whether the new endpoint should carry the container's default v6 route,
    /// which it does when no other network gives the container one (IPv6's default gateway is
    /// chosen apart from IPv4's, as in Docker 28).
    pub(crate) fn needs_default6(&self, container: &str, except: &str) -> bool {
        let nets = self.networks().unwrap_or_default();
        !self
            .endpoints_of(container)
            .unwrap_or_default()
            .iter()
            .filter(|e| e.network != except)
            .any(|e| {
                self.lease6_of(container, &e.network).is_some()
                    && nets.iter().any(|n| n.id == e.network && !n.internal)
            })
    }

    /// `/etc/hosts`: the container's first v6 address with its hostname, as Docker writes it.
    pub(crate) fn hosts6(
        &self,
        id: &str,
        body: &ContainerCreateBody,
        hosts_path: &Path,
        eps: &[Endpoint],
    ) -> Result<()> {
        let Some(ip) = eps
            .iter()
            .find_map(|e| self.lease6_of(&e.container, &e.network))
        else {
            return Ok(());
        };
        let hostname = body
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id[..id.len().min(12)].to_string());
        let mut hosts = std::fs::read_to_string(hosts_path).unwrap_or_default();
        let line = format!("{ip}\t{hostname}\n");
        if !hosts.contains(&line) {
            hosts.push_str(&line);
            std::fs::write(hosts_path, hosts).map_err(Error::io("write", hosts_path))?;
        }
        Ok(())
    }

    /// The bridge's v6 gateway, for `BridgeSpec`.
    pub(crate) fn gateway6_of(&self, n: &NetRecord) -> Option<(Ipv6Addr, u8)> {
        self.net6(&n.id)
            .map(|n6| (n6.gateway, n6.subnet.prefix_len()))
    }

    /// Whether any network has IPv6: the host then forwards IPv6.
    pub(crate) fn any_net6(&self) -> bool {
        self.nets6().is_ok_and(|v| !v.is_empty())
    }

    /// Inspect of a network: `EnableIPv6` and the v6 `IPAM.Config` entry.
    pub(crate) fn network_json6(&self, n: &NetRecord, v: &mut Value) {
        let Some(n6) = self.net6(&n.id) else {
            return;
        };
        v["EnableIPv6"] = json!(true);
        let mut cfg = json!({"Subnet": n6.subnet.to_string(), "Gateway": n6.gateway.to_string()});
        if let Some(r) = n6.ip_range {
            cfg["IPRange"] = json!(r.to_string());
        }
        if let Some(a) = v.pointer_mut("/IPAM/Config").and_then(|c| c.as_array_mut()) {
            a.push(cfg);
        }
        if let Some(cs) = v.get_mut("Containers").and_then(|c| c.as_object_mut()) {
            for (id, c) in cs.iter_mut() {
                if let Some(ip) = self.lease6_of(id, &n.id) {
                    c["IPv6Address"] = json!(format!("{ip}/{}", n6.subnet.prefix_len()));
                }
            }
        }
    }

    /// A container's endpoint in inspect: `GlobalIPv6Address`, its prefix and `IPv6Gateway`.
    pub(crate) fn endpoint_json6(&self, e: &Endpoint, n: &NetRecord, v: &mut Value) {
        let (mut ip, mut plen, mut gw) = (String::new(), 0, String::new());
        if let (Some(a), Some(n6)) = (self.lease6_of(&e.container, &e.network), self.net6(&n.id)) {
            ip = a.to_string();
            plen = n6.subnet.prefix_len();
            if !n.internal {
                gw = n6.gateway.to_string();
            }
        }
        v["GlobalIPv6Address"] = json!(ip);
        v["GlobalIPv6PrefixLen"] = json!(plen);
        v["IPv6Gateway"] = json!(gw);
    }
}

/// `net.ipv6.conf.all.forwarding=1`: NAT66 and published ports route between interfaces.
/// (A host that takes its own v6 address from router advertisements stops accepting them
/// once it forwards, unless accept_ra=2: Docker does the same; docs/networking.md says so.)
pub(crate) fn enable_forwarding6() {
    let key = "net/ipv6/conf/all/forwarding";
    if std::fs::read_to_string(format!("/proc/sys/{key}")).is_ok_and(|v| v.trim() != "1") {
        match berth_net::sysctl(key, "1") {
            Ok(()) => tracing::info!("enabled net.ipv6.conf.all.forwarding for IPv6 networks"),
            Err(e) => tracing::warn!(error = %e, "enable net.ipv6.conf.all.forwarding"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_configs_and_overlaps() {
        let c = |s: &str| IpamConfig {
            subnet: Some(s.into()),
            ..Default::default()
        };
        assert!(is_v6_config(&c("fd00:1::/64")));
        assert!(!is_v6_config(&c("10.0.0.0/24")));
        assert!(is_v6_config(&IpamConfig {
            gateway: Some("fd00::1".into()),
            ..Default::default()
        }));
        let a: Ipv6Net = "fd00:1::/64".parse().unwrap();
        let b: Ipv6Net = "fd00:1::/80".parse().unwrap();
        let d: Ipv6Net = "fd00:2::/64".parse().unwrap();
        assert!(overlaps6(&a, &b) && overlaps6(&b, &a));
        assert!(!overlaps6(&a, &d));
        assert_eq!(v6_of(&a, 1), "fd00:1::1".parse::<Ipv6Addr>().unwrap());
    }
}
