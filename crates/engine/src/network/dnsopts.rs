//! Docker's DNS and hosts options of a container: `--dns`, `--dns-search`, `--dns-option`
//! (HostConfig.Dns/DnsSearch/DnsOptions) rewrite its /etc/resolv.conf, and `--add-host
//! name:ip|host-gateway` (HostConfig.ExtraHosts) adds lines to its /etc/hosts.
//!
//! On a user network the embedded DNS server stays the first nameserver (container names
//! resolve only through it) and forwards the container's other questions to its `--dns`
//! servers, as Docker's does (to the host's resolvers without `--dns`). The `--dns` servers
//! are also written after it, so that names outside still resolve while the daemon, and with
//! it the embedded server, restarts.

use std::net::{IpAddr, Ipv4Addr};

use bollard_stubs::models::ContainerCreateBody;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// The `--add-host` value that means the host as seen from the container.
pub const HOST_GATEWAY: &str = "host-gateway";

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// `name:ip` (Docker's API form; an IPv6 address keeps its colons) or `name=ip` (the docker
/// CLI's newer input form).
fn split_host(entry: &str) -> Option<(&str, &str)> {
    let (n, ip) = match entry.split_once('=') {
        Some(p) => p,
        None => entry.split_once(':')?,
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Some((n, ip))
}

/// Refuses, at create, what would make a broken resolv.conf or hosts file.
pub(crate) fn validate(body: &ContainerCreateBody) -> Result<()> {
    let Some(hc) = body.host_config.as_ref() else {
        return Ok(());
    };
    for d in hc.dns.iter().flatten() {
        if d.trim().parse::<IpAddr>().is_err() {
            return Err(bad(format!("invalid DNS server {d:?}: not an IP address")));
        }
    }
    for s in hc.dns_search.iter().flatten() {
        if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(bad(format!("invalid DNS search domain {s:?}")));
        }
    }
    for o in hc.dns_options.iter().flatten() {
        if o.is_empty() || o.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(bad(format!("invalid DNS option {o:?}")));
        }
    }
    for h in hc.extra_hosts.iter().flatten() {
        let (name, ip) = split_host(h).ok_or_else(|| {
            bad(format!(
                "invalid extra host {h:?}: expected name:ip or name:{HOST_GATEWAY}"
            ))
        })?;
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(bad(format!(
                "invalid extra host {h:?}: invalid name {name:?}"
            )));
        }
        if ip != HOST_GATEWAY && ip.parse::<IpAddr>().is_err() {
            return Err(bad(format!(
                "invalid extra host {h:?}: {ip:?} is not an IP address or {HOST_GATEWAY}"
            )));
        }
    }
    Ok(())
}

/// `base` (a resolv.conf) with the body's options applied, as Docker does: `--dns` replaces
/// the nameservers (after `embedded`, which is kept first), `--dns-search` the search list
/// (`.` alone means none), `--dns-option` the options. Other lines are kept.
pub(crate) fn resolv(body: &ContainerCreateBody, base: &str, embedded: Option<Ipv4Addr>) -> String {
    let Some(hc) = body.host_config.as_ref() else {
        return base.to_string();
    };
    let dns: Vec<&String> = hc.dns.iter().flatten().collect();
    let search: Vec<&String> = hc.dns_search.iter().flatten().collect();
    let opts: Vec<&String> = hc.dns_options.iter().flatten().collect();
    if dns.is_empty() && search.is_empty() && opts.is_empty() {
        return base.to_string();
    }
    let mut out = String::new();
    let mut ns_done = false;
    let put_ns = |out: &mut String| {
        if let Some(e) = embedded {
            out.push_str(&format!("nameserver {e}\n"));
        }
        for d in &dns {
            let d = d.trim();
            // behind the embedded server a loopback --dns is the host's, which the embedded
            // server reaches; inside the container it would be its own loopback
            if embedded.is_some() && d.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()) {
                continue;
            }
            out.push_str(&format!("nameserver {d}\n"));
        }
    };
    for l in base.lines() {
        let t = l.trim();
        let word = t.split_whitespace().next().unwrap_or("");
        match word {
            "nameserver" if !dns.is_empty() => {
                if !ns_done {
                    put_ns(&mut out);
                    ns_done = true;
                }
            }
            "search" | "domain" if !search.is_empty() => {}
            "options" if !opts.is_empty() => {}
            _ => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    if !dns.is_empty() && !ns_done {
        put_ns(&mut out);
    }
    // a lone "." clears the search list
    let no_search = search.len() == 1 && search[0] == ".";
    if !search.is_empty() && !no_search {
        let s: Vec<&str> = search.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!("search {}\n", s.join(" ")));
    }
    if !opts.is_empty() {
        let o: Vec<&str> = opts.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!("options {}\n", o.join(" ")));
    }
    out
}

