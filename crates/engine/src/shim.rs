//! Starting a shim and talking to it (blocking; the API has its own async side for streams).
//! The protocol is crates/shim's: one JSON request line, one JSON response line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// What the shim reports once the container's init has exited.
#[derive(Debug, Clone, Deserialize)]
pub struct ExitInfo {
    pub exit_code: i64,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
}

/// How to start one shim.
pub struct ShimSpawn<'a> {
    pub exe: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime_root: &'a Path,
    pub state_dir: &'a Path,
    pub log_path: &'a Path,
    pub log_driver: &'a str,
    pub log_max_size: Option<u64>,
    pub log_max_file: Option<u32>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
}

/// Starts the shim and waits for its one-line report: the init's pid once the container is
/// created (not started). The process spawned exits at once; the shim lives on detached.
pub fn spawn(s: &ShimSpawn<'_>) -> Result<i64> {
    let shim_err = |reason: String| Error::Shim {
        id: s.id.to_string(),
        reason,
    };
    let mut cmd = Command::new(s.exe);
    cmd.arg("shim")
        .arg("--id")
        .arg(s.id)
        .arg("--bundle")
        .arg(s.bundle)
        .arg("--runtime-root")
        .arg(s.runtime_root)
        .arg("--state-dir")
        .arg(s.state_dir)
        .arg("--log-path")
        .arg(s.log_path)
        .arg("--log-driver")
        .arg(s.log_driver);
    if let Some(n) = s.log_max_size {
        cmd.arg("--log-max-size").arg(n.to_string());
    }
    if let Some(n) = s.log_max_file {
        cmd.arg("--log-max-file").arg(n.to_string());
    }
    if s.tty {
        cmd.arg("--tty");
    }
    if s.stdin {
        cmd.arg("--stdin");
    }
    if s.stdin_once {
        cmd.arg("--stdin-once");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("BERTH_LOG");
    let mut child = cmd
        .spawn()
        .map_err(|e| shim_err(format!("spawn {}: {e}", s.exe.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| shim_err("no stdout pipe".into()))?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    read.map_err(|e| shim_err(format!("read its report: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|_| {
        shim_err(if stderr.trim().is_empty() {
            format!("unexpected report {:?}", line.trim())
        } else {
            stderr.trim().to_string()
        })
    })?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(shim_err(e.to_string()));
    }
    v.get("pid")
        .and_then(|p| p.as_i64())
        .ok_or_else(|| shim_err(format!("report without pid: {}", line.trim())))
}

/// The socket of the shim whose state directory is `state_dir`.
pub fn socket(state_dir: &Path) -> PathBuf {
    state_dir.join("shim.sock")
}

/// One request, one response line. `timeout` bounds the wait for the response.
pub fn request(
    sock: &Path,
    req: &serde_json::Value,
    timeout: Option<Duration>,
) -> std::io::Result<serde_json::Value> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(timeout)?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp)?;
    if resp.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the shim closed the connection",
        ));
    }
    serde_json::from_str(resp.trim()).map_err(std::io::Error::other)
}

/// Reads `exit.json` that a shim leaves behind.
pub fn read_exit_file(state_dir: &Path) -> Option<ExitInfo> {
    let data = std::fs::read(state_dir.join("exit.json")).ok()?;
    serde_json::from_slice(&data).ok()
}
