//! `stats`, `update`, `cp`, `export`, `commit`, `diff` and `system df|prune`: docker's flags,
//! columns and exit codes over the daemon's API.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerConfig, ContainerStatsResponse, ContainerUpdateBody};
use bollard::query_parameters::{
    CommitContainerOptions, ContainerArchiveInfoOptions, DownloadFromContainerOptions,
    ListContainersOptions, PruneContainersOptions, PruneImagesOptions, StatsOptions,
    UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;

use super::container::print_deleted;
use super::format::{self, Format};
use super::opts::{flag_value, parse_bytes_or_unlimited, parse_cpus, parse_restart};
use super::{CliError, Client, Result};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DayopsCommand {
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(DiffArgs),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SystemSub {
    /// Show docker disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Show the berth version information
    Version(super::system::FormatArgs),
    /// Display system-wide information
    Info(super::system::FormatArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub rates: Box<super::netfeat::UpdateRateArgs>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    pub quiet: bool,
    pub src: String,
    pub dst: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    pub repository: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

pub async fn dispatch(client: &Client, cmd: DayopsCommand) -> Result<i32> {
    match cmd {
        DayopsCommand::Stats(a) => stats(client, a).await,
        DayopsCommand::Update(a) => update(client, a).await,
        DayopsCommand::Cp(a) => cp(client, a).await,
        DayopsCommand::Export(a) => export(client, a).await,
        DayopsCommand::Commit(a) => commit(client, a).await,
        DayopsCommand::Diff(a) => diff(client, a).await,
    }
}

pub async fn system(client: &Client, cmd: SystemSub) -> Result<i32> {
    match cmd {
        SystemSub::Df(a) => df(client, a).await,
        SystemSub::Prune(a) => system_prune(client, a).await,
        SystemSub::Version(a) => super::system::version(client, a).await,
        SystemSub::Info(a) => super::system::info(client, a).await,
    }
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let op = op.into();
    move |source| CliError::Io { op, source }
}

// ---- stats ----

/// go-units' BytesSize: binary units, four significant digits (docker's MEM USAGE column).
pub fn bytes_size(size: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    format::scaled(size, 1024.0, &units, 4)
}

/// go-units' HumanSize: decimal units, four significant digits (docker's `system df`).
pub fn human_size4(size: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    format::scaled(size, 1000.0, &units, 4)
}

/// One row of `docker stats`, computed as the docker CLI computes it.
pub fn stats_row(s: &ContainerStatsResponse, shown: &str, no_trunc: bool) -> serde_json::Value {
    let id = s.id.clone().unwrap_or_default();
    let id = if no_trunc {
        id
    } else {
        id.chars().take(12).collect()
    };
    let name = s
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let pre = s.precpu_stats.clone().unwrap_or_default();
    let total = |c: &bollard::models::ContainerCpuStats| {
        c.cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0) as f64
    };
    let cpu_delta = total(&cpu) - total(&pre);
    let sys_delta =
        cpu.system_cpu_usage.unwrap_or(0) as f64 - pre.system_cpu_usage.unwrap_or(0) as f64;
    let online = cpu.online_cpus.unwrap_or(0).max(1) as f64;
    let cpu_perc = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = s.memory_stats.clone().unwrap_or_default();
    let stats = mem.stats.clone().unwrap_or_default();
    let usage = mem.usage.unwrap_or(0);
    // The page cache that can be dropped is not the container's use (docker's
    // calculateMemUsageUnixNoCache: total_inactive_file on v1, inactive_file on v2).
    let cache = stats
        .get("total_inactive_file")
        .or_else(|| stats.get("inactive_file"))
        .copied()
        .filter(|c| *c < usage)
        .unwrap_or(0);
    let mem_used = (usage - cache) as f64;
    let limit = mem.limit.unwrap_or(0) as f64;
    let mem_perc = if limit > 0.0 {
        mem_used / limit * 100.0
    } else {
        0.0
    };
    let (mut rd, mut wr) = (0u64, 0u64);
    for e in s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.clone())
        .unwrap_or_default()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += e.value.unwrap_or(0),
            Some("write") => wr += e.value.unwrap_or(0),
            _ => {}
        }
    }
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s.networks.clone().unwrap_or_default().values() {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let running = s.read.as_deref().is_some_and(|r| !r.starts_with("0001-"));
    let dash = |v: String| if running { v } else { "--".to_string() };
    serde_json::json!({
        "ID": id,
        "Container": shown,
        "Name": if name.is_empty() { "--".to_string() } else { name },
        "CPUPerc": dash(format!("{cpu_perc:.2}%")),
        "MemUsage": dash(format!("{} / {}", bytes_size(mem_used), bytes_size(limit))),
        "MemPerc": dash(format!("{mem_perc:.2}%")),
        "NetIO": dash(format!("{} / {}", format::human_size(rx as f64), format::human_size(tx as f64))),
        "BlockIO": dash(format!("{} / {}", format::human_size(rd as f64), format::human_size(wr as f64))),
        "PIDs": if running { s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0).to_string() } else { "--".to_string() },
    })
}

