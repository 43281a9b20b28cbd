//! Device rules of `linux.resources.devices`, checked and normalised once for both backends
//! (v1 writes them as `devices.allow`/`devices.deny` lines, v2 compiles them to eBPF), so a
//! bad rule gets the same error on every host.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{Error, Result};

/// Access bits, valued as the kernel's BPF_DEVCG_ACC_* so v2 can use them directly.
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
pub(crate) const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    All,
    Char,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub kind: Kind,
    /// `None` is the wildcard (`*`).
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

impl Rule {
    /// A rule that matches every device and every access.
    pub fn matches_everything(&self) -> bool {
        self.kind == Kind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }
}

/// Check and normalise the spec's rules, in order. FIFO rules (`p`) are dropped: the device
/// controller never sees FIFOs, so there is nothing to enforce.
pub(crate) fn normalize(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let field = |what: &str| format!("devices[{i}].{what}");
        let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::P => continue,
        };
        let number = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
            match v {
                None | Some(-1) => Ok(None),
                // Device numbers are 12 (major) and 20 (minor) bits; anything that does not fit
                // a positive i32 is a mistake and would not fit an eBPF immediate either.
                Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(Error::InvalidResource {
                    field: field(what),
                    reason: format!("{n} is not a device number (use -1 or omit it for all)"),
                }),
            }
        };
        let access = match r.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(s) => parse_access(s).ok_or_else(|| Error::InvalidResource {
                field: field("access"),
                reason: format!("{s:?} is not a combination of r, w and m"),
            })?,
        };
        out.push(Rule {
            allow: r.allow(),
            kind,
            major: number(r.major(), "major")?,
            minor: number(r.minor(), "minor")?,
            access,
        });
    }
    Ok(out)
}

fn parse_access(s: &str) -> Option<u32> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some(bits)
}

pub(crate) fn access_string(bits: u32) -> String {
    let mut s = String::new();
    for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn normalises_and_refuses() {
        let rules = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(-1i64)
                .access("rw")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::P)
                .build()
                .unwrap(),
        ];
        let n = normalize(&rules).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n[0].matches_everything() && !n[0].allow);
        assert_eq!(
            n[1],
            Rule {
                allow: true,
                kind: Kind::Char,
                major: Some(1),
                minor: None,
                access: ACC_READ | ACC_WRITE
            }
        );
        let bad = vec![LinuxDeviceCgroupBuilder::default()
            .access("rx")
            .build()
            .unwrap()];
        let err = normalize(&bad).unwrap_err().to_string();
        assert!(err.contains("devices[0].access"), "{err}");
        let bad = vec![LinuxDeviceCgroupBuilder::default()
            .major(-2i64)
            .build()
            .unwrap()];
        assert!(normalize(&bad).is_err());
        assert_eq!(access_string(ACC_ALL), "rwm");
        assert_eq!(access_string(ACC_MKNOD | ACC_READ), "rm");
    }
}
