//! v1 cpuacct: total and per-cpu usage (ns) and the user/system split, which the kernel
//! reports in clock ticks (USER_HZ) and runc reports in nanoseconds.

use std::path::Path;

use crate::common::{read_flat_keyed, read_trimmed, read_u64};
use crate::{CpuStats, CpuUsage, Error, Result};

pub(super) fn stats(dir: &Path) -> Result<CpuStats> {
    let percpu_path = dir.join("cpuacct.usage_percpu");
    let percpu = parse_percpu(&percpu_path, &read_trimmed(&percpu_path)?)?;
    let stat = read_flat_keyed(&dir.join("cpuacct.stat"))?;
    let ns_per_tick = 1_000_000_000 / clock_ticks();
    Ok(CpuStats {
        usage: CpuUsage {
            total: read_u64(&dir.join("cpuacct.usage"))?,
            percpu,
            kernel: stat.get("system").copied().unwrap_or(0) * ns_per_tick,
            user: stat.get("user").copied().unwrap_or(0) * ns_per_tick,
        },
        throttling: Default::default(),
    })
}

fn parse_percpu(path: &Path, text: &str) -> Result<Vec<u64>> {
    text.split_whitespace()
        .map(|v| {
            v.parse().map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                reason: format!("not a number: {v:?}"),
            })
        })
        .collect()
}

/// USER_HZ; 100 on every Linux architecture that matters, used if sysconf cannot tell.
fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuacct_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cpuacct.usage"), "3000\n").unwrap();
        std::fs::write(d.path().join("cpuacct.usage_percpu"), "1000 2000 \n").unwrap();
        std::fs::write(d.path().join("cpuacct.stat"), "user 2\nsystem 1\n").unwrap();
        let s = stats(d.path()).unwrap();
        assert_eq!(s.usage.total, 3000);
        assert_eq!(s.usage.percpu, vec![1000, 2000]);
        let tick = 1_000_000_000 / clock_ticks();
        assert_eq!(s.usage.user, 2 * tick);
        assert_eq!(s.usage.kernel, tick);
        std::fs::write(d.path().join("cpuacct.usage_percpu"), "1 x\n").unwrap();
        assert!(stats(d.path()).is_err());
    }
}
