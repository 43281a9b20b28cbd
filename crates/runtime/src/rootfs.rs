//! The container's root filesystem, set up by its init process in its own mount namespace:
//! the spec's mounts, /dev and its devices, pivot_root, then masked and read-only paths.
//!
//! Every mount target is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT) and mounted
//! through its /proc/self/fd path, so a symlink planted in an image (`/proc -> /host/etc`, say)
//! can never redirect a mount to the host.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_cgroups::ContainerMount;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::error::{Error, Result};

/// Mount flags, propagation and data parsed from an OCI mount's options.
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    /// Recursive attributes (`rro`, `rnosuid`, ...): set and cleared with mount_setattr
    /// (AT_RECURSIVE) on the whole tree, after the mount.
    pub rec_set: u64,
    pub rec_clear: u64,
}

/// Parse `options` as mount(8) does.
pub fn parse_options(options: &[String]) -> Result<MountOptions> {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        rec_set: 0,
        rec_clear: 0,
    };
    for opt in options {
        if let Some((set, clear)) = recursive_attr(opt) {
            o.rec_set = (o.rec_set & !clear) | set;
            o.rec_clear = (o.rec_clear & !set) | clear;
            continue;
        }
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "nosymfollow" => (MsFlags::from_bits_retain(256), MsFlags::empty()),
            "symfollow" => (MsFlags::empty(), MsFlags::from_bits_retain(256)),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation
                    .push(propagation_flag(opt).unwrap_or(MsFlags::MS_PRIVATE));
                continue;
            }
            // tmpcopyup copies the image's content into a tmpfs; berth mounts it empty (as
            // crun does without the option); not a security property.
            "tmpcopyup" | "notmpcopyup" => continue,
            "idmap" | "ridmap" => {
                return Err(Error::Unsupported(
                    format!("mount option {opt:?}"),
                    "id-mapped mounts are not implemented".into(),
                ))
            }
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    Ok(o)
}

/// mount_setattr(2) attributes of the recursive options: (set, clear).
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    use berth_sys::mount_attr as a;
    Some(match opt {
        "rro" => (a::RDONLY, 0),
        "rrw" => (0, a::RDONLY),
        "rnosuid" => (a::NOSUID, 0),
        "rsuid" => (0, a::NOSUID),
        "rnodev" => (a::NODEV, 0),
        "rdev" => (0, a::NODEV),
        "rnoexec" => (a::NOEXEC, 0),
        "rexec" => (0, a::NOEXEC),
        "rnodiratime" => (a::NODIRATIME, 0),
        "rdiratime" => (0, a::NODIRATIME),
        "rrelatime" => (a::RELATIME, a::ATIME_MASK),
        "rnorelatime" | "ratime" => (a::RELATIME, a::ATIME_MASK),
        "rnoatime" => (a::NOATIME, a::ATIME_MASK),
        "rstrictatime" => (a::STRICTATIME, a::ATIME_MASK),
        "rnostrictatime" => (a::RELATIME, a::ATIME_MASK),
        "rnosymfollow" => (a::NOSYMFOLLOW, 0),
        "rsymfollow" => (0, a::NOSYMFOLLOW),
        _ => return None,
    })
}

/// proc and sysfs must be mounted on a real directory: an image that makes /proc a symlink
/// (to somewhere it controls) would otherwise decide where the kernel's view lands, and what
/// the masked paths then fail to mask (CVE-2019-19921 class).
fn refuse_symlink(root: BorrowedFd<'_>, rel: &Path, m: &Mount, typ: &str) -> Result<()> {
    let fd = match berth_sys::openat2(root, rel, libc::O_PATH | libc::O_NOFOLLOW, 0, IN_ROOT) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::io("stat", rel, e.into()))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(Error::InvalidSpec(format!(
            "{typ} must be mounted on ordinary directory: {} is a symlink in the rootfs",
            m.destination().display()
        )));
    }
    Ok(())
}

