//! The resource flags (`--memory`, `--cpus`, `--pids-limit`, `--device`, `--blkio-*`, ...)
//! validated as Docker validates them and turned into `linux.resources` and `linux.devices`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use bollard_stubs::models::HostConfig;
use serde_json::{json, Map, Value};

use super::SpecError;

/// The kernel refuses to run a container below this (Docker's limit too).
const MIN_MEMORY: i64 = 6 << 20;

fn bad(flag: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::InvalidFlag {
        flag,
        reason: reason.into(),
    }
}

fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Parse a cpuset list ("0-2,4") into its members.
fn parse_set(flag: &'static str, s: &str) -> Result<Vec<u32>, SpecError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let invalid = || {
            bad(
                flag,
                format!("invalid value {s:?}: expected a list such as 0-3,5"),
            )
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| invalid())?;
        let b: u32 = b.parse().map_err(|_| invalid())?;
        if a > b || b - a > 1 << 16 {
            return Err(invalid());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

fn read_set(path: &str) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_set("", text.trim()).ok()
}

/// Whether the host can limit swap (Docker silently ignores --memory-swap otherwise).
fn swap_limit_supported() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// major:minor of a device node, for blkio throttles and `--device`.
fn device_numbers(
    flag: &'static str,
    path: &str,
) -> Result<(char, i64, i64, u32, u32, u32), SpecError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        bad(
            flag,
            format!("error gathering device information for {path}: {e}"),
        )
    })?;
    let typ = if meta.file_type().is_block_device() {
        'b'
    } else if meta.file_type().is_char_device() {
        'c'
    } else {
        return Err(bad(flag, format!("{path} is not a device node")));
    };
    let rdev = meta.rdev();
    Ok((
        typ,
        nix::sys::stat::major(rdev) as i64,
        nix::sys::stat::minor(rdev) as i64,
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
    ))
}

fn throttles(
    flag: &'static str,
    list: &Option<Vec<bollard_stubs::models::ThrottleDevice>>,
) -> Result<Option<Value>, SpecError> {
    let Some(list) = list.as_ref().filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for t in list {
        let path = t.path.as_deref().unwrap_or("");
        let rate = t.rate.unwrap_or(0);
        if rate < 0 {
            return Err(bad(flag, format!("{path}: rate must not be negative")));
        }
        let (typ, major, minor, ..) = device_numbers(flag, path)?;
        if typ != 'b' {
            return Err(bad(flag, format!("{path} is not a block device")));
        }
        out.push(json!({"major": major, "minor": minor, "rate": rate}));
    }
    Ok(Some(Value::Array(out)))
}

