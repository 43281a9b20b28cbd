//! A container's bandwidth limit (`--network-rate`, which neither Docker nor Podman has): one
//! rate for both directions, asked for as HostConfig.Annotations `io.berth.network-rate`
//! (docker CLI ≥ 24: `--annotation`) or, for clients without annotations (docker 20.10, the
//! Python SDK), a label of the same key. It is enforced by berth-net's TBF qdisc on both ends
//! of each of the container's veths, applied at every start, changed by `update`, and shown
//! in inspect as the annotation plus `io.berth.network-rate.applied`, read from the kernel.

use bollard_stubs::models::ContainerCreateBody;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// The annotation (and label) that asks for a limit.
pub const KEY: &str = "io.berth.network-rate";
/// The inspect-only annotation with what the kernel enforces.
pub const APPLIED_KEY: &str = "io.berth.network-rate.applied";

/// A rate in bytes per second from tc's notation: `10mbit`, `500kbit`, `1gbit` (bits, powers
/// of 1000), `1mbps`/`1mb`, `100kbps`/`100kb` (bytes, powers of 1000). `0`, `none` and the
/// empty string mean no limit. A unit is required: a bare number is ambiguous.
pub fn parse(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() || t == "0" || t == "none" {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!(
                "invalid network rate {s:?}: a unit is needed (e.g. 10mbit, 500kbit, 1gbit, 2mbps)"
            )
        })?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid network rate {s:?}: expected a number and a unit (e.g. 10mbit, 500kbit, 1gbit, 2mbps)"
        ));
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid network rate {s:?}: {num:?} is not a number"))?;
    let bits_per_unit: f64 = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "bps" => 8.0,
        "kbps" | "kb" => 8e3,
        "mbps" | "mb" => 8e6,
        "gbps" | "gb" => 8e9,
        _ => {
            return Err(format!(
                "invalid network rate {s:?}: unknown unit {unit:?} (bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps)"
            ))
        }
    };
    let bytes = n * bits_per_unit / 8.0;
    // below 1 kB/s a single full-size frame takes over a second: nothing useful is left
    if !(1000.0..=1.25e14).contains(&bytes) {
        return Err(format!(
            "invalid network rate {s:?}: it must be between 8kbit and 1000gbit"
        ));
    }
    Ok(Some(bytes as u64))
}

/// A rate as tc would print it: the largest bit unit that keeps an integer.
pub fn format(bytes_per_sec: u64) -> String {
    let bits = bytes_per_sec.saturating_mul(8);
    for (div, u) in [
        (1_000_000_000, "gbit"),
        (1_000_000, "mbit"),
        (1_000, "kbit"),
    ] {
        if bits >= div && bits.is_multiple_of(div) {
            return format!("{}{u}", bits / div);
        }
    }
    format!("{bits}bit")
}

/// The keys that override the both-ways rate for one direction: what the container sends,
/// and what it receives.
pub const EGRESS_KEY: &str = "io.berth.network-rate.egress";
pub const INGRESS_KEY: &str = "io.berth.network-rate.ingress";
const KEYS: [&str; 3] = [KEY, EGRESS_KEY, INGRESS_KEY];

/// A container's limit, each direction in bytes per second (None: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    pub egress: Option<u64>,
    pub ingress: Option<u64>,
}

impl Limit {
    fn any(&self) -> bool {
        self.egress.is_some() || self.ingress.is_some()
    }
}

/// The value of one key: the annotation, else the label.
fn value_of<'a>(body: &'a ContainerCreateBody, key: &str) -> Option<&'a String> {
    body.host_config
        .as_ref()
        .and_then(|h| h.annotations.as_ref())
        .and_then(|a| a.get(key))
        .or_else(|| body.labels.as_ref().and_then(|l| l.get(key)))
}

/// The limit a create body asks for: a direction's own key, else the both-ways key.
pub(crate) fn requested(body: &ContainerCreateBody) -> Result<Limit> {
    let get = |k: &str| -> Result<Option<Option<u64>>> {
        value_of(body, k)
            .map(|v| parse(v).map_err(|e| Error::InvalidArgument(format!("{k}: {e}"))))
            .transpose()
    };
    let both = get(KEY)?.flatten();
    Ok(Limit {
        egress: get(EGRESS_KEY)?.unwrap_or(both),
        ingress: get(INGRESS_KEY)?.unwrap_or(both),
    })
}

