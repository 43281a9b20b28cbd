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
    /// The daemon's exec root (a scratch place for the zygote's start).
    pub exec_root: &'a Path,
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
    /// How many clients attach before the process's output may be read (they connect to
    /// the shim once it has reported; the process runs meanwhile, its output waits).
    pub hold_output: u32,
}

/// What a shim reports once the container is created and its process started.
pub struct Spawned {
    /// The init's pid.
    pub pid: i64,
}

/// Starts the shim and waits for its one-line report: the init's pid once the container is
/// created and its process started. The process spawned exits at once; the shim lives on
/// detached.
pub fn spawn(s: &ShimSpawn<'_>) -> Result<Spawned> {
    let shim_err = |reason: String| Error::Shim {
        id: s.id.to_string(),
        reason,
    };
    let mut args: Vec<String> = vec![
        "--id".into(),
        s.id.into(),
        "--bundle".into(),
        path_arg(s.bundle)?,
        "--runtime-root".into(),
        path_arg(s.runtime_root)?,
        "--state-dir".into(),
        path_arg(s.state_dir)?,
        "--log-path".into(),
        path_arg(s.log_path)?,
        "--log-driver".into(),
        s.log_driver.into(),
    ];
    if let Some(n) = s.log_max_size {
        args.extend(["--log-max-size".into(), n.to_string()]);
    }
    if let Some(n) = s.log_max_file {
        args.extend(["--log-max-file".into(), n.to_string()]);
    }
    for (on, flag) in [
        (s.tty, "--tty"),
        (s.stdin, "--stdin"),
        (s.stdin_once, "--stdin-once"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    // the shim starts the process itself, before its report
    args.push("--start".into());
    if s.hold_output > 0 {
        args.extend(["--hold-output".into(), s.hold_output.to_string()]);
    }
    let (line, stderr) = match zygote::spawn(s.exe, s.exec_root, &args) {
        Some(r) => r.map_err(|e| shim_err(format!("through the zygote: {e}")))?,
        None => {
            let mut cmd = Command::new(s.exe);
            cmd.arg("shim")
                .args(&args)
                .stdin(Stdio::null())
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
            let stderr = child
                .stderr
                .take()
                .ok_or_else(|| shim_err("no stderr pipe".into()))?;
            let r = read_report(stdout.into(), stderr.into());
            let _ = child.wait();
            r.map_err(|e| shim_err(format!("read its report: {e}")))?
        }
    };
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
    let pid = v
        .get("pid")
        .and_then(|p| p.as_i64())
        .ok_or_else(|| shim_err(format!("report without pid: {}", line.trim())))?;
    Ok(Spawned { pid })
}

fn path_arg(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::InvalidArgument(format!("path {} is not UTF-8", p.display())))
}

/// The shim's one report line, then whatever it wrote to stderr (until every writer closed).
fn read_report(
    stdout: std::os::fd::OwnedFd,
    stderr: std::os::fd::OwnedFd,
) -> std::io::Result<(String, String)> {
    use std::io::Read;
    let mut line = String::new();
    let read = BufReader::new(std::fs::File::from(stdout)).read_line(&mut line);
    let mut err = String::new();
    let _ = std::fs::File::from(stderr).read_to_string(&mut err);
    read.map(|_| (line, err))
}

/// The daemon's side of `berth shim-zygote` (crates/shim/src/zygote.rs): one zygote per
/// binary, started on first use, restarted if it died; without one, shims are executed.
mod zygote {
    use std::collections::HashMap;
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;

    use nix::sys::socket::{
        recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    };

    struct Zygote {
        sock: OwnedFd,
        child: Child,
    }

    static ZYGOTES: Mutex<Option<HashMap<PathBuf, Zygote>>> = Mutex::new(None);

    /// Starts a zygote from a read-only bind mount of `exe` made for the moment in
    /// `<exec_root>/bin`, detached as soon as the zygote runs: the zygote and every shim it
    /// forks keep that read-only mount as their executable's (CVE-2019-5736: a container
    /// process that reaches /proc/<shim>/exe cannot rewrite the host's binary), and no mount
    /// is left for anyone to see or clean up. Without the bind there is no zygote.
    fn start(exe: &Path, exec_root: &Path) -> std::io::Result<Zygote> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = exec_root.join("bin");
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let dst = dir.join("berth");
        berth_sys::readonly_bind_file(exe, &dst)?;
        let started = spawn_from(&dst, exe);
        let _ = nix::mount::umount2(&dst, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&dst);
        started
    }

    fn spawn_from(path: &Path, shown_as: &Path) -> std::io::Result<Zygote> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let mut child = Command::new(path)
            .arg("shim-zygote")
            // The binary's own path, and room in the argument area: a forked shim rewrites
            // its command line there to what `berth shim` would have had, so that ps and
            // tools see which container it serves.
            .arg(shown_as)
            .arg(".".repeat(1024))
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("BERTH_LOG")
            .spawn()?;
        // It says so once it runs (from the read-only mount, checked on its side).
        let mut hello = [0u8; 64];
        match recv(ours.as_raw_fd(), &mut hello, MsgFlags::empty()) {
            Ok(n) if &hello[..n] == b"ready" => Ok(Zygote { sock: ours, child }),
            r => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::io::Error::other(format!(
                    "the shim zygote did not start: {r:?}"
                )))
            }
        }
    }

    /// Asks the zygote for `exe` to fork a shim with `args`; returns its report line and
    /// stderr, or None when no zygote can be had (the caller executes the shim instead).
    pub(super) fn spawn(
        exe: &Path,
        exec_root: &Path,
        args: &[String],
    ) -> Option<std::io::Result<(String, String)>> {
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let req = serde_json::to_vec(args).ok()?;
        {
            let mut all = ZYGOTES.lock().unwrap_or_else(|p| p.into_inner());
            let map = all.get_or_insert_with(HashMap::new);
            let mut tries = 0;
            loop {
                tries += 1;
                if !map.contains_key(exe) {
                    match start(exe, exec_root) {
                        Ok(z) => {
                            map.insert(exe.to_path_buf(), z);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "start the shim zygote");
                            return None;
                        }
                    }
                }
                let z = map.get_mut(exe)?;
                let fds = [out_w.as_raw_fd(), err_w.as_raw_fd()];
                let sent = sendmsg::<()>(
                    z.sock.as_raw_fd(),
                    &[std::io::IoSlice::new(&req)],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                );
                let mut ans = [0u8; 4096];
                let answered = sent
                    .and_then(|_| recv(z.sock.as_fd().as_raw_fd(), &mut ans, MsgFlags::empty()));
                match answered {
                    Ok(n) if n > 0 => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&ans[..n]).unwrap_or_default();
                        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                            return Some(Err(std::io::Error::other(e.to_string())));
                        }
                        break;
                    }
                    _ => {
                        // The zygote is gone (killed, or out of memory): reap it, start
                        // another once; if that fails too, execute the shim.
                        if let Some(mut z) = map.remove(exe) {
                            let _ = z.child.kill();
                            let _ = z.child.wait();
                        }
                        if tries >= 2 {
                            return None;
                        }
                    }
                }
            }
        }
        // our copies of the write ends go, so that the reads below end when the shim's do
        drop((out_w, err_w));
        Some(super::read_report(out_r, err_r))
    }
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
    // a zero timeout is an error to set_read_timeout, not "no waiting" (`stop -t 0`)
    s.set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
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
