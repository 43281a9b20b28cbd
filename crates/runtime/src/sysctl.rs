//! Namespaced sysctls from the spec, written under /proc/sys inside the container. Only the
//! keys that the container's own namespaces scope are allowed: any other would change the host.

use crate::error::{Error, Result};
use crate::namespaces::Plan;
use oci_spec::runtime::LinuxNamespaceType as T;

/// The namespace type that scopes `key`, or None when no namespace does (the key is the
/// host's whatever the container has).
fn namespace_of(key: &str) -> Option<T> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(T::Ipc)
    } else if key.starts_with("net.") {
        Some(T::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(T::Uts)
    } else {
        None
    }
}

fn allowed(key: &str, plan: &Plan) -> std::result::Result<(), String> {
    let name = |t: T| match t {
        T::Ipc => "an IPC",
        T::Network => "a network",
        _ => "a UTS",
    };
    match namespace_of(key) {
        Some(t) if plan.types.contains(&t) => Ok(()),
        Some(t) => Err(format!("it needs {} namespace", name(t))),
        None => Err("it is not namespaced: it would change the host".into()),
    }
}

/// Refuse, before anything is made, a namespaced sysctl whose namespace would be the host's:
/// none of that type, or one joined by a path that is the host's own (its inode is that of
/// /proc/1/ns/<type>, or of the runtime's own namespace). Writing it would change the host,
/// which is what the key's namespace was to prevent (runc refuses it too).
pub fn validate(spec: &oci_spec::runtime::Spec, plan: &Plan) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for key in sysctl.keys() {
        allowed(key, plan)
            .map_err(|why| Error::InvalidSpec(format!("sysctl {key:?} is refused: {why}")))?;
        let Some(t) = namespace_of(key) else { continue };
        let Some(join) = plan.joins.iter().find(|j| j.typ == t) else {
            continue;
        };
        let joined = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&join.fd))
            .map_err(|e| Error::sys(format!("stat namespace {}", join.path.display()), e))?;
        let ns = crate::namespaces::proc_name(t);
        for host in [format!("/proc/1/ns/{ns}"), format!("/proc/self/ns/{ns}")] {
            if let Ok(m) = std::fs::metadata(&host) {
                if m.ino() == joined.st_ino && m.dev() == joined.st_dev {
                    return Err(Error::InvalidSpec(format!(
                        "sysctl {key:?} is refused: the {ns} namespace joined at {} is the host's ({host}); the value would be written into the host",
                        join.path.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

pub fn path_of(key: &str) -> Result<std::path::PathBuf> {
    if key.is_empty() || key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
        return Err(Error::InvalidSpec(format!(
            "sysctl {key:?} is not a valid key"
        )));
    }
    Ok(std::path::Path::new("/proc/sys").join(key.replace('.', "/")))
}

pub fn write(key: &str, value: &str, plan: &Plan) -> Result<()> {
    allowed(key, plan)
        .map_err(|why| Error::InvalidSpec(format!("sysctl {key:?} is refused: {why}")))?;
    let path = path_of(key)?;
    std::fs::write(&path, value).map_err(|e| Error::io("write sysctl", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_keys() {
        let plan = Plan {
            types: vec![T::Network, T::Ipc],
            ..Default::default()
        };
        assert!(allowed("net.ipv4.ip_forward", &plan).is_ok());
        assert!(allowed("kernel.shmmax", &plan).is_ok());
        assert!(allowed("kernel.hostname", &plan).is_err());
        assert!(allowed("vm.swappiness", &plan).is_err());
        assert!(path_of("net..x").is_err());
        assert!(path_of("net/../../x").is_err());
        assert_eq!(
            path_of("net.ipv4.ip_forward").unwrap(),
            std::path::PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
