//! `berth runtime ...` (and the `berth-runtime` link): runc's command line over berth-runtime,
//! so that dockerd/containerd, podman/conmon and CRI-O can use berth as their OCI runtime.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use berth_runtime::container::exec::ExecOutcome;
use berth_runtime::{CreateOptions, ExecOptions, Runtime, Status};
use clap::{Parser, Subcommand};
use oci_spec::runtime::{LinuxResources, Process};

#[derive(clap::Args)]
pub struct RuntimeArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc-compatible)"
)]
struct Cli {
    /// Directory for the containers' state.
    #[arg(long, default_value = "/run/berth", global = true)]
    root: PathBuf,
    /// Write errors and warnings to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of --log: text or json.
    #[arg(long, default_value = "text", global = true)]
    log_format: String,
    /// Use systemd to manage cgroups (not supported: berth manages cgroupfs itself).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for compatibility; checkpointing is not supported.
    #[arg(long, hide = true)]
    criu: Option<String>,
    /// Accepted for compatibility (auto, true, false).
    #[arg(long, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Path to the bundle (config.json and rootfs).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the master of the container's terminal.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// File to write the init process's pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, and wait for it unless --detach.
    Run {
        #[command(flatten)]
        c: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or to all its processes.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container (and with --force, kill it first).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a new process inside a running container.
    Exec {
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(short, long)]
        tty: bool,
        /// uid[:gid]
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long)]
        additional_gids: Vec<u32>,
        /// A process.json to run instead of the command line.
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        process_label: Option<String>,
        #[arg(long)]
        apparmor: Option<String>,
        #[arg(long)]
        no_new_privs: bool,
        /// Add a capability to the process.
        #[arg(short, long)]
        cap: Vec<String>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        /// Exec even when the container is paused (the process then waits, frozen).
        #[arg(long)]
        ignore_paused: bool,
        /// Accepted for compatibility: exec always joins the container's cgroup.
        #[arg(long, hide = true)]
        cgroup: Option<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the processes of a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports (OCI features document).
    Features,
    /// Print resource usage and OOM events.
    Events {
        #[arg(long)]
        stats: bool,
        /// Seconds between stats (e.g. 5 or 5s).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Change a container's resource limits.
    Update {
        /// JSON file (or - for stdin) with linux.resources.
        #[arg(short, long)]
        resources: Option<String>,
        #[arg(long)]
        memory: Option<String>,
        #[arg(long)]
        memory_swap: Option<String>,
        #[arg(long)]
        memory_reservation: Option<String>,
        #[arg(long)]
        cpu_shares: Option<u64>,
        #[arg(long)]
        cpu_quota: Option<i64>,
        #[arg(long)]
        cpu_period: Option<u64>,
        #[arg(long)]
        cpuset_cpus: Option<String>,
        #[arg(long)]
        cpuset_mems: Option<String>,
        #[arg(long)]
        pids_limit: Option<i64>,
        #[arg(long)]
        blkio_weight: Option<u16>,
        id: String,
    },
}

/// For the commands that start processes in a container, protect the binary (a re-exec, see
/// `berth_runtime::protect_binary`) before anything else: the process that is replaced
/// should do as little as possible. Anything [`early_protection`] does not recognise is left
/// to the parser and to the same protection in `run`, a no-op once the binary is protected.
fn protect_early(args: &[OsString]) {
    match early_protection(args) {
        Some(Early::Exec) => berth_runtime::protect_binary(|| false),
        Some(Early::Bundle(bundle)) => {
            berth_runtime::protect_binary(|| berth_runtime::wants_shared_propagation(&bundle))
        }
        None => {}
    }
}

#[derive(Debug, PartialEq)]
enum Early {
    /// `exec`
    Exec,
    /// `create` or `run`, with the bundle it names
    Bundle(PathBuf),
}