/// `rootfsPropagation` and the propagation options of a mount.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// A path inside the container made relative, with `.` and `..` removed lexically (the kernel
/// resolves what is left inside the root).
fn relative(dest: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

const IN_ROOT: u64 = berth_sys::resolve::IN_ROOT | berth_sys::resolve::NO_MAGICLINKS;

/// Open `rel` inside `root` (O_PATH), never leaving it.
pub fn open_in_root(root: BorrowedFd<'_>, rel: &Path) -> std::io::Result<OwnedFd> {
    berth_sys::openat2(root, rel, libc::O_PATH, 0, IN_ROOT)
}

/// mkdir -p inside `root`; returns an O_PATH descriptor of the directory. A symlink on the
/// way (even a dangling one, as images have) is followed inside the root, and the directories
/// it points to are created there, never on the host.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd> {
    let open_dir = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        berth_sys::openat2(root, p, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT)
    };
    match open_dir(rel) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(Error::io("open in rootfs", rel, e)),
    }
    // Components still to walk, front first; `cur` is what has been made so far.
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        match open_dir(&next) {
            Ok(_) => {
                cur = next;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::io("open in rootfs", &next, e)),
        }
        let parent = open_dir(&cur).map_err(|e| Error::io("open in rootfs", &cur, e))?;
        if let Ok(target) = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name.as_os_str()) {
            // a dangling symlink: continue from where it points, inside the root
            links += 1;
            if links > 40 {
                return Err(Error::io(
                    "resolve in rootfs",
                    &next,
                    std::io::Error::from_raw_os_error(libc::ELOOP),
                ));
            }
            let target = PathBuf::from(target);
            let mut rest: Vec<std::ffi::OsString> = target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_os_string()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            while let Some(n) = rest.pop() {
                todo.push_front(n);
            }
            continue;
        }
        match nix::sys::stat::mkdirat(
            Some(parent.as_raw_fd()),
            name.as_os_str(),
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::io("mkdir in rootfs", &next, e.into())),
        }
        cur = next;
    }
    open_dir(&cur).map_err(|e| Error::io("open in rootfs", &cur, e))
}

/// Create an empty file (a bind-mount target) inside `root` unless something exists there.
pub fn create_file_in_root(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, rel) {
        return Ok(fd);
    }
    // A destination directly under the root ("/cfg.yml") has an empty parent, which openat2
    // refuses (ENOENT): the parent is the root itself.
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = rel
        .file_name()
        .ok_or_else(|| Error::InvalidSpec(format!("mount destination {rel:?} has no file name")))?;
    let pfd = mkdir_all_in_root(root, parent)?;
    // O_PATH descriptors cannot be used with openat(O_CREAT); reopen the directory for real.
    let dfd = berth_sys::openat2(root, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0, IN_ROOT)
        .map_err(|e| Error::io("open in rootfs", parent, e))?;
    drop(pfd);
    match nix::fcntl::openat(
        Some(dfd.as_raw_fd()),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(fd) => {
            let _ = nix::unistd::close(fd);
        }
        Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(Error::io("create in rootfs", rel, e.into())),
    }
    open_in_root(root, rel).map_err(|e| Error::io("open in rootfs", rel, e))
}

fn do_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &Path,
) -> Result<()> {
    mount(source, target, fstype, flags, data).map_err(|e| {
        Error::sys(
            format!(
                "mount {} on {}",
                source
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| fstype.unwrap_or("").to_string()),
                what.display()
            ),
            e,
        )
    })
}

/// Flags a bind remount must keep because the kernel locks them (nosuid, nodev, noexec, ...
/// of the source in a user namespace); reading them from the mount avoids EPERM.
fn locked_flags(target: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let mut f = MsFlags::empty();
    if let Ok(s) = nix::sys::statvfs::statvfs(target) {
        let fl = s.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if fl.contains(a) {
                f |= b;
            }
        }
    }
    f
}

/// Everything the rootfs setup needs to know.
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup_mount: &'a ContainerMount,
    pub new_cgroup_ns: bool,
    pub user_ns: bool,
    /// Called before the first cgroup mount: the process must be in its cgroup (and cgroup
    /// namespace) by then. Idempotent.
    pub before_cgroup: &'a dyn Fn() -> Result<()>,
}