/// At create: the values checked (a bad one is a 400 naming it), and labels copied to the
/// annotations so that inspect shows them in one place whichever way they came.
pub(crate) fn normalize(body: &mut ContainerCreateBody) -> Result<()> {
    if requested(body)?.any() {
        own_network(body)?;
    }
    for k in KEYS {
        if let Some(l) = body.labels.as_ref().and_then(|l| l.get(k)).cloned() {
            body.host_config
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .entry(k.to_string())
                .or_insert(l);
        }
    }
    Ok(())
}

/// A limit is set on the container's own veths: host, none and container: have none, and a
/// limit there would be a promise nothing keeps.
fn own_network(body: &ContainerCreateBody) -> Result<()> {
    let mode = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        .unwrap_or("");
    if mode == "host" || mode == "none" || mode.starts_with("container:") {
        return Err(Error::InvalidArgument(format!(
            "{KEY}: a network rate needs a network of the container's own, not network mode {mode}"
        )));
    }
    Ok(())
}

impl Engine {
    /// Sets (or with None removes) the limits on every plumbed interface of the container:
    /// the host end of its veth shapes what the container receives, the end inside its
    /// namespace what it sends.
    pub(crate) fn apply_rate_limit(&self, id: &str, limit: Limit) -> Result<()> {
        let egress = limit.egress.map(berth_net::tc::Tbf::for_rate);
        let ingress = limit.ingress.map(berth_net::tc::Tbf::for_rate);
        let netns = self.netns_path(id);
        for e in self.endpoints_of(id)? {
            if e.ip.is_none() || e.ifname.is_empty() {
                continue;
            }
            let (host_if, _) = super::veth_names(id, e.seq);
            berth_net::tc::set_limit(None, &host_if, ingress)?;
            berth_net::tc::set_limit(Some(&netns), &e.ifname, egress)?;
        }
        if limit.any() {
            tracing::debug!(container = id, ?limit, "network rate limit applied");
        }
        Ok(())
    }

    /// At start, after the interfaces are plumbed (and after a `network connect`).
    pub(crate) fn apply_rate(&self, id: &str, body: &ContainerCreateBody) -> Result<()> {
        let limit = requested(body)?;
        if limit.any() {
            self.apply_rate_limit(id, limit)?;
        }
        Ok(())
    }

