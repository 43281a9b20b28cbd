//! The image store: the content store, the metadata database and the snapshotter together.
//! `register` turns blobs already in the content store (manifest, config, layers) into an
//! image: it unpacks the layers that are not yet snapshots and records the image and its tag
//! in one transaction. Lookups follow Docker's rules (reference, full or short image ID).

use crate::db::Cached;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{params, OptionalExtension};

use crate::content::ContentStore;
use crate::db::{now, Db};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::extract;
use crate::manifest::{
    self, chain_ids, parse_manifest, select_platform, ImageConfig, Manifest, ManifestDoc, Platform,
    MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use crate::reference::Reference;
use crate::snapshot::{Kind, Mount, OverlaySnapshotter, Snapshotter};

/// Owner prefix of the leases a registration holds while it works (they are not
/// containers: `rmi` does not count them as users).
const REGISTER_OWNER: &str = "berth.register/";

/// How long gc leaves unreferenced blobs and layer snapshots alone after they were written,
/// so that a pull in progress (blobs in, image not yet registered) is not collected.
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

/// Mode of the data root: root may enter, its group may traverse (as /var/lib/docker), nobody
/// else.
pub const DATA_ROOT_MODE: u32 = 0o710;
/// Mode of `content/`, `snapshots/` and each layer directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) if needed and makes its mode exactly `mode`.
pub(crate) fn ensure_private_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
            }
            match fs::DirBuilder::new().mode(mode).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create directory", dir, e)),
            }
        }
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    // the umask may have narrowed the mode, an old store may have a wider one; and it must be
    // a real directory, not a symlink to somewhere else
    let md = fs::symlink_metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
    if !md.is_dir() {
        return Err(Error::io(
            "use as a store directory",
            dir,
            std::io::Error::other("not a directory"),
        ));
    }
    if md.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set the mode of", dir, e))?;
    }
    Ok(())
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest: Docker's image ID.
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// Layer blob digests (compressed), bottom first.
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
    pub chain_ids: Vec<Digest>,
    /// References tagged to this image.
    pub repo_tags: Vec<Reference>,
    /// `name@digest` references it was pulled or pushed by.
    pub repo_digests: Vec<Reference>,
    /// Sum of the unpacked layer sizes.
    pub size: u64,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// When this store got the image.
    pub added: String,
}

impl Image {
    /// The chain ID of the top layer: the parent snapshot of a container (None for an image
    /// with no layers).
    pub fn top_snapshot(&self) -> Option<String> {
        self.chain_ids.last().map(|d| d.to_string())
    }
}

/// What `remove` did, in Docker's words (`Untagged: ...`, `Deleted: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveAction {
    Untagged(String),
    Deleted(Digest),
}

/// What `gc` removed.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<String>,
    pub bytes: u64,
}

/// Content store + metadata + snapshots under one data root.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    db: Db,
    snapshots: OverlaySnapshotter,
    platform: Platform,
    /// Parsed manifests and configs by (image ID, manifest digest): both are content
    /// addressed, so never stale; a create, a start and a health check each read the image,
    /// and reading and parsing two blobs each time cost more than the rest of `get`.
    parsed: ParsedCache,
}

type ParsedCache = std::sync::Arc<
    std::sync::Mutex<HashMap<(Digest, Digest), std::sync::Arc<(Manifest, ImageConfig)>>>,
>;

/// [`ImageStore`]'s parsed-blob cache is emptied when it holds this many images.
const PARSED_CACHE: usize = 256;

