//! A container as the runtime keeps it between commands: a directory under the runtime root
//! holding `state.json` (what `state` reports), `config.json` (the spec as it was at create,
//! so a later change to the bundle cannot alter `exec` or `delete`) and, until `start`, the
//! `exec.fifo` that holds the init process before it runs the user's program.
//! One file per operation lives beside this one.

pub mod create;
pub mod exec;
pub mod ops;
pub mod start;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// OCI runtime statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What berth records about a container (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot), to tell our process from one that reused
    /// the pid after ours died.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: chrono::DateTime<chrono::Utc>,
    pub cgroup_path: String,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// Namespaces the container has (type → /proc/<pid>/ns path at create), for `exec`.
    #[serde(default)]
    pub namespaces: Vec<(String, PathBuf)>,
    #[serde(default)]
    pub owner: String,
    /// True when the container was created with a new user namespace.
    #[serde(default)]
    pub user_ns: bool,
    /// Whether the spec has poststart / poststop hooks, so that `start` and `delete` read the
    /// saved spec only when they have hooks to run.
    #[serde(default = "yes")]
    pub has_poststart: bool,
    #[serde(default = "yes")]
    pub has_poststop: bool,
    /// The inode of the container's pid namespace when it is not the runtime's own: what tells
    /// the container's processes from others someone moved into its cgroup, which `kill --all`
    /// and `delete --force` must not signal.
    #[serde(default)]
    pub pid_ns: Option<u64>,
}

fn yes() -> bool {
    true
}

/// The OCI `state` output (plus runc's `rootfs`, `created`, `owner`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
    pub owner: String,
}

pub const OCI_VERSION: &str = "1.2.0";

/// A container found under the runtime root.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

/// Fork a process for the container (new namespaces in `clone_flags`), born in the cgroup2
/// directory `birth` when there is one (see [`berth_cgroups::Entry`]). Returns whether the
/// parent must still move the child with `apply`: a kernel without `clone3` (before 5.7).
///
/// `enter` joins or creates the namespaces that apply only to the children of whoever enters
/// them (pid, time). It never runs in the caller, which must be left as it was (a shim forks
/// again later, and would put its own children in the container's pid namespace): it runs in
/// an intermediate process, which clones the container's process with CLONE_PARENT, so that
/// it is still the caller's child (the caller waits for it), reports its pid and exits, as
/// runc's nsexec does.
///
/// The new process starts with every signal unblocked and at its default disposition,
/// whatever the caller's were: the program the container runs must not inherit a shim's
/// blocked SIGCHLD or Rust's ignored SIGPIPE.
pub(crate) fn fork_into(
    clone_flags: i32,
    birth: Option<std::os::fd::BorrowedFd<'_>>,
    enter: Option<&dyn Fn() -> Result<()>>,
) -> Result<(berth_sys::Forked, bool)> {
    let Some(enter) = enter else {
        let r = fork_direct(clone_flags, birth)?;
        if r.0 == berth_sys::Forked::Child {
            child_signal_reset();
        }
        return Ok(r);
    };
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe for the intermediate process", e))?;
    match berth_sys::clone_fork(0).map_err(|e| Error::sys("fork", e))? {
        berth_sys::Forked::Child => {
            drop(rd);
            child_signal_reset();
            let r = enter().and_then(|()| fork_direct(clone_flags | libc::CLONE_PARENT, birth));
            let msg = match r {
                Ok((berth_sys::Forked::Child, must_move)) => {
                    drop(wr);
                    return Ok((berth_sys::Forked::Child, must_move));
                }
                Ok((berth_sys::Forked::Parent(pid), must_move)) => {
                    format!("ok {pid} {}", u8::from(must_move))
                }
                Err(e) => format!("err {e}"),
            };
            let _ = nix::unistd::write(&wr, msg.as_bytes());
            // Never unwind or run exit handlers here: the caller's buffered output and
            // atexit work belong to the caller.
            berth_sys::exit_child(0)
        }
        berth_sys::Forked::Parent(mid) => {
            drop(wr);
            let mut out = Vec::new();
            let mut buf = [0u8; 512];
            let read = loop {
                match nix::unistd::read(rd.as_raw_fd(), &mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => break Err(e),
                }
            };
            // the intermediate is our child and has exited or is about to
            while let Err(nix::errno::Errno::EINTR) =
                nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(mid), None)
            {}
            read.map_err(|e| Error::sys("read from the intermediate process", e))?;
            let text = String::from_utf8_lossy(&out);
            if let Some(m) = text.strip_prefix("err ") {
                return Err(Error::Init(m.to_string()));
            }
            let mut f = text.strip_prefix("ok ").unwrap_or("").split(' ');
            match (f.next().and_then(|p| p.parse::<i32>().ok()), f.next()) {
                (Some(pid), Some(mv)) => Ok((berth_sys::Forked::Parent(pid), mv == "1")),
                _ => Err(Error::Init(
                    "the intermediate process exited without creating the container's process"
                        .into(),
                )),
            }
        }
    }
}

/// In a child of the runtime's: reset the signal state (see [`fork_into`]). A failure cannot be
/// reported yet and leaves the state as it was, which is what happened before this existed.
fn child_signal_reset() {
    let _ = berth_sys::reset_signal_state();
}

