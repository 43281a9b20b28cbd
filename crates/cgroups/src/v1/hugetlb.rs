//! v1 hugetlb (a v1 `hugetlb` hierarchy): `hugetlb.<size>.limit_in_bytes` per page size, and
//! usage/max/failcnt. On hybrid hosts where hugetlb is only in the cgroup2 tree, the v2
//! module's functions are used on the container's cgroup2 directory instead.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::common::{read_u64, write_file};
use crate::v2::hugetlb::{page_sizes, validate_page_size};
use crate::{HugetlbStats, Result};

pub(super) fn set_v1(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let size = validate_page_size(dir, l.page_size(), "limit_in_bytes")?;
        let value = if l.limit() < 0 { -1 } else { l.limit() };
        write_file(
            &dir.join(format!("hugetlb.{size}.limit_in_bytes")),
            &value.to_string(),
        )?;
    }
    Ok(())
}

pub(super) fn stats_v1(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, "limit_in_bytes")? {
        let f = |k: &str| dir.join(format!("hugetlb.{size}.{k}"));
        out.insert(
            size.clone(),
            HugetlbStats {
                usage: read_u64(&f("usage_in_bytes"))?,
                max: read_u64(&f("max_usage_in_bytes"))?,
                failcnt: read_u64(&f("failcnt"))?,
            },
        );
    }
    Ok(out)
}
