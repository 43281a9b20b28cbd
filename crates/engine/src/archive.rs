//! `docker cp` and `docker export`: tar streams out of and into a container's root
//! filesystem (the overlay mount; a stopped container's is mounted for the time of the copy).
//!
//! Every path is resolved with openat2(RESOLVE_IN_ROOT) against the rootfs directory, and
//! every walk below it goes descriptor by descriptor without following symlinks, so a
//! symlink in the container (`/x -> /etc`) leads to the container's /etc, never the host's,
//! even if the container swaps files while the copy runs. An archive written into a
//! container is confined below its destination: an entry with `..`, or one reached through a
//! symlink leaving the destination, is refused (RESOLVE_BENEATH), as Docker refuses a
//! "breakout".

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use berth_sys::resolve::{BENEATH, IN_ROOT};
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::Engine;

/// What `X-Docker-Container-Path-Stat` carries (base64 of this JSON).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits, which the docker CLI decodes.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

// Go's os.FileMode type bits.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHARDEV: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

fn go_mode(st: &FileStat) -> u32 {
    let m = st.st_mode;
    let mut g = m & 0o777;
    match m & libc::S_IFMT {
        libc::S_IFDIR => g |= GO_DIR,
        libc::S_IFLNK => g |= GO_SYMLINK,
        libc::S_IFBLK => g |= GO_DEVICE,
        libc::S_IFCHR => g |= GO_DEVICE | GO_CHARDEV,
        libc::S_IFIFO => g |= GO_PIPE,
        libc::S_IFSOCK => g |= GO_SOCKET,
        _ => {}
    }
    if m & libc::S_ISUID != 0 {
        g |= GO_SETUID;
    }
    if m & libc::S_ISGID != 0 {
        g |= GO_SETGID;
    }
    if m & libc::S_ISVTX != 0 {
        g |= GO_STICKY;
    }
    g
}

fn kind(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn rfc3339(secs: i64, nanos: i64) -> String {
    chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn stat_fd(fd: BorrowedFd<'_>, what: &Path) -> Result<FileStat> {
    fstatat(
        Some(fd.as_raw_fd()),
        "",
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io("stat", what)(e.into()))
}

fn open_at(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> std::io::Result<OwnedFd> {
    berth_sys::openat2(dir, rel, flags, mode, resolve)
}

/// The container path as the user wrote it: absolute, and whether it asks to follow its last
/// component (a trailing `/` or `/.`, as Docker reads it).
struct Target {
    /// Without the leading `/`; empty for the root.
    rel: PathBuf,
    follow: bool,
    /// The name archive entries start with (Go's filepath.Base of the path, `.` kept).
    base: String,
}

fn target(path: &str) -> Result<Target> {
    if path.is_empty() {
        return Err(Error::InvalidArgument("path must not be empty".into()));
    }
    if path.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "path {path:?} contains a NUL byte"
        )));
    }
    let follow = path.ends_with('/') || path.ends_with("/.") || path == ".";
    let rel: PathBuf = Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    let base = if path.ends_with("/.") || path == "." {
        ".".to_string()
    } else {
        rel.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".to_string())
    };
    Ok(Target { rel, follow, base })
}

/// The rootfs, mounted for as long as this lives (unmounted after if this mounted it and the
/// container is still not running).
struct Rootfs<'a> {
    engine: &'a Engine,
    id: String,
    dir: PathBuf,
    fd: OwnedFd,
    mounted_here: bool,
}

