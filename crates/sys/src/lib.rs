//! Raw Linux system calls that nix lacks (or wraps in a way berth cannot use), each in a safe
//! function that states what it guarantees. This is the one crate of berth where `unsafe`
//! lives for process creation and file resolution; everything else calls these wrappers.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// The result of [`clone_fork`], as `fork(2)` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the new process.
    Child,
    /// In the caller; the new process's pid (as seen from the caller's pid namespace).
    Parent(i32),
}

/// `fork(2)` that also creates the namespaces in `flags` (`CLONE_NEW*`) for the child, in one
/// system call, so that a container's first process is born inside its namespaces (pid 1 of a
/// new pid namespace) without an intermediate process.
///
/// nix's `clone` needs a separate stack and a callback; this uses the kernel's fork-like form of
/// `clone` (no new stack: the child continues on a copy of the caller's), which is what glibc's
/// `fork` does.
///
/// The caller must be single-threaded (as with `fork`): the child gets a copy of only the calling
/// thread, so a lock held by another thread would never be released. The runtime's commands run
/// before any thread is started, which is why this is sound there; the function checks it and
/// refuses otherwise.
pub fn clone_fork(flags: i32) -> io::Result<Forked> {
    require_single_thread()?;
    let flags = (flags as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: SYS_clone with a null stack behaves like fork(2): the child continues on a copy of
    // the parent's address space. The process is single-threaded (checked above), so no lock
    // held by another thread is copied in a locked state. Pointer arguments are null, which is
    // valid when CLONE_PARENT_SETTID/CHILD_SETTID/SETTLS are not in `flags`; callers pass only
    // CLONE_NEW* flags, which the mask below enforces.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags & NAMESPACE_FLAGS_AND_SIGNAL,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Like [`clone_fork`], with clone3(2)'s CLONE_INTO_CGROUP: the child is born in the cgroup
/// (v2) that `cgroup_dir` refers to. Moving a process into a cgroup afterwards takes the
/// kernel's cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period (about
/// 10 ms); being born there only takes it for reading. Needs Linux 5.7; the caller falls back
/// to [`clone_fork`] and a move when this fails with ENOSYS or EINVAL.
pub fn clone_fork_into_cgroup(flags: i32, cgroup_dir: BorrowedFd<'_>) -> io::Result<Forked> {
    require_single_thread()?;
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags: ((flags as u64) & (NAMESPACE_FLAGS_AND_SIGNAL & !0xff)) | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup_dir.as_raw_fd() as u64,
    };
    // SAFETY: as for clone_fork: a null stack gives fork semantics on a single-threaded
    // process (checked above); `args` is a valid clone_args of the size passed, and no flag
    // that writes through a pointer (PIDFD, *_SETTID, SETTLS) is set.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

// CLONE_PARENT is allowed too: an intermediate process that entered the container's pid or
// time namespace makes the container's process a child of the runtime's caller with it (as
// runc's nsexec does), so the caller can wait for it. It writes through no pointer.
const NAMESPACE_FLAGS_AND_SIGNAL: libc::c_ulong = (libc::CLONE_PARENT
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as libc::c_ulong
    | 0xff;

/// Give the calling process the signal state a freshly started program expects: every signal
/// at its default disposition and none blocked. For a child between fork and exec: execve keeps
/// the signal mask and ignored signals (Rust's runtime ignores SIGPIPE; a caller that waits
/// with a signalfd blocks SIGCHLD; cargo starts programs with 32 and 33 ignored), and a handler
/// of the caller's would run the caller's code in the child until the exec.
///
/// Through the raw rt_sigaction system call: the C library's sigaction refuses the two
/// signals it reserves for itself (32, 33). Those are reset only when ignored (exec resets
/// a handler anyway, and the C library may rely on its own until then).
pub fn reset_signal_state() -> io::Result<()> {
    // The kernel's struct sigaction (x86_64, aarch64 and the generic layout).
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::c_ulong,
        flags: libc::c_ulong,
        restorer: libc::c_ulong,
        mask: u64,
    }
    const SIG_DFL: libc::c_ulong = 0;
    const SIG_IGN: libc::c_ulong = 1;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a null new action only reads the current one into `old`, a valid struct of
        // the kernel's layout that outlives the call; the size is the kernel's sigset size.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                8usize,
            )
        };
        if ret != 0 || old.handler == SIG_DFL {
            continue;
        }
        if (sig == 32 || sig == 33) && old.handler != SIG_IGN {
            continue;
        }
        let dfl = KernelSigaction {
            handler: SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: installs the default disposition (no code of ours runs for it, so no
        // restorer is needed); `dfl` is valid for the call, the old action is not asked for.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(io::Error::from)
}

/// Sets SIGCHLD's disposition, flags cleared: ignored (the kernel reaps the children as
/// they exit, so none waits as a zombie for a parent that does not wait) or the default.
pub fn set_sigchld_ignored(ignored: bool) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let h = if ignored {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: SIG_IGN and SIG_DFL run no code of ours, in no thread.
    unsafe {
        sigaction(
            Signal::SIGCHLD,
            &SigAction::new(h, SaFlags::empty(), SigSet::empty()),
        )
    }
    .map(|_| ())
    .map_err(io::Error::from)
}

/// Run `f` with SIGPIPE ignored, then put back the disposition there was. For a write into a
/// pipe whose reader may be gone (a hook that does not read its input) from a process whose
/// SIGPIPE is at its default, such as a container's init, which must not die of it. In a Rust
/// program SIGPIPE is ignored already, so nothing changes for other threads.
pub fn with_sigpipe_ignored<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code of ours in a signal handler.
    let old = unsafe { sigaction(Signal::SIGPIPE, &ign) };
    let out = f();
    if let Ok(old) = old {
        // SAFETY: puts back the disposition sigaction returned above, as it was.
        let _ = unsafe { sigaction(Signal::SIGPIPE, &old) };
    }
    out
}

/// End the calling process now, with `_exit(2)`: no exit handlers, no flush of stdio buffers,
/// no destructors. For a child forked from a caller that keeps running: `std::process::exit`
/// would write out the caller's buffered output a second time, from the child.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit only ends the process; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Refuse to fork from a process with more than one thread: the child would hold a copy of
/// every lock another thread held at that moment (the allocator's included), never released.
/// A multithreaded program (the daemon) leaves forking to a single-threaded helper (the shim).
pub fn require_single_thread() -> io::Result<()> {
    let n = thread_count()?;
    if n != 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "refusing to fork the container's process from a process with {n} threads: \
                 create, run and exec must be called from a single-threaded process (such as \
                 berth shim or berth runtime); a multithreaded caller may only kill, delete, \
                 pause, resume, update, list and read state"
            ),
        ));
    }
    Ok(())
}

