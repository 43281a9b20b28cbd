//! `create`: from a bundle to a container whose init process waits for `start`.
//!
//! One clone creates the init process inside its new namespaces (from an intermediate child
//! when a pid or time namespace must be joined or a time namespace made: those apply to the
//! children of whoever enters them, and the caller must stay as it was); the runtime then puts it in
//! its cgroup and writes its id mappings, lets it set up the root filesystem, runs the hooks
//! that belong to the runtime namespace, records the state and returns. If anything fails, the
//! guard undoes it all: the process is killed, the cgroup and the state directory removed.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use berth_cgroups::CgroupManager;
use oci_spec::runtime::Spec;

use crate::channel::{self, Msg};
use crate::container::{Container, OciState, Record, Status, OCI_VERSION};
use crate::error::{Error, Result};
use crate::init::{self, InitArgs};
use crate::namespaces;
use crate::Runtime;

/// What `create` needs besides the bundle. Not `Clone`: it may own descriptors.
#[derive(Debug, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// The init's stdin, stdout and stderr; None: the caller's own 0, 1 and 2. The runtime
    /// duplicates them into the init and closes nothing: the caller drops its copies (the
    /// write end of an output pipe, for one) once `create` has returned.
    pub stdio: Option<[std::os::fd::OwnedFd; 3]>,
    /// With `process.terminal`: a connected socket that receives the pty master (the
    /// `--console-socket` protocol, without a path to bind). Wins over `console_socket`.
    pub console: Option<std::os::unix::net::UnixStream>,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// Foreground `run` with a terminal and no console socket: use our own terminal.
    pub inherit_tty: bool,
    /// Create and start in one: the init runs the process as soon as it is ready, without
    /// an exec fifo to wait on (a caller that creates only to start, as the shim; this saves
    /// the round trip of a `start`). poststart hooks run before `create` returns.
    pub start: bool,
}

/// Undo a half-made container on any failure.
struct Cleanup<'a> {
    dir: &'a Path,
    cgroup: Option<berth_cgroups::AnyManager>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "failed to remove the cgroup of a failed create");
            }
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

/// The devices every container may use whatever its rules say (the same list runc and Docker
/// allow): appended after the spec's rules, so a spec's "deny all" keeps /dev/null working.
pub fn with_default_device_rules(
    r: &oci_spec::runtime::LinuxResources,
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType as T};
    let Some(rules) = r.devices() else {
        return r.clone();
    };
    let mut rules = rules.clone();
    let rule = |typ: T, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(typ));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    rules.extend([
        rule(T::C, None, None, "m"),
        rule(T::B, None, None, "m"),
        rule(T::C, Some(1), Some(3), "rwm"),
        rule(T::C, Some(1), Some(8), "rwm"),
        rule(T::C, Some(1), Some(7), "rwm"),
        rule(T::C, Some(5), Some(0), "rwm"),
        rule(T::C, Some(1), Some(5), "rwm"),
        rule(T::C, Some(1), Some(9), "rwm"),
        rule(T::C, Some(136), None, "rwm"),
        rule(T::C, Some(5), Some(2), "rwm"),
    ]);
    let mut out = r.clone();
    out.set_devices(Some(rules));
    out
}

/// Time namespace offsets: clock name → (seconds, nanoseconds).
pub(crate) type TimeOffsets = Vec<(String, i64, u32)>;