impl ImageStore {
    /// Opens the store under `data_root` (`content/`, `berth.db`, `snapshots/`).
    ///
    /// Modes, as Docker keeps /var/lib/docker: the data root is 0710 and `content/` and
    /// `snapshots/` 0700, so no other user can reach a layer's files. Layers hold whatever
    /// an image carries (setuid-root or file-capability binaries, device nodes), and the store
    /// is on a file system without nosuid: a traversable store is a local root exploit.
    /// A store made by an older berth with 0755 directories is fixed here.
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        ensure_private_dir(data_root, DATA_ROOT_MODE)?;
        ensure_private_dir(&data_root.join("content"), PRIVATE_DIR_MODE)?;
        let content = ContentStore::open(data_root.join("content"))?;
        let db = Db::open(&data_root.join("berth.db"))?;
        let snapshots = OverlaySnapshotter::new(data_root.join("snapshots"), db.clone())?;
        Ok(ImageStore {
            root: data_root.to_path_buf(),
            content,
            db,
            snapshots,
            platform: Platform::host(),
            parsed: Default::default(),
        })
    }

    /// Uses `p` instead of the host platform when choosing from an index.
    pub fn with_platform(mut self, p: Platform) -> Self {
        self.platform = p;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn content(&self) -> &ContentStore {
        &self.content
    }
    pub fn snapshotter(&self) -> &OverlaySnapshotter {
        &self.snapshots
    }
    pub fn db(&self) -> &Db {
        &self.db
    }
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Validates a manifest or index (size, JSON, media type) and stores it; returns its
    /// digest and effective media type. For the registry client after fetching one.
    pub fn store_manifest(
        &self,
        bytes: &[u8],
        declared_media_type: Option<&str>,
    ) -> Result<(Digest, String)> {
        let (mt, _) = parse_manifest(bytes, declared_media_type, "manifest")?;
        Ok((self.content.write_bytes(bytes)?, mt))
    }

    /// Reads a stored manifest or index: its bytes, media type and parsed form.
    pub fn read_manifest(&self, digest: &Digest) -> Result<(Vec<u8>, String, ManifestDoc)> {
        let bytes = self.content.read_limited(digest, MAX_MANIFEST_SIZE)?;
        let (mt, doc) = parse_manifest(&bytes, None, digest.as_str())?;
        Ok((bytes, mt, doc))
    }

    /// The manifest of an image, as bytes and media type (what a push sends).
    pub fn manifest_bytes(&self, image: &Image) -> Result<(Vec<u8>, String)> {
        let bytes = self
            .content
            .read_limited(&image.manifest_digest, MAX_MANIFEST_SIZE)?;
        Ok((bytes, image.manifest_media_type.clone()))
    }

    /// Given an index or manifest digest, the manifest for this store's platform.
    pub fn resolve_platform_manifest(&self, digest: &Digest) -> Result<(Digest, String, Manifest)> {
        let (_, mt, doc) = self.read_manifest(digest)?;
        match doc {
            ManifestDoc::Manifest(m) => Ok((digest.clone(), mt, *m)),
            ManifestDoc::Index(idx) => {
                let d = select_platform(&idx, digest, &self.platform)?
                    .digest
                    .clone();
                let (_, mt, doc) = self.read_manifest(&d)?;
                match doc {
                    ManifestDoc::Manifest(m) => Ok((d, mt, *m)),
                    ManifestDoc::Index(_) => Err(Error::UnsupportedMediaType {
                        media_type: mt,
                        object: format!("{d} (nested index)"),
                    }),
                }
            }
        }
    }

    /// Makes an image from blobs already in the content store: `manifest_digest` is a
    /// manifest or an index (then the platform's manifest is used); unpacks missing layers;
    /// records the image, tags `reference` (unless it has only a digest) and records the
    /// repo digest. Idempotent.
    pub fn register(&self, reference: &Reference, manifest_digest: &Digest) -> Result<Image> {
        self.register_with(reference, manifest_digest, true)
    }

    /// As `register`; `record_repo_digest` false for images that did not come from a
    /// registry (load, import, build), which have no `RepoDigests` in Docker either.
    pub fn register_with(
        &self,
        reference: &Reference,
        manifest_digest: &Digest,
        record_repo_digest: bool,
    ) -> Result<Image> {
        let tags: Vec<Reference> = if reference.tag.is_some() || reference.digest.is_none() {
            vec![reference.with_tag_only()]
        } else {
            Vec::new()
        };
        let repo_digest = record_repo_digest.then(|| Reference {
            tag: None,
            digest: Some(manifest_digest.clone()),
            ..reference.clone()
        });
        let id = self.register_full(manifest_digest, &tags, repo_digest.as_ref())?;
        self.get(&id)
    }

    /// As `register_untagged`, also tagging `tags` in the same transaction that records the
    /// image: no moment in which a concurrent prune or rmi sees it untagged (dangling).
    pub fn register_tagged(&self, manifest_digest: &Digest, tags: &[Reference]) -> Result<Digest> {
        let tags: Vec<Reference> = tags.iter().map(|t| t.with_tag_only()).collect();
        self.register_full(manifest_digest, &tags, None)
    }

    /// As `register` without a reference (a dangling image, e.g. `load` of an untagged one).
    /// Returns the image ID.
    ///
    /// Concurrency: no store-wide lock. The registration leases every blob and layer it
    /// uses (owner `berth.register/...`) before it relies on it, and gc deletes only what no
    /// lease or image holds, each check and delete in one write transaction; so a layer
    /// found present stays until the image that needs it is recorded, and an rmi or prune
    /// never waits for an unpack.
    pub fn register_untagged(&self, manifest_digest: &Digest) -> Result<Digest> {
        self.register_full(manifest_digest, &[], None)
    }

    fn register_full(
        &self,
        manifest_digest: &Digest,
        tags: &[Reference],
        repo_digest: Option<&Reference>,
    ) -> Result<Digest> {
        let owner = format!("{REGISTER_OWNER}{:016x}", rand::random::<u64>());
        let mut created = Vec::new();
        let result = self.register_leased(manifest_digest, &owner, &mut created, tags, repo_digest);
        if let Err(e) = self.drop_leases(&owner) {
            tracing::warn!(owner, error = %e, "could not drop a registration's leases");
        }
        if result.is_err() && !created.is_empty() {
            // a failed registration leaves no layer behind that it unpacked
            if let Err(e) = self.discard_layers(&created) {
                tracing::warn!(error = %e, "could not remove the layers of a failed registration");
            }
        }
        result
    }

    /// Removes the layer snapshots `keys` (in chain order) that no image, lease or child
    /// uses (the layers a failed registration or pull unpacked).
    pub fn discard_layers(&self, keys: &[Digest]) -> Result<()> {
        let mut dirs = Vec::new();
        for k in keys.iter().rev() {
            if let Some(d) = self.delete_snapshot_if_unused(k.as_str())? {
                dirs.push(d);
            }
        }
        remove_dirs(&dirs);
        Ok(())
    }

    /// Holds blob `d` for `owner`, then checks it is there (a gc that ran before the lease
    /// may have deleted it; one after it will not).
    fn lease_present_blob(&self, d: &Digest, owner: &str) -> Result<()> {
        self.add_blob_ref(d, owner)?;
        if !self.content.has(d) {
            return Err(Error::BlobNotFound { digest: d.clone() });
        }
        Ok(())
    }

    /// Holds committed snapshot `key` for `owner` if it exists; false if it does not. One
    /// statement, so atomic with gc's conditional delete.
    fn lease_snapshot(&self, key: &str, owner: &str) -> Result<bool> {
        let conn = self.db.lock();
        conn.exec_c(
            "INSERT OR IGNORE INTO leases (snapshot_key, owner, created) SELECT ?1, ?2, ?3 \
             WHERE EXISTS (SELECT 1 FROM snapshots WHERE key = ?1 AND kind = 'committed')",
            params![key, owner, now()],
        )
        .map_err(Error::db("add lease"))?;
        let n: i64 = conn
            .row_c(
                "SELECT COUNT(*) FROM leases WHERE snapshot_key = ?1 AND owner = ?2",
                params![key, owner],
                |r| r.get(0),
            )
            .map_err(Error::db("look up lease"))?;
        Ok(n > 0)
    }

    /// Drops the leases of loads, pulls and registrations that died without dropping them
    /// (a day old: none of those runs that long).
    fn expire_stale_leases(&self) -> Result<()> {
        let day_ago = (chrono::Utc::now() - chrono::Duration::hours(24))
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let transient = "(owner LIKE 'berth.load/%' OR owner LIKE 'berth.pull/%' OR owner LIKE 'berth.register/%')";
        let conn = self.db.lock();
        conn.exec_c(
            &format!("DELETE FROM blob_leases WHERE {transient} AND created < ?1"),
            [&day_ago],
        )
        .map_err(Error::db("expire blob leases"))?;
        conn.exec_c(
            &format!("DELETE FROM leases WHERE {transient} AND created < ?1"),
            [&day_ago],
        )
        .map_err(Error::db("expire leases"))?;
        Ok(())
    }

    /// Drops every snapshot and blob lease of `owner`.
    fn drop_leases(&self, owner: &str) -> Result<()> {
        let conn = self.db.lock();
        conn.exec_c("DELETE FROM leases WHERE owner = ?1", [owner])
            .map_err(Error::db("remove leases"))?;
        conn.exec_c("DELETE FROM blob_leases WHERE owner = ?1", [owner])
            .map_err(Error::db("remove blob leases"))?;
        Ok(())
    }

    /// Deletes the row of snapshot `key` if no image, lease or child snapshot needs it, in
    /// one write transaction; returns its directory, for the caller to remove outside any
    /// lock (the id is never reused: AUTOINCREMENT).
    fn delete_snapshot_if_unused(&self, key: &str) -> Result<Option<PathBuf>> {
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("begin"))?;
        let id: Option<i64> = tx
            .row_c(
                "SELECT id FROM snapshots s WHERE s.key = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM snapshots c WHERE c.parent = ?1) \
                 AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.snapshot_key = ?1) \
                 AND NOT EXISTS (SELECT 1 FROM image_layers i WHERE i.chain_id = ?1)",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::db("look up snapshot"))?;
        let Some(id) = id else {
            return Ok(None);
        };
        tx.exec_c("DELETE FROM snapshots WHERE id = ?1", [id])
            .map_err(Error::db("delete snapshot"))?;
        tx.commit().map_err(Error::db("commit"))?;
        Ok(Some(self.snapshots.dir_of(id)))
    }

    /// Deletes blob `d` if no image or lease needs it; the check and the unlink happen inside
    /// one write transaction, so a lease taken concurrently either comes first (and keeps
    /// the blob) or finds it gone. Returns the bytes freed.
    fn delete_blob_if_unused(&self, d: &Digest, ignoring: Option<&str>) -> Result<Option<u64>> {
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("begin"))?;
        let used: i64 = tx
            .row_c(
                "SELECT EXISTS (SELECT 1 FROM image_blobs WHERE digest = ?1) \
                 OR EXISTS (SELECT 1 FROM image_layers WHERE blob_digest = ?1) \
                 OR EXISTS (SELECT 1 FROM blob_leases WHERE digest = ?1 AND owner IS NOT ?2)",
                params![d.as_str(), ignoring],
                |r| r.get(0),
            )
            .map_err(Error::db("look up blob references"))?;
        if used != 0 {
            return Ok(None);
        }
        let size = self.content.size(d).ok();
        self.content.delete(d)?;
        tx.commit().map_err(Error::db("commit"))?;
        Ok(size)
    }

    fn register_leased(
        &self,
        manifest_digest: &Digest,
        owner: &str,
        created: &mut Vec<Digest>,
        tags: &[Reference],
        repo_digest: Option<&Reference>,
    ) -> Result<Digest> {
        self.lease_present_blob(manifest_digest, owner)?;
        let (mdigest, mt, m) = self.resolve_platform_manifest(manifest_digest)?;
        self.lease_present_blob(&mdigest, owner)?;
        self.lease_present_blob(&m.config.digest, owner)?;
        for l in &m.layers {
            // not required to be present: a layer already unpacked needs no blob
            self.add_blob_ref(&l.digest, owner)?;
        }
        let config_bytes = self
            .content
            .read_limited(&m.config.digest, MAX_CONFIG_SIZE)?;
        let config = ImageConfig::parse(&config_bytes, m.config.digest.as_str())?;
        let diff_ids = config.rootfs.diff_ids.clone();
        let layers: Vec<&manifest::Descriptor> = m.layers.iter().collect();
        if diff_ids.len() != layers.len() {
            return Err(Error::InvalidArgument(format!(
                "image {}: manifest has {} layers but config has {} diff IDs",
                m.config.digest,
                layers.len(),
                diff_ids.len()
            )));
        }
        for l in &layers {
            if !manifest::is_layer_type(&l.media_type) {
                return Err(Error::UnsupportedMediaType {
                    media_type: l.media_type.clone(),
                    object: format!("layer {}", l.digest),
                });
            }
        }
        let chains = chain_ids(&diff_ids);
        let mut todo = Vec::new();
        for (i, c) in chains.iter().enumerate() {
            if !self.lease_snapshot(c.as_str(), owner)? {
                todo.push(i);
                created.push(c.clone());
            }
        }
        self.unpack_layers(&layers, &diff_ids, &chains, todo.clone())?;
        for i in todo {
            // another registration may have unpacked it first, and an rmi may have removed
            // that one before this lease: then unpack once more
            let mut tries = 0;
            while !self.lease_snapshot(chains[i].as_str(), owner)? {
                tries += 1;
                if tries > 3 {
                    return Err(Error::SnapshotNotFound {
                        key: chains[i].to_string(),
                    });
                }
                let parent = (i > 0).then(|| chains[i - 1].to_string());
                self.unpack_layer(
                    &layers[i].digest,
                    &diff_ids[i],
                    &chains[i],
                    parent.as_deref(),
                )?;
            }
        }
        let mut size = 0u64;
        for c in &chains {
            size += self.snapshots.recorded_size(c.as_str())?;
        }
        let id = m.config.digest.clone();
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("begin"))?;
        let exists: Option<String> = tx
            .row_c(
                "SELECT manifest_digest FROM images WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::db("look up image"))?;
        match exists {
            Some(_) => {
                // same config from another manifest (e.g. recompressed): keep the newest
                tx.exec_c(
                    "UPDATE images SET manifest_digest = ?2, manifest_media_type = ?3 WHERE id = ?1",
                    params![id.as_str(), mdigest.as_str(), mt],
                )
                .map_err(Error::db("update image"))?;
                tx.exec_c(
                    "DELETE FROM image_layers WHERE image_id = ?1",
                    [id.as_str()],
                )
                .map_err(Error::db("update image layers"))?;
            }
            None => {
                tx.exec_c(
                    "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size, added) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id.as_str(), mdigest.as_str(), mt, config.created, size as i64, now()],
                )
                .map_err(Error::db("insert image"))?;
            }
        }
        for (i, l) in layers.iter().enumerate() {
            tx.exec_c(
                "INSERT INTO image_layers (image_id, idx, blob_digest, diff_id, chain_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.as_str(), i as i64, l.digest.as_str(), diff_ids[i].as_str(), chains[i].as_str()],
            )
            .map_err(Error::db("insert image layer"))?;
        }
        for d in [&mdigest, &id, manifest_digest] {
            tx.exec_c(
                "INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?1, ?2)",
                params![id.as_str(), d.as_str()],
            )
            .map_err(Error::db("record image blob"))?;
        }
        for t in tags {
            tag_tx(&tx, t, &id)?;
        }
        if let Some(rd) = repo_digest {
            tx.exec_c(
                "INSERT OR REPLACE INTO repo_digests (reference, image_id) VALUES (?1, ?2)",
                params![rd.to_string(), id.as_str()],
            )
            .map_err(Error::db("record repo digest"))?;
        }
        tx.commit().map_err(Error::db("commit"))?;
        tracing::info!(image = %id, manifest = %mdigest, layers = layers.len(), "image registered");
        Ok(id)
    }

    /// Unpacks one layer blob (already in the content store) as the snapshot for `chain_id`,
    /// unless it exists. For a registry client that wants unpacking to overlap downloads: call
    /// it for each layer as soon as its blob is committed (diff IDs from the config, chain IDs
    /// from [`manifest::chain_ids`], `parent` the previous layer's chain ID); `register` then
    /// finds the snapshots present. Safe to call concurrently, also from several processes.
    pub fn unpack_layer_blob(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
    ) -> Result<()> {
        let parent = parent.map(|p| p.to_string());
        self.unpack_layer(blob, diff_id, chain_id, parent.as_deref())
    }

    /// Unpacks the layers that are not yet snapshots, several at once: a layer's directory
    /// does not depend on its parent's content (only the mount stacks them), so each is
    /// extracted on its own and committed with its parent's key. Decompression is CPU-bound,
    /// so this uses every core where Docker unpacks one layer after the other.
    fn unpack_layers(
        &self,
        layers: &[&manifest::Descriptor],
        diff_ids: &[Digest],
        chains: &[Digest],
        todo: Vec<usize>,
    ) -> Result<()> {
        if todo.is_empty() {
            return Ok(());
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(todo.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let errors = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&i) = todo.get(n) else { break };
                    if failed.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let parent = if i == 0 {
                        None
                    } else {
                        Some(chains[i - 1].to_string())
                    };
                    if let Err(e) = self.unpack_layer(
                        &layers[i].digest,
                        &diff_ids[i],
                        &chains[i],
                        parent.as_deref(),
                    ) {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((i, e));
                    }
                });
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
        errors.sort_by_key(|(i, _)| *i);
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Unpacks layer blob `blob` as committed snapshot `chain` (recording `parent` as its
    /// parent key) unless it exists. Processes that unpack the same layer serialise on a
    /// lock file, so it is done once; only one lock is held at a time (no lock-order
    /// deadlock between processes unpacking overlapping images).
    fn unpack_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<&str>,
    ) -> Result<()> {
        let key = chain.to_string();
        if self.snapshots.exists(&key)? {
            return Ok(());
        }
        let locks = self.snapshots.root().join("locks");
        fs::create_dir_all(&locks).map_err(|e| Error::io("create directory", &locks, e))?;
        let lock_path = locks.join(chain.hex());
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open lock file", &lock_path, e))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("lock", &lock_path, errno.into()))?;
        if self.snapshots.exists(&key)? {
            return Ok(());
        }
        let tmp_key = format!("extract-{}-{}", std::process::id(), chain.hex());
        // a previous attempt of this process id that crashed
        if self.snapshots.exists(&tmp_key)? {
            self.snapshots.remove(&tmp_key)?;
        }
        self.snapshots.prepare(&tmp_key, None)?;
        // held while it is being filled: however long the unpack takes, no gc removes it;
        // the lease follows it to its committed key and is dropped there
        let owner = format!("{REGISTER_OWNER}{tmp_key}");
        self.snapshots.add_lease(&tmp_key, &owner)?;
        let result = (|| {
            let dir = self.snapshots.upper_dir(&tmp_key)?;
            let f = self.content.open_blob(blob)?;
            // verify the compressed blob as it streams, too: a corrupted blob on disk must not
            // become a layer
            let mut dr = crate::digest::DigestReader::new(f);
            let stats = extract::extract_layer(&mut dr, &dir, blob.as_str(), Some(diff_id))?;
            std::io::copy(&mut dr, &mut std::io::sink())
                .map_err(|e| Error::io("read blob", self.content.blob_path(blob), e))?;
            let (actual, _) = dr.finish();
            if &actual != blob {
                return Err(Error::BlobDigestMismatch {
                    expected: blob.clone(),
                    actual,
                });
            }
            self.snapshots
                .commit_as(&key, &tmp_key, parent, stats.size)?;
            self.snapshots.remove_lease(&key, &owner)?;
            tracing::debug!(layer = %blob, chain = %chain, size = stats.size, entries = stats.entries, "layer unpacked");
            Ok(())
        })();
        if result.is_err() {
            if let Err(e) = self.snapshots.discard_active(&tmp_key) {
                tracing::warn!(key = tmp_key, error = %e, "could not remove failed extraction snapshot");
            }
        }
        result
    }

    /// `docker commit`: the changes in container snapshot `key` (prepared over `base`, or over
    /// nothing) become a new layer on top of `base`'s; `config` replaces the runtime config
    /// (None keeps the base's); `created_by`/`comment` go into the history.
    pub fn commit_container(
        &self,
        key: &str,
        base: Option<&Image>,
        config: Option<manifest::ContainerConfig>,
        created_by: &str,
        comment: Option<&str>,
        reference: Option<&Reference>,
    ) -> Result<Image> {
        self.commit_container_by(key, base, config, created_by, comment, None, reference)
    }

    /// [`ImageStore::commit_container`] with the image's `author` (`docker commit --author`).
    #[allow(clippy::too_many_arguments)]
    pub fn commit_container_by(
        &self,
        key: &str,
        base: Option<&Image>,
        config: Option<manifest::ContainerConfig>,
        created_by: &str,
        comment: Option<&str>,
        author: Option<&str>,
        reference: Option<&Reference>,
    ) -> Result<Image> {
        let upper = self.snapshots.upper_dir(key)?;
        let layer = self.commit_upper(key, &upper, base)?;
        let mut layers: Vec<crate::diff::LayerBlob> = match base {
            Some(b) => b
                .manifest
                .layers
                .iter()
                .zip(&b.diff_ids)
                .map(|(d, diff_id)| crate::diff::LayerBlob {
                    digest: d.digest.clone(),
                    diff_id: diff_id.clone(),
                    size: d.size,
                    media_type: d.media_type.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        layers.push(layer);
        let now = now();
        let p = &self.platform;
        let mut cfg = match base {
            Some(b) => b.config.clone(),
            None => ImageConfig {
                created: None,
                author: None,
                architecture: p.architecture.clone(),
                os: p.os.clone(),
                variant: p.variant.clone(),
                config: None,
                rootfs: manifest::RootFs {
                    typ: "layers".into(),
                    diff_ids: vec![],
                },
                history: None,
                extra: Default::default(),
            },
        };
        cfg.created = Some(now.clone());
        if config.is_some() {
            cfg.config = config;
        }
        if let Some(a) = author {
            cfg.author = Some(a.to_string());
        }
        cfg.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
        cfg.history
            .get_or_insert_with(Vec::new)
            .push(manifest::History {
                created: Some(now),
                created_by: Some(created_by.to_string()),
                comment: comment.map(str::to_string),
                ..Default::default()
            });
        self.create_image(&cfg, &layers, reference)
    }

    /// Turns a container's upper directory into a layer in one pass: the diff tar that
    /// `write_diff` makes is compressed into the layer blob and, at the same time, unpacked
    /// through a pipe into the new layer snapshot (committed under its chain ID over
    /// `base`'s top layer). So `register` finds the layer present instead of decompressing
    /// and unpacking the blob it has just written (a builder commits once per RUN step).
    fn commit_upper(
        &self,
        key: &str,
        upper: &Path,
        base: Option<&Image>,
    ) -> Result<crate::diff::LayerBlob> {
        let tmp_key = format!(
            "commit-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        self.snapshots.prepare(&tmp_key, None)?;
        let owner = format!("{REGISTER_OWNER}{tmp_key}");
        self.snapshots.add_lease(&tmp_key, &owner)?;
        let result = self.commit_upper_into(key, upper, base, &tmp_key);
        if let Ok(layer) = &result {
            // the lease moved with the snapshot to its chain ID
            let mut diff_ids = base.map(|b| b.diff_ids.clone()).unwrap_or_default();
            diff_ids.push(layer.diff_id.clone());
            if let Some(chain) = chain_ids(&diff_ids).last() {
                self.snapshots.remove_lease(chain.as_str(), &owner)?;
            }
        }
        // committed under the chain ID, the temporary key is gone; otherwise remove it
        if self.snapshots.exists(&tmp_key).unwrap_or(false) {
            if let Err(e) = self.snapshots.discard_active(&tmp_key) {
                tracing::warn!(key = tmp_key, error = %e, "could not remove a commit's snapshot");
            }
        }
        result
    }

    fn commit_upper_into(
        &self,
        key: &str,
        upper: &Path,
        base: Option<&Image>,
        tmp_key: &str,
    ) -> Result<crate::diff::LayerBlob> {
        let dir = self.snapshots.upper_dir(tmp_key)?;
        let what = format!("commit of {key}");
        let (reader, writer) =
            std::io::pipe().map_err(|e| Error::io("create a pipe for", upper, e))?;
        let (written, extracted) = std::thread::scope(|s| {
            let extractor = s.spawn(|| {
                let mut reader = reader;
                let stats = extract::extract_layer(&mut reader, &dir, &what, None);
                // the rest of the stream (tar padding) must be read, or the writer blocks
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                stats
            });
            let written = (|| {
                let ingest = self.content.ingest()?;
                let gz = flate2::write::GzEncoder::new(ingest, flate2::Compression::fast());
                let both = TeeWriter { a: gz, b: writer };
                let tee = crate::diff::write_diff(upper, crate::diff::TeeDigest::new(both))?;
                let (diff_id, both) = tee.finish();
                // closes the pipe: the extractor sees the end of the stream
                let TeeWriter { a: gz, b: writer } = both;
                drop(writer);
                let ingest = gz
                    .finish()
                    .map_err(|e| Error::io("compress layer of", upper, e))?;
                let (digest, size) = ingest.commit()?;
                Ok::<_, Error>(crate::diff::LayerBlob {
                    digest,
                    diff_id,
                    size,
                    media_type: manifest::OCI_LAYER_GZIP.to_string(),
                })
            })();
            let extracted = extractor.join().unwrap_or_else(|_| {
                Err(Error::ExtractLayer {
                    layer: what.clone(),
                    reason: "the extracting thread panicked".into(),
                })
            });
            (written, extracted)
        });
        // the extractor's error explains a broken pipe on the writing side
        let stats = extracted?;
        let layer = written?;
        let mut diff_ids = base.map(|b| b.diff_ids.clone()).unwrap_or_default();
        diff_ids.push(layer.diff_id.clone());
        let chains = chain_ids(&diff_ids);
        let Some(chain) = chains.last() else {
            return Ok(layer);
        };
        let parent = base.and_then(|b| b.top_snapshot());
        match self
            .snapshots
            .commit_as(chain.as_str(), tmp_key, parent.as_deref(), stats.size)
        {
            // the same change committed before: that layer serves
            Ok(()) | Err(Error::SnapshotExists { .. }) => Ok(layer),
            Err(e) => Err(e),
        }
    }

    /// How many images use the layer snapshot `chain_id` (its reference count).
    pub fn layer_refcount(&self, chain_id: &Digest) -> Result<usize> {
        let conn = self.db.lock();
        let n: i64 = conn
            .row_c(
                "SELECT COUNT(DISTINCT image_id) FROM image_layers WHERE chain_id = ?1",
                [chain_id.as_str()],
                |r| r.get(0),
            )
            .map_err(Error::db("count layer references"))?;
        Ok(n as usize)
    }

    /// Makes an image from a config and layer blobs already in the content store (import,
    /// commit, build): writes the config and an OCI manifest, registers it and tags
    /// `reference` if given.
    pub fn create_image(
        &self,
        config: &ImageConfig,
        layers: &[crate::diff::LayerBlob],
        reference: Option<&Reference>,
    ) -> Result<Image> {
        if config.rootfs.diff_ids.len() != layers.len()
            || config
                .rootfs
                .diff_ids
                .iter()
                .zip(layers)
                .any(|(d, l)| d != &l.diff_id)
        {
            return Err(Error::InvalidArgument(
                "config rootfs.diff_ids do not match the layers".into(),
            ));
        }
        let config_bytes = serde_json::to_vec(config)
            .map_err(|e| Error::InvalidArgument(format!("serialise config: {e}")))?;
        let mut written = Vec::new();
        let config_digest = Digest::of(&config_bytes);
        if !self.content.has(&config_digest) {
            written.push(config_digest.clone());
        }
        self.content.write_bytes(&config_bytes)?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.to_string()),
            config: manifest::Descriptor::new(
                manifest::OCI_CONFIG,
                config_digest,
                config_bytes.len() as u64,
            ),
            layers: layers
                .iter()
                .map(|l| manifest::Descriptor::new(&l.media_type, l.digest.clone(), l.size))
                .collect(),
            annotations: None,
            extra: Default::default(),
        };
        let mbytes = serde_json::to_vec(&m)
            .map_err(|e| Error::InvalidArgument(format!("serialise manifest: {e}")))?;
        let mdigest = Digest::of(&mbytes);
        if !self.content.has(&mdigest) {
            written.push(mdigest.clone());
        }
        self.content.write_bytes(&mbytes)?;
        let result = match reference {
            Some(r) => self.register_with(r, &mdigest, false),
            None => self
                .register_untagged(&mdigest)
                .and_then(|id| self.get(&id)),
        };
        if result.is_err() {
            if let Err(e) = self.discard_blobs(&written) {
                tracing::warn!(error = %e, "could not remove the blobs of a failed image creation");
            }
        }
        result
    }

    /// The image with this exact ID.
    pub fn get(&self, id: &Digest) -> Result<Image> {
        let conn = self.db.lock();
        let row: Option<(String, String, Option<String>, i64, String)> = conn
            .row_c(
                "SELECT manifest_digest, manifest_media_type, created, size, added FROM images WHERE id = ?1",
                [id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(Error::db("look up image"))?;
        let Some((mdigest, mt, _created, size, added)) = row else {
            return Err(Error::ImageNotFound {
                reference: id.to_string(),
            });
        };
        let tags = query_strings(
            &conn,
            "SELECT reference FROM tags WHERE image_id = ?1 ORDER BY tagged_at, reference",
            id,
        )?;
        let digests = query_strings(
            &conn,
            "SELECT reference FROM repo_digests WHERE image_id = ?1 ORDER BY reference",
            id,
        )?;
        drop(conn);
        let manifest_digest: Digest = mdigest.parse()?;
        let (manifest, config) = self.parsed_blobs(id, &manifest_digest, &mt)?;
        let diff_ids = config.rootfs.diff_ids.clone();
        Ok(Image {
            id: id.clone(),
            manifest_digest,
            manifest_media_type: mt,
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            chain_ids: chain_ids(&diff_ids),
            diff_ids,
            created: config.created_time(),
            manifest,
            config,
            repo_tags: tags.iter().filter_map(|t| t.parse().ok()).collect(),
            repo_digests: digests.iter().filter_map(|t| t.parse().ok()).collect(),
            size: size as u64,
            added,
        })
    }

    /// The image's manifest and config, from the cache or read and parsed (then cached).
    fn parsed_blobs(
        &self,
        id: &Digest,
        manifest_digest: &Digest,
        media_type: &str,
    ) -> Result<(Manifest, ImageConfig)> {
        let key = (id.clone(), manifest_digest.clone());
        let cache = || self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache().get(&key).cloned() {
            return Ok((hit.0.clone(), hit.1.clone()));
        }
        let (_, _, doc) = self.read_manifest(manifest_digest)?;
        let ManifestDoc::Manifest(manifest) = doc else {
            return Err(Error::UnsupportedMediaType {
                media_type: media_type.to_string(),
                object: format!("image {id} manifest"),
            });
        };
        let config = ImageConfig::parse(
            &self.content.read_limited(id, MAX_CONFIG_SIZE)?,
            id.as_str(),
        )?;
        let mut c = cache();
        if c.len() >= PARSED_CACHE {
            c.clear();
        }
        c.insert(
            key,
            std::sync::Arc::new((*manifest.clone(), config.clone())),
        );
        Ok((*manifest, config))
    }

    /// Finds an image as Docker does: by reference (tag or digest), by full image ID
    /// (`sha256:...` or 64 hex), or by an unambiguous prefix of the ID.
    pub fn resolve(&self, s: &str) -> Result<Image> {
        let not_found = || Error::ImageNotFound {
            reference: s.to_string(),
        };
        if let Ok(d) = s.parse::<Digest>() {
            return self.get(&d).map_err(|_| not_found());
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(d) = Digest::from_hex(s) {
                return self.get(&d).map_err(|_| not_found());
            }
        }
        if let Ok(r) = s.parse::<Reference>() {
            let conn = self.db.lock();
            let id: Option<String> = if r.digest.is_some() {
                let rd = Reference {
                    tag: None,
                    ..r.clone()
                };
                conn.row_c(
                    "SELECT image_id FROM repo_digests WHERE reference = ?1",
                    [rd.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(Error::db("look up reference"))?
            } else {
                conn.row_c(
                    "SELECT image_id FROM tags WHERE reference = ?1",
                    [r.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(Error::db("look up reference"))?
            };
            drop(conn);
            if let Some(id) = id {
                return self.get(&id.parse()?);
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !hex.is_empty()
            && hex.len() < 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let conn = self.db.lock();
            let mut st = conn
                .prepare("SELECT id FROM images WHERE id LIKE ?1")
                .map_err(Error::db("look up image ID"))?;
            let ids: Vec<String> = st
                .query_map([format!("sha256:{hex}%")], |r| r.get(0))
                .map_err(Error::db("look up image ID"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(Error::db("look up image ID"))?;
            drop(st);
            drop(conn);
            match ids.len() {
                0 => {}
                1 => return self.get(&ids[0].parse()?),
                n => {
                    return Err(Error::ImageAmbiguous {
                        reference: s.to_string(),
                        count: n,
                    })
                }
            }
        }
        Err(not_found())
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let ids: Vec<String> = {
            let conn = self.db.lock();
            let mut st = conn
                .prepare("SELECT id FROM images ORDER BY created DESC, added DESC")
                .map_err(Error::db("list images"))?;
            let rows = st
                .query_map([], |r| r.get(0))
                .map_err(Error::db("list images"))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(Error::db("list images"))?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(&id.parse()?) {
                Ok(img) => out.push(img),
                // a broken image must not hide the others
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "image unreadable, skipped in list")
                }
            }
        }
        Ok(out)
    }

    /// Tags `image` as `reference` (moving the tag if it named another image).
    pub fn tag(&self, image: &Image, reference: &Reference) -> Result<()> {
        if reference.digest.is_some() {
            return Err(Error::InvalidArgument(format!(
                "refusing to create a tag with a digest reference: {reference}"
            )));
        }
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("begin"))?;
        // removed since the caller looked it up: say so, not "FOREIGN KEY constraint failed"
        let exists: i64 = tx
            .row_c(
                "SELECT COUNT(*) FROM images WHERE id = ?1",
                [image.id.as_str()],
                |r| r.get(0),
            )
            .map_err(Error::db("look up image"))?;
        if exists == 0 {
            return Err(Error::ImageNotFound {
                reference: image.id.to_string(),
            });
        }
        tag_tx(&tx, &reference.with_tag_only(), &image.id)?;
        tx.commit().map_err(Error::db("commit"))
    }

    /// Removes the tag `reference`; returns the image it named.
    pub fn untag(&self, reference: &Reference) -> Result<Digest> {
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("begin"))?;
        let r = reference.with_tag_only().to_string();
        let id: Option<String> = tx
            .row_c(
                "SELECT image_id FROM tags WHERE reference = ?1",
                [&r],
                |row| row.get(0),
            )
            .optional()
            .map_err(Error::db("look up tag"))?;
        let Some(id) = id else {
            return Err(Error::ImageNotFound {
                reference: reference.familiar(),
            });
        };
        tx.exec_c("DELETE FROM tags WHERE reference = ?1", [&r])
            .map_err(Error::db("delete tag"))?;
        tx.exec_c(
            "INSERT INTO tag_history (reference, image_id, action, at) VALUES (?1, ?2, 'untag', ?3)",
            params![r, id, now()],
        )
        .map_err(Error::db("record tag history"))?;
        tx.commit().map_err(Error::db("commit"))?;
        id.parse()
    }

    /// The history of a tag or of every tag: (reference, image ID, action, time).
    pub fn tag_history(
        &self,
        reference: Option<&Reference>,
    ) -> Result<Vec<(String, String, String, String)>> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare("SELECT reference, image_id, action, at FROM tag_history WHERE ?1 IS NULL OR reference = ?1 ORDER BY seq")
            .map_err(Error::db("read tag history"))?;
        let r = reference.map(|r| r.with_tag_only().to_string());
        let rows = st
            .query_map([r], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .map_err(Error::db("read tag history"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Error::db("read tag history"))
    }

    /// `docker rmi` semantics: a tag reference untags, and deletes the image if that was its
    /// last tag; an ID deletes the image, which needs `force` if it has tags in more than one
    /// repository or containers use it. Content no image needs any more is deleted too.
    pub fn remove(&self, s: &str, force: bool) -> Result<Vec<RemoveAction>> {
        let img = self.resolve(s)?;
        let mut actions = Vec::new();
        let by_ref = s.parse::<Reference>().ok().filter(|r| {
            let rt = r.with_tag_only();
            r.digest.is_none() && img.repo_tags.contains(&rt)
        });
        let users = self.containers_using(&img)?;
        let in_use = |reference: &str| Error::ImageInUse {
            reference: reference.to_string(),
            reason: format!(
                "image {} is being used by container(s) {} (use -f to remove anyway)",
                img.id.short(),
                users.join(", ")
            ),
        };
        if let Some(r) = by_ref {
            let last = img.repo_tags.len() <= 1;
            // check before changing anything: a refused rmi leaves the tag in place
            if last && !users.is_empty() && !force {
                return Err(in_use(s));
            }
            self.untag(&r)?;
            actions.push(RemoveAction::Untagged(r.familiar()));
            if !last {
                return Ok(actions);
            }
        } else {
            let repos: BTreeSet<String> = img.repo_tags.iter().map(|r| r.name()).collect();
            if repos.len() > 1 && !force {
                return Err(Error::ImageInUse {
                    reference: s.to_string(),
                    reason: format!("image is referenced in multiple repositories ({}); use -f to remove it anyway", repos.len()),
                });
            }
            if !users.is_empty() && !force {
                return Err(in_use(s));
            }
        }
        {
            let mut conn = self.db.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(Error::db("begin"))?;
            let tags = query_strings(
                &tx,
                "SELECT reference FROM tags WHERE image_id = ?1",
                &img.id,
            )?;
            for t in &tags {
                tx.exec_c(
                    "INSERT INTO tag_history (reference, image_id, action, at) VALUES (?1, ?2, 'untag', ?3)",
                    params![t, img.id.as_str(), now()],
                )
                .map_err(Error::db("record tag history"))?;
                if let Ok(r) = t.parse::<Reference>() {
                    actions.push(RemoveAction::Untagged(r.familiar()));
                }
            }
            for d in query_strings(
                &tx,
                "SELECT reference FROM repo_digests WHERE image_id = ?1",
                &img.id,
            )? {
                if let Ok(r) = d.parse::<Reference>() {
                    actions.push(RemoveAction::Untagged(r.familiar()));
                }
            }
            tx.exec_c("DELETE FROM images WHERE id = ?1", [img.id.as_str()])
                .map_err(Error::db("delete image"))?;
            tx.commit().map_err(Error::db("commit"))?;
        }
        actions.push(RemoveAction::Deleted(img.id.clone()));
        self.collect(Some(&img), Duration::ZERO)?;
        Ok(actions)
    }

    /// Container owners of leases on snapshots over this image's top layer.
    fn containers_using(&self, img: &Image) -> Result<Vec<String>> {
        let Some(top) = img.top_snapshot() else {
            return Ok(Vec::new());
        };
        let conn = self.db.lock();
        let mut st = conn
            .prepare("SELECT l.owner FROM leases l JOIN snapshots s ON s.key = l.snapshot_key WHERE (s.parent = ?1 OR s.key = ?1) AND l.owner NOT LIKE 'berth.register/%'")
            .map_err(Error::db("look up leases"))?;
        let rows = st
            .query_map([top], |r| r.get::<_, String>(0))
            .map_err(Error::db("look up leases"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Error::db("look up leases"))
    }

    /// A container's writable snapshot over `image` (`key` is usually the container ID),
    /// held by a lease for the container until [`ImageStore::remove_container_snapshot`].
    pub fn prepare_container(&self, key: &str, image: &Image) -> Result<Vec<Mount>> {
        let parent = image.top_snapshot();
        let mounts = self.snapshots.prepare(key, parent.as_deref())?;
        self.add_container_ref(key, key)?;
        Ok(mounts)
    }

    /// Holds snapshot `snapshot_key` (and its parents) for `owner` against gc and `rmi`.
    pub fn add_container_ref(&self, snapshot_key: &str, owner: &str) -> Result<()> {
        self.snapshots.add_lease(snapshot_key, owner)
    }

    /// Holds blob `digest` for `owner` (a build's cache, a pull in progress) against gc.
    pub fn add_blob_ref(&self, digest: &Digest, owner: &str) -> Result<()> {
        let conn = self.db.lock();
        conn.exec_c(
            "INSERT OR IGNORE INTO blob_leases (digest, owner, created) VALUES (?1, ?2, ?3)",
            params![digest.as_str(), owner, now()],
        )
        .map_err(Error::db("add blob lease"))?;
        Ok(())
    }

    /// Drops `owner`'s holds on blobs (all of them if `digest` is None).
    pub fn remove_blob_refs(&self, owner: &str, digest: Option<&Digest>) -> Result<()> {
        let conn = self.db.lock();
        conn.exec_c(
            "DELETE FROM blob_leases WHERE owner = ?1 AND (?2 IS NULL OR digest = ?2)",
            params![owner, digest.map(|d| d.as_str())],
        )
        .map_err(Error::db("remove blob lease"))?;
        Ok(())
    }

    /// Drops `owner`'s holds on blobs and deletes those of `candidates` (blobs the owner
    /// added) that no image and no other lease needs: what a load or pull that stored more
    /// than it registered, or failed, leaves.
    pub fn release_blob_lease(&self, owner: &str, candidates: &[Digest]) -> Result<()> {
        // no gc lock: each delete is checked in its own transaction, so this need not wait
        // for a prune that is running
        // blobs first, the lease rows after: on a full disk the database may refuse to
        // write until the blobs are gone
        let deleted = self.discard_unused_blobs(candidates, Some(owner));
        let released = self.remove_blob_refs(owner, None);
        deleted.and(released)
    }

    /// Deletes those of `candidates` that no image and no lease needs (the blobs a failed
    /// import or commit wrote).
    pub fn discard_blobs(&self, candidates: &[Digest]) -> Result<()> {
        self.discard_unused_blobs(candidates, None)
    }

    /// (`ignoring`: a lease owner whose holds do not count.)
    fn discard_unused_blobs(&self, candidates: &[Digest], ignoring: Option<&str>) -> Result<()> {
        for d in candidates {
            self.delete_blob_if_unused(d, ignoring)?;
        }
        Ok(())
    }

    /// Drops the lease and removes a container's snapshot.
    pub fn remove_container_snapshot(&self, key: &str) -> Result<()> {
        self.snapshots.remove_lease(key, key)?;
        self.snapshots.remove(key)
    }

    /// `remove_container_snapshot` without deleting the snapshot's directory: that is
    /// returned for the caller to delete off its request's path (a crash before that leaves
    /// an orphan directory, which gc deletes).
    pub fn release_container_snapshot(&self, key: &str) -> Result<PathBuf> {
        self.snapshots.remove_lease(key, key)?;
        self.snapshots.forget(key)
    }

    /// Removes blobs and snapshots no image references and no lease holds (blobs and layer
    /// snapshots younger than [`GC_GRACE`] are kept: a pull may be about to register them).
    pub fn gc(&self) -> Result<GcReport> {
        self.collect(None, GC_GRACE)
    }

    /// `gc` with another grace period (zero when nothing can be pulling, e.g. in tests).
    pub fn gc_with_grace(&self, grace: Duration) -> Result<GcReport> {
        self.collect(None, grace)
    }

    /// Blobs and layer snapshots every image (and every lease) needs.
    fn live_sets(&self) -> Result<(HashSet<String>, HashSet<String>)> {
        self.live_sets_ignoring(None)
    }

    /// As `live_sets`, without the blob leases of `ignoring`.
    fn live_sets_ignoring(
        &self,
        ignoring: Option<&str>,
    ) -> Result<(HashSet<String>, HashSet<String>)> {
        let conn = self.db.lock();
        let mut blobs = HashSet::new();
        let mut snaps = HashSet::new();
        for (q, is_blob) in [
            ("SELECT digest FROM image_blobs", true),
            ("SELECT blob_digest FROM image_layers", true),
            ("SELECT digest FROM blob_leases WHERE owner IS NOT ?1", true),
            ("SELECT chain_id FROM image_layers", false),
            ("SELECT snapshot_key FROM leases", false),
        ] {
            let set = if is_blob { &mut blobs } else { &mut snaps };
            let mut st = conn.prepare(q).map_err(Error::db("gc scan"))?;
            fn first(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
                r.get(0)
            }
            let rows = if q.contains("?1") {
                st.query_map([ignoring], first)
            } else {
                st.query_map([], first)
            }
            .map_err(Error::db("gc scan"))?;
            for r in rows {
                set.insert(r.map_err(Error::db("gc scan"))?);
            }
        }
        Ok((blobs, snaps))
    }

    /// The store-wide lock between registration (shared) and collection (exclusive).
    fn gc_lock(&self, exclusive: bool) -> Result<nix::fcntl::Flock<fs::File>> {
        let p = self.root.join("gc.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io("open lock file", &p, e))?;
        let arg = if exclusive {
            nix::fcntl::FlockArg::LockExclusive
        } else {
            nix::fcntl::FlockArg::LockShared
        };
        nix::fcntl::Flock::lock(f, arg).map_err(|(_, errno)| Error::io("lock", &p, errno.into()))
    }

    fn collect(&self, only: Option<&Image>, grace: Duration) -> Result<GcReport> {
        let mut dirs = Vec::new();
        let report = self.collect_rows(only, grace, &mut dirs);
        remove_dirs(&dirs);
        report
    }

    /// The part of `collect` under the gc lock (which only collectors take, so that two of
    /// them do not work on the same rows): decides and deletes rows and blobs, and hands
    /// back the directories to remove.
    fn collect_rows(
        &self,
        only: Option<&Image>,
        grace: Duration,
        out_dirs: &mut Vec<PathBuf>,
    ) -> Result<GcReport> {
        let _gc = self.gc_lock(true)?;
        if only.is_none() {
            self.expire_stale_leases()?;
        }
        let (live_blobs, live_snaps) = self.live_sets()?;
        let mut report = GcReport::default();
        // snapshots: keep the live ones and their ancestors; remove the rest children first
        let all = self.snapshots.list()?;
        let by_key: HashMap<&str, &crate::snapshot::Info> =
            all.iter().map(|i| (i.key.as_str(), i)).collect();
        let mut keep: HashSet<String> = HashSet::new();
        for k in &live_snaps {
            let mut cur = by_key.get(k.as_str()).copied();
            while let Some(i) = cur {
                if !keep.insert(i.key.clone()) {
                    break;
                }
                cur = i.parent.as_deref().and_then(|p| by_key.get(p).copied());
            }
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let candidates: HashSet<String> = match only {
            Some(img) => img.chain_ids.iter().map(|c| c.to_string()).collect(),
            None => all.iter().map(|i| i.key.clone()).collect(),
        };
        let mut doomed: Vec<&crate::snapshot::Info> = all
            .iter()
            .filter(|i| candidates.contains(&i.key) && !keep.contains(&i.key))
            .filter(|i| i.kind == Kind::Committed || only.is_none())
            .filter(|i| {
                chrono::DateTime::parse_from_rfc3339(&i.created)
                    .map(|t| t.with_timezone(&chrono::Utc) < cutoff)
                    .unwrap_or(true)
            })
            .collect();
        // children before parents: deepest in its chain first (layers unpacked in parallel
        // do not have ids in chain order)
        let depth = |key: &str| -> usize {
            let mut d = 0usize;
            let mut k: Option<String> = Some(key.to_string());
            while let Some(i) = k.as_deref().and_then(|k| by_key.get(k)) {
                d += 1;
                k = i.parent.clone();
                if d > by_key.len() {
                    break;
                }
            }
            d
        };
        doomed.sort_by_key(|i| std::cmp::Reverse(depth(&i.key)));
        // rows now, each checked and deleted in its own short transaction; the directories
        // after the lock (deleting a large layer takes long, and nothing can reach a
        // directory whose row is gone)
        let mut dirs = Vec::new();
        for i in doomed {
            match self.delete_snapshot_if_unused(&i.key) {
                Ok(Some(dir)) => {
                    report.snapshots.push(i.key.clone());
                    dirs.push(dir);
                }
                Ok(None) => tracing::debug!(key = i.key, "snapshot kept: in use"),
                Err(e) => tracing::debug!(key = i.key, error = %e, "snapshot kept"),
            }
        }
        let blob_candidates: Vec<Digest> = match only {
            Some(img) => {
                let mut v = img.layers.clone();
                v.push(img.id.clone());
                v.push(img.manifest_digest.clone());
                v.extend(img.repo_digests.iter().filter_map(|r| r.digest.clone()));
                v
            }
            None => self.content.list()?,
        };
        let sys_cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for d in blob_candidates {
            if live_blobs.contains(d.as_str()) {
                continue;
            }
            let p = self.content.blob_path(&d);
            let Ok(md) = fs::metadata(&p) else { continue };
            if md.modified().map(|t| t > sys_cutoff).unwrap_or(false) {
                continue;
            }
            if let Some(n) = self.delete_blob_if_unused(&d, None)? {
                report.bytes += n;
                report.blobs.push(d);
            }
        }
        out_dirs.append(&mut dirs);
        if only.is_none() {
            self.snapshots.remove_orphan_dirs()?;
            // lock files and abandoned temporary blobs of crashed writers; a day old, so no
            // live writer can be using them
            let day_ago = SystemTime::now()
                .checked_sub(Duration::from_secs(24 * 3600))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            for dir in [
                self.content.root().join("ingest"),
                self.snapshots.root().join("locks"),
            ] {
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                for ent in rd.flatten() {
                    let old = ent
                        .metadata()
                        .and_then(|m| m.modified())
                        .map(|t| t < day_ago)
                        .unwrap_or(false);
                    if old {
                        let _ = fs::remove_file(ent.path());
                    }
                }
            }
        }
        Ok(report)
    }

    /// Images with no tag (what `docker images -f dangling=true` shows).
    pub fn dangling(&self) -> Result<Vec<Image>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|i| i.repo_tags.is_empty())
            .collect())
    }

    /// Whether some container lease holds a snapshot over this image.
    pub fn in_use(&self, img: &Image) -> Result<bool> {
        Ok(!self.containers_using(img)?.is_empty())
    }
}

/// Writes everything to both `a` and `b`.
struct TeeWriter<A: std::io::Write, B: std::io::Write> {
    a: A,
    b: B,
}

impl<A: std::io::Write, B: std::io::Write> std::io::Write for TeeWriter<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.a.write_all(buf)?;
        self.b.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.a.flush()?;
        self.b.flush()
    }
}

/// Removes snapshot directories whose rows are gone. A failure is logged, not returned: the
/// row is what makes a snapshot, and gc's orphan sweep retries the directory later.
fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        match fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %d.display(), error = %e, "could not remove snapshot directory")
            }
        }
    }
}