fn fork_direct(
    clone_flags: i32,
    birth: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<(berth_sys::Forked, bool)> {
    if let Some(dir) = birth {
        match berth_sys::clone_fork_into_cgroup(clone_flags, dir) {
            Ok(f) => return Ok((f, false)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::E2BIG)
                ) =>
            {
                let f = berth_sys::clone_fork(clone_flags).map_err(|e| Error::sys("clone", e))?;
                return Ok((f, true));
            }
            Err(e) => return Err(Error::sys("clone3", e)),
        }
    }
    let f = berth_sys::clone_fork(clone_flags).map_err(|e| Error::sys("clone", e))?;
    Ok((f, false))
}

/// Connect to the caller's console socket (`--console-socket`), on the host, before the
/// container's process loses sight of the host's paths.
pub(crate) fn connect_console(
    path: Option<&Path>,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    path.map(|p| {
        std::os::unix::net::UnixStream::connect(p)
            .map_err(|e| Error::io("connect to console socket", p, e))
    })
    .transpose()
}

/// Refuse ids that could escape the state directory or confuse tools.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

impl Container {
    pub fn state_dir(root: &Path, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(root.join(id))
    }

    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let dir = Self::state_dir(root, id)?;
        let path = dir.join("state.json");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let record: Record = serde_json::from_slice(&data).map_err(|e| Error::CorruptState {
            id: id.to_string(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Container { dir, record })
    }

    /// Write state.json atomically (temporary name, then rename), so a reader never sees half
    /// a file. No fsync: the state describes processes that do not outlive the machine, and
    /// the ~1 ms it costs sits on the path of every container start.
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(&self.record)
            .map_err(|e| Error::sys("encode state", std::io::Error::other(e)))?;
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
            f.write_all(&data)
                .map_err(|e| Error::io("write", &tmp, e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
    }

    /// The spec saved at create.
    pub fn spec(&self) -> Result<Spec> {
        let path = self.dir.join("config.json");
        Spec::load(&path).map_err(|e| Error::LoadSpec {
            path,
            reason: e.to_string(),
        })
    }

    /// Whether `pid` may be signalled as one of the container's processes: it is in the
    /// container's own pid namespace, or the container has none (it shares the runtime's, and
    /// its cgroup was empty when it was created). A process that is gone (or exiting, so its
    /// namespace can no longer be read) counts as the container's: signalling it is harmless.
    pub fn owns_process(&self, pid: i32) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(ns) = self.record.pid_ns else {
            return true;
        };
        match fs::metadata(format!("/proc/{pid}/ns/pid")) {
            Ok(m) => m.ino() == ns,
            Err(_) => true,
        }
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    /// True while the container's init process is the one we started.
    pub fn init_alive(&self) -> bool {
        match berth_sys::process_start_time(self.record.pid) {
            Ok(t) => {
                t == self.record.pid_start && berth_sys::process_state(self.record.pid) != Some('Z')
            }
            Err(_) => false,
        }
    }

    pub fn status(&self) -> Status {
        if self.record.pid <= 0 {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.fifo_path().exists() {
            return Status::Created;
        }
        if let Ok(m) = berth_cgroups::open(&self.record.cgroup_path) {
            use berth_cgroups::CgroupManager;
            if m.is_frozen().unwrap_or(false) {
                return Status::Paused;
            }
        }
        Status::Running
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: OCI_VERSION.to_string(),
            id: self.record.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.record.pid
            },
            bundle: self.record.bundle.clone(),
            rootfs: self.record.rootfs.clone(),
            created: self.record.created,
            annotations: self.record.annotations.clone(),
            owner: self.record.owner.clone(),
        }
    }

    /// Every container under `root`.
    pub fn list(root: &Path) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("read directory", root, e)),
        };
        for e in entries.flatten() {
            if let Some(name) = e.file_name().to_str() {
                if let Ok(c) = Container::load(root, name) {
                    out.push(c);
                }
            }
        }
        out.sort_by_key(|c| c.record.created);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for good in ["a", "abc-123_X.y", "0"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", "..", "../x", "a/b", "-x", ".x", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Container::load(dir.path(), "nope"),
            Err(Error::NotFound(_))
        ));
        let cdir = dir.path().join("c1");
        fs::create_dir(&cdir).unwrap();
        let c = Container {
            dir: cdir.clone(),
            record: Record {
                id: "c1".into(),
                pid: i32::MAX,
                pid_start: 1,
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                created: chrono::Utc::now(),
                cgroup_path: "/berth/c1".into(),
                annotations: Default::default(),
                namespaces: vec![],
                owner: "root".into(),
                user_ns: false,
                has_poststart: false,
                has_poststop: false,
                pid_ns: None,
            },
        };
        c.save().unwrap();
        let back = Container::load(dir.path(), "c1").unwrap();
        assert_eq!(back.record.bundle, PathBuf::from("/b"));
        // a pid that does not exist means the container has stopped
        assert_eq!(back.status(), Status::Stopped);
        fs::write(cdir.join("state.json"), b"{garbage").unwrap();
        assert!(matches!(
            Container::load(dir.path(), "c1"),
            Err(Error::CorruptState { .. })
        ));
    }
}
