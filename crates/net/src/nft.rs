//! NAT and filtering in berth's own nftables table (`table ip berth`, or one per daemon
//! instance): the whole table is rebuilt from the engine's state in one atomic transaction
//! (`nft -f`), so a restart after a crash converges on the database and other tables are
//! never touched. Established connections keep their NAT through conntrack across a rebuild.
//! Dual-stack networks get the same rules for IPv6 in `table ip6 <name>`, written in the same
//! transaction (and absent while no network has IPv6).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// A network as the firewall sees it.
#[derive(Debug, Clone)]
pub struct NetRules {
    pub bridge: String,
    /// `a.b.c.d/len`.
    pub subnet: String,
    pub internal: bool,
    /// `a:b::/len` of a dual-stack network.
    pub subnet6: Option<String>,
}

/// One published port.
#[derive(Debug, Clone)]
pub struct PortRule {
    /// tcp, udp or sctp.
    pub proto: String,
    /// None: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The container's IPv6 address on a dual-stack network: a wildcard publish is then
    /// reachable on the host's IPv6 addresses too.
    pub container_ip6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Default)]
pub struct FirewallState {
    pub networks: Vec<NetRules>,
    pub ports: Vec<PortRule>,
    /// Written as the table's comment: the owner (a daemon's data root), so that the
    /// leftovers of an instance that is gone can be recognised.
    pub comment: String,
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// What the `ip` and `ip6` tables differ in; their chains have the same shape.
struct Family<'a> {
    /// nft's name of the family, also the keyword of its address matches.
    name: &'static str,
    /// The port chain's DNAT rules.
    ports: Vec<String>,
    /// What a locally sent packet must match before it may be DNATed.
    output_match: &'static str,
    /// The networks that have an address of the family, with their subnet.
    subnets: Vec<(&'a NetRules, &'a str)>,
    /// The loopback sources to masquerade out of a bridge, where DNAT can take them there.
    loopback: Option<&'static str>,
}

/// The ruleset text for table `ip <table>` and its `ip6` twin: deletes and recreates them in
/// the same transaction.
pub fn render(table: &str, st: &FirewallState) -> Result<String> {
    if !valid_ident(table) {
        return Err(Error::Nft(format!("invalid table name {table:?}")));
    }
    for n in &st.networks {
        if !valid_ifname(&n.bridge) {
            return Err(Error::Nft(format!("invalid bridge name {:?}", n.bridge)));
        }
        if n.subnet.parse::<ipnet::Ipv4Net>().is_err() {
            return Err(Error::Nft(format!("invalid subnet {:?}", n.subnet)));
        }
        if let Some(s6) = &n.subnet6 {
            if s6.parse::<ipnet::Ipv6Net>().is_err() {
                return Err(Error::Nft(format!("invalid IPv6 subnet {s6:?}")));
            }
        }
    }
    let mut ports = Vec::new();
    for p in &st.ports {
        let proto = match p.proto.as_str() {
            "tcp" | "udp" | "sctp" => p.proto.as_str(),
            o => return Err(Error::Nft(format!("invalid protocol {o:?}"))),
        };
        let daddr = p
            .host_ip
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        ports.push(format!(
            "{daddr}{proto} dport {} dnat to {}:{}",
            p.host_port, p.container_ip, p.container_port
        ));
    }
    let mut s = String::new();
    write_table(
        &mut s,
        table,
        st,
        &Family {
            name: "ip",
            ports,
            output_match: "",
            subnets: st.networks.iter().map(|n| (n, n.subnet.as_str())).collect(),
            // 127.0.0.1:port DNATed out of the bridge needs a source the container can answer
            loopback: Some("127.0.0.0/8"),
        },
    );
    render6(&mut s, table, st);
    Ok(s)
}