/// Number of threads of the calling process, from /proc/self/stat (field 20).
fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may contain spaces and parentheses; fields after it start
    // after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/self/stat"))?;
    rest.split_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/self/stat"))
}

/// `RESOLVE_*` flags of openat2(2).
pub mod resolve {
    pub const NO_XDEV: u64 = 0x01;
    pub const NO_MAGICLINKS: u64 = 0x02;
    pub const NO_SYMLINKS: u64 = 0x04;
    pub const BENEATH: u64 = 0x08;
    pub const IN_ROOT: u64 = 0x10;
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): open `path` relative to `dir` with `resolve` restrictions. With
/// [`resolve::IN_ROOT`], every `..` and absolute symlink stays inside `dir`, which is how berth
/// makes sure that a symlink in an image never sends a mount or a write to the host.
/// nix 0.29 has no openat2. The returned descriptor is owned by the caller.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: `c` is a valid NUL-terminated string and `how` a properly laid out open_how
        // that outlive the call; the size passed is the struct's size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let err = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced with RESOLVE_IN_ROOT's checks; retry.
        if err.raw_os_error() != Some(libc::EAGAIN) && err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Mark every descriptor from `first` up as close-on-exec (close_range(2) with
/// CLOSE_RANGE_CLOEXEC), so that nothing the runtime or its caller opened reaches the
/// container's process (CVE-2024-21626 leaked such a descriptor). Falls back to walking
/// /proc/self/fd on kernels before 5.11.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags; it touches no
    // memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number only changes its flags; a number that was the
        // read_dir's own (now closed) descriptor fails harmlessly with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Clear close-on-exec on one descriptor (for the `--preserve-fds` the caller asked to pass).
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD only changes the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive one message from a socket into `buf`, with the descriptors it carries (SCM_RIGHTS,
/// received close-on-exec). Returns the message's length (0 at end of file) and the
/// descriptors, owned.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 64]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in our table for us; nothing
            // else refers to them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other("too many descriptors in one message"));
    }
    Ok((msg.bytes, fds))
}

