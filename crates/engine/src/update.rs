//! `docker update` of a container's resources: the new values are merged into its
//! HostConfig, validated by the same code as `create` (spec::resources), written to the
//! running container's cgroup now, and stored so a later start applies them again.
//! (The restart policy part of the update lives elsewhere.)

use bollard_stubs::models::{ContainerUpdateBody, HostConfig};
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::Engine;

/// Copies the resource fields the update sets onto the stored HostConfig. Returns whether any
/// resource was asked for.
fn merge(h: &mut HostConfig, u: &ContainerUpdateBody) -> Result<bool> {
    let mut any = false;
    macro_rules! take {
        ($($f:ident),*) => {$(
            if let Some(v) = &u.$f {
                h.$f = Some(v.clone());
                any = true;
            }
        )*};
    }
    // Docker: a new memory limit above the swap limit already set needs a new swap limit too.
    if let (Some(m), None, Some(swap)) = (u.memory, u.memory_swap, h.memory_swap) {
        if swap > 0 && m > swap {
            return Err(Error::InvalidArgument(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
            ));
        }
    }
    // --cpus and --cpu-quota/--cpu-period exclude each other; a new one replaces the other.
    if u.nano_cpus.is_some_and(|n| n != 0) {
        h.cpu_quota = None;
        h.cpu_period = None;
    }
    if u.cpu_quota.is_some_and(|n| n != 0) || u.cpu_period.is_some_and(|n| n != 0) {
        h.nano_cpus = None;
    }
    take!(
        memory,
        memory_swap,
        memory_reservation,
        cpu_shares,
        cpu_quota,
        cpu_period,
        nano_cpus,
        cpuset_cpus,
        cpuset_mems,
        pids_limit,
        blkio_weight,
        cpu_realtime_period,
        cpu_realtime_runtime,
        blkio_weight_device,
        blkio_device_read_bps,
        blkio_device_write_bps,
        blkio_device_read_iops,
        blkio_device_write_iops
    );
    Ok(any)
}

/// The `linux.resources` the merged HostConfig asks for, without devices (an update never
/// touches the device rules the container was created with).
fn resources_of(h: &HostConfig) -> Result<LinuxResources> {
    let mut v = crate::spec::resources::resources(h)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("devices");
    }
    // Docker: --pids-limit 0 or -1 on update means unlimited.
    if h.pids_limit.is_some_and(|p| p <= 0) {
        v["pids"] = serde_json::json!({"limit": -1});
    }
    serde_json::from_value(v).map_err(|e| Error::InvalidArgument(format!("update resources: {e}")))
}

/// `POST /containers/{id}/update`, the resource part: applies the new limits to the running
/// container's cgroup and stores them in its HostConfig. Returns Docker's warnings.
pub fn apply_resources(e: &Engine, id: &str, u: &ContainerUpdateBody) -> Result<Vec<String>> {
    let r = e.find(id)?;
    let lock = e.container_lock(&r.id);
    let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
    let r = e.find(&r.id)?;
    let mut body = e.body(&r);
    let mut h = body.host_config.clone().unwrap_or_default();
    if !merge(&mut h, u)? {
        return Ok(Vec::new());
    }
    let resources = resources_of(&h)?;
    if r.status == "running" || r.status == "paused" {
        e.runtime().update(&r.id, &resources).map_err(|err| {
            Error::InvalidArgument(format!("Cannot update container {}: {err}", r.id))
        })?;
    }
    body.host_config = Some(h);
    let json = serde_json::to_string(&body)
        .map_err(|err| Error::InvalidArgument(format!("update {}: {err}", r.id)))?;
    e.db().set_body_json(&r.id, &json)?;
    e.emit_event(&r, "update", &[]);
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_above_old_swap_is_refused() {
        let mut h = HostConfig {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            ..Default::default()
        };
        let u = ContainerUpdateBody {
            memory: Some(256 << 20),
            ..Default::default()
        };
        assert!(merge(&mut h, &u).is_err());
    }

    #[test]
    fn cpus_replace_quota() {
        let mut h = HostConfig {
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            ..Default::default()
        };
        let u = ContainerUpdateBody {
            nano_cpus: Some(500_000_000),
            ..Default::default()
        };
        assert!(merge(&mut h, &u).expect("merge"));
        assert_eq!(h.cpu_quota, None);
        let r = resources_of(&h).expect("resources");
        assert_eq!(r.cpu().as_ref().and_then(|c| c.quota()), Some(50_000));
    }

    #[test]
    fn nothing_asked_is_nothing_done() {
        let mut h = HostConfig::default();
        assert!(!merge(&mut h, &ContainerUpdateBody::default()).expect("merge"));
    }
}
