//! `berth network ...` and `berth port`, and the run flags that publish ports and pick
//! addresses (`-p`, `-P`, `--expose`, `--ip`, `--network-alias`, `--mac-address`): docker's
//! names, output and exit codes, over the daemon's `/networks` API.

use std::collections::HashMap;

use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest, PortBinding, PortMap,
};

use super::each::each_line;
use super::format::{self, Format};
use super::inspect::{self, Print};
use super::{CliError, Client, Result};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum NetworkSub {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Driver to manage the Network (bridge)
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment (an IPv4 one, and an IPv6 one
    /// with --ipv6)
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

fn key_values(flag: &str, items: &[String]) -> Result<HashMap<String, String>> {
    super::opts::key_value_map(items, |i| format!("invalid argument {i:?} for {flag}"))
}

/// The query string of docker's filters: `?filters={"k":{"v":true}}`, percent-encoded.
fn filter_query(items: &[String]) -> Result<String> {
    if items.is_empty() {
        return Ok(String::new());
    }
    let mut m: HashMap<String, HashMap<String, bool>> = HashMap::new();
    for f in items {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("bad format of filter (expected name=value): {f}"))
        })?;
        m.entry(k.to_string())
            .or_default()
            .insert(v.to_string(), true);
    }
    let j = serde_json::to_string(&m).unwrap_or_default();
    let enc: String = j
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Ok(format!("?filters={enc}"))
}

pub async fn dispatch(client: &Client, cmd: NetworkSub) -> Result<i32> {
    match cmd {
        NetworkSub::Create(a) => create(client, a).await,
        NetworkSub::Ls(a) => ls(client, a).await,
        NetworkSub::Inspect(a) => inspect(client, a).await,
        NetworkSub::Rm(a) => rm(client, a).await,
        NetworkSub::Prune(a) => prune(client, a).await,
        NetworkSub::Connect(a) => {
            let cfg = EndpointSettings {
                ipam_config: (a.ip.is_some() || a.ip6.is_some()).then(|| EndpointIpamConfig {
                    ipv4_address: a.ip.clone(),
                    ipv6_address: a.ip6.clone(),
                    ..Default::default()
                }),
                aliases: (!a.alias.is_empty()).then(|| a.alias.clone()),
                ..Default::default()
            };
            client
                .docker
                .connect_network(
                    &a.network,
                    NetworkConnectRequest {
                        container: a.container.clone(),
                        endpoint_config: Some(cfg),
                    },
                )
                .await
                .map_err(|e| client.err("network connect", e))?;
            Ok(0)
        }
        NetworkSub::Disconnect(a) => {
            client
                .docker
                .disconnect_network(
                    &a.network,
                    NetworkDisconnectRequest {
                        container: a.container.clone(),
                        force: Some(a.force),
                    },
                )
                .await
                .map_err(|e| client.err("network disconnect", e))?;
            Ok(0)
        }
    }
}

async fn create(client: &Client, a: CreateArgs) -> Result<i32> {
    let ipam = ipam_configs(&a.subnet, &a.gateway, &a.ip_range).map(|config| Ipam {
        driver: Some("default".into()),
        config: Some(config),
        ..Default::default()
    });
    let req = NetworkCreateRequest {
        name: a.name.clone(),
        driver: Some(a.driver.clone()),
        internal: Some(a.internal),
        enable_ipv6: a.ipv6.then_some(true),
        ipam,
        options: Some(key_values("--opt", &a.opt)?),
        labels: Some(key_values("--label", &a.label)?),
        ..Default::default()
    };
    let r = client
        .docker
        .create_network(req)
        .await
        .map_err(|e| client.err("network create", e))?;
    outln!("{}", r.id);
    Ok(0)
}

