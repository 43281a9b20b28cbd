//! The content store: blobs addressed by sha256 digest at `<root>/blobs/sha256/<hex>`.
//! Every write goes to a unique temporary name in `<root>/ingest`, is verified (size and
//! digest), fsynced and renamed into place, so a crash never leaves a partial blob under a
//! real name. Writers of the same digest serialise on a per-digest lock file, so the work is
//! done once: the second writer finds the blob present when it gets the lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

use crate::digest::{Digest, Digester};
use crate::error::{Error, Result};

/// A directory of blobs addressed by digest. Cheap to clone; safe to share between threads
/// and processes (all coordination is through the file system).
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) a content store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for d in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&d).map_err(|e| Error::io("create directory", &d, e))?;
        }
        Ok(ContentStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound {
                digest: digest.clone(),
            }),
            Err(e) => Err(Error::io("stat blob", p, e)),
        }
    }

    /// Opens the blob for reading. The content is not verified here (it was on write); use
    /// [`ContentStore::read`] or a [`crate::digest::DigestReader`] to verify as you read.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound {
                digest: digest.clone(),
            },
            _ => Error::io("open blob", p, e),
        })
    }

    /// Reads the whole blob and verifies its digest (catches corruption on disk).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| Error::io("read blob", self.blob_path(digest), e))?;
        let actual = Digest::of(&buf);
        if &actual != digest {
            return Err(Error::BlobDigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    /// Reads a blob that must be small JSON (manifests, configs), refusing anything larger
    /// than `max` bytes before reading it.
    pub fn read_limited(&self, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > max {
            return Err(Error::InvalidArgument(format!(
                "blob {digest} is {size} bytes, more than the {max} allowed"
            )));
        }
        self.read(digest)
    }

    /// Starts writing a blob that must have digest `expected` (and size, if given). Blocks
    /// while another writer of the same digest is at work; if the blob is then present, the
    /// returned writer discards what is written and `commit()` succeeds at once
    /// (check [`BlobWriter::already_present`] to skip the work).
    pub fn writer(&self, expected: &Digest, expected_size: Option<u64>) -> Result<BlobWriter> {
        let lock_path = self
            .root
            .join("ingest")
            .join(format!("{}.lock", expected.hex()));
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open lock file", &lock_path, e))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("lock", &lock_path, io::Error::from(errno)))?;
        if self.has(expected) {
            return Ok(BlobWriter {
                store: self.clone(),
                expected: expected.clone(),
                expected_size,
                state: WriterState::Present,
                _lock: lock,
            });
        }
        let suffix: u64 = rand::thread_rng().gen();
        let tmp = self
            .root
            .join("ingest")
            .join(format!("{}.{suffix:016x}.tmp", expected.hex()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("create temporary blob", &tmp, e))?;
        Ok(BlobWriter {
            store: self.clone(),
            expected: expected.clone(),
            expected_size,
            state: WriterState::Writing {
                file: io::BufWriter::with_capacity(256 * 1024, file),
                tmp,
                digester: Digester::new(),
            },
            _lock: lock,
        })
    }

    /// Writes `data` as a blob (if not already present) and returns its digest.
    pub fn write_bytes(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if self.has(&d) {
            return Ok(d);
        }
        let mut w = self.writer(&d, Some(data.len() as u64))?;
        if !w.already_present() {
            w.write_all(data)
                .map_err(|e| Error::io("write blob", self.blob_path(&d), e))?;
        }
        w.commit()?;
        Ok(d)
    }

    /// Copies everything `r` yields into a blob, computing its digest (for content whose
    /// digest is not known in advance).
    pub fn write_from_reader(&self, r: &mut dyn Read) -> Result<(Digest, u64)> {
        let mut w = self.ingest()?;
        io::copy(r, &mut w).map_err(|e| Error::io("copy into", &w.tmp, e))?;
        w.commit()
    }

    /// A writer for a blob whose digest is known only at the end (a layer we compress
    /// ourselves); `commit()` returns digest and size.
    pub fn ingest(&self) -> Result<IngestWriter> {
        let suffix: u64 = rand::thread_rng().gen();
        let tmp = self
            .root
            .join("ingest")
            .join(format!("unknown.{suffix:016x}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("create temporary blob", &tmp, e))?;
        Ok(IngestWriter {
            store: self.clone(),
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            tmp,
            digester: Digester::new(),
        })
    }

    /// Deletes a blob (no error if absent).
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete blob", p, e)),
        }
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for ent in fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
            let ent = ent.map_err(|e| Error::io("list", &dir, e))?;
            if let Some(name) = ent.file_name().to_str() {
                if let Ok(d) = Digest::from_hex(name) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

struct TempGuard(PathBuf);
impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; failure only weakens crash safety, so it is logged.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "fsync of directory failed");
    }
}

/// See [`ContentStore::ingest`]. Dropped without `commit()`, it deletes its temporary file.
pub struct IngestWriter {
    store: ContentStore,
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    digester: Digester,
}

impl IngestWriter {
    /// Fsyncs and renames the blob into place under its digest.
    pub fn commit(self) -> Result<(Digest, u64)> {
        self.commit_reporting().map(|(d, n, _)| (d, n))
    }

    /// As `commit`, also saying whether the blob is new to the store (false: an identical
    /// one was there already), so that a failed load knows what it added.
    pub fn commit_reporting(self) -> Result<(Digest, u64, bool)> {
        self.commit_with(|_| Ok(()))
    }

    /// As `commit_reporting`, calling `before_rename` with the digest once it is known and
    /// before the blob appears under it (to take a lease on it: from the rename on, a
    /// concurrent gc could see an unreferenced blob).
    pub fn commit_with(
        mut self,
        before_rename: impl FnOnce(&Digest) -> Result<()>,
    ) -> Result<(Digest, u64, bool)> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::InvalidArgument("ingest writer already committed".into()))?;
        // from here on Drop no longer sees the file: this guard removes the temporary blob
        // on every early return (a full disk fails the flush or the fsync)
        let guard = TempGuard(self.tmp.clone());
        let file = file
            .into_inner()
            .map_err(|e| Error::io("flush", &self.tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("fsync", &self.tmp, e))?;
        drop(file);
        let size = self.digester.len();
        let digest = std::mem::take(&mut self.digester).finish();
        before_rename(&digest)?;
        let dest = self.store.blob_path(&digest);
        let new = !dest.exists();
        // renaming over an identical existing blob is harmless
        fs::rename(&self.tmp, &dest).map_err(|e| Error::io("rename blob into place", &dest, e))?;
        std::mem::forget(guard);
        sync_dir(dest.parent().unwrap_or(self.store.root()));
        Ok((digest, size, new))
    }
}

impl Write for IngestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest writer already committed"))?;
        let n = f.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for IngestWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

enum WriterState {
    Writing {
        file: io::BufWriter<File>,
        tmp: PathBuf,
        digester: Digester,
    },
    Present,
    Done,
}

/// Writes one blob; see [`ContentStore::writer`]. Dropping it without `commit()` deletes the
/// temporary file.
pub struct BlobWriter {
    store: ContentStore,
    expected: Digest,
    expected_size: Option<u64>,
    state: WriterState,
    _lock: Flock<File>,
}

impl BlobWriter {
    /// True if the blob was already in the store when this writer got its lock: whatever is
    /// written is discarded.
    pub fn already_present(&self) -> bool {
        matches!(self.state, WriterState::Present)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        match &self.state {
            WriterState::Writing { digester, .. } => digester.len(),
            _ => 0,
        }
    }

    /// The digest this writer expects.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Verifies size and digest, fsyncs and renames the blob into place. On a mismatch the
    /// temporary file is deleted and the error names expected and actual values.
    pub fn commit(mut self) -> Result<Digest> {
        let state = std::mem::replace(&mut self.state, WriterState::Done);
        let (file, tmp, digester) = match state {
            WriterState::Writing {
                file,
                tmp,
                digester,
            } => (file, tmp, digester),
            _ => return Ok(self.expected.clone()),
        };
        let guard = TempGuard(tmp.clone());
        let size = digester.len();
        if let Some(exp) = self.expected_size {
            if exp != size {
                return Err(Error::BlobSizeMismatch {
                    digest: self.expected.clone(),
                    expected: exp,
                    actual: size,
                });
            }
        }
        let actual = digester.finish();
        if actual != self.expected {
            return Err(Error::BlobDigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        let file = file
            .into_inner()
            .map_err(|e| Error::io("flush", &tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(file);
        let dest = self.store.blob_path(&self.expected);
        fs::rename(&tmp, &dest).map_err(|e| Error::io("rename blob into place", &dest, e))?;
        std::mem::forget(guard);
        sync_dir(dest.parent().unwrap_or(self.store.root()));
        tracing::debug!(digest = %self.expected, size, "blob committed");
        Ok(self.expected.clone())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            WriterState::Writing { file, digester, .. } => {
                let n = file.write(buf)?;
                digester.update(&buf[..n]);
                Ok(n)
            }
            WriterState::Present => Ok(buf.len()),
            WriterState::Done => Err(io::Error::other("blob writer already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            WriterState::Writing { file, .. } => file.flush(),
            _ => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let WriterState::Writing { tmp, .. } = &self.state {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_verify() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = cs.write_bytes(b"hello").unwrap();
        assert!(cs.has(&d));
        assert_eq!(cs.size(&d).unwrap(), 5);
        assert_eq!(cs.read(&d).unwrap(), b"hello");
        assert_eq!(cs.list().unwrap(), vec![d.clone()]);
        // corruption on disk is caught on read
        fs::write(cs.blob_path(&d), b"hellO").unwrap();
        assert!(matches!(cs.read(&d), Err(Error::BlobDigestMismatch { .. })));
        cs.delete(&d).unwrap();
        assert!(!cs.has(&d));
        assert!(matches!(cs.read(&d), Err(Error::BlobNotFound { .. })));
    }

    #[test]
    fn mismatch_deletes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"expected");
        let mut w = cs.writer(&d, None).unwrap();
        w.write_all(b"something else").unwrap();
        let err = w.commit().unwrap_err().to_string();
        assert!(
            err.contains(d.as_str()) && err.contains(Digest::of(b"something else").as_str()),
            "{err}"
        );
        assert!(!cs.has(&d));
        let tmps: Vec<_> = fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(tmps.is_empty());
        let mut w = cs.writer(&Digest::of(b"abc"), Some(4)).unwrap();
        w.write_all(b"abc").unwrap();
        assert!(matches!(
            w.commit(),
            Err(Error::BlobSizeMismatch {
                expected: 4,
                actual: 3,
                ..
            })
        ));
    }

    #[test]
    fn concurrent_writers_once() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let data = vec![7u8; 1 << 20];
        let d = Digest::of(&data);
        let worked = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut w = cs.writer(&d, Some(data.len() as u64)).unwrap();
                    if !w.already_present() {
                        worked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        w.write_all(&data).unwrap();
                    }
                    w.commit().unwrap();
                });
            }
        });
        assert_eq!(worked.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(cs.read(&d).unwrap(), data);
    }
}