const STATS_FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn stats_header() -> serde_json::Value {
    serde_json::json!({
        "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

async fn sample(client: &Client, c: &str) -> Result<ContainerStatsResponse> {
    let mut s = client.docker.stats(
        c,
        Some(StatsOptions {
            stream: false,
            one_shot: false,
        }),
    );
    match s.next().await {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(client.err("stats", e)),
        None => Err(CliError::Usage(format!("no stats for container {c}"))),
    }
}

async fn stats(client: &Client, a: StatsArgs) -> Result<i32> {
    let spec = match a.format.as_deref() {
        None | Some("") | Some("table") => STATS_FORMAT.to_string(),
        Some("json") => "{{json .}}".to_string(),
        Some(f) => f.to_string(),
    };
    let fmt = Format::parse(&spec).map_err(CliError::Usage)?;
    let explicit = !a.containers.is_empty();
    loop {
        let names: Vec<String> = if explicit {
            a.containers.clone()
        } else {
            let mut filters = HashMap::new();
            if !a.all {
                filters.insert("status".to_string(), vec!["running".to_string()]);
            }
            client
                .docker
                .list_containers(Some(ListContainersOptions {
                    all: a.all,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .map_err(|e| client.err("list containers", e))?
                .into_iter()
                .filter_map(|c| c.id)
                .collect()
        };
        let samples = futures_util::future::join_all(names.iter().map(|n| sample(client, n))).await;
        let mut rows = Vec::new();
        for (n, s) in names.iter().zip(samples) {
            match s {
                Ok(s) => rows.push(format::from_json(&stats_row(&s, n, a.no_trunc))),
                Err(e) if explicit => {
                    eprintln!("{e}");
                    return Err(CliError::Reported { code: 1 });
                }
                // Gone between the list and the sample.
                Err(_) => {}
            }
        }
        let out = fmt
            .render_all(&rows, Some(&format::from_json(&stats_header())))
            .map_err(CliError::Usage)?;
        let mut stdout = std::io::stdout().lock();
        if a.no_stream {
            let _ = stdout.write_all(out.as_bytes());
            return Ok(0);
        }
        // Redraw in place, as docker does on a terminal; a closed pipe ends the command.
        if stdout
            .write_all(format!("\x1b[2J\x1b[H{out}").as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(0);
        }
    }
}

// ---- update ----

async fn update(client: &Client, a: UpdateArgs) -> Result<i32> {
    let bytes =
        |flag: &str, v: &Option<String>| flag_value(flag, v.as_deref(), parse_bytes_or_unlimited);
    let body = ContainerUpdateBody {
        blkio_weight: a.blkio_weight,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        nano_cpus: flag_value("--cpus", a.cpus.as_deref(), parse_cpus)?,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        cpu_shares: a.cpu_shares,
        memory: bytes("--memory", &a.memory)?,
        memory_reservation: bytes("--memory-reservation", &a.memory_reservation)?,
        memory_swap: bytes("--memory-swap", &a.memory_swap)?,
        pids_limit: a.pids_limit,
        // docker leaves the policy's check to the daemon and exits 1 when it refuses
        restart_policy: a
            .restart
            .as_deref()
            .map(|r| {
                parse_restart(r).map_err(|e| {
                    eprintln!("berth: invalid argument \"{r}\" for \"--restart\" flag: {e}");
                    CliError::Reported { code: 1 }
                })
            })
            .transpose()?,
        ..Default::default()
    };
    let (body, rate_args) = (&body, &a.rates);
    super::each::each(&a.containers, |c| async move {
        let rates = rate_args.changes();
        if !rates.is_empty() {
            super::netfeat::update_rate(client, &c, &rates).await?;
        }
        client
            .docker
            .update_container(&c, body.clone())
            .await
            .map_err(|e| client.err("update", e))
    })
    .await
}

// ---- cp ----

/// `CONTAINER:PATH` → (container, path); a local path has no container.
fn split_cp(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => (Some(c), p),
        _ => (None, arg),
    }
}

/// The last path element as docker's SplitPathDirEntry sees it (`/a/b/.` → `.`).
fn base_of(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

async fn cp(client: &Client, a: CpArgs) -> Result<i32> {
    match (split_cp(&a.src), split_cp(&a.dst)) {
        ((Some(c), src), (None, dst)) => copy_from(client, c, src, dst, a.follow_link).await,
        ((None, src), (Some(c), dst)) => copy_to(client, src, c, dst, a.archive).await,
        ((Some(_), _), (Some(_), _)) => Err(CliError::Usage(
            "copying between containers is not supported".into(),
        )),
        _ => Err(CliError::Usage(
            "must specify at least one container source".into(),
        )),
    }
}

/// The archive of the container path; with -L, of what a symlink there points to.
async fn copy_from(client: &Client, c: &str, src: &str, dst: &str, follow: bool) -> Result<i32> {
    let mut path = src.to_string();
    if follow {
        let st = client
            .docker
            .get_container_archive_info(c, Some(ContainerArchiveInfoOptions { path: path.clone() }))
            .await
            .map_err(|e| client.err("cp", e))?;
        if !st.link_target.is_empty() {
            path = st.link_target;
        }
    }
    let mut s = client
        .docker
        .download_from_container(c, Some(DownloadFromContainerOptions { path: path.clone() }));
    if dst == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| client.err("cp", e))?;
            out.write_all(&chunk).map_err(io("write to stdout"))?;
        }
        return Ok(0);
    }
    // Spooled, then unpacked on a blocking thread (the tar crate reads synchronously).
    let mut tmp = tempfile::tempfile().map_err(io("create a temporary file"))?;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| client.err("cp", e))?;
        tmp.write_all(&chunk).map_err(io("spool the archive"))?;
    }
    let src_base = base_of(&path);
    let dst = PathBuf::from(dst);
    tokio::task::spawn_blocking(move || unpack_local(tmp, &src_base, &dst))
        .await
        .map_err(|e| CliError::Usage(format!("cp: {e}")))??;
    Ok(0)
}

/// Unpacks into `dst` as `docker cp` does: into it if it is a directory, else as it (the
/// archive's top entry renamed). The tar crate's `unpack` keeps every entry inside the
/// directory it unpacks into, through symlinks too.
fn unpack_local(mut tmp: std::fs::File, src_base: &str, dst: &Path) -> Result<()> {
    use std::io::Seek;
    tmp.seek(std::io::SeekFrom::Start(0))
        .map_err(io("rewind the archive"))?;
    let into_dir = dst.is_dir() && src_base != ".";
    if into_dir || (src_base == "." && dst.is_dir()) {
        let mut ar = tar::Archive::new(tmp);
        ar.set_preserve_permissions(true);
        ar.set_overwrite(true);
        return ar
            .unpack(dst)
            .map_err(io(format!("extract into {}", dst.display())));
    }
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(CliError::Usage(format!(
            "destination directory {} does not exist",
            parent.display()
        )));
    }
    let stage = tempfile::Builder::new()
        .prefix(".berth-cp-")
        .tempdir_in(&parent)
        .map_err(io(format!("create a directory in {}", parent.display())))?;
    let mut ar = tar::Archive::new(tmp);
    ar.set_preserve_permissions(true);
    ar.unpack(stage.path())
        .map_err(io(format!("extract into {}", parent.display())))?;
    let top = if src_base == "." {
        stage.path().join(".")
    } else {
        stage.path().join(src_base)
    };
    if dst.is_dir() {
        // a directory's contents (`SRC/.`) merged into an existing directory
        for e in std::fs::read_dir(&top).map_err(io("read the copy"))? {
            let e = e.map_err(io("read the copy"))?;
            std::fs::rename(e.path(), dst.join(e.file_name()))
                .map_err(io(format!("move into {}", dst.display())))?;
        }
        return Ok(());
    }
    std::fs::rename(&top, dst).map_err(io(format!("create {}", dst.display())))
}

