//! `docker stats`: one sample of a container's cgroup (through the runtime's cgroup manager,
//! so v1 and v2 read alike) shaped as Docker's stats JSON. The API pairs two samples into
//! `cpu_stats`/`precpu_stats`; the numbers are the cgroup files' own.

use std::collections::HashMap;

use berth_cgroups::Stats;
use bollard_stubs::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
    ContainerMemoryStats, ContainerPidsStats, ContainerStatsResponse, ContainerThrottlingData,
};

use crate::error::{Error, Result};
use crate::Engine;

/// Go's zero time: what Docker puts in `read`/`preread` when there is no sample.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Nanoseconds of CPU time the whole host has spent (the `cpu` line of /proc/stat), and the
/// number of online CPUs (its `cpuN` lines), as Docker computes `system_cpu_usage`.
fn host_cpu() -> Result<(u64, u32)> {
    let path = "/proc/stat";
    let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
    let mut total = 0u64;
    let mut cpus = 0u32;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                // user nice system idle iowait irq softirq, in USER_HZ ticks (100 on Linux).
                total = fields
                    .take(7)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum::<u64>()
                    .saturating_mul(1_000_000_000 / 100);
            }
            Some(c) if c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    Ok((total, cpus.max(1)))
}

/// MemTotal of /proc/meminfo in bytes: Docker caps an unlimited cgroup's limit at it.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX)
}

/// An empty sample: what Docker sends for a container that is not running.
pub fn empty(id: &str, name: &str) -> ContainerStatsResponse {
    ContainerStatsResponse {
        id: Some(id.to_string()),
        name: Some(format!("/{name}")),
        os_type: Some("linux".into()),
        read: Some(ZERO_TIME.into()),
        preread: Some(ZERO_TIME.into()),
        cpu_stats: Some(ContainerCpuStats::default()),
        precpu_stats: Some(ContainerCpuStats::default()),
        memory_stats: Some(ContainerMemoryStats::default()),
        pids_stats: Some(ContainerPidsStats::default()),
        blkio_stats: Some(ContainerBlkioStats::default()),
        ..Default::default()
    }
}

fn blkio(entries: &[berth_cgroups::BlkioEntry]) -> Vec<ContainerBlkioStatEntry> {
    entries
        .iter()
        .map(|e| ContainerBlkioStatEntry {
            major: Some(e.major),
            minor: Some(e.minor),
            op: Some(e.op.clone()),
            value: Some(e.value),
        })
        .collect()
}

/// Shapes the cgroup numbers as Docker does: v1 keeps memory.stat's keys and the failcnt and
/// max usage; v2 has memory.stat's v2 keys and no max usage or failcnt.
pub fn shape(
    id: &str,
    name: &str,
    s: &Stats,
    v2: bool,
    read: String,
) -> Result<ContainerStatsResponse> {
    let (system, online) = host_cpu()?;
    let cpu = s.cpu.clone().unwrap_or_default();
    let cpu_stats = ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(cpu.usage.total),
            percpu_usage: (!v2 && !cpu.usage.percpu.is_empty()).then(|| cpu.usage.percpu.clone()),
            usage_in_kernelmode: Some(cpu.usage.kernel),
            usage_in_usermode: Some(cpu.usage.user),
        }),
        system_cpu_usage: Some(system),
        online_cpus: Some(online),
        throttling_data: Some(ContainerThrottlingData {
            periods: Some(cpu.throttling.periods),
            throttled_periods: Some(cpu.throttling.throttled_periods),
            throttled_time: Some(cpu.throttling.throttled_time),
        }),
    };
    let memory_stats = s.memory.as_ref().map(|m| {
        let limit = m.usage.limit.min(host_memory());
        let stats: HashMap<String, u64> = m.raw.iter().map(|(k, v)| (k.clone(), *v)).collect();
        if v2 {
            ContainerMemoryStats {
                usage: Some(m.usage.usage),
                limit: Some(limit),
                stats: Some(stats),
                ..Default::default()
            }
        } else {
            ContainerMemoryStats {
                usage: Some(m.usage.usage),
                max_usage: Some(m.usage.max),
                failcnt: Some(m.usage.failcnt),
                limit: Some(limit),
                stats: Some(stats),
                ..Default::default()
            }
        }
    });
    let pids_stats = s.pids.as_ref().map(|p| ContainerPidsStats {
        current: Some(p.current),
        limit: (p.limit != 0).then_some(p.limit),
    });
    let blkio_stats = s.blkio.as_ref().map(|b| ContainerBlkioStats {
        io_service_bytes_recursive: Some(blkio(&b.io_service_bytes_recursive)),
        io_serviced_recursive: Some(blkio(&b.io_serviced_recursive)),
        ..Default::default()
    });
    Ok(ContainerStatsResponse {
        id: Some(id.to_string()),
        name: Some(format!("/{name}")),
        os_type: Some("linux".into()),
        read: Some(read),
        preread: Some(ZERO_TIME.into()),
        cpu_stats: Some(cpu_stats),
        precpu_stats: Some(ContainerCpuStats::default()),
        memory_stats: Some(memory_stats.unwrap_or_default()),
        pids_stats: Some(pids_stats.unwrap_or_default()),
        blkio_stats: Some(blkio_stats.unwrap_or_default()),
        num_procs: Some(0),
        ..Default::default()
    })
}

impl Engine {
    /// One sample of the container's cgroup; a container that is not running gives
    /// Docker's empty sample.
    pub fn stats_sample(&self, s: &str) -> Result<ContainerStatsResponse> {
        let r = self.find(s)?;
        if r.status != "running" && r.status != "paused" {
            return Ok(empty(&r.id, &r.name));
        }
        let read = crate::engine::now();
        let st = match self.runtime().stats(&r.id) {
            Ok(st) => st,
            // Exited between the status check and the read.
            Err(berth_runtime::Error::WrongState { .. })
            | Err(berth_runtime::Error::NotFound(_)) => return Ok(empty(&r.id, &r.name)),
            Err(e) => return Err(e.into()),
        };
        let v2 = berth_cgroups::detect() == berth_cgroups::Hierarchy::V2;
        let mut out = shape(&r.id, &r.name, &st, v2, read)?;
        out.networks = self.net_stats(&r.id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpu_counts_time_and_cpus() {
        let (total, cpus) = host_cpu().expect("/proc/stat");
        assert!(total > 0);
        assert!(cpus >= 1);
    }

    #[test]
    fn v2_shape_has_no_max_usage() {
        let st = Stats {
            memory: Some(berth_cgroups::MemoryStats {
                usage: berth_cgroups::MemoryEntry {
                    usage: 10,
                    limit: u64::MAX,
                    max: 20,
                    failcnt: 1,
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = shape("x", "n", &st, true, "t".into()).expect("shape");
        let m = v.memory_stats.expect("memory");
        assert_eq!(m.usage, Some(10));
        assert_eq!(m.max_usage, None);
        assert!(m.limit.is_some_and(|l| l < u64::MAX));
        let v = shape("x", "n", &st, false, "t".into()).expect("shape");
        assert_eq!(v.memory_stats.expect("memory").max_usage, Some(20));
    }
}