/// Make the mount namespace private, bind the rootfs, and mount the spec's mounts inside it.
/// Runs in the container's new mount namespace, before pivot_root.
pub fn prepare(ctx: &RootfsContext<'_>) -> Result<OwnedFd> {
    let linux = ctx.spec.linux().as_ref();
    let propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .map(|p| {
            propagation_flag(p)
                .ok_or_else(|| Error::InvalidSpec(format!("rootfsPropagation {p:?} is unknown")))
        })
        .transpose()?
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // Stop mount events from flowing back to the host.
    do_mount(
        None,
        Path::new("/"),
        None,
        propagation | MsFlags::MS_REC,
        None,
        Path::new("/"),
    )?;
    // pivot_root refuses a new root whose parent mount is shared, and an unbindable parent
    // cannot be bound: make the mount that holds the rootfs private (in this namespace only).
    if let Some(mp) = mount_point_of(ctx.rootfs.parent().unwrap_or(Path::new("/"))) {
        do_mount(None, &mp, None, MsFlags::MS_PRIVATE, None, &mp)?;
    }
    // pivot_root needs the new root to be a mount point.
    do_mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        ctx.rootfs,
    )?;
    let root = berth_sys::openat2(
        nix_cwd_fd(),
        ctx.rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        0,
    )
    .map_err(|e| Error::io("open rootfs", ctx.rootfs, e))?;

    let mut dev_is_bind = false;
    let mut has_devpts = false;
    for m in ctx.spec.mounts().iter().flatten() {
        let dest = relative(m.destination());
        if dest == Path::new("dev") && m.typ().as_deref() == Some("bind") {
            dev_is_bind = true;
        }
        if dest == Path::new("dev/pts") {
            has_devpts = true;
        }
        if matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")) {
            (ctx.before_cgroup)()?;
        }
        mount_one(ctx, root.as_fd(), m)
            .map_err(|e| Error::Init(format!("mount {:?}: {e}", m.destination())))?;
    }
    if !dev_is_bind {
        create_devices(ctx, root.as_fd())?;
        dev_symlinks(root.as_fd(), has_devpts)?;
    }
    Ok(root)
}

fn nix_cwd_fd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a constant the kernel understands as "the current directory"; it is
    // never closed.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

fn mount_one(ctx: &RootfsContext<'_>, root: BorrowedFd<'_>, m: &Mount) -> Result<()> {
    let rel = relative(m.destination());
    if rel.as_os_str().is_empty() {
        return Err(Error::InvalidSpec(format!(
            "mount destination {:?} is the root itself",
            m.destination()
        )));
    }
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = typ == "bind" || opts.flags.contains(MsFlags::MS_BIND);
    let data = opts.data.join(",");
    let data_opt = if data.is_empty() {
        None
    } else {
        Some(data.as_str())
    };

    if is_bind {
        let src = m.source().as_ref().ok_or_else(|| {
            Error::InvalidSpec(format!("bind mount {:?} has no source", m.destination()))
        })?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            ctx.bundle.join(src)
        };
        let meta = fs::metadata(&src).map_err(|e| Error::io("stat bind source", &src, e))?;
        let target = if meta.is_dir() {
            mkdir_all_in_root(root, &rel)?
        } else {
            create_file_in_root(root, &rel)?
        };
        let tpath = fd_path(&target);
        do_mount(
            Some(&src),
            &tpath,
            None,
            MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
            None,
            m.destination(),
        )?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            // The bind is now the mount at the target; reopen to reach it, not what was under.
            let target =
                open_in_root(root, &rel).map_err(|e| Error::io("open in rootfs", &rel, e))?;
            let tpath = fd_path(&target);
            let keep = locked_flags(&tpath) & !opts.clear & !MsFlags::MS_RDONLY;
            do_mount(
                None,
                &tpath,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | keep,
                None,
                m.destination(),
            )?;
        }
        return apply_propagation(root, &rel, &opts, m);
    }

    if matches!(typ, "proc" | "sysfs") {
        refuse_symlink(root, &rel, m, typ)?;
    }
    let target = mkdir_all_in_root(root, &rel)?;
    let tpath = fd_path(&target);
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    match typ {
        "cgroup" | "cgroup2" => mount_cgroup(ctx, root, &rel, &opts, m)?,
        "sysfs" => {
            match mount(Some(&source), &tpath, Some("sysfs"), opts.flags, data_opt) {
                Ok(()) => {}
                // In a user namespace without its own network namespace the kernel refuses a
                // new sysfs; give the host's, read-only, as runc does.
                Err(nix::errno::Errno::EPERM) if ctx.user_ns => {
                    do_mount(
                        Some(Path::new("/sys")),
                        &tpath,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                        m.destination(),
                    )?;
                }
                Err(e) => {
                    return Err(Error::sys(
                        format!("mount sysfs on {:?}", m.destination()),
                        e,
                    ))
                }
            }
        }
        "mqueue" => match mount(Some(&source), &tpath, Some("mqueue"), opts.flags, data_opt) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) if ctx.user_ns => {
                do_mount(
                    Some(Path::new("/dev/mqueue")),
                    &tpath,
                    None,
                    MsFlags::MS_BIND,
                    None,
                    m.destination(),
                )?;
            }
            Err(e) => {
                return Err(Error::sys(
                    format!("mount mqueue on {:?}", m.destination()),
                    e,
                ))
            }
        },
        "proc" => {
            // the target must be a real directory, not something reached through a symlink
            do_mount(
                Some(&source),
                &tpath,
                Some("proc"),
                opts.flags,
                data_opt,
                m.destination(),
            )?;
        }
        _ => {
            do_mount(
                Some(&source),
                &tpath,
                if typ.is_empty() { None } else { Some(typ) },
                opts.flags,
                data_opt,
                m.destination(),
            )?;
        }
    }
    apply_propagation(root, &rel, &opts, m)
}

