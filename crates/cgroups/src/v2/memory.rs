//! v2 memory: `memory.max`, `memory.low` (the OCI reservation) and `memory.swap.max`, which
//! counts swap alone while OCI's swap counts memory+swap; usage from `memory.current`,
//! `memory.stat`, `memory.events` (oom_kill).

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::common::{read_flat_keyed, read_u64, read_u64_if_exists, read_u64_or_max, write_file};
use crate::{Error, MemoryEntry, MemoryStats, Result};

fn limit_value(field: &str, v: i64) -> Result<String> {
    match v {
        -1 => Ok("max".to_string()),
        v if v >= 0 => Ok(v.to_string()),
        v => Err(Error::InvalidResource {
            field: field.to_string(),
            reason: format!("{v} is below -1"),
        }),
    }
}

/// OCI swap (memory+swap) → `memory.swap.max` (swap only), the same rules as runc: -1 is
/// unlimited, 0 leaves it alone, and a swap limit needs a memory limit to subtract.
pub(crate) fn swap_max(limit: Option<i64>, swap: i64) -> Result<Option<String>> {
    let invalid = |reason: String| Error::InvalidResource {
        field: "memory.swap".to_string(),
        reason,
    };
    match (limit, swap) {
        (_, 0) => Ok(None),
        (_, -1) => Ok(Some("max".to_string())),
        (_, s) if s < -1 => Err(invalid(format!("{s} is below -1"))),
        (None | Some(-1) | Some(0), s) => Err(invalid(format!(
            "a memory+swap limit ({s}) needs a memory limit on cgroup v2"
        ))),
        (Some(l), s) if s < l => Err(invalid(format!(
            "memory+swap {s} is below the memory limit {l}"
        ))),
        (Some(l), s) => Ok(Some((s - l).to_string())),
    }
}

pub(super) fn set(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let swap = match mem.swap() {
        Some(s) => swap_max(mem.limit(), s)?,
        None => None,
    };
    // 0 means "not set", as in runc: a zero limit would kill the container on its first page.
    if let Some(l) = mem.limit().filter(|&l| l != 0) {
        let value = limit_value("memory.limit", l)?;
        // Lowering memory.max below the usage makes the kernel reclaim; if it cannot, the
        // write still succeeds and the OOM killer acts, as with v1.
        write_file(&dir.join("memory.max"), &value)?;
    }
    if let Some(s) = swap {
        let path = dir.join("memory.swap.max");
        if path.exists() {
            write_file(&path, &s)?;
        } else {
            tracing::warn!(path = %path.display(), "swap limit ignored: no memory.swap.max (swap accounting off)");
        }
    }
    if let Some(r) = mem.reservation() {
        write_file(
            &dir.join("memory.low"),
            &limit_value("memory.reservation", r)?,
        )?;
    }
    // No v2 knobs for these: v2 always accounts kernel memory within memory.max, and the
    // OOM killer and swappiness are not per-cgroup settings there.
    if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
        tracing::warn!(dir = %dir.display(), "memory.kernel/kernelTCP have no cgroup v2 equivalent; ignored");
    }
    if mem.swappiness().is_some() {
        tracing::warn!(dir = %dir.display(), "memory.swappiness has no cgroup v2 equivalent; ignored");
    }
    if mem.disable_oom_killer() == Some(true) {
        tracing::warn!(dir = %dir.display(), "memory.disableOOMKiller has no cgroup v2 equivalent; ignored");
    }
    Ok(())
}

fn max_or_unlimited(path: &Path) -> Result<u64> {
    Ok(read_u64_or_max(path)?.unwrap_or(u64::MAX))
}

pub(super) fn stats(dir: &Path) -> Result<MemoryStats> {
    let raw = read_flat_keyed(&dir.join("memory.stat"))?;
    let events = read_flat_keyed(&dir.join("memory.events"))?;
    let usage = read_u64(&dir.join("memory.current"))?;
    let limit = max_or_unlimited(&dir.join("memory.max"))?;
    let mut stats = MemoryStats {
        cache: raw.get("file").copied().unwrap_or(0),
        usage: MemoryEntry {
            usage,
            // memory.peak exists from Linux 5.19.
            max: read_u64_if_exists(&dir.join("memory.peak"))?.unwrap_or(0),
            limit,
            failcnt: events.get("max").copied().unwrap_or(0),
        },
        kernel: MemoryEntry {
            usage: raw.get("kernel").copied().unwrap_or_else(|| {
                raw.get("slab").copied().unwrap_or(0)
                    + raw.get("kernel_stack").copied().unwrap_or(0)
            }),
            ..MemoryEntry::default()
        },
        oom_kill: events.get("oom_kill").copied().unwrap_or(0),
        ..MemoryStats::default()
    };
    // Reported as memory+swap, like v1's memsw, so the numbers mean the same on both.
    if let Some(swap) = read_u64_if_exists(&dir.join("memory.swap.current"))? {
        let swap_limit = max_or_unlimited(&dir.join("memory.swap.max"))?;
        stats.swap = MemoryEntry {
            usage: swap + usage,
            max: 0,
            limit: swap_limit.saturating_add(limit),
            failcnt: 0,
        };
    }
    stats.raw = raw;
    Ok(stats)
}

/// The `oom_kill` count of memory.events (hierarchical: nested cgroups included).
pub(super) fn oom_kills(dir: &Path) -> Result<u64> {
    let events = read_flat_keyed(&dir.join("memory.events"))?;
    Ok(events.get("oom_kill").copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_max(Some(100), 300).unwrap().as_deref(), Some("200"));
        assert_eq!(swap_max(Some(100), 100).unwrap().as_deref(), Some("0"));
        assert_eq!(swap_max(Some(100), -1).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(None, -1).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(Some(100), 0).unwrap(), None);
        assert!(swap_max(Some(100), 50).is_err());
        assert!(swap_max(None, 50).is_err());
        assert!(swap_max(Some(-1), 50).is_err());
        assert!(swap_max(Some(100), -5).is_err());
    }

    #[test]
    fn stats_from_files() {
        let d = tempfile::tempdir().unwrap();
        for (f, c) in [
            ("memory.stat", "anon 100\nfile 200\nkernel 50\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n",
            ),
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("memory.swap.current", "10\n"),
            ("memory.swap.max", "100\n"),
        ] {
            std::fs::write(d.path().join(f), c).unwrap();
        }
        let s = stats(d.path()).unwrap();
        assert_eq!(s.usage.usage, 4096);
        assert_eq!(s.usage.limit, u64::MAX);
        assert_eq!(s.usage.failcnt, 7);
        assert_eq!(s.cache, 200);
        assert_eq!(s.kernel.usage, 50);
        assert_eq!(s.oom_kill, 1);
        assert_eq!(s.swap.usage, 4106);
        assert_eq!(s.swap.limit, u64::MAX);
        assert_eq!(s.raw["anon"], 100);
        assert_eq!(oom_kills(d.path()).unwrap(), 1);
    }
}