/// The `ip6` twin of the table (names and subnets checked by `render`): NAT66 out of
/// dual-stack networks, published ports on the host's IPv6 addresses, the same forwarding
/// isolation. `::1` is left out of the port DNAT: the kernel has no `route_localnet` for IPv6,
/// a loopback source cannot leave through a bridge, so only a proxy could serve it.
fn render6(s: &mut String, table: &str, st: &FirewallState) {
    let subnets: Vec<_> = st
        .networks
        .iter()
        .filter_map(|n| Some((n, n.subnet6.as_deref()?)))
        .collect();
    if subnets.is_empty() {
        let _ = writeln!(s, "add table ip6 {table}\ndelete table ip6 {table}");
        return;
    }
    let ports = st
        .ports
        .iter()
        .filter(|p| p.host_ip.is_none_or(|ip| ip.is_unspecified()))
        .filter_map(|p| match (p.container_ip6, p.proto.as_str()) {
            (Some(ip6), "tcp" | "udp" | "sctp") => Some(format!(
                "{} dport {} dnat to [{ip6}]:{}",
                p.proto, p.host_port, p.container_port
            )),
            _ => None,
        })
        .collect();
    write_table(
        s,
        table,
        st,
        &Family {
            name: "ip6",
            ports,
            output_match: "ip6 daddr != ::1 ",
            subnets,
            loopback: None,
        },
    );
}

/// Table `<family> <table>`, replaced: port DNAT for local destinations, masquerading out of
/// the networks, and the forwarding isolation between them.
fn write_table(s: &mut String, table: &str, st: &FirewallState, f: &Family<'_>) {
    let fam = f.name;
    // "add" makes the delete valid whether or not the table exists
    let _ = writeln!(
        s,
        "add table {fam} {table}\ndelete table {fam} {table}\ntable {fam} {table} {{"
    );
    if !st.comment.is_empty() {
        let c: String = st
            .comment
            .chars()
            .filter(|c| !matches!(c, '"' | '\\' | '\n' | '\r'))
            .take(120)
            .collect();
        let _ = writeln!(s, "  comment \"{c}\"");
    }
    let _ = writeln!(s, "  chain ports {{");
    for p in &f.ports {
        let _ = writeln!(s, "    {p}");
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(
        s,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n    {}fib daddr type local jump ports\n  }}",
        f.output_match
    );
    let _ = writeln!(
        s,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
    );
    for (n, subnet) in &f.subnets {
        if let Some(lo) = f.loopback {
            let _ = writeln!(
                s,
                "    oifname \"{}\" {fam} saddr {lo} masquerade",
                n.bridge
            );
        }
        // hairpin: a container reaching a published port of its own network through the
        // host would get the answer straight from the peer otherwise
        let _ = writeln!(
            s,
            "    oifname \"{}\" {fam} saddr {subnet} ct status dnat masquerade",
            n.bridge
        );
        if !n.internal {
            let _ = writeln!(
                s,
                "    oifname != \"{}\" {fam} saddr {subnet} masquerade",
                n.bridge
            );
        }
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;"
    );
    for n in st.networks.iter().filter(|n| n.internal) {
        let _ = writeln!(
            s,
            "    iifname \"{b}\" oifname != \"{b}\" drop\n    oifname \"{b}\" iifname != \"{b}\" drop",
            b = n.bridge
        );
    }
    // published ports are reachable from every network, as through the host
    let _ = writeln!(s, "    ct status dnat accept");
    for a in &st.networks {
        for b in &st.networks {
            if a.bridge != b.bridge {
                let _ = writeln!(
                    s,
                    "    iifname \"{}\" oifname \"{}\" drop",
                    a.bridge, b.bridge
                );
            }
        }
    }
    let _ = writeln!(s, "  }}\n}}");
}

/// Replaces table `ip <table>` with the state, atomically.
pub fn apply(table: &str, st: &FirewallState) -> Result<()> {
    let text = render(table, st)?;
    run_nft(&text)
}

/// Deletes table `ip <table>` and its `ip6` twin; missing ones are fine.
pub fn delete_table(table: &str) -> Result<()> {
    if !valid_ident(table) {
        return Err(Error::Nft(format!("invalid table name {table:?}")));
    }
    run_nft(&format!(
        "add table ip {table}\ndelete table ip {table}\nadd table ip6 {table}\ndelete table ip6 {table}\n"
    ))
}

