//! v1 devices: deny everything, then write the spec's rules in order as `devices.allow` /
//! `devices.deny` lines (`c 1:3 rwm`, `*` for a wildcard), which reproduces "last match wins"
//! because each write edits the kernel's exception list.

use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::common::write_file;
use crate::devices::{access_string, normalize, Kind, Rule};
use crate::Result;

/// The kernel lines for one rule. Type `a` with a specific number or partial access becomes
/// one `c` and one `b` line: the kernel reads a line starting with `a` as "every device, every
/// access" whatever follows, which is not what the spec's rule says.
pub(crate) fn rule_lines(rule: &Rule) -> Vec<String> {
    if rule.matches_everything() {
        return vec!["a".to_string()];
    }
    let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
    let tail = format!(
        "{}:{} {}",
        num(rule.major),
        num(rule.minor),
        access_string(rule.access)
    );
    match rule.kind {
        Kind::Char => vec![format!("c {tail}")],
        Kind::Block => vec![format!("b {tail}")],
        Kind::All => vec![format!("c {tail}"), format!("b {tail}")],
    }
}

pub(super) fn set(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    // Validate everything before the first write: a bad rule must not leave the container
    // with "deny all" and half of its allow list.
    let rules = normalize(rules)?;
    write_file(&dir.join("devices.deny"), "a")?;
    for rule in &rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        for line in rule_lines(rule) {
            write_file(&dir.join(file), &line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{ACC_ALL, ACC_READ};

    #[test]
    fn lines() {
        let r = |kind, major, minor, access| Rule {
            allow: true,
            kind,
            major,
            minor,
            access,
        };
        assert_eq!(rule_lines(&r(Kind::All, None, None, ACC_ALL)), ["a"]);
        assert_eq!(
            rule_lines(&r(Kind::Char, Some(1), Some(3), ACC_ALL)),
            ["c 1:3 rwm"]
        );
        assert_eq!(
            rule_lines(&r(Kind::Block, Some(8), None, ACC_READ)),
            ["b 8:* r"]
        );
        assert_eq!(
            rule_lines(&r(Kind::All, Some(136), None, ACC_ALL)),
            ["c 136:* rwm", "b 136:* rwm"]
        );
    }
}