/// One IPAM config per `--subnet`; a `--gateway` or `--ip-range` goes with the subnet of its
/// address family (one subnet per family is what berth's networks take), or makes an entry of
/// its own that the daemon refuses by name.
fn ipam_configs(
    subnets: &[String],
    gateways: &[String],
    ranges: &[String],
) -> Option<Vec<IpamConfig>> {
    let v6 = |s: &str| s.contains(':');
    let mut out: Vec<IpamConfig> = subnets
        .iter()
        .map(|s| IpamConfig {
            subnet: Some(s.clone()),
            ..Default::default()
        })
        .collect();
    for (vals, is_gw) in [(gateways, true), (ranges, false)] {
        for g in vals {
            let slot = out.iter().position(|c| {
                c.subnet.as_deref().is_some_and(|s| v6(s) == v6(g))
                    && if is_gw {
                        c.gateway.is_none()
                    } else {
                        c.ip_range.is_none()
                    }
            });
            let i = slot.unwrap_or_else(|| {
                out.push(IpamConfig::default());
                out.len() - 1
            });
            if is_gw {
                out[i].gateway = Some(g.clone());
            } else {
                out[i].ip_range = Some(g.clone());
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

async fn get_json(client: &Client, path: &str) -> Result<Option<serde_json::Value>> {
    let r = super::raw::send(client, "GET", path).await?;
    match r.status {
        404 => Ok(None),
        200 => Ok(Some(r.json().await?)),
        _ => Err(r.json().await.err().unwrap_or_else(|| CliError::Daemon {
            status: 500,
            message: format!("GET {path} failed"),
        })),
    }
}

async fn ls(client: &Client, a: LsArgs) -> Result<i32> {
    let q = filter_query(&a.filter)?;
    let v = get_json(client, &format!("/networks{q}"))
        .await?
        .unwrap_or_else(|| serde_json::json!([]));
    let mut nets: Vec<serde_json::Value> = v.as_array().cloned().unwrap_or_default();
    nets.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let id = |n: &serde_json::Value| {
        let full = n["Id"].as_str().unwrap_or("").to_string();
        if a.no_trunc {
            full
        } else {
            full.chars().take(12).collect()
        }
    };
    if a.quiet {
        for n in &nets {
            outln!("{}", id(n));
        }
        return Ok(0);
    }
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "table")
    {
        let fmt = Format::parse(f).map_err(CliError::Usage)?;
        let rows: Vec<gtmpl_value::Value> = nets
            .iter()
            .map(|n| {
                format::from_json(&serde_json::json!({
                    "ID": id(n), "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                    "IPv6": n["EnableIPv6"], "Internal": n["Internal"], "CreatedAt": n["Created"],
                    "Labels": n["Labels"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                }))
            })
            .collect();
        out!("{}", fmt.render_all(&rows, None).map_err(CliError::Usage)?);
        return Ok(0);
    }
    let mut lines = vec!["NETWORK ID\tNAME\tDRIVER\tSCOPE".to_string()];
    for n in &nets {
        lines.push(format!(
            "{}\t{}\t{}\t{}",
            id(n),
            n["Name"].as_str().unwrap_or(""),
            n["Driver"].as_str().unwrap_or(""),
            n["Scope"].as_str().unwrap_or("")
        ));
    }
    out!("{}", format::tabwrite(&lines));
    Ok(0)
}

async fn inspect(client: &Client, a: InspectArgs) -> Result<i32> {
    let lookup = |n: String| async move {
        Ok(get_json(client, &format!("/networks/{n}"))
            .await?
            .ok_or_else(|| format!("Error response from daemon: network {n} not found")))
    };
    let print = Print {
        template: |v: &serde_json::Value| Ok(format::from_json(v)),
        json: |items: &[serde_json::Value]| {
            Ok(serde_json::to_string_pretty(items).unwrap_or_else(|_| "[]".into()))
        },
    };
    inspect::inspect(&a.networks, a.format.as_deref(), lookup, print).await
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    let done = each_line(&a.networks, |n| async move {
        match client.docker.remove_network(&n).await {
            Ok(()) => Ok(Some(n)),
            Err(e) => match client.err("network rm", e) {
                CliError::Daemon { status: 404, .. } if a.force => Ok(None),
                e => Err(e),
            },
        }
    })
    .await;
    if done.is_err() {
        // docker 28's network rm ends its errors with this line
        eprintln!("exit status 1");
    }
    done
}

async fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    let q = filter_query(&a.filter)?;
    let r = super::raw::send(client, "POST", &format!("/networks/prune{q}")).await?;
    let v = r.json().await?;
    let gone: Vec<String> = v["NetworksDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    if !gone.is_empty() {
        outln!("Deleted Networks:");
        for n in gone {
            outln!("{n}");
        }
    }
    Ok(0)
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(client: &Client, a: PortArgs) -> Result<i32> {
    let Some(v) = get_json(client, &format!("/containers/{}/json", a.container)).await? else {
        eprintln!(
            "Error response from daemon: No such container: {}",
            a.container
        );
        return Err(CliError::Reported { code: 1 });
    };
    let want = a.port.as_deref().map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut keys: Vec<(String, serde_json::Value)> = v["NetworkSettings"]["Ports"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    keys.sort_by(|x, y| x.0.cmp(&y.0));
    let mut found = false;
    for (k, binds) in keys {
        if want.as_ref().is_some_and(|w| *w != k) {
            continue;
        }
        for b in binds.as_array().into_iter().flatten() {
            found = true;
            let addr = format!(
                "{}:{}",
                b["HostIp"].as_str().unwrap_or(""),
                b["HostPort"].as_str().unwrap_or("")
            );
            if want.is_some() {
                outln!("{addr}");
            } else {
                outln!("{k} -> {addr}");
            }
        }
    }
    if let (Some(_), false) = (want, found) {
        let asked = a.port.as_deref().unwrap_or("");
        eprintln!(
            "Error: No public port '{asked}' published for {}",
            a.container
        );
        return Err(CliError::Reported { code: 1 });
    }
    Ok(0)
}

fn parse_range(s: &str, what: &str) -> std::result::Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| format!("invalid {what}: {s}"))?;
    let b: u16 = b.parse().map_err(|_| format!("invalid {what}: {s}"))?;
    if b < a {
        return Err(format!("invalid {what} range: {s}"));
    }
    Ok((a, b))
}

/// `-p [ip:][hostPort:]containerPort[/proto]` (ranges too) → the create body's port map and
/// exposed ports, as the docker CLI builds them.
pub fn parse_publish(items: &[String]) -> std::result::Result<(PortMap, Vec<String>), String> {
    let mut map: PortMap = HashMap::new();
    let mut exposed = Vec::new();
    for item in items {
        let (rest, proto) = match item.rsplit_once('/') {
            Some((r, p)) => (r, p.to_ascii_lowercase()),
            None => (item.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto: {proto}"));
        }
        // an IPv6 host address is bracketed: [::1]:8080:80
        let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, r) = r
                .split_once("]:")
                .ok_or_else(|| format!("invalid IP address in {item}"))?;
            (ip.to_string(), r.to_string())
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.len() {
                1 | 2 => (String::new(), rest.to_string()),
                3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
                _ => return Err(format!("invalid port format for --publish: {item}")),
            }
        };
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
        let (host, cont) = match rest.split_once(':') {
            Some((h, c)) => (h.to_string(), c.to_string()),
            None => (String::new(), rest.clone()),
        };
        let (c0, c1) = parse_range(&cont, "containerPort")?;
        if c0 == 0 {
            return Err(format!("invalid containerPort: {cont}"));
        }
        let hostr = if host.is_empty() {
            None
        } else {
            Some(parse_range(&host, "hostPort")?)
        };
        if let Some((h0, h1)) = hostr {
            if h1 - h0 != c1 - c0 && h0 != h1 && c0 != c1 {
                return Err(format!(
                    "invalid ranges specified for container and host Ports: {cont} and {host}"
                ));
            }
        }
        for (i, cp) in (c0..=c1).enumerate() {
            let hp = match hostr {
                None => String::new(),
                // a host range for one container port: the daemon picks one of it
                Some((h0, h1)) if c0 == c1 && h0 != h1 => format!("{h0}-{h1}"),
                Some((h0, _)) => (h0 + i as u16).to_string(),
            };
            let key = format!("{cp}/{proto}");
            exposed.push(key.clone());
            map.entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(hp),
                });
        }
    }
    Ok((map, exposed))
}

