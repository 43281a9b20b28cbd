//! v2 cpu: `cpu.weight` (converted from v1 shares), `cpu.max` ("quota period"),
//! `cpu.max.burst`, `cpu.idle`; usage and throttling from `cpu.stat`. Realtime limits have no
//! v2 equivalent and are refused when asked for.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::common::{read_flat_keyed, read_trimmed, write_file};
use crate::{CpuStats, CpuUsage, Error, Result, Throttling};

/// The conversion every runtime uses (runc, crun, youki, systemd): shares 2..262144 map
/// linearly onto weight 1..10000, so the default 1024 becomes 39.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

pub(super) fn wants_cpu_controller(cpu: &LinuxCpu) -> bool {
    cpu.shares().is_some_and(|s| s != 0)
        || cpu.quota().is_some_and(|q| q != 0)
        || cpu.period().is_some_and(|p| p != 0)
        || cpu.burst().is_some()
        || cpu.idle().is_some()
}

/// `cpu.max` from quota and period; a missing half keeps the current value.
fn cpu_max(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<Option<String>> {
    let quota = quota.filter(|&q| q != 0);
    let period = period.filter(|&p| p != 0);
    if quota.is_none() && period.is_none() {
        return Ok(None);
    }
    let quota = match quota {
        Some(q) if q < 0 => "max".to_string(),
        Some(q) => q.to_string(),
        None => {
            let current = read_trimmed(&dir.join("cpu.max"))?;
            current
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_string()
        }
    };
    Ok(Some(match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    }))
}

pub(super) fn set(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
    {
        return Err(Error::Unsupported(
            "linux.resources.cpu.realtimeRuntime/realtimePeriod".to_string(),
            "cgroup v2 has no realtime bandwidth control".to_string(),
        ));
    }
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        write_file(
            &dir.join("cpu.weight"),
            &shares_to_weight(shares).to_string(),
        )?;
    }
    if let Some(max) = cpu_max(dir, cpu.quota(), cpu.period())? {
        write_file(&dir.join("cpu.max"), &max)?;
    }
    if let Some(burst) = cpu.burst() {
        write_file(&dir.join("cpu.max.burst"), &burst.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        write_file(&dir.join("cpu.idle"), &idle.to_string())?;
    }
    Ok(())
}

/// `cpu.stat` is there even without the cpu controller (usage only); times are µs there and
/// nanoseconds in the stats.
pub(super) fn stats(dir: &Path) -> Result<CpuStats> {
    let s = read_flat_keyed(&dir.join("cpu.stat"))?;
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    Ok(CpuStats {
        usage: CpuUsage {
            total: get("usage_usec") * 1000,
            percpu: Vec::new(),
            kernel: get("system_usec") * 1000,
            user: get("user_usec") * 1000,
        },
        throttling: Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_usec") * 1000,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxCpuBuilder;

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn cpu_max_values() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(
            cpu_max(d.path(), Some(50000), Some(100000))
                .unwrap()
                .as_deref(),
            Some("50000 100000")
        );
        assert_eq!(
            cpu_max(d.path(), Some(-1), None).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            cpu_max(d.path(), None, Some(20000)).unwrap().as_deref(),
            Some("max 20000")
        );
        assert_eq!(cpu_max(d.path(), None, None).unwrap(), None);
        assert_eq!(cpu_max(d.path(), Some(0), Some(0)).unwrap(), None);
    }

    #[test]
    fn stats_and_realtime() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cpu.stat"),
            "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n",
        )
        .unwrap();
        let s = stats(d.path()).unwrap();
        assert_eq!(s.usage.total, 5000);
        assert_eq!(s.usage.user, 3000);
        assert_eq!(s.usage.kernel, 2000);
        assert_eq!(s.throttling.throttled_time, 7000);
        assert_eq!(s.throttling.throttled_periods, 1);
        let rt = LinuxCpuBuilder::default()
            .realtime_runtime(10i64)
            .build()
            .unwrap();
        assert!(matches!(set(d.path(), &rt), Err(Error::Unsupported(..))));
    }
}
