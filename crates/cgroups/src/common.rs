//! File helpers shared by both backends: reading and writing cgroupfs files (every error
//! names the path and, for writes, the data), parsing the kernel's small text formats, and
//! validating the OCI `cgroupsPath`, plus the kill-wait-rmdir sequence used by `destroy`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Error, Result};

/// Read a whole cgroupfs file.
pub(crate) fn read_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a file whose content is one value, without the trailing newline.
pub(crate) fn read_trimmed(path: &Path) -> Result<String> {
    Ok(read_string(path)?.trim().to_string())
}

/// Read a file holding one unsigned number, or `max` (returned as `None`).
pub(crate) fn read_u64_or_max(path: &Path) -> Result<Option<u64>> {
    let text = read_trimmed(path)?;
    parse_u64_or_max(&text).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number or \"max\", found {text:?}"),
    })
}

/// Read a file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let text = read_trimmed(path)?;
    text.parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {text:?}"),
    })
}

/// Like [`read_u64`], but a missing file (a controller feature this kernel lacks) is `None`.
pub(crate) fn read_u64_if_exists(path: &Path) -> Result<Option<u64>> {
    match read_u64(path) {
        Ok(v) => Ok(Some(v)),
        Err(Error::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn parse_u64_or_max(text: &str) -> Option<Option<u64>> {
    if text == "max" {
        Some(None)
    } else {
        text.parse().ok().map(Some)
    }
}

/// Write `data` to an existing cgroupfs file in a single `write(2)`: the kernel parses each
/// write on its own, so the value must not be split, and the file must never be created
/// (a missing file means the controller or feature is absent, which callers want to see).
/// O_TRUNC is what runc uses too: cgroupfs ignores it, and test fixtures need it.
pub(crate) fn write_file(path: &Path, data: &str) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        data: data.to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    file.write_all(data.as_bytes()).map_err(err)
}

/// Whether an error is "no such file": how a cgroupfs tells that a knob does not exist.
pub(crate) fn is_not_found(err: &Error) -> bool {
    match err {
        Error::Read { source, .. }
        | Error::Write { source, .. }
        | Error::Create { source, .. }
        | Error::Remove { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// A cgroup directory that went away under us (removed, or being destroyed).
fn vanished(err: &Error) -> bool {
    match err {
        Error::Read { source, .. } | Error::Write { source, .. } | Error::Create { source, .. } => {
            source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::ENODEV)
        }
        _ => false,
    }
}

/// Parse "key value" lines (memory.stat, cpu.stat, memory.events, cpuacct.stat, ...).
/// Lines whose value is not a number are refused: these files only hold counters.
pub(crate) fn parse_flat_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                reason: format!("expected \"key value\", found {line:?}"),
            });
        };
        let value = value.parse().map_err(|_| Error::Parse {
            path: path.to_path_buf(),
            reason: format!("value of {key:?} is not a number: {value:?}"),
        })?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

/// Read and parse a flat-keyed file.
pub(crate) fn read_flat_keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    parse_flat_keyed(path, &read_string(path)?)
}

/// Parse a list of pids, one a line (cgroup.procs).
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                reason: format!("not a pid: {l:?}"),
            })
        })
        .collect()
}

