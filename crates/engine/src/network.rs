//! Networks: the `networks` and `endpoints` tables (IPAM: a lease is an endpoint's ip, unique
//! per network), the plumbing of a container's named network namespace before its process
//! runs, published ports, and the one nftables table rebuilt from the database. The kernel
//! work is berth-net's; this module decides what should exist and makes it so, also after a
//! crash (`net_reconcile`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerCreateBody, EndpointSettings, NetworkCreateRequest};
use ipnet::Ipv4Net;
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{now, Engine};

mod dns;
pub(crate) mod dnsopts;
pub(crate) mod ipam6;
mod lease;
mod netstats;
pub(crate) mod pool;
pub mod rate;
use crate::error::{Error, Result};

/// Docker's name for the default network.
pub const DEFAULT_NETWORK: &str = "bridge";

/// One network's row.
#[derive(Debug, Clone)]
pub struct NetRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
    pub internal: bool,
    pub mtu: u32,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
}

/// One (container, network) attachment; `ip` is its lease while the container runs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub container: String,
    pub network: String,
    pub seq: i64,
    pub config: EndpointSettings,
    pub ip: Option<Ipv4Addr>,
    pub ifname: String,
    pub ports: Vec<Published>,
}

/// A published port as chosen at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

/// A `-p` request, validated.
#[derive(Debug, Clone)]
struct PortRequest {
    proto: String,
    container_port: u16,
    host_ip: Option<Ipv4Addr>,
    /// (first, last); (0, 0): any free port.
    host_ports: (u16, u16),
}

const NET_COLS: &str =
    "id, name, created, bridge, subnet, gateway, ip_range, internal, mtu, labels, options";

fn net_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetRecord> {
    let subnet: String = r.get(4)?;
    let gw: String = r.get(5)?;
    let range: String = r.get(6)?;
    let labels: String = r.get(9)?;
    let options: String = r.get(10)?;
    Ok(NetRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        created: r.get(2)?,
        bridge: r.get(3)?,
        subnet: subnet
            .parse()
            .unwrap_or_else(|_| Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default()),
        gateway: gw.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        ip_range: range.parse().ok(),
        internal: r.get::<_, i64>(7)? != 0,
        mtu: r.get::<_, i64>(8)?.max(0) as u32,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
    })
}

const EP_COLS: &str = "container, network, seq, config, ip, ifname, ports";

fn ep_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Endpoint> {
    let config: String = r.get(3)?;
    let ip: Option<String> = r.get(4)?;
    let ports: String = r.get(6)?;
    Ok(Endpoint {
        container: r.get(0)?,
        network: r.get(1)?,
        seq: r.get(2)?,
        config: serde_json::from_str(&config).unwrap_or_default(),
        ip: ip.and_then(|s| s.parse().ok()),
        ifname: r.get(5)?,
        ports: serde_json::from_str(&ports).unwrap_or_default(),
    })
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; n.div_ceil(2)];
    rand::thread_rng().fill_bytes(&mut b);
    let mut s = hex::encode(b);
    s.truncate(n);
    s
}

/// The host's IPv4 routes (destination networks), default route excluded.
fn host_routes() -> Vec<Ipv4Net> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut out = Vec::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(d), Ok(m)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16)) else {
            continue;
        };
        // the kernel prints the network-order bytes as a host-order (little-endian) number
        let dst = Ipv4Addr::from(d.to_le_bytes());
        let mask = Ipv4Addr::from(m.to_le_bytes());
        if let Ok(n) = ipnet::Ipv4Net::with_netmask(dst, mask) {
            if n.prefix_len() > 0 {
                out.push(n);
            }
        }
    }
    out
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Host port ranges: `8080`, `8000-8010`, empty.
fn parse_host_ports(s: &str) -> std::result::Result<(u16, u16), String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok((0, 0));
    }
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| format!("invalid host port {s:?}"))?;
    let b: u16 = b.parse().map_err(|_| format!("invalid host port {s:?}"))?;
    if b < a || (a == 0 && b != 0) {
        return Err(format!("invalid host port range {s:?}"));
    }
    Ok((a, b))
}

/// `80/tcp`, `53/udp`, `80` (tcp).
fn parse_port_key(k: &str) -> std::result::Result<(u16, String), String> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol {proto:?} in port {k:?} (tcp, udp, sctp)"
        ));
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok((n, proto)),
        _ => Err(format!("invalid container port {k:?}")),
    }
}

/// The published ports a create body asks for (`-p`, and `-P` over the exposed ports).
fn port_requests(
    body: &ContainerCreateBody,
    image_exposed: &[String],
) -> std::result::Result<Vec<PortRequest>, String> {
    let hc = body.host_config.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut keys: Vec<(&String, &Option<Vec<bollard_stubs::models::PortBinding>>)> =
        hc.port_bindings.iter().flatten().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (k, binds) in keys {
        let (cp, proto) = parse_port_key(k)?;
        seen.insert((cp, proto.clone()));
        let binds = binds.clone().unwrap_or_default();
        let binds = if binds.is_empty() {
            vec![Default::default()]
        } else {
            binds
        };
        for b in binds {
            let host_ip = match b.host_ip.as_deref().map(str::trim) {
                None | Some("") | Some("0.0.0.0") => None,
                // v6 wildcard binds come with the v4 one from the docker CLI: the v4 one serves
                Some("::") => continue,
                Some(s) => Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| format!("invalid host IP {s:?} for port {k:?} (IPv4 only)"))?,
                ),
            };
            let host_ports = parse_host_ports(b.host_port.as_deref().unwrap_or(""))?;
            out.push(PortRequest {
                proto: proto.clone(),
                container_port: cp,
                host_ip,
                host_ports,
            });
        }
    }
    if hc.publish_all_ports == Some(true) {
        let mut exposed: Vec<String> = image_exposed.to_vec();
        exposed.extend(body.exposed_ports.iter().flatten().cloned());
        exposed.sort();
        exposed.dedup();
        for k in exposed {
            let (cp, proto) = parse_port_key(&k)?;
            if seen.insert((cp, proto.clone())) {
                out.push(PortRequest {
                    proto,
                    container_port: cp,
                    host_ip: None,
                    host_ports: (0, 0),
                });
            }
        }
    }
    Ok(out)
}

/// Whether the host port can be bound now (nothing else listens on it).
fn bindable(proto: &str, ip: Option<Ipv4Addr>, port: u16) -> bool {
    let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    match proto {
        "udp" => UdpSocket::bind(addr).is_ok(),
        "sctp" => berth_net::sctp::bindable(*addr.ip(), port).unwrap_or(false),
        _ => TcpListener::bind(addr).is_ok(),
    }
}

/// A free port from the ephemeral range the kernel would pick, tested by binding port 0.
fn free_port(proto: &str, ip: Option<Ipv4Addr>) -> Option<u16> {
    let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    match proto {
        "udp" => UdpSocket::bind(addr)
            .ok()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port()),
        "sctp" => berth_net::sctp::free_port(*addr.ip()).ok().flatten(),
        _ => TcpListener::bind(addr)
            .ok()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port()),
    }
}

