//! v1 cpuset: a new cgroup starts with empty `cpuset.cpus`/`cpuset.mems`, and a task cannot
//! join a cgroup with an empty cpuset (ENOSPC), so every level is seeded from its parent
//! before anything else happens; then the container's own cpus/mems are written.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::common::{read_trimmed, write_file};
use crate::Result;

/// Copy `cpuset.cpus` and `cpuset.mems` from `parent` into `dir` where `dir`'s are empty.
pub(super) fn init_level(parent: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_trimmed(&dir.join(file))?.is_empty() {
            let value = read_trimmed(&parent.join(file))?;
            write_file(&dir.join(file), &value)?;
        }
    }
    Ok(())
}

pub(super) fn set(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = cpu.cpus() {
        write_file(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = cpu.mems() {
        write_file(&dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_levels_are_seeded_from_the_parent() {
        let parent = tempfile::tempdir().unwrap();
        let child = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(parent.path().join("cpuset.mems"), "0\n").unwrap();
        std::fs::write(child.path().join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(child.path().join("cpuset.mems"), "0\n").unwrap();
        init_level(parent.path(), child.path()).unwrap();
        assert_eq!(
            read_trimmed(&child.path().join("cpuset.cpus")).unwrap(),
            "0-3"
        );
        assert_eq!(
            read_trimmed(&child.path().join("cpuset.mems")).unwrap(),
            "0"
        );
    }
}
