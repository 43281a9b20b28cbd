//! The OCI spec of a container, built from its image's config and a Docker create request with
//! Docker's defaults: the process (command, env, user, caps, rlimits), seccomp, mounts,
//! namespaces, resources and devices. Each flag is validated here, and a bad one is refused
//! with an error that names it.

pub mod caps;
pub mod resources;
pub mod seccomp;
pub mod user;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerCreateBody, ExecConfig, HostConfig, MountType};
use nix::sys::resource::{getrlimit, Resource};
use serde_json::{json, Value};

/// Docker's PATH when neither the image nor the request has one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's masked paths: kernel state a container must not read.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: kernel knobs a container must not turn.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(thiserror::Error, Debug)]
pub enum SpecError {
    /// A flag (or API field) with a value Docker would refuse.
    #[error("{flag}: {reason}")]
    InvalidFlag { flag: &'static str, reason: String },
    #[error("no command specified")]
    NoCommand,
    #[error("--user {user}: {reason}")]
    User { user: String, reason: String },
    #[error("read {path} in the container's rootfs: {source}")]
    ReadRootfs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    ReadHost {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `--pid/--ipc/--network container:X` names a container that is not there or not running.
    #[error("{flag} container:{container}: {reason}")]
    JoinContainer {
        flag: &'static str,
        container: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Internal { what: &'static str, reason: String },
}

impl SpecError {
    /// The client asked for something wrong (HTTP 400), as opposed to a failure of the host.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            SpecError::InvalidFlag { .. }
                | SpecError::NoCommand
                | SpecError::User { .. }
                | SpecError::JoinContainer { .. }
        )
    }
}

/// What `build` needs: the request, the image, and what the engine prepared.
pub struct SpecInput<'a> {
    /// 64-hex container id; the hostname defaults to its first 12 characters.
    pub id: &'a str,
    pub body: &'a ContainerCreateBody,
    pub image: &'a berth_image::manifest::ImageConfig,
    /// The mounted container root (overlay).
    pub rootfs: &'a Path,
    pub hosts_path: &'a Path,
    pub hostname_path: &'a Path,
    pub resolv_path: &'a Path,
    pub cgroups_path: String,
    /// ("container-name-or-id", "pid"|"ipc"|"net"|"uts") → /proc/<pid>/ns/<t>.
    pub ns_of: &'a dyn Fn(&str, &str) -> Result<PathBuf, SpecError>,
}

fn bad(flag: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::InvalidFlag {
        flag,
        reason: reason.into(),
    }
}

/// Docker's ReplaceOrAppendEnvValues: a later `KEY=v` replaces an earlier `KEY=...`; a bare
/// `KEY` removes it.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |s: &str| {
        s.split_once('=')
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| s.to_string())
    };
    let mut out: Vec<String> = base.to_vec();
    for e in over {
        let k = key(e);
        let pos = out.iter().position(|x| key(x) == k);
        match (e.contains('='), pos) {
            (true, Some(i)) => out[i] = e.clone(),
            (true, None) => out.push(e.clone()),
            (false, Some(i)) => {
                out.remove(i);
            }
            (false, None) => {}
        }
    }
    out
}

