//! v1 blkio: proportional weight (CFQ's `blkio.weight` or BFQ's `blkio.bfq.weight`, whichever
//! the kernel has), per-device weights, and per-device throttles; and the recursive
//! throttle statistics.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::common::{read_string, write_file};
use crate::{BlkioEntry, BlkioStats, Error, Result};

pub(super) fn set(dir: &Path, io: &LinuxBlockIo) -> Result<()> {
    // 0 is "not set" (engines send it for an unset field), and not a valid weight anyway.
    if let Some(w) = io.weight().filter(|&w| w != 0) {
        write_file(&weight_file(dir, "weight")?, &w.to_string())?;
    }
    if let Some(w) = io.leaf_weight().filter(|&w| w != 0) {
        write_file(&weight_file(dir, "leaf_weight")?, &w.to_string())?;
    }
    for d in io.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let f = weight_file(dir, "weight_device")?;
            write_file(&f, &format!("{}:{} {}", d.major(), d.minor(), w))?;
        }
        if let Some(w) = d.leaf_weight() {
            let f = weight_file(dir, "leaf_weight_device")?;
            write_file(&f, &format!("{}:{} {}", d.major(), d.minor(), w))?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        (
            "blkio.throttle.read_bps_device",
            io.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            io.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            io.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            io.throttle_write_iops_device(),
        ),
    ];
    for (file, devices) in throttles {
        for d in devices.iter().flatten() {
            // A rate of 0 removes the device's limit.
            write_file(
                &dir.join(file),
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// CFQ was removed in Linux 5.0; BFQ offers the same knob under another name (and only
/// when it is the scheduler of some device).
fn weight_file(dir: &Path, knob: &str) -> Result<PathBuf> {
    let cfq = dir.join(format!("blkio.{knob}"));
    let bfq = dir.join(format!("blkio.bfq.{knob}"));
    if cfq.exists() {
        Ok(cfq)
    } else if bfq.exists() {
        Ok(bfq)
    } else {
        Err(Error::Unsupported(
            format!("linux.resources.blockIO {knob}"),
            format!(
                "neither {} nor {} exists (no CFQ/BFQ I/O scheduler)",
                cfq.display(),
                bfq.display()
            ),
        ))
    }
}

pub(super) fn stats(dir: &Path) -> Result<BlkioStats> {
    let read = |file: &str| -> Result<Vec<BlkioEntry>> {
        let path = dir.join(file);
        match read_string(&path) {
            Ok(text) => parse_entries(&path, &text),
            // Kernels without CONFIG_BLK_DEV_THROTTLING have no such files: no numbers.
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    Ok(BlkioStats {
        io_service_bytes_recursive: read("blkio.throttle.io_service_bytes_recursive")?,
        io_serviced_recursive: read("blkio.throttle.io_serviced_recursive")?,
    })
}

/// Lines `8:0 Read 4096`; the closing `Total N` line is a sum and skipped.
fn parse_entries(path: &Path, text: &str) -> Result<Vec<BlkioEntry>> {
    let bad = |line: &str| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected \"major:minor op value\", found {line:?}"),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] | ["Total", _] => {}
            [dev, op, value] => {
                let (major, minor) = dev.split_once(':').ok_or_else(|| bad(line))?;
                out.push(BlkioEntry {
                    major: major.parse().map_err(|_| bad(line))?,
                    minor: minor.parse().map_err(|_| bad(line))?,
                    op: (*op).to_string(),
                    value: value.parse().map_err(|_| bad(line))?,
                });
            }
            _ => return Err(bad(line)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_throttle_stats() {
        let p = Path::new("blkio.throttle.io_service_bytes_recursive");
        let text = "8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n";
        let e = parse_entries(p, text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".to_string(),
                value: 4096
            }
        );
        assert!(parse_entries(p, "Total 0\n").unwrap().is_empty());
        assert!(parse_entries(p, "8-0 Read 1\n").is_err());
    }

    #[test]
    fn throttles_written_and_weight_needs_a_scheduler() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("blkio.throttle.read_bps_device"), "").unwrap();
        let io = oci_spec::runtime::LinuxBlockIoBuilder::default()
            .throttle_read_bps_device(vec![
                oci_spec::runtime::LinuxThrottleDeviceBuilder::default()
                    .major(8i64)
                    .minor(0i64)
                    .rate(1048576u64)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        set(d.path(), &io).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("blkio.throttle.read_bps_device")).unwrap(),
            "8:0 1048576"
        );
        let w = oci_spec::runtime::LinuxBlockIoBuilder::default()
            .weight(500u16)
            .build()
            .unwrap();
        assert!(matches!(set(d.path(), &w), Err(Error::Unsupported(..))));
        std::fs::write(d.path().join("blkio.bfq.weight"), "").unwrap();
        set(d.path(), &w).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("blkio.bfq.weight")).unwrap(),
            "500"
        );
    }
}
