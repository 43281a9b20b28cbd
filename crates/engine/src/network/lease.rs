//! Taking a lease, the same for both families: the addresses in use on the network are read,
//! the one asked for is taken if free, else the first free one of the family's pool, and the
//! row is written under the connection's lock with UNIQUE(network, ip) as the last word (for
//! another daemon sharing the file). Each family keeps its own table: v4 leases are
//! `endpoints.ip`, v6 leases rows of `leases_v6`; only the SQL and the words differ.

use std::collections::HashSet;
use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;

use bollard_stubs::models::EndpointIpamConfig;
use rusqlite::{params, Connection};

use super::{Endpoint, NetRecord};
use crate::error::{Error, Result};

/// Where and how one family's leases are kept.
pub(super) struct Family {
    /// The messages' name of an address of the family.
    pub what: &'static str,
    /// The address an endpoint asks for, from its IPAM config.
    pub wanted: fn(&EndpointIpamConfig) -> Option<&str>,
    /// The addresses leased on network ?1.
    pub used: &'static str,
    pub used_op: &'static str,
    /// Run first with (container ?1, network ?2) where a lease of the endpoint left by a
    /// crash would stand beside the new one instead of being replaced by it.
    pub clear: Option<(&'static str, &'static str)>,
    /// Records the lease: container ?1, network ?2, address ?3.
    pub take: &'static str,
    pub take_op: &'static str,
}

pub(super) const V4: Family = Family {
    what: "address",
    wanted: |c| c.ipv4_address.as_deref(),
    used: "SELECT ip FROM endpoints WHERE network = ?1 AND ip IS NOT NULL",
    used_op: "list leases",
    clear: None,
    take: "UPDATE endpoints SET ip = ?3 WHERE container = ?1 AND network = ?2",
    take_op: "lease address",
};

pub(super) const V6: Family = Family {
    what: "IPv6 address",
    wanted: |c| c.ipv6_address.as_deref(),
    used: "SELECT ip FROM leases_v6 WHERE network = ?1",
    used_op: "list IPv6 leases",
    clear: Some((
        "DELETE FROM leases_v6 WHERE container = ?1 AND network = ?2",
        "release IPv6 lease",
    )),
    take: "INSERT INTO leases_v6 (container, network, ip) VALUES (?1, ?2, ?3)",
    take_op: "lease IPv6 address",
};

