//! Unpacks one layer (tar, tar+gzip or tar+zstd, detected by magic bytes) into an empty
//! directory in overlayfs format, verifying its diff ID in the same pass.
//!
//! Containment: every entry is created relative to the layer directory by walking its parent
//! components with `openat(O_NOFOLLOW | O_DIRECTORY)`, so no symlink in the layer (or made by
//! an earlier entry) can redirect a write outside it; `..` that climbs above the root is
//! refused, absolute names are taken relative to the root (as tar does); ownership, modes,
//! times and xattrs are applied through file descriptors or `*at(AT_SYMLINK_NOFOLLOW)`, never
//! through a symlink. OCI whiteouts become overlayfs whiteouts (0:0 character devices and the
//! `trusted.overlay.opaque` xattr).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::digest::{Digest, DigestReader};
use crate::error::{Error, Result};

/// Longest entry path accepted (Linux PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest path component accepted (Linux NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// Largest PAX or GNU long-name header accepted: bigger ones are refused before they are read,
/// so a hostile layer cannot make us buffer gigabytes of "name".
pub const MAX_META_HEADER: u64 = 1 << 20;

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking a layer produced.
#[derive(Debug, Clone)]
pub struct LayerStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Sum of the sizes of the regular files (what `docker images` counts).
    pub size: u64,
    /// Number of tar entries applied.
    pub entries: u64,
}

/// The compression of a layer stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Detects the compression from magic bytes; refuses formats layers may not use.
pub fn detect_compression(head: &[u8]) -> std::result::Result<Compression, String> {
    match head {
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
        [b'B', b'Z', b'h', ..] => Err("bzip2-compressed layers are not supported".into()),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            Err("xz-compressed layers are not supported".into())
        }
        _ => Ok(Compression::None),
    }
}

/// Wraps `r` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(r: R, layer: &str) -> Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let head = br.fill_buf().map_err(|e| Error::ExtractLayer {
        layer: layer.to_string(),
        reason: format!("read: {e}"),
    })?;
    let c = detect_compression(head).map_err(|reason| Error::ExtractLayer {
        layer: layer.to_string(),
        reason,
    })?;
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(br)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(br).map_err(|e| {
                Error::ExtractLayer {
                    layer: layer.to_string(),
                    reason: format!("zstd: {e}"),
                }
            })?)
        }
        Compression::None => Box::new(br),
    })
}