/// Parse config.json. The spec's `linux.timeOffsets` is an object per clock
/// (`{"secs": .., "nanosecs": ..}`), which oci-spec 0.7 models as a string: when the file has
/// one, it is taken out of the document before oci-spec sees it. The file's bytes come back
/// too when they are what oci-spec reads as is (no timeOffsets): the state's copy of the
/// spec is then written from them, not encoded again.
pub(crate) fn parse_config(cfg: &Path) -> Result<(Spec, TimeOffsets, Option<Vec<u8>>)> {
    let bad = |reason: String| Error::LoadSpec {
        path: cfg.to_path_buf(),
        reason,
    };
    let data = fs::read(cfg).map_err(|e| bad(e.to_string()))?;
    // Say what is wrong with `[]` or `"x"` instead of a complaint about a missing field.
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad(
            "config.json must be a JSON object (the runtime spec's {\"ociVersion\": ..., ...})"
                .into(),
        ));
    }
    if !data.windows(11).any(|w| w == b"timeOffsets") {
        let spec = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
        return Ok((spec, Vec::new(), Some(data)));
    }
    let mut v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    let mut offsets = Vec::new();
    if let Some(obj) = v
        .get_mut("linux")
        .and_then(|l| l.as_object_mut())
        .and_then(|l| l.remove("timeOffsets"))
    {
        let map = obj
            .as_object()
            .ok_or_else(|| bad("linux.timeOffsets must be an object".into()))?;
        for (clock, o) in map {
            if clock != "monotonic" && clock != "boottime" {
                return Err(bad(format!("linux.timeOffsets: unknown clock {clock:?}")));
            }
            let secs = o.get("secs").and_then(|x| x.as_i64()).unwrap_or(0);
            let nanos = o.get("nanosecs").and_then(|x| x.as_u64()).unwrap_or(0);
            if nanos >= 1_000_000_000 {
                return Err(bad(format!(
                    "linux.timeOffsets.{clock}.nanosecs must be below 1e9"
                )));
            }
            offsets.push((clock.clone(), secs, nanos as u32));
        }
    }
    let spec = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
    Ok((spec, offsets, None))
}

/// The spec's ociVersion must be a version of the 1.x runtime spec (semver, as the spec says).
fn validate_oci_version(v: &str) -> Result<()> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return Err(Error::InvalidSpec(format!(
            "ociVersion {v:?} is not a semantic version"
        )));
    }
    if parts[0] != "1" {
        return Err(Error::InvalidSpec(format!(
            "ociVersion {v:?} is not supported: berth implements the 1.x runtime spec"
        )));
    }
    Ok(())
}

/// The bundle's directory, spec, root file system and time offsets, and the config's bytes
/// when they can be kept as they are (see [`parse_config`]).
pub(crate) type Bundle = (PathBuf, Spec, PathBuf, TimeOffsets, Option<Vec<u8>>);

pub(crate) fn load_bundle(bundle: &Path) -> Result<Bundle> {
    let bundle = fs::canonicalize(bundle).map_err(|e| Error::io("open bundle", bundle, e))?;
    let cfg = bundle.join("config.json");
    let (spec, offsets, raw) = parse_config(&cfg)?;
    validate_oci_version(spec.version())?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("root.path is missing".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = fs::canonicalize(&rootfs).map_err(|e| Error::io("open rootfs", &rootfs, e))?;
    if !rootfs.is_dir() {
        return Err(Error::InvalidSpec(format!(
            "root.path {} is not a directory",
            rootfs.display()
        )));
    }
    if spec.process().is_none() {
        return Err(Error::InvalidSpec("process is missing".into()));
    }
    Ok((bundle, spec, rootfs, offsets, raw))
}

fn write_id_map(pid: i32, file: &str, maps: &[oci_spec::runtime::LinuxIdMapping]) -> Result<()> {
    let mut s = String::new();
    for m in maps {
        s.push_str(&format!(
            "{} {} {}\n",
            m.container_id(),
            m.host_id(),
            m.size()
        ));
    }
    let path = format!("/proc/{pid}/{file}");
    fs::write(&path, s).map_err(|e| Error::io("write id mapping", path, e))
}

fn write_time_offsets(offsets: &TimeOffsets) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut s = String::new();
    for (clock, secs, nanos) in offsets {
        s.push_str(&format!("{clock} {secs} {nanos}\n"));
    }
    fs::write("/proc/self/timens_offsets", s)
        .map_err(|e| Error::io("write time offsets", "/proc/self/timens_offsets", e))
}