/// `linux.resources` (without devices) from the host config.
pub fn resources(h: &HostConfig) -> Result<Value, SpecError> {
    let mut r = Map::new();
    let pos = |v: Option<i64>| v.filter(|x| *x != 0);

    // memory
    let mut mem = Map::new();
    let memory = pos(h.memory);
    if let Some(m) = memory {
        if m < MIN_MEMORY {
            return Err(bad(
                "--memory",
                format!("{m} bytes is below the minimum of 6 MiB"),
            ));
        }
        mem.insert("limit".into(), json!(m));
    }
    if let Some(res) = pos(h.memory_reservation) {
        if res < MIN_MEMORY {
            return Err(bad(
                "--memory-reservation",
                format!("{res} bytes is below the minimum of 6 MiB"),
            ));
        }
        if memory.is_some_and(|m| m < res) {
            return Err(bad(
                "--memory-reservation",
                "must be smaller than or equal to --memory",
            ));
        }
        mem.insert("reservation".into(), json!(res));
    }
    match pos(h.memory_swap) {
        Some(-1) => {
            if swap_limit_supported() && memory.is_some() {
                mem.insert("swap".into(), json!(-1));
            }
        }
        Some(s) if s < 0 => return Err(bad("--memory-swap", format!("invalid value {s}"))),
        Some(s) => {
            let Some(m) = memory else {
                return Err(bad(
                    "--memory-swap",
                    "needs --memory: set the memory limit when using a swap limit",
                ));
            };
            if s < m {
                return Err(bad(
                    "--memory-swap",
                    format!("{s} bytes must be larger than or equal to --memory ({m} bytes)"),
                ));
            }
            if swap_limit_supported() {
                mem.insert("swap".into(), json!(s));
            }
        }
        None => {
            // Docker's default: as much swap as memory (memory + swap = 2 × memory).
            if let Some(m) = memory.filter(|_| swap_limit_supported()) {
                mem.insert("swap".into(), json!(m * 2));
            }
        }
    }
    if let Some(s) = h.memory_swappiness.filter(|s| *s != -1) {
        if !(0..=100).contains(&s) {
            return Err(bad(
                "--memory-swappiness",
                format!("{s} is not in the range 0-100"),
            ));
        }
        mem.insert("swappiness".into(), json!(s));
    }
    if h.oom_kill_disable == Some(true) {
        mem.insert("disableOOMKiller".into(), json!(true));
    }
    if !mem.is_empty() {
        r.insert("memory".into(), Value::Object(mem));
    }

    // cpu
    let mut cpu = Map::new();
    if let Some(shares) = pos(h.cpu_shares) {
        if shares < 0 {
            return Err(bad("--cpu-shares", format!("{shares} is negative")));
        }
        // the kernel's own bounds (v1 cpu.shares), which Docker clamps to rather than refuse
        cpu.insert("shares".into(), json!(shares.clamp(2, 262144)));
    }
    let nano = pos(h.nano_cpus);
    if let Some(n) = nano {
        if pos(h.cpu_period).is_some() || pos(h.cpu_quota).is_some() {
            return Err(bad(
                "--cpus",
                "conflicts with --cpu-period and --cpu-quota: use one or the other",
            ));
        }
        let max = online_cpus() as i64 * 1_000_000_000;
        if n < 0 || n > max {
            return Err(bad(
                "--cpus",
                format!("range of CPUs is from 0.01 to {}.00", online_cpus()),
            ));
        }
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert(
            "quota".into(),
            json!((n * period / 1_000_000_000).max(1000)),
        );
    }
    if let Some(p) = pos(h.cpu_period) {
        if !(1000..=1_000_000).contains(&p) {
            return Err(bad(
                "--cpu-period",
                format!("{p} is not between 1000 (1 ms) and 1000000 (1 s)"),
            ));
        }
        cpu.insert("period".into(), json!(p));
    }
    if let Some(q) = pos(h.cpu_quota) {
        if q > 0 && q < 1000 {
            return Err(bad(
                "--cpu-quota",
                format!("{q} is below the minimum of 1000 (1 ms)"),
            ));
        }
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(c) = h.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
        let want = parse_set("--cpuset-cpus", c)?;
        if let Some(have) = read_set("/sys/devices/system/cpu/online") {
            if let Some(x) = want.iter().find(|x| !have.contains(x)) {
                return Err(bad(
                    "--cpuset-cpus",
                    format!("CPU {x} of {c:?} is not available"),
                ));
            }
        }
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(m) = h.cpuset_mems.as_deref().filter(|s| !s.is_empty()) {
        let want = parse_set("--cpuset-mems", m)?;
        if let Some(have) = read_set("/sys/devices/system/node/online") {
            if let Some(x) = want.iter().find(|x| !have.contains(x)) {
                return Err(bad(
                    "--cpuset-mems",
                    format!("memory node {x} of {m:?} is not available"),
                ));
            }
        }
        cpu.insert("mems".into(), json!(m));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }

    if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
        r.insert("pids".into(), json!({"limit": p}));
    }

    // block io
    let mut bio = Map::new();
    if let Some(w) = h.blkio_weight.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(bad(
                "--blkio-weight",
                format!("{w} is not in the range 10-1000"),
            ));
        }
        bio.insert("weight".into(), json!(w));
    }
    if let Some(list) = h.blkio_weight_device.as_ref().filter(|l| !l.is_empty()) {
        let mut out = Vec::new();
        for d in list {
            let path = d.path.as_deref().unwrap_or("");
            let w = d.weight.unwrap_or(0);
            if !(10..=1000).contains(&w) {
                return Err(bad(
                    "--blkio-weight-device",
                    format!("{path}: weight {w} is not in the range 10-1000"),
                ));
            }
            let (typ, major, minor, ..) = device_numbers("--blkio-weight-device", path)?;
            if typ != 'b' {
                return Err(bad(
                    "--blkio-weight-device",
                    format!("{path} is not a block device"),
                ));
            }
            out.push(json!({"major": major, "minor": minor, "weight": w}));
        }
        bio.insert("weightDevice".into(), Value::Array(out));
    }
    for (key, flag, list) in [
        (
            "throttleReadBpsDevice",
            "--device-read-bps",
            &h.blkio_device_read_bps,
        ),
        (
            "throttleWriteBpsDevice",
            "--device-write-bps",
            &h.blkio_device_write_bps,
        ),
        (
            "throttleReadIOPSDevice",
            "--device-read-iops",
            &h.blkio_device_read_iops,
        ),
        (
            "throttleWriteIOPSDevice",
            "--device-write-iops",
            &h.blkio_device_write_iops,
        ),
    ] {
        if let Some(v) = throttles(flag, list)? {
            bio.insert(key.into(), v);
        }
    }
    if !bio.is_empty() {
        r.insert("blockIO".into(), Value::Object(bio));
    }
    Ok(Value::Object(r))
}

