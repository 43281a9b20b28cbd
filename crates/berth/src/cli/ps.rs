//! `ps`: the container list with docker's columns, truncation, filters and `--format`.

use std::collections::HashMap;

use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptions;
use serde_json::json;

use super::format::{self, Format};
use super::{CliError, Client, Result};

const DEFAULT_FORMAT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

#[derive(clap::Args, Debug, Clone)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i32,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

/// `-f k=v` flags → the API's filter map.
pub fn filters(items: &[String]) -> Result<Option<HashMap<String, Vec<String>>>> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for f in items {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("bad format of filter (expected name=value): {f}"))
        })?;
        m.entry(k.trim().to_ascii_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(Some(m))
}

/// docker's Ellipsis: at most `max` characters, the last one "…" when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn short_id(id: &str, trunc: bool) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if trunc {
        id.chars().take(12).collect()
    } else {
        id.to_string()
    }
}

/// The fields docker's ps templates see, as strings, for one container.
pub fn fields(c: &ContainerSummary, trunc: bool, now: i64) -> serde_json::Value {
    let id = short_id(c.id.as_deref().unwrap_or(""), trunc);
    let image = c.image.clone().unwrap_or_default();
    let image = if trunc && image.starts_with("sha256:") {
        short_id(&image, true)
    } else {
        image
    };
    let mut command = c.command.clone().unwrap_or_default();
    if trunc {
        command = ellipsis(&command, 20);
    }
    let command = serde_json::Value::String(command).to_string();
    let names: Vec<String> = c
        .names
        .iter()
        .flatten()
        .map(|n| n.trim_start_matches('/').to_string())
        // a name with another slash is a link's alias, which docker hides unless --no-trunc
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    let created = c.created.unwrap_or(0);
    let created_at = chrono::DateTime::from_timestamp(created, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default();
    let mut labels: Vec<String> = c
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mut ports: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let typ = p
                .typ
                .map(|t| t.to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "tcp".into());
            match (p.ip.as_deref(), p.public_port) {
                (Some(ip), Some(pp)) if !ip.is_empty() => {
                    let ip = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    };
                    format!("{ip}:{pp}->{}/{typ}", p.private_port)
                }
                _ => format!("{}/{typ}", p.private_port),
            }
        })
        .collect();
    ports.sort();
    ports.dedup();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let name = m
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| m.source.clone())
                .unwrap_or_default();
            if trunc {
                ellipsis(&name, 15)
            } else {
                name
            }
        })
        .collect();
    let local_volumes = c
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.driver.as_deref() == Some("local"))
        .count();
    let mut networks: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let rw = format::human_size(c.size_rw.unwrap_or(0) as f64);
    let size = match c.size_root_fs.filter(|r| *r > 0) {
        Some(r) => format!("{rw} (virtual {})", format::human_size(r as f64)),
        None => rw,
    };
    json!({
        "ID": id,
        "Image": image,
        "Command": command,
        "CreatedAt": created_at,
        "RunningFor": format!("{} ago", format::human_duration(now - created)),
        "Ports": ports.join(", "),
        "State": c.state.map(|s| s.to_string()).unwrap_or_default(),
        "Status": c.status.clone().unwrap_or_default(),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Networks": networks.join(","),
        "Platform": null,
        format::LABELS_KEY: c.labels.clone().unwrap_or_default(),
    })
}

fn header() -> serde_json::Value {
    json!({
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Size": "SIZE",
        "Names": "NAMES",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Networks": "NETWORKS",
    })
}

pub async fn ps(client: &Client, a: PsArgs) -> Result<i32> {
    let limit = if a.latest { 1 } else { a.last };
    let options = ListContainersOptions {
        all: a.all || limit > 0,
        limit: (limit > 0).then_some(limit),
        size: a.size,
        filters: filters(&a.filter)?,
    };
    let list = client
        .docker
        .list_containers(Some(options))
        .await
        .map_err(|e| client.err("list containers", e))?;
    let trunc = !a.no_trunc;
    if a.quiet {
        for c in &list {
            outln!("{}", short_id(c.id.as_deref().unwrap_or(""), trunc));
        }
        return Ok(0);
    }
    let spec = match a.format.as_deref() {
        None | Some("") | Some("table") => {
            if a.size {
                format!("{DEFAULT_FORMAT}\t{{{{.Size}}}}")
            } else {
                DEFAULT_FORMAT.to_string()
            }
        }
        Some("json") => "{{json .}}".to_string(),
        Some(f) => f.to_string(),
    };
    let fmt = Format::parse(&spec).map_err(CliError::Usage)?;
    let now = chrono::Utc::now().timestamp();
    let items: Vec<_> = list
        .iter()
        .map(|c| format::from_json(&fields(c, trunc, now)))
        .collect();
    let out = fmt
        .render_all(&items, Some(&format::from_json(&header())))
        .map_err(CliError::Usage)?;
    out!("{out}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_docker_strings() {
        let c = ContainerSummary {
            id: Some("0123456789abcdef0123".into()),
            names: Some(vec!["/web".into(), "/other/alias".into()]),
            image: Some("busybox".into()),
            command: Some("sh -c 'while true; do sleep 1; done'".into()),
            created: Some(1_000),
            status: Some("Up 2 seconds".into()),
            labels: Some(HashMap::from([
                ("b".into(), "2".into()),
                ("a".into(), "1".into()),
            ])),
            ..Default::default()
        };
        let f = fields(&c, true, 1_030);
        assert_eq!(f["ID"], "0123456789ab");
        assert_eq!(f["Names"], "web");
        assert_eq!(f["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(f["RunningFor"], "30 seconds ago");
        assert_eq!(f["Labels"], "a=1,b=2");
        assert_eq!(f["CreatedAt"], "1970-01-01 00:16:40 +0000 UTC");
        let f = fields(&c, false, 1_030);
        assert_eq!(f["ID"], "0123456789abcdef0123");
        assert_eq!(f["Command"], "\"sh -c 'while true; do sleep 1; done'\"");
    }

    #[test]
    fn filters_group_by_key() {
        let f = filters(&["name=a".into(), "name=b".into(), "status=exited".into()])
            .expect("valid")
            .expect("some");
        assert_eq!(f["name"], vec!["a", "b"]);
        assert_eq!(f["status"], vec!["exited"]);
        assert!(filters(&["bogus".into()]).is_err());
    }

    #[test]
    fn default_table_renders_a_header() {
        let fmt = Format::parse(DEFAULT_FORMAT).expect("parses");
        let out = fmt
            .render_all(&[], Some(&format::from_json(&header())))
            .expect("renders");
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
        );
    }
}