/// Read only the command and `--bundle` from the arguments (the same spellings as the parser:
/// `-b X`, `-bX`, `-b=X`, `--bundle X`, `--bundle=X`; the default is the current directory).
fn early_protection(args: &[OsString]) -> Option<Early> {
    const GLOBAL_WITH_VALUE: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];
    let mut it = args.iter().map(|a| a.to_str());
    let command = loop {
        match it.next()?? {
            a if GLOBAL_WITH_VALUE.contains(&a) => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => break a,
        }
    };
    match command {
        "exec" => Some(Early::Exec),
        "create" | "run" => {
            let mut bundle = None;
            while let Some(a) = it.next() {
                // not UTF-8: let the parser judge
                match a? {
                    "-b" | "--bundle" => bundle = it.next().flatten(),
                    a if a.starts_with("--bundle=") => bundle = a.get(9..),
                    a if a.starts_with("-b") => {
                        bundle = a.get(2..).map(|v| v.strip_prefix('=').unwrap_or(v))
                    }
                    _ => {}
                }
            }
            Some(Early::Bundle(PathBuf::from(bundle.unwrap_or("."))))
        }
        _ => None,
    }
}

/// Entry point for `berth runtime ARGS` and `berth-runtime ARGS`; returns the exit code.
pub fn main_from_args(args: Vec<OsString>) -> i32 {
    protect_early(&args);
    let mut argv = vec![OsString::from("berth-runtime")];
    argv.extend(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let log = Logger::new(&cli);
    log.init_tracing(cli.debug);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log.error(&crate::error_chain(&e));
            1
        }
    }
}

/// Errors go to --log (text or json, as containerd and conmon read them) and to stderr.
struct Logger {
    path: Option<PathBuf>,
    json: bool,
}

impl Logger {
    fn new(cli: &Cli) -> Self {
        Logger {
            path: cli.log.clone(),
            json: cli.log_format == "json",
        }
    }

    fn init_tracing(&self, debug: bool) {
        use tracing_subscriber::filter::LevelFilter;
        // Directives are parsed only when BERTH_LOG asks for them: this runs on every start.
        let level = if debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::WARN
        };
        let plain = || tracing_subscriber::EnvFilter::default().add_directive(level.into());
        let filter = match std::env::var_os("BERTH_LOG") {
            Some(_) => {
                tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| plain())
            }
            None => plain(),
        };
        let file = self.path.as_ref().and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        let _ = match (file, self.json) {
            (Some(f), true) => builder
                .json()
                .with_current_span(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init(),
            (Some(f), false) => builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init(),
            (None, _) => builder.with_writer(std::io::stderr).try_init(),
        };
    }

    fn error(&self, msg: &str) {
        if let Some(p) = &self.path {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                let line = if self.json {
                    serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
                } else {
                    format!("time=\"{time}\" level=error msg={msg:?}")
                };
                let _ = writeln!(f, "{line}");
            }
        }
        eprintln!("berth-runtime: error: {msg}");
    }
}

