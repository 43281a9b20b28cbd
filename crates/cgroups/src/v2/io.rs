//! v2 io: proportional weight (`io.weight`, converted from the blkio 10..1000 scale, or BFQ's
//! `io.bfq.weight` which keeps that scale), per-device weights, `io.max` throttles; and
//! bytes/operations per device from `io.stat`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::common::{read_string, write_file};
use crate::{BlkioEntry, BlkioStats, Error, Result};

/// blkio weight 10..1000 → io.weight 1..10000, linearly (what runc and crun do).
pub(crate) fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

enum WeightFile {
    Iocost(PathBuf),
    Bfq(PathBuf),
}

fn weight_file(dir: &Path) -> Result<WeightFile> {
    let iocost = dir.join("io.weight");
    let bfq = dir.join("io.bfq.weight");
    if iocost.exists() {
        Ok(WeightFile::Iocost(iocost))
    } else if bfq.exists() {
        Ok(WeightFile::Bfq(bfq))
    } else {
        Err(Error::Unsupported(
            "linux.resources.blockIO.weight".to_string(),
            format!("{} has neither io.weight nor io.bfq.weight", dir.display()),
        ))
    }
}

/// The line for a weight file; `device` is "maj:min" or `None` for the default.
fn weight_line(file: &WeightFile, device: Option<&str>, weight: u16) -> (PathBuf, String) {
    let (path, value) = match file {
        WeightFile::Iocost(p) => (p.clone(), blkio_weight_to_io(weight)),
        WeightFile::Bfq(p) => (p.clone(), u64::from(weight)),
    };
    (path, format!("{} {value}", device.unwrap_or("default")))
}

pub(super) fn set(dir: &Path, io: &LinuxBlockIo) -> Result<()> {
    if let Some(w) = io.weight().filter(|&w| w != 0) {
        let (path, line) = weight_line(&weight_file(dir)?, None, w);
        write_file(&path, &line)?;
    }
    if io.leaf_weight().is_some()
        || io
            .weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        tracing::warn!(dir = %dir.display(), "blockIO leafWeight has no cgroup v2 equivalent; ignored");
    }
    for d in io.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let dev = format!("{}:{}", d.major(), d.minor());
            let (path, line) = weight_line(&weight_file(dir)?, Some(&dev), w);
            write_file(&path, &line)?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", io.throttle_read_bps_device()),
        ("wbps", io.throttle_write_bps_device()),
        ("riops", io.throttle_read_iops_device()),
        ("wiops", io.throttle_write_iops_device()),
    ];
    for (key, devices) in throttles {
        for d in devices.iter().flatten() {
            write_file(&dir.join("io.max"), &io_max_line(d, key))?;
        }
    }
    Ok(())
}

/// `maj:min key=value`; a rate of 0 removes the limit, as it does in v1.
fn io_max_line(d: &LinuxThrottleDevice, key: &str) -> String {
    let rate = if d.rate() == 0 {
        "max".to_string()
    } else {
        d.rate().to_string()
    };
    format!("{}:{} {key}={rate}", d.major(), d.minor())
}

pub(super) fn stats(dir: &Path) -> Result<BlkioStats> {
    let path = dir.join("io.stat");
    parse_io_stat(&path, &read_string(&path)?)
}

/// `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device → runc's blkio entries
/// (op Read/Write, bytes and operations apart).
fn parse_io_stat(path: &Path, text: &str) -> Result<BlkioStats> {
    let bad = |line: &str, why: &str| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("{why} in {line:?}"),
    };
    let mut stats = BlkioStats::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let dev = fields.next().unwrap_or_default();
        let (major, minor) = dev
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| bad(line, "bad device number"))?;
        for kv in fields {
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| bad(line, "expected key=value"))?;
            let value: u64 = value.parse().map_err(|_| bad(line, "not a number"))?;
            let entry = |op: &str| BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            };
            match key {
                "rbytes" => stats.io_service_bytes_recursive.push(entry("Read")),
                "wbytes" => stats.io_service_bytes_recursive.push(entry("Write")),
                "dbytes" => stats.io_service_bytes_recursive.push(entry("Discard")),
                "rios" => stats.io_serviced_recursive.push(entry("Read")),
                "wios" => stats.io_serviced_recursive.push(entry("Write")),
                "dios" => stats.io_serviced_recursive.push(entry("Discard")),
                // Newer kernels add keys (cost.*, latency); they are not blkio counters.
                _ => {}
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxThrottleDeviceBuilder;

    #[test]
    fn weight_conversion() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(5), 1);
    }

    #[test]
    fn io_stat() {
        let p = Path::new("io.stat");
        let s = parse_io_stat(
            p,
            "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n253:1 rbytes=1 wbytes=0 rios=1 wios=0 dbytes=0 dios=0 cost.usage=3\n",
        )
        .unwrap();
        assert_eq!(s.io_service_bytes_recursive.len(), 6);
        assert_eq!(s.io_serviced_recursive.len(), 6);
        assert_eq!(s.io_service_bytes_recursive[0].value, 4096);
        assert_eq!(s.io_service_bytes_recursive[3].major, 253);
        assert!(parse_io_stat(p, "8:0 rbytes\n").is_err());
        assert!(parse_io_stat(p, "sda rbytes=1\n").is_err());
    }

    #[test]
    fn io_max_lines() {
        let d = |rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(8i64)
                .minor(16i64)
                .rate(rate)
                .build()
                .unwrap()
        };
        assert_eq!(io_max_line(&d(1048576), "rbps"), "8:16 rbps=1048576");
        assert_eq!(io_max_line(&d(0), "wiops"), "8:16 wiops=max");
    }
}