async fn copy_to(client: &Client, src: &str, c: &str, dst: &str, archive: bool) -> Result<i32> {
    let src_path = PathBuf::from(src);
    let src_md =
        std::fs::symlink_metadata(&src_path).map_err(io(format!("could not stat {src}")))?;
    // Where the archive goes, and the name its top entry takes there.
    let st = client
        .docker
        .get_container_archive_info(
            c,
            Some(ContainerArchiveInfoOptions {
                path: dst.to_string(),
            }),
        )
        .await;
    let dst_is_dir = match &st {
        Ok(s) => s.file_mode & (1 << 31) != 0 || dst.ends_with('/'),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            if dst.ends_with('/') {
                return Err(CliError::Daemon {
                    status: 404,
                    message: format!("Could not find the file {dst} in container {c}"),
                });
            }
            false
        }
        Err(_) => {
            return Err(st
                .err()
                .map(|e| client.err("cp", e))
                .unwrap_or_else(|| CliError::Usage("cp: stat failed".into())))
        }
    };
    let contents_only = src.ends_with("/.") && src_md.is_dir();
    let (target_dir, name) = if dst_is_dir {
        (dst.to_string(), base_of(src))
    } else {
        let t = dst.trim_end_matches('/');
        let (parent, base) = t.rsplit_once('/').unwrap_or((".", t));
        let parent = if parent.is_empty() { "/" } else { parent };
        (parent.to_string(), base.to_string())
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let builder = std::thread::spawn(move || -> std::io::Result<()> {
        struct W(tokio::sync::mpsc::Sender<Bytes>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Bytes::copy_from_slice(b))
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut t = tar::Builder::new(std::io::BufWriter::with_capacity(64 * 1024, W(tx)));
        t.follow_symlinks(false);
        t.mode(if archive {
            tar::HeaderMode::Complete
        } else {
            tar::HeaderMode::Deterministic
        });
        if contents_only {
            t.append_dir_all(".", &src_path)?;
        } else if src_md.is_dir() {
            t.append_dir_all(&name, &src_path)?;
        } else {
            t.append_path_with_name(&src_path, &name)?;
        }
        t.into_inner()?.flush()
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let res = client
        .docker
        .upload_to_container(
            c,
            Some(UploadToContainerOptions {
                path: target_dir,
                no_overwrite_dir_non_dir: Some("true".into()),
                copy_uidgid: archive.then(|| "true".into()),
            }),
            bollard::body_stream(stream),
        )
        .await;
    let built = builder
        .join()
        .map_err(|_| CliError::Usage("cp: the archive builder failed".into()))?;
    res.map_err(|e| client.err("cp", e))?;
    built.map_err(io(format!("archive {src}")))?;
    Ok(0)
}

// ---- export, commit, diff ----

async fn export(client: &Client, a: ExportArgs) -> Result<i32> {
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(io(format!("create {}", p.display())))?,
        )),
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(CliError::Usage(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
                ));
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let mut s = client.docker.export_container(&a.container);
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| client.err("export", e))?;
        out.write_all(&chunk).map_err(io("write the archive"))?;
    }
    out.flush().map_err(io("write the archive"))?;
    Ok(0)
}