/// Docker's merge of the command: a request Entrypoint replaces the image's and drops the
/// image's Cmd; a request Cmd replaces the image's Cmd.
pub fn merge_command(
    req_entrypoint: Option<&[String]>,
    req_cmd: Option<&[String]>,
    image: Option<&berth_image::manifest::ContainerConfig>,
) -> Result<Vec<String>, SpecError> {
    let img_ep = image.and_then(|c| c.entrypoint.as_deref()).unwrap_or(&[]);
    let img_cmd = image.and_then(|c| c.cmd.as_deref()).unwrap_or(&[]);
    let req_cmd = req_cmd.filter(|c| !c.is_empty());
    // `--entrypoint ""` arrives as [""]: no entrypoint at all, not the image's
    let req_ep: Option<Vec<String>> =
        req_entrypoint.map(|e| e.iter().filter(|s| !s.is_empty()).cloned().collect());
    let (ep, cmd): (Vec<String>, &[String]) = match req_ep {
        Some(ep) if !ep.is_empty() => (ep, req_cmd.unwrap_or(&[])),
        Some(_) => (Vec::new(), req_cmd.unwrap_or(img_cmd)),
        None => (img_ep.to_vec(), req_cmd.unwrap_or(img_cmd)),
    };
    let mut args = ep;
    args.extend(cmd.iter().cloned());
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

fn rlimit_name(name: &str) -> Option<(&'static str, Resource)> {
    Some(match name {
        "core" => ("RLIMIT_CORE", Resource::RLIMIT_CORE),
        "cpu" => ("RLIMIT_CPU", Resource::RLIMIT_CPU),
        "data" => ("RLIMIT_DATA", Resource::RLIMIT_DATA),
        "fsize" => ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
        "locks" => ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
        "memlock" => ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
        "msgqueue" => ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
        "nice" => ("RLIMIT_NICE", Resource::RLIMIT_NICE),
        "nofile" => ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
        "nproc" => ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
        "rss" => ("RLIMIT_RSS", Resource::RLIMIT_RSS),
        "rtprio" => ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
        "rttime" => ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
        "sigpending" => ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
        "stack" => ("RLIMIT_STACK", Resource::RLIMIT_STACK),
        "as" => ("RLIMIT_AS", Resource::RLIMIT_AS),
        _ => return None,
    })
}

/// Whether this process may raise hard rlimits (CAP_SYS_RESOURCE, bit 24, in CapEff). The
/// container's init is set up with the same capabilities, so without it a limit above the
/// current hard one cannot be given.
fn can_raise_rlimits() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1 << 24) != 0)
}

fn rlimits(h: &HostConfig) -> Result<Vec<Value>, SpecError> {
    let mut out = Vec::new();
    for u in h.ulimits.iter().flatten() {
        let name = u.name.as_deref().unwrap_or("");
        let Some((typ, resource)) = rlimit_name(name) else {
            return Err(bad("--ulimit", format!("unknown limit {name:?}")));
        };
        // -1 is "unlimited" in Docker's flag syntax
        let v = |x: Option<i64>| {
            x.map(|x| if x < 0 { u64::MAX } else { x as u64 })
                .unwrap_or(0)
        };
        let (soft, hard) = (v(u.soft), v(u.hard));
        if soft > hard {
            return Err(bad(
                "--ulimit",
                format!("{name}: soft limit {soft} is greater than hard limit {hard}"),
            ));
        }
        if let Ok((_, current_hard)) = getrlimit(resource) {
            if hard > current_hard && !can_raise_rlimits() {
                return Err(bad(
                    "--ulimit",
                    format!(
                        "{name}: hard limit {hard} is above this host's {current_hard}, which berth cannot raise without CAP_SYS_RESOURCE"
                    ),
                ));
            }
        }
        out.push(json!({"type": typ, "soft": soft, "hard": hard}));
    }
    Ok(out)
}

/// The parsed `--security-opt` list.
#[derive(Default)]
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp: Option<String>,
    unconfined_paths: bool,
}

fn security_opts(list: &[String]) -> Result<SecurityOpts, SpecError> {
    let mut o = SecurityOpts::default();
    for s in list {
        // the old `key:value` spelling is still accepted by Docker
        let (k, v) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .unwrap_or((s.as_str(), ""));
        match k {
            "no-new-privileges" => {
                o.no_new_privileges = match v {
                    "" | "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(
                            "--security-opt",
                            format!("invalid no-new-privileges value {v:?}"),
                        ))
                    }
                }
            }
            "seccomp" => o.seccomp = Some(v.to_string()),
            "systempaths" if v == "unconfined" => o.unconfined_paths = true,
            // apparmor and SELinux are not used by berth; the API layer warns
            "apparmor" | "label" => {}
            _ => return Err(bad("--security-opt", format!("invalid option {s:?}"))),
        }
    }
    Ok(o)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

