//! `run`/`create` flags for DNS, extra hosts, annotations and berth's bandwidth limit, and
//! `update --network-rate`. The rate travels as the HostConfig annotation
//! `io.berth.network-rate` (the daemon validates it); an update sends it as the update
//! endpoint's `network-rate` query parameter, since the update body has no annotations.

use bollard::models::HostConfig;

use super::{CliError, Client, Result};

/// The annotation (and label) that carries `--network-rate`.
pub const RATE_KEY: &str = "io.berth.network-rate";
const EGRESS_KEY: &str = "io.berth.network-rate.egress";
const INGRESS_KEY: &str = "io.berth.network-rate.ingress";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetFeatOpts {
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip, or host:host-gateway)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Add an annotation to the container (passed through to the OCI runtime)
    #[arg(long = "annotation")]
    pub annotation: Vec<String>,
    /// Limit the container's network bandwidth, each direction (e.g. 10mbit, 500kbit, 1gbit, 2mbps)
    #[arg(long = "network-rate")]
    pub network_rate: Option<String>,
    /// Limit only what the container sends (overrides --network-rate that way)
    #[arg(long = "network-rate-egress")]
    pub network_rate_egress: Option<String>,
    /// Limit only what the container receives (overrides --network-rate that way)
    #[arg(long = "network-rate-ingress")]
    pub network_rate_ingress: Option<String>,
}

impl NetFeatOpts {
    pub fn apply(&self, hc: &mut HostConfig) -> Result<()> {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        hc.dns = some(&self.dns);
        hc.dns_search = some(&self.dns_search);
        hc.dns_options = some(&self.dns_option);
        let mut hosts = Vec::new();
        for h in &self.add_host {
            // docker accepts host=ip and sends the API's host:ip
            let (n, ip) = h
                .split_once('=')
                .or_else(|| h.split_once(':'))
                .filter(|(n, ip)| !n.is_empty() && !ip.is_empty())
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "invalid argument \"{h}\" for \"--add-host\" flag: bad format for add-host: \"{h}\""
                    ))
                })?;
            hosts.push(format!("{n}:{ip}"));
        }
        hc.extra_hosts = (!hosts.is_empty()).then_some(hosts);
        let mut ann = super::opts::key_value_map(&self.annotation, |a| {
            format!("invalid argument \"{a}\" for \"--annotation\" flag: key is empty")
        })?;
        for (k, v) in [
            (RATE_KEY, &self.network_rate),
            (EGRESS_KEY, &self.network_rate_egress),
            (INGRESS_KEY, &self.network_rate_ingress),
        ] {
            if let Some(v) = v {
                ann.insert(k.to_string(), v.clone());
            }
        }
        hc.annotations = (!ann.is_empty()).then_some(ann);
        Ok(())
    }
}

/// `update`'s rate flags, boxed into its arguments (they would make every other
/// subcommand's variant pay for their size).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct UpdateRateArgs {
    /// Network bandwidth limit, each direction (e.g. 10mbit; none removes it)
    #[arg(long = "network-rate")]
    pub network_rate: Option<String>,
    /// Network bandwidth limit of what the container sends
    #[arg(long = "network-rate-egress")]
    pub network_rate_egress: Option<String>,
    /// Network bandwidth limit of what the container receives
    #[arg(long = "network-rate-ingress")]
    pub network_rate_ingress: Option<String>,
}

impl UpdateRateArgs {
    /// (query parameter, value) of each flag given.
    pub fn changes(&self) -> Vec<(&'static str, &str)> {
        [
            ("network-rate", &self.network_rate),
            ("network-rate-egress", &self.network_rate_egress),
            ("network-rate-ingress", &self.network_rate_ingress),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `update --network-rate[-egress|-ingress]` for one container: (query parameter, value).
pub async fn update_rate(client: &Client, container: &str, rates: &[(&str, &str)]) -> Result<()> {
    let q: Vec<String> = rates
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    super::raw::send(
        client,
        "POST",
        &format!("/containers/{}/update?{}", enc(container), q.join("&")),
    )
    .await?
    .json()
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: NetFeatOpts,
    }

    fn hc(args: &[&str]) -> Result<HostConfig> {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let mut hc = HostConfig::default();
        t.o.apply(&mut hc)?;
        Ok(hc)
    }

    #[test]
    fn flags_map_onto_host_config() {
        let h = hc(&[
            "--dns",
            "192.0.2.1",
            "--dns-search",
            "a.example",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db=192.0.2.9",
            "--add-host",
            "gw:host-gateway",
            "--network-rate",
            "10mbit",
            "--annotation",
            "x=y",
            "--network-rate-ingress",
            "5mbit",
        ])
        .expect("flags");
        assert_eq!(h.dns, Some(vec!["192.0.2.1".to_string()]));
        assert_eq!(h.dns_search, Some(vec!["a.example".to_string()]));
        assert_eq!(h.dns_options, Some(vec!["ndots:2".to_string()]));
        assert_eq!(
            h.extra_hosts,
            Some(vec![
                "db:192.0.2.9".to_string(),
                "gw:host-gateway".to_string()
            ])
        );
        let ann = h.annotations.unwrap_or_default();
        assert_eq!(ann.get(RATE_KEY).map(String::as_str), Some("10mbit"));
        assert_eq!(ann.get("x").map(String::as_str), Some("y"));
        assert_eq!(ann.get(INGRESS_KEY).map(String::as_str), Some("5mbit"));
        assert!(!ann.contains_key(EGRESS_KEY));
        let none = hc(&[]).expect("no flags");
        assert!(none.dns.is_none() && none.extra_hosts.is_none() && none.annotations.is_none());
        assert!(hc(&["--add-host", "nothing"]).is_err());
    }
}
