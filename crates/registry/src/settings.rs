//! Which registries are spoken to over plain HTTP: those listed under `insecure-registries`
//! in `<data_root>/daemon.json` or `/etc/berth/daemon.json`, and, as Docker does, loopback
//! (`localhost`, `127.0.0.0/8`, `::1`) without asking. Everything else is HTTPS with the
//! system's root certificates.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The system-wide daemon configuration, read after the data root's own.
pub const SYSTEM_DAEMON_JSON: &str = "/etc/berth/daemon.json";

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Hosts (`host` or `host:port`) and CIDR ranges spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
}

#[derive(serde::Deserialize, Default)]
struct DaemonJson {
    #[serde(default, rename = "insecure-registries")]
    insecure_registries: Vec<String>,
}

impl Settings {
    /// Reads `<data_root>/daemon.json` and `/etc/berth/daemon.json`; a missing file is no
    /// setting, a malformed one is an error naming the file.
    pub fn load(data_root: &Path) -> Result<Self> {
        Self::load_from(&[
            data_root.join("daemon.json"),
            PathBuf::from(SYSTEM_DAEMON_JSON),
        ])
    }

    pub fn load_from(paths: &[PathBuf]) -> Result<Self> {
        let mut s = Settings::default();
        for path in paths {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::ReadConfig {
                        path: path.clone(),
                        source,
                    })
                }
            };
            let d: DaemonJson =
                serde_json::from_slice(&bytes).map_err(|source| Error::ParseConfig {
                    path: path.clone(),
                    source,
                })?;
            s.insecure_registries.extend(d.insecure_registries);
        }
        Ok(s)
    }

    /// Whether `registry` (as written in a reference: `host[:port]`) is spoken to over HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        if host == "localhost" {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.map(|ip| ip.is_loopback()).unwrap_or(false) {
            return true;
        }
        self.insecure_registries.iter().any(|entry| {
            let entry = entry
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if entry == registry || entry == host {
                return true;
            }
            match (ip, parse_cidr(entry)) {
                (Some(ip), Some((net, bits))) => cidr_contains(net, bits, ip),
                _ => false,
            }
        })
    }
}

/// The host part of `host[:port]`, `[v6]:port` included.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address, not host:port.
        Some((h, _)) if !h.contains(':') => h,
        _ => registry,
    }
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (net, bits) = s.split_once('/')?;
    Some((net.parse().ok()?, bits.parse().ok()?))
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure_without_configuration() {
        let s = Settings::default();
        assert!(s.is_insecure("localhost:5000"));
        assert!(s.is_insecure("127.0.0.1:5000"));
        assert!(s.is_insecure("127.3.2.1"));
        assert!(s.is_insecure("[::1]:5000"));
        assert!(!s.is_insecure("registry-1.docker.io"));
        assert!(!s.is_insecure("10.0.0.1:5000"));
    }

    #[test]
    fn listed_hosts_and_ranges_are_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(
            &p,
            r#"{"insecure-registries": ["myreg:5000", "10.1.0.0/16"], "other": 1}"#,
        )
        .unwrap();
        let s = Settings::load_from(&[p, dir.path().join("missing.json")]).unwrap();
        assert!(s.is_insecure("myreg:5000"));
        assert!(!s.is_insecure("myreg:5001"));
        assert!(s.is_insecure("10.1.200.3:443"));
        assert!(!s.is_insecure("10.2.0.1"));
    }

    #[test]
    fn malformed_daemon_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(&p, "{nope").unwrap();
        let e = Settings::load_from(std::slice::from_ref(&p)).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()));
    }
}
