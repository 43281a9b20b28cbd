//! The container command group: the top-level commands (`berth run`, `berth ps`, ...), their
//! `berth container ...` forms, and the small ones (stop, kill, rm, logs, top, ...) whose whole
//! work is one API call per container.

use std::io::Write;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    KillContainerOptions, LogsOptions, PruneContainersOptions, RemoveContainerOptions,
    RenameContainerOptions, RestartContainerOptions, StopContainerOptions, TopOptions,
};
use futures_util::StreamExt;

use super::each::{each, each_line};
use super::exec::{self, ExecArgs};
use super::format;
use super::inspect::{self, Print};
use super::opts::RunOpts;
use super::ps::{self, PsArgs};
use super::run::{self, AttachArgs, StartArgs};
use super::system::{self, FormatArgs};
use super::{CliError, Client, Result};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(Box<RunOpts>),
    /// Create a new container
    Create(Box<RunOpts>),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Containers),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Pause all processes within one or more containers
    Pause(Containers),
    /// Unpause all processes within one or more containers
    Unpause(Containers),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Return low-level information on Docker objects
    Inspect(InspectArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Show the berth version information
    Version(FormatArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerSub),
    /// Manage volumes
    #[command(subcommand)]
    Volume(super::volume::VolumeCommand),
    /// Get real time events from the server
    Events(super::events::EventsArgs),
    #[command(flatten)]
    Dayops(super::dayops::DayopsCommand),
    /// Manage berth
    #[command(subcommand)]
    System(super::dayops::SystemSub),
    /// Manage networks
    #[command(subcommand)]
    Network(super::network::NetworkSub),
    /// List port mappings or a specific mapping for the container
    Port(super::network::PortArgs),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ContainerSub {
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(PsArgs),
    /// Create and run a new container from an image
    Run(Box<RunOpts>),
    /// Create a new container
    Create(Box<RunOpts>),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Containers),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Pause all processes within one or more containers
    Pause(Containers),
    /// Unpause all processes within one or more containers
    Unpause(Containers),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    #[command(flatten)]
    Dayops(super::dayops::DayopsCommand),
}

