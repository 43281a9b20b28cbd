//! `linux.resources.unified`: raw "file → value" pairs for cgroup v2. Keys name a file of the
//! container's own directory, nothing else: no `/`, no `..`, no dot files.

use std::collections::HashMap;
use std::path::Path;

use crate::common::write_file;
use crate::{Error, Result};

pub(super) fn validate_key(key: &str) -> Result<()> {
    let bad = key.is_empty() || key.contains('/') || key.contains('\0') || key.starts_with('.');
    if bad {
        return Err(Error::InvalidResource {
            field: format!("unified[{key:?}]"),
            reason: "a key must be a file name of the cgroup directory (no '/' or '..')"
                .to_string(),
        });
    }
    Ok(())
}

pub(super) fn set(dir: &Path, unified: &HashMap<String, String>) -> Result<()> {
    for key in unified.keys() {
        validate_key(key)?;
    }
    // Sorted, so the writes happen in the same order on every run.
    let mut pairs: Vec<_> = unified.iter().collect();
    pairs.sort();
    for (key, value) in pairs {
        match write_file(&dir.join(key), value) {
            Err(e) if e.is_not_found() => {
                return Err(Error::Unsupported(
                    format!("linux.resources.unified[{key:?}]"),
                    format!(
                        "{} does not exist (unknown file or controller not enabled)",
                        dir.join(key).display()
                    ),
                ))
            }
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_confined() {
        for bad in ["../cgroup.procs", "a/b", "..", "", ".hidden"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        validate_key("memory.high").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("memory.high"), "").unwrap();
        let mut m = HashMap::new();
        m.insert("memory.high".to_string(), "1000".to_string());
        set(d.path(), &m).unwrap();
        m.insert("nope.file".to_string(), "1".to_string());
        assert!(matches!(set(d.path(), &m), Err(Error::Unsupported(..))));
    }
}
