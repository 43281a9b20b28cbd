//! The last steps before the user's program runs, shared by a container's init and by `exec`:
//! rlimits, working directory, user and groups, the five capability sets, no_new_privs,
//! seccomp, descriptor hygiene, then execve. The order matters and follows the kernel's rules:
//! the bounding set is trimmed while CAP_SETPCAP is still held, uid changes keep permitted
//! capabilities only through PR_SET_KEEPCAPS, and a seccomp filter is loaded without
//! no_new_privs only while CAP_SYS_ADMIN is still there.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::{CapSet, Capability};
use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, PosixRlimitType, Process};

use crate::error::{Error, Result};

/// Everything computed before the point of no return, so that the final steps do no parsing.
pub struct Prepared {
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    seccomp: Option<crate::seccomp::Filter>,
}

impl Prepared {
    /// The command's arguments, as it will be executed.
    pub fn argv(&self) -> &[CString] {
        &self.argv
    }
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidSpec(format!("{what} {s:?} contains a NUL byte")))
}

/// Resolve the program and build argv/envp. Runs inside the container's root, so PATH lookups
/// see the container's files.
pub fn prepare(p: &Process, seccomp: Option<&LinuxSeccomp>) -> Result<Prepared> {
    let args =
        p.args().as_ref().filter(|a| !a.is_empty()).ok_or_else(|| {
            Error::InvalidSpec("process.args must name the program to run".into())
        })?;
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(p.user().uid())));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let exe = find_executable(&args[0], path_var, p.cwd())?;
    let seccomp = seccomp.map(crate::seccomp::filter_for).transpose()?;
    Ok(Prepared {
        exe: CString::new(exe.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidSpec("program path contains a NUL byte".into()))?,
        argv: args
            .iter()
            .map(|a| cstr(a, "argument"))
            .collect::<Result<_>>()?,
        envp: env
            .iter()
            .map(|e| cstr(e, "environment entry"))
            .collect::<Result<_>>()?,
        seccomp,
    })
}

/// $HOME for a uid from the container's /etc/passwd, "/" when unknown (as runc does).
fn home_of(uid: u32) -> String {
    if let Ok(s) = std::fs::read_to_string("/etc/passwd") {
        for line in s.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) {
                return f[5].to_string();
            }
        }
    }
    "/".into()
}