/// Write a file atomically (temporary name, then rename), for pid files that a supervisor
/// may read at any moment. Like the state, a pid file need not survive a crash of the machine,
/// so it is not fsynced.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

/// The second stage of the container's cgroup, made while its init sets up: the v1
/// directories, the spec's limits, and the `tasks` files the init moves itself through.
/// `move_pid` is the init when it was not born in its cgroup (a kernel without clone3).
fn complete_cgroup(
    cg: &berth_cgroups::AnyManager,
    linux: Option<&oci_spec::runtime::Linux>,
    move_pid: Option<i32>,
) -> Result<berth_cgroups::Entry> {
    cg.complete()?;
    if let Some(r) = linux.and_then(|l| l.resources().as_ref()) {
        cg.set(&with_default_device_rules(r))?;
    }
    if let Some(pid) = move_pid {
        cg.apply(pid)?;
    }
    Ok(cg.entry()?)
}

impl Runtime {
    /// Create the container; returns once its init waits for `start`. Forks: call it from a
    /// single-threaded process only (see the crate's documentation); a multithreaded caller
    /// gets an error before anything is made.
    pub fn create(&self, o: &CreateOptions) -> Result<Container> {
        berth_sys::require_single_thread().map_err(|e| Error::sys("create", e))?;
        crate::container::validate_id(&o.id)?;
        let keep_fds = crate::process::inherited_fds(o.preserve_fds);
        let (bundle, spec, rootfs, time_offsets, raw) = load_bundle(&o.bundle)?;
        let plan = namespaces::plan(&spec)?;
        crate::sysctl::validate(&spec, &plan)?;
        if let Some(h) = spec.hooks() {
            crate::hooks::validate(h)?;
        }
        crate::process::check_rlimits_leave_room(spec.process().as_ref())?;

        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| Error::io("create runtime root", &self.root, e))?;
        let dir = self.root.join(&o.id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(o.id.clone()))
            }
            Err(e) => return Err(Error::io("create state directory", &dir, e)),
        }
        let mut guard = Cleanup {
            dir: &dir,
            cgroup: None,
            pid: None,
            armed: true,
        };
        let spec_json = match raw {
            Some(bytes) => bytes,
            None => serde_json::to_vec(&spec)
                .map_err(|e| Error::sys("encode spec", std::io::Error::other(e)))?,
        };
        fs::write(dir.join("config.json"), spec_json)
            .map_err(|e| Error::io("write", dir.join("config.json"), e))?;

        let linux = spec.linux().as_ref();
        let cg_path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        // Before anything is made: processes already in the cgroup would become the
        // container's to limit and, at delete, to kill (issue 12).
        berth_cgroups::refuse_occupied(cg_path.as_deref(), &o.id)?;
        // Only what the process is born into now; the v1 hierarchies and the limits while it
        // sets up its mounts.
        let cgroup = berth_cgroups::begin(cg_path.as_deref(), &o.id)?;
        let cgroup_mount = cgroup.container_mount();
        let cgroup_path = cgroup.path().to_string();
        let birth = cgroup.birth_dir()?;
        guard.cgroup = Some(cgroup);

        let fifo: Option<std::os::fd::OwnedFd> = if o.start {
            None
        } else {
            let fifo_path = dir.join("exec.fifo");
            nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::sys(format!("mkfifo {}", fifo_path.display()), e))?;
            // Read-write, so that opening never blocks; init blocks on read until `start`
            // writes.
            Some(
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&fifo_path)
                    .map_err(|e| Error::io("open", &fifo_path, e))?
                    .into(),
            )
        };

        let console = match &o.console {
            Some(sock) => Some(
                sock.try_clone()
                    .map_err(|e| Error::sys("duplicate the console socket", e))?,
            ),
            None => crate::container::connect_console(o.console_socket.as_deref())?,
        };

        let owner = "root".to_string();
        let created = chrono::Utc::now();
        let annotations = spec.annotations().clone().unwrap_or_default();
        let mut state_for_hooks = OciState {
            oci_version: OCI_VERSION.into(),
            id: o.id.clone(),
            status: Status::Creating,
            pid: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created,
            annotations: annotations.clone(),
            owner: owner.clone(),
        };

        let hooks = spec.hooks().clone();
        let seccomp_agent = connect_agent(&spec, &state_for_hooks)?;
        if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            crate::seccomp::precompile(s, &self.root.join("seccomp"));
        }
        let (parent_chan, child_chan) = channel::pair()?;
        let joined_types: Vec<_> = plan.types.clone();
        let new_user = plan.new_user;
        // pid and time namespaces apply to the children of whoever enters them: they are
        // entered (or created) in an intermediate process, never in the caller.
        let child_only_joins: Vec<&namespaces::Join> = plan
            .joins
            .iter()
            .filter(|j| {
                matches!(
                    j.typ,
                    oci_spec::runtime::LinuxNamespaceType::Pid
                        | oci_spec::runtime::LinuxNamespaceType::Time
                )
            })
            .collect();
        let new_time = plan.new_time;
        let enter = || -> Result<()> {
            for j in &child_only_joins {
                namespaces::enter(j.fd.as_fd(), j.typ, &j.path)?;
            }
            if new_time {
                nix::sched::unshare(namespaces::flag(
                    oci_spec::runtime::LinuxNamespaceType::Time,
                ))
                .map_err(|e| Error::sys("unshare time namespace", e))?;
                write_time_offsets(&time_offsets)?;
            }
            Ok(())
        };
        let needs_intermediate = new_time || !child_only_joins.is_empty();
        let (forked, must_move) = crate::container::fork_into(
            plan.clone_flags.bits(),
            birth.as_ref().map(|d| d.as_fd()),
            needs_intermediate.then_some(&enter as &dyn Fn() -> Result<()>),
        )?;
        drop(child_only_joins);
        drop(birth);
        match forked {
            berth_sys::Forked::Child => {
                drop(parent_chan);
                if let Some(Err(e)) = o.stdio.as_ref().map(crate::process::install_stdio) {
                    let _ = child_chan.send(&Msg::Failed(e.to_string()));
                    berth_sys::exit_child(1);
                }
                init::run(InitArgs {
                    id: o.id.clone(),
                    spec,
                    bundle,
                    rootfs,
                    chan: child_chan,
                    plan,
                    fifo,
                    console,
                    cgroup_mount,
                    no_pivot: o.no_pivot,
                    no_new_keyring: o.no_new_keyring,
                    keep_fds,
                    inherit_tty: o.inherit_tty,
                    state_for_hooks,
                    started: std::cell::Cell::new(false),
                    seccomp_agent,
                })
            }
            berth_sys::Forked::Parent(pid) => {
                drop(child_chan);
                drop(fifo);
                drop(console);
                guard.pid = Some(pid);
                if new_user {
                    let l = linux.ok_or_else(|| Error::InvalidSpec("linux is missing".into()))?;
                    write_id_map(pid, "uid_map", l.uid_mappings().as_deref().unwrap_or(&[]))?;
                    write_id_map(pid, "gid_map", l.gid_mappings().as_deref().unwrap_or(&[]))?;
                }
                parent_chan.send(&Msg::Go(pid))?;
                // The child mounts its root filesystem while we complete its cgroup; it waits
                // for Attached before anything that must happen inside the cgroup.
                let attached = match &guard.cgroup {
                    Some(cg) => complete_cgroup(cg, linux, must_move.then_some(pid)),
                    None => Ok(berth_cgroups::Entry::from_parts(Vec::new(), Vec::new())),
                }
                .and_then(|entry| {
                    let (paths, fds) = entry.into_parts();
                    let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
                    parent_chan.send_with_fds(&Msg::Attached(paths), &raw)
                });
                // If the child failed meanwhile, its own message says why, not our EPIPE.
                if let Err(e) = attached {
                    return Err(match parent_chan.try_recv() {
                        Some(Msg::Failed(m)) => Error::Init(m),
                        _ => e,
                    });
                }
                state_for_hooks.pid = pid;
                loop {
                    match parent_chan.recv()? {
                        Some(Msg::RunRuntimeHooks) => {
                            if let Some(h) = &hooks {
                                crate::hooks::run(
                                    h.prestart().as_deref().unwrap_or(&[]),
                                    &state_for_hooks,
                                )?;
                                crate::hooks::run(
                                    h.create_runtime().as_deref().unwrap_or(&[]),
                                    &state_for_hooks,
                                )?;
                            }
                            parent_chan.send(&Msg::HooksDone)?;
                        }
                        Some(Msg::Ready) => break,
                        Some(Msg::Failed(m)) => return Err(Error::Init(m)),
                        Some(other) => {
                            return Err(Error::Init(format!("unexpected message {other:?}")))
                        }
                        None => {
                            // It is our child and gone (end of file before Ready): say how.
                            let how = match crate::wait::reap(pid) {
                                Ok(code) if code > 128 => format!(
                                    "killed by signal {} ({})",
                                    code - 128,
                                    nix::sys::signal::Signal::try_from(code - 128)
                                        .map(|s| s.as_str())
                                        .unwrap_or("?")
                                ),
                                Ok(code) => format!("exit status {code}"),
                                Err(e) => e.to_string(),
                            };
                            return Err(Error::Init(format!(
                                "the container's init process exited during setup ({how})"
                            )));
                        }
                    }
                }
                let pid_ns = {
                    use std::os::unix::fs::MetadataExt;
                    let ino = |p: &str| fs::metadata(p).map(|m| m.ino());
                    let theirs = ino(&format!("/proc/{pid}/ns/pid"))
                        .map_err(|e| Error::io("stat", format!("/proc/{pid}/ns/pid"), e))?;
                    (ino("/proc/self/ns/pid").ok() != Some(theirs)).then_some(theirs)
                };
                let pid_start = berth_sys::process_start_time(pid)
                    .map_err(|e| Error::sys("read the start time of init", e))?;
                let c = Container {
                    dir: dir.clone(),
                    record: Record {
                        id: o.id.clone(),
                        pid,
                        pid_start,
                        bundle: state_for_hooks.bundle.clone(),
                        rootfs: state_for_hooks.rootfs.clone(),
                        created,
                        cgroup_path,
                        annotations,
                        namespaces: joined_types
                            .iter()
                            .map(|t| {
                                let n = namespaces::proc_name(*t);
                                (n.to_string(), PathBuf::from(format!("/proc/{pid}/ns/{n}")))
                            })
                            .collect(),
                        owner,
                        user_ns: joined_types
                            .contains(&oci_spec::runtime::LinuxNamespaceType::User),
                        has_poststart: hooks
                            .as_ref()
                            .and_then(|h| h.poststart().as_ref())
                            .is_some_and(|v| !v.is_empty()),
                        has_poststop: hooks
                            .as_ref()
                            .and_then(|h| h.poststop().as_ref())
                            .is_some_and(|v| !v.is_empty()),
                        pid_ns,
                    },
                };
                c.save()?;
                if let Some(p) = &o.pid_file {
                    write_atomic(p, pid.to_string().as_bytes())?;
                }
                guard.armed = false;
                if o.start {
                    c.run_poststart();
                }
                Ok(c)
            }
        }
    }
}

/// Connect to the seccomp agent at `listenerPath`, if the spec names one: here, on the host,
/// because the container's init cannot reach the path once its root is switched.
pub(crate) fn connect_agent(
    spec: &Spec,
    state: &OciState,
) -> Result<Option<crate::seccomp::NotifyAgent>> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let Some(path) = s.listener_path() else {
        return Ok(None);
    };
    let sock = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::io("connect to the seccomp agent", path, e))?;
    Ok(Some(crate::seccomp::NotifyAgent {
        sock,
        metadata: s.listener_metadata().clone().unwrap_or_default(),
        state: state.clone(),
    }))
}
