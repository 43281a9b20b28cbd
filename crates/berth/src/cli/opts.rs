//! `run`/`create` flags and their mapping onto the API's ContainerCreateBody and HostConfig,
//! the way the docker CLI maps them (docker/cli's opts package and container/opts.go).

use std::collections::HashMap;
use std::io::BufRead;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Mount, MountBindOptions, MountTmpfsOptions, MountType, MountVolumeOptions,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, ThrottleDevice,
};

use super::{CliError, Result};

#[derive(clap::Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunOpts {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long = "attach")]
    pub attach: Vec<String>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Connect a container to a network
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    #[command(flatten)]
    pub netfeat: super::netfeat::NetFeatOpts,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Bind mount a volume
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[command(flatten)]
    pub health: super::selfheal::HealthOpts,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub args: Vec<String>,
}

fn bad(flag: &str, value: &str, why: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!(
        "invalid argument \"{value}\" for \"{flag}\" flag: {why}"
    ))
}

/// go-units' RAMInBytes: a size with an optional binary unit (k, m, g, t, p; "b", "ib" and
/// fractions allowed), as docker takes `--memory 512m` or `--shm-size 1.5g`.
pub fn parse_bytes(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(format!("invalid suffix: '{unit}'")),
    };
    Ok((n * mult) as i64)
}

/// `--cpus 1.5` → NanoCpus 1500000000; more precision than a nanosecond is refused.
pub fn parse_cpus(s: &str) -> std::result::Result<i64, String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!("failed to parse {s} as a rational number"));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 9 {
        return Err("value is too precise".to_string());
    }
    let int: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| format!("{s} is too large"))?
    };
    let frac_n: i64 = format!("{frac:0<9}").parse().unwrap_or(0);
    int.checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(frac_n))
        .ok_or_else(|| format!("{s} is too large"))
}

/// go-units' ParseUlimit: `nofile=1024:2048`, `nproc=512` (soft = hard).
pub fn parse_ulimit(s: &str) -> std::result::Result<ResourcesUlimits, String> {
    const NAMES: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    if !NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (a, b),
        None => (limits, limits),
    };
    let num = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// docker's env files (and label files): one `KEY=value` a line, `#` comments and blank lines
/// skipped, leading whitespace of the key dropped, a bare `KEY` taken from the CLI's own
/// environment when set there (and dropped when not).
pub fn parse_env_lines(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                if k.is_empty() {
                    return Err(format!("no variable name on line {}: '{line}'", i + 1));
                }
                if k.contains(char::is_whitespace) {
                    return Err(format!("variable '{k}' contains whitespaces"));
                }
                out.push(format!("{k}={v}"));
            }
            None => {
                let k = line.trim_end();
                if k.contains(char::is_whitespace) {
                    return Err(format!("variable '{k}' contains whitespaces"));
                }
                // a name the CLI's environment lacks is dropped, as docker drops it
                if let Some(v) = lookup(k) {
                    out.push(format!("{k}={v}"));
                }
            }
        }
    }
    Ok(out)
}

fn read_file(path: &str) -> Result<String> {
    let f = std::fs::File::open(path).map_err(|e| CliError::Io {
        op: format!("open {path}"),
        source: e,
    })?;
    let mut s = String::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| CliError::Io {
            op: format!("read {path}"),
            source: e,
        })?;
        s.push_str(&line);
        s.push('\n');
    }
    Ok(s)
}

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// `-e KEY=v` as given, `-e KEY` from the CLI's environment when set there.
pub(super) fn env_value(e: &str) -> String {
    if e.contains('=') {
        return e.to_string();
    }
    match env_lookup(e) {
        Some(v) => format!("{e}={v}"),
        None => e.to_string(),
    }
}

fn key_values(flag: &str, items: &[String]) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    for it in items {
        let (k, v) = it
            .split_once('=')
            .ok_or_else(|| bad(flag, it, "expected key=value"))?;
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// A size as [`parse_bytes`] reads it, or `-1` for no limit (`--memory-swap -1`).
pub(super) fn parse_bytes_or_unlimited(s: &str) -> std::result::Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    parse_bytes(s)
}