async fn commit(client: &Client, a: CommitArgs) -> Result<i32> {
    let (repo, tag) = match a.repository.as_deref() {
        Some(r) => {
            let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
            match r[slash..].rfind(':') {
                Some(i) => (
                    Some(r[..slash + i].to_string()),
                    Some(r[slash + i + 1..].to_string()),
                ),
                None => (Some(r.to_string()), None),
            }
        }
        None => (None, None),
    };
    let r = client
        .docker
        .commit_container(
            CommitContainerOptions {
                container: Some(a.container.clone()),
                repo,
                tag,
                comment: a.message.clone(),
                author: a.author.clone(),
                pause: a.pause,
                changes: (!a.change.is_empty()).then(|| a.change.join("\n")),
            },
            ContainerConfig::default(),
        )
        .await
        .map_err(|e| client.err("commit", e))?;
    outln!("{}", r.id);
    Ok(0)
}

async fn diff(client: &Client, a: DiffArgs) -> Result<i32> {
    let changes = client
        .docker
        .container_changes(&a.container)
        .await
        .map_err(|e| client.err("diff", e))?
        .unwrap_or_default();
    let mut out = String::new();
    for c in changes {
        let k = match c.kind as i32 {
            0 => "C",
            1 => "A",
            _ => "D",
        };
        out.push_str(&format!("{k} {}\n", c.path));
    }
    // A closed pipe (`| head`) is not an error of the command.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(0)
}

