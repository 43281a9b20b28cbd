//! `--user name|uid[:group|gid]` and `--group-add` resolved against the image's own
//! /etc/passwd and /etc/group. The rootfs comes from an image and is hostile: the files are
//! opened with RESOLVE_IN_ROOT (a symlink to /etc/shadow of the host stays in the rootfs),
//! must be regular files (a FIFO would hang the daemon) and are read up to a size limit.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use super::SpecError;

/// Larger passwd/group files are refused rather than read into the daemon's memory.
const MAX_FILE: u64 = 8 << 20;

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Read `rel` (e.g. "etc/passwd") inside `rootfs`; `None` when it does not exist.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>, SpecError> {
    let path = rootfs.join(rel);
    let io = |e: std::io::Error| SpecError::ReadRootfs {
        path: path.clone(),
        source: e,
    };
    let root = std::fs::File::open(rootfs).map_err(|e| SpecError::ReadRootfs {
        path: rootfs.to_path_buf(),
        source: e,
    })?;
    let fd = match berth_sys::openat2(
        root.as_fd(),
        Path::new(rel),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
        berth_sys::resolve::IN_ROOT | berth_sys::resolve::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let f = std::fs::File::from(fd);
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    let mut text = String::new();
    f.take(MAX_FILE + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_FILE {
        return Err(io(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        ))));
    }
    Ok(Some(text))
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) plus `group_add` (names
/// or gids) the way Docker does: a numeric uid need not exist in passwd, a name must; the
/// primary gid comes from passwd unless a group is given; the user's supplementary groups
/// come from /etc/group.
pub fn resolve(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ExecUser, SpecError> {
    let bad = |reason: String| SpecError::User {
        user: spec.to_string(),
        reason,
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups_text = read_in_root(rootfs, "etc/group")?;
    let groups = groups_text.as_deref().map(parse_group).unwrap_or_default();

    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => passwd.iter().find(|p| p.name == user_part),
    };
    let (uid, mut gid, home, name) = match (entry, user_part.parse::<u32>()) {
        (Some(p), _) => (p.uid, p.gid, p.home.clone(), Some(p.name.clone())),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(bad(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    let find_group = |g: &str| -> Result<u32, SpecError> {
        if let Ok(n) = g.parse::<u32>() {
            return Ok(n);
        }
        groups
            .iter()
            .find(|e| e.name == g)
            .map(|e| e.gid)
            .ok_or_else(|| {
                bad(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = find_group(g)?;
    }
    // Docker lists the primary group among the supplementary ones too (getUser in moby's
    // daemon/oci_linux.go), so setgroups(2) keeps it whatever the image's /etc/group says.
    let mut additional = vec![gid];
    // Without an explicit group, the user's memberships count, as login(1) would give them.
    if group_part.is_none() {
        if let Some(n) = &name {
            for g in &groups {
                if g.members.iter().any(|m| m == n) && !additional.contains(&g.gid) {
                    additional.push(g.gid);
                }
            }
        }
    }
    for g in group_add {
        let id = find_group(g).map_err(|_| SpecError::InvalidFlag {
            flag: "--group-add",
            reason: format!("unable to find group {g}: no matching entries in group file"),
        })?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids: additional,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken:x:zz\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\naudio:x:29:alice\nstaff:x:50:\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let r = rootfs();
        let root = resolve(r.path(), "", &[]).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let a = resolve(r.path(), "alice", &[]).unwrap();
        assert_eq!((a.uid, a.gid), (1000, 1000));
        assert_eq!(a.additional_gids, vec![1000, 10, 29]);
        let a = resolve(r.path(), "1000:staff", &["audio".into(), "7".into()]).unwrap();
        assert_eq!((a.uid, a.gid), (1000, 50));
        assert_eq!(a.additional_gids, vec![50, 29, 7]);
        let n = resolve(r.path(), "4242:4343", &[]).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 4343, "/"));
    }

    #[test]
    fn unknown_names_are_client_errors() {
        let r = rootfs();
        let e = resolve(r.path(), "mallory", &[]).unwrap_err();
        assert!(e.is_invalid_argument());
        assert!(e.to_string().contains("mallory"), "{e}");
        let e = resolve(r.path(), "alice:nogroup", &[]).unwrap_err();
        assert!(e.to_string().contains("nogroup"), "{e}");
        let e = resolve(r.path(), "alice", &["ghosts".into()]).unwrap_err();
        assert!(e.to_string().contains("--group-add"), "{e}");
    }

    #[test]
    fn a_symlink_out_of_the_rootfs_stays_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        // /etc -> <outside> on the host; inside the rootfs that is a missing directory
        std::os::unix::fs::symlink(outside.path(), r.path().join("etc")).unwrap();
        let e = resolve(r.path(), "evil", &[]).unwrap_err();
        assert!(e.to_string().contains("no matching entries"), "{e}");
        // a missing passwd still lets numeric users run
        assert_eq!(resolve(r.path(), "5", &[]).unwrap().uid, 5);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &r.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(resolve(r.path(), "root", &[]).is_err());
    }
}