fn cgroup_rule(
    allow: bool,
    typ: &str,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Value {
    let mut v = json!({"allow": allow, "access": access});
    if typ != "a" {
        v["type"] = json!(typ);
    }
    if let Some(m) = major {
        v["major"] = json!(m);
    }
    if let Some(m) = minor {
        v["minor"] = json!(m);
    }
    v
}

/// Docker's device cgroup rules for an unprivileged container: deny everything, then allow the
/// devices every container has (/dev/null, zero, full, tty, urandom, random, console), and
/// keep /dev/fuse out.
fn default_device_rules() -> Vec<Value> {
    let mut v = vec![cgroup_rule(false, "a", None, None, "rwm")];
    for (ma, mi) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        v.push(cgroup_rule(true, "c", Some(ma), Some(mi), "rwm"));
    }
    v.push(cgroup_rule(false, "c", Some(10), Some(229), "rwm"));
    v
}

/// A `--device-cgroup-rule` ("c 1:3 rwm", "a *:* m").
fn parse_cgroup_rule(s: &str) -> Result<Value, SpecError> {
    let invalid = || {
        bad(
            "--device-cgroup-rule",
            format!("invalid rule {s:?}: expected such as 'c 1:3 rwm'"),
        )
    };
    let f: Vec<&str> = s.split_whitespace().collect();
    let [typ, nums, access] = f.as_slice() else {
        return Err(invalid());
    };
    if !["a", "b", "c"].contains(typ)
        || access.is_empty()
        || !access.chars().all(|c| "rwm".contains(c))
    {
        return Err(invalid());
    }
    let (ma, mi) = nums.split_once(':').ok_or_else(invalid)?;
    let num = |x: &str| -> Result<Option<i64>, SpecError> {
        if x == "*" {
            Ok(None)
        } else {
            x.parse().map(Some).map_err(|_| invalid())
        }
    };
    Ok(cgroup_rule(true, typ, num(ma)?, num(mi)?, access))
}

/// Every device node under the host's /dev, for `--privileged` (as runc's HostDevices: not
/// the per-container pseudo filesystems /dev/pts, /dev/shm, /dev/mqueue, nor /dev/console).
fn host_devices() -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let name = e.file_name();
                if !["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]
                    .iter()
                    .any(|n| name == *n)
                {
                    stack.push(p);
                }
                continue;
            }
            if p == Path::new("/dev/console") || !(ft.is_char_device() || ft.is_block_device()) {
                continue;
            }
            let Some(s) = p.to_str() else { continue };
            if let Ok((typ, major, minor, mode, uid, gid)) = device_numbers("--privileged", s) {
                out.push(
                    json!({"path": s, "type": typ.to_string(), "major": major, "minor": minor,
                                "fileMode": mode, "uid": uid, "gid": gid}),
                );
            }
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