/// PATH lookup as execvp does, but up front, so that "executable file not found" is an error
/// of `create` (as Docker users expect) and not a silent exit at `start`.
pub fn find_executable(name: &str, path_var: &str, cwd: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            cwd.join(name)
        };
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => Err(Error::Init(format!("exec {name}: is a directory"))),
            Ok(_) if is_exec(&p) => Ok(p),
            Ok(_) => Err(Error::Init(format!("exec {name}: permission denied"))),
            Err(_) => Err(Error::Init(format!(
                "exec: {name:?}: stat {name}: no such file or directory"
            ))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(Error::Init(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

/// Set the spec's rlimits. Raising a hard limit needs CAP_SYS_RESOURCE; without it the error
/// says which limit and what the ceiling is, instead of a bare EPERM.
pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let res = resource(r.typ()).ok_or_else(|| {
            Error::InvalidSpec(format!("rlimit {:?} is not known on Linux", r.typ()))
        })?;
        if r.soft() > r.hard() {
            return Err(Error::InvalidSpec(format!(
                "rlimit {:?}: soft limit {} is above the hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
        if let Err(e) = setrlimit(res, r.soft(), r.hard()) {
            let (_, cur_hard) = nix::sys::resource::getrlimit(res).unwrap_or((0, 0));
            if e == nix::errno::Errno::EPERM && r.hard() > cur_hard {
                return Err(Error::Init(format!(
                    "rlimit {:?}: hard limit {} is above the current hard limit {} and raising it needs CAP_SYS_RESOURCE",
                    r.typ(),
                    r.hard(),
                    cur_hard
                )));
            }
            return Err(Error::sys(format!("setrlimit {:?}", r.typ()), e));
        }
    }
    Ok(())
}

fn resource(t: PosixRlimitType) -> Option<Resource> {
    Some(match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn cap_set(names: &Option<oci_spec::runtime::Capabilities>) -> HashSet<Capability> {
    let mut out = HashSet::new();
    for c in names.iter().flatten() {
        // oci-spec's Capability prints as "CAP_..."; an unknown one is skipped (as runc does)
        let s = c.to_string();
        let s = if s.starts_with("CAP_") {
            s
        } else {
            format!("CAP_{s}")
        };
        if let Ok(cap) = Capability::from_str(&s) {
            out.insert(cap);
        }
    }
    out
}

fn caps_err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Init(format!("capabilities: {what}: {e}"))
}

/// Switch to the spec's user and capabilities, apply no_new_privs and seccomp, close what must
/// not leak, and exec. Returns only on failure.
pub fn finish_and_exec(
    p: &Process,
    prepared: Prepared,
    keep_fds: &[i32],
    in_user_ns: bool,
    agent: Option<(&crate::seccomp::NotifyAgent, i32)>,
) -> Error {
    match finish(p, &prepared, keep_fds, in_user_ns, agent) {
        Ok(()) => {}
        Err(e) => return e,
    }
    exec(&prepared)
}

/// The final execve; returns only on failure.
pub fn exec(prepared: &Prepared) -> Error {
    let err = berth_sys::execve(&prepared.exe, &prepared.argv, &prepared.envp);
    Error::Init(format!("exec {}: {err}", prepared.exe.to_string_lossy()))
}

/// Everything but the exec: user, capabilities, no_new_privs, seccomp, descriptors. After it,
/// only syscalls the seccomp profile allows may follow (runc's order, which profiles expect).
pub fn finish(
    p: &Process,
    prepared: &Prepared,
    keep_fds: &[i32],
    in_user_ns: bool,
    agent: Option<(&crate::seccomp::NotifyAgent, i32)>,
) -> Result<()> {
    let nnp = p.no_new_privileges().unwrap_or(false);
    let caps: LinuxCapabilities = p.capabilities().clone().unwrap_or_default();
    if !nnp {
        if let Some(f) = &prepared.seccomp {
            crate::seccomp::load(f)?;
            if let Some((agent, pid)) = agent {
                crate::seccomp::send_to_agent(f, agent, pid)?;
            }
        }
    }
    // Bounding set first: it needs CAP_SETPCAP, which may be dropped below.
    let bounding = cap_set(caps.bounding());
    for c in caps::all() {
        if !bounding.contains(&c) {
            match caps::drop(None, CapSet::Bounding, c) {
                Ok(()) => {}
                // capabilities newer than the kernel are not in the set to begin with
                Err(_) if !caps::runtime::thread_all_supported().contains(&c) => {}
                Err(e) => return Err(caps_err(&format!("drop {c} from the bounding set"), e)),
            }
        }
    }
    let user = p.user();
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("prctl PR_SET_KEEPCAPS", e))?;
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // In a user namespace whose setgroups is denied, setgroups fails; there is then nothing to
    // drop either.
    match nix::unistd::setgroups(&gids) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) if in_user_ns && gids.is_empty() => {}
        Err(e) => return Err(Error::sys("setgroups", e)),
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::sys(format!("setgid {gid}"), e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::sys(format!("setuid {uid}"), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("prctl PR_SET_KEEPCAPS", e))?;

    let effective = cap_set(caps.effective());
    let permitted = cap_set(caps.permitted());
    let inheritable = cap_set(caps.inheritable());
    let ambient = cap_set(caps.ambient());
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| caps_err("set inheritable", e))?;
    // Effective must stay within permitted at every step: grow effective within the current
    // permitted set, shrink permitted, then settle effective.
    caps::set(
        None,
        CapSet::Effective,
        &effective
            .intersection(&caps::read(None, CapSet::Permitted).unwrap_or_default())
            .cloned()
            .collect(),
    )
    .map_err(|e| caps_err("set effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| caps_err("set permitted", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| caps_err("set effective", e))?;
    if !ambient.is_empty() {
        caps::set(None, CapSet::Ambient, &ambient).map_err(|e| caps_err("set ambient", e))?;
    }
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| Error::sys("prctl PR_SET_NO_NEW_PRIVS", e))?;
        if let Some(f) = &prepared.seccomp {
            crate::seccomp::load(f)?;
            if let Some((agent, pid)) = agent {
                crate::seccomp::send_to_agent(f, agent, pid)?;
            }
        }
    }
    // Nothing the runtime or its caller opened reaches the program, beyond stdio and the
    // descriptors the caller asked to pass (LISTEN_FDS style). CVE-2024-21626 was a leaked
    // directory descriptor of the host.
    berth_sys::cloexec_from(3).map_err(|e| Error::sys("close descriptors", e))?;
    for fd in keep_fds {
        let _ = berth_sys::clear_cloexec(*fd);
    }
    Ok(())
}

/// The descriptors a caller passes with `--preserve-fds N`: those among 3..3+N that are open
/// without close-on-exec when the runtime starts. Everything the runtime itself opens is
/// close-on-exec, so a large N can never pass one of the runtime's own descriptors (its exec
/// fifo, its sockets) into the container.
pub fn inherited_fds(n: i32) -> Vec<i32> {
    (3..3i32.saturating_add(n.max(0)))
        .filter(|fd| {
            nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_GETFD)
                .map(|f| f & libc::FD_CLOEXEC == 0)
                .unwrap_or(false)
        })
        .collect()
}

/// The init runs the runtime's own code, in a copy of the runtime's address space, from the
/// moment it sets its rlimits until it execs the user's program: an RLIMIT_AS below that size
/// makes its next allocation fail and the init die with a bare signal. Refuse it up front and
/// say which limit.
pub fn check_rlimits_leave_room(p: Option<&Process>) -> Result<()> {
    let Some(limits) = p.and_then(|p| p.rlimits().as_ref()) else {
        return Ok(());
    };
    let Some(r) = limits.iter().find(|r| r.typ() == PosixRlimitType::RlimitAs) else {
        return Ok(());
    };
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("read", "/proc/self/status", e))?;
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let needed = vm_kib.saturating_mul(1024);
    if r.soft() < needed {
        return Err(Error::InvalidSpec(format!(
            "rlimit RLIMIT_AS: soft limit {} bytes is below the {needed} bytes of address space the container's init needs until it executes the program: the container could not start; raise it",
            r.soft()
        )));
    }
    Ok(())
}

/// Make `fds` the process's stdin, stdout and stderr. Each is first copied above 2, so that a
/// descriptor that already is 0, 1 or 2 cannot be overwritten before it is used; dup2 leaves
/// the new 0-2 without close-on-exec, and the copies are close-on-exec.
pub fn install_stdio(fds: &[std::os::fd::OwnedFd; 3]) -> Result<()> {
    use std::os::fd::AsRawFd;
    let mut high = Vec::with_capacity(3);
    for fd in fds {
        let h = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .map_err(|e| Error::sys(format!("duplicate stdio descriptor {}", fd.as_raw_fd()), e))?;
        high.push(h);
    }
    for (target, h) in high.iter().enumerate() {
        nix::unistd::dup2(*h, target as i32)
            .map_err(|e| Error::sys(format!("make descriptor {h} the process's fd {target}"), e))?;
    }
    for h in high {
        let _ = nix::unistd::close(h);
    }
    Ok(())
}

/// Change to the process's working directory (inside the container), creating nothing.
pub fn chdir(p: &Process) -> Result<()> {
    let cwd = p.cwd();
    if !cwd.is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "process.cwd {cwd:?} must be an absolute path"
        )));
    }
    nix::unistd::chdir(cwd).map_err(|e| Error::sys(format!("chdir to cwd {}", cwd.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup() {
        assert_eq!(
            find_executable("sh", "/nonexistent:/bin", Path::new("/")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let e = find_executable("no-such-program-xyz", "/bin", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("executable file not found"), "{e}");
        assert!(find_executable("/etc", "", Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("is a directory"));
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(
            find_executable(f.path().to_str().unwrap(), "", Path::new("/"))
                .unwrap_err()
                .to_string()
                .contains("permission denied")
        );
    }
}
