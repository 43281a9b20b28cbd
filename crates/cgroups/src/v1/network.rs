//! v1 net_cls and net_prio: the class id tagged on the container's packets and per-interface
//! priorities. Hosts often mount neither; then a request for them is an error by name.

use std::path::PathBuf;

use oci_spec::runtime::LinuxNetwork;

use crate::common::write_file;
use crate::{Error, Result};

pub(super) fn set(
    net_cls: Option<PathBuf>,
    net_prio: Option<PathBuf>,
    net: &LinuxNetwork,
) -> Result<()> {
    let missing = |c: &str| {
        Error::Unsupported(
            "linux.resources.network".to_string(),
            format!("the {c} cgroup controller is not mounted"),
        )
    };
    if let Some(id) = net.class_id() {
        let dir = net_cls.ok_or_else(|| missing("net_cls"))?;
        write_file(&dir.join("net_cls.classid"), &id.to_string())?;
    }
    let priorities = net.priorities().as_deref().unwrap_or_default();
    if !priorities.is_empty() {
        let dir = net_prio.ok_or_else(|| missing("net_prio"))?;
        for p in priorities {
            write_file(
                &dir.join("net_prio.ifpriomap"),
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    Ok(())
}