/// `k=v` items of a flag such as `--label` or `--opt`, later ones winning; a bare `k` is
/// `k=""`, an empty key is refused with the message `empty_key` makes of the item.
pub(super) fn key_value_map(
    items: &[String],
    empty_key: impl Fn(&str) -> String,
) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    for it in items {
        let (k, v) = it.split_once('=').unwrap_or((it.as_str(), ""));
        if k.is_empty() {
            return Err(CliError::Usage(empty_key(it)));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// `--device-{read,write}-{bps,iops} <device-path>:<rate>`; `form` names the rate in the
/// message for a value without one, `rate` reads it.
fn throttle(
    flag: &str,
    items: &[String],
    form: &str,
    rate: impl Fn(&str) -> std::result::Result<i64, String>,
) -> Result<Option<Vec<ThrottleDevice>>> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for it in items {
        let (path, r) = it.split_once(':').ok_or_else(|| {
            bad(
                flag,
                it,
                format!("bad format, expected <device-path>:<{form}>"),
            )
        })?;
        if !path.starts_with("/dev/") {
            return Err(bad(flag, it, format!("{path} is not a device path")));
        }
        out.push(ThrottleDevice {
            path: Some(path.to_string()),
            rate: Some(rate(r).map_err(|e| bad(flag, it, e))?),
        });
    }
    Ok(Some(out))
}

fn throttle_bps(flag: &str, items: &[String]) -> Result<Option<Vec<ThrottleDevice>>> {
    throttle(flag, items, "rate", parse_bytes)
}

fn throttle_iops(flag: &str, items: &[String]) -> Result<Option<Vec<ThrottleDevice>>> {
    throttle(flag, items, "number", |r| {
        r.parse()
            .map_err(|_| "invalid rate for device, must be a positive integer".to_string())
    })
}

/// A flag's value through its parser; the parser's complaint becomes docker's message that
/// names the flag and the value.
pub(super) fn flag_value<T>(
    flag: &str,
    v: Option<&str>,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    v.map(|s| parse(s).map_err(|e| bad(flag, s, e))).transpose()
}

/// Each value of a repeated flag through its parser, as [`flag_value`].
fn flag_values<T>(
    flag: &str,
    items: &[String],
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Vec<T>> {
    items
        .iter()
        .map(|s| parse(s).map_err(|e| bad(flag, s, e)))
        .collect()
}

/// `--device /dev/a[:/dev/b][:rwm]`.
pub fn parse_device(s: &str) -> std::result::Result<DeviceMapping, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let is_perm = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host, cont, perm) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perm(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perm(p) => (*h, *c, *p),
        _ => return Err(format!("invalid device specification: {s}")),
    };
    Ok(DeviceMapping {
        path_on_host: Some(host.to_string()),
        path_in_container: Some(cont.to_string()),
        cgroup_permissions: Some(perm.to_string()),
    })
}

