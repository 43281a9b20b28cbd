//! berth's container commands: a thin client of the Docker Engine API (through bollard) with
//! Docker's command names, flags, output and exit codes. Nothing here knows how a container is
//! made; the daemon does, and the docker CLI pointed at the same socket must behave the same.

#[macro_use]
mod out;
mod container;
mod dayops;
mod each;
mod events;
mod exec;
pub(crate) mod format;
mod inspect;
mod netfeat;
mod network;
mod opts;
mod ps;
pub(crate) mod raw;
mod run;
mod selfheal;
mod system;
mod transport;
mod tty;
mod volume;
mod wait;

use bollard::Docker;

pub use container::ContainerCommand;
pub use opts::RunOpts;
pub use transport::{take_tls_flags, Endpoint};

/// Where the daemon listens unless `-H` or `BERTH_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Docker's exit code for an error of the daemon or of the command line itself.
pub const EXIT_DAEMON: i32 = 125;

/// Why a command failed, and with which exit code docker would leave.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot connect to the berth daemon at {host}: is it running? (start it with: berth daemon)")]
    Connect { host: String },
    #[error("unsupported host {host}: give unix:///path or tcp://host:port")]
    Host { host: String },
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("{op}: {source}")]
    Api {
        op: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A container that would not start: for `run`, the message says whether its command
    /// was missing (127) or not executable (126).
    #[error("{0}")]
    Start(Box<CliError>),
    /// Errors already printed (one per argument, as docker does for `rm a b`).
    #[error("")]
    Reported { code: i32 },
}

impl CliError {
    pub fn code(&self) -> i32 {
        match self {
            CliError::Reported { code } => *code,
            _ => 1,
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// The client for one command: bollard, plus the endpoint for the few requests bollard
/// cannot make as docker makes them (see raw.rs).
pub struct Client {
    pub docker: Docker,
    pub host: String,
    pub endpoint: Endpoint,
    pub api_version: String,
}

impl Client {
    /// Turns a bollard error into docker's message, and a refused connection into the one line
    /// that says the daemon is not running.
    pub fn err(&self, op: &str, e: bollard::errors::Error) -> CliError {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => CliError::Daemon {
                status: status_code,
                message,
            },
            other => {
                if !self.endpoint.reachable() {
                    CliError::Connect {
                        host: self.host.clone(),
                    }
                } else {
                    CliError::Api {
                        op: op.to_string(),
                        source: other,
                    }
                }
            }
        }
    }
}

/// For a command that may skip the version round trip (`wanted`), at a local socket: a
/// client at bollard's API version, made without asking the daemon. (Over TCP the first
/// request also proves the TLS set-up, whose failures `connect` words.)
fn unnegotiated(host: &str, wanted: bool) -> Result<Option<Client>> {
    let endpoint = Endpoint::parse(host)?;
    if !wanted || !matches!(endpoint, Endpoint::Unix(_)) {
        return Ok(None);
    }
    let docker = endpoint.docker(host)?;
    Ok(Some(Client {
        api_version: version_of(&docker),
        docker,
        host: host.to_string(),
        endpoint,
    }))
}

fn version_of(docker: &Docker) -> String {
    let v = docker.client_version();
    format!("{}.{}", v.major_version, v.minor_version)
}

/// Connects and negotiates the API version, as the docker CLI does with its first request.
pub async fn connect(host: &str) -> Result<Client> {
    let endpoint = Endpoint::parse(host)?;
    let docker = endpoint.docker(host)?;
    let docker = match docker.negotiate_version().await {
        Ok(d) => d,
        // a daemon that answers but refuses us (its TLS, our certificate) is not "not running"
        Err(e) if endpoint.reachable() => {
            // bollard's message hides the cause (a refused certificate, say) in its sources
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                let c_text = c.to_string();
                if !msg.contains(&c_text) {
                    msg.push_str(&format!(": {c_text}"));
                }
                src = c.source();
            }
            return Err(CliError::Usage(format!("connect to {host}: {msg}")));
        }
        Err(_) => {
            return Err(CliError::Connect {
                host: host.to_string(),
            })
        }
    };
    Ok(Client {
        api_version: version_of(&docker),
        docker,
        host: host.to_string(),
        endpoint,
    })
}

/// Runs one container command and returns the process exit code; errors are printed here in
/// docker's words.
pub fn main(cmd: ContainerCommand, host: Option<String>) -> i32 {
    let host = host
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    // One thread: a command's requests are few and short, and worker threads would cost
    // their start and a cross-thread wake-up per reply.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return EXIT_DAEMON;
        }
    };
    let is_run = cmd.is_run_like();
    let res = rt.block_on(async {
        // `run` and `create` begin with a request that a daemon refusing our API version
        // refuses before doing anything: they skip the version round trip (berth's daemon
        // speaks bollard's version) and negotiate only when an older daemon says "too new".
        if let Some(client) = unnegotiated(&host, is_run)? {
            match container::dispatch(&client, cmd.clone()).await {
                Err(CliError::Daemon {
                    status: 400,
                    message,
                }) if message.contains("is too new") => {}
                r => return r,
            }
        }
        let client = connect(&host).await?;
        container::dispatch(&client, cmd).await
    });
    // stdin may still be read by a blocking thread that will never return: do not wait for it
    rt.shutdown_background();
    match res {
        Ok(code) => code,
        Err(CliError::Reported { code }) => code,
        Err(CliError::Io { source, .. }) if out::is_closed_pipe(&source) => out::EXIT_PIPE,
        Err(e @ CliError::Connect { .. }) => {
            eprintln!("berth: {e}");
            EXIT_DAEMON
        }
        Err(e @ CliError::Usage(_)) => {
            eprintln!("berth: {e}");
            EXIT_DAEMON
        }
        Err(CliError::Start(e)) if is_run => {
            eprintln!("berth: {e}");
            run::exit_code_for_start_error(&e.to_string())
        }
        Err(e) if is_run => {
            eprintln!("berth: {e}");
            EXIT_DAEMON
        }
        Err(e) => {
            eprintln!("{e}");
            e.code()
        }
    }
}