/// The spec builder knows `bridge`/`none`/`host`/`container:`: a user network is a namespace
/// of its own like `bridge`, whose path is set after the build.
pub(crate) fn spec_body(body: &ContainerCreateBody) -> ContainerCreateBody {
    let mut b = body.clone();
    if let Some(h) = b.host_config.as_mut() {
        let m = h.network_mode.clone().unwrap_or_default();
        if !matches!(m.as_str(), "" | "none" | "host" | "default" | "bridge")
            && !m.starts_with("container:")
        {
            h.network_mode = Some("bridge".into());
        }
    }
    b
}

/// Points the spec's network namespace at the bound namespace file.
pub(crate) fn set_netns(spec: &mut oci_spec::runtime::Spec, path: &Path) -> Result<()> {
    // on the typed spec: a round trip through a JSON value cost two conversions of the whole
    // document (the seccomp rules above all) on every start
    if let Some(list) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
    {
        for ns in list.iter_mut() {
            if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network {
                ns.set_path(Some(path.to_path_buf()));
            }
        }
    }
    Ok(())
}

impl Engine {
    /// The nft table and default bridge of this daemon: `berth`/`berth0` for the standard data
    /// root; others (test daemons, a second instance) get names of their own so that they
    /// neither share addresses nor rebuild each other's rules.
    fn net_names(&self) -> (String, String) {
        instance_names(&self.cfg.data_root)
    }

    /// Tables (and their bridges) of other berth instances whose data root is gone: a test
    /// daemon removed with its temporary root leaves them, nothing else would remove them.
    fn sweep_dead_instances(&self) {
        let (mine, _) = self.net_names();
        for (table, root) in berth_net::nft::berth_tables() {
            if table == mine || table == "berth" {
                continue;
            }
            let Some(root) = root else { continue };
            if Path::new(&root).join("engine.db").exists() {
                continue;
            }
            let bridges = berth_net::nft::bridges_in(&table);
            tracing::info!(%table, %root, "remove the network leftovers of a berth whose data root is gone");
            let _ = berth_net::nft::delete_table(&table);
            for b in bridges {
                let _ = berth_net::link::delete_link(&b);
            }
        }
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("netns").join(id)
    }

