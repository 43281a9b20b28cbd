//! Turns a snapshot's upper directory (a container's changes, in overlayfs format) back into
//! a layer tar with OCI whiteouts: a 0:0 character device becomes `.wh.<name>`, a directory
//! with `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry. Used by commit and build, and
//! by `import` to store a root filesystem tarball as a compressed layer.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::content::ContentStore;
use crate::digest::{Digest, Digester};
use crate::error::{Error, Result};
use crate::extract::{OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use crate::manifest;

/// A layer blob written to the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    pub media_type: String,
}

/// A writer that digests what passes through it (the diff ID of a tar on its way into a
/// compressor).
pub struct TeeDigest<W: Write> {
    inner: W,
    digester: Digester,
}

impl<W: Write> TeeDigest<W> {
    pub fn new(inner: W) -> Self {
        TeeDigest {
            inner,
            digester: Digester::new(),
        }
    }
    pub fn finish(self) -> (Digest, W) {
        (self.digester.finish(), self.inner)
    }
}

impl<W: Write> Write for TeeDigest<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the changes in `upper` as a layer tar to `w`.
pub fn write_diff<W: Write>(upper: &Path, w: W) -> Result<W> {
    let err = |e: io::Error, p: &Path| Error::io("write layer diff of", p, e);
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for ent in walkdir::WalkDir::new(upper)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let ent = ent.map_err(|e| Error::io("walk", upper, e.into()))?;
        let path = ent.path();
        let rel = path
            .strip_prefix(upper)
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "{} is not under {}",
                    path.display(),
                    upper.display()
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?;
        let ft = md.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        if ft.is_char_device() && md.rdev() == 0 {
            // overlayfs whiteout → OCI whiteout
            let (dir, name) = match rel.rsplit_once('/') {
                Some((d, n)) => (format!("{d}/"), n.to_string()),
                None => (String::new(), rel.clone()),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("{dir}{WHITEOUT_PREFIX}{name}"), io::empty())
                .map_err(|e| err(e, path))?;
            continue;
        }
        append_xattrs(&mut b, path).map_err(|e| err(e, path))?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{rel}/"), io::empty())
                .map_err(|e| err(e, path))?;
            if matches!(xattr::get(path, OPAQUE_XATTR), Ok(Some(v)) if v == b"y") {
                let mut oh = tar::Header::new_gnu();
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_mode(0o644);
                oh.set_size(0);
                oh.set_uid(0);
                oh.set_gid(0);
                oh.set_mtime(md.mtime().max(0) as u64);
                b.append_data(&mut oh, format!("{rel}/{WHITEOUT_OPAQUE}"), io::empty())
                    .map_err(|e| err(e, path))?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| Error::io("read link", path, e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &rel, &target)
                .map_err(|e| err(e, path))?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &rel, first)
                        .map_err(|e| err(e, path))?;
                    continue;
                }
                links.insert(key, rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
            b.append_data(&mut h, &rel, f.take(md.len()))
                .map_err(|e| err(e, path))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            let rdev = md.rdev();
            h.set_device_major(rustix::fs::major(rdev))
                .map_err(|e| err(e, path))?;
            h.set_device_minor(rustix::fs::minor(rdev))
                .map_err(|e| err(e, path))?;
            b.append_data(&mut h, &rel, io::empty())
                .map_err(|e| err(e, path))?;
        } else {
            tracing::debug!(path = %path.display(), "socket or unknown file type left out of the diff");
        }
    }
    b.into_inner().map_err(|e| err(e, upper))
}

fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let mut exts: Vec<(String, Vec<u8>)> = Vec::new();
    let Ok(names) = xattr::list(path) else {
        return Ok(());
    };
    for n in names {
        let n = n.to_string_lossy().into_owned();
        // overlayfs' own attributes are translated (opaque) or meaningless in a layer
        if n.starts_with("trusted.overlay.") {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(path, &n) {
            exts.push((format!("SCHILY.xattr.{n}"), v));
        }
    }
    if exts.is_empty() {
        return Ok(());
    }
    b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// Writes the diff of `upper` into the content store as a gzip-compressed layer.
pub fn diff_to_blob(content: &ContentStore, upper: &Path) -> Result<LayerBlob> {
    let ingest = content.ingest()?;
    let gz = flate2::write::GzEncoder::new(ingest, flate2::Compression::fast());
    let tee = write_diff(upper, TeeDigest::new(gz))?;
    let (diff_id, gz) = tee.finish();
    let ingest = gz
        .finish()
        .map_err(|e| Error::io("compress layer of", upper, e))?;
    let (digest, size) = ingest.commit()?;
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
        media_type: manifest::OCI_LAYER_GZIP.to_string(),
    })
}