fn create_opts(c: &CreateArgs, inherit_tty: bool, start: bool) -> CreateOptions {
    CreateOptions {
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        stdio: None,
        console: None,
        console_socket: c.console_socket.clone(),
        pid_file: c.pid_file.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        inherit_tty,
        start,
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: berth manages cgroups through cgroupfs; run the engine with the cgroupfs cgroup manager");
    }
    let rt = Runtime::new(&cli.root);
    match cli.command {
        Cmd::Create(c) => {
            berth_runtime::protect_binary(|| berth_runtime::wants_shared_propagation(&c.bundle));
            rt.create(&create_opts(&c, false, false))?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::Run { c, detach, keep } => {
            berth_runtime::protect_binary(|| berth_runtime::wants_shared_propagation(&c.bundle));
            // init uses our terminal only when the spec asks for one
            let inherit_tty = c.console_socket.is_none() && std::io::stdin().is_terminal();
            let sigs = if detach {
                None
            } else {
                Some(berth_runtime::wait::block_forwarded()?)
            };
            // created and started in one (no exec fifo round trip)
            let container = rt.create(&create_opts(&c, inherit_tty, true))?;
            if let Some(set) = sigs {
                let code = berth_runtime::wait::forward_and_wait(container.record.pid, &set)?;
                if !keep {
                    rt.delete(&c.id, true)?;
                }
                return Ok(code);
            }
        }
        Cmd::State { id } => {
            let c = rt.load(&id)?;
            println!("{}", serde_json::to_string_pretty(&c.oci_state())?);
        }
        Cmd::Kill { all, id, signal } => {
            let sig = berth_runtime::container::ops::parse_signal(
                signal.as_deref().unwrap_or("SIGTERM"),
            )?;
            rt.kill(&id, sig, all)?;
        }
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::Exec {
            console_socket,
            cwd,
            env,
            tty,
            user,
            additional_gids,
            process,
            detach,
            pid_file,
            process_label,
            apparmor,
            no_new_privs,
            cap,
            preserve_fds,
            cgroup: _,
            ignore_paused,
            id,
            command,
        } => {
            berth_runtime::protect_binary(|| false);
            if process_label.is_some() || apparmor.is_some() {
                tracing::warn!(
                    "--process-label and --apparmor are ignored: berth applies no LSM labels"
                );
            }
            let p = match process {
                Some(path) => {
                    let data = std::fs::read(&path)
                        .with_context(|| format!("read process file {}", path.display()))?;
                    serde_json::from_slice::<Process>(&data)
                        .with_context(|| format!("parse process file {}", path.display()))?
                }
                None => {
                    if command.is_empty() {
                        bail!("exec needs a command (or --process)");
                    }
                    let c = rt.load(&id)?;
                    let spec = c.spec()?;
                    let mut p = spec.process().clone().unwrap_or_default();
                    p.set_args(Some(command));
                    let mut e = p.env().clone().unwrap_or_default();
                    for kv in env {
                        let key = kv.split('=').next().unwrap_or("").to_string();
                        e.retain(|x| x.split('=').next() != Some(key.as_str()));
                        e.push(kv);
                    }
                    p.set_env(Some(e));
                    p.set_terminal(Some(tty));
                    if let Some(cwd) = cwd {
                        p.set_cwd(cwd);
                    }
                    if let Some(u) = user {
                        let (uid, gid) = match u.split_once(':') {
                            Some((a, b)) => (a.parse::<u32>()?, b.parse::<u32>()?),
                            None => (u.parse::<u32>().context("--user must be uid[:gid]")?, 0),
                        };
                        let mut usr = p.user().clone();
                        usr.set_uid(uid);
                        usr.set_gid(gid);
                        p.set_user(usr);
                    }
                    if !additional_gids.is_empty() {
                        let mut usr = p.user().clone();
                        usr.set_additional_gids(Some(additional_gids));
                        p.set_user(usr);
                    }
                    if no_new_privs {
                        p.set_no_new_privileges(Some(true));
                    }
                    if !cap.is_empty() {
                        let mut caps = p.capabilities().clone().unwrap_or_default();
                        for name in cap {
                            let c: oci_spec::runtime::Capability =
                                serde_json::from_value(serde_json::Value::String(name.clone()))
                                    .map_err(|_| anyhow!("unknown capability {name:?}"))?;
                            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                                let mut s = s.clone().unwrap_or_default();
                                s.insert(c);
                                Some(s)
                            };
                            caps.set_bounding(add(caps.bounding()));
                            caps.set_effective(add(caps.effective()));
                            caps.set_permitted(add(caps.permitted()));
                        }
                        p.set_capabilities(Some(caps));
                    }
                    p
                }
            };
            let outcome = rt.exec(
                &id,
                ExecOptions {
                    process: p,
                    stdio: None,
                    console: None,
                    console_socket,
                    pid_file,
                    detach,
                    preserve_fds,
                    ignore_paused,
                },
            )?;
            if let ExecOutcome::Exited(code) = outcome {
                return Ok(code);
            }
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = rt.pids(&id)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else if format == "table" {
                let args = if ps_args.is_empty() {
                    vec!["-ef".to_string()]
                } else {
                    ps_args
                };
                let out = std::process::Command::new("ps")
                    .args(&args)
                    .output()
                    .context("run ps")?;
                let text = String::from_utf8_lossy(&out.stdout);
                let mut lines = text.lines();
                let header = lines.next().unwrap_or("");
                let col = header
                    .split_whitespace()
                    .position(|h| h == "PID")
                    .ok_or_else(|| anyhow!("ps output has no PID column"))?;
                println!("{header}");
                for l in lines {
                    if let Some(pid) = l
                        .split_whitespace()
                        .nth(col)
                        .and_then(|p| p.parse::<i32>().ok())
                    {
                        if pids.contains(&pid) {
                            println!("{l}");
                        }
                    }
                }
            } else {
                bail!("unknown format {format:?}: use table or json");
            }
        }
        Cmd::Pause { id } => rt.pause(&id)?,
        Cmd::Resume { id } => rt.resume(&id)?,
        Cmd::List { format, quiet } => {
            let list = rt.list()?;
            if quiet {
                for c in &list {
                    println!("{}", c.record.id);
                }
            } else if format == "json" {
                let states: Vec<_> = list.iter().map(|c| c.oci_state()).collect();
                println!("{}", serde_json::to_string(&states)?);
            } else {
                println!(
                    "{:<12} {:<8} {:<10} {:<40} {:<32} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for c in &list {
                    let s = c.oci_state();
                    println!(
                        "{:<12} {:<8} {:<10} {:<40} {:<32} {}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created.to_rfc3339(),
                        s.owner
                    );
                }
            }
        }
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} exists: remove it first", path.display());
            }
            let spec = berth_runtime::spec::default_spec(rootless);
            let mut data = serde_json::to_vec_pretty(&spec)?;
            data.push(b'\n');
            std::fs::write(&path, data).with_context(|| format!("write {}", path.display()))?;
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::spec::features())?
            );
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            let emit = |rt: &Runtime| -> anyhow::Result<()> {
                let s = rt.stats(&id)?;
                let ev = serde_json::json!({"type": "stats", "id": id, "data": s});
                println!("{ev}");
                std::io::stdout().flush()?;
                Ok(())
            };
            if stats {
                emit(&rt)?;
                return Ok(0);
            }
            let secs: f64 = interval
                .trim_end_matches('s')
                .parse()
                .context("--interval")?;
            if secs <= 0.0 {
                bail!("--interval must be positive");
            }
            let mut ooms = rt.oom_kills(&id).unwrap_or(0);
            loop {
                let c = rt.load(&id)?;
                if c.status() == Status::Stopped {
                    return Ok(0);
                }
                let now = rt.oom_kills(&id).unwrap_or(ooms);
                if now > ooms {
                    println!("{}", serde_json::json!({"type": "oom", "id": id}));
                    ooms = now;
                }
                emit(&rt)?;
                std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            }
        }
        Cmd::Update {
            resources,
            memory,
            memory_swap,
            memory_reservation,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            blkio_weight,
            id,
        } => {
            let mut r: LinuxResources = match resources.as_deref() {
                Some("-") => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    serde_json::from_str(&s).context("parse resources from stdin")?
                }
                Some(path) => serde_json::from_slice(
                    &std::fs::read(path).with_context(|| format!("read {path}"))?,
                )
                .with_context(|| format!("parse resources {path}"))?,
                None => LinuxResources::default(),
            };
            apply_update_flags(
                &mut r,
                UpdateFlags {
                    memory,
                    memory_swap,
                    memory_reservation,
                    cpu_shares,
                    cpu_quota,
                    cpu_period,
                    cpuset_cpus,
                    cpuset_mems,
                    pids_limit,
                    blkio_weight,
                },
            )?;
            rt.update(&id, &r)?;
        }
    }
    Ok(0)
}