/// Unpacks the layer stream `blob` into `dest` (an existing, normally empty, directory).
/// If `expected_diff_id` is given, a different diff ID is an error (the caller then discards
/// `dest`). `layer` names the layer in errors.
pub fn extract_layer<R: Read>(
    blob: R,
    dest: &Path,
    layer: &str,
    expected_diff_id: Option<&Digest>,
) -> Result<LayerStats> {
    let layer_err = |reason: String| Error::ExtractLayer {
        layer: layer.to_string(),
        reason,
    };
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open layer directory", dest, e.into()))?;
    let mut dr = DigestReader::new(decompress(blob, layer)?);
    let mut x = Extractor {
        layer,
        root,
        cache: None,
        dirs: Vec::new(),
        size: 0,
        entries: 0,
    };
    {
        let mut ar = tar::Archive::new(&mut dr);
        let entries = ar
            .entries()
            .map_err(|e| layer_err(format!("read tar: {e}")))?
            .raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        for entry in entries {
            let mut entry = entry.map_err(|e| layer_err(format!("read tar header: {e}")))?;
            let et = entry.header().entry_type();
            if et.is_gnu_longname()
                || et.is_gnu_longlink()
                || et.is_pax_local_extensions()
                || et.is_pax_global_extensions()
            {
                let size = entry.header().entry_size().unwrap_or(u64::MAX);
                if size > MAX_META_HEADER {
                    let what = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                    return Err(Error::ExtractEntry {
                        layer: layer.to_string(),
                        entry: what,
                        reason: format!("extension header of {size} bytes is larger than the {MAX_META_HEADER} allowed"),
                    });
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| layer_err(format!("read tar extension header: {e}")))?;
                if et.is_gnu_longname() {
                    long_name = Some(trim_nul(buf));
                } else if et.is_gnu_longlink() {
                    long_link = Some(trim_nul(buf));
                } else if et.is_pax_local_extensions() {
                    pax = Some(buf);
                }
                continue;
            }
            let meta = EntryMeta::from_entry(
                &entry,
                long_name.take(),
                long_link.take(),
                pax.take().as_deref(),
            )
            .map_err(|reason| Error::ExtractEntry {
                layer: layer.to_string(),
                entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                reason,
            })?;
            let name = String::from_utf8_lossy(&meta.path).into_owned();
            x.apply(&mut entry, &meta)
                .map_err(|reason| Error::ExtractEntry {
                    layer: layer.to_string(),
                    entry: name,
                    reason,
                })?;
            x.entries += 1;
        }
    }
    // the diff ID covers the whole uncompressed stream, including the tar's trailing blocks
    io::copy(&mut dr, &mut io::sink()).map_err(|e| layer_err(format!("read: {e}")))?;
    x.finish_dirs().map_err(layer_err)?;
    let (diff_id, _) = dr.finish();
    if let Some(exp) = expected_diff_id {
        if exp != &diff_id {
            let layer_digest = layer.parse().unwrap_or_else(|_| exp.clone());
            return Err(Error::DiffIdMismatch {
                layer: layer_digest,
                expected: exp.clone(),
                actual: diff_id,
            });
        }
    }
    Ok(LayerStats {
        diff_id,
        size: x.size,
        entries: x.entries,
    })
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

#[derive(Debug)]
struct EntryMeta {
    path: Vec<u8>,
    link: Option<Vec<u8>>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    dev: (u32, u32),
    size: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    fn from_entry<R: Read>(
        entry: &tar::Entry<'_, R>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<&[u8]>,
    ) -> std::result::Result<EntryMeta, String> {
        let h = entry.header();
        let mut path = long_name.unwrap_or_else(|| h.path_bytes().into_owned());
        let mut link = long_link.or_else(|| h.link_name_bytes().map(|c| c.into_owned()));
        let mut uid = h.uid().map_err(|e| format!("bad uid: {e}"))?;
        let mut gid = h.gid().map_err(|e| format!("bad gid: {e}"))?;
        let mut mtime = (
            h.mtime().map_err(|e| format!("bad mtime: {e}"))? as i64,
            0u32,
        );
        let size = h.entry_size().map_err(|e| format!("bad size: {e}"))?;
        let mut xattrs = Vec::new();
        if let Some(p) = pax {
            for ext in tar::PaxExtensions::new(p) {
                let ext = ext.map_err(|e| format!("bad PAX header: {e}"))?;
                let Ok(key) = ext.key() else { continue };
                let v = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                };
                match key {
                    "path" => path = v.to_vec(),
                    "linkpath" => link = Some(v.to_vec()),
                    "uid" => uid = num().ok_or("bad PAX uid")?,
                    "gid" => gid = num().ok_or("bad PAX gid")?,
                    "mtime" => {
                        let s = std::str::from_utf8(v).map_err(|_| "bad PAX mtime")?;
                        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
                        let secs: i64 = secs.parse().map_err(|_| "bad PAX mtime")?;
                        let mut ns = String::from(frac);
                        ns.truncate(9);
                        while ns.len() < 9 {
                            ns.push('0');
                        }
                        mtime = (secs, ns.parse().unwrap_or(0));
                    }
                    // raw mode reads the data by the header's size; a different PAX size
                    // would desynchronise the stream
                    "size" if num() != Some(size) => {
                        return Err("PAX size differs from the header size (entries over 8 GiB are not supported)".into());
                    }
                    k if k.starts_with("SCHILY.xattr.") => {
                        xattrs.push((k["SCHILY.xattr.".len()..].to_string(), v.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        if path.len() > MAX_PATH_LEN {
            return Err(format!(
                "name of {} bytes is longer than the {MAX_PATH_LEN} allowed",
                path.len()
            ));
        }
        if link
            .as_ref()
            .map(|l| l.len() > MAX_PATH_LEN)
            .unwrap_or(false)
        {
            return Err(format!(
                "link name is longer than the {MAX_PATH_LEN} bytes allowed"
            ));
        }
        let dev = (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        );
        Ok(EntryMeta {
            path,
            link,
            kind: h.entry_type(),
            mode: h.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777,
            uid,
            gid,
            mtime,
            dev,
            size,
            xattrs,
        })
    }
}

/// Splits an archive path into clean components: empty and `.` dropped, a leading `/`
/// ignored (tar paths are relative to the archive root), `..` resolved lexically and refused
/// if it would climb above the root.
pub(crate) fn clean_components(raw: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path climbs out of the layer root with \"..\"".into());
                }
            }
            c => {
                if c.len() > MAX_NAME_LEN {
                    return Err(format!(
                        "path component of {} bytes is longer than the {MAX_NAME_LEN} allowed",
                        c.len()
                    ));
                }
                if c.contains(&0) {
                    return Err("path contains a NUL byte".into());
                }
                out.push(c);
            }
        }
    }
    Ok(out)
}

type Components = Vec<Vec<u8>>;

struct Extractor<'l> {
    layer: &'l str,
    root: OwnedFd,
    // the last parent directory opened, by its components: tar entries come grouped by
    // directory, so this saves most of the per-component openat walks
    cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
    dirs: Vec<(Components, (i64, u32))>,
    size: u64,
    entries: u64,
}