/// `--mount type=bind,source=/a,target=/b,readonly`, in docker's CSV form.
pub fn parse_mount(s: &str) -> std::result::Result<Mount, String> {
    let mut m = Mount {
        typ: Some(MountType::VOLUME),
        ..Default::default()
    };
    let truthy = |v: Option<&str>| -> std::result::Result<bool, String> {
        match v {
            None | Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(o) => Err(format!("invalid value for readonly: {o}")),
        }
    };
    let mut bind = MountBindOptions::default();
    let mut vol = MountVolumeOptions::default();
    let mut tmpfs = MountTmpfsOptions::default();
    for field in s.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let val = || v.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match k.as_str() {
            "type" => {
                m.typ = Some(match val()? {
                    "bind" => MountType::BIND,
                    "volume" => MountType::VOLUME,
                    "tmpfs" => MountType::TMPFS,
                    "npipe" => MountType::NPIPE,
                    "image" => MountType::IMAGE,
                    "cluster" => MountType::CLUSTER,
                    o => return Err(format!("invalid mount type: {o}")),
                })
            }
            "source" | "src" => m.source = Some(val()?.to_string()),
            "target" | "dst" | "destination" => m.target = Some(val()?.to_string()),
            "readonly" | "ro" => m.read_only = Some(truthy(v)?),
            "consistency" => m.consistency = Some(val()?.to_string()),
            "bind-propagation" => {
                bind.propagation = Some(
                    serde_json::from_value(serde_json::Value::String(val()?.to_string())).map_err(
                        |_| format!("invalid bind-propagation: {}", val().unwrap_or("")),
                    )?,
                )
            }
            "bind-nonrecursive" => bind.non_recursive = Some(truthy(v)?),
            "volume-nocopy" => vol.no_copy = Some(truthy(v)?),
            "volume-label" => {
                let (lk, lv) = val()?.split_once('=').unwrap_or((val()?, ""));
                vol.labels
                    .get_or_insert_with(HashMap::new)
                    .insert(lk.to_string(), lv.to_string());
            }
            "volume-opt" => {
                let (ok, ov) = val()?.split_once('=').ok_or_else(|| {
                    format!("invalid volume-opt '{field}': it is volume-opt=key=value")
                })?;
                let dc = vol.driver_config.get_or_insert_with(Default::default);
                dc.options
                    .get_or_insert_with(HashMap::new)
                    .insert(ok.to_string(), ov.to_string());
            }
            "volume-driver" => {
                vol.driver_config.get_or_insert_with(Default::default).name =
                    Some(val()?.to_string())
            }
            "tmpfs-size" => tmpfs.size_bytes = Some(parse_bytes(val()?)?),
            "tmpfs-mode" => {
                tmpfs.mode = Some(
                    i64::from_str_radix(val()?, 8)
                        .map_err(|_| format!("invalid tmpfs-mode: {field}"))?,
                )
            }
            _ => return Err(format!("unexpected key '{k}' in '{field}'")),
        }
    }
    if m.target.is_none() {
        return Err("target is required".to_string());
    }
    match m.typ {
        Some(MountType::BIND) if bind != MountBindOptions::default() => m.bind_options = Some(bind),
        Some(MountType::VOLUME) if vol != MountVolumeOptions::default() => {
            m.volume_options = Some(vol)
        }
        Some(MountType::TMPFS) if tmpfs != MountTmpfsOptions::default() => {
            m.tmpfs_options = Some(tmpfs)
        }
        _ => {}
    }
    Ok(m)
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> std::result::Result<RestartPolicy, String> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            Some(
                c.parse::<i64>()
                    .map_err(|_| format!("maximum retry count must be an integer: {c}"))?,
            ),
        ),
        None => (s, None),
    };
    let name = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        o => return Err(format!("invalid restart policy '{o}'")),
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(format!(
            "maximum retry count can only be used with 'on-failure': {s}"
        ));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

/// `--security-opt seccomp=FILE` sends the profile's content, as the docker CLI does: the
/// daemon may not see the CLI's files.
fn security_opts(items: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for it in items {
        let (k, v) = match it.split_once(['=', ':']) {
            Some((k, v)) => (k, v),
            None => {
                out.push(it.clone());
                continue;
            }
        };
        if k == "seccomp" && v != "unconfined" && v != "builtin" {
            let text = read_file(v)?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                bad(
                    "--security-opt",
                    it,
                    format!("parsing seccomp profile: {e}"),
                )
            })?;
            out.push(format!("seccomp={json}"));
        } else {
            out.push(it.clone());
        }
    }
    Ok(out)
}

