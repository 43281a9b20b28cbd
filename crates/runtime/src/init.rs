//! The container's first process, from the moment clone returns in the child until it execs
//! the user's program. It runs single-threaded, in the namespaces it was born in, and talks to
//! the runtime only through its [`Channel`]. Any failure is sent to the runtime as text and
//! ends the process: nothing here may panic or return.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use berth_cgroups::ContainerMount;
use oci_spec::runtime::Spec;

use crate::channel::{Channel, Msg};
use crate::container::{OciState, Status};
use crate::error::{Error, Result};
use crate::namespaces::Plan;
use crate::rootfs;

pub struct InitArgs {
    pub id: String,
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub chan: Channel,
    pub plan: Plan,
    /// The exec fifo, opened read-write: init blocks reading it until `start` writes. None:
    /// the caller starts at once (`CreateOptions::start`), init goes on past Ready.
    pub fifo: Option<OwnedFd>,
    pub console: Option<std::os::unix::net::UnixStream>,
    pub cgroup_mount: ContainerMount,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Descriptors the caller passes on (`--preserve-fds`), found before anything was opened.
    pub keep_fds: Vec<i32>,
    /// `run` in the foreground without a console socket: the terminal is our own stdin.
    pub inherit_tty: bool,
    pub state_for_hooks: OciState,
    /// The seccomp agent (listenerPath), connected by the runtime on the host.
    pub seccomp_agent: Option<crate::seccomp::NotifyAgent>,
    /// Set once `start` released us: errors after it go to stderr.
    pub started: std::cell::Cell<bool>,
}