/// Leases an address of family `f` to endpoint `e` on network `n`: the
/// requested one (an unparsable request counts as none), else what `first_free` picks
/// given the addresses in use.
pub(super) fn take<A>(
    c: &Connection,
    f: &Family,
    e: &Endpoint,
    n: &NetRecord,
    first_free: impl FnOnce(&HashSet<A>) -> Option<A>,
) -> Result<A>
where
    A: Copy + Eq + Hash + FromStr + Display,
{
    if let Some((sql, op)) = f.clear {
        c.execute(sql, params![e.container, e.network])
            .map_err(Error::db(op))?;
    }
    let mut st = c.prepare(f.used).map_err(Error::db(f.used_op))?;
    let used: HashSet<A> = st
        .query_map([&n.id], |r| r.get::<_, String>(0))
        .map_err(Error::db(f.used_op))?
        .filter_map(|r| r.ok().and_then(|s| s.parse().ok()))
        .collect();
    drop(st);
    let in_use = |ip: A| {
        Error::Conflict(format!(
            "{} {ip} is already in use on network {}",
            f.what, n.name
        ))
    };
    let want = e
        .config
        .ipam_config
        .as_ref()
        .and_then(f.wanted)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<A>().ok());
    let ip = match want {
        Some(ip) if used.contains(&ip) => return Err(in_use(ip)),
        Some(ip) => ip,
        None => first_free(&used).ok_or_else(|| {
            Error::Conflict(format!("no free {} left on network {}", f.what, n.name))
        })?,
    };
    c.execute(f.take, params![e.container, e.network, ip.to_string()])
        .map_err(|err| match err {
            rusqlite::Error::SqliteFailure(x, _)
                if x.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                in_use(ip)
            }
            err => Error::db(f.take_op)(err),
        })?;
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use bollard_stubs::models::EndpointSettings;

    use super::*;
    use crate::db::Db;

    fn endpoint(container: &str, v4: Option<&str>, v6: Option<&str>) -> Endpoint {
        Endpoint {
            container: container.into(),
            network: "n1".into(),
            seq: 0,
            config: EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: v4.map(Into::into),
                    ipv6_address: v6.map(Into::into),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ip: None,
            ifname: String::new(),
            ports: Vec::new(),
        }
    }

    /// The first of `cands` not in use: the callers pick from their pools so.
    fn lowest<A: Copy + Eq + Hash>(cands: Vec<A>) -> impl FnOnce(&HashSet<A>) -> Option<A> {
        move |used| cands.into_iter().find(|a| !used.contains(a))
    }

    #[test]
    fn both_families_take_free_refuse_taken_and_replace_a_stale_v6_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("engine.db")).expect("open db");
        let c = db.lock();
        for id in ["c1", "c2", "c3"] {
            c.execute(
                "INSERT INTO endpoints (container, network, seq) VALUES (?1, 'n1', 0)",
                [id],
            )
            .expect("insert endpoint");
        }
        let n = NetRecord {
            id: "n1".into(),
            name: "net1".into(),
            created: String::new(),
            bridge: "br-test".into(),
            subnet: "10.9.0.0/24".parse().expect("subnet"),
            gateway: Ipv4Addr::new(10, 9, 0, 1),
            ip_range: None,
            internal: false,
            mtu: 1500,
            labels: HashMap::new(),
            options: HashMap::new(),
        };
        let v4s: Vec<Ipv4Addr> = (2..6).map(|i| Ipv4Addr::new(10, 9, 0, i)).collect();
        let v6s: Vec<Ipv6Addr> = (2..6)
            .map(|i| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i))
            .collect();

        let v4 = |who: &str, want: Option<&str>| {
            take(&c, &V4, &endpoint(who, want, None), &n, lowest(v4s.clone()))
        };
        let v6 = |who: &str, want: Option<&str>| {
            take(&c, &V6, &endpoint(who, None, want), &n, lowest(v6s.clone()))
        };
        let conflict = |m: &str| Some(Error::Conflict(m.into()).to_string());

        assert_eq!(v4("c1", None).ok(), Some(v4s[0]));
        assert_eq!(
            v4("c2", Some("10.9.0.2")).err().map(|e| e.to_string()),
            conflict("address 10.9.0.2 is already in use on network net1")
        );
        // an empty request is none
        assert_eq!(v4("c2", Some("")).ok(), Some(v4s[1]));
        assert_eq!(v4("c3", Some("10.9.0.5")).ok(), Some(v4s[3]));
        let full = take(
            &c,
            &V4,
            &endpoint("c3", None, None),
            &n,
            |_: &HashSet<Ipv4Addr>| None,
        );
        assert_eq!(
            full.err().map(|e| e.to_string()),
            conflict("no free address left on network net1")
        );
        let kept: Option<String> = c
            .query_row("SELECT ip FROM endpoints WHERE container = 'c2'", [], |r| {
                r.get(0)
            })
            .ok();
        assert_eq!(kept.as_deref(), Some("10.9.0.3"));

        assert_eq!(v6("c1", None).ok(), Some(v6s[0]));
        // c1's lease again, as after a crash: replaced, not refused and not doubled
        assert_eq!(v6("c1", None).ok(), Some(v6s[0]));
        let rows: Option<i64> = c
            .query_row(
                "SELECT COUNT(*) FROM leases_v6 WHERE container = 'c1'",
                [],
                |r| r.get(0),
            )
            .ok();
        assert_eq!(rows, Some(1));
        assert_eq!(
            v6("c2", Some("fd00::2")).err().map(|e| e.to_string()),
            conflict("IPv6 address fd00::2 is already in use on network net1")
        );
        assert_eq!(v6("c2", None).ok(), Some(v6s[1]));
    }
}
