//! Seccomp: the spec's filter compiled with libseccomp (the library runc, crun and youki use;
//! it knows every architecture's syscall table and generates the BPF).

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::error::{Error, Result};

fn action(a: LinuxSeccompAction, errno: Option<u32>, default_errno: Option<u32>) -> ScmpAction {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    }
}

fn arch(a: &Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

fn op(o: LinuxSeccompOperator) -> Option<ScmpCompareOp> {
    Some(match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => return None,
    })
}

/// Build the filter for `s`. Nothing is loaded yet: [`load`] does that at the last moment.
pub fn compile(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let err = |what: String, e: libseccomp::error::SeccompError| {
        Error::Init(format!("seccomp: {what}: {e}"))
    };
    let default_errno = s.default_errno_ret();
    let default = action(s.default_action(), default_errno, None);
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("new filter".into(), e))?;
    for a in s.architectures().iter().flatten() {
        let a = arch(a);
        match ctx.add_arch(a) {
            Ok(_) => {}
            Err(e) => return Err(err(format!("add architecture {a:?}"), e)),
        }
    }
    // The kernel refuses to install a filter without NNP or CAP_SYS_ADMIN; berth decides the
    // order itself, so libseccomp must not set no_new_privs on its own.
    ctx.set_ctl_nnp(false)
        .map_err(|e| err("disable automatic no_new_privs".into(), e))?;
    // A binary tree of syscall numbers instead of a list: Docker's profile allows ~350
    // syscalls, and the kernel runs the filter for every syscall number when it is loaded
    // (to build its per-syscall cache) and at every syscall the cache does not decide. The
    // list cost ~1 ms in the seccomp() of every start.
    ctx.set_ctl_optimize(2)
        .map_err(|e| err("binary tree optimization".into(), e))?;
    for f in s.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        }
        .map_err(|e| err(format!("flag {f:?}"), e))?;
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret(), default_errno);
        if act == default {
            // libseccomp refuses a rule equal to the default action; it would change nothing.
            continue;
        }
        let mut conds = Vec::new();
        for a in rule.args().iter().flatten() {
            let c = match op(a.op()) {
                Some(o) => ScmpArgCompare::new(a.index() as u32, o, a.value()),
                None => ScmpArgCompare::new(
                    a.index() as u32,
                    ScmpCompareOp::MaskedEqual(a.value()),
                    a.value_two().unwrap_or(0),
                ),
            };
            conds.push(c);
        }
        for name in rule.names() {
            let sc = match ScmpSyscall::from_name(name) {
                Ok(sc) => sc,
                // A profile written for a newer kernel names syscalls this libseccomp does not
                // know; like runc, skip them rather than refuse the container.
                Err(_) => {
                    tracing::debug!(syscall = %name, "unknown syscall in seccomp profile, skipped");
                    continue;
                }
            };
            let res = if conds.is_empty() {
                ctx.add_rule(act, sc)
            } else {
                // Conditions on the same argument in one rule are an OR in the spec (Docker's
                // profile relies on it for clone flags); libseccomp would AND them, so they
                // become separate rules.
                let idx: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
                let same_arg = idx.iter().enumerate().any(|(i, x)| idx[..i].contains(x));
                if same_arg {
                    let mut r = Ok(&mut ctx);
                    for c in &conds {
                        r = ctx.add_rule_conditional(act, sc, std::slice::from_ref(c));
                        if r.is_err() {
                            break;
                        }
                    }
                    r.map(|_| ())
                        .map_err(|e| err(format!("rule for {name}"), e))?;
                    continue;
                }
                ctx.add_rule_conditional(act, sc, &conds)
            };
            res.map_err(|e| err(format!("rule for {name}"), e))?;
        }
    }
    Ok(ctx)
}

/// Where the notification descriptor of a filter with SCMP_ACT_NOTIFY goes: the seccomp agent
/// listening at `listenerPath` (connected by the runtime on the host, before the container's
/// root was switched), and what it is told (runc's ContainerProcessState message).
pub struct NotifyAgent {
    pub sock: std::os::unix::net::UnixStream,
    pub metadata: String,
    pub state: crate::container::OciState,
}

