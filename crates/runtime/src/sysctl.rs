//! Namespaced sysctls from the spec, written under /proc/sys inside the container. Only the
//! keys that the container's own namespaces scope are allowed: any other would change the host.

use crate::error::{Error, Result};
use crate::namespaces::Plan;
use oci_spec::runtime::LinuxNamespaceType as T;

fn allowed(key: &str, plan: &Plan) -> std::result::Result<(), String> {
    let has = |t: T| plan.types.contains(&t);
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
        return if has(T::Ipc) {
            Ok(())
        } else {
            Err("it needs an IPC namespace".into())
        };
    }
    if key.starts_with("net.") {
        return if has(T::Network) {
            Ok(())
        } else {
            Err("it needs a network namespace".into())
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if has(T::Uts) {
            Ok(())
        } else {
            Err("it needs a UTS namespace".into())
        };
    }
    Err("it is not namespaced: it would change the host".into())
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
