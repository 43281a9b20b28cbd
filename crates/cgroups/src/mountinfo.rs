//! Finding the cgroup hierarchies from /proc/self/mountinfo, never from hard-coded paths:
//! controllers may be mounted one per directory (`cpu` and `cpuacct` apart) or co-mounted
//! (`cpu,cpuacct`), under any mount point, with or without a hybrid cgroup2 beside them.

use std::path::{Path, PathBuf};

use crate::common::read_string;
use crate::Result;

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// Controllers bound to it (`["cpu", "cpuacct"]`), empty for a named hierarchy.
    pub controllers: Vec<String>,
    /// `name=` of a named hierarchy (`systemd`).
    pub name: Option<String>,
}

impl V1Hierarchy {
    /// The directory name used inside a container (`cpu,cpuacct`, `memory`, `systemd`).
    pub fn dir_name(&self) -> String {
        match &self.name {
            Some(n) if self.controllers.is_empty() => n.clone(),
            _ => self.controllers.join(","),
        }
    }

    /// The `-o` options that select this hierarchy in `mount -t cgroup`.
    pub fn mount_options(&self) -> String {
        let mut opts = self.controllers.clone();
        if let Some(n) = &self.name {
            if opts.is_empty() {
                // A named hierarchy without controllers must say so, or the kernel binds
                // every free controller to it.
                opts.push("none".to_string());
            }
            opts.push(format!("name={n}"));
        }
        opts.join(",")
    }
}

/// All cgroup mounts of this mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    pub v1: Vec<V1Hierarchy>,
    /// cgroup2 mount points, in mountinfo order.
    pub v2: Vec<PathBuf>,
}

/// Options of a cgroup v1 superblock that are not controller names.
const NON_CONTROLLER_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "noprefix",
    "xattr",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

///
/// Cached for the process: the kernel formats the whole mount table for every read (with
/// a few hundred containers' overlay mounts, their long option strings dominate a daemon's
/// `rm`), while cgroup hierarchies are mounted once at boot. The cache is checked before use
/// (every mount point must still be a cgroup file system of its version, a statfs per
/// hierarchy, a dozen on a hybrid host) and read again when it is not; a check less than a
/// second old stands (a shim uses the cgroup mounts three times within milliseconds).
pub fn read() -> Result<CgroupMounts> {
    use std::time::{Duration, Instant};
    type Cached = Option<(CgroupMounts, Instant)>;
    static CACHE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    const CHECKED_FOR: Duration = Duration::from_secs(1);
    {
        let mut c = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, checked)) = c.as_mut() {
            if checked.elapsed() < CHECKED_FOR {
                return Ok(m.clone());
            }
            if still_mounted(m) {
                *checked = Instant::now();
                return Ok(m.clone());
            }
        }
    }
    let path = Path::new("/proc/self/mountinfo");
    let m = parse(&read_string(path)?);
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Some((m.clone(), Instant::now()));
    Ok(m)
}

fn still_mounted(m: &CgroupMounts) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let is = |p: &Path, magic| statfs(p).is_ok_and(|s| s.filesystem_type() == magic);
    (!m.v1.is_empty() || !m.v2.is_empty())
        && m.v1.iter().all(|h| is(&h.mount_point, CGROUP_SUPER_MAGIC))
        && m.v2.iter().all(|p| is(p, CGROUP2_SUPER_MAGIC))
}

/// Parse mountinfo text (proc(5)): `id parent maj:min root mount_point opts [optional...] -
/// fstype source super_opts`. Lines that do not fit are skipped: they are not ours to judge.
pub fn parse(text: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let mount_point = PathBuf::from(unescape(left[4]));
        match right[0] {
            "cgroup2" if !mounts.v2.contains(&mount_point) => mounts.v2.push(mount_point),
            "cgroup" => {
                let mut controllers = Vec::new();
                let mut name = None;
                for opt in right[2].split(',') {
                    if let Some(n) = opt.strip_prefix("name=") {
                        name = Some(n.to_string());
                    } else if !NON_CONTROLLER_OPTIONS.contains(&opt)
                        && !opt.starts_with("release_agent=")
                    {
                        controllers.push(opt.to_string());
                    }
                }
                // The same hierarchy may be mounted twice (bind mounts); the first wins.
                let same = |h: &V1Hierarchy| h.controllers == controllers && h.name == name;
                if !mounts.v1.iter().any(same) {
                    mounts.v1.push(V1Hierarchy {
                        mount_point,
                        controllers,
                        name,
                    });
                }
            }
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
43 31 0:32 / /mnt/mem\\040copy rw - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_layout() {
        let m = parse(HYBRID);
        assert_eq!(m.v2, vec![PathBuf::from("/sys/fs/cgroup/unified")]);
        let names: Vec<String> = m.v1.iter().map(|h| h.dir_name()).collect();
        assert_eq!(
            names,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "systemd",
                "cpu,cpuacct"
            ]
        );
        let systemd = &m.v1[4];
        assert_eq!(systemd.mount_options(), "none,name=systemd");
        assert_eq!(systemd.mount_point, PathBuf::from("/sys/fs/cgroup/systemd"));
        assert_eq!(m.v1[5].mount_options(), "cpu,cpuacct");
        // The duplicate memory mount is ignored.
        assert_eq!(
            m.v1.iter().filter(|h| h.controllers == ["memory"]).count(),
            1
        );
    }

    #[test]
    fn parses_pure_v2_and_escapes() {
        let m = parse("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert!(m.v1.is_empty());
        assert_eq!(m.v2, vec![PathBuf::from("/sys/fs/cgroup")]);
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert!(parse("garbage line\n\n").v1.is_empty());
    }
}