/// `linux.devices` and the device cgroup rules.
pub fn devices(h: &HostConfig, privileged: bool) -> Result<(Vec<Value>, Vec<Value>), SpecError> {
    if privileged {
        let mut nodes = host_devices();
        // a privileged container has every host device at its own path already; a mapping
        // to another path still adds that node
        for d in h.devices.iter().flatten() {
            let host = d.path_on_host.as_deref().unwrap_or("");
            let inside = d.path_in_container.as_deref().unwrap_or(host);
            if inside.is_empty() || inside == host {
                continue;
            }
            if !inside.starts_with('/') {
                return Err(bad("--device", format!("{inside} is not an absolute path")));
            }
            let (typ, major, minor, mode, uid, gid) = device_numbers("--device", host)?;
            nodes.push(
                json!({"path": inside, "type": typ.to_string(), "major": major,
                              "minor": minor, "fileMode": mode, "uid": uid, "gid": gid}),
            );
        }
        return Ok((nodes, vec![cgroup_rule(true, "a", None, None, "rwm")]));
    }
    let mut nodes = Vec::new();
    let mut rules = default_device_rules();
    for d in h.devices.iter().flatten() {
        let host = d.path_on_host.as_deref().unwrap_or("");
        let inside = d
            .path_in_container
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(host);
        let perms = d
            .cgroup_permissions
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("rwm");
        if !perms.chars().all(|c| "rwm".contains(c)) {
            return Err(bad(
                "--device",
                format!("invalid permissions {perms:?} for {host}: use r, w, m"),
            ));
        }
        if !inside.starts_with('/') {
            return Err(bad("--device", format!("{inside} is not an absolute path")));
        }
        let (typ, major, minor, mode, uid, gid) = device_numbers("--device", host)?;
        nodes.push(
            json!({"path": inside, "type": typ.to_string(), "major": major, "minor": minor,
                          "fileMode": mode, "uid": uid, "gid": gid}),
        );
        rules.push(cgroup_rule(
            true,
            &typ.to_string(),
            Some(major),
            Some(minor),
            perms,
        ));
    }
    for r in h.device_cgroup_rules.iter().flatten() {
        rules.push(parse_cgroup_rule(r)?);
    }
    Ok((nodes, rules))
}