fn apply_propagation(
    root: BorrowedFd<'_>,
    rel: &Path,
    opts: &MountOptions,
    m: &Mount,
) -> Result<()> {
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        let target = open_in_root(root, rel).map_err(|e| Error::io("open in rootfs", rel, e))?;
        berth_sys::mount_setattr_recursive(target.as_fd(), opts.rec_set, opts.rec_clear).map_err(
            |e| {
                Error::sys(
                    format!(
                        "set recursive mount attributes on {}",
                        m.destination().display()
                    ),
                    e,
                )
            },
        )?;
    }
    if opts.propagation.is_empty() {
        return Ok(());
    }
    let target = open_in_root(root, rel).map_err(|e| Error::io("open in rootfs", rel, e))?;
    for p in &opts.propagation {
        do_mount(None, &fd_path(&target), None, *p, None, m.destination())?;
    }
    Ok(())
}

fn mount_cgroup(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    rel: &Path,
    opts: &MountOptions,
    m: &Mount,
) -> Result<()> {
    let target = mkdir_all_in_root(root, rel)?;
    let tpath = fd_path(&target);
    let flags = opts.flags & !MsFlags::MS_RDONLY;
    match ctx.cgroup_mount {
        ContainerMount::Cgroup2 => {
            match mount(
                Some("cgroup2"),
                &tpath,
                Some("cgroup2"),
                opts.flags,
                None::<&str>,
            ) {
                Ok(()) => {}
                // Without a cgroup namespace (or in a user namespace that does not own it) a
                // fresh cgroup2 mount may be refused: bind the host's hierarchy instead.
                Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EBUSY) => {
                    do_mount(
                        Some(Path::new("/sys/fs/cgroup")),
                        &tpath,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                        m.destination(),
                    )?;
                    if opts.flags.contains(MsFlags::MS_RDONLY) {
                        let t = open_in_root(root, rel)
                            .map_err(|e| Error::io("open in rootfs", rel, e))?;
                        do_mount(
                            None,
                            &fd_path(&t),
                            None,
                            MsFlags::MS_BIND
                                | MsFlags::MS_REMOUNT
                                | MsFlags::MS_RDONLY
                                | locked_flags(&fd_path(&t)),
                            None,
                            m.destination(),
                        )?;
                    }
                }
                Err(e) => {
                    return Err(Error::sys(
                        format!("mount cgroup2 on {:?}", m.destination()),
                        e,
                    ))
                }
            }
        }
        ContainerMount::V1(list) => {
            do_mount(
                Some(Path::new("tmpfs")),
                &tpath,
                Some("tmpfs"),
                flags,
                Some("mode=755"),
                m.destination(),
            )?;
            for v1 in list {
                let sub = rel.join(&v1.name);
                let d = mkdir_all_in_root(root, &sub)?;
                let dpath = fd_path(&d);
                if ctx.new_cgroup_ns {
                    do_mount(
                        Some(Path::new("cgroup")),
                        &dpath,
                        Some("cgroup"),
                        opts.flags,
                        Some(&v1.options),
                        &sub,
                    )?;
                } else {
                    do_mount(
                        Some(&v1.host_path),
                        &dpath,
                        None,
                        MsFlags::MS_BIND,
                        None,
                        &sub,
                    )?;
                    let d = open_in_root(root, &sub)
                        .map_err(|e| Error::io("open in rootfs", &sub, e))?;
                    let dp = fd_path(&d);
                    do_mount(
                        None,
                        &dp,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | opts.flags | locked_flags(&dp),
                        None,
                        &sub,
                    )?;
                }
            }
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                let t = open_in_root(root, rel).map_err(|e| Error::io("open in rootfs", rel, e))?;
                do_mount(
                    None,
                    &fd_path(&t),
                    None,
                    MsFlags::MS_REMOUNT | opts.flags,
                    Some("mode=755"),
                    m.destination(),
                )?;
            }
        }
    }
    Ok(())
}