fn errno_str(e: Errno) -> String {
    io::Error::from(e).to_string()
}

impl<'l> Extractor<'l> {
    /// Opens (creating missing ones as 0755 directories, as tar does) the directory at
    /// `comps`, never following a symlink.
    fn open_dir(&mut self, comps: &[&[u8]], create: bool) -> std::result::Result<&OwnedFd, String> {
        if comps.is_empty() {
            return Ok(&self.root);
        }
        let hit = matches!(&self.cache, Some((c, _)) if c.len() == comps.len() && c.iter().zip(comps).all(|(a, b)| a.as_slice() == *b));
        if !hit {
            let mut cur: Option<OwnedFd> = None;
            for c in comps {
                let dir = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = match rfs::openat(dir, *c, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) if create => {
                        match rfs::mkdirat(dir, *c, Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(format!("create parent {:?}: {}", String::from_utf8_lossy(c), errno_str(e))),
                        }
                        rfs::openat(dir, *c, flags, Mode::empty())
                            .map_err(|e| format!("open parent {:?}: {}", String::from_utf8_lossy(c), errno_str(e)))?
                    }
                    Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                        return Err(format!(
                            "parent component {:?} is a symlink or not a directory (refusing to write through it)",
                            String::from_utf8_lossy(c)
                        ))
                    }
                    Err(e) => return Err(format!("open parent {:?}: {}", String::from_utf8_lossy(c), errno_str(e))),
                };
                cur = Some(fd);
            }
            let fd = cur.ok_or("empty path")?;
            self.cache = Some((comps.iter().map(|c| c.to_vec()).collect(), fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd),
            None => Err("internal: directory cache empty".into()),
        }
    }

    fn apply<R: Read>(&mut self, data: &mut R, m: &EntryMeta) -> std::result::Result<(), String> {
        use tar::EntryType as T;
        let comps = clean_components(&m.path)?;
        let Some((name, parent)) = comps.split_last() else {
            // the root itself ("./"): take its metadata, as docker does
            if m.kind == T::Directory {
                let root = self.root.try_clone().map_err(|e| e.to_string())?;
                self.set_fd_meta(&root, m)?;
                self.dirs.push((Vec::new(), m.mtime));
            }
            return Ok(());
        };
        let name: &[u8] = name;
        let name_str = String::from_utf8_lossy(name).into_owned();
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parent, target, m);
        }
        match m.kind {
            T::Directory => {
                let dir = self
                    .open_dir(parent, true)?
                    .try_clone()
                    .map_err(|e| e.to_string())?;
                match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        self.remove_at(&dir, name)?;
                        rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                            .map_err(|e| format!("mkdir: {}", errno_str(e)))?;
                    }
                    Err(Errno::NOENT) => rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| format!("mkdir: {}", errno_str(e)))?,
                    Err(e) => return Err(format!("stat: {}", errno_str(e))),
                }
                let fd = rfs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("open directory: {}", errno_str(e)))?;
                self.set_fd_meta(&fd, m)?;
                let mut all: Vec<Vec<u8>> = parent.iter().map(|c| c.to_vec()).collect();
                all.push(name.to_vec());
                self.dirs.push((all, m.mtime));
            }
            T::Regular | T::Continuous => {
                let dir = self
                    .open_dir(parent, true)?
                    .try_clone()
                    .map_err(|e| e.to_string())?;
                let fd = self
                    .create_replacing(&dir, name, || {
                        rfs::openat(
                            &dir,
                            name,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o600),
                        )
                    })
                    .map_err(|e| format!("create file: {e}"))?;
                let mut f = File::from(fd);
                let n = io::copy(data, &mut f).map_err(|e| format!("write file: {e}"))?;
                if n != m.size {
                    return Err(format!("short file data: {n} of {} bytes", m.size));
                }
                self.size += n;
                self.set_fd_meta(&OwnedFd::from(f), m)?;
            }
            T::Symlink => {
                let target = m.link.as_deref().ok_or("symlink without a target")?;
                let dir = self
                    .open_dir(parent, true)?
                    .try_clone()
                    .map_err(|e| e.to_string())?;
                // the target is stored as is: it is resolved only inside the container
                self.create_replacing(&dir, name, || rfs::symlinkat(target, &dir, name))
                    .map_err(|e| format!("symlink: {e}"))?;
                self.set_at_meta(&dir, name, m, true)?;
            }
            T::Link => {
                let target = m.link.as_deref().ok_or("hard link without a target")?;
                let tcomps =
                    clean_components(target).map_err(|e| format!("hard link target: {e}"))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err("hard link to the layer root".into());
                };
                let tname = tname.to_vec();
                let tdir = self
                    .open_dir(tparent, false)
                    .map_err(|e| {
                        format!(
                            "hard link target {:?} is not in this layer: {e}",
                            String::from_utf8_lossy(target)
                        )
                    })?
                    .try_clone()
                    .map_err(|e| e.to_string())?;
                match rfs::statat(&tdir, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err("hard link to a directory".into())
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(format!(
                            "hard link target {:?} is not in this layer: {}",
                            String::from_utf8_lossy(target),
                            errno_str(e)
                        ))
                    }
                }
                let dir = self
                    .open_dir(parent, true)?
                    .try_clone()
                    .map_err(|e| e.to_string())?;
                if tcomps == comps {
                    return Ok(());
                }
                self.remove_if_exists(&dir, name)?;
                // no AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself
                rfs::linkat(&tdir, tname.as_slice(), &dir, name, AtFlags::empty())
                    .map_err(|e| format!("link: {}", errno_str(e)))?;
            }
            T::Char | T::Block | T::Fifo => {
                let dir = self
                    .open_dir(parent, true)?
                    .try_clone()
                    .map_err(|e| e.to_string())?;
                self.remove_if_exists(&dir, name)?;
                let ft = match m.kind {
                    T::Char => FileType::CharacterDevice,
                    T::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rfs::makedev(m.dev.0, m.dev.1);
                rfs::mknodat(&dir, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| format!("mknod: {}", errno_str(e)))?;
                self.set_at_meta(&dir, name, m, false)?;
            }
            T::GNUSparse => return Err("sparse files are not supported".into()),
            other => {
                tracing::debug!(layer = self.layer, entry = %String::from_utf8_lossy(&m.path), kind = ?other, "skipping tar entry of unsupported type");
            }
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent: &[&[u8]],
        target: &str,
        m: &EntryMeta,
    ) -> std::result::Result<(), String> {
        let dir = self
            .open_dir(parent, true)?
            .try_clone()
            .map_err(|e| e.to_string())?;
        if format!("{WHITEOUT_PREFIX}{target}") == WHITEOUT_OPAQUE {
            rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| format!("set {OPAQUE_XATTR}: {}", errno_str(e)))?;
            return Ok(());
        }
        if target.starts_with(WHITEOUT_PREFIX) {
            // other `.wh..wh.` names are aufs metadata (hard-link directories): meaningless here
            return Ok(());
        }
        if target.is_empty() || target == "." || target == ".." {
            return Err(format!("whiteout of {target:?} is not a valid name"));
        }
        self.remove_if_exists(&dir, target.as_bytes())?;
        rfs::mknodat(
            &dir,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(|e| format!("create whiteout for {target:?}: {}", errno_str(e)))?;
        let _ = m;
        Ok(())
    }

    /// Runs `create` (an O_EXCL-style creation of `name` in `dir`); if something is already
    /// there (an earlier entry of the same name), removes it and tries once more. Cheaper
    /// than a stat before every entry, since in a fresh layer nothing usually is.
    fn create_replacing<T>(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        create: impl Fn() -> rustix::io::Result<T>,
    ) -> std::result::Result<T, String> {
        match create() {
            Err(Errno::EXIST) => {
                self.remove_at(dir, name)?;
                create().map_err(errno_str)
            }
            other => other.map_err(errno_str),
        }
    }

    fn remove_if_exists(&mut self, dir: &OwnedFd, name: &[u8]) -> std::result::Result<(), String> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => self.remove_at(dir, name),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(format!("stat: {}", errno_str(e))),
        }
    }

    fn remove_at(&mut self, dir: &OwnedFd, name: &[u8]) -> std::result::Result<(), String> {
        // the cached directory could be the one removed
        self.cache = None;
        remove_all_at(dir, name)
            .map_err(|e| format!("remove existing {:?}: {e}", String::from_utf8_lossy(name)))
    }

    fn set_fd_meta(&self, fd: &OwnedFd, m: &EntryMeta) -> std::result::Result<(), String> {
        rfs::fchown(fd, Some(uid(m.uid)?), Some(gid(m.gid)?))
            .map_err(|e| format!("chown: {}", errno_str(e)))?;
        // after chown, which clears setuid/setgid
        rfs::fchmod(fd, Mode::from_raw_mode(m.mode))
            .map_err(|e| format!("chmod: {}", errno_str(e)))?;
        for (k, v) in &m.xattrs {
            if skip_xattr(k) {
                continue;
            }
            if let Err(e) = rfs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty()) {
                tracing::warn!(layer = self.layer, entry = %String::from_utf8_lossy(&m.path), xattr = %k, error = %errno_str(e), "xattr not applied");
            }
        }
        rfs::futimens(fd, &times(m.mtime)).map_err(|e| format!("set times: {}", errno_str(e)))?;
        Ok(())
    }

    fn set_at_meta(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        m: &EntryMeta,
        is_symlink: bool,
    ) -> std::result::Result<(), String> {
        rfs::chownat(
            dir,
            name,
            Some(uid(m.uid)?),
            Some(gid(m.gid)?),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("chown: {}", errno_str(e)))?;
        if !is_symlink {
            // a device node or fifo we just made; chmodat follows symlinks, so check first
            let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| format!("stat: {}", errno_str(e)))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                rfs::chmodat(dir, name, Mode::from_raw_mode(m.mode), AtFlags::empty())
                    .map_err(|e| format!("chmod: {}", errno_str(e)))?;
            }
        }
        if !m.xattrs.is_empty() {
            // lsetxattr through /proc/self/fd/<dir>: the directory is pinned by its fd, and
            // the last component is not followed
            let p = format!(
                "/proc/self/fd/{}/{}",
                std::os::fd::AsRawFd::as_raw_fd(dir),
                String::from_utf8_lossy(name)
            );
            for (k, v) in &m.xattrs {
                if skip_xattr(k) {
                    continue;
                }
                if let Err(e) = rfs::lsetxattr(p.as_str(), k.as_str(), v, XattrFlags::empty()) {
                    tracing::warn!(layer = self.layer, entry = %String::from_utf8_lossy(&m.path), xattr = %k, error = %errno_str(e), "xattr not applied");
                }
            }
        }
        rfs::utimensat(dir, name, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| format!("set times: {}", errno_str(e)))?;
        Ok(())
    }

    /// Directory times last, deepest first: creating entries inside changes them.
    fn finish_dirs(&mut self) -> std::result::Result<(), String> {
        let mut latest: HashMap<Vec<Vec<u8>>, (i64, u32)> = HashMap::new();
        for (p, t) in std::mem::take(&mut self.dirs) {
            latest.insert(p, t);
        }
        let mut all: Vec<_> = latest.into_iter().collect();
        all.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (p, t) in all {
            let comps: Vec<&[u8]> = p.iter().map(|c| c.as_slice()).collect();
            let fd = match self.open_dir(&comps, false) {
                Ok(fd) => fd.try_clone().map_err(|e| e.to_string())?,
                // replaced by a later entry: nothing to do
                Err(_) => continue,
            };
            rfs::futimens(&fd, &times(t))
                .map_err(|e| format!("set directory times: {}", errno_str(e)))?;
        }
        Ok(())
    }
}