    pub fn networks(&self) -> Result<Vec<NetRecord>> {
        let c = self.db.lock();
        let mut st = c
            .prepare(&format!("SELECT {NET_COLS} FROM networks ORDER BY created"))
            .map_err(Error::db("list networks"))?;
        let rows = st
            .query_map([], net_row)
            .map_err(Error::db("list networks"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("list networks"))?;
        Ok(rows)
    }

    /// By full id, name, or unique id prefix.
    pub fn find_network(&self, s: &str) -> Result<NetRecord> {
        let all = self.networks()?;
        if let Some(n) = all.iter().find(|n| n.id == s || n.name == s) {
            return Ok(n.clone());
        }
        let m: Vec<&NetRecord> = all.iter().filter(|n| n.id.starts_with(s)).collect();
        match m.as_slice() {
            [one] if !s.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(Error::NoSuchNetwork(s.to_string())),
            _ => Err(bad(format!(
                "network {s} is ambiguous ({} matches)",
                m.len()
            ))),
        }
    }

    fn endpoints_where(&self, clause: &str, arg: &str) -> Result<Vec<Endpoint>> {
        let c = self.db.lock();
        // cached: a start, an exit and a removal each list a container's endpoints
        let mut st = c
            .prepare_cached(&format!(
                "SELECT {EP_COLS} FROM endpoints WHERE {clause} ORDER BY seq"
            ))
            .map_err(Error::db("list endpoints"))?;
        let rows = st
            .query_map([arg], ep_row)
            .map_err(Error::db("list endpoints"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("list endpoints"))?;
        Ok(rows)
    }

    pub fn endpoints_of(&self, container: &str) -> Result<Vec<Endpoint>> {
        self.endpoints_where("container = ?1", container)
    }

    fn endpoints_on(&self, network: &str) -> Result<Vec<Endpoint>> {
        self.endpoints_where("network = ?1", network)
    }

    fn all_endpoints(&self) -> Result<Vec<Endpoint>> {
        self.endpoints_where("?1 = ?1", "")
    }

    /// Picks a /16 (or /24 for user networks) that overlaps no host route and no network.
    fn free_subnet(&self, prefix: u8) -> Result<Ipv4Net> {
        let mut taken: Vec<Ipv4Net> = host_routes();
        taken.extend(self.networks()?.into_iter().map(|n| n.subnet));
        let mut cands: Vec<Ipv4Net> = Vec::new();
        if prefix == 16 {
            for b in (30..=31).chain(17..=29) {
                cands.extend(Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok());
            }
            for b in 200..=250 {
                cands.extend(Ipv4Net::new(Ipv4Addr::new(10, b, 0, 0), 16).ok());
            }
        } else {
            for b in 0..=255u8 {
                cands.extend(Ipv4Net::new(Ipv4Addr::new(10, 199, b, 0), 24).ok());
            }
            for a in 17..=31u8 {
                for b in 0..=255u8 {
                    cands.extend(Ipv4Net::new(Ipv4Addr::new(172, a, b, 0), 24).ok());
                }
            }
        }
        cands
            .into_iter()
            .find(|c| !taken.iter().any(|t| overlaps(c, t)))
            .ok_or_else(|| Error::Conflict("no free address pool for a new network".into()))
    }

    /// The default `bridge` network, made on first use.
    fn ensure_default_network(&self) -> Result<NetRecord> {
        if let Ok(n) = self.find_network(DEFAULT_NETWORK) {
            return Ok(n);
        }
        let (_, br) = self.net_names();
        let subnet = self.free_subnet(16)?;
        let gw = subnet.hosts().next().unwrap_or(subnet.network());
        let rec = NetRecord {
            id: random_hex(64),
            name: DEFAULT_NETWORK.into(),
            created: now(),
            bridge: br,
            subnet,
            gateway: gw,
            ip_range: None,
            internal: false,
            mtu: 0,
            labels: HashMap::new(),
            options: HashMap::new(),
        };
        match self.insert_network(&rec) {
            Ok(()) => Ok(rec),
            // a concurrent create won
            Err(_) => self.find_network(DEFAULT_NETWORK),
        }
    }

    fn insert_network(&self, n: &NetRecord) -> Result<()> {
        let c = self.db.lock();
        c.execute(
            &format!(
                "INSERT INTO networks ({NET_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"
            ),
            params![
                n.id,
                n.name,
                n.created,
                n.bridge,
                n.subnet.to_string(),
                n.gateway.to_string(),
                n.ip_range.map(|r| r.to_string()).unwrap_or_default(),
                n.internal as i64,
                n.mtu as i64,
                serde_json::to_string(&n.labels).unwrap_or_default(),
                serde_json::to_string(&n.options).unwrap_or_default(),
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::Conflict(format!("network with name {} already exists", n.name))
            }
            e => Error::db("insert network")(e),
        })?;
        Ok(())
    }

    /// The bridge of a network, made or adopted once per daemon process: a start then costs
    /// no netlink round trips for it (a bridge deleted behind berth's back is made again by
    /// the next daemon start, or by a retry of the failed attach).
    fn ensure_bridge_once(&self, n: &NetRecord) -> Result<()> {
        static DONE: std::sync::OnceLock<std::sync::Mutex<HashSet<String>>> =
            std::sync::OnceLock::new();
        let done = DONE.get_or_init(Default::default);
        let key = format!("{}:{}", n.bridge, n.id);
        if done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        berth_net::link::ensure_bridge(&self.bridge_of(n))?;
        done.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        Ok(())
    }

    fn bridge_of(&self, n: &NetRecord) -> berth_net::BridgeSpec {
        berth_net::BridgeSpec {
            name: n.bridge.clone(),
            gateway: n.gateway,
            prefix: n.subnet.prefix_len(),
            mtu: (n.mtu > 0).then_some(n.mtu),
            gateway6: self.gateway6_of(n),
        }
    }

    /// Rebuilds this daemon's nft table from the database, in one transaction.
    fn apply_firewall(&self) -> Result<()> {
        let (table, _) = self.net_names();
        let nets = self.networks()?;
        let by_id: HashMap<&str, &NetRecord> = nets.iter().map(|n| (n.id.as_str(), n)).collect();
        let mut st = berth_net::FirewallState::default();
        for n in &nets {
            st.networks.push(berth_net::NetRules {
                bridge: n.bridge.clone(),
                subnet: n.subnet.to_string(),
                internal: n.internal,
                subnet6: self.net6(&n.id).map(|n6| n6.subnet.to_string()),
            });
        }
        for e in self.all_endpoints()? {
            let (Some(ip), Some(_)) = (e.ip, by_id.get(e.network.as_str())) else {
                continue;
            };
            for p in &e.ports {
                st.ports.push(berth_net::PortRule {
                    proto: p.proto.clone(),
                    host_ip: p.host_ip.parse().ok(),
                    host_port: p.host_port,
                    container_ip: ip,
                    container_port: p.container_port,
                    container_ip6: self.lease6_of(&e.container, &e.network),
                });
            }
        }
        st.comment = self.cfg.data_root.display().to_string();
        berth_net::nft::apply(&table, &st)?;
        Ok(())
    }

    /// `POST /networks/create`.
    pub fn network_create(&self, req: NetworkCreateRequest) -> Result<(String, String)> {
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(bad("network name is empty"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(bad(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if matches!(name.as_str(), "none" | "host" | "default") {
            return Err(Error::Conflict(format!(
                "{name} is a pre-defined network and cannot be created"
            )));
        }
        match req.driver.as_deref() {
            None | Some("") | Some("bridge") => {}
            Some(d) => {
                return Err(bad(format!(
                    "network driver {d:?} is not supported (bridge)"
                )))
            }
        }
        if req.enable_ipv4 == Some(false) {
            return Err(bad(
                "IPv6-only networks (EnableIPv4 false) are not supported",
            ));
        }
        if self.find_network(&name).is_ok_and(|n| n.name == name) {
            return Err(Error::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let opts = req.options.clone().unwrap_or_default();
        let mtu = match opts.get("com.docker.network.driver.mtu") {
            Some(v) => match v.parse::<u32>() {
                Ok(m) if (68..=65535).contains(&m) => m,
                _ => return Err(bad(format!("invalid MTU {v:?} (68-65535)"))),
            },
            None => 0,
        };
        let id = random_hex(64);
        let bridge = match opts.get("com.docker.network.bridge.name") {
            Some(b) => {
                if b.is_empty()
                    || b.len() > 15
                    || !b
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return Err(bad(format!(
                        "invalid bridge name {b:?} (at most 15 of [a-zA-Z0-9_.-])"
                    )));
                }
                if berth_net::link::link_exists(b)? {
                    return Err(Error::Conflict(format!(
                        "bridge name {b} is in use by another interface"
                    )));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let cfgs = req
            .ipam
            .as_ref()
            .and_then(|i| i.config.clone())
            .unwrap_or_default();
        if let Some(d) = req.ipam.as_ref().and_then(|i| i.driver.as_deref()) {
            if !d.is_empty() && d != "default" {
                return Err(bad(format!("IPAM driver {d:?} is not supported (default)")));
            }
        }
        let (cfgs6, cfgs): (Vec<_>, Vec<_>) = cfgs.into_iter().partition(ipam6::is_v6_config);
        let net6 = self.plan_net6(req.enable_ipv6 == Some(true), &cfgs6)?;
        if cfgs.len() > 1 {
            return Err(bad(
                "one IPAM config (one IPv4 subnet) per network is supported",
            ));
        }
        let cfg = cfgs.into_iter().next().unwrap_or_default();
        let subnet = match cfg.subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let n: Ipv4Net = s
                    .parse()
                    .map_err(|_| bad(format!("invalid subnet {s:?}")))?;
                if n.trunc() != n {
                    return Err(bad(format!(
                        "invalid subnet {s}: it has host bits set (did you mean {}?)",
                        n.trunc()
                    )));
                }
                if n.prefix_len() > 30 {
                    return Err(bad(format!("subnet {s} is too small")));
                }
                for other in self.networks()? {
                    if overlaps(&n, &other.subnet) {
                        return Err(Error::Conflict(format!(
                            "invalid pool request: Pool overlaps with other one on this address space ({s} overlaps {} of network {})",
                            other.subnet, other.name
                        )));
                    }
                }
                for r in host_routes() {
                    if overlaps(&n, &r) {
                        return Err(Error::Conflict(format!(
                            "subnet {s} overlaps the host route {r}"
                        )));
                    }
                }
                n
            }
            None => {
                if cfg.gateway.is_some() || cfg.ip_range.is_some() {
                    return Err(bad("a gateway or an IP range needs a subnet"));
                }
                self.free_subnet(24)?
            }
        };
        let gateway = match cfg.gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(g) => {
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| bad(format!("invalid gateway {g:?}")))?;
                if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() {
                    return Err(bad(format!(
                        "gateway {g} is not a host address of subnet {subnet}"
                    )));
                }
                g
            }
            None => subnet.hosts().next().unwrap_or(subnet.network()),
        };
        let ip_range = match cfg.ip_range.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let r: Ipv4Net = r
                    .parse()
                    .map_err(|_| bad(format!("invalid IP range {r:?}")))?;
                if !subnet.contains(&r) {
                    return Err(bad(format!("IP range {r} is not inside subnet {subnet}")));
                }
                Some(r.trunc())
            }
            None => None,
        };
        let rec = NetRecord {
            id: id.clone(),
            name,
            created: now(),
            bridge,
            subnet,
            gateway,
            ip_range,
            internal: req.internal == Some(true),
            mtu,
            labels: req.labels.clone().unwrap_or_default(),
            options: opts,
        };
        self.insert_network(&rec)?;
        let made = self
            .insert_net6(&rec.id, net6.as_ref())
            .and_then(|_| {
                berth_net::link::ensure_bridge(&self.bridge_of(&rec)).map_err(Error::from)
            })
            .and_then(|_| self.apply_firewall());
        if let Err(e) = made {
            // nothing half-made: the row and the bridge go
            let _ = self.delete_network_row(&rec.id);
            let _ = berth_net::link::delete_link(&rec.bridge);
            let _ = self.apply_firewall();
            return Err(e);
        }
        self.start_dns(&rec);
        tracing::info!(network = %rec.id, name = %rec.name, subnet = %rec.subnet, "network created");
        Ok((id, String::new()))
    }

    /// The embedded DNS of a user-defined network (the default `bridge` has none, as
    /// Docker's); a failure to bind is logged: names then do not resolve, addresses still work.
    fn start_dns(&self, n: &NetRecord) {
        if n.name == DEFAULT_NETWORK {
            return;
        }
        if let Err(e) = dns::start(&self.cfg.data_root.join("engine.db"), &n.id, n.gateway) {
            tracing::warn!(network = %n.id, error = %e, "start the embedded DNS");
        }
    }

    fn delete_network_row(&self, id: &str) -> Result<()> {
        let c = self.db.lock();
        c.execute("DELETE FROM networks WHERE id = ?1", [id])
            .map_err(Error::db("delete network"))?;
        drop(c);
        self.delete_net6(id);
        Ok(())
    }

    /// `DELETE /networks/{id}`: refused while containers are attached.
    pub fn network_remove(&self, s: &str) -> Result<()> {
        let n = self.find_network(s)?;
        if n.name == DEFAULT_NETWORK {
            return Err(Error::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let eps = self.endpoints_on(&n.id)?;
        if !eps.is_empty() {
            return Err(Error::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints ({} container(s))",
                n.name,
                n.id,
                eps.len()
            )));
        }
        dns::stop(&n.id);
        self.delete_network_row(&n.id)?;
        berth_net::link::delete_link(&n.bridge)?;
        self.apply_firewall()?;
        tracing::info!(network = %n.id, name = %n.name, "network removed");
        Ok(())
    }

    /// `POST /networks/prune`: user networks without endpoints.
    pub fn network_prune(&self, label_filters: &[String]) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for n in self.networks()? {
            if n.name == DEFAULT_NETWORK || !self.endpoints_on(&n.id)?.is_empty() {
                continue;
            }
            if !label_filters.iter().all(|f| label_matches(&n.labels, f)) {
                continue;
            }
            if self.network_remove(&n.id).is_ok() {
                gone.push(n.name.clone());
            }
        }
        Ok(gone)
    }

    /// The Docker `Network` object (inspect and list).
    pub fn network_json(&self, n: &NetRecord, with_containers: bool) -> Result<Value> {
        let mut containers = serde_json::Map::new();
        if with_containers {
            for e in self.endpoints_on(&n.id)? {
                let Some(ip) = e.ip else { continue };
                let name = self
                    .db
                    .get(&e.container)?
                    .map(|r| r.name)
                    .unwrap_or_default();
                containers.insert(
                    e.container.clone(),
                    json!({
                        "Name": name,
                        "EndpointID": endpoint_id(&e),
                        "MacAddress": berth_net::format_mac(&self.mac_for(&e, ip)),
                        "IPv4Address": format!("{ip}/{}", n.subnet.prefix_len()),
                        "IPv6Address": "",
                    }),
                );
            }
        }
        let mut ipam_cfg =
            json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()});
        if let Some(r) = n.ip_range {
            ipam_cfg["IPRange"] = json!(r.to_string());
        }
        let mut opts = n.options.clone();
        opts.insert("com.docker.network.bridge.name".into(), n.bridge.clone());
        if n.mtu > 0 {
            opts.insert("com.docker.network.driver.mtu".into(), n.mtu.to_string());
        }
        let mut out = json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv4": true,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [ipam_cfg]},
            "Internal": n.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": opts,
            "Labels": n.labels,
        });
        self.network_json6(n, &mut out);
        Ok(out)
    }

    /// `GET /networks` with Docker's filters (name, id, label, driver, type, dangling).
    pub fn network_list(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for n in self.networks()? {
            let ok = filters.iter().all(|(k, vals)| {
                vals.is_empty()
                    || vals.iter().any(|v| match k.as_str() {
                        "name" => n.name.contains(v.as_str()),
                        "id" => n.id.starts_with(v.as_str()),
                        "label" => label_matches(&n.labels, v),
                        "driver" => v == "bridge",
                        "scope" => v == "local",
                        "type" => match v.as_str() {
                            "builtin" => n.name == DEFAULT_NETWORK,
                            "custom" => n.name != DEFAULT_NETWORK,
                            _ => false,
                        },
                        "dangling" => {
                            let empty = self
                                .endpoints_on(&n.id)
                                .map(|e| e.is_empty())
                                .unwrap_or(false);
                            (v == "true" || v == "1") == empty
                        }
                        _ => false,
                    })
            });
            if ok {
                out.push(self.network_json(&n, true)?);
            }
        }
        Ok(out)
    }

    fn mac_for(&self, e: &Endpoint, ip: Ipv4Addr) -> [u8; 6] {
        e.config
            .mac_address
            .as_deref()
            .and_then(berth_net::parse_mac)
            .unwrap_or_else(|| berth_net::mac_of(ip))
    }

    /// Checks an endpoint request against its network (a static address inside the range, a
    /// valid MAC), so that create or connect fails instead of a later start.
    fn check_endpoint(&self, n: &NetRecord, cfg: &EndpointSettings) -> Result<()> {
        if let Some(ip) = cfg
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.as_deref())
            .filter(|s| !s.is_empty())
        {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| bad(format!("invalid IPv4 address {ip:?}")))?;
            let pool = n.ip_range.unwrap_or(n.subnet);
            if n.name == DEFAULT_NETWORK {
                return Err(bad(
                    "user specified IP address is supported on user defined networks only",
                ));
            }
            if !n.subnet.contains(&ip)
                || ip == n.subnet.network()
                || ip == n.subnet.broadcast()
                || ip == n.gateway
            {
                return Err(bad(format!(
                    "invalid address {ip}: it is not a free host address of subnet {} of network {}",
                    n.subnet, n.name
                )));
            }
            if n.ip_range.is_some() && !pool.contains(&ip) {
                // Docker allows a static address outside --ip-range but inside the subnet
                tracing::debug!(network = %n.id, %ip, "static address outside the IP range");
            }
        }
        if let Some(m) = cfg.mac_address.as_deref().filter(|s| !s.is_empty()) {
            if berth_net::parse_mac(m).is_none() {
                return Err(bad(format!("invalid MAC address {m:?}")));
            }
        }
        self.check_endpoint6(n, cfg)?;
        if cfg
            .aliases
            .iter()
            .flatten()
            .any(|a| a.is_empty() || a.len() > 253)
        {
            return Err(bad("invalid network alias"));
        }
        Ok(())
    }

    /// At create: which networks the container joins (its endpoints, not yet leased), with
    /// the request checked. Rewrites an empty network mode to `bridge`, as Docker records it.
    pub(crate) fn net_plan(
        &self,
        body: &mut ContainerCreateBody,
        image_exposed: &[String],
    ) -> Result<Vec<(String, EndpointSettings)>> {
        let hc = body.host_config.get_or_insert_with(Default::default);
        let mode = hc.network_mode.clone().unwrap_or_default();
        let mode = match mode.as_str() {
            "" | "default" => {
                hc.network_mode = Some(DEFAULT_NETWORK.into());
                DEFAULT_NETWORK.to_string()
            }
            m => m.to_string(),
        };
        port_requests(body, image_exposed).map_err(bad)?;
        if mode == "none" || mode == "host" || mode.starts_with("container:") {
            return Ok(Vec::new());
        }
        if mode == DEFAULT_NETWORK {
            self.ensure_default_network()?;
        }
        // a 404 from create makes the docker CLI pull the image: not-found is a bad request here
        let primary = self.find_network(&mode).map_err(|e| match e {
            Error::NoSuchNetwork(n) => bad(format!("network {n} not found")),
            e => e,
        })?;
        let cfgs = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let mut plan: Vec<(String, EndpointSettings)> = Vec::new();
        let mut primary_cfg = EndpointSettings::default();
        let mut others = Vec::new();
        for (k, v) in cfgs {
            // the docker CLI names the default network "default" here
            if k == "default" || k == mode {
                primary_cfg = v;
                continue;
            }
            let n = self.find_network(&k).map_err(|e| match e {
                Error::NoSuchNetwork(n) => bad(format!("network {n} not found")),
                e => e,
            })?;
            if n.id == primary.id {
                primary_cfg = v;
            } else {
                others.push((n, v));
            }
        }
        self.check_endpoint(&primary, &primary_cfg)?;
        plan.push((primary.id.clone(), primary_cfg));
        others.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        for (n, v) in others {
            self.check_endpoint(&n, &v)?;
            plan.push((n.id.clone(), v));
        }
        Ok(plan)
    }

    /// After the container's row exists: its endpoints.
    pub(crate) fn net_commit(&self, id: &str, plan: &[(String, EndpointSettings)]) -> Result<()> {
        for (net, cfg) in plan {
            self.insert_endpoint(id, net, cfg)?;
        }
        Ok(())
    }

    fn insert_endpoint(&self, id: &str, net: &str, cfg: &EndpointSettings) -> Result<()> {
        let c = self.db.lock();
        let seq: i64 = c
            .query_row(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM endpoints WHERE container = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(Error::db("number endpoint"))?;
        if seq >= 16 {
            return Err(bad("a container joins at most 16 networks"));
        }
        c.execute(
            "INSERT INTO endpoints (container, network, seq, config) VALUES (?1, ?2, ?3, ?4)",
            params![id, net, seq, serde_json::to_string(cfg).unwrap_or_default()],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::Conflict(format!(
                    "container {id} is already attached to network {net}"
                ))
            }
            e => Error::db("insert endpoint")(e),
        })?;
        Ok(())
    }

    /// A lease: the requested address if free, else the first free host address of the
    /// network's range. One statement under the connection's lock; UNIQUE(network, ip) is the
    /// last word if another daemon shares the file.
    fn lease(&self, e: &Endpoint, n: &NetRecord) -> Result<Ipv4Addr> {
        let c = self.db.lock();
        lease::take(&c, &lease::V4, e, n, |used| {
            let pool = n.ip_range.unwrap_or(n.subnet);
            pool.hosts().find(|a| {
                n.subnet.contains(a)
                    && *a != n.gateway
                    && *a != n.subnet.network()
                    && *a != n.subnet.broadcast()
                    && !used.contains(a)
            })
        })
    }

    fn set_endpoint_live(&self, e: &Endpoint, ifname: &str, ports: &[Published]) -> Result<()> {
        let c = self.db.lock();
        c.execute(
            "UPDATE endpoints SET ifname = ?1, ports = ?2 WHERE container = ?3 AND network = ?4",
            params![
                ifname,
                serde_json::to_string(ports).unwrap_or_default(),
                e.container,
                e.network
            ],
        )
        .map_err(Error::db("record endpoint"))?;
        Ok(())
    }

    /// Host port choices for a start; each is bind-tested now, and none is one another
    /// container of this daemon publishes.
    fn choose_ports(&self, id: &str, reqs: &[PortRequest]) -> Result<Vec<Published>> {
        let mut taken: HashSet<(String, u16)> = HashSet::new();
        for e in self.all_endpoints()? {
            if e.container != id && e.ip.is_some() {
                for p in e.ports {
                    taken.insert((p.proto.clone(), p.host_port));
                }
            }
        }
        let mut out = Vec::new();
        for r in reqs {
            if r.proto == "sctp" {
                // a kernel without SCTP is said so, not reported as a port in use
                berth_net::sctp::bindable(r.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0)?;
            }
            let ipstr = r
                .host_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "0.0.0.0".into());
            let port = if r.host_ports == (0, 0) {
                let mut got = None;
                for _ in 0..64 {
                    if let Some(p) = free_port(&r.proto, r.host_ip) {
                        if !taken.contains(&(r.proto.clone(), p)) {
                            got = Some(p);
                            break;
                        }
                    }
                }
                got.ok_or_else(|| {
                    Error::Conflict(format!(
                        "no free host port for {}/{}",
                        r.container_port, r.proto
                    ))
                })?
            } else {
                let (a, b) = r.host_ports;
                (a..=b)
                    .find(|p| {
                        !taken.contains(&(r.proto.clone(), *p)) && bindable(&r.proto, r.host_ip, *p)
                    })
                    .ok_or_else(|| {
                        let shown = if a == b { a.to_string() } else { format!("{a}-{b}") };
                        Error::Conflict(format!(
                            "driver failed programming external connectivity: Bind for {ipstr}:{shown} failed: port is already allocated"
                        ))
                    })?
            };
            taken.insert((r.proto.clone(), port));
            out.push(Published {
                proto: r.proto.clone(),
                host_ip: ipstr,
                host_port: port,
                container_port: r.container_port,
            });
        }
        Ok(out)
    }

    /// Before the container's process runs: its namespace, an interface per network, the
    /// published ports and /etc/hosts. None when it has no endpoints (none/host/container:).
    pub(crate) fn net_start(
        &self,
        id: &str,
        body: &ContainerCreateBody,
        image_exposed: &[String],
        hosts_path: &Path,
    ) -> Result<Option<PathBuf>> {
        let eps = self.endpoints_of(id)?;
        if eps.is_empty() {
            return Ok(None);
        }
        let r = self.net_start_inner(id, body, image_exposed, hosts_path, &eps);
        match r {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                self.netpool.refill();
                self.net_stop(id);
                // a failed start leaves nothing behind when it answers
                self.netpool.settle(&self.netns_path(id));
                Err(e)
            }
        }
    }

    fn net_start_inner(
        &self,
        id: &str,
        body: &ContainerCreateBody,
        image_exposed: &[String],
        hosts_path: &Path,
        eps: &[Endpoint],
    ) -> Result<PathBuf> {
        let started = std::time::Instant::now();
        let dir = self.cfg.exec_root.join("netns");
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let path = self.netns_path(id);
        // a previous run's namespace may still be queued for unbinding
        self.netpool.settle(&path);
        let nets = self.networks()?;
        let net_of = |e: &Endpoint| {
            nets.iter()
                .find(|n| n.id == e.network)
                .ok_or_else(|| Error::NoSuchNetwork(e.network.clone()))
        };
        // a prepared namespace, its eth0 waiting, when there is one (a left-over binding at
        // `path` is a stale one: a running container is never started)
        if berth_net::netns::is_bound(&path) {
            berth_net::netns::remove(&path)?;
        }
        let mut pooled = self.netpool.take();
        let from_pool = pooled.is_some();
        match &pooled {
            Some(p) => {
                let bound = berth_net::netns::bind(&p.path, &path);
                self.netpool.unbind_taken(p.path.clone());
                bound?;
            }
            None => berth_net::netns::create(&path)?,
        }
        let ns_us = started.elapsed().as_micros() as u64;
        let reqs = port_requests(body, image_exposed).map_err(bad)?;
        let mut first_ip = None;
        let mut names = Vec::new();
        let mut default6 = true;
        let mut link_us = 0;
        for (i, e) in eps.iter().enumerate() {
            let n = net_of(e)?;
            self.ensure_bridge_once(n)?;
            let ip = self.lease(e, n)?;
            let ifname = format!("eth{i}");
            let (host_if, peer) = veth_names(id, e.seq);
            let attach = berth_net::Attach {
                netns: &path,
                host_if: &host_if,
                peer_tmp: &peer,
                ifname: &ifname,
                bridge: &n.bridge,
                addr: ip,
                prefix: n.subnet.prefix_len(),
                gateway: (i == 0 && !n.internal).then_some(n.gateway),
                mac: self.mac_for(e, ip),
                mtu: (n.mtu > 0).then_some(n.mtu),
            };
            let t = std::time::Instant::now();
            let claimed = match pooled.take() {
                Some(p) if i == 0 => {
                    let c = berth_net::pool::Claim {
                        host_if: &host_if,
                        bridge: &n.bridge,
                        addr: ip,
                        prefix: attach.prefix,
                        gateway: attach.gateway,
                        mac: attach.mac,
                        mtu: attach.mtu,
                    };
                    match self.netpool.with_host(|h| p.claim(h, &c)) {
                        Ok(()) => true,
                        Err(err) => {
                            // the namespace keeps what the claim made; a fresh one replaces it
                            tracing::warn!(container = id, error = %err, "use a pooled netns");
                            berth_net::netns::remove(&path)?;
                            berth_net::netns::create(&path)?;
                            false
                        }
                    }
                }
                _ => false,
            };
            if !claimed && berth_net::link::attach(&attach).is_err() {
                // the bridge may have gone behind berth's back: make it again, once
                berth_net::link::ensure_bridge(&self.bridge_of(n))?;
                berth_net::link::attach(&attach)?;
            }
            self.attach6(e, n, &path, &ifname, &mut default6)?;
            link_us += t.elapsed().as_micros() as u64;
            let ports = if i == 0 && !reqs.is_empty() {
                self.choose_ports(id, &reqs)?
            } else {
                Vec::new()
            };
            self.set_endpoint_live(e, &ifname, &ports)?;
            if i == 0 {
                first_ip = Some(ip);
            }
            names.push(ip);
        }
        if !reqs.is_empty() {
            self.apply_firewall()?;
        }
        if let Some(n) = nets
            .iter()
            .find(|n| n.id == eps[0].network && n.name != DEFAULT_NETWORK)
        {
            // names on a user network come from its embedded DNS, on the gateway address
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let mut conf = format!("nameserver {}\n", n.gateway);
            for l in host.lines() {
                let t = l.trim();
                if t.starts_with("search") || t.starts_with("options") {
                    conf.push_str(t);
                    conf.push('\n');
                }
            }
            let p = hosts_path.with_file_name("resolv.conf");
            let conf = dnsopts::resolv(body, &conf, Some(n.gateway));
            std::fs::write(&p, conf).map_err(Error::io("write", &p))?;
        }
        if let Some(ip) = first_ip {
            let hostname = body
                .hostname
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| id[..12].to_string());
            let mut hosts = std::fs::read_to_string(hosts_path).unwrap_or_default();
            let line = format!("{ip}\t{hostname}\n");
            if !hosts.contains(&line) {
                hosts.push_str(&line);
                std::fs::write(hosts_path, hosts).map_err(Error::io("write", hosts_path))?;
            }
        }
        self.hosts6(id, body, hosts_path, eps)?;
        self.apply_rate(id, body)?;
        self.netpool.refill();
        tracing::debug!(
            container = id,
            addresses = ?names,
            from_pool,
            ns_us,
            link_us,
            us = started.elapsed().as_micros() as u64,
            "network plumbed"
        );
        Ok(path)
    }

    /// `--network none`: a namespace with only lo from the pool, if one is ready, for the
    /// runtime to join; otherwise (None) the runtime makes one as it starts the container.
    pub(crate) fn net_start_none(&self, id: &str, body: &ContainerCreateBody) -> Option<PathBuf> {
        let mode = body
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref());
        if mode != Some("none") {
            return None;
        }
        let path = self.netns_path(id);
        self.netpool.settle(&path);
        if berth_net::netns::is_bound(&path) {
            if let Err(e) = berth_net::netns::remove(&path) {
                tracing::warn!(container = id, error = %e, "remove a stale netns");
                return None;
            }
        }
        let p = self.netpool.take_lo()?;
        let dir = self.cfg.exec_root.join("netns");
        let bound = std::fs::create_dir_all(&dir)
            .map_err(Error::io("create", &dir))
            .and_then(|()| berth_net::netns::bind(&p.path, &path).map_err(Error::from));
        self.netpool.unbind_taken(p.path.clone());
        self.netpool.refill();
        match bound {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(container = id, error = %e, "use a pooled netns");
                None
            }
        }
    }

    /// Whether a running container other than `id` was started in `id`'s network namespace
    /// (`--network container:<id, short id or name>`). Only the rows that use such a mode are
    /// read; on a database error the answer is yes (a veth deleted by hand is merely slower).
    fn netns_joined_by_others(&self, id: &str) -> bool {
        let name = self
            .db
            .get(id)
            .ok()
            .flatten()
            .map(|r| r.name)
            .unwrap_or_default();
        let c = self.db.lock();
        let bodies: rusqlite::Result<Vec<String>> = c
            .prepare_cached(
                "SELECT body FROM containers WHERE id != ?1 AND status IN ('running', 'paused') \
                 AND body LIKE '%\"NetworkMode\":\"container:%'",
            )
            .and_then(|mut st| st.query_map([id], |r| r.get(0))?.collect());
        let Ok(bodies) = bodies else {
            return true;
        };
        bodies.iter().any(|b| {
            serde_json::from_str::<ContainerCreateBody>(b)
                .ok()
                .and_then(|b| b.host_config?.network_mode)
                .and_then(|m| m.strip_prefix("container:").map(str::to_string))
                .is_some_and(|t| t == name || (!t.is_empty() && id.starts_with(&t)))
        })
    }

    /// When the container's process is gone: leases released, veths and the namespace
    /// removed, its port rules dropped. Idempotent; failures are logged, not returned, since
    /// nothing can be retried by the caller and reconcile sweeps what remains.
    pub(crate) fn net_stop(&self, id: &str) {
        let eps = match self.endpoints_of(id) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(container = id, error = %e, "list endpoints to release");
                return;
            }
        };
        let had_ports = eps.iter().any(|e| !e.ports.is_empty());
        let path = self.netns_path(id);
        // Unbinding the namespace lets the kernel destroy it, with the veth ends inside and
        // so their host peers, in its cleanup work; deleting them here cost 20-60 ms each.
        // Only a namespace that is not bound any more (a crash) needs its veths deleted.
        let bound = berth_net::netns::is_bound(&path);
        // (a second call, at removal after the exit, finds the leases released and the
        // namespace already unbound: its veths are the kernel's to remove by then)
        let live = eps.iter().any(|e| e.ip.is_some());
        // a namespace another container joined (`--network container:<this>`) outlives this
        // run: its veths, whose addresses are released now, must go by hand
        if live && (!bound || self.netns_joined_by_others(id)) {
            for e in &eps {
                let (host_if, peer) = veth_names(id, e.seq);
                for l in [&host_if, &peer] {
                    if let Err(err) = berth_net::link::delete_link(l) {
                        tracing::warn!(container = id, link = %l, error = %err, "delete veth");
                    }
                }
            }
        }
        if !eps.is_empty() {
            self.release6(id, None);
        }
        if live {
            let c = self.db.lock();
            if let Err(e) = c.execute(
                "UPDATE endpoints SET ip = NULL, ports = '[]', ifname = '' WHERE container = ?1",
                [id],
            ) {
                tracing::warn!(container = id, error = %e, "release leases");
            }
        }
        if bound {
            self.netpool.unbind_later(path);
        } else if let Err(e) = berth_net::netns::remove(&path) {
            tracing::warn!(container = id, error = %e, "remove netns");
        }
        if had_ports {
            if let Err(e) = self.apply_firewall() {
                tracing::warn!(container = id, error = %e, "drop port rules");
            }
        }
    }

    /// When the container is removed: its endpoints go with it. `settle`: its namespace is
    /// gone when this returns; otherwise (a `--rm` container's removal right after its exit,
    /// whose exit queued the unbinding) the network worker finishes it: the unmount waits
    /// for an RCU grace period (~1.7 ms of every `run --rm` here, the worker being at it
    /// when the removal came), and an ID is never bound again.
    pub(crate) fn net_remove(&self, id: &str, settle: bool) {
        self.net_stop(id);
        let path = self.netns_path(id);
        if settle {
            // (the exit queued its unbinding; the worker has usually done it by now)
            self.netpool.settle(&path);
            // and whatever bound it again since (nothing should: a binding found is logged)
            if berth_net::netns::is_bound(&path) {
                tracing::warn!(
                    container = id,
                    "a removed container's netns was still bound"
                );
                if let Err(e) = berth_net::netns::remove(&path) {
                    tracing::warn!(container = id, error = %e, "remove netns");
                }
            }
        }
        let c = self.db.lock();
        if let Err(e) = c.execute("DELETE FROM endpoints WHERE container = ?1", [id]) {
            tracing::warn!(container = id, error = %e, "delete endpoints");
        }
    }

    /// After a (re)start of the daemon, with the containers that still run: bridges up,
    /// leases of the others released, stray namespaces unbound, the table rebuilt.
    pub fn net_reconcile(&self, live: &[String]) -> Result<()> {
        let live: HashSet<&str> = live.iter().map(String::as_str).collect();
        if let Err(e) = self.ensure_default_network() {
            tracing::warn!(error = %e, "default network");
        }
        // outbound NAT and published ports route between interfaces: the host must forward
        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() != "1") {
            match berth_net::sysctl("net/ipv4/ip_forward", "1") {
                Ok(()) => tracing::info!("enabled net.ipv4.ip_forward for container networks"),
                Err(e) => tracing::warn!(error = %e, "enable net.ipv4.ip_forward"),
            }
        }
        if self.any_net6() {
            ipam6::enable_forwarding6();
        }
        for n in self.networks()? {
            if let Err(e) = berth_net::link::ensure_bridge(&self.bridge_of(&n)) {
                tracing::warn!(network = %n.id, error = %e, "bring up bridge");
            }
            self.start_dns(&n);
        }
        let mut seen = HashSet::new();
        for e in self.all_endpoints()? {
            if !live.contains(e.container.as_str()) && seen.insert(e.container.clone()) {
                let gone = self.db.get(&e.container)?.is_none();
                if gone {
                    self.net_remove(&e.container, true);
                } else {
                    self.net_stop(&e.container);
                }
            }
        }
        let dir = self.cfg.exec_root.join("netns");
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for f in rd.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if !live.contains(name.as_str()) {
                    tracing::info!(container = %name, "unbind a stray network namespace");
                    let _ = berth_net::netns::remove(&f.path());
                }
            }
        }
        self.sweep_leases6();
        self.sweep_dead_instances();
        self.netpool.start(self.net_names().1);
        self.apply_firewall()
    }

    /// `POST /networks/{id}/connect`. A running container gets its interface now; a stopped
    /// one at its next start.
    pub fn network_connect(&self, net: &str, container: &str, cfg: EndpointSettings) -> Result<()> {
        let n = self.find_network(net)?;
        let r = self.db.find(container)?;
        // against a concurrent start, stop or remove of the same container
        let lock = self.lock_of(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.db.find(&r.id)?;
        let mode = body_mode(&r.body);
        if mode == "none" || mode == "host" || mode.starts_with("container:") {
            return Err(Error::Conflict(format!(
                "container {} is in network mode {mode}: it cannot join network {}",
                r.name, n.name
            )));
        }
        self.check_endpoint(&n, &cfg)?;
        self.insert_endpoint(&r.id, &n.id, &cfg)?;
        if r.status == "running" || r.status == "paused" {
            let path = self.netns_path(&r.id);
            let plumb = || -> Result<()> {
                let e = self
                    .endpoints_of(&r.id)?
                    .into_iter()
                    .find(|e| e.network == n.id)
                    .ok_or_else(|| Error::NoSuchNetwork(n.id.clone()))?;
                berth_net::link::ensure_bridge(&self.bridge_of(&n))?;
                let ip = self.lease(&e, &n)?;
                let idx = self
                    .endpoints_of(&r.id)?
                    .iter()
                    .filter(|x| x.ip.is_some())
                    .count()
                    - 1;
                let ifname = format!("eth{idx}");
                let (host_if, peer) = veth_names(&r.id, e.seq);
                berth_net::link::attach(&berth_net::Attach {
                    netns: &path,
                    host_if: &host_if,
                    peer_tmp: &peer,
                    ifname: &ifname,
                    bridge: &n.bridge,
                    addr: ip,
                    prefix: n.subnet.prefix_len(),
                    gateway: None,
                    mac: self.mac_for(&e, ip),
                    mtu: (n.mtu > 0).then_some(n.mtu),
                })?;
                self.attach6(
                    &e,
                    &n,
                    &path,
                    &ifname,
                    &mut self.needs_default6(&r.id, &n.id),
                )?;
                self.set_endpoint_live(&e, &ifname, &[])
            };
            if let Err(e) = plumb() {
                self.release6(&r.id, Some(&n.id));
                let c = self.db.lock();
                let _ = c.execute(
                    "DELETE FROM endpoints WHERE container = ?1 AND network = ?2",
                    params![r.id, n.id],
                );
                return Err(e);
            }
            if let Ok(b) = serde_json::from_str::<ContainerCreateBody>(&r.body) {
                self.apply_rate(&r.id, &b)?;
            }
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub fn network_disconnect(&self, net: &str, container: &str) -> Result<()> {
        let n = self.find_network(net)?;
        let r = self.db.find(container)?;
        let lock = self.lock_of(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let e = self
            .endpoints_of(&r.id)?
            .into_iter()
            .find(|e| e.network == n.id)
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "container {} is not connected to network {}",
                    r.name, n.name
                ))
            })?;
        if e.ip.is_some() {
            let (host_if, _) = veth_names(&r.id, e.seq);
            berth_net::link::detach(&self.netns_path(&r.id), &e.ifname, &host_if)?;
        }
        self.release6(&r.id, Some(&n.id));
        {
            let c = self.db.lock();
            c.execute(
                "DELETE FROM endpoints WHERE container = ?1 AND network = ?2",
                params![r.id, n.id],
            )
            .map_err(Error::db("delete endpoint"))?;
        }
        if !e.ports.is_empty() {
            self.apply_firewall()?;
        }
        Ok(())
    }

    /// `NetworkSettings` of inspect.
    pub(crate) fn net_settings(&self, id: &str) -> Value {
        let eps = self.endpoints_of(id).unwrap_or_default();
        let nets = self.networks().unwrap_or_default();
        let mut networks = serde_json::Map::new();
        let mut ports: BTreeMap<String, Value> = BTreeMap::new();
        let mut top = json!({});
        for (i, e) in eps.iter().enumerate() {
            let Some(n) = nets.iter().find(|n| n.id == e.network) else {
                continue;
            };
            let (ip, gw, plen, mac) = match e.ip {
                Some(ip) => (
                    ip.to_string(),
                    if n.internal {
                        String::new()
                    } else {
                        n.gateway.to_string()
                    },
                    n.subnet.prefix_len() as i64,
                    berth_net::format_mac(&self.mac_for(e, ip)),
                ),
                None => (String::new(), String::new(), 0, String::new()),
            };
            let mut v = serde_json::to_value(&e.config).unwrap_or_else(|_| json!({}));
            v["NetworkID"] = json!(n.id);
            v["EndpointID"] = json!(if e.ip.is_some() {
                endpoint_id(e)
            } else {
                String::new()
            });
            v["IPAddress"] = json!(ip);
            v["Gateway"] = json!(gw);
            v["IPPrefixLen"] = json!(plen);
            v["MacAddress"] = json!(mac);
            self.endpoint_json6(e, n, &mut v);
            let mut dns = vec![id[..12].to_string()];
            dns.extend(e.config.aliases.iter().flatten().cloned());
            v["DNSNames"] = json!(dns);
            if i == 0 {
                top =
                    json!({"IPAddress": ip, "Gateway": gw, "IPPrefixLen": plen, "MacAddress": mac});
            }
            networks.insert(n.name.clone(), v);
            for p in &e.ports {
                let k = format!("{}/{}", p.container_port, p.proto);
                let entry = ports.entry(k).or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
                }
            }
        }
        let mut out = json!({
            "Networks": networks,
            "Ports": ports,
            "SandboxKey": if eps.iter().any(|e| e.ip.is_some()) { self.netns_path(id).display().to_string() } else { String::new() },
        });
        if let (Some(o), Some(t)) = (out.as_object_mut(), top.as_object()) {
            for (k, v) in t {
                o.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// `Ports` and `NetworkSettings` of a `ps` entry.
    pub(crate) fn net_summary(&self, id: &str) -> (Value, Value) {
        let s = self.net_settings(id);
        let mut ports = Vec::new();
        for e in self.endpoints_of(id).unwrap_or_default() {
            for p in e.ports {
                ports.push(json!({"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto}));
            }
        }
        (json!(ports), json!({"Networks": s["Networks"]}))
    }
}

/// The nft table and default bridge of the daemon on `data_root`: `berth`/`berth0` for the
/// standard root; any other root (test daemons, a second instance) gets names of its own so
/// that instances neither share addresses nor rebuild each other's rules.
pub fn instance_names(data_root: &Path) -> (String, String) {
    if data_root == Path::new("/var/lib/berth") {
        return ("berth".into(), "berth0".into());
    }
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(
        data_root.as_os_str().as_encoded_bytes(),
    ));
    (format!("berth_{}", &h[..6]), format!("berth{}", &h[..6]))
}

fn body_mode(body: &str) -> String {
    serde_json::from_str::<ContainerCreateBody>(body)
        .ok()
        .and_then(|b| b.host_config.and_then(|h| h.network_mode))
        .unwrap_or_default()
}

fn endpoint_id(e: &Endpoint) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!(
        "{}/{}",
        e.container, e.network
    )))
}

