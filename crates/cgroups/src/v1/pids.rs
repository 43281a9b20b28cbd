//! v1 pids: `pids.max` (0 or negative means no limit) and the current count.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::common::{read_u64, read_u64_or_max, write_file};
use crate::{PidsStats, Result};

/// The value for `pids.max` (same file name and syntax in v1 and v2).
pub(crate) fn limit_value(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

pub(crate) fn set(dir: &Path, pids: &LinuxPids) -> Result<()> {
    write_file(&dir.join("pids.max"), &limit_value(pids.limit()))
}

/// `pids.current` and `pids.max` (no limit reads as 0, as runc reports it).
pub(crate) fn stats(dir: &Path) -> Result<PidsStats> {
    Ok(PidsStats {
        current: read_u64(&dir.join("pids.current"))?,
        limit: read_u64_or_max(&dir.join("pids.max"))?.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_values() {
        assert_eq!(limit_value(10), "10");
        assert_eq!(limit_value(0), "max");
        assert_eq!(limit_value(-1), "max");
    }

    #[test]
    fn stats_read_max_as_zero() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pids.current"), "3\n").unwrap();
        std::fs::write(d.path().join("pids.max"), "max\n").unwrap();
        assert_eq!(
            stats(d.path()).unwrap(),
            PidsStats {
                current: 3,
                limit: 0
            }
        );
        std::fs::write(d.path().join("pids.max"), "10\n").unwrap();
        assert_eq!(stats(d.path()).unwrap().limit, 10);
    }
}
