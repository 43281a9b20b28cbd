//! v1 memory: limit, memory+swap, soft limit, kernel limits (deprecated; best effort),
//! swappiness and the OOM killer switch; usage statistics and the OOM kill counter.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::{write_i64, write_optional};
use crate::common::{read_flat_keyed, read_u64, read_u64_if_exists, write_file};
use crate::{Error, MemoryEntry, MemoryStats, Result};

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

pub(super) fn set(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    // 0 means "not set", as in runc: a zero limit would kill the container on its first page.
    let unset_zero = |v: Option<i64>| v.filter(|&v| v != 0);
    set_limit_and_swap(dir, unset_zero(mem.limit()), unset_zero(mem.swap()))?;
    if let Some(r) = mem.reservation() {
        write_i64(
            &dir.join("memory.soft_limit_in_bytes"),
            "memory.reservation",
            r,
        )?;
    }
    if let Some(k) = mem.kernel() {
        write_optional(
            &dir.join("memory.kmem.limit_in_bytes"),
            &k.to_string(),
            "memory.kernel",
        )?;
    }
    if let Some(k) = mem.kernel_tcp() {
        write_optional(
            &dir.join("memory.kmem.tcp.limit_in_bytes"),
            &k.to_string(),
            "memory.kernelTCP",
        )?;
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(Error::InvalidResource {
                field: "memory.swappiness".to_string(),
                reason: format!("{s} is above 100"),
            });
        }
        write_file(&dir.join("memory.swappiness"), &s.to_string())?;
    }
    if let Some(disable) = mem.disable_oom_killer() {
        write_file(
            &dir.join("memory.oom_control"),
            if disable { "1" } else { "0" },
        )?;
    }
    Ok(())
}

/// The kernel insists that memory+swap ≥ memory at every moment, so the order of the two
/// writes depends on whether the new memsw value is above the current memory limit.
fn set_limit_and_swap(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    let memsw_path = dir.join(MEMSW);
    let swap = match swap {
        Some(s) if !memsw_path.exists() => {
            // Swap accounting is off (or the host has none): the kernel cannot enforce it.
            // Docker always sends swap with a memory limit, so this must not be fatal.
            tracing::warn!(swap = s, path = %dir.display(), "swap limit ignored: no memory.memsw.* (swap accounting off)");
            None
        }
        other => other,
    };
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s >= 0 && s < l {
            return Err(Error::InvalidResource {
                field: "memory.swap".to_string(),
                reason: format!("memory+swap {s} is below the memory limit {l}"),
            });
        }
    }
    match (limit, swap) {
        (None, None) => Ok(()),
        (Some(l), None) => write_i64(&dir.join(LIMIT), "memory.limit", l),
        (l, Some(s)) => {
            let current = read_u64(&dir.join(LIMIT))?;
            let swap_first = s == -1 || u64::try_from(s).is_ok_and(|s| s >= current);
            if swap_first {
                write_i64(&memsw_path, "memory.swap", s)?;
                if let Some(l) = l {
                    write_i64(&dir.join(LIMIT), "memory.limit", l)?;
                }
            } else {
                if let Some(l) = l {
                    write_i64(&dir.join(LIMIT), "memory.limit", l)?;
                }
                write_i64(&memsw_path, "memory.swap", s)?;
            }
            Ok(())
        }
    }
}

fn entry(dir: &Path, prefix: &str) -> Result<Option<MemoryEntry>> {
    let Some(usage) = read_u64_if_exists(&dir.join(format!("{prefix}.usage_in_bytes")))? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage,
        max: read_u64(&dir.join(format!("{prefix}.max_usage_in_bytes")))?,
        limit: read_u64(&dir.join(format!("{prefix}.limit_in_bytes")))?,
        failcnt: read_u64(&dir.join(format!("{prefix}.failcnt")))?,
    }))
}

pub(super) fn stats(dir: &Path) -> Result<MemoryStats> {
    let raw = read_flat_keyed(&dir.join("memory.stat"))?;
    Ok(MemoryStats {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: entry(dir, "memory")?.unwrap_or_default(),
        swap: entry(dir, "memory.memsw")?.unwrap_or_default(),
        kernel: entry(dir, "memory.kmem")?.unwrap_or_default(),
        oom_kill: oom_kills(dir)?,
        raw,
    })
}

/// The `oom_kill` line of memory.oom_control (kernel 4.13+; 0 before).
pub(super) fn oom_kills(dir: &Path) -> Result<u64> {
    let control = read_flat_keyed(&dir.join("memory.oom_control"))?;
    Ok(control.get("oom_kill").copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxMemoryBuilder;

    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let files = [
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.failcnt", "2\n"),
            ("memory.memsw.usage_in_bytes", "4096\n"),
            ("memory.memsw.max_usage_in_bytes", "8192\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.failcnt", "0\n"),
            ("memory.stat", "cache 100\nrss 200\ntotal_cache 100\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            ),
            ("memory.soft_limit_in_bytes", ""),
            ("memory.swappiness", ""),
        ];
        for (f, c) in files {
            std::fs::write(d.path().join(f), c).unwrap();
        }
        d
    }

    #[test]
    fn stats_from_files() {
        let d = fixture();
        let s = stats(d.path()).unwrap();
        assert_eq!(s.cache, 100);
        assert_eq!(s.usage.usage, 4096);
        assert_eq!(s.usage.max, 8192);
        assert_eq!(s.usage.failcnt, 2);
        assert_eq!(s.swap.usage, 4096);
        assert_eq!(s.kernel, MemoryEntry::default());
        assert_eq!(s.oom_kill, 3);
        assert_eq!(s.raw["rss"], 200);
    }

    #[test]
    fn limit_swap_and_checks() {
        let d = fixture();
        let mem = LinuxMemoryBuilder::default()
            .limit(1i64 << 25)
            .swap(1i64 << 25)
            .reservation(1i64 << 24)
            .swappiness(10u64)
            .kernel(1i64 << 20)
            .build()
            .unwrap();
        // memory.kmem.limit_in_bytes is absent from the fixture: warned, not fatal.
        set(d.path(), &mem).unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(read(LIMIT), "33554432");
        assert_eq!(read(MEMSW), "33554432");
        assert_eq!(read("memory.soft_limit_in_bytes"), "16777216");
        assert_eq!(read("memory.swappiness"), "10");

        let bad = LinuxMemoryBuilder::default()
            .limit(1i64 << 25)
            .swap(1i64 << 20)
            .build()
            .unwrap();
        assert!(matches!(
            set(d.path(), &bad),
            Err(Error::InvalidResource { .. })
        ));
        let bad = LinuxMemoryBuilder::default().limit(-2i64).build().unwrap();
        assert!(matches!(
            set(d.path(), &bad),
            Err(Error::InvalidResource { .. })
        ));
        let bad = LinuxMemoryBuilder::default()
            .swappiness(101u64)
            .build()
            .unwrap();
        assert!(matches!(
            set(d.path(), &bad),
            Err(Error::InvalidResource { .. })
        ));
    }
}