fn abs(flag: &'static str, p: &str) -> Result<(), SpecError> {
    if p.starts_with('/') && !p.split('/').any(|c| c == "..") {
        Ok(())
    } else {
        Err(bad(
            flag,
            format!("{p} is not an absolute path inside the container"),
        ))
    }
}

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// `-v host:container[:opts]`.
fn parse_bind(b: &str) -> Result<Value, SpecError> {
    let parts: Vec<&str> = b.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(bad("--volume", format!("invalid specification {b:?}"))),
    };
    if !src.starts_with('/') {
        return Err(bad(
            "--volume",
            format!(
                "{src}: volumes are not supported yet, only bind mounts of absolute host paths"
            ),
        ));
    }
    abs("--volume", dst)?;
    let mut ro = false;
    let mut prop = "rprivate";
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => ro = true,
            "rw" => ro = false,
            // SELinux relabelling and volume copy-up have no meaning for a host bind here
            "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
            p if PROPAGATIONS.contains(&p) => prop = p,
            _ => return Err(bad("--volume", format!("invalid option {o:?} in {b:?}"))),
        }
    }
    // Docker creates a missing host directory for -v (not for --mount)
    if !Path::new(src).exists() {
        std::fs::create_dir_all(src).map_err(|e| bad("--volume", format!("create {src}: {e}")))?;
    }
    let mut options = vec!["rbind", prop];
    if ro {
        options.push("ro");
    }
    Ok(mount(dst, "bind", src, &options))
}

fn tmpfs_options(flag: &'static str, user: &[String]) -> Result<Vec<String>, SpecError> {
    let mut opts: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    for o in user {
        let o = o.trim();
        if o.is_empty() {
            continue;
        }
        if o.contains(' ') {
            return Err(bad(flag, format!("invalid option {o:?}")));
        }
        let opposite = match o {
            "exec" => Some("noexec"),
            "suid" => Some("nosuid"),
            "dev" => Some("nodev"),
            _ => None,
        };
        if let Some(x) = opposite {
            opts.retain(|y| y != x);
        }
        opts.push(o.to_string());
    }
    Ok(opts)
}

fn user_mounts(h: &HostConfig) -> Result<Vec<Value>, SpecError> {
    let mut out = Vec::new();
    for b in h.binds.iter().flatten() {
        out.push(parse_bind(b)?);
    }
    if let Some(t) = &h.tmpfs {
        let mut keys: Vec<&String> = t.keys().collect();
        keys.sort();
        for dst in keys {
            abs("--tmpfs", dst)?;
            let user: Vec<String> = t[dst].split(',').map(str::to_string).collect();
            let opts = tmpfs_options("--tmpfs", &user)?;
            let o: Vec<&str> = opts.iter().map(String::as_str).collect();
            out.push(mount(dst, "tmpfs", "tmpfs", &o));
        }
    }
    for m in h.mounts.iter().flatten() {
        let dst = m.target.as_deref().unwrap_or("");
        abs("--mount", dst)?;
        match m.typ {
            Some(MountType::BIND) => {
                let src = m.source.as_deref().unwrap_or("");
                if !src.starts_with('/') {
                    return Err(bad(
                        "--mount",
                        format!("bind source {src:?} must be an absolute path"),
                    ));
                }
                if !Path::new(src).exists() {
                    return Err(bad(
                        "--mount",
                        format!("bind source path does not exist: {src}"),
                    ));
                }
                let bo = m.bind_options.as_ref();
                let prop = bo
                    .and_then(|b| b.propagation.as_ref())
                    .map(|p| p.to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rprivate".into());
                let rec = if bo.and_then(|b| b.non_recursive) == Some(true) {
                    "bind"
                } else {
                    "rbind"
                };
                let mut o = vec![rec, prop.as_str()];
                if m.read_only == Some(true) {
                    o.push("ro");
                }
                out.push(mount(dst, "bind", src, &o));
            }
            Some(MountType::TMPFS) => {
                let mut user = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if let Some(s) = t.size_bytes.filter(|s| *s > 0) {
                        user.push(format!("size={s}"));
                    }
                    if let Some(mode) = t.mode.filter(|m| *m != 0) {
                        user.push(format!("mode={mode:o}"));
                    }
                    for kv in t.options.iter().flatten() {
                        user.push(kv.join("="));
                    }
                }
                if m.read_only == Some(true) {
                    user.push("ro".into());
                }
                let opts = tmpfs_options("--mount", &user)?;
                let o: Vec<&str> = opts.iter().map(String::as_str).collect();
                out.push(mount(dst, "tmpfs", "tmpfs", &o));
            }
            Some(MountType::VOLUME) => return Err(bad("--mount", "volumes are not supported yet")),
            Some(ref t) => return Err(bad("--mount", format!("mount type {t} is not supported"))),
            None => return Err(bad("--mount", "a mount needs a type")),
        }
    }
    Ok(out)
}