/// `net_admin` → `CAP_NET_ADMIN`, as the docker CLI sends capabilities (`ALL` stays).
pub fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// What to attach to and how, decided from `-d -i -t -a` as docker decides it.
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl RunOpts {
    pub fn image(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }

    pub fn streams(&self) -> Result<Streams> {
        if self.detach {
            if !self.attach.is_empty() {
                return Err(CliError::Usage(
                    "conflicting options: cannot specify both --attach and --detach".into(),
                ));
            }
            return Ok(Streams {
                stdin: false,
                stdout: false,
                stderr: false,
            });
        }
        if self.attach.is_empty() {
            return Ok(Streams {
                stdin: self.interactive,
                stdout: true,
                stderr: true,
            });
        }
        let mut s = Streams {
            stdin: false,
            stdout: false,
            stderr: false,
        };
        for a in &self.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdin" => s.stdin = true,
                "stdout" => s.stdout = true,
                "stderr" => s.stderr = true,
                _ => {
                    return Err(bad(
                        "--attach",
                        a,
                        "valid streams are STDIN, STDOUT and STDERR",
                    ))
                }
            }
        }
        Ok(s)
    }

    /// The create request, as the docker CLI would send it for the same flags.
    pub fn to_body(&self, console_size: Option<(u16, u16)>) -> Result<ContainerCreateBody> {
        // the image is the first word that is not a flag; clap hands an unknown flag over as
        // the first word of the trailing command line
        if let Some(flag) = self.args.first().filter(|a| a.starts_with('-')) {
            return Err(CliError::Usage(format!("unknown flag: {flag}")));
        }
        let streams = self.streams()?;
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(
                parse_env_lines(&read_file(f)?, env_lookup).map_err(|e| bad("--env-file", f, e))?,
            );
        }
        env.extend(self.env.iter().map(|e| env_value(e)));
        let mut labels = HashMap::new();
        let mut label_lines = Vec::new();
        for f in &self.label_file {
            label_lines.extend(
                parse_env_lines(&read_file(f)?, |_| None).map_err(|e| bad("--label-file", f, e))?,
            );
        }
        label_lines.extend(self.label.iter().cloned());
        for l in label_lines {
            let (k, v) = l.split_once('=').unwrap_or((&l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        let bytes = |flag: &str, v: &Option<String>| flag_value(flag, v.as_deref(), parse_bytes);
        let memory_swap = flag_value(
            "--memory-swap",
            self.memory_swap.as_deref(),
            parse_bytes_or_unlimited,
        )?;
        let nano_cpus = flag_value("--cpus", self.cpus.as_deref(), parse_cpus)?;
        let ulimits = flag_values("--ulimit", &self.ulimit, parse_ulimit)?;
        let devices = flag_values("--device", &self.device, parse_device)?;
        let mounts = flag_values("--mount", &self.mount, parse_mount)?;
        // `-v /dst` is an anonymous volume (Config.Volumes); anything with a source is a bind
        // or named volume, passed through as docker passes it
        let mut binds = Vec::new();
        let mut volumes = Vec::new();
        for v in &self.volume {
            if v.contains(':') {
                binds.push(v.clone());
            } else {
                volumes.push(v.clone());
            }
        }
        let tmpfs: HashMap<String, String> = self
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((p, o)) => (p.to_string(), o.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect();
        let restart = flag_value("--restart", self.restart.as_deref(), parse_restart)?;
        if self.rm
            && restart
                .as_ref()
                .is_some_and(|r| r.name != Some(RestartPolicyNameEnum::NO))
        {
            return Err(CliError::Usage(
                "conflicting options: cannot specify both --restart and --rm".into(),
            ));
        }
        let cgroupns = match self.cgroupns.as_deref() {
            None => None,
            Some("host") => Some(HostConfigCgroupnsModeEnum::HOST),
            Some("private") => Some(HostConfigCgroupnsModeEnum::PRIVATE),
            Some(o) => return Err(bad("--cgroupns", o, "must be \"host\" or \"private\"")),
        };
        let log_config = if self.log_driver.is_some() || !self.log_opt.is_empty() {
            Some(HostConfigLogConfig {
                typ: Some(self.log_driver.clone().unwrap_or_default()),
                config: Some(key_values("--log-opt", &self.log_opt)?),
            })
        } else {
            None
        };
        let (port_bindings, exposed_ports, networking_config) = super::network::run_parts(
            &self.publish,
            &self.expose,
            self.network.as_deref(),
            self.ip.as_deref(),
            &self.network_alias,
            self.mac_address.as_deref(),
        )?;
        let networking_config = super::network::with_ip6(
            networking_config,
            self.network.as_deref(),
            self.ip6.as_deref(),
        );
        let mut host_config = HostConfig {
            port_bindings,
            publish_all_ports: self.publish_all.then_some(true),
            auto_remove: Some(self.rm),
            binds: non_empty(binds),
            volumes_from: non_empty(self.volumes_from.clone()),
            network_mode: Some(self.network.clone().unwrap_or_else(|| "default".into())),
            privileged: Some(self.privileged),
            readonly_rootfs: Some(self.read_only),
            cap_add: non_empty(self.cap_add.iter().map(|c| normalize_cap(c)).collect()),
            cap_drop: non_empty(self.cap_drop.iter().map(|c| normalize_cap(c)).collect()),
            security_opt: non_empty(security_opts(&self.security_opt)?),
            sysctls: (!self.sysctl.is_empty())
                .then(|| key_values("--sysctl", &self.sysctl))
                .transpose()?,
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            shm_size: bytes("--shm-size", &self.shm_size)?,
            group_add: non_empty(self.group_add.clone()),
            ulimits: non_empty(ulimits),
            devices: non_empty(devices),
            memory: bytes("--memory", &self.memory)?,
            memory_swap,
            memory_reservation: bytes("--memory-reservation", &self.memory_reservation)?,
            oom_kill_disable: self.oom_kill_disable.then_some(true),
            nano_cpus,
            cpu_shares: self.cpu_shares,
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            pids_limit: self.pids_limit,
            blkio_weight: self.blkio_weight,
            blkio_device_read_bps: throttle_bps("--device-read-bps", &self.device_read_bps)?,
            blkio_device_write_bps: throttle_bps("--device-write-bps", &self.device_write_bps)?,
            blkio_device_read_iops: throttle_iops("--device-read-iops", &self.device_read_iops)?,
            blkio_device_write_iops: throttle_iops("--device-write-iops", &self.device_write_iops)?,
            ipc_mode: self.ipc.clone(),
            pid_mode: self.pid.clone(),
            uts_mode: self.uts.clone(),
            userns_mode: self.userns.clone(),
            cgroupns_mode: cgroupns,
            mounts: non_empty(mounts),
            restart_policy: restart,
            log_config,
            init: self.init.then_some(true),
            console_size: console_size.map(|(h, w)| vec![h as usize, w as usize]),
            ..Default::default()
        };
        self.netfeat.apply(&mut host_config)?;
        let entrypoint = self.entrypoint.as_ref().map(|e| vec![e.clone()]);
        let cmd = self
            .args
            .get(1..)
            .map(|c| c.to_vec())
            .filter(|c| !c.is_empty());
        Ok(ContainerCreateBody {
            hostname: self.hostname.clone(),
            user: self.user.clone(),
            attach_stdin: Some(streams.stdin),
            attach_stdout: Some(streams.stdout),
            attach_stderr: Some(streams.stderr),
            tty: Some(self.tty),
            open_stdin: Some(self.interactive),
            stdin_once: Some(self.interactive && streams.stdin),
            // docker sends no Env at all without -e, and dockerd shows it as null
            env: non_empty(env),
            cmd,
            image: Some(self.image().to_string()),
            volumes: non_empty(volumes),
            working_dir: self.workdir.clone(),
            entrypoint,
            labels: Some(labels),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            healthcheck: super::selfheal::healthcheck_of(self)?,
            host_config: Some(host_config),
            exposed_ports,
            networking_config,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: RunOpts,
    }

    fn body(args: &[&str]) -> ContainerCreateBody {
        let mut v = vec!["run"];
        v.extend_from_slice(args);
        let t = T::try_parse_from(v).expect("flags parse");
        t.o.to_body(None).expect("maps")
    }

    fn hc(args: &[&str]) -> HostConfig {
        body(args).host_config.expect("host config")
    }

    #[test]
    fn cpus_become_nano_cpus() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert_eq!(parse_cpus("0.000000001"), Ok(1));
        assert!(parse_cpus("0.0000000001").is_err());
        assert!(parse_cpus("one").is_err());
        assert_eq!(hc(&["--cpus", "1.5", "img"]).nano_cpus, Some(1_500_000_000));
    }

    #[test]
    fn sizes_are_binary_units() {
        assert_eq!(parse_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("512MB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("m").is_err());
        let h = hc(&[
            "--memory",
            "512m",
            "--memory-swap",
            "-1",
            "--shm-size",
            "64m",
            "img",
        ]);
        assert_eq!(h.memory, Some(512 << 20));
        assert_eq!(h.memory_swap, Some(-1));
        assert_eq!(h.shm_size, Some(64 << 20));
    }

    #[test]
    fn device_throttles_name_flag_and_value() {
        let bps = throttle_bps("--device-read-bps", &["/dev/sda:1mb".into()])
            .expect("valid")
            .expect("given");
        assert_eq!(bps[0].path.as_deref(), Some("/dev/sda"));
        assert_eq!(bps[0].rate, Some(1 << 20));
        assert!(throttle_iops("--device-read-iops", &[])
            .expect("none")
            .is_none());
        let refused = [
            (
                throttle_bps("--device-write-bps", &["/dev/sda".into()]),
                "invalid argument \"/dev/sda\" for \"--device-write-bps\" flag: bad format, expected <device-path>:<rate>",
            ),
            (
                throttle_iops("--device-read-iops", &["/dev/sda".into()]),
                "invalid argument \"/dev/sda\" for \"--device-read-iops\" flag: bad format, expected <device-path>:<number>",
            ),
            (
                throttle_iops("--device-write-iops", &["/dev/sda:x".into()]),
                "invalid argument \"/dev/sda:x\" for \"--device-write-iops\" flag: invalid rate for device, must be a positive integer",
            ),
            (
                throttle_iops("--device-write-iops", &["/tmp/f:5".into()]),
                "invalid argument \"/tmp/f:5\" for \"--device-write-iops\" flag: /tmp/f is not a device path",
            ),
        ];
        for (r, want) in refused {
            assert_eq!(r.err().map(|e| e.to_string()).as_deref(), Some(want));
        }
    }

    #[test]
    fn key_value_maps_keep_the_last_and_refuse_empty_keys() {
        let m = key_value_map(&["a=1".into(), "b".into(), "a=2=3".into()], |i| i.into())
            .expect("valid");
        assert_eq!(m.get("a").map(String::as_str), Some("2=3"));
        assert_eq!(m.get("b").map(String::as_str), Some(""));
        let e = key_value_map(&["=v".into()], |i| format!("no key in {i}"));
        assert_eq!(
            e.err().map(|e| e.to_string()).as_deref(),
            Some("no key in =v")
        );
    }

    #[test]
    fn ulimits_take_soft_and_hard() {
        let u = parse_ulimit("nofile=1024:2048").expect("valid");
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        let u = parse_ulimit("nproc=512").expect("valid");
        assert_eq!((u.soft, u.hard), (Some(512), Some(512)));
        assert!(parse_ulimit("nofile=2048:1024").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }

    #[test]
    fn env_files_skip_comments_and_read_bare_names_from_the_environment() {
        let text = "# comment\n\nA=1\n  B=two words\nHOME_FROM_CLI\nMISSING_X\nC=\n";
        let got = parse_env_lines(text, |k| (k == "HOME_FROM_CLI").then(|| "/h".to_string()))
            .expect("valid");
        assert_eq!(got, vec!["A=1", "B=two words", "HOME_FROM_CLI=/h", "C="]);
        assert!(parse_env_lines("=x\n", |_| None).is_err());
        assert!(parse_env_lines("A B=1\n", |_| None).is_err());
    }

    #[test]
    fn env_file_then_env_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("env");
        std::fs::write(&f, "A=1\nB=2\n").expect("write env file");
        let f = f.to_str().expect("utf-8 path");
        let b = body(&["--env-file", f, "-e", "C=3", "img", "sh"]);
        assert_eq!(b.env, Some(vec!["A=1".into(), "B=2".into(), "C=3".into()]));
        assert_eq!(b.cmd, Some(vec!["sh".into()]));
        assert_eq!(b.image.as_deref(), Some("img"));
    }

    #[test]
    fn command_after_image_keeps_its_flags() {
        let b = body(&["-d", "img", "ls", "-l", "-d"]);
        assert_eq!(b.cmd, Some(vec!["ls".into(), "-l".into(), "-d".into()]));
        assert_eq!(b.attach_stdout, Some(false));
        let b = body(&["-h", "box", "img"]);
        assert_eq!(b.hostname.as_deref(), Some("box"));
        assert_eq!(b.cmd, None);
    }

    #[test]
    fn streams_follow_docker() {
        let b = body(&["-i", "img"]);
        assert_eq!(
            (b.attach_stdin, b.attach_stdout, b.open_stdin, b.stdin_once),
            (Some(true), Some(true), Some(true), Some(true))
        );
        let b = body(&["-a", "stderr", "img"]);
        assert_eq!(
            (b.attach_stdin, b.attach_stdout, b.attach_stderr),
            (Some(false), Some(false), Some(true))
        );
    }

    #[test]
    fn devices_throttles_and_mounts() {
        let h = hc(&[
            "--device",
            "/dev/null:/dev/xnull:r",
            "--device-read-bps",
            "/dev/sda:1mb",
            "--device-write-iops",
            "/dev/sda:100",
            "--mount",
            "type=bind,source=/tmp,target=/mnt,readonly",
            "--restart",
            "on-failure:3",
            "--ulimit",
            "nofile=1024:2048",
            "--tmpfs",
            "/run:size=1m",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "img",
        ]);
        let d = &h.devices.expect("devices")[0];
        assert_eq!(d.path_in_container.as_deref(), Some("/dev/xnull"));
        assert_eq!(d.cgroup_permissions.as_deref(), Some("r"));
        assert_eq!(h.blkio_device_read_bps.expect("bps")[0].rate, Some(1 << 20));
        assert_eq!(h.blkio_device_write_iops.expect("iops")[0].rate, Some(100));
        let m = &h.mounts.expect("mounts")[0];
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(m.target.as_deref(), Some("/mnt"));
        let r = h.restart_policy.expect("restart");
        assert_eq!(r.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(r.maximum_retry_count, Some(3));
        assert_eq!(h.ulimits.expect("ulimits")[0].hard, Some(2048));
        assert_eq!(
            h.tmpfs.expect("tmpfs").get("/run").map(String::as_str),
            Some("size=1m")
        );
        assert!(parse_device("/dev/a:/dev/b:rwx").is_err());
        assert!(parse_restart("always:3").is_err());
        assert!(parse_mount("type=bind,source=/a").is_err());
    }

    #[test]
    fn capabilities_get_their_prefix() {
        let h = hc(&[
            "--cap-add",
            "net_admin",
            "--cap-add",
            "ALL",
            "--cap-drop",
            "CAP_MKNOD",
            "img",
        ]);
        assert_eq!(
            h.cap_add,
            Some(vec!["CAP_NET_ADMIN".to_string(), "ALL".to_string()])
        );
        assert_eq!(h.cap_drop, Some(vec!["CAP_MKNOD".to_string()]));
    }

    #[test]
    fn unknown_flag_is_not_an_image() {
        let t = T::try_parse_from(["run", "--bogus", "img"]).expect("parse");
        assert!(matches!(t.o.to_body(None), Err(CliError::Usage(m)) if m.contains("--bogus")));
    }

    #[test]
    fn rm_conflicts_with_restart() {
        let t = T::try_parse_from(["run", "--rm", "--restart", "always", "img"]).expect("parse");
        assert!(t.o.to_body(None).is_err());
    }
}
