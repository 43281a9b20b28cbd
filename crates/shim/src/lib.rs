//! `berth shim`: one small single-threaded process per running container. It is the parent
//! (and subreaper) of the container's init, holds its stdio or pty master, writes its log,
//! serves attach, exec, resize and wait on `<state-dir>/shim.sock`, and leaves the exit status
//! in `<state-dir>/exit.json`. It lives in its own session so that it outlives the daemon.

#![forbid(unsafe_code)]

mod logfile;
mod monitor;
mod stdio;
pub mod zygote;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use logfile::JsonLog;

/// The shim's command line (`berth shim ...`), as the daemon passes it.
#[derive(clap::Args, Debug, Clone)]
pub struct ShimArgs {
    /// The container's id in the runtime.
    #[arg(long)]
    pub id: String,
    /// The OCI bundle (config.json + rootfs).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The runtime's state root.
    #[arg(long)]
    pub runtime_root: PathBuf,
    /// Where the shim keeps shim.sock, shim.pid, shim.log and exit.json.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The container's log file.
    #[arg(long)]
    pub log_path: PathBuf,
    #[arg(long, value_enum, default_value = "json-file")]
    pub log_driver: LogDriver,
    /// Rotate the log when it reaches this many bytes (0: never).
    #[arg(long, default_value_t = 0)]
    pub log_max_size: u64,
    /// How many log files to keep when rotating.
    #[arg(long, default_value_t = 1)]
    pub log_max_file: u32,
    /// Give the container a pseudo-terminal (the spec's process.terminal must say so too).
    #[arg(long)]
    pub tty: bool,
    /// Keep the container's stdin open for attach.
    #[arg(long)]
    pub stdin: bool,
    /// Close the container's stdin when the first attached client closes its input.
    #[arg(long)]
    pub stdin_once: bool,
    /// Start the container's process as soon as it is created, before reporting (when no
    /// client waits to attach first): the daemon's start request and its answer are saved.
    #[arg(long)]
    pub start: bool,
    /// Leave the process's output unread (it waits in its pipe or terminal) until this many
    /// clients have attached, or for at most 10 s: clients that attached before the start
    /// see it from the first byte, and the process need not wait for them to start.
    #[arg(long, default_value_t = 0)]
    pub hold_output: u32,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDriver {
    JsonFile,
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("create shim state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bind {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{op} container {id}: {source}")]
    Runtime {
        op: &'static str,
        id: String,
        source: berth_runtime::Error,
    },
    #[error("receive the terminal of container {id} on {path}: {reason}")]
    Console {
        id: String,
        path: PathBuf,
        reason: String,
    },
    #[error("open log {path}: {source}")]
    OpenLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write log {path}: {source}")]
    WriteLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rotate log {path}: {source}")]
    RotateLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn sys(op: &'static str, e: impl Into<std::io::Error>) -> Error {
        Error::Sys {
            op,
            source: e.into(),
        }
    }
}

/// The shim's diagnostics, in `<state-dir>/shim.log` (its stdio belongs to nobody once the
/// daemon has read its report).
pub(crate) struct Diag(Option<File>);

impl Diag {
    pub(crate) fn say(&mut self, msg: std::fmt::Arguments<'_>) {
        if let Some(f) = &mut self.0 {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            // formatted first: an unbuffered file takes each piece of a format as a write
            let _ = f.write_all(format!("{now} {msg}\n").as_bytes());
        }
    }
}

/// `berth shim`: fork, let the spawner exit at once, and run the monitor in the child. The
/// return value is the spawner's exit status.
pub fn main(args: ShimArgs) -> i32 {
    // CVE-2019-5736: the shim creates and joins the container, as `berth runtime create` does.
    berth_runtime::protect_binary(|| berth_runtime::wants_shared_propagation(&args.bundle));
    match berth_sys::clone_fork(0) {
        Ok(berth_sys::Forked::Parent(_)) => 0,
        Ok(berth_sys::Forked::Child) => {
            let code = monitor::run(args);
            std::process::exit(code)
        }
        Err(e) => {
            let msg = serde_json::json!({ "error": format!("fork the shim: {e}") });
            println!("{msg}");
            1
        }
    }
}

/// Write `data` to `path` so that a reader (the daemon, also one restarted after a kill -9)
/// sees the old file or the whole new one: a temporary name, then a rename. No fsync: these
/// files live under the exec root, which describes processes that do not outlive the machine
/// (a tmpfs on most hosts), and on a disk-backed /run two fsyncs cost milliseconds on every
/// start and every exit (~4 ms each on this machine's disk).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let err = |source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(data).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}