/// What a `--pid/--ipc/--uts/--network` mode asks for.
enum NsMode {
    New,
    Host,
    Join(PathBuf),
}

fn ns_mode(
    flag: &'static str,
    mode: Option<&str>,
    kind: &str,
    ns_of: &dyn Fn(&str, &str) -> Result<PathBuf, SpecError>,
    new_ones: &[&str],
) -> Result<NsMode, SpecError> {
    let m = mode.unwrap_or("");
    if m == "host" {
        return Ok(NsMode::Host);
    }
    if let Some(c) = m.strip_prefix("container:") {
        if c.is_empty() {
            return Err(bad(flag, "container: needs a container name or id"));
        }
        // the engine's lookup does not know which flag asked; the error names it here
        return ns_of(c, kind).map(NsMode::Join).map_err(|e| match e {
            SpecError::JoinContainer {
                container, reason, ..
            } => SpecError::JoinContainer {
                flag,
                container,
                reason,
            },
            other => other,
        });
    }
    if m.is_empty() || new_ones.contains(&m) {
        return Ok(NsMode::New);
    }
    Err(bad(flag, format!("invalid mode {m:?}")))
}

/// Masked or read-only paths: none when privileged (or `systempaths=unconfined`), the API's
/// own list when the request has one (Docker honours HostConfig.MaskedPaths/ReadonlyPaths),
/// else Docker's defaults.
fn paths(unconfined: bool, requested: &Option<Vec<String>>, default: &[&str]) -> Vec<String> {
    if unconfined {
        return Vec::new();
    }
    match requested {
        Some(list) => list.clone(),
        None => default.iter().map(|s| s.to_string()).collect(),
    }
}

/// The masked and read-only /proc paths a container gets, written into its stored HostConfig
/// at create as dockerd does, so that inspect shows them (`HostConfig.MaskedPaths` and
/// `ReadonlyPaths`): the defaults unless the request chose its own, none for a privileged
/// container or with `--security-opt systempaths=unconfined` (which also wins over a list).
pub fn record_system_paths(h: &mut HostConfig) {
    let unconfined = h.privileged.unwrap_or(false)
        || h.security_opt.iter().flatten().any(|s| {
            s.split_once(['=', ':'])
                .is_some_and(|(k, v)| k == "systempaths" && v == "unconfined")
        });
    if unconfined {
        if !h.privileged.unwrap_or(false) {
            h.masked_paths = Some(Vec::new());
            h.readonly_paths = Some(Vec::new());
        }
        return;
    }
    h.masked_paths
        .get_or_insert_with(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect());
    h.readonly_paths
        .get_or_insert_with(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect());
}

/// RFC 1123 host names, as Docker accepts them: dot-separated labels of letters, digits and
/// inner hyphens, at most 63 bytes each and 255 in all.
fn check_hostname(name: &str) -> Result<(), SpecError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() <= 255 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad(
            "--hostname",
            format!("{name:?} is not a valid RFC 1123 host name"),
        ))
    }
}