/// Every pid in `dir`'s cgroup.procs and in those of its descendants. A directory that
/// vanishes while we walk (a racing rmdir) is skipped.
pub(crate) fn pids_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    let procs = dir.join("cgroup.procs");
    match read_string(&procs) {
        Ok(text) => out.extend(parse_pids(&procs, &text)?),
        Err(e) if is_not_found(&e) => return Ok(out),
        Err(e) => return Err(e),
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(pids_recursive(&entry.path())?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Normalise an OCI `cgroupsPath` into an absolute path below each hierarchy root
/// ("/docker/abc"). Absolute and relative paths both land under the root (runc does the
/// same without systemd); `None` or empty gives `/berth/<id>`.
pub(crate) fn normalize_cgroups_path(cgroups_path: Option<&str>, id: &str) -> Result<String> {
    let raw = match cgroups_path {
        Some(p) if !p.is_empty() => p,
        _ => {
            validate_id(id)?;
            return Ok(format!("/berth/{id}"));
        }
    };
    normalize_existing(raw)
}

/// Normalise a path given to `open` (the value `path()` returned at create time).
pub(crate) fn normalize_existing(raw: &str) -> Result<String> {
    let invalid = |why: &str| Error::InvalidPath(raw.to_string(), why.to_string());
    if raw.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    // systemd's "slice:prefix:name" form needs the systemd driver, which berth does not
    // have; taking it as a directory name would silently put the container elsewhere.
    if !raw.contains('/') && raw.split(':').count() == 3 {
        return Err(invalid(
            "systemd-style \"slice:prefix:name\" paths are not supported (no systemd cgroup driver)",
        ));
    }
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("\"..\" components are not allowed")),
            Component::Normal(p) => match p.to_str() {
                Some(s) => parts.push(s),
                None => return Err(invalid("not valid UTF-8")),
            },
            Component::Prefix(_) => return Err(invalid("unexpected path prefix")),
        }
    }
    if parts.is_empty() {
        return Err(invalid(
            "resolves to the hierarchy root, which a container cannot own",
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(Error::InvalidPath(
            id.to_string(),
            "container id must be a non-empty name without '/'".to_string(),
        ));
    }
    Ok(())
}

/// `root` joined with a normalised cgroup path ("/a/b").
pub(crate) fn join(root: &Path, cgroup_path: &str) -> PathBuf {
    root.join(cgroup_path.trim_start_matches('/'))
}

/// Create `root/<path>` level by level, calling `on_level(parent, dir)` for each level (new
/// or not) from the top down, so a backend can prepare it (cpuset copy, subtree_control).
/// ENOENT on mkdir is retried: a concurrent `destroy` may have removed an empty parent
/// between our mkdir calls.
pub(crate) fn create_levels(
    root: &Path,
    cgroup_path: &str,
    mut on_level: impl FnMut(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    for attempt in 0..5 {
        let mut dir = root.to_path_buf();
        let mut raced = false;
        for part in cgroup_path.split('/').filter(|p| !p.is_empty()) {
            let parent = dir.clone();
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 4 => {
                    raced = true;
                    break;
                }
                Err(source) => return Err(Error::Create { path: dir, source }),
            }
            match on_level(&parent, &dir) {
                Ok(()) => {}
                // Another container's removal took an empty ancestor away between our mkdir
                // and our write (ENOENT, or ENODEV from a cgroup being destroyed): make the
                // levels again.
                Err(e) if attempt < 4 && vanished(&e) => {
                    raced = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !raced {
            return Ok(dir);
        }
    }
    Err(Error::Create {
        path: join(root, cgroup_path),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// SIGKILL every pid; a pid that is already gone is fine.
pub(crate) fn kill_all(pids: &[i32]) -> Result<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => return Err(Error::Kill { pid, source }),
        }
    }
    Ok(())
}

/// Poll `done` with a short, growing sleep until it is true or `timeout` passes. Used only
/// off the hot path (freeze settling, processes dying before rmdir), where the kernel
/// offers no cheaper wait that works on every kernel we support.
pub(crate) fn wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Remove `root/<path>` and its sub-cgroups (deepest first). A directory already gone is
/// success; EBUSY on the leaf (a process still exiting) is retried briefly. Parents are left
/// alone, as runc leaves them: `/berth` (or `/docker`) is shared by every container, and
/// removing it when the last one goes only made the next start create it again (two mkdirs
/// and two rmdirs per hierarchy per run, eleven hierarchies on a v1 host).
pub(crate) fn remove_cgroup_dirs(root: &Path, cgroup_path: &str) -> Result<()> {
    remove_tree(&join(root, cgroup_path))
}

fn remove_tree(dir: &Path) -> Result<()> {
    // cgroupfs directories hold only control files, which rmdir ignores; only child
    // cgroups (a container's nested cgroups) must go first.
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Remove {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    let mut last_err = None;
    let removed = wait_until(Duration::from_secs(5), || {
        match std::fs::remove_dir(dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            // EBUSY: a killed task has not finished exiting yet.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last_err = Some(e);
                Ok(false)
            }
            Err(source) => Err(Error::Remove {
                path: dir.to_path_buf(),
                source,
            }),
        }
    })?;
    if removed {
        Ok(())
    } else {
        Err(Error::Remove {
            path: dir.to_path_buf(),
            source: last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EBUSY)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_under_the_root() {
        assert_eq!(
            normalize_cgroups_path(Some("/docker/abc"), "x").unwrap(),
            "/docker/abc"
        );
        assert_eq!(
            normalize_cgroups_path(Some("libpod_parent/libpod-1"), "x").unwrap(),
            "/libpod_parent/libpod-1"
        );
        assert_eq!(
            normalize_cgroups_path(Some("//a/./b/"), "x").unwrap(),
            "/a/b"
        );
        assert_eq!(normalize_cgroups_path(None, "c1").unwrap(), "/berth/c1");
        assert_eq!(normalize_cgroups_path(Some(""), "c1").unwrap(), "/berth/c1");
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["/a/../b", "..", "system.slice:docker:abc", "/", "a\0b"] {
            match normalize_cgroups_path(Some(bad), "x") {
                Err(Error::InvalidPath(p, _)) => assert_eq!(p, bad),
                other => panic!("{bad:?}: expected InvalidPath, got {other:?}"),
            }
        }
        assert!(normalize_cgroups_path(None, "a/b").is_err());
        assert!(normalize_cgroups_path(None, "..").is_err());
        // A colon inside a real path is an ordinary name.
        assert_eq!(normalize_existing("/a/b:c:d").unwrap(), "/a/b:c:d");
    }

    #[test]
    fn flat_keyed_parses_and_refuses_garbage() {
        let p = Path::new("/x/cpu.stat");
        let m = parse_flat_keyed(p, "usage_usec 10\nuser_usec 7\n\n").unwrap();
        assert_eq!(m["usage_usec"], 10);
        assert_eq!(m["user_usec"], 7);
        let err = parse_flat_keyed(p, "usage_usec ten\n").unwrap_err();
        assert!(err.to_string().contains("/x/cpu.stat"), "{err}");
        assert!(parse_flat_keyed(p, "a 1 2\n").is_err());
    }

    #[test]
    fn u64_or_max() {
        assert_eq!(parse_u64_or_max("max"), Some(None));
        assert_eq!(parse_u64_or_max("42"), Some(Some(42)));
        assert_eq!(parse_u64_or_max("-1"), None);
    }

    #[test]
    fn write_never_creates_and_names_path_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("memory.max");
        let err = write_file(&missing, "1024").unwrap_err();
        assert!(is_not_found(&err));
        let msg = err.to_string();
        assert!(msg.contains("memory.max") && msg.contains("1024"), "{msg}");
        assert!(!missing.exists());
        std::fs::write(&missing, "").unwrap();
        write_file(&missing, "2048").unwrap();
        assert_eq!(read_u64(&missing).unwrap(), 2048);
    }

    #[test]
    fn pids_are_collected_from_descendants() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "3\n1\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/cgroup.procs"), "2\n").unwrap();
        assert_eq!(pids_recursive(dir.path()).unwrap(), vec![1, 2, 3]);
        assert!(pids_recursive(&dir.path().join("gone")).unwrap().is_empty());
    }

    #[test]
    fn create_levels_walks_top_down_and_remove_takes_the_leaf_only() {
        let root = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        let leaf = create_levels(root.path(), "/a/b/c", |parent, dir| {
            seen.push((parent.to_path_buf(), dir.to_path_buf()));
            Ok(())
        })
        .unwrap();
        assert_eq!(leaf, root.path().join("a/b/c"));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, root.path());
        std::fs::create_dir(root.path().join("a/other")).unwrap();
        remove_cgroup_dirs(root.path(), "/a/b/c").unwrap();
        assert!(!root.path().join("a/b/c").exists());
        // the parents stay, shared or not
        assert!(root.path().join("a/b").exists());
        assert!(root.path().join("a/other").exists());
        // a leaf already gone is success
        remove_cgroup_dirs(root.path(), "/a/b/c").unwrap();
        assert!(root.path().exists());
    }
}