/// A reader that copies everything read through it into a writer (the compressed bytes of
/// an already-compressed layer on their way into the content store).
struct TeeRead<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for TeeRead<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Stores a layer tar stream as a layer blob, computing its diff ID on the way (for
/// `import`). A gzip or zstd stream is stored as it is (no recompression: the costly part of
/// importing a big compressed rootfs); a plain tar is gzip-compressed.
pub fn tar_to_blob(content: &ContentStore, r: impl Read, what: &str) -> Result<LayerBlob> {
    let mut br = io::BufReader::with_capacity(1 << 20, r);
    let head = io::BufRead::fill_buf(&mut br).map_err(|e| Error::io("read layer", what, e))?;
    let compression =
        crate::extract::detect_compression(head).map_err(|reason| Error::ExtractLayer {
            layer: what.to_string(),
            reason,
        })?;
    let media_type = match compression {
        crate::extract::Compression::Gzip => manifest::OCI_LAYER_GZIP,
        crate::extract::Compression::Zstd => manifest::OCI_LAYER_ZSTD,
        crate::extract::Compression::None => {
            let ingest = content.ingest()?;
            let gz = flate2::write::GzEncoder::new(ingest, flate2::Compression::fast());
            let mut tee = TeeDigest::new(gz);
            io::copy(&mut br, &mut tee).map_err(|e| Error::io("read layer", what, e))?;
            let (diff_id, gz) = tee.finish();
            let ingest = gz
                .finish()
                .map_err(|e| Error::io("compress layer", what, e))?;
            let (digest, size) = ingest.commit()?;
            return Ok(LayerBlob {
                digest,
                diff_id,
                size,
                media_type: manifest::OCI_LAYER_GZIP.to_string(),
            });
        }
    };
    let mut tee = TeeRead {
        inner: br,
        out: content.ingest()?,
    };
    let mut digester = Digester::new();
    {
        let mut plain = crate::extract::decompress(&mut tee, what)?;
        io::copy(&mut plain, &mut digester).map_err(|e| Error::io("decompress layer", what, e))?;
    }
    // whatever follows the compressed stream belongs to the blob too
    io::copy(&mut tee, &mut io::sink()).map_err(|e| Error::io("read layer", what, e))?;
    let (digest, size) = tee.out.commit()?;
    Ok(LayerBlob {
        digest,
        diff_id: digester.finish(),
        size,
        media_type: media_type.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn compressed_imports_are_stored_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&tar).unwrap();
        let gz = e.finish().unwrap();
        let l = tar_to_blob(&cs, &gz[..], "gz").unwrap();
        assert_eq!(l.digest, Digest::of(&gz));
        assert_eq!(l.diff_id, Digest::of(&tar));
        assert_eq!(l.media_type, manifest::OCI_LAYER_GZIP);
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        let l = tar_to_blob(&cs, &zst[..], "zst").unwrap();
        assert_eq!((l.digest, l.diff_id), (Digest::of(&zst), Digest::of(&tar)));
        let l = tar_to_blob(&cs, &tar[..], "plain").unwrap();
        assert_eq!(l.diff_id, Digest::of(&tar));
        assert_eq!(cs.read(&l.digest).unwrap()[..2], [0x1f, 0x8b]);
    }

    // needs CAP_MKNOD and trusted.* xattrs (root)
    #[test]
    fn whiteouts_round_trip() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: whiteouts_round_trip needs root (mknod, trusted xattrs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // a layer with a whiteout, an opaque dir, a hard link and a symlink
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            match link {
                Some(l) => b.append_link(&mut h, path, l).unwrap(),
                None => b.append_data(&mut h, path, data).unwrap(),
            }
        };
        add("a/", tar::EntryType::Directory, b"", None);
        add("a/.wh.gone", tar::EntryType::Regular, b"", None);
        add("o/", tar::EntryType::Directory, b"", None);
        add("o/.wh..wh..opq", tar::EntryType::Regular, b"", None);
        add("o/new", tar::EntryType::Regular, b"n", None);
        add("f", tar::EntryType::Regular, b"data", None);
        add("h", tar::EntryType::Link, b"", Some("f"));
        add("s", tar::EntryType::Symlink, b"", Some("/etc/passwd"));
        let layer = b.into_inner().unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir(&upper).unwrap();
        crate::extract::extract_layer(&layer[..], &upper, "test", None).unwrap();
        let md = fs::symlink_metadata(upper.join("a/gone")).unwrap();
        assert!(md.file_type().is_char_device() && md.rdev() == 0);
        assert_eq!(
            xattr::get(upper.join("o"), OPAQUE_XATTR)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(
            fs::read_link(upper.join("s")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs::metadata(upper.join("h")).unwrap().ino(),
            fs::metadata(upper.join("f")).unwrap().ino()
        );

        let out = write_diff(&upper, Vec::new()).unwrap();
        let got = entries(&out);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "a/",
                "a/.wh.gone",
                "f",
                "h",
                "o/",
                "o/.wh..wh..opq",
                "o/new",
                "s"
            ]
        );
        assert_eq!(got[3].1, tar::EntryType::Link);
        assert_eq!(got[7].1, tar::EntryType::Symlink);

        // and the diff unpacks to the same upper
        let again = dir.path().join("again");
        fs::create_dir(&again).unwrap();
        crate::extract::extract_layer(&out[..], &again, "again", None).unwrap();
        assert!(fs::symlink_metadata(again.join("a/gone"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(
            xattr::get(again.join("o"), OPAQUE_XATTR)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
    }
}