impl ContainerCommand {
    /// Commands whose failures docker reports with 125/126/127 rather than 1.
    pub fn is_run_like(&self) -> bool {
        matches!(
            self,
            ContainerCommand::Run(_)
                | ContainerCommand::Create(_)
                | ContainerCommand::Container(ContainerSub::Run(_))
                | ContainerCommand::Container(ContainerSub::Create(_))
        )
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct Containers {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        allow_hyphen_values = true
    )]
    pub timeout: Option<i32>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    /// Return JSON for specified type
    #[arg(long = "type")]
    pub typ: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn dispatch(client: &Client, cmd: ContainerCommand) -> Result<i32> {
    use ContainerCommand as C;
    use ContainerSub as S;
    match cmd {
        C::Run(o) | C::Container(S::Run(o)) => run::run(client, *o).await,
        C::Create(o) | C::Container(S::Create(o)) => run::create_cmd(client, *o).await,
        C::Start(a) | C::Container(S::Start(a)) => run::start(client, a).await,
        C::Attach(a) | C::Container(S::Attach(a)) => run::attach(client, a).await,
        C::Wait(a) | C::Container(S::Wait(a)) => wait(client, a).await,
        C::Logs(a) | C::Container(S::Logs(a)) => logs(client, a).await,
        C::Stop(a) | C::Container(S::Stop(a)) => stop(client, a, false).await,
        C::Restart(a) | C::Container(S::Restart(a)) => stop(client, a, true).await,
        C::Kill(a) | C::Container(S::Kill(a)) => kill(client, a).await,
        C::Pause(a) | C::Container(S::Pause(a)) => pause(client, a, true).await,
        C::Unpause(a) | C::Container(S::Unpause(a)) => pause(client, a, false).await,
        C::Rm(a) | C::Container(S::Rm(a)) => rm(client, a).await,
        C::Ps(a) | C::Container(S::Ls(a)) => ps::ps(client, a).await,
        C::Inspect(a) => inspect(client, a, false).await,
        C::Container(S::Inspect(a)) => inspect(client, a, true).await,
        C::Exec(a) | C::Container(S::Exec(a)) => exec::exec(client, a).await,
        C::Top(a) | C::Container(S::Top(a)) => top(client, a).await,
        C::Rename(a) | C::Container(S::Rename(a)) => rename(client, a).await,
        C::Container(S::Prune(a)) => prune(client, a).await,
        C::Version(a) => system::version(client, a).await,
        C::Info(a) => system::info(client, a).await,
        C::Volume(v) => super::volume::dispatch(client, v).await,
        C::Events(a) => super::events::events(client, a).await,
        C::Dayops(d) | C::Container(S::Dayops(d)) => super::dayops::dispatch(client, d).await,
        C::System(s) => super::dayops::system(client, s).await,
        C::Network(n) => super::network::dispatch(client, n).await,
        C::Port(a) => super::network::port(client, a).await,
    }
}

async fn stop(client: &Client, a: StopArgs, restart: bool) -> Result<i32> {
    each(&a.containers, |c| {
        let signal = a.signal.clone();
        let t = a.timeout;
        async move {
            let r = if restart {
                client
                    .docker
                    .restart_container(&c, Some(RestartContainerOptions { signal, t }))
                    .await
            } else {
                client
                    .docker
                    .stop_container(&c, Some(StopContainerOptions { signal, t }))
                    .await
            };
            r.map_err(|e| client.err("stop", e))
        }
    })
    .await
}

async fn kill(client: &Client, a: KillArgs) -> Result<i32> {
    let signal = a.signal.clone().unwrap_or_else(|| "KILL".into());
    each(&a.containers, |c| {
        let signal = signal.clone();
        async move {
            client
                .docker
                .kill_container(&c, Some(KillContainerOptions { signal }))
                .await
                .map_err(|e| client.err("kill", e))
        }
    })
    .await
}

async fn pause(client: &Client, a: Containers, pause: bool) -> Result<i32> {
    each(&a.containers, |c| async move {
        let r = if pause {
            client.docker.pause_container(&c).await
        } else {
            client.docker.unpause_container(&c).await
        };
        r.map_err(|e| client.err("pause", e))
    })
    .await
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    each(&a.containers, |c| async move {
        client
            .docker
            .remove_container(
                &c,
                Some(RemoveContainerOptions {
                    v: a.volumes,
                    force: a.force,
                    link: a.link,
                }),
            )
            .await
            .map_err(|e| client.err("remove", e))
    })
    .await
}

async fn wait(client: &Client, a: Containers) -> Result<i32> {
    each_line(&a.containers, |c| async move {
        let w = super::wait::register(client, &c, "not-running").await?;
        w.status().await.map(Some)
    })
    .await
}

async fn rename(client: &Client, a: RenameArgs) -> Result<i32> {
    let name = a.new_name.trim_start_matches('/').to_string();
    if name.is_empty() {
        return Err(CliError::Usage(
            "Neither old nor new names may be empty".into(),
        ));
    }
    client
        .docker
        .rename_container(&a.container, RenameContainerOptions { name })
        .await
        .map_err(|e| {
            eprintln!("{}", client.err("rename", e));
            eprintln!("Error: failed to rename container named {}", a.container);
            CliError::Reported { code: 1 }
        })?;
    Ok(0)
}

async fn top(client: &Client, a: TopArgs) -> Result<i32> {
    let ps_args = if a.ps_args.is_empty() {
        String::new()
    } else {
        a.ps_args.join(" ")
    };
    let top = client
        .docker
        .top_processes(&a.container, Some(TopOptions { ps_args }))
        .await
        .map_err(|e| client.err("top", e))?;
    let mut lines = vec![top.titles.unwrap_or_default().join("\t")];
    for p in top.processes.unwrap_or_default() {
        lines.push(p.join("\t"));
    }
    out!("{}", format::tabwrite_min(&lines, 20));
    Ok(0)
}

async fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force && !super::out::confirm("WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let filters = ps::filters(&a.filter)?;
    let r = client
        .docker
        .prune_containers(Some(PruneContainersOptions { filters }))
        .await
        .map_err(|e| client.err("prune", e))?;
    print_pruned(
        "Containers",
        &r.containers_deleted.unwrap_or_default(),
        r.space_reclaimed,
    );
    Ok(0)
}

/// A prune's report as docker prints it: what went (if anything), then the space it freed.
pub(super) fn print_pruned(what: &str, deleted: &[String], reclaimed: Option<i64>) {
    print_deleted(what, deleted);
    outln!(
        "Total reclaimed space: {}",
        format::human_size(reclaimed.unwrap_or(0) as f64)
    );
}

/// What a prune removed of one kind, as docker lists it (nothing when nothing went).
pub(super) fn print_deleted(what: &str, deleted: &[String]) {
    if !deleted.is_empty() {
        outln!("Deleted {what}:");
        for d in deleted {
            outln!("{d}");
        }
        outln!();
    }
}

/// `--since`/`--until`: a Unix time, an RFC 3339 time, or a duration back from now (`10m`).
pub fn parse_time(s: &str, now: i64) -> std::result::Result<i32, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Ok(v as i32);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return i32::try_from(t.timestamp()).map_err(|_| format!("time out of range: {s}"));
    }
    if let Ok(t) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let ts = t
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc().timestamp())
            .unwrap_or(0);
        return i32::try_from(ts).map_err(|_| format!("time out of range: {s}"));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| format!("invalid duration: {s}"))?;
        num.clear();
        total += n * match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(format!("invalid time or duration: {s}")),
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid time or duration: {s}"));
    }
    i32::try_from(now - total as i64).map_err(|_| format!("time out of range: {s}"))
}