/// Build the OCI spec of a container.
pub fn build(input: &SpecInput) -> Result<oci_spec::runtime::Spec, SpecError> {
    let body = input.body;
    let default_hc = HostConfig::default();
    let h = body.host_config.as_ref().unwrap_or(&default_hc);
    let img = input.image.config.as_ref();
    let privileged = h.privileged == Some(true);
    let sec = security_opts(h.security_opt.as_deref().unwrap_or(&[]))?;
    let tty = body.tty == Some(true);

    // namespaces
    let ns_of = input.ns_of;
    let pid = ns_mode("--pid", h.pid_mode.as_deref(), "pid", ns_of, &["private"])?;
    let ipc = ns_mode(
        "--ipc",
        h.ipc_mode.as_deref(),
        "ipc",
        ns_of,
        &["private", "shareable", "none"],
    )?;
    let uts = ns_mode("--uts", h.uts_mode.as_deref(), "uts", ns_of, &["private"])?;
    let net = ns_mode(
        "--network",
        h.network_mode.as_deref(),
        "net",
        ns_of,
        &["none", "default", "bridge"],
    )?;
    match h.userns_mode.as_deref().unwrap_or("") {
        "" | "host" => {}
        m => {
            return Err(bad(
                "--userns",
                format!("{m:?}: only \"host\" is supported"),
            ))
        }
    }
    let cgroupns_host = matches!(
        h.cgroupns_mode,
        Some(bollard_stubs::models::HostConfigCgroupnsModeEnum::HOST)
    );
    let mut namespaces = vec![json!({"type": "mount"})];
    for (typ, m) in [
        ("pid", &pid),
        ("ipc", &ipc),
        ("uts", &uts),
        ("network", &net),
    ] {
        match m {
            NsMode::New => namespaces.push(json!({"type": typ})),
            NsMode::Host => {}
            NsMode::Join(p) => namespaces.push(json!({"type": typ, "path": p})),
        }
    }
    if !cgroupns_host {
        namespaces.push(json!({"type": "cgroup"}));
    }

    // hostname: the host's own with --uts host / --network host, as Docker
    let own_uts = matches!(uts, NsMode::New);
    let requested_hostname = body.hostname.as_deref().filter(|s| !s.is_empty());
    if let Some(name) = requested_hostname {
        if matches!(net, NsMode::Join(_)) {
            return Err(bad(
                "--hostname",
                "conflicts with --network container:<name>: the hostname is that container's",
            ));
        }
        check_hostname(name)?;
    }
    let hostname = match requested_hostname {
        Some(h) => h.to_string(),
        None if matches!(net, NsMode::Host) || matches!(uts, NsMode::Host) => {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        }
        None => input.id.get(..12).unwrap_or(input.id).to_string(),
    };

    // process
    let args = merge_command(body.entrypoint.as_deref(), body.cmd.as_deref(), img)?;
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".into());
    }
    let img_env = img.and_then(|c| c.env.clone()).unwrap_or_default();
    let cfg_env = merge_env(&img_env, body.env.as_deref().unwrap_or(&[]));
    let mut env = merge_env(&env, &cfg_env);
    let cwd = body
        .working_dir
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            img.and_then(|c| c.working_dir.as_deref())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(bad("--workdir", format!("{cwd:?} is not an absolute path")));
    }
    let user_spec = body
        .user
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| img.and_then(|c| c.user.as_deref()))
        .unwrap_or("");
    let u = user::resolve(
        input.rootfs,
        user_spec,
        h.group_add.as_deref().unwrap_or(&[]),
    )?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", u.home));
    }
    let cap_list = caps::effective(
        privileged,
        h.cap_add.as_deref().unwrap_or(&[]),
        h.cap_drop.as_deref().unwrap_or(&[]),
    )?;
    let mut process = json!({
        "terminal": tty,
        "user": {"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": cap_list, "effective": cap_list, "permitted": cap_list},
        "noNewPrivileges": sec.no_new_privileges,
    });
    if let Some([height, width]) = h.console_size.as_deref() {
        if tty && *height > 0 && *width > 0 {
            process["consoleSize"] = json!({"height": height, "width": width});
        }
    }
    let rl = rlimits(h)?;
    if !rl.is_empty() {
        process["rlimits"] = Value::Array(rl);
    }
    if let Some(adj) = h.oom_score_adj.filter(|a| *a != 0) {
        if !(-1000..=1000).contains(&adj) {
            return Err(bad(
                "--oom-score-adj",
                format!("{adj} is not in the range -1000 to 1000"),
            ));
        }
        process["oomScoreAdj"] = json!(adj);
    }

    // seccomp
    let cap_set: HashSet<String> = cap_list.iter().cloned().collect();
    let seccomp = match sec.seccomp.as_deref() {
        _ if privileged => None,
        Some("unconfined") => None,
        None | Some("") | Some("builtin") => Some(seccomp::default_profile(&cap_set)?),
        Some(profile) => Some(seccomp::from_docker_profile(profile, &cap_set)?),
    };

    // mounts
    let readonly = h.readonly_rootfs == Some(true);
    let ro = if privileged { "rw" } else { "ro" };
    let shm_size = match h.shm_size {
        Some(s) if s < 0 => return Err(bad("--shm-size", format!("{s} is negative"))),
        Some(s) if s > 0 => s,
        _ => 64 << 20,
    };
    let shm_opt = format!("size={shm_size}");
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro]),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", ro],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    let own_ipc = matches!(ipc, NsMode::New);
    // --ipc none: no /dev/shm. --ipc host: the host's, as Docker (POSIX shared memory lives
    // there, and it belongs with the IPC namespace). A joined container's /dev/shm is the
    // engine's to bind (it knows where that container keeps it).
    if own_ipc && h.ipc_mode.as_deref() != Some("none") {
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt],
        ));
    } else if matches!(ipc, NsMode::Host) && Path::new("/dev/shm").is_dir() {
        mounts.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "rprivate"],
        ));
    }
    let user = user_mounts(h)?;
    let taken = |d: &str| user.iter().any(|m| m["destination"] == d);
    // a user's /dev replaces everything Docker would mount under it too
    let user_dev = taken("/dev");
    mounts.retain(|m| {
        let d = m["destination"].as_str().unwrap_or("");
        let under_user_dev = user_dev && d.starts_with("/dev/");
        !(taken(d) || under_user_dev)
    });
    let etc_opts: &[&str] = if readonly {
        &["rbind", "rprivate", "ro"]
    } else {
        &["rbind", "rprivate"]
    };
    for (dst, src) in [
        ("/etc/resolv.conf", input.resolv_path),
        ("/etc/hostname", input.hostname_path),
        ("/etc/hosts", input.hosts_path),
    ] {
        if !taken(dst) {
            mounts.push(
                json!({"destination": dst, "type": "bind", "source": src, "options": etc_opts}),
            );
        }
    }
    // parents before children, so that a mount at /a/b is not hidden by a later one at /a
    let mut user = user;
    user.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map(|d| d.trim_end_matches('/').matches('/').count())
            .unwrap_or(0)
    });
    mounts.extend(user);

    // linux
    let (devices, dev_rules) = resources::devices(h, privileged)?;
    let mut res = resources::resources(h)?;
    res["devices"] = Value::Array(dev_rules);
    let own_net = matches!(net, NsMode::New);
    let mut sysctl = serde_json::Map::new();
    if own_net {
        // Docker's defaults for a network namespace of its own (20.10+): ping without
        // CAP_NET_RAW and ports below 1024 without CAP_NET_BIND_SERVICE; safe because the
        // namespace is the container's. Only where the kernel has them.
        for (k, v) in [
            ("net.ipv4.ping_group_range", "0 2147483647"),
            ("net.ipv4.ip_unprivileged_port_start", "0"),
        ] {
            if Path::new("/proc/sys").join(k.replace('.', "/")).exists() {
                sysctl.insert(k.into(), json!(v));
            }
        }
    }
    if let Some(s) = &h.sysctls {
        for (k, v) in s {
            resources::check_sysctl(k, own_ipc, own_net, own_uts)?;
            sysctl.insert(k.clone(), json!(v));
        }
    }
    let unconfined_paths = privileged || sec.unconfined_paths;
    let mut linux = json!({
        "cgroupsPath": input.cgroups_path,
        "namespaces": namespaces,
        "resources": res,
        "devices": devices,
        "maskedPaths": paths(unconfined_paths, &h.masked_paths, &MASKED_PATHS),
        "readonlyPaths": paths(unconfined_paths, &h.readonly_paths, &READONLY_PATHS),
    });
    if !sysctl.is_empty() {
        linux["sysctl"] = Value::Object(sysctl);
    }
    // A bind that propagates (shared, slave) needs the root's propagation to allow it, as
    // Docker sets it: shared wins over slave.
    let props: Vec<&str> = mounts
        .iter()
        .filter(|m| m["type"] == "bind")
        .flat_map(|m| m["options"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    if props.iter().any(|o| *o == "shared" || *o == "rshared") {
        linux["rootfsPropagation"] = json!("shared");
    } else if props.iter().any(|o| *o == "slave" || *o == "rslave") {
        linux["rootfsPropagation"] = json!("rslave");
    }
    if let Some(s) = seccomp {
        linux["seccomp"] = s;
    }

    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": input.rootfs, "readonly": readonly},
        "mounts": mounts,
        "linux": linux,
    });
    if own_uts && !hostname.is_empty() {
        spec["hostname"] = json!(hostname);
        if let Some(d) = body.domainname.as_deref().filter(|s| !s.is_empty()) {
            spec["domainname"] = json!(d);
        }
    }
    serde_json::from_value(spec).map_err(|e| SpecError::Internal {
        what: "assemble the OCI spec",
        reason: e.to_string(),
    })
}