/// `--sysctl`: only the keys that are namespaced, and only when the container has its own
/// namespace for them (runc refuses the others too, but later and less clearly).
pub fn check_sysctl(
    key: &str,
    own_ipc: bool,
    own_net: bool,
    own_uts: bool,
) -> Result<(), SpecError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let no = |why: &str| bad("--sysctl", format!("{key} {why}"));
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return if own_ipc {
            Ok(())
        } else {
            Err(no(
                "needs the container's own IPC namespace (not --ipc host or container:)",
            ))
        };
    }
    if key.starts_with("net.") {
        return if own_net {
            Ok(())
        } else {
            Err(no(
                "needs the container's own network namespace (not --network host or container:)",
            ))
        };
    }
    if key == "kernel.domainname" {
        return if own_uts {
            Ok(())
        } else {
            Err(no("needs the container's own UTS namespace"))
        };
    }
    if key == "kernel.hostname" {
        return Err(no("is not allowed: use --hostname"));
    }
    Err(no("is not a namespaced sysctl: it would change the host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(v: Value) -> HostConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn memory_flags() {
        let r = resources(&hc(
            json!({"Memory": 64 << 20, "MemoryReservation": 32 << 20, "OomKillDisable": true}),
        ))
        .unwrap();
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["reservation"], 32 << 20);
        assert_eq!(r["memory"]["disableOOMKiller"], true);
        if swap_limit_supported() {
            assert_eq!(r["memory"]["swap"], 128 << 20);
        }
        let e = resources(&hc(json!({"Memory": 4}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--memory: 4 bytes is below the minimum of 6 MiB"
        );
        assert!(e.is_invalid_argument());
        let e = resources(&hc(json!({"Memory": 64 << 20, "MemorySwap": 32 << 20}))).unwrap_err();
        assert!(e.to_string().starts_with("--memory-swap:"), "{e}");
        let e = resources(&hc(json!({"MemorySwap": 32 << 20}))).unwrap_err();
        assert!(e.to_string().starts_with("--memory-swap:"), "{e}");
    }

    #[test]
    fn cpu_flags() {
        let r = resources(&hc(
            json!({"NanoCpus": 500_000_000, "CpuShares": 1, "PidsLimit": 50}),
        ))
        .unwrap();
        assert_eq!(r["cpu"]["period"], 100000);
        assert_eq!(r["cpu"]["quota"], 50000);
        assert_eq!(r["cpu"]["shares"], 2);
        assert_eq!(r["pids"]["limit"], 50);
        let e = resources(&hc(json!({"NanoCpus": 1_000_000_000, "CpuQuota": 50000}))).unwrap_err();
        assert!(e.to_string().starts_with("--cpus:"), "{e}");
        let e = resources(&hc(json!({"CpuPeriod": 10}))).unwrap_err();
        assert!(e.to_string().starts_with("--cpu-period:"), "{e}");
        let e = resources(&hc(json!({"CpusetCpus": "0-x"}))).unwrap_err();
        assert!(e.to_string().starts_with("--cpuset-cpus:"), "{e}");
        let e = resources(&hc(json!({"CpusetCpus": "9999"}))).unwrap_err();
        assert!(e.to_string().contains("not available"), "{e}");
        assert_eq!(
            resources(&hc(json!({"CpusetCpus": "0"}))).unwrap()["cpu"]["cpus"],
            "0"
        );
        // unlimited pids
        assert!(resources(&hc(json!({"PidsLimit": -1})))
            .unwrap()
            .get("pids")
            .is_none());
    }

    #[test]
    fn block_io_flags_stat_the_device() {
        let r = resources(&hc(json!({"BlkioWeight": 300}))).unwrap();
        assert_eq!(r["blockIO"]["weight"], 300);
        let e = resources(&hc(
            json!({"BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1048576}]}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
        // any block device of the host will do
        let block = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()));
        if let Some(dev) = block {
            let rdev = dev.metadata().unwrap().rdev();
            let path = dev.path().display().to_string();
            let r = resources(&hc(
                json!({"BlkioDeviceReadBps": [{"Path": path, "Rate": 1048576}]}),
            ))
            .unwrap();
            let t = &r["blockIO"]["throttleReadBpsDevice"][0];
            assert_eq!(t["major"], nix::sys::stat::major(rdev));
            assert_eq!(t["minor"], nix::sys::stat::minor(rdev));
            assert_eq!(t["rate"], 1048576);
        }
        let e = resources(&hc(
            json!({"BlkioDeviceWriteIOps": [{"Path": "/nonexistent", "Rate": 1}]}),
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("--device-write-iops:"), "{e}");
        let e = resources(&hc(json!({"BlkioWeight": 5}))).unwrap_err();
        assert!(e.to_string().starts_with("--blkio-weight:"), "{e}");
    }

    #[test]
    fn devices_and_rules() {
        let (nodes, rules) = devices(&hc(json!({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"}],
            "DeviceCgroupRules": ["c 42:* rmw"]})), false).unwrap();
        assert_eq!(nodes[0]["path"], "/dev/mynull");
        assert_eq!(nodes[0]["type"], "c");
        assert_eq!(rules[0]["allow"], false);
        assert!(rules
            .iter()
            .any(|r| r["major"] == 1 && r["minor"] == 3 && r["access"] == "rw"));
        assert!(rules
            .iter()
            .any(|r| r["major"] == 42 && r.get("minor").is_none()));
        let e = devices(
            &hc(json!({"Devices": [{"PathOnHost": "/etc/passwd"}]})),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("--device:"), "{e}");
        let e = devices(&hc(json!({"DeviceCgroupRules": ["x 1:2 rwm"]})), false).unwrap_err();
        assert!(e.to_string().starts_with("--device-cgroup-rule:"), "{e}");
        let (nodes, rules) = devices(
            &hc(json!({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/null2"}]})),
            true,
        )
        .unwrap();
        assert!(nodes.iter().any(|n| n["path"] == "/dev/null2"));
        assert!(nodes.iter().any(|n| n["path"] == "/dev/null"));
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        assert!(check_sysctl("net.ipv4.ip_forward", true, true, true).is_ok());
        assert!(check_sysctl("kernel.shmmax", true, true, true).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", true, true, true).is_ok());
        let e = check_sysctl("net.ipv4.ip_forward", true, false, true).unwrap_err();
        assert!(e.to_string().contains("net.ipv4.ip_forward"), "{e}");
        let e = check_sysctl("vm.swappiness", true, true, true).unwrap_err();
        assert!(e.to_string().starts_with("--sysctl: vm.swappiness"), "{e}");
        assert!(check_sysctl("kernel.shmmax", false, true, true).is_err());
    }
}