/// Lists table `ip6 <table>` as text (empty when missing).
pub fn list_table6(table: &str) -> Result<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip6", table])
        .output()
        .map_err(Error::io("run", "nft"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether table `ip <table>` exists.
pub fn table_exists(table: &str) -> Result<bool> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(Error::io("run", "nft"))?;
    Ok(out.success())
}

/// Lists table `ip <table>` as text (empty when missing).
pub fn list_table(table: &str) -> Result<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .map_err(Error::io("run", "nft"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every `ip` table named `berth` or `berth_*`, with its comment (the owner's data root).
pub fn berth_tables() -> Vec<(String, Option<String>)> {
    let Ok(out) = Command::new("nft").args(["list", "tables", "ip"]).output() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = l.trim().strip_prefix("table ip ") else {
            continue;
        };
        let name = name.trim().to_string();
        if name != "berth" && !name.starts_with("berth_") {
            continue;
        }
        let text = list_table(&name).unwrap_or_default();
        let comment = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("comment \"")
                .and_then(|c| c.strip_suffix('"'))
                .map(str::to_string)
        });
        v.push((name, comment));
    }
    v
}

/// The bridges a berth table has rules for (its networks).
pub fn bridges_in(table: &str) -> Vec<String> {
    let text = list_table(table).unwrap_or_default();
    let mut v: Vec<String> = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.split("oifname \"").nth(1) {
            if let Some(b) = rest.split('"').next() {
                if !v.iter().any(|x| x == b) {
                    v.push(b.to_string());
                }
            }
        }
    }
    v
}

fn run_nft(text: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io("run", "nft"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(text.as_bytes())
            .map_err(Error::io("write ruleset to", "nft"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(Error::io("wait for", "nft"))?;
    if !out.status.success() {
        return Err(Error::Nft(format!(
            "nft -f failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_refuses_bad_names() {
        let st = FirewallState {
            networks: vec![
                NetRules {
                    bridge: "br-a".into(),
                    subnet: "10.1.0.0/24".into(),
                    internal: false,
                    subnet6: Some("fd12:3456:789a:1::/64".into()),
                },
                NetRules {
                    bridge: "br-b".into(),
                    subnet: "10.2.0.0/24".into(),
                    internal: true,
                    subnet6: None,
                },
            ],
            ports: vec![PortRule {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 8080,
                container_ip: "10.1.0.2".parse().unwrap(),
                container_port: 80,
                container_ip6: Some("fd12:3456:789a:1::2".parse().unwrap()),
            }],
            comment: "/tmp/x".into(),
        };
        let t = render("berth", &st).unwrap();
        assert!(t.contains("tcp dport 8080 dnat to 10.1.0.2:80"));
        assert!(t.contains("iifname \"br-a\" oifname \"br-b\" drop"));
        assert!(t.contains("oifname != \"br-a\" ip saddr 10.1.0.0/24 masquerade"));
        assert!(!t.contains("oifname != \"br-b\" ip saddr 10.2.0.0/24 masquerade"));
        assert!(t.contains("table ip6 berth {"));
        assert!(t.contains("tcp dport 8080 dnat to [fd12:3456:789a:1::2]:80"));
        assert!(t.contains("oifname != \"br-a\" ip6 saddr fd12:3456:789a:1::/64 masquerade"));
        let mut v4only = st.clone();
        v4only.networks[0].subnet6 = None;
        let t4 = render("berth", &v4only).unwrap();
        assert!(t4.contains("delete table ip6 berth") && !t4.contains("table ip6 berth {"));
        let mut bad6 = st.clone();
        bad6.networks[0].subnet6 = Some("fd00::/64; flush ruleset".into());
        assert!(render("berth", &bad6).is_err());
        assert!(render("berth; flush ruleset", &st).is_err());
        let mut bad = st.clone();
        bad.networks[0].bridge = "a\" drop".into();
        assert!(render("berth", &bad).is_err());
    }
}