/// Host-side names of a container's veth on its `seq`th network: deterministic, so removal
/// and reconcile find them from the database alone.
fn veth_names(id: &str, seq: i64) -> (String, String) {
    let short = &id[..id.len().min(9)];
    (format!("vb{short}{seq:x}"), format!("vp{short}{seq:x}"))
}

fn label_matches(labels: &HashMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

/// The image's `EXPOSE`d ports (`80/tcp`), for `-P`.
pub(crate) fn image_exposed(img: &berth_image::manifest::ImageConfig) -> Vec<String> {
    img.config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_host_ports(""), Ok((0, 0)));
        assert_eq!(parse_host_ports("8080"), Ok((8080, 8080)));
        assert_eq!(parse_host_ports("8000-8010"), Ok((8000, 8010)));
        assert!(parse_host_ports("8010-8000").is_err());
        assert!(parse_host_ports("x").is_err());
        assert!(parse_host_ports("70000").is_err());
        assert_eq!(parse_port_key("80/tcp"), Ok((80, "tcp".to_string())));
        assert_eq!(parse_port_key("53/udp"), Ok((53, "udp".to_string())));
        assert!(parse_port_key("53/icmp").is_err());
        assert!(parse_port_key("0/tcp").is_err());
        assert!(parse_port_key("abc").is_err());
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let (a, b) = veth_names("0123456789abcdef0123", 15);
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
    }
}