// ---- system df, system prune ----

async fn df(client: &Client, a: DfArgs) -> Result<i32> {
    let v = super::raw::send(client, "GET", "/system/df").await?;
    let status = v.status;
    let v = v.json().await?;
    if status != 200 {
        return Err(CliError::Daemon {
            status,
            message: v["message"]
                .as_str()
                .unwrap_or("system df failed")
                .to_string(),
        });
    }
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let images = list("Images");
    let containers = list("Containers");
    let volumes = list("Volumes");
    let i64_of = |x: &serde_json::Value, k: &str| x[k].as_i64().unwrap_or(0);
    let img_size: i64 = images.iter().map(|i| i64_of(i, "Size")).sum();
    let img_active = images
        .iter()
        .filter(|i| i64_of(i, "Containers") > 0)
        .count();
    // As the docker CLI: the layers' total less what images in use need of their own.
    let layers = v["LayersSize"].as_i64().unwrap_or(img_size);
    let used: i64 = images
        .iter()
        .filter(|i| i64_of(i, "Containers") > 0)
        .map(|i| i64_of(i, "Size") - i64_of(i, "SharedSize").max(0))
        .sum();
    let img_reclaim = (layers - used).max(0);
    let img_size = layers;
    let c_size: i64 = containers.iter().map(|c| i64_of(c, "SizeRw")).sum();
    let c_active = containers
        .iter()
        .filter(|c| matches!(c["State"].as_str(), Some("running" | "paused")))
        .count();
    let c_reclaim: i64 = containers
        .iter()
        .filter(|c| !matches!(c["State"].as_str(), Some("running" | "paused")))
        .map(|c| i64_of(c, "SizeRw"))
        .sum();
    let v_size: i64 = volumes
        .iter()
        .map(|x| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0))
        .sum();
    let v_active = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let v_reclaim: i64 = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) <= 0)
        .map(|x| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0))
        .sum();
    let hs = |n: i64| human_size4(n.max(0) as f64);
    let pct = |r: i64, t: i64| {
        if t > 0 {
            format!("{} ({}%)", hs(r), r * 100 / t)
        } else {
            hs(r)
        }
    };
    let rows = [
        serde_json::json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": img_active.to_string(), "Size": hs(img_size), "Reclaimable": pct(img_reclaim, img_size)}),
        serde_json::json!({"Type": "Containers", "TotalCount": containers.len().to_string(), "Active": c_active.to_string(), "Size": hs(c_size), "Reclaimable": pct(c_reclaim, c_size)}),
        serde_json::json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(), "Active": v_active.to_string(), "Size": hs(v_size), "Reclaimable": pct(v_reclaim, v_size)}),
        serde_json::json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "table")
    {
        let spec = if f == "json" { "{{json .}}" } else { f };
        let fmt = Format::parse(spec).map_err(CliError::Usage)?;
        let items: Vec<_> = rows.iter().map(format::from_json).collect();
        let text = fmt.render_all(&items, None).map_err(CliError::Usage)?;
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return Ok(0);
    }
    if !a.verbose {
        let fmt = Format::parse(
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        )
        .map_err(CliError::Usage)?;
        let header = serde_json::json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
        let items: Vec<_> = rows.iter().map(format::from_json).collect();
        let table = fmt
            .render_all(&items, Some(&format::from_json(&header)))
            .map_err(CliError::Usage)?;
        let _ = std::io::stdout().lock().write_all(table.as_bytes());
        return Ok(0);
    }
    let now = chrono::Utc::now().timestamp();
    let mut out = String::new();
    out.push_str("Images space usage:\n\n");
    let mut lines = vec![
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
            .to_string(),
    ];
    for i in &images {
        let id = i["Id"].as_str().unwrap_or("").trim_start_matches("sha256:");
        let tags: Vec<String> = i["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let (repo, tag) = tags
            .first()
            .and_then(|t| t.rsplit_once(':'))
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .unwrap_or(("<none>".into(), "<none>".into()));
        lines.push(format!(
            "{repo}\t{tag}\t{}\t{} ago\t{}\t{}\t{}\t{}",
            &id[..id.len().min(12)],
            format::human_duration(now - i64_of(i, "Created")),
            hs(i64_of(i, "Size")),
            hs(i64_of(i, "SharedSize")),
            hs(i64_of(i, "Size") - i64_of(i, "SharedSize").max(0)),
            i64_of(i, "Containers")
        ));
    }
    out.push_str(&format::tabwrite(&lines));
    out.push_str("\nContainers space usage:\n\n");
    let mut lines = vec![
        "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES".to_string(),
    ];
    for c in &containers {
        let id = c["Id"].as_str().unwrap_or("");
        lines.push(format!(
            "{}\t{}\t\"{}\"\t0\t{}\t{} ago\t{}\t{}",
            &id[..id.len().min(12)],
            c["Image"].as_str().unwrap_or(""),
            c["Command"].as_str().unwrap_or(""),
            hs(i64_of(c, "SizeRw")),
            format::human_duration(now - i64_of(c, "Created")),
            c["Status"].as_str().unwrap_or(""),
            c["Names"][0].as_str().unwrap_or("").trim_start_matches('/'),
        ));
    }
    out.push_str(&format::tabwrite(&lines));
    out.push_str("\nLocal Volumes space usage:\n\n");
    let mut lines = vec!["VOLUME NAME\tLINKS\tSIZE".to_string()];
    for x in &volumes {
        lines.push(format!(
            "{}\t{}\t{}",
            x["Name"].as_str().unwrap_or(""),
            x["UsageData"]["RefCount"].as_i64().unwrap_or(0),
            hs(x["UsageData"]["Size"].as_i64().unwrap_or(0))
        ));
    }
    out.push_str(&format::tabwrite(&lines));
    out.push_str("\nBuild cache usage: 0B\n");
    // A closed pipe (`| head`) is not an error of the command.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(0)
}

