//! `run`/`create` flags for DNS, extra hosts, annotations and berth's bandwidth limit, and
//! `update --network-rate`. The rate travels as the HostConfig annotation
//! `io.berth.network-rate` (the daemon validates it); an update sends it as the update
//! endpoint's `network-rate` query parameter, since the update body has no annotations.

use bollard::models::HostConfig;

use super::{CliError, Client, Result};

/// The annotation (and label) that carries `--network-rate`.
pub const RATE_KEY: &str = "io.berth.network-rate";

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
        let mut ann = std::collections::HashMap::new();
        for a in &self.annotation {
            let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
            if k.is_empty() {
                return Err(CliError::Usage(format!(
                    "invalid argument \"{a}\" for \"--annotation\" flag: key is empty"
                )));
            }
            ann.insert(k.to_string(), v.to_string());
        }
        if let Some(r) = &self.network_rate {
            ann.insert(RATE_KEY.to_string(), r.clone());
        }
        hc.annotations = (!ann.is_empty()).then_some(ann);
        Ok(())
    }
}

/// `update --network-rate` for one container.
pub async fn update_rate(client: &Client, container: &str, rate: &str) -> Result<()> {
    let enc: String = rate
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let enc_c: String = container
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    super::raw::send(
        client,
        "POST",
        &format!("/containers/{enc_c}/update?network-rate={enc}"),
    )
    .await?
    .json()
    .await
    .map(|_| ())
}
