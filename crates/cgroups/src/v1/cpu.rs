//! v1 cpu: CFS shares, quota/period and burst, realtime runtime/period, `cpu.idle`; and the
//! throttling counters of `cpu.stat`.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::{write_i64, write_optional};
use crate::common::{read_flat_keyed, write_file};
use crate::{Error, Result, Throttling};

/// Whether any field for the cpu controller (not cpuset) is set.
pub(super) fn wants_cpu_controller(cpu: &LinuxCpu) -> bool {
    cpu.shares().is_some_and(|s| s != 0)
        || cpu.quota().is_some_and(|q| q != 0)
        || cpu.period().is_some_and(|p| p != 0)
        || cpu.burst().is_some()
        || cpu.idle().is_some()
        || cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
}

pub(super) fn set(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares() {
        if shares != 0 {
            write_file(&dir.join("cpu.shares"), &shares.to_string())?;
        }
    }
    set_cfs(dir, cpu.quota(), cpu.period())?;
    if let Some(burst) = cpu.burst() {
        write_optional(
            &dir.join("cpu.cfs_burst_us"),
            &burst.to_string(),
            "cpu.burst",
        )?;
    }
    // The realtime period must be set before the runtime it bounds.
    if let Some(period) = cpu.realtime_period() {
        if period != 0 {
            write_rt(&dir.join("cpu.rt_period_us"), &period.to_string())?;
        }
    }
    if let Some(runtime) = cpu.realtime_runtime() {
        if runtime != 0 {
            write_rt(&dir.join("cpu.rt_runtime_us"), &runtime.to_string())?;
        }
    }
    if let Some(idle) = cpu.idle() {
        write_optional(&dir.join("cpu.idle"), &idle.to_string(), "cpu.idle")?;
    }
    Ok(())
}

/// Quota and period: the kernel checks each write against the other's current value, so
/// when the period write is refused (EINVAL), writing the quota first makes room for it.
fn set_cfs(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<()> {
    let period_file = dir.join("cpu.cfs_period_us");
    let quota_file = dir.join("cpu.cfs_quota_us");
    let quota = quota.filter(|&q| q != 0);
    match period.filter(|&p| p != 0) {
        Some(p) => match write_file(&period_file, &p.to_string()) {
            Ok(()) => {
                if let Some(q) = quota {
                    write_i64(&quota_file, "cpu.quota", q)?;
                }
            }
            Err(Error::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                if let Some(q) = quota {
                    write_i64(&quota_file, "cpu.quota", q)?;
                }
                write_file(&period_file, &p.to_string())?;
            }
            Err(e) => return Err(e),
        },
        None => {
            if let Some(q) = quota {
                write_i64(&quota_file, "cpu.quota", q)?;
            }
        }
    }
    Ok(())
}

fn write_rt(path: &Path, data: &str) -> Result<()> {
    if !path.exists() {
        return Err(Error::Unsupported(
            "linux.resources.cpu.realtime*".to_string(),
            format!(
                "{} is absent (kernel without RT group scheduling)",
                path.display()
            ),
        ));
    }
    write_file(path, data)
}

/// `cpu.stat`: nr_periods, nr_throttled, throttled_time (ns).
pub(super) fn throttling(dir: &Path) -> Result<Throttling> {
    let stat = read_flat_keyed(&dir.join("cpu.stat"))?;
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    Ok(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_time"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_throttling() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cpu.stat"),
            "nr_periods 10\nnr_throttled 3\nthrottled_time 12345\nnr_bursts 0\nburst_time 0\n",
        )
        .unwrap();
        assert_eq!(
            throttling(d.path()).unwrap(),
            Throttling {
                periods: 10,
                throttled_periods: 3,
                throttled_time: 12345
            }
        );
    }

    #[test]
    fn quota_and_period_are_written() {
        let d = tempfile::tempdir().unwrap();
        for f in ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let cpu = oci_spec::runtime::LinuxCpuBuilder::default()
            .shares(512u64)
            .quota(50000i64)
            .period(100000u64)
            .build()
            .unwrap();
        set(d.path(), &cpu).unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(read("cpu.shares"), "512");
        assert_eq!(read("cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu.cfs_period_us"), "100000");
        // A realtime runtime on a kernel without RT groups is refused by name.
        let rt = oci_spec::runtime::LinuxCpuBuilder::default()
            .realtime_runtime(1000i64)
            .build()
            .unwrap();
        let err = set(d.path(), &rt).unwrap_err();
        assert!(matches!(err, Error::Unsupported(..)), "{err}");
    }
}
