//! `berth volume create|ls|inspect|rm|prune`, with docker's flags and output.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, PruneVolumesOptions, RemoveVolumeOptions};

use super::each::each;
use super::format::{self, Format};
use super::inspect::{self, Print};
use super::{CliError, Client, Result};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long)]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long, hide = true)]
    pub name: Option<String>,
    pub volume: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn dispatch(client: &Client, cmd: VolumeCommand) -> Result<i32> {
    match cmd {
        VolumeCommand::Create(a) => create(client, a).await,
        VolumeCommand::Ls(a) => ls(client, a).await,
        VolumeCommand::Inspect(a) => inspect(client, a).await,
        VolumeCommand::Rm(a) => rm(client, a).await,
        VolumeCommand::Prune(a) => prune(client, a).await,
    }
}

/// `k=v` pairs of `--label` / `--opt`; a bare `k` is `k=""`.
fn pairs(flag: &str, items: &[String]) -> Result<HashMap<String, String>> {
    super::opts::key_value_map(items, |it| {
        format!("invalid {flag} {it:?}: a key is needed")
    })
}

async fn create(client: &Client, a: CreateArgs) -> Result<i32> {
    let name = match (a.name, a.volume) {
        (Some(n), Some(v)) if n != v => {
            return Err(CliError::Usage(format!(
                "conflicting options: either specify --name or provide positional arg, not both ({n} and {v})"
            )))
        }
        (n, v) => n.or(v),
    };
    let req = VolumeCreateRequest {
        name,
        driver: Some(a.driver),
        driver_opts: Some(pairs("--opt", &a.opt)?),
        labels: Some(pairs("--label", &a.label)?),
        ..Default::default()
    };
    let v = client
        .docker
        .create_volume(req)
        .await
        .map_err(|e| client.err("create volume", e))?;
    outln!("{}", v.name);
    Ok(0)
}

/// A volume as docker's templates see it: `.Name`, `.Driver`, `.Scope`, `.Mountpoint`,
/// `.Labels` as `k=v,...`, `.Links`, `.Size` (both "N/A" without `system df`).
fn context(v: &serde_json::Value) -> serde_json::Value {
    let mut labels: Vec<String> = v["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    serde_json::json!({
        "Name": v["Name"], "Driver": v["Driver"], "Scope": v["Scope"],
        "Mountpoint": v["Mountpoint"], "Labels": labels.join(","),
        "Links": "N/A", "Size": "N/A", "CreatedAt": v["CreatedAt"],
    })
}

async fn ls(client: &Client, a: LsArgs) -> Result<i32> {
    let filters = super::ps::filters(&a.filter)?;
    let r = client
        .docker
        .list_volumes(Some(ListVolumesOptions { filters }))
        .await
        .map_err(|e| client.err("list volumes", e))?;
    let mut vols: Vec<serde_json::Value> = r
        .volumes
        .unwrap_or_default()
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    vols.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    for w in r.warnings.iter().flatten() {
        eprintln!("WARNING: {w}");
    }
    if a.quiet {
        for v in &vols {
            outln!("{}", v["Name"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let spec = a
        .format
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "table {{.Driver}}\t{{.Name}}".into());
    let fmt = Format::parse(&spec).map_err(CliError::Usage)?;
    let items: Vec<_> = vols
        .iter()
        .map(|v| format::from_json(&context(v)))
        .collect();
    let header = format::from_json(&serde_json::json!({
        "Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "CreatedAt": "CREATED",
    }));
    let out = fmt
        .render_all(&items, Some(&header))
        .map_err(CliError::Usage)?;
    out!("{out}");
    Ok(0)
}

async fn inspect(client: &Client, a: InspectArgs) -> Result<i32> {
    let lookup = |n: String| async move {
        let r = super::raw::send(client, "GET", &format!("/volumes/{n}")).await?;
        Ok(match r.status {
            200 => {
                let body = r.body().await?;
                Ok(String::from_utf8_lossy(&body).trim().to_string())
            }
            404 => Err(format!("Error: No such volume: {n}")),
            _ => Err(match r.json().await {
                Ok(v) => format!(
                    "Error response from daemon: {}",
                    v["message"].as_str().unwrap_or("inspect failed")
                ),
                Err(e) => e.to_string(),
            }),
        })
    };
    let print = Print {
        template: |it: &String| Ok(format::from_json(&inspect::parse(it, "volume inspect")?)),
        json: |items: &[String]| Ok(inspect::indented(items)),
    };
    inspect::inspect(&a.volumes, a.format.as_deref(), lookup, print).await
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    each(&a.volumes, |n| async move {
        client
            .docker
            .remove_volume(&n, Some(RemoveVolumeOptions { force: a.force }))
            .await
            .map_err(|e| client.err("remove volume", e))
    })
    .await
}

async fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force {
        let what = if a.all {
            "all volumes not used by at least one container"
        } else {
            "all anonymous local volumes not used by at least one container"
        };
        if !super::out::confirm(&format!("WARNING! This will remove {what}.")) {
            return Ok(0);
        }
    }
    let mut filters = super::ps::filters(&a.filter)?.unwrap_or_default();
    if a.all {
        filters.insert("all".into(), vec!["true".into()]);
    }
    let r = client
        .docker
        .prune_volumes(Some(PruneVolumesOptions {
            filters: (!filters.is_empty()).then_some(filters),
        }))
        .await
        .map_err(|e| client.err("prune volumes", e))?;
    super::container::print_pruned(
        "Volumes",
        &r.volumes_deleted.unwrap_or_default(),
        r.space_reclaimed,
    );
    Ok(0)
}