/// Whether the container gets a pid namespace of its own (not the host's, not another's).
pub fn has_own_pid_namespace(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none()
            })
        })
}

/// `--init`: run `host_binary`, bind-mounted read-only at `in_container`, as the container's
/// PID 1 with `init_args` and then `--` and the command, as Docker does with docker-init.
/// Only for a container with a PID namespace of its own (with the host's or another
/// container's, there is already an init); returns whether it was added.
pub fn add_init(
    spec: &mut oci_spec::runtime::Spec,
    host_binary: &Path,
    in_container: &str,
    init_args: &[&str],
) -> Result<bool, SpecError> {
    let internal = |e: String| SpecError::Internal {
        what: "add the init process",
        reason: e,
    };
    if !has_own_pid_namespace(spec) {
        return Ok(false);
    }
    abs("--init", in_container)?;
    let mut v = serde_json::to_value(&*spec).map_err(|e| internal(e.to_string()))?;
    let cmd: Vec<Value> = v["process"]["args"].as_array().cloned().unwrap_or_default();
    let mut args: Vec<Value> = vec![json!(in_container)];
    args.extend(init_args.iter().map(|a| json!(a)));
    args.push(json!("--"));
    args.extend(cmd);
    v["process"]["args"] = Value::Array(args);
    let m = json!({"destination": in_container, "type": "bind", "source": host_binary,
                   "options": ["bind", "ro"]});
    match v["mounts"].as_array_mut() {
        Some(list) => list.push(m),
        None => v["mounts"] = json!([m]),
    }
    *spec = serde_json::from_value(v).map_err(|e| internal(e.to_string()))?;
    Ok(true)
}