fn tag_tx(tx: &rusqlite::Transaction<'_>, r: &Reference, id: &Digest) -> Result<()> {
    let r = r.to_string();
    let old: Option<String> = tx
        .row_c(
            "SELECT image_id FROM tags WHERE reference = ?1",
            [&r],
            |row| row.get(0),
        )
        .optional()
        .map_err(Error::db("look up tag"))?;
    if old.as_deref() == Some(id.as_str()) {
        return Ok(());
    }
    let at = now();
    if let Some(old) = old {
        tx.exec_c(
            "INSERT INTO tag_history (reference, image_id, action, at) VALUES (?1, ?2, 'untag', ?3)",
            params![r, old, at],
        )
        .map_err(Error::db("record tag history"))?;
    }
    tx.exec_c(
        "INSERT OR REPLACE INTO tags (reference, image_id, tagged_at) VALUES (?1, ?2, ?3)",
        params![r, id.as_str(), at],
    )
    .map_err(Error::db("tag"))?;
    tx.exec_c(
        "INSERT INTO tag_history (reference, image_id, action, at) VALUES (?1, ?2, 'tag', ?3)",
        params![r, id.as_str(), at],
    )
    .map_err(Error::db("record tag history"))?;
    Ok(())
}

fn query_strings(conn: &rusqlite::Connection, q: &str, id: &Digest) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(q).map_err(Error::db("query"))?;
    let rows = st
        .query_map([id.as_str()], |r| r.get::<_, String>(0))
        .map_err(Error::db("query"))?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(Error::db("query"))
}