struct UpdateFlags {
    memory: Option<String>,
    memory_swap: Option<String>,
    memory_reservation: Option<String>,
    cpu_shares: Option<u64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
    blkio_weight: Option<u16>,
}

/// Sizes as runc and docker take them: bytes, or with k/m/g suffix; -1 for unlimited.
fn parse_size(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    n.checked_mul(mul)
        .ok_or_else(|| anyhow!("size {s:?} is too large"))
}

fn apply_update_flags(r: &mut LinuxResources, f: UpdateFlags) -> anyhow::Result<()> {
    // oci-spec's resource types have builders but no setters: edit the JSON form instead.
    let mut v = serde_json::to_value(&*r)?;
    let mut set = |section: &str, key: &str, value: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = value;
    };
    if let Some(x) = &f.memory {
        set("memory", "limit", parse_size(x)?.into());
    }
    if let Some(x) = &f.memory_swap {
        set("memory", "swap", parse_size(x)?.into());
    }
    if let Some(x) = &f.memory_reservation {
        set("memory", "reservation", parse_size(x)?.into());
    }
    if let Some(x) = f.cpu_shares {
        set("cpu", "shares", x.into());
    }
    if let Some(x) = f.cpu_quota {
        set("cpu", "quota", x.into());
    }
    if let Some(x) = f.cpu_period {
        set("cpu", "period", x.into());
    }
    if let Some(x) = f.cpuset_cpus {
        set("cpu", "cpus", x.into());
    }
    if let Some(x) = f.cpuset_mems {
        set("cpu", "mems", x.into());
    }
    if let Some(x) = f.pids_limit {
        set("pids", "limit", x.into());
    }
    if let Some(x) = f.blkio_weight {
        set("blockIO", "weight", x.into());
    }
    *r = serde_json::from_value(v).context("resources")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn early(args: &[&str]) -> Option<Early> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        early_protection(&args)
    }

    #[test]
    fn early_protection_reads_the_command_and_bundle_as_the_parser_does() {
        let b = |p: &str| Some(Early::Bundle(PathBuf::from(p)));
        assert_eq!(early(&["run", "--bundle", "/b", "id"]), b("/b"));
        assert_eq!(
            early(&["--root", "/r", "create", "-b", "/b", "id"]),
            b("/b")
        );
        assert_eq!(
            early(&["--log", "run", "run", "--bundle=/b", "id"]),
            b("/b")
        );
        assert_eq!(early(&["--debug", "create", "-b/b", "id"]), b("/b"));
        assert_eq!(early(&["create", "-b=/b", "id"]), b("/b"));
        assert_eq!(early(&["run", "id"]), b("."));
        assert_eq!(early(&["exec", "id", "sh"]), Some(Early::Exec));
        assert_eq!(early(&["--root", "exec", "state", "id"]), None);
        assert_eq!(early(&["state", "run"]), None);
        assert_eq!(early(&[]), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn runc_command_lines_parse() {
        let parse = |v: &[&str]| {
            Cli::try_parse_from(std::iter::once("berth-runtime").chain(v.iter().copied()))
        };
        // containerd's shim
        assert!(parse(&[
            "--root",
            "/run/x",
            "--log",
            "/tmp/l.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "abc"
        ])
        .is_ok());
        assert!(parse(&[
            "--root",
            "/run/x",
            "exec",
            "--process",
            "/tmp/p.json",
            "--detach",
            "--pid-file",
            "/tmp/p.pid",
            "abc"
        ])
        .is_ok());
        assert!(parse(&["kill", "--all", "abc", "9"]).is_ok());
        assert!(parse(&["delete", "--force", "abc"]).is_ok());
        // conmon
        assert!(parse(&[
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--no-new-keyring",
            "--console-socket",
            "/s",
            "abc"
        ])
        .is_ok());
        assert!(parse(&["exec", "abc", "sh", "-c", "echo hi"]).is_ok());
        assert!(parse(&["update", "--memory", "32m", "abc"]).is_ok());
    }
}
