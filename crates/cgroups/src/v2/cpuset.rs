//! v2 cpuset: `cpuset.cpus` and `cpuset.mems`. Unlike v1, an empty value means "inherit the
//! parent's", so new levels need no seeding.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::common::write_file;
use crate::Result;

pub(super) fn set(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = cpu.cpus() {
        write_file(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = cpu.mems() {
        write_file(&dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}
