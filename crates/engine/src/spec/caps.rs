//! Capabilities: Docker's default set, `--cap-add`/`--cap-drop` (with or without `CAP_`, and
//! `ALL`), and `--privileged` (every capability this kernel knows).

use super::SpecError;

/// Capability names in kernel bit order (capability.h); the index is the bit.
pub const ALL: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set (oci/defaults.go): CapEff 00000000a80425fb.
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the running kernel knows (/proc/sys/kernel/cap_last_cap), limited to the
/// ones berth has names for.
pub fn kernel_caps() -> Result<Vec<String>, SpecError> {
    let path = "/proc/sys/kernel/cap_last_cap";
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::ReadHost {
        path: path.into(),
        source: e,
    })?;
    let last: usize = text.trim().parse().map_err(|_| SpecError::ReadHost {
        path: path.into(),
        source: std::io::Error::other(format!("not a number: {text:?}")),
    })?;
    // Only what the daemon itself may hand out (its bounding set), as Docker does: asking for
    // a capability the daemon lacks would make the runtime fail to start every privileged
    // container on a host that withholds one (e.g. CAP_SYS_RESOURCE in a nested container).
    let bounding = bounding_set().unwrap_or(u64::MAX);
    Ok(ALL
        .iter()
        .enumerate()
        .take(last + 1)
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, s)| s.to_string())
        .collect())
}

/// The calling process's bounding set (CapBnd of /proc/self/status).
fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// `sys_admin`, `CAP_SYS_ADMIN`, `cap_sys_admin` → `CAP_SYS_ADMIN`; `all` → `ALL`.
fn normalize(flag: &'static str, name: &str) -> Result<String, SpecError> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::InvalidFlag {
            flag,
            reason: format!("unknown capability {name}"),
        })
    }
}

/// The container's capability set: Docker's TweakCapabilities.
pub fn effective(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, SpecError> {
    let add: Vec<String> = add
        .iter()
        .map(|c| normalize("--cap-add", c))
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|c| normalize("--cap-drop", c))
        .collect::<Result<_, _>>()?;
    if privileged {
        return kernel_caps();
    }
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        kernel_caps()?
    } else if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT.iter().map(|s| s.to_string()).collect()
    };
    if !add.iter().any(|c| c == "ALL") {
        // an explicit add wins over a drop of the same capability, as in Docker
        caps.retain(|c| !drop.contains(c) || add.contains(c));
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn mask(caps: &[String]) -> u64 {
        caps.iter()
            .map(|c| 1u64 << ALL.iter().position(|a| a == c).unwrap())
            .sum()
    }

    #[test]
    fn default_set_is_dockers() {
        let c = effective(false, &[], &[]).unwrap();
        assert_eq!(mask(&c), 0xa80425fb);
    }

    #[test]
    fn add_and_drop_accept_either_spelling() {
        let c = effective(
            false,
            &s(&["sys_admin", "CAP_NET_ADMIN"]),
            &s(&["chown", "CAP_KILL"]),
        )
        .unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(c.len(), 14);
    }

    #[test]
    fn all_works_both_ways() {
        assert!(effective(false, &[], &s(&["ALL"])).unwrap().is_empty());
        assert_eq!(
            effective(false, &s(&["chown"]), &s(&["all"])).unwrap(),
            s(&["CAP_CHOWN"])
        );
        let every = effective(false, &s(&["ALL"]), &s(&["NET_ADMIN"])).unwrap();
        assert!(every.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!every.contains(&"CAP_NET_ADMIN".to_string()));
        assert_eq!(effective(true, &[], &[]).unwrap(), kernel_caps().unwrap());
    }

    #[test]
    fn unknown_capability_names_the_flag() {
        let e = effective(false, &s(&["CAP_FOO"]), &[]).unwrap_err();
        assert_eq!(e.to_string(), "--cap-add: unknown capability CAP_FOO");
        assert!(e.is_invalid_argument());
        let e = effective(false, &[], &s(&["bar"])).unwrap_err();
        assert_eq!(e.to_string(), "--cap-drop: unknown capability bar");
    }
}