/// The /etc/hosts lines of `--add-host`, `host-gateway` replaced by `gateway`.
pub(crate) fn extra_hosts(body: &ContainerCreateBody, gateway: Option<Ipv4Addr>) -> Result<String> {
    let mut out = String::new();
    for h in body
        .host_config
        .as_ref()
        .and_then(|h| h.extra_hosts.as_ref())
        .into_iter()
        .flatten()
    {
        let Some((name, ip)) = split_host(h) else {
            continue;
        };
        let ip = if ip == HOST_GATEWAY {
            gateway
                .ok_or_else(|| {
                    bad(format!(
                        "extra host {h:?}: no host gateway address is known for this container"
                    ))
                })?
                .to_string()
        } else {
            ip.to_string()
        };
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// The `--dns` servers of the container that has `ip` on network `net`, for the embedded
/// DNS to forward its questions to (read from the database the server reads).
pub(crate) fn container_upstreams(
    conn: &rusqlite::Connection,
    net: &str,
    ip: IpAddr,
) -> Vec<std::net::SocketAddr> {
    let body: Option<String> = conn
        .query_row(
            "SELECT c.body FROM endpoints e JOIN containers c ON c.id = e.container \
             WHERE e.network = ?1 AND e.ip = ?2",
            [net, &ip.to_string()],
            |r| r.get(0),
        )
        .ok();
    let Some(body) = body.and_then(|b| serde_json::from_str::<ContainerCreateBody>(&b).ok()) else {
        return Vec::new();
    };
    body.host_config
        .and_then(|h| h.dns)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.trim().parse::<IpAddr>().ok())
        .map(|a| std::net::SocketAddr::new(a, 53))
        .collect()
}

impl Engine {
    /// The address `host-gateway` stands for: the daemon's `--host-gateway-ip` if it was
    /// given, else the gateway of the container's first network,
    /// or of the default bridge network when it has none of its own (host, none,
    /// container:), as dockerd uses its default bridge's.
    pub(crate) fn host_gateway(&self, first_network: Option<&str>) -> Option<Ipv4Addr> {
        if let Some(ip) = self.cfg.host_gateway_ip {
            return Some(ip);
        }
        if let Some(n) = first_network.and_then(|id| self.find_network(id).ok()) {
            return Some(n.gateway);
        }
        self.ensure_default_network().ok().map(|n| n.gateway)
    }

    /// At create, once the container's files exist: its resolv.conf with the DNS options, and
    /// its hosts file with the extra hosts.
    pub(crate) fn write_dns_files(
        &self,
        body: &ContainerCreateBody,
        dir: &std::path::Path,
        first_network: Option<&str>,
    ) -> Result<()> {
        let rp = dir.join("resolv.conf");
        let base = std::fs::read_to_string(&rp).map_err(Error::io("read", &rp))?;
        let new = resolv(body, &base, None);
        if new != base {
            crate::engine::write_in_place(&rp, new.as_bytes()).map_err(Error::io("write", &rp))?;
        }
        let wants_gw = body
            .host_config
            .as_ref()
            .and_then(|h| h.extra_hosts.as_ref())
            .is_some_and(|x| x.iter().any(|h| h.ends_with(HOST_GATEWAY)));
        let gw = if wants_gw {
            self.host_gateway(first_network)
        } else {
            None
        };
        let lines = extra_hosts(body, gw)?;
        if !lines.is_empty() {
            let hp = dir.join("hosts");
            let mut hosts = std::fs::read_to_string(&hp).map_err(Error::io("read", &hp))?;
            hosts.push_str(&lines);
            crate::engine::write_in_place(&hp, hosts.as_bytes())
                .map_err(Error::io("write", &hp))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::HostConfig;

    fn body(dns: &[&str], search: &[&str], opts: &[&str], hosts: &[&str]) -> ContainerCreateBody {
        let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|x| x.to_string()).collect());
        ContainerCreateBody {
            host_config: Some(HostConfig {
                dns: v(dns),
                dns_search: v(search),
                dns_options: v(opts),
                extra_hosts: v(hosts),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn resolv_options_replace_their_lines() {
        let base = "nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch corp\noptions ndots:2\n";
        let b = body(
            &["1.1.1.1", "9.9.9.9"],
            &["a.example", "b.example"],
            &["ndots:1", "timeout:3"],
            &[],
        );
        assert_eq!(
            resolv(&b, base, None),
            "nameserver 1.1.1.1\nnameserver 9.9.9.9\nsearch a.example b.example\noptions ndots:1 timeout:3\n"
        );
        let user = "nameserver 10.99.0.1\nsearch corp\n";
        assert_eq!(
            resolv(
                &body(&["1.1.1.1"], &[], &[], &[]),
                user,
                "10.99.0.1".parse().ok()
            ),
            "nameserver 10.99.0.1\nnameserver 1.1.1.1\nsearch corp\n"
        );
        assert_eq!(
            resolv(&body(&[], &["."], &[], &[]), base, None),
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions ndots:2\n"
        );
        assert_eq!(resolv(&body(&[], &[], &[], &[]), base, None), base);
    }

    #[test]
    fn extra_hosts_and_bad_input() {
        let b = body(
            &[],
            &[],
            &[],
            &["db:10.1.2.3", "gw:host-gateway", "v6:::1", "new=192.0.2.9"],
        );
        validate(&b).expect("valid");
        assert_eq!(
            extra_hosts(&b, "172.17.0.1".parse().ok()).expect("hosts"),
            "10.1.2.3\tdb\n172.17.0.1\tgw\n::1\tv6\n192.0.2.9\tnew\n"
        );
        assert!(extra_hosts(&b, None).is_err());
        for (b, word) in [
            (body(&["not-an-ip"], &[], &[], &[]), "not-an-ip"),
            (body(&[], &["a b"], &[], &[]), "a b"),
            (body(&[], &[], &["x y"], &[]), "x y"),
            (body(&[], &[], &[], &["nocolon"]), "nocolon"),
            (body(&[], &[], &[], &["h:999.1.1.1"]), "999.1.1.1"),
        ] {
            let e = validate(&b).expect_err("invalid");
            assert!(e.to_string().contains(word), "{e}");
        }
    }
}