/// Never returns: either execs the user's program or exits with status 1 after reporting why.
pub fn run(args: InitArgs) -> ! {
    let err = match init(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // Before `start` the runtime reads this; after it (the runtime has returned) the only
    // witness is the container's stderr, as with runc.
    if args.chan.send(&Msg::Failed(err.to_string())).is_err() || args.started.get() {
        eprintln!("berth-runtime: error: {err}");
    }
    berth_sys::exit_child(1)
}

enum Never {}

fn expect(chan: &Channel, want: Msg) -> Result<()> {
    match chan.recv()? {
        Some(m) if m == want => Ok(()),
        Some(other) => Err(Error::Init(format!("unexpected message {other:?}"))),
        None => Err(Error::Init("the runtime went away during setup".into())),
    }
}

fn init(a: &InitArgs) -> Result<Never> {
    // While the runtime sets us up, a process of the container must not be able to open our
    // /proc/<pid>/exe or memory (CVE-2019-5736); exec resets this for the user's program.
    let _ = nix::sys::prctl::set_dumpable(false);
    // If the runtime dies before we are created, die too instead of waiting forever.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::sys("prctl PR_SET_PDEATHSIG", e))?;
    let host_pid = match a.chan.recv()? {
        Some(Msg::Go(pid)) => pid,
        Some(other) => return Err(Error::Init(format!("unexpected message {other:?}"))),
        None => return Err(Error::Init("the runtime went away during setup".into())),
    };

    // The state the init's own hooks (createContainer, startContainer) read: with our pid as
    // the runtime sees it, which the state made before the clone could not know.
    let mut hook_state = a.state_for_hooks.clone();
    hook_state.pid = host_pid;
    let spec = &a.spec;
    let plan = &a.plan;
    if plan.new_user {
        // The mappings are written; become root of the new namespace (if 0 is mapped).
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    for j in &plan.joins {
        crate::namespaces::enter(j.fd.as_fd(), j.typ, &j.path)?;
    }
    if !plan.unshare_flags.is_empty() {
        nix::sched::unshare(plan.unshare_flags)
            .map_err(|e| Error::sys("create the container's namespaces", e))?;
        // A network namespace of its own starts with loopback down; every engine brings it
        // up (Docker's --network none has 127.0.0.1), so a container's own lo is up here.
        if plan
            .unshare_flags
            .contains(nix::sched::CloneFlags::CLONE_NEWNET)
        {
            berth_sys::loopback_up().map_err(|e| Error::Init(format!("bring lo up: {e}")))?;
        }
    }
    // Once in the container's cgroup (which then becomes the root of our cgroup namespace):
    // called before the first cgroup mount, or after the rootfs is set up.
    let attached = std::cell::Cell::new(false);
    let enter_cgroup = || -> Result<()> {
        if attached.replace(true) {
            return Ok(());
        }
        // The runtime made the cgroup while we set up; it sends the v1 `tasks` files we move
        // ourselves through (no move by pid, see berth_cgroups::Entry).
        match a.chan.recv_with_fds()? {
            Some((Msg::Attached(paths), fds)) if paths.len() == fds.len() => {
                berth_cgroups::Entry::from_parts(paths, fds).enter_self()?
            }
            Some((other, _)) => return Err(Error::Init(format!("unexpected message {other:?}"))),
            None => return Err(Error::Init("the runtime went away during setup".into())),
        }
        if plan.new_cgroup {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::sys("unshare cgroup namespace", e))?;
        }
        Ok(())
    };
    if !a.no_new_keyring {
        // Best effort, as in runc: some kernels or user namespaces refuse keyrings.
        if let Err(e) = berth_sys::join_session_keyring(&format!("_ses.{}", a.id)) {
            tracing::debug!(error = %e, "no new session keyring");
        }
    }
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| Error::sys(format!("sethostname {h:?}"), e))?;
    }
    if let Some(d) = spec.domainname() {
        berth_sys::set_domainname(d).map_err(|e| Error::sys(format!("setdomainname {d:?}"), e))?;
    }

    let ctx = rootfs::RootfsContext {
        spec,
        rootfs: &a.rootfs,
        bundle: &a.bundle,
        cgroup_mount: &a.cgroup_mount,
        new_cgroup_ns: plan.new_cgroup,
        before_cgroup: &enter_cgroup,
        user_ns: plan
            .types
            .contains(&oci_spec::runtime::LinuxNamespaceType::User),
    };
    // Without a mount namespace of its own, the container shares the host's mounts: nothing
    // may be mounted (it would land on the host); its root is a plain chroot (as runc does).
    let own_mounts = plan
        .types
        .contains(&oci_spec::runtime::LinuxNamespaceType::Mount);
    if !own_mounts && spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        tracing::warn!("no mount namespace: the spec's mounts are not mounted");
    }
    let root_fd = if own_mounts {
        Some(rootfs::prepare(&ctx)?)
    } else {
        None
    };
    enter_cgroup()?;
    drop(root_fd);

    if let Some(h) = spec.hooks() {
        let runtime_hooks =
            h.prestart().iter().flatten().count() + h.create_runtime().iter().flatten().count();
        if runtime_hooks > 0 {
            a.chan.send(&Msg::RunRuntimeHooks)?;
            expect(&a.chan, Msg::HooksDone)?;
        }
        if let Some(hooks) = h.create_container() {
            crate::hooks::run(hooks, &hook_state)?;
        }
    }

    if own_mounts {
        rootfs::pivot(&a.rootfs, a.no_pivot)?;
    } else {
        nix::unistd::chroot(&a.rootfs).map_err(|e| Error::sys("chroot", e))?;
        nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))?;
    }
    // sysctls before the read-only paths: /proc/sys is one of them
    if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            crate::sysctl::write(k, v, plan)?;
        }
    }
    if own_mounts {
        rootfs::finalize(spec)?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("the spec has no process".into()))?;
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            Error::io(
                "write oom_score_adj (lowering it needs CAP_SYS_RESOURCE)",
                "/proc/self/oom_score_adj",
                e,
            )
        })?;
    }
    if process.apparmor_profile().is_some() {
        tracing::warn!("apparmorProfile is ignored: berth does not apply AppArmor profiles");
    }
    if process.selinux_label().is_some() {
        tracing::warn!("selinuxLabel is ignored: berth does not apply SELinux labels");
    }
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        crate::personality::apply(p)?;
    }
    crate::process::chdir(process)?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let prepared = crate::process::prepare(process, seccomp)?;
    crate::process::set_rlimits(process)?;
    if process.terminal().unwrap_or(false) {
        setup_terminal(a, process)?;
    }

    // Created: the runtime records us and returns; we wait for `start`.
    nix::sys::prctl::set_pdeathsig(None).map_err(|e| Error::sys("prctl PR_SET_PDEATHSIG", e))?;
    // Credentials, capabilities and seccomp now, so that their errors belong to `create`.
    crate::process::finish(
        process,
        &prepared,
        &a.keep_fds,
        plan.types
            .contains(&oci_spec::runtime::LinuxNamespaceType::User),
        a.seccomp_agent.as_ref().map(|ag| (ag, host_pid)),
    )?;
    if a.fifo.is_none() {
        // started at once: the runtime returns on Ready, so what fails from here on is
        // reported on stderr, as after a `start`
        a.started.set(true);
    }
    a.chan.send(&Msg::Ready)?;
    if let Some(fifo) = &a.fifo {
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(fifo.as_raw_fd(), &mut b) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for start", e)),
            }
        }
    }
    a.started.set(true);
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
    {
        let mut st = hook_state;
        st.status = Status::Running;
        crate::hooks::run_with_env(hooks, &st, Some(process.env().as_deref().unwrap_or(&[])))?;
    }
    let wants_init = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::reaper::INIT_ANNOTATION))
        .is_some_and(|v| v == "true");
    if wants_init {
        crate::reaper::split_off_command(prepared.argv())?;
    }
    Err(crate::process::exec(&prepared))
}

/// A new pseudo-terminal inside the container; the master goes to whoever listens on the
/// console socket (conmon, containerd's shim, ...), the slave becomes our stdio and
/// controlling terminal.
fn setup_terminal(a: &InitArgs, p: &oci_spec::runtime::Process) -> Result<()> {
    let Some(sock) = &a.console else {
        if a.inherit_tty {
            nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
            // fd 0 is our stdin, which `run` checked is a terminal.
            let stdin = std::io::stdin();
            let _ = berth_sys::set_controlling_terminal(stdin.as_fd());
            return Ok(());
        }
        return Err(Error::InvalidSpec(
            "process.terminal is true but no --console-socket was given".into(),
        ));
    };
    crate::tty::attach_new_pty(sock, p)
}