async fn system_prune(client: &Client, a: SystemPruneArgs) -> Result<i32> {
    if !a.force {
        let mut what = vec!["all stopped containers"];
        if a.volumes {
            what.push("all anonymous volumes not used by at least one container");
        }
        what.push(if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        });
        let mut warning = "WARNING! This will remove:\n".to_string();
        for w in what {
            warning.push_str(&format!("  - {w}\n"));
        }
        if !super::out::confirm(&warning) {
            return Ok(0);
        }
    }
    let filters = super::ps::filters(&a.filter)?;
    let mut reclaimed: i64 = 0;
    let r = client
        .docker
        .prune_containers(Some(PruneContainersOptions {
            filters: filters.clone(),
        }))
        .await
        .map_err(|e| client.err("prune containers", e))?;
    reclaimed += r.space_reclaimed.unwrap_or(0);
    print_deleted("Containers", &r.containers_deleted.unwrap_or_default());
    if a.volumes {
        // The volumes API may not exist on this daemon yet: a 404 means nothing to prune.
        let mut vf = filters.clone().unwrap_or_default();
        vf.remove("until");
        match client
            .docker
            .prune_volumes(Some(bollard::query_parameters::PruneVolumesOptions {
                filters: Some(vf),
            }))
            .await
        {
            Ok(v) => {
                reclaimed += v.space_reclaimed.unwrap_or(0);
                print_deleted("Volumes", &v.volumes_deleted.unwrap_or_default());
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(client.err("prune volumes", e)),
        }
    }
    // Networks may not be served by this daemon yet either.
    match client
        .docker
        .prune_networks(Some(bollard::query_parameters::PruneNetworksOptions {
            filters: filters.clone(),
        }))
        .await
    {
        Ok(n) => print_deleted("Networks", &n.networks_deleted.unwrap_or_default()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(client.err("prune networks", e)),
    }
    let mut img_filters = filters.unwrap_or_default();
    if a.all {
        img_filters.insert("dangling".into(), vec!["false".into()]);
    }
    let r = client
        .docker
        .prune_images(Some(PruneImagesOptions {
            filters: Some(img_filters),
        }))
        .await
        .map_err(|e| client.err("prune images", e))?;
    reclaimed += r.space_reclaimed.unwrap_or(0);
    let imgs = r.images_deleted.unwrap_or_default();
    if !imgs.is_empty() {
        outln!("Deleted Images:");
        for i in imgs {
            if let Some(u) = i.untagged {
                outln!("untagged: {u}");
            }
            if let Some(d) = i.deleted {
                outln!("deleted: {d}");
            }
        }
        outln!();
    }
    outln!(
        "Total reclaimed space: {}",
        format::human_size(reclaimed as f64)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_as_go_units() {
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(16.0 * 1024.0 * 1024.0), "16MiB");
        assert_eq!(bytes_size(1_429_000.0), "1.363MiB");
        assert_eq!(human_size4(1_982_000.0), "1.982MB");
        assert_eq!(human_size4(8192.0), "8.192kB");
    }

    #[test]
    fn cp_arguments() {
        assert_eq!(split_cp("c1:/etc"), (Some("c1"), "/etc"));
        assert_eq!(split_cp("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_cp("-"), (None, "-"));
        assert_eq!(base_of("/etc/"), "etc");
        assert_eq!(base_of("/etc/."), ".");
    }

    #[test]
    fn cpu_percent_as_docker_computes_it() {
        let v: ContainerStatsResponse = serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef", "name": "/c", "read": "2024-01-01T00:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2048, "limit": 4096, "stats": {"total_inactive_file": 1024}},
            "pids_stats": {"current": 3}
        }))
        .expect("stats");
        let r = stats_row(&v, "c", false);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "1KiB / 4KiB");
        assert_eq!(r["MemPerc"], "25.00%");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["ID"], "0123456789ab");
    }
}