/// pidfd_open(2): a descriptor that refers to one process for good, so that a signal or a wait
/// can never hit a recycled pid.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed (the kernel fills in SI_USER); no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null_mut::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Join a new session keyring with this name, so containers do not share the caller's keys
/// (keyctl(2) KEYCTL_JOIN_SESSION_KEYRING; nix has no keyctl).
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "keyring name has a NUL"))?;
    // SAFETY: `c` is a valid C string that outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// setdomainname(2) (nix has sethostname only).
pub fn set_domainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make `fd` the controlling terminal of the calling process (ioctl TIOCSCTTY), after setsid.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal); no memory is passed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open a new pseudo-terminal pair through `ptmx` (the container's /dev/ptmx, so the pair lives
/// in the container's devpts). Returns (master, slave path).
pub fn open_pty(ptmx: &Path) -> io::Result<(OwnedFd, String)> {
    let c = cstring(ptmx)?;
    // SAFETY: a valid C string; the returned descriptor is checked and owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSPTLCK, &mut unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int through the pointer, valid for the call.
    if unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let dir = ptmx
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    // /dev/ptmx is a symlink to pts/ptmx; the slave lives beside pts/ptmx.
    let pts_dir = if dir.ends_with("/pts") {
        dir
    } else {
        format!("{dir}/pts")
    };
    Ok((master, format!("{pts_dir}/{n}")))
}

/// Set the window size of a terminal.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize through the pointer, valid for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ioprio_set(2) for the calling process (nix has none).
pub fn set_io_priority(class: i32, level: i32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let value = (class << 13) | level;
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// execve(2) that returns only on failure. Arguments are prepared by the caller so that the
/// moment between the last security step (seccomp) and exec does no allocation.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: all pointers point into CStrings that outlive the call and both arrays are
    // NULL-terminated.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// True when the running executable is a sealed memfd (see [`reexec_from_sealed_copy`]).
pub fn running_from_sealed_copy() -> bool {
    match std::fs::File::open("/proc/self/exe") {
        Ok(f) => {
            // SAFETY: F_GET_SEALS on a valid descriptor returns an integer; no memory passed.
            let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
            seals > 0 && seals & libc::F_SEAL_WRITE != 0
        }
        Err(_) => false,
    }
}

/// Re-execute the current program from a sealed, read-only in-memory copy of itself.
///
/// Why: a process inside a container can reach the runtime's executable through
/// /proc/<pid>/exe while the runtime joins it, and — if that file is writable — overwrite the
/// host's binary (CVE-2019-5736). After this call, /proc/self/exe is a memfd sealed against
/// writes, so there is nothing on the host to overwrite. The copy is done in the kernel
/// (sendfile), and the re-exec happens only when the binary's own file is writable: an
/// installation on a read-only mount skips it.
///
/// Returns only on failure.
pub fn reexec_from_sealed_copy() -> io::Error {
    match reexec_inner() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn reexec_inner() -> io::Result<Never> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let exe = std::fs::File::open("/proc/self/exe")?;
    let size = exe.metadata()?.len() as usize;
    let mfd = memfd_create(
        c"berth-runtime",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(io::Error::from)?;
    let mut off: i64 = 0;
    while (off as usize) < size {
        let left = size - off as usize;
        let n = nix::sys::sendfile::sendfile64(&mfd, &exe, Some(&mut off), left)
            .map_err(io::Error::from)?;
        if n == 0 {
            break;
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on our own memfd takes an integer; no memory is passed.
    if unsafe { libc::fcntl(mfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let args = current_args();
    let env = current_env();
    nix::unistd::fexecve(mfd.as_raw_fd(), &args, &env).map_err(io::Error::from)?;
    Err(io::Error::other("fexecve returned"))
}

/// Re-execute the current program through a read-only bind mount of its own file, made in a
/// new mount namespace of this process that receives the host's mount events but sends none
/// back (MS_SLAVE). Afterwards /proc/self/exe is on a read-only mount, so writing through it
/// fails with EROFS (CVE-2019-5736), at the cost of one exec instead of copying the binary.
///
/// Not for callers whose children need mounts to propagate back to the host (shared
/// propagation): their namespace would be a slave. Returns only on failure; on failure the
/// caller may still be in the new mount namespace, which is harmless.
pub fn reexec_from_readonly_bind() -> io::Error {
    match readonly_bind_inner() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn readonly_bind_inner() -> io::Result<Never> {
    use nix::mount::{mount, MsFlags};
    let exe = std::fs::read_link("/proc/self/exe")?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Err(io::Error::other("the running binary was replaced on disk"));
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(io::Error::from)?;
    mount(
        Some(&exe),
        &exe,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)?;
    mount(
        None::<&str>,
        &exe,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(io::Error::from)?;
    let path = cstring(&exe)?;
    let args = current_args();
    let env = current_env();
    nix::unistd::execve(&path, &args, &env).map_err(io::Error::from)?;
    Err(io::Error::other("execve returned"))
}

fn current_args() -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect()
}

fn current_env() -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect()
}

/// MOUNT_ATTR_* values of mount_setattr(2).
pub mod mount_attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x20_0000;
}

/// mount_setattr(2) with AT_RECURSIVE on the mount `target` refers to: the recursive mount
/// options (`rro`, `rnosuid`, ...) that mount(2) cannot express. nix 0.29 has no wrapper.
pub fn mount_setattr_recursive(target: BorrowedFd<'_>, set: u64, clear: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    // SAFETY: the path is a valid empty C string, `attr` a properly laid out mount_attr of the
    // size passed; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            target.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `dst` a read-only bind mount of the file `src`, in the caller's mount namespace.
/// A daemon points its shims at `dst`: their /proc/self/exe is then on a read-only mount, so
/// a container process that reaches it cannot rewrite the host's binary (CVE-2019-5736), and
/// no shim needs a mount namespace and a second exec of its own to get there. An older bind
/// at `dst` (a previous daemon's, maybe of an older binary) is detached first; shims started
/// from it keep theirs.
pub fn readonly_bind_file(src: &Path, dst: &Path) -> io::Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use std::os::unix::fs::OpenOptionsExt;
    // Every earlier bind stacked here, until only the plain file is left.
    while umount2(dst, MntFlags::MNT_DETACH).is_ok() {}
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o700)
        .open(dst)?;
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io::Error::from)?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Err(e) = mount(None::<&str>, dst, None::<&str>, ro, None::<&str>) {
        let _ = umount2(dst, MntFlags::MNT_DETACH);
        return Err(e.into());
    }
    Ok(())
}

/// Rewrites this process's command line as `ps` and /proc/<pid>/cmdline show it: the kernel
/// reads it from the argument area at the top of the stack, so the words are written there,
/// through /proc/self/mem, NUL-separated and cut to the area's size, the rest zeroed; the
/// name (`comm`) becomes the first word. Used by the container's init (`--init`), a fork of
/// the shim, which would otherwise show the shim's own host command line to the container.
/// Changing the area's bounds instead (PR_SET_MM) needs CAP_SYS_RESOURCE.
pub fn set_cmdline(words: &[&[u8]]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // after ')' the first field is field 3; arg_start and arg_end are fields 48 and 49
    let num = |i: usize| -> io::Result<u64> {
        fields
            .get(i - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
    };
    let (start, end) = (num(48)?, num(49)?);
    let len = end.saturating_sub(start) as usize;
    if len == 0 {
        return Ok(());
    }
    let mut buf = Vec::with_capacity(len);
    for w in words {
        buf.extend_from_slice(w);
        buf.push(0);
    }
    buf.resize(len, 0);
    // the last byte stays a NUL, so the kernel reads the area as plain arguments
    buf[len - 1] = 0;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?
        .write_all_at(&buf, start)?;
    if let Some(first) = words.first() {
        let name = first.rsplit(|b| *b == b'/').next().unwrap_or(first);
        let name: Vec<u8> = name.iter().copied().take(15).filter(|b| *b != 0).collect();
        if let Ok(c) = CString::new(name) {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from the
            // pointer, which `c` provides for the duration of the call.
            unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
        }
    }
    Ok(())
}

/// Brings the loopback interface of the caller's network namespace up (SIOCSIFFLAGS on an
/// AF_INET socket: two ioctls, no netlink conversation for one flag).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes integers and returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which lives
    // across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union's flags member was just written by the kernel.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads `req`, which lives across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The id of the mount `path` is on (statx STATX_MNT_ID, Linux 5.8), without following a
/// final symlink. Compared along a path's ancestors it finds a mount point without reading
/// /proc/self/mountinfo, whose size grows with every container's mount.
pub fn mount_id(path: &Path) -> io::Result<u64> {
    let c = cstring(path)?;
    // SAFETY: statx is plain data; all zeroes is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statx, both alive across the
    // call.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "statx gives no mount id",
        ));
    }
    Ok(st.stx_mnt_id)
}

/// Caps glibc's malloc arenas for this process. A daemon whose requests run on a pool of
/// up to hundreds of blocking threads otherwise gets one arena per thread up to 8 per core,
/// each keeping its own free memory: its RSS then climbs for as long as new threads keep
/// landing requests on arenas that have not yet reached their working size.
pub fn limit_malloc_arenas(n: i32) {
    // SAFETY: mallopt takes two integers and changes only the allocator's tuning; called
    // before the daemon's threads start.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
}

/// Puts the calling thread (Linux's per-thread semantics of pid 0) under SCHED_IDLE: it
/// runs only on a CPU that nothing else wants, and any other task woken onto that CPU
/// preempts it at once. For work nobody waits for, done beside container starts on a small
/// machine: the daemon's background workers (the trash, the network namespace pool), and
/// the shim once its container has exited (what it still does, closing and the runtime's
/// clean-up, is waited for by nobody, while the daemon thread its exit report wakes is on
/// the path of a `run` that is ending). Under a full load such work still advances, at a
/// small share. Best effort: where the class is refused, the thread's nice value goes to 19.
pub fn sched_idle_self() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the one sched_param passed by reference and changes
    // only the scheduling class of the calling thread (pid 0); gettid has no arguments and
    // cannot fail; setpriority with PRIO_PROCESS and a thread ID changes only that
    // thread's nice value.
    unsafe {
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
        }
    }
}