/// `run --ip6`: the IPv6 address of the endpoint on `--network`, beside what `run_parts` made.
pub fn with_ip6(
    networking: Option<bollard::models::NetworkingConfig>,
    network: Option<&str>,
    ip6: Option<&str>,
) -> Option<bollard::models::NetworkingConfig> {
    let Some(ip6) = ip6 else { return networking };
    let mut n = networking.unwrap_or_default();
    let ep = n
        .endpoints_config
        .get_or_insert_with(Default::default)
        .entry(network.unwrap_or("default").to_string())
        .or_default();
    ep.ipam_config
        .get_or_insert_with(Default::default)
        .ipv6_address = Some(ip6.to_string());
    Some(n)
}

/// The parts of a create body that `run`'s network flags make: the port map, the exposed
/// ports (`-p` ones and `--expose`), and the endpoint settings of `--ip`, `--network-alias`
/// and `--mac-address` for the `--network` (docker names the default one "default").
#[allow(clippy::type_complexity)]
pub fn run_parts(
    publish: &[String],
    expose: &[String],
    network: Option<&str>,
    ip: Option<&str>,
    aliases: &[String],
    mac: Option<&str>,
) -> Result<(
    Option<PortMap>,
    Option<Vec<String>>,
    Option<bollard::models::NetworkingConfig>,
)> {
    let (map, mut exposed) = parse_publish(publish)
        .map_err(|e| CliError::Usage(format!("invalid argument for -p: {e}")))?;
    for e in expose {
        let (p, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let (a, b) = parse_range(p, "port")
            .map_err(|x| CliError::Usage(format!("invalid argument for --expose: {x}")))?;
        for port in a..=b {
            exposed.push(format!("{port}/{proto}"));
        }
    }
    exposed.sort();
    exposed.dedup();
    let networking = if ip.is_some() || !aliases.is_empty() || mac.is_some() {
        let mut m = HashMap::new();
        m.insert(
            network.unwrap_or("default").to_string(),
            EndpointSettings {
                ipam_config: ip.map(|ip| EndpointIpamConfig {
                    ipv4_address: Some(ip.to_string()),
                    ..Default::default()
                }),
                aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                mac_address: mac.map(str::to_string),
                ..Default::default()
            },
        );
        Some(bollard::models::NetworkingConfig {
            endpoints_config: Some(m),
        })
    } else {
        None
    };
    Ok((
        (!map.is_empty()).then_some(map),
        (!exposed.is_empty()).then_some(exposed),
        networking,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_configs_pair_by_family() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = ipam_configs(
            &v(&["10.1.0.0/24", "fd00:1::/64"]),
            &v(&["fd00:1::9", "10.1.0.9"]),
            &v(&["10.1.0.128/25"]),
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].gateway.as_deref(), Some("10.1.0.9"));
        assert_eq!(c[0].ip_range.as_deref(), Some("10.1.0.128/25"));
        assert_eq!(c[1].gateway.as_deref(), Some("fd00:1::9"));
        assert!(ipam_configs(&[], &[], &[]).is_none());
        assert_eq!(
            ipam_configs(&[], &v(&["10.0.0.1"]), &[]).map(|c| c.len()),
            Some(1)
        );
    }

    fn one(s: &str) -> (PortMap, Vec<String>) {
        parse_publish(&[s.to_string()]).unwrap()
    }

    #[test]
    fn publish_specs() {
        let (m, e) = one("8080:80");
        assert_eq!(e, vec!["80/tcp"]);
        assert_eq!(
            m["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        let (m, _) = one("127.0.0.1::53/udp");
        let b = &m["53/udp"].as_ref().unwrap()[0];
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.host_port.as_deref(), Some(""));
        let (m, e) = one("9000-9001:80-81");
        assert_eq!(e.len(), 2);
        assert_eq!(
            m["81/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("9001")
        );
        let (m, _) = one("9000-9010:80");
        assert_eq!(
            m["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("9000-9010")
        );
        let (m, _) = one("80");
        assert_eq!(
            m["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("")
        );
        for bad in [
            "80x",
            "a:80",
            "1:2:3:4",
            "80/icmp",
            "0",
            "9000-9001:80-82",
            "300.1.1.1:80:80",
        ] {
            assert!(parse_publish(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