/// The devices every container gets (runc's and Docker's list).
fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("dev/null", 1, 3),
        ("dev/zero", 1, 5),
        ("dev/full", 1, 7),
        ("dev/random", 1, 8),
        ("dev/urandom", 1, 9),
        ("dev/tty", 5, 0),
    ]
}

fn create_devices(ctx: &RootfsContext<'_>, root: BorrowedFd<'_>) -> Result<()> {
    let spec_devices: Vec<LinuxDevice> = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let old = nix::sys::stat::umask(Mode::empty());
    let res = (|| {
        for (path, major, minor) in default_devices() {
            if spec_devices
                .iter()
                .any(|d| relative(d.path()) == Path::new(path))
            {
                continue;
            }
            make_device(
                ctx,
                root,
                Path::new(path),
                SFlag::S_IFCHR,
                major,
                minor,
                0o666,
                Some(0),
                Some(0),
            )?;
        }
        for d in &spec_devices {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(Error::InvalidSpec(format!(
                        "device {:?} has type 'a', which only device rules may use",
                        d.path()
                    )))
                }
            };
            let rel = relative(d.path());
            if !rel.starts_with("dev") {
                return Err(Error::InvalidSpec(format!(
                    "device {:?} is outside /dev",
                    d.path()
                )));
            }
            make_device(
                ctx,
                root,
                &rel,
                kind,
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                d.uid(),
                d.gid(),
            )?;
        }
        Ok(())
    })();
    nix::sys::stat::umask(old);
    res
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    rel: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<()> {
    if ctx.user_ns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let host = Path::new("/").join(rel);
        let t = create_file_in_root(root, rel)?;
        return do_mount(Some(&host), &fd_path(&t), None, MsFlags::MS_BIND, None, rel);
    }
    // A destination directly under the root ("/cfg.yml") has an empty parent, which openat2
    // refuses (ENOENT): the parent is the root itself.
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = rel.file_name().unwrap_or(OsStr::new(""));
    let _p = mkdir_all_in_root(root, parent)?;
    let dir = berth_sys::openat2(root, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0, IN_ROOT)
        .map_err(|e| Error::io("open in rootfs", parent, e))?;
    // Replace whatever the image put there (a file, a symlink) with the real node.
    let _ = nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    nix::sys::stat::mknodat(
        Some(dir.as_raw_fd()),
        name,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major, minor),
    )
    .map_err(|e| Error::io("mknod", rel, e.into()))?;
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        name,
        uid.map(nix::unistd::Uid::from_raw),
        gid.map(nix::unistd::Gid::from_raw),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io("chown", rel, e.into()))?;
    Ok(())
}

fn dev_symlinks(root: BorrowedFd<'_>, has_devpts: bool) -> Result<()> {
    let dev = mkdir_all_in_root(root, Path::new("dev"))?;
    let dir = berth_sys::openat2(
        root,
        Path::new("dev"),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        IN_ROOT,
    )
    .map_err(|e| Error::io("open in rootfs", "dev", e))?;
    drop(dev);
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if has_devpts {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            "ptmx",
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::io("symlink", Path::new("/dev").join(name), e.into())),
        }
    }
    Ok(())
}

