//! v2 hugetlb: `hugetlb.<size>.max` per page size, usage from `.current` and failures from
//! `.events` ("max N"). Also used by the v1 backend on hybrid hosts, where hugetlb is
//! bound to the cgroup2 tree rather than to a v1 hierarchy.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::common::{read_flat_keyed, read_u64, write_file};
use crate::{Error, HugetlbStats, Result};

/// The page sizes this cgroup offers (`2MB`, `1GB`), from its `hugetlb.<size>.<suffix>` files.
pub(crate) fn page_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name
                .strip_prefix("hugetlb.")?
                .strip_suffix(suffix)?
                .strip_suffix('.')?;
            // Skip the ".rsvd." variants (hugetlb.2MB.rsvd.max).
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

/// A page size must be a plain name the kernel offers: it becomes part of a file name.
pub(crate) fn validate_page_size<'a>(dir: &Path, size: &'a str, suffix: &str) -> Result<&'a str> {
    let plain = !size.is_empty() && size.chars().all(|c| c.is_ascii_alphanumeric());
    if !plain {
        return Err(Error::InvalidResource {
            field: "hugepageLimits.pageSize".to_string(),
            reason: format!("{size:?} is not a page size such as \"2MB\""),
        });
    }
    if !page_sizes(dir, suffix)?.iter().any(|s| s == size) {
        return Err(Error::Unsupported(
            format!("hugepage size {size}"),
            format!("{} has no hugetlb.{size}.{suffix}", dir.display()),
        ));
    }
    Ok(size)
}

pub(crate) fn set(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let size = validate_page_size(dir, l.page_size(), "max")?;
        let value = if l.limit() < 0 {
            "max".to_string()
        } else {
            l.limit().to_string()
        };
        write_file(&dir.join(format!("hugetlb.{size}.max")), &value)?;
    }
    Ok(())
}

/// v2 keeps no peak, so `max` is 0; `failcnt` is the number of allocations refused.
pub(crate) fn stats(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, "max")? {
        let events = read_flat_keyed(&dir.join(format!("hugetlb.{size}.events")))?;
        out.insert(
            size.clone(),
            HugetlbStats {
                usage: read_u64(&dir.join(format!("hugetlb.{size}.current")))?,
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxHugepageLimitBuilder;

    #[test]
    fn sizes_limits_and_stats() {
        let d = tempfile::tempdir().unwrap();
        for (f, c) in [
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.rsvd.max", "max\n"),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.events", "max 4\n"),
            ("hugetlb.1GB.max", "max\n"),
            ("hugetlb.1GB.current", "0\n"),
            ("hugetlb.1GB.events", "max 0\n"),
        ] {
            std::fs::write(d.path().join(f), c).unwrap();
        }
        assert_eq!(page_sizes(d.path(), "max").unwrap(), ["1GB", "2MB"]);
        let limit = |size: &str, limit: i64| {
            LinuxHugepageLimitBuilder::default()
                .page_size(size)
                .limit(limit)
                .build()
                .unwrap()
        };
        set(d.path(), &[limit("2MB", 4 << 20)]).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("hugetlb.2MB.max")).unwrap(),
            "4194304"
        );
        assert!(matches!(
            set(d.path(), &[limit("../x", 1)]),
            Err(Error::InvalidResource { .. })
        ));
        assert!(matches!(
            set(d.path(), &[limit("64KB", 1)]),
            Err(Error::Unsupported(..))
        ));
        let s = stats(d.path()).unwrap();
        assert_eq!(s["2MB"].failcnt, 4);
    }
}