/// Send the filter's notification descriptor to the agent.
pub fn send_to_agent(f: &Filter, agent: &NotifyAgent, pid: i32) -> Result<()> {
    use std::os::fd::AsRawFd;
    let Filter::Context(ctx) = f else {
        return Err(Error::Init(
            "seccomp: a listener needs the filter compiled in the container process".into(),
        ));
    };
    let fd = ctx
        .get_notify_fd()
        .map_err(|e| Error::Init(format!("seccomp: notification descriptor: {e}")))?;
    let mut state = agent.state.clone();
    state.pid = pid;
    let msg = serde_json::json!({
        "ociVersion": crate::container::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": agent.metadata,
        "state": state,
    });
    let data = msg.to_string();
    let iov = [std::io::IoSlice::new(data.as_bytes())];
    let fds = [fd];
    nix::sys::socket::sendmsg::<()>(
        agent.sock.as_raw_fd(),
        &iov,
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        // an error, not a SIGPIPE, when the agent is gone: the init runs with it at default
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::sys("send the seccomp descriptor to the agent", e))?;
    Ok(())
}

/// A filter ready to install: libseccomp's context, or a BPF program compiled earlier.
pub enum Filter {
    Context(ScmpFilterContext),
    Bpf(Vec<u8>),
}

/// Install the filter on the calling thread.
pub fn load(f: &Filter) -> Result<()> {
    match f {
        Filter::Context(ctx) => ctx
            .load()
            .map_err(|e| Error::Init(format!("seccomp: load filter: {e}"))),
        Filter::Bpf(prog) => berth_sys::seccomp_set_filter(prog)
            .map_err(|e| Error::Init(format!("seccomp: load filter: {e}"))),
    }
}

/// The filter for `s`: the program compiled on the host before the fork, if it is `s`'s,
/// else compiled here.
pub fn filter_for(s: &LinuxSeccomp) -> Result<Filter> {
    if let Some(prog) = precompiled_for(s) {
        return Ok(Filter::Bpf(prog));
    }
    Ok(Filter::Context(compile(s)?))
}

// Compiling Docker's default profile with libseccomp takes tens of milliseconds, most of a
// container's start (bench/RESULTS.md). The program depends only on the profile, the
// architecture and libseccomp, so the runtime compiles it once on the host, keeps it in a
// cache file under its own root (root-only), and hands it to the forked child in memory.
static PRECOMPILED: std::sync::Mutex<Option<(String, Vec<u8>)>> = std::sync::Mutex::new(None);

fn precompiled_for(s: &LinuxSeccomp) -> Option<Vec<u8>> {
    let g = PRECOMPILED.lock().ok()?;
    let (json, prog) = g.as_ref()?;
    (serde_json::to_string(s).ok()? == *json).then(|| prog.clone())
}

/// Called on the host before forking a container process: makes the compiled program of `s`
/// available to the child (from `cache_dir`, or compiled and stored there). Profiles with a
/// notify listener or filter flags are left to libseccomp in the child. Best effort: on any
/// failure the child compiles as before.
pub fn precompile(s: &LinuxSeccomp, cache_dir: &std::path::Path) {
    use sha2::Digest;
    if s.listener_path().is_some() || s.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return;
    }
    let Ok(json) = serde_json::to_string(s) else {
        return;
    };
    if let Ok(g) = PRECOMPILED.lock() {
        if g.as_ref().is_some_and(|(j, _)| *j == json) {
            return;
        }
    }
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = sha2::Sha256::new();
    h.update(json.as_bytes());
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(v.as_bytes());
    // what compile() does with the profile (see set_ctl_optimize there)
    h.update(b"optimize=2");
    let key = hex::encode(h.finalize());
    let path = cache_dir.join(format!("{key}.bpf"));
    let prog = match std::fs::read(&path) {
        Ok(p) if !p.is_empty() && p.len().is_multiple_of(8) => p,
        _ => {
            let Ok(ctx) = compile(s) else { return };
            let _ = std::fs::create_dir_all(cache_dir);
            let tmp = cache_dir.join(format!(".{key}.{}", std::process::id()));
            let Ok(f) = std::fs::File::create(&tmp) else {
                return;
            };
            if ctx.export_bpf(&f).is_err() {
                let _ = std::fs::remove_file(&tmp);
                return;
            }
            drop(f);
            let Ok(p) = std::fs::read(&tmp) else { return };
            if p.is_empty() || !p.len().is_multiple_of(8) || std::fs::rename(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
                return;
            }
            p
        }
    };
    if let Ok(mut g) = PRECOMPILED.lock() {
        *g = Some((json, prog));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_profile_compiles() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        }"#;
        let s: LinuxSeccomp = serde_json::from_str(json).unwrap();
        let ctx = compile(&s).unwrap();
        let out = tempfile::tempfile().unwrap();
        ctx.export_bpf(&out).unwrap();
        assert!(out.metadata().unwrap().len() > 0);
    }

    #[test]
    fn notify_rules_compile() {
        let s: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
                "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        )
        .unwrap();
        assert!(compile(&s).is_ok());
    }
}