async fn logs(client: &Client, a: LogsArgs) -> Result<i32> {
    let now = chrono::Utc::now().timestamp();
    let time = |flag: &str, v: &Option<String>| -> Result<i32> {
        match v {
            None => Ok(0),
            Some(s) => parse_time(s, now)
                .map_err(|e| CliError::Usage(format!("invalid value for \"{flag}\": {e}"))),
        }
    };
    let options = LogsOptions {
        follow: a.follow,
        stdout: true,
        stderr: true,
        since: time("since", &a.since)?,
        until: time("until", &a.until)?,
        timestamps: a.timestamps,
        tail: a.tail.clone(),
    };
    let mut stream = client.docker.logs(&a.container, Some(options));
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| client.err("logs", e))?;
        let (to_err, bytes) = match item {
            LogOutput::StdErr { message } => (true, message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => (false, message),
            LogOutput::StdIn { .. } => continue,
        };
        let res = if to_err {
            let mut e = std::io::stderr().lock();
            e.write_all(&bytes).and_then(|_| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&bytes).and_then(|_| o.flush())
        };
        res.map_err(|e| CliError::Io {
            op: "write logs".into(),
            source: e,
        })?;
    }
    Ok(0)
}

/// One object's inspect JSON, as the daemon sent it; None when there is no such object.
async fn inspect_raw(client: &Client, path: &str) -> Result<Option<String>> {
    let r = super::raw::send(client, "GET", path).await?;
    match r.status {
        404 => Ok(None),
        200 => {
            let body = r.body().await?;
            Ok(Some(String::from_utf8_lossy(&body).trim().to_string()))
        }
        _ => Err(r.json().await.err().unwrap_or_else(|| CliError::Daemon {
            status: 500,
            message: format!("inspect {path} failed"),
        })),
    }
}

async fn inspect(client: &Client, a: InspectArgs, containers_only: bool) -> Result<i32> {
    let typ = if containers_only {
        Some("container".to_string())
    } else {
        a.typ.clone()
    };
    if let Some(t) = typ
        .as_deref()
        .filter(|t| !matches!(*t, "container" | "image"))
    {
        eprintln!("unknown type: \"{t}\": must be one of \"container\", \"image\"");
        return Err(CliError::Reported { code: 1 });
    }
    let typ = typ.as_deref();
    let lookup = |n: String| async move {
        let mut found = None;
        if typ != Some("image") {
            let size = if a.size { "?size=1" } else { "" };
            found = inspect_raw(client, &format!("/containers/{n}/json{size}")).await?;
        }
        if found.is_none() && typ != Some("container") {
            found = inspect_raw(client, &format!("/images/{n}/json")).await?;
        }
        Ok(found.ok_or_else(|| match typ {
            Some("container") => format!("Error: No such container: {n}"),
            Some("image") => format!("Error: No such image: {n}"),
            _ => format!("Error: No such object: {n}"),
        }))
    };
    let print = Print {
        // docker's CLI decodes containers and images alike into Go types (null lists print
        // as `[]`)
        template: |it: &String| {
            Ok(format::typed(format::from_json(&inspect::parse(
                it, "inspect",
            )?)))
        },
        json: |items: &[String]| {
            // docker 23+: `--format json` is the array on one line, keys sorted as Go prints
            if a.format.as_deref() != Some("json") {
                return Ok(inspect::indented(items));
            }
            let parts = items
                .iter()
                .map(|it| Ok(format::go_json(&inspect::parse(it, "inspect")?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(format!("[{}]", parts.join(",")))
        },
    };
    inspect::inspect(&a.names, a.format.as_deref(), lookup, print).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times() {
        let now = 1_700_000_000;
        assert_eq!(parse_time("10m", now), Ok(now as i32 - 600));
        assert_eq!(parse_time("1h30m", now), Ok(now as i32 - 5400));
        assert_eq!(parse_time("1699999999", now), Ok(1_699_999_999));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000));
        assert!(parse_time("soon", now).is_err());
        assert!(parse_time("10", now).is_ok());
        assert!(parse_time("5x", now).is_err());
    }
}