impl<'a> Rootfs<'a> {
    fn open(engine: &'a Engine, s: &str) -> Result<Rootfs<'a>> {
        let r = engine.find(s)?;
        let mounted_here = engine.ensure_rootfs(&r.id)?;
        let dir = engine.rootfs_dir(&r.id);
        let fd = File::open(&dir)
            .map(OwnedFd::from)
            .map_err(Error::io("open the root filesystem", &dir))?;
        Ok(Rootfs {
            engine,
            id: r.id,
            dir,
            fd,
            mounted_here,
        })
    }

    fn not_found(&self, path: &str) -> Error {
        Error::NoSuchPath {
            id: self.id.clone(),
            path: path.to_string(),
        }
    }

    /// An O_PATH descriptor of `path`, resolved inside the root.
    fn resolve(&self, path: &str, t: &Target) -> Result<OwnedFd> {
        let map = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) {
                self.not_found(path)
            } else {
                Error::io("resolve", PathBuf::from(path))(e)
            }
        };
        let last_is_dots = matches!(t.rel.components().next_back(), Some(Component::ParentDir));
        if t.rel.as_os_str().is_empty() || t.follow || last_is_dots {
            let rel = if t.rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &t.rel
            };
            return open_at(self.fd.as_fd_b(), rel, libc::O_PATH, 0, IN_ROOT).map_err(map);
        }
        let parent = t.rel.parent().filter(|p| !p.as_os_str().is_empty());
        let pfd = open_at(
            self.fd.as_fd_b(),
            parent.unwrap_or(Path::new(".")),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            IN_ROOT,
        )
        .map_err(map)?;
        let name = t.rel.file_name().unwrap_or(OsStr::new("."));
        open_at(
            pfd.as_fd_b(),
            Path::new(name),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            BENEATH,
        )
        .map_err(map)
    }

    /// Where a symlink leads inside the root, as an absolute container path.
    fn link_target(&self, path: &str) -> String {
        let Ok(t) = target(path) else {
            return String::new();
        };
        let Ok(fd) = open_at(self.fd.as_fd_b(), &t.rel, libc::O_PATH, 0, IN_ROOT) else {
            return String::new();
        };
        let Ok(host) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
            return String::new();
        };
        match host.strip_prefix(&self.dir) {
            Ok(p) => Path::new("/").join(p).to_string_lossy().into_owned(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Rootfs<'_> {
    fn drop(&mut self) {
        if !self.mounted_here {
            return;
        }
        let running = self
            .engine
            .find(&self.id)
            .is_ok_and(|r| r.status == "running" || r.status == "paused");
        if !running {
            self.engine.release_rootfs(&self.id);
        }
    }
}

trait AsFdB {
    fn as_fd_b(&self) -> BorrowedFd<'_>;
}

impl AsFdB for OwnedFd {
    fn as_fd_b(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Writes a tree into a tar stream, descriptor by descriptor, never following a symlink.
struct Walker<W: Write> {
    tar: tar::Builder<W>,
    /// First name of each multiply linked inode, for hard link entries.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walker<W> {
    fn new(w: W) -> Self {
        let mut tar = tar::Builder::new(w);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Walker {
            tar,
            links: HashMap::new(),
        }
    }

    fn header(st: &FileStat, typ: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(typ);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// Adds the object `fd` (an O_PATH descriptor) as `name`, and below it if a directory.
    fn add(&mut self, fd: &OwnedFd, name: &Path, shown: &Path) -> Result<()> {
        let st = stat_fd(fd.as_fd_b(), shown)?;
        let werr = |e: std::io::Error| Error::io("write the archive entry", shown)(e);
        match kind(&st) {
            libc::S_IFDIR => {
                if !name.as_os_str().is_empty() {
                    let mut h = Self::header(&st, tar::EntryType::Directory);
                    let mut n = name.as_os_str().to_owned();
                    n.push("/");
                    self.tar
                        .append_data(&mut h, Path::new(&n), std::io::empty())
                        .map_err(werr)?;
                }
                let dir = open_at(
                    fd.as_fd_b(),
                    Path::new("."),
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                    BENEATH,
                )
                .map_err(Error::io("open directory", shown))?;
                let mut names: Vec<std::ffi::OsString> =
                    std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                        .map_err(Error::io("read directory", shown))?
                        .filter_map(|e| e.ok().map(|e| e.file_name()))
                        .collect();
                names.sort();
                for child in names {
                    let cfd = match open_at(
                        dir.as_fd_b(),
                        Path::new(&child),
                        libc::O_PATH | libc::O_NOFOLLOW,
                        0,
                        BENEATH,
                    ) {
                        Ok(f) => f,
                        // Removed by the container meanwhile.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io("open", shown.join(&child))(e)),
                    };
                    self.add(&cfd, &name.join(&child), &shown.join(&child))?;
                }
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                    .map_err(|e| Error::io("read link", shown)(e.into()))?;
                let mut h = Self::header(&st, tar::EntryType::Symlink);
                self.tar.append_link(&mut h, name, &target).map_err(werr)?;
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut h = Self::header(&st, tar::EntryType::Link);
                        self.tar.append_link(&mut h, name, &first).map_err(werr)?;
                        return Ok(());
                    }
                    self.links.insert(key, name.to_path_buf());
                }
                // Reopened through the O_PATH descriptor: the same inode, never a path the
                // container could have swapped meanwhile.
                let f = File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map_err(Error::io("open", shown))?;
                let file = f;
                let now = stat_fd(std::os::fd::AsFd::as_fd(&file), shown)?;
                if kind(&now) != libc::S_IFREG {
                    return Ok(());
                }
                let mut h = Self::header(&now, tar::EntryType::Regular);
                h.set_size(now.st_size as u64);
                // A file that shrinks while read would corrupt the stream: read exactly size.
                let reader = file.take(now.st_size as u64);
                let mut padded = Pad {
                    inner: reader,
                    left: now.st_size as u64,
                };
                self.tar
                    .append_data(&mut h, name, &mut padded)
                    .map_err(werr)?;
            }
            t @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
                let typ = match t {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(&st, typ);
                if t != libc::S_IFIFO {
                    let _ = h.set_device_major(libc::major(st.st_rdev));
                    let _ = h.set_device_minor(libc::minor(st.st_rdev));
                }
                self.tar
                    .append_data(&mut h, name, std::io::empty())
                    .map_err(werr)?;
            }
            // Sockets have no tar form; Docker skips them too.
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        self.tar
            .into_inner()
            .map(|_| ())
            .map_err(Error::io("finish the archive", "tar"))
    }
}

/// Reads exactly `left` bytes, zero-filling if the file shrank under us.
struct Pad<R: Read> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Pad<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        let n = if n == 0 {
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

impl Engine {
    /// `HEAD /containers/{id}/archive`: what `path` is, symlinks resolved inside the root.
    pub fn archive_stat(&self, s: &str, path: &str) -> Result<PathStat> {
        let root = Rootfs::open(self, s)?;
        let t = target(path)?;
        let fd = root.resolve(path, &t)?;
        let st = stat_fd(fd.as_fd_b(), Path::new(path))?;
        let link_target = if kind(&st) == libc::S_IFLNK {
            root.link_target(path)
        } else {
            String::new()
        };
        Ok(PathStat {
            name: t.base.clone(),
            size: st.st_size,
            mode: go_mode(&st),
            mtime: rfc3339(st.st_mtime, st.st_mtime_nsec),
            link_target,
        })
    }

    /// `GET /containers/{id}/archive`: a tar of `path` (its entries named from its base
    /// name, as Docker names them) written to `w`.
    pub fn archive_get(&self, s: &str, path: &str, w: impl Write) -> Result<()> {
        let root = Rootfs::open(self, s)?;
        let t = target(path)?;
        let fd = root.resolve(path, &t)?;
        let mut walker = Walker::new(w);
        let name = if t.base == "/" { "." } else { t.base.as_str() };
        walker.add(&fd, Path::new(name), Path::new(path))?;
        walker.finish()
    }

    /// `GET /containers/{id}/export`: the whole root filesystem as a tar.
    pub fn export(&self, s: &str, w: impl Write) -> Result<()> {
        let root = Rootfs::open(self, s)?;
        let fd = open_at(root.fd.as_fd_b(), Path::new("."), libc::O_PATH, 0, IN_ROOT)
            .map_err(Error::io("open the root filesystem", &root.dir))?;
        let mut walker = Walker::new(w);
        walker.add(&fd, Path::new(""), Path::new("/"))?;
        walker.finish()
    }

    /// `PUT /containers/{id}/archive`: unpacks the tar `r` into the directory `path`.
    pub fn archive_put(
        &self,
        s: &str,
        path: &str,
        r: impl Read,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        let rec = self.find(s)?;
        if self
            .body(&rec)
            .host_config
            .and_then(|h| h.readonly_rootfs)
            .unwrap_or(false)
        {
            return Err(Error::InvalidArgument(
                "container rootfs is marked read-only".into(),
            ));
        }
        let root = Rootfs::open(self, &rec.id)?;
        let t = target(path)?;
        let rel = if t.rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            t.rel.clone()
        };
        let dst = open_at(
            root.fd.as_fd_b(),
            &rel,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            IN_ROOT,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => root.not_found(path),
            Some(libc::ENOTDIR) => {
                Error::InvalidArgument(format!("extraction point {path} is not a directory"))
            }
            _ => Error::io("resolve", PathBuf::from(path))(e),
        })?;
        let mut archive = tar::Archive::new(r);
        let entries = archive
            .entries()
            .map_err(|e| Error::InvalidArgument(format!("read the archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::InvalidArgument(format!("read the archive: {e}")))?;
            let name = entry
                .path()
                .map_err(|e| Error::InvalidArgument(format!("archive entry name: {e}")))?
                .into_owned();
            let rel = confined(&name)?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            unpack_one(&dst, &rel, &mut entry, no_overwrite_dir_non_dir)?;
        }
        Ok(())
    }
}

/// An entry name made relative to the destination; `..` anywhere is a breakout.
fn confined(name: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidArgument(format!(
                    "archive entry {} would be written outside the destination",
                    name.display()
                )))
            }
        }
    }
    Ok(out)
}