// overlayfs interprets trusted.overlay.* (opaque, redirect, metacopy); a layer must not be
// able to set them except through OCI whiteouts, or it could reach into other layers
fn skip_xattr(k: &str) -> bool {
    k.starts_with("trusted.overlay.")
}

fn uid(u: u64) -> std::result::Result<rfs::Uid, String> {
    u32::try_from(u)
        .map(rfs::Uid::from_raw)
        .map_err(|_| format!("uid {u} out of range"))
}

fn gid(g: u64) -> std::result::Result<rfs::Gid, String> {
    u32::try_from(g)
        .map(rfs::Gid::from_raw)
        .map_err(|_| format!("gid {g} out of range"))
}

fn times(t: (i64, u32)) -> Timestamps {
    let ts = Timespec {
        tv_sec: t.0,
        tv_nsec: t.1 as _,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// Removes `name` in `dir` recursively without following symlinks.
pub(crate) fn remove_all_at(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for ent in rfs::Dir::read_from(&sub)? {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            remove_all_at(&sub, &n)?;
        }
        rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        let c = |s: &str| {
            clean_components(s.as_bytes()).map(|v| {
                v.iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(c("./a/b/").unwrap(), vec!["a", "b"]);
        assert_eq!(c("/etc/passwd").unwrap(), vec!["etc", "passwd"]);
        assert_eq!(c("a/../b").unwrap(), vec!["b"]);
        assert!(c("../../etc/x").is_err());
        assert!(c("a/../../x").is_err());
        assert!(c(&"x".repeat(256)).is_err());
        assert_eq!(c("./").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn compressed_layers_and_diff_ids() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(nix::unistd::geteuid().as_raw() as u64);
        h.set_gid(nix::unistd::getegid().as_raw() as u64);
        h.set_mtime(1_600_000_000);
        h.set_size(5);
        b.append_data(&mut h, "bin/tool", &b"hello"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let diff_id = Digest::of(&tar);
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (name, data) in [("tar", &tar), ("gzip", &gz), ("zstd", &zst)] {
            let dir = tempfile::tempdir().unwrap();
            let st = extract_layer(&data[..], dir.path(), name, Some(&diff_id)).unwrap();
            assert_eq!(st.diff_id, diff_id, "{name}");
            assert_eq!(st.size, 5);
            let md = std::fs::metadata(dir.path().join("bin/tool")).unwrap();
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            assert_eq!(
                md.permissions().mode() & 0o7777,
                0o4755,
                "{name}: setuid kept"
            );
            assert_eq!(md.mtime(), 1_600_000_000);
            let wrong = Digest::of(b"other");
            let dir2 = tempfile::tempdir().unwrap();
            let err = extract_layer(&data[..], dir2.path(), name, Some(&wrong)).unwrap_err();
            assert!(matches!(err, Error::DiffIdMismatch { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn fifos_xattrs_links_and_times() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: fifos_xattrs_links_and_times needs root (chown to other owners)");
            return;
        }
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut b = tar::Builder::new(Vec::new());
        let hdr = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1234);
            h.set_gid(5678);
            h.set_mtime(1_500_000_000);
            h.set_size(size);
            h
        };
        b.append_pax_extensions([
            ("SCHILY.xattr.user.berth", &b"hello"[..]),
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/x"[..]),
        ])
        .unwrap();
        b.append_data(
            &mut hdr(tar::EntryType::Regular, 0o640, 4),
            "d/file",
            &b"data"[..],
        )
        .unwrap();
        b.append_data(&mut hdr(tar::EntryType::Fifo, 0o600, 0), "d/pipe", &[][..])
            .unwrap();
        b.append_link(
            &mut hdr(tar::EntryType::Symlink, 0o777, 0),
            "d/link",
            "file",
        )
        .unwrap();
        b.append_link(
            &mut hdr(tar::EntryType::Link, 0o777, 0),
            "d/hardlink-to-symlink",
            "d/link",
        )
        .unwrap();
        b.append_data(&mut hdr(tar::EntryType::Directory, 0o750, 0), "d/", &[][..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract_layer(&tar[..], dir.path(), "meta", None).unwrap();
        let p = dir.path();
        let f = std::fs::metadata(p.join("d/file")).unwrap();
        assert_eq!(
            (f.uid(), f.gid(), f.mode() & 0o7777, f.mtime()),
            (1234, 5678, 0o640, 1_500_000_000)
        );
        // user xattrs need file system support; the overlay one must never be applied
        if let Ok(Some(v)) = xattr::get(p.join("d/file"), "user.berth") {
            assert_eq!(v, b"hello");
        }
        assert_eq!(
            xattr::get(p.join("d/file"), "trusted.overlay.redirect").unwrap(),
            None
        );
        assert!(std::fs::symlink_metadata(p.join("d/pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
        let l = std::fs::symlink_metadata(p.join("d/link")).unwrap();
        assert!(l.file_type().is_symlink());
        assert_eq!((l.uid(), l.mtime()), (1234, 1_500_000_000));
        let h = std::fs::symlink_metadata(p.join("d/hardlink-to-symlink")).unwrap();
        assert!(h.file_type().is_symlink() && h.ino() == l.ino());
        // the directory's time is set after its entries were made
        let d = std::fs::metadata(p.join("d")).unwrap();
        assert_eq!((d.mode() & 0o7777, d.mtime()), (0o750, 1_500_000_000));
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let me = (
            nix::unistd::geteuid().as_raw() as u64,
            nix::unistd::getegid().as_raw() as u64,
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |kind: tar::EntryType, path: &str, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o755);
            h.set_uid(me.0);
            h.set_gid(me.1);
            h.set_mtime(1);
            h.set_size(data.len() as u64);
            match link {
                Some(l) => b.append_link(&mut h, path, l).unwrap(),
                None => b.append_data(&mut h, path, data).unwrap(),
            }
        };
        add(tar::EntryType::Regular, "f", b"old", None);
        add(tar::EntryType::Regular, "f", b"new", None);
        add(tar::EntryType::Directory, "d/", b"", None);
        add(tar::EntryType::Regular, "d/inner", b"x", None);
        add(tar::EntryType::Regular, "d", b"now a file", None);
        add(tar::EntryType::Symlink, "s", b"", Some("/etc/passwd"));
        add(tar::EntryType::Regular, "s", b"not through the link", None);
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract_layer(&tar[..], dir.path(), "dups", None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert_eq!(std::fs::read(dir.path().join("d")).unwrap(), b"now a file");
        let s = std::fs::symlink_metadata(dir.path().join("s")).unwrap();
        assert!(s.is_file());
        assert_eq!(
            std::fs::read(dir.path().join("s")).unwrap(),
            b"not through the link"
        );
    }

    #[test]
    fn magic() {
        assert_eq!(
            detect_compression(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"etc/\0\0").unwrap(), Compression::None);
        assert!(detect_compression(b"BZh9").is_err());
    }
}