    /// `POST /containers/{id}/update` with `io.berth.network-rate` (both ways, which drops
    /// the per-direction keys) and/or its `.egress`/`.ingress` keys: the new values stored in
    /// the container's annotations (a later start applies them) and applied now if it runs.
    pub fn update_network_rate(&self, s: &str, changes: &[(&str, &str)]) -> Result<()> {
        for (k, v) in changes {
            if !KEYS.contains(k) {
                return Err(Error::InvalidArgument(format!(
                    "unknown network rate key {k:?}"
                )));
            }
            parse(v).map_err(|e| Error::InvalidArgument(format!("{k}: {e}")))?;
        }
        let r = self.find(s)?;
        let lock = self.container_lock(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.find(&r.id)?;
        let mut body = self.body(&r);
        let labelled: Vec<&str> = [EGRESS_KEY, INGRESS_KEY]
            .into_iter()
            .filter(|d| body.labels.as_ref().is_some_and(|l| l.contains_key(*d)))
            .collect();
        let hc = body.host_config.get_or_insert_with(Default::default);
        let ann = hc.annotations.get_or_insert_with(Default::default);
        // both ways first, so that a direction given in the same update wins
        for (_, v) in changes.iter().filter(|(k, _)| *k == KEY) {
            for d in [EGRESS_KEY, INGRESS_KEY] {
                // a label would speak for a direction whose annotation is gone
                if labelled.contains(&d) {
                    ann.insert(d.to_string(), v.trim().to_string());
                } else {
                    ann.remove(d);
                }
            }
        }
        for (k, v) in changes {
            ann.insert(k.to_string(), v.trim().to_string());
        }
        let limit = requested(&body)?;
        if limit.any() {
            own_network(&body)?;
        }
        if matches!(r.status.as_str(), "running" | "paused") {
            self.apply_rate_limit(&r.id, limit)?;
        }
        let json = serde_json::to_string(&body)
            .map_err(|e| Error::InvalidArgument(format!("update {}: {e}", r.id)))?;
        self.db().set_body_json(&r.id, &json)?;
        self.emit_event(&r, "update", &[]);
        Ok(())
    }

    /// Inspect: what the kernel enforces now, per interface (`eth0 egress=10mbit
    /// ingress=10mbit`), beside the requested annotation; nothing when no limit is asked for
    /// and none is set.
    pub(crate) fn rate_inspect(&self, id: &str, v: &mut Value) {
        // only for a container that asks for a limit: an inspect costs no netlink otherwise
        let asked = KEYS.iter().any(|k| {
            v["HostConfig"]["Annotations"][*k]
                .as_str()
                .is_some_and(|r| matches!(parse(r), Ok(Some(_))))
        });
        if !asked {
            return;
        }
        let netns = self.netns_path(id);
        let mut parts = Vec::new();
        for e in self.endpoints_of(id).unwrap_or_default() {
            if e.ip.is_none() || e.ifname.is_empty() {
                continue;
            }
            let (host_if, _) = super::veth_names(id, e.seq);
            let show = |r: berth_net::Result<Option<u64>>| match r {
                Ok(Some(b)) => format(b),
                Ok(None) => "none".to_string(),
                Err(err) => format!("unknown ({err})"),
            };
            let egress = show(berth_net::tc::limit_of(Some(&netns), &e.ifname));
            let ingress = show(berth_net::tc::limit_of(None, &host_if));
            if egress != "none" || ingress != "none" {
                parts.push(format!("{} egress={egress} ingress={ingress}", e.ifname));
            }
        }
        if parts.is_empty() {
            return;
        }
        let hc = &mut v["HostConfig"];
        if !hc.is_object() {
            return;
        }
        if !hc["Annotations"].is_object() {
            hc["Annotations"] = json!({});
        }
        hc["Annotations"][APPLIED_KEY] = json!(parts.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse("10mbit"), Ok(Some(1_250_000)));
        assert_eq!(parse("500kbit"), Ok(Some(62_500)));
        assert_eq!(parse("1gbit"), Ok(Some(125_000_000)));
        assert_eq!(parse("1mb"), Ok(Some(1_000_000)));
        assert_eq!(parse("2.5Mbit"), Ok(Some(312_500)));
        assert_eq!(parse("none"), Ok(None));
        assert_eq!(parse("0"), Ok(None));
        assert!(parse("10").unwrap_err().contains("\"10\""));
        assert!(parse("10furlongs").unwrap_err().contains("furlongs"));
        assert!(parse("1bit").is_err());
        assert!(parse("x mbit").is_err());
        assert_eq!(format(1_250_000), "10mbit");
        assert_eq!(format(62_500), "500kbit");
        assert_eq!(format(125_000_000), "1gbit");
        assert_eq!(format(1001), "8008bit");
    }

    #[test]
    fn directions_override_both_ways() {
        let b = ContainerCreateBody {
            host_config: Some(bollard_stubs::models::HostConfig {
                annotations: Some(
                    [
                        (KEY.to_string(), "10mbit".to_string()),
                        (INGRESS_KEY.to_string(), "5mbit".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            labels: Some([(EGRESS_KEY.to_string(), "none".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(
            requested(&b).expect("limit"),
            Limit {
                egress: None,
                ingress: Some(625_000)
            }
        );
    }

    #[test]
    fn label_becomes_annotation() {
        let mut b = ContainerCreateBody {
            labels: Some([(KEY.to_string(), "10mbit".to_string())].into()),
            ..Default::default()
        };
        normalize(&mut b).expect("normalize");
        let ann = b
            .host_config
            .and_then(|h| h.annotations)
            .unwrap_or_default();
        assert_eq!(ann.get(KEY).map(String::as_str), Some("10mbit"));
        let mut bad = ContainerCreateBody {
            labels: Some([(KEY.to_string(), "fast".to_string())].into()),
            ..Default::default()
        };
        assert!(
            matches!(normalize(&mut bad), Err(Error::InvalidArgument(m)) if m.contains("fast"))
        );
    }
}