fn breakout(name: &Path) -> Error {
    Error::InvalidArgument(format!(
        "archive entry {} would be written outside the destination (through a symlink)",
        name.display()
    ))
}

/// The directory that will hold `rel`, below `dst` (missing directories made 0755), never
/// reached through a symlink that leaves `dst`.
fn parent_dir(dst: &OwnedFd, rel: &Path) -> Result<OwnedFd> {
    let mut cur = open_at(
        dst.as_fd_b(),
        Path::new("."),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        BENEATH,
    )
    .map_err(Error::io("open", rel))?;
    let Some(parent) = rel.parent() else {
        return Ok(cur);
    };
    let mut sofar = PathBuf::new();
    for c in parent.components() {
        sofar.push(c);
        let open = |d: &OwnedFd| {
            open_at(
                d.as_fd_b(),
                Path::new(c.as_os_str()),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                BENEATH,
            )
        };
        cur = match open(&cur) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match nix::sys::stat::mkdirat(
                    Some(cur.as_raw_fd()),
                    c.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(Error::io("create directory", &sofar)(e.into())),
                }
                open(&cur).map_err(Error::io("open", &sofar))?
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Err(breakout(rel)),
            Err(e) => return Err(Error::io("open", &sofar)(e)),
        };
    }
    Ok(cur)
}