/// The process of `docker exec`: the container's process (its env, user, caps, rlimits,
/// no_new_privs, apparmor) with the exec request's command, env, user, workdir and tty laid
/// over it; `privileged` gives every capability. Seccomp stays the container's: it is part of
/// `linux`, which an exec joins as it is.
pub fn exec_process(
    body: &ExecConfig,
    container_spec: &oci_spec::runtime::Spec,
    rootfs: &Path,
) -> Result<oci_spec::runtime::Process, SpecError> {
    let internal = |e: serde_json::Error| SpecError::Internal {
        what: "assemble the exec process",
        reason: e.to_string(),
    };
    let base = container_spec
        .process()
        .as_ref()
        .ok_or(SpecError::Internal {
            what: "exec",
            reason: "the container's spec has no process".into(),
        })?;
    let mut p = serde_json::to_value(base).map_err(internal)?;
    let args: Vec<String> = body.cmd.clone().unwrap_or_default();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    p["args"] = json!(args);
    let tty = body.tty == Some(true);
    let mut env: Vec<String> = base.env().clone().unwrap_or_default();
    if base.terminal() == Some(true) && !tty {
        env.retain(|e| e != "TERM=xterm");
    }
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let env = merge_env(&env, body.env.as_deref().unwrap_or(&[]));
    p["env"] = json!(env);
    p["terminal"] = json!(tty);
    if let Some(u) = body.user.as_deref().filter(|s| !s.is_empty()) {
        let r = user::resolve(rootfs, u, &[])?;
        p["user"] = json!({"uid": r.uid, "gid": r.gid, "additionalGids": r.additional_gids});
    }
    if let Some(w) = body.working_dir.as_deref().filter(|s| !s.is_empty()) {
        if !w.starts_with('/') {
            return Err(bad("--workdir", format!("{w:?} is not an absolute path")));
        }
        p["cwd"] = json!(w);
    }
    if body.privileged == Some(true) {
        let all = caps::kernel_caps()?;
        p["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
    }
    match body.console_size.as_deref() {
        Some([height, width]) if tty && *height > 0 && *width > 0 => {
            p["consoleSize"] = json!({"height": height, "width": width});
        }
        _ => {
            if let Some(obj) = p.as_object_mut() {
                obj.remove("consoleSize");
            }
        }
    }
    serde_json::from_value(p).map_err(internal)
}

#[cfg(test)]
mod tests;