/// Removes `-H X`, `-HX`, `--host X` and `--host=X` found before the command from `args`
/// and returns the last one; `BERTH_HOST` when there is none.
pub fn take_host_flag(args: &mut Vec<std::ffi::OsString>) -> Option<String> {
    let mut host = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if !a.starts_with('-') {
            break;
        }
        let (value, consumed) = if a == "-H" || a == "--host" {
            (args.get(i + 1).map(|v| v.to_string_lossy().into_owned()), 2)
        } else if let Some(v) = a.strip_prefix("--host=") {
            (Some(v.to_string()), 1)
        } else if let Some(v) = a.strip_prefix("-H") {
            (Some(v.trim_start_matches('=').to_string()), 1)
        } else {
            // a global flag of berth's own that takes a value
            i += if a == "--data-root" { 2 } else { 1 };
            continue;
        };
        let end = (i + consumed).min(args.len());
        args.drain(i..end);
        if value.is_some() {
            host = value;
        }
    }
    host.or_else(|| std::env::var("BERTH_HOST").ok())
}

/// The names of the commands this module owns, so that a usage error in one of them exits
/// 125 as docker's does (the other commands keep clap's 2).
pub fn owns(arg: &str) -> bool {
    matches!(
        arg,
        "run"
            | "create"
            | "start"
            | "attach"
            | "wait"
            | "logs"
            | "stop"
            | "kill"
            | "restart"
            | "pause"
            | "unpause"
            | "rm"
            | "ps"
            | "inspect"
            | "exec"
            | "top"
            | "rename"
            | "update"
            | "container"
            | "version"
            | "info"
            | "volume"
            | "events"
            | "stats"
            | "cp"
            | "export"
            | "commit"
            | "diff"
            | "system"
            | "network"
            | "port"
    )
}