fn unpack_one<R: Read>(
    dst: &OwnedFd,
    rel: &Path,
    entry: &mut tar::Entry<'_, R>,
    no_overwrite_dir_non_dir: bool,
) -> Result<()> {
    let parent = parent_dir(dst, rel)?;
    let pfd = Some(parent.as_raw_fd());
    let name = rel.file_name().unwrap_or(OsStr::new("."));
    let h = entry.header().clone();
    let typ = h.entry_type();
    let mode = h.mode().unwrap_or(0o644) & 0o7777;
    let existing = fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let is_dir_entry = typ.is_dir();
    if let Some(st) = &existing {
        let exists_dir = kind(st) == libc::S_IFDIR;
        if exists_dir != is_dir_entry {
            if no_overwrite_dir_non_dir {
                return Err(Error::InvalidArgument(format!(
                    "cannot overwrite {} {} with a {}",
                    if exists_dir {
                        "directory"
                    } else {
                        "non-directory"
                    },
                    rel.display(),
                    if is_dir_entry {
                        "directory"
                    } else {
                        "non-directory"
                    }
                )));
            }
            let flag = if exists_dir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            };
            nix::unistd::unlinkat(pfd, name, flag)
                .map_err(|e| Error::io("replace", rel)(e.into()))?;
        } else if !exists_dir {
            nix::unistd::unlinkat(pfd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| Error::io("replace", rel)(e.into()))?;
        }
    }
    let ioerr = |op: &'static str| move |e: nix::errno::Errno| Error::io(op, rel)(e.into());
    match typ {
        tar::EntryType::Directory => {
            if existing.as_ref().is_none_or(|st| kind(st) != libc::S_IFDIR) {
                nix::sys::stat::mkdirat(pfd, name, Mode::from_bits_truncate(0o700))
                    .map_err(ioerr("create directory"))?;
            }
            let d = open_at(
                parent.as_fd_b(),
                Path::new(name),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                BENEATH,
            )
            .map_err(Error::io("open", rel))?;
            nix::sys::stat::fchmod(d.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(ioerr("chmod"))?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let f = open_at(
                parent.as_fd_b(),
                Path::new(name),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
                BENEATH,
            )
            .map_err(Error::io("create", rel))?;
            let mut file = File::from(f);
            std::io::copy(entry, &mut file).map_err(Error::io("write", rel))?;
            nix::sys::stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(ioerr("chmod"))?;
        }
        tar::EntryType::Symlink => {
            let target = h
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("symlink {} has no target", rel.display()))
                })?
                .into_owned();
            nix::unistd::symlinkat(&target, pfd, name).map_err(ioerr("create symlink"))?;
        }
        tar::EntryType::Link => {
            let target = h
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("hard link {} has no target", rel.display()))
                })?
                .into_owned();
            let trel = confined(&target)?;
            let tparent = parent_dir(dst, &trel)?;
            let tname = trel.file_name().unwrap_or(OsStr::new("."));
            nix::unistd::linkat(
                Some(tparent.as_raw_fd()),
                tname,
                pfd,
                name,
                AtFlags::empty(),
            )
            .map_err(ioerr("create hard link"))?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (k, dev) = match typ {
                tar::EntryType::Char => (SFlag::S_IFCHR, true),
                tar::EntryType::Block => (SFlag::S_IFBLK, true),
                _ => (SFlag::S_IFIFO, false),
            };
            let rdev = if dev {
                libc::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                )
            } else {
                0
            };
            nix::sys::stat::mknodat(pfd, name, k, Mode::from_bits_truncate(mode), rdev)
                .map_err(ioerr("create node"))?;
        }
        // Extended headers are consumed by the tar crate; anything else is skipped.
        _ => return Ok(()),
    }
    let uid = h.uid().ok().map(|u| nix::unistd::Uid::from_raw(u as u32));
    let gid = h.gid().ok().map(|g| nix::unistd::Gid::from_raw(g as u32));
    nix::unistd::fchownat(pfd, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(ioerr("chown"))?;
    if let Ok(mtime) = h.mtime() {
        let ts = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            pfd,
            name,
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = target("/etc/passwd").expect("target");
        assert_eq!(t.rel, Path::new("etc/passwd"));
        assert!(!t.follow);
        assert_eq!(t.base, "passwd");
        let t = target("/x/").expect("target");
        assert!(t.follow);
        assert_eq!(t.base, "x");
        let t = target("/x/.").expect("target");
        assert!(t.follow);
        assert_eq!(t.base, ".");
        assert_eq!(target("/").expect("target").base, "/");
        assert!(target("").is_err());
    }

    #[test]
    fn entries_with_dotdot_are_refused() {
        assert!(confined(Path::new("../etc/passwd")).is_err());
        assert!(confined(Path::new("a/../../b")).is_err());
        assert_eq!(
            confined(Path::new("/a/./b")).expect("confined"),
            Path::new("a/b")
        );
    }

    #[test]
    fn go_modes() {
        let st = fstatat(None, "/", AtFlags::empty()).expect("stat /");
        assert_ne!(go_mode(&st) & GO_DIR, 0);
    }
}