/// Switch the root to the prepared rootfs: pivot_root, then detach the old root, so nothing of
/// the host's tree stays reachable. With `no_pivot`, move the rootfs over / and chroot (for
/// rootfs on ramfs, where pivot_root is refused).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e))?;
    if no_pivot {
        do_mount(
            Some(rootfs),
            Path::new("/"),
            None,
            MsFlags::MS_MOVE,
            None,
            Path::new("/"),
        )?;
        nix::unistd::chroot(".").map_err(|e| Error::sys("chroot", e))?;
        nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))?;
        return Ok(());
    }
    // Pivot onto itself: the old root ends up stacked under the new one at ".", where it can
    // be detached without needing a directory for it inside the container.
    let old = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open /", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| Error::sys("pivot_root", e))?;
    nix::unistd::fchdir(old).map_err(|e| Error::sys("fchdir old root", e))?;
    // Make the old root a slave so the detach below does not propagate to the host.
    do_mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
        Path::new("old root"),
    )?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("detach old root", e))?;
    let _ = nix::unistd::close(old);
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))?;
    Ok(())
}

/// The mount point of the mount that contains `path`: its highest ancestor on the same
/// mount (statx mount ids), or from /proc/self/mountinfo where statx has no mount ids.
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let path = path.canonicalize().ok()?;
    if let Ok(id) = berth_sys::mount_id(&path) {
        let mut top = path.as_path();
        while let Some(parent) = top.parent() {
            match berth_sys::mount_id(parent) {
                Ok(p) if p == id => top = parent,
                Ok(_) => return Some(top.to_path_buf()),
                Err(_) => break,
            }
        }
        if top == Path::new("/") {
            return Some(top.to_path_buf());
        }
    }
    mount_point_from_table(&path)
}

fn mount_point_from_table(path: &Path) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<PathBuf> = None;
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if path.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() > b.as_os_str().len())
        {
            best = Some(mp);
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// After pivot_root: the root's propagation, masked paths, read-only paths, read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    // The spec's rootfsPropagation is for the container's "/", which only exists now.
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        if let Some(flag) = propagation_flag(p) {
            do_mount(None, Path::new("/"), None, flag, None, Path::new("/"))?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        // after pivot_root a relative path can only mean one inside the container
        readonly_path(&Path::new("/").join(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(&Path::new("/").join(p))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let keep = locked_flags(Path::new("/"));
        do_mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
            None,
            Path::new("/"),
        )?;
    }
    Ok(())
}

fn readonly_path(p: &Path) -> Result<()> {
    if p.as_os_str().as_bytes().contains(&0) || !p.is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "readonly path {p:?} must be absolute"
        )));
    }
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("bind {} read-only", p.display()), e)),
    }
    let keep = locked_flags(p);
    do_mount(
        None,
        p,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | keep,
        None,
        p,
    )
}

fn mask_path(p: &Path) -> Result<()> {
    if !p.is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "masked path {p:?} must be absolute"
        )));
    }
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.is_dir() {
        do_mount(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k"),
            p,
        )
    } else {
        match mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::sys(format!("mask {}", p.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_parse_like_mount8() {
        let o = parse_options(&s(&["nosuid", "noexec", "ro", "mode=755", "size=65536k"])).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        let o = parse_options(&s(&["rbind", "rprivate", "rw"])).unwrap();
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(parse_options(&s(&["idmap"])).is_err());
    }

    #[test]
    fn destinations_stay_relative() {
        assert_eq!(relative(Path::new("/../../etc")), PathBuf::from("etc"));
        assert_eq!(relative(Path::new("/a/./b/../c")), PathBuf::from("a/c"));
    }

    #[test]
    fn mkdir_all_does_not_follow_symlinks_out() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("evil")).unwrap();
        let rfd = fs::File::open(&root).unwrap();
        mkdir_all_in_root(rfd.as_fd(), Path::new("evil/sub/dir")).unwrap();
        // the absolute symlink was resolved inside the root, not on the host
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(root
            .join(outside.path().strip_prefix("/").unwrap())
            .join("sub/dir")
            .is_dir());
        create_file_in_root(rfd.as_fd(), Path::new("evil/file")).unwrap();
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}

#[cfg(test)]
mod mountinfo_tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\134"), "/x\\");
        assert!(mount_point_of(Path::new("/proc/self")).is_some());
    }

    #[test]
    fn mount_points_by_mount_id_agree_with_the_mount_table() {
        for p in ["/proc/1", "/sys/fs/cgroup", "/", "/etc", "/dev/null"] {
            let p = Path::new(p);
            let canon = p.canonicalize().unwrap();
            assert_eq!(mount_point_of(p), mount_point_from_table(&canon), "{p:?}");
        }
    }
}