/// Whether the file at `path` is on a mount that is not read-only.
pub fn path_is_writable_mount(path: &Path) -> bool {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => !s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        Err(_) => true,
    }
}

/// Whether the running executable's file can be written by root (its mount is not read-only).
pub fn executable_is_writable() -> bool {
    match nix::sys::statvfs::statvfs("/proc/self/exe") {
        Ok(s) => !s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        Err(_) => true,
    }
}

/// The process's start time (field 22 of /proc/<pid>/stat), used with the pid to tell a
/// container's process from a later process that reused its pid.
pub fn process_start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // after ')' the first field is the state (field 3); starttime is field 22
    fields
        .get(19)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

/// The state letter of a process (R, S, D, Z, T, ...), or None when it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().next()?.chars().next()
}

/// Gives the heap memory that is free back to the kernel (glibc's `malloc_trim`), so that a
/// long-lived, mostly idle process (the shim) does not keep what its start-up allocated and
/// freed. A no-op where the C library has no such call.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks and only returns free pages; it
    // touches no memory the caller holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Installs a seccomp filter given as a raw BPF program (`struct sock_filter` records, as
/// libseccomp's `seccomp_export_bpf` writes them) on the calling thread, with no flags. The
/// kernel requires no_new_privs or CAP_SYS_ADMIN, as for any filter.
pub fn seccomp_set_filter(prog: &[u8]) -> io::Result<()> {
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    let rec = std::mem::size_of::<libc::sock_filter>();
    if prog.is_empty() || !prog.len().is_multiple_of(rec) || prog.len() / rec > u16::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a seccomp program of {} bytes is not a whole number of {rec}-byte records",
                prog.len()
            ),
        ));
    }
    // Copied into properly aligned records: the byte buffer has no alignment guarantee.
    let filters: Vec<libc::sock_filter> = prog
        .chunks_exact(rec)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `filters`, a live, properly aligned array of `len` records,
    // for the duration of the call; the kernel copies the program and keeps no pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_is_read() {
        // the test harness runs tests on threads, so there is at least one
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let pid = std::process::id() as i32;
        let a = process_start_time(pid).unwrap();
        let b = process_start_time(pid).unwrap();
        assert_eq!(a, b);
        assert!(process_state(pid).is_some());
        assert!(process_state(i32::MAX).is_none());
    }

    #[test]
    fn openat2_in_root_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/marker"), b"in").unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        use std::os::fd::AsFd;
        let fd = openat2(
            root.as_fd(),
            Path::new("escape/marker"),
            libc::O_RDONLY,
            0,
            resolve::IN_ROOT,
        )
        .unwrap();
        let got = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(got, "in");
        let err = openat2(
            root.as_fd(),
            Path::new("../../../../etc/hostname"),
            libc::O_RDONLY,
            0,
            resolve::BENEATH,
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
    }
}
