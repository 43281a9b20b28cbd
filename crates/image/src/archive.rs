//! Import and export: `save`/`load` in the docker-archive format (`manifest.json` with
//! Config/RepoTags/Layers, which every `docker load` reads, laid out as an OCI image layout
//! as `docker save` 25+ writes it), loading the legacy `<id>/layer.tar` form and plain OCI
//! image layouts too; `export_oci_layout` to a directory (for `skopeo copy oci:DIR ...`);
//! `import` of a root file system tarball as a one-layer image.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diff;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{
    self, Descriptor, History, ImageConfig, ManifestDoc, RootFs, MAX_CONFIG_SIZE,
};
use crate::reference::Reference;
use crate::store::{Image, ImageStore};

/// Annotation with the full image name (containerd, docker 25+).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation naming a manifest in a layout (skopeo uses the tag alone).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest JSON file (manifest.json, index.json, a config) read from an archive.
const MAX_ARCHIVE_JSON: u64 = 16 << 20;

/// One entry of docker-archive's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveManifestEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// An image `load` brought in.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    pub tags: Vec<Reference>,
}

/// What to save: an image and the tags to record for it.
fn resolve_for_save(store: &ImageStore, names: &[String]) -> Result<Vec<(Image, Vec<Reference>)>> {
    let mut out: Vec<(Image, Vec<Reference>)> = Vec::new();
    for n in names {
        let img = store.resolve(n)?;
        let tag = n
            .parse::<Reference>()
            .ok()
            .filter(|r| r.digest.is_none() && img.repo_tags.contains(r));
        match out.iter_mut().find(|(i, _)| i.id == img.id) {
            Some((_, tags)) => tags.extend(tag),
            None => out.push((img, tag.into_iter().collect())),
        }
    }
    Ok(out)
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

/// Writes `names` (references or IDs) as a docker-archive tar to `w`.
pub fn save<W: Write>(store: &ImageStore, names: &[String], w: W) -> Result<W> {
    let images = resolve_for_save(store, names)?;
    let err = |e: io::Error| Error::io("write archive", "-", e);
    let mut b = tar::Builder::new(w);
    let mut written = std::collections::HashSet::new();
    let mut add_blob = |b: &mut tar::Builder<W>, d: &Digest| -> Result<()> {
        if !written.insert(d.clone()) {
            return Ok(());
        }
        let size = store.content().size(d)?;
        let f = store.content().open_blob(d)?;
        let mut h = file_header(size);
        b.append_data(&mut h, blob_path(d), f.take(size))
            .map_err(err)
    };
    let mut manifest_json = Vec::new();
    let mut index = Vec::new();
    for (img, tags) in &images {
        add_blob(&mut b, &img.id)?;
        add_blob(&mut b, &img.manifest_digest)?;
        for l in &img.layers {
            add_blob(&mut b, l)?;
        }
        manifest_json.push(ArchiveManifestEntry {
            config: blob_path(&img.id),
            repo_tags: if tags.is_empty() {
                None
            } else {
                Some(tags.iter().map(|t| t.familiar()).collect())
            },
            layers: img.layers.iter().map(blob_path).collect(),
        });
        let msize = store.content().size(&img.manifest_digest)?;
        let base = Descriptor::new(&img.manifest_media_type, img.manifest_digest.clone(), msize);
        if tags.is_empty() {
            index.push(base.clone());
        }
        for t in tags {
            let mut d = base.clone();
            d.annotations = Some(BTreeMap::from([
                (ANNOTATION_IMAGE_NAME.to_string(), t.to_string()),
                (
                    ANNOTATION_REF_NAME.to_string(),
                    t.tag_or_latest().to_string(),
                ),
            ]));
            index.push(d);
        }
    }
    let index = manifest::Index {
        schema_version: 2,
        media_type: Some(manifest::OCI_INDEX.to_string()),
        manifests: index,
        annotations: None,
        extra: Default::default(),
    };
    let json = |v: &dyn erased::Json| v.to_json();
    for (name, bytes) in [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", json(&index)?),
        ("manifest.json", json(&manifest_json)?),
    ] {
        let mut h = file_header(bytes.len() as u64);
        b.append_data(&mut h, name, &bytes[..]).map_err(err)?;
    }
    b.into_inner().map_err(err)
}

mod erased {
    use crate::error::{Error, Result};
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>> {
            serde_json::to_vec(self).map_err(|e| Error::InvalidArgument(format!("serialise: {e}")))
        }
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Cleans an archive path (relative, no `..` above the root) or refuses it.
fn clean_archive_path(p: &Path) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(Error::Archive {
                        reason: format!("entry {} climbs out of the archive", p.display()),
                    });
                }
            }
            Component::Prefix(_) => {}
        }
    }
    Ok(parts.join("/"))
}

/// The most `load` keeps in memory about an archive (manifest.json, index.json and the names
/// of the entries it stored); everything else streams to disk. A hostile archive of
/// thousands of large JSON entries once took gigabytes of memory.
const MAX_LOAD_METADATA: usize = 64 << 20;

#[derive(Default)]
struct Gathered {
    // path in archive → blob digest (for every regular file we stored)
    files: HashMap<String, Digest>,
    // manifest.json and index.json, the only entries kept in memory
    json: HashMap<String, Vec<u8>>,
    // symlinks (legacy docker save links duplicate layer.tar files)
    links: HashMap<String, String>,
    // bytes held by the three maps, bounded by MAX_LOAD_METADATA
    held: usize,
    // bytes of other `.json` entries (configs) stored, bounded by MAX_LOAD_METADATA too
    json_on_disk: u64,
}

impl Gathered {
    fn resolve(&self, path: &str) -> Option<Digest> {
        let mut p = path.to_string();
        for _ in 0..16 {
            if let Some(d) = self.files.get(&p) {
                return Some(d.clone());
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn hold(&mut self, bytes: usize, entry: &str) -> Result<()> {
        self.held = self.held.saturating_add(bytes);
        if self.held > MAX_LOAD_METADATA {
            return Err(Error::Archive {
                reason: format!(
                    "entry {entry}: the archive's metadata (manifests and entry names) exceeds {} MiB",
                    MAX_LOAD_METADATA >> 20
                ),
            });
        }
        Ok(())
    }
}

/// What one `load` added to the store, so that a failed load can take it out again and a
/// successful one drops the blobs it stored but no image uses. Its blob lease (`owner`) keeps
/// a concurrent gc or rmi from deleting blobs between their ingest and the registration.
struct LoadSession<'a> {
    store: &'a ImageStore,
    owner: String,
    created_blobs: Vec<Digest>,
    new_images: Vec<Digest>,
}

impl<'a> LoadSession<'a> {
    fn new(store: &'a ImageStore) -> Self {
        let n: u64 = rand::random();
        LoadSession {
            store,
            owner: format!("berth.load/{}-{n:016x}", std::process::id()),
            created_blobs: Vec::new(),
            new_images: Vec::new(),
        }
    }

    /// Streams `r` into the content store as blob `expected` (of `size` bytes).
    fn ingest(
        &mut self,
        expected: &Digest,
        size: Option<u64>,
        r: &mut dyn Read,
        what: &str,
    ) -> Result<()> {
        self.store.add_blob_ref(expected, &self.owner)?;
        let mut w = self.store.content().writer(expected, size)?;
        if w.already_present() {
            return Ok(());
        }
        io::copy(r, &mut w).map_err(|e| Error::Archive {
            reason: format!("{what}: {e}"),
        })?;
        w.commit().map_err(|e| Error::Archive {
            reason: format!("{what}: {e}"),
        })?;
        self.created_blobs.push(expected.clone());
        Ok(())
    }

    /// Streams `r` into the content store as a blob whose digest is not known in advance.
    fn ingest_unknown(&mut self, r: &mut dyn Read, what: &str) -> Result<Digest> {
        let mut w = self.store.content().ingest()?;
        io::copy(r, &mut w).map_err(|e| Error::Archive {
            reason: format!("{what}: {e}"),
        })?;
        let (d, _, new) = w.commit_with(|d| self.store.add_blob_ref(d, &self.owner))?;
        if new {
            self.created_blobs.push(d.clone());
        }
        Ok(d)
    }

    /// Registers and tags in one step (see `ImageStore::register_tagged`).
    fn register(&mut self, manifest_digest: &Digest, tags: &[Reference]) -> Result<Digest> {
        let (_, _, m) = self.store.resolve_platform_manifest(manifest_digest)?;
        let existed = self.store.get(&m.config.digest).is_ok();
        let id = self.store.register_tagged(manifest_digest, tags)?;
        if !existed {
            self.new_images.push(id.clone());
        }
        // not read back: a concurrent rmi may already have removed it, which does not make
        // this load fail
        Ok(id)
    }

    /// Ends the load: on failure removes the images it added; either way drops its lease and
    /// deletes the blobs it stored that no image uses.
    fn finish<T>(self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            for id in &self.new_images {
                if let Err(e) = self.store.remove(id.as_str(), true) {
                    tracing::warn!(image = %id, error = %e, "could not remove the image of a failed load");
                }
            }
        }
        let released = self
            .store
            .release_blob_lease(&self.owner, &self.created_blobs);
        match (result, released) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(v), Ok(())) => Ok(v),
        }
    }
}

/// Entries of an archive that `load` never needs (legacy per-layer metadata).
fn ignored_entry(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    path == "oci-layout"
        || path == "repositories"
        || (path.contains('/') && (base == "json" || base == "VERSION"))
}

/// Loads a docker-archive (legacy or OCI-layout style) or a tarred OCI image layout.
/// Blobs and layers stream to disk; only manifest.json and index.json are held in memory
/// (bounded). A failed load leaves the store as it was.
pub fn load<R: Read>(store: &ImageStore, r: R) -> Result<Vec<Loaded>> {
    load_with_progress(store, r, &|_, _, _| {})
}

/// `load`, telling `progress` how far each layer has streamed into the store: the layer's
/// digest (a legacy layer's directory name), the bytes so far and its size, as dockerd's
/// `Loading layer` lines do.
pub fn load_with_progress<R: Read>(
    store: &ImageStore,
    r: R,
    progress: &dyn Fn(&Digest, u64, u64),
) -> Result<Vec<Loaded>> {
    let mut session = LoadSession::new(store);
    let result =
        load_entries(&mut session, r, progress).and_then(|g| finish_load(&mut session, &g));
    session.finish(result)
}

/// Passes a blob through, reporting its bytes when it is a layer: a config is JSON and
/// starts with `{`, a layer (a tar, maybe compressed) never does. Which it is is not known
/// from the archive until manifest.json, usually its last entry.
struct LayerProgress<'a, R> {
    inner: R,
    id: Option<Digest>,
    total: u64,
    done: u64,
    is_layer: Option<bool>,
    progress: &'a dyn Fn(&Digest, u64, u64),
}

impl<R: Read> Read for LayerProgress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Ok(0);
        }
        let is_layer = *self.is_layer.get_or_insert(buf[0] != b'{');
        self.done += n as u64;
        if let (true, Some(id)) = (is_layer, &self.id) {
            (self.progress)(id, self.done, self.total);
        }
        Ok(n)
    }
}

fn load_entries<R: Read>(
    session: &mut LoadSession<'_>,
    r: R,
    progress: &dyn Fn(&Digest, u64, u64),
) -> Result<Gathered> {
    let mut g = Gathered::default();
    let input = crate::extract::decompress(r, "archive")?;
    let mut ar = tar::Archive::new(input);
    // a header that does not parse has no name of its own: name the entry before it
    let mut previous = String::from("(start of archive)");
    let entries = ar.entries().map_err(|e| Error::Archive {
        reason: format!("read tar: {e}"),
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Archive {
            reason: format!("read tar header after entry {previous}: {e}"),
        })?;
        let raw_path = entry
            .path()
            .map_err(|e| Error::Archive {
                reason: format!("entry after {previous}: bad name: {e}"),
            })?
            .into_owned();
        let path = clean_archive_path(&raw_path)?;
        let what = format!("entry {path}");
        previous.clone_from(&path);
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name().map_err(|e| Error::Archive {
                reason: format!("{what}: bad link name: {e}"),
            })? {
                let base = Path::new(&path)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(target);
                let target = clean_archive_path(&base)?;
                g.hold(path.len() + target.len(), &path)?;
                g.links.insert(path, target);
            }
            continue;
        }
        if !kind.is_file() || ignored_entry(&path) {
            continue;
        }
        let size = entry.size();
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let d = Digest::from_hex(hex).map_err(|e| Error::Archive {
                reason: format!("{what}: {e}"),
            })?;
            let mut r = LayerProgress {
                inner: &mut entry,
                id: Some(d.clone()),
                total: size,
                done: 0,
                is_layer: None,
                progress,
            };
            session.ingest(&d, Some(size), &mut r, &what)?;
            g.hold(path.len() + 80, &path)?;
            g.files.insert(path, d);
        } else if path == "manifest.json" || path == "index.json" {
            if size > MAX_ARCHIVE_JSON {
                return Err(Error::Archive {
                    reason: format!(
                        "{what} is {size} bytes, more than the {} MiB allowed",
                        MAX_ARCHIVE_JSON >> 20
                    ),
                });
            }
            g.hold(size as usize, &path)?;
            let mut buf = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(MAX_ARCHIVE_JSON)
                .read_to_end(&mut buf)
                .map_err(|e| Error::Archive {
                    reason: format!("{what}: {e}"),
                })?;
            g.json.insert(path, buf);
        } else {
            // a config (legacy `<id>.json`, or any name manifest.json gives) or a legacy
            // layer.tar: to disk, whether or not manifest.json (usually last) names it. JSON
            // larger than a config may be is skipped; all JSON together is bounded.
            if path.ends_with(".json") {
                if size > MAX_CONFIG_SIZE {
                    continue;
                }
                g.json_on_disk += size;
                if g.json_on_disk > MAX_LOAD_METADATA as u64 {
                    return Err(Error::Archive {
                        reason: format!(
                            "{what}: the archive's JSON entries exceed {} MiB",
                            MAX_LOAD_METADATA >> 20
                        ),
                    });
                }
            }
            // a legacy layer is `<64 hex>/layer.tar`: its directory names it in progress
            let legacy_id = path
                .strip_suffix("/layer.tar")
                .and_then(|dir| Digest::from_hex(dir).ok());
            let mut r = LayerProgress {
                inner: &mut entry,
                id: legacy_id,
                total: size,
                done: 0,
                is_layer: None,
                progress,
            };
            let d = session.ingest_unknown(&mut r, &what)?;
            g.hold(path.len() + 80, &path)?;
            g.files.insert(path, d);
        }
    }
    Ok(g)
}

/// Opens `rel` inside the layout directory `dir` for reading: no symlink anywhere on the
/// way and nothing outside `dir` (openat2 RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH), a regular
/// file only (a FIFO is opened without blocking, then refused), no larger than `max` bytes.
/// Returns the file and its size.
fn open_layout_file(
    dir: &fs::File,
    dir_path: &Path,
    rel: &str,
    max: u64,
) -> Result<(fs::File, u64)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let p = dir_path.join(rel);
    let fd = rustix::fs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => Error::Archive {
            reason: format!(
                "{}: a symbolic link or a path out of the layout; blobs must be regular files",
                p.display()
            ),
        },
        e => Error::io("open", &p, e.into()),
    })?;
    let f = fs::File::from(fd);
    let md = f.metadata().map_err(|e| Error::io("stat", &p, e))?;
    if !md.is_file() {
        return Err(Error::Archive {
            reason: format!(
                "{}: not a regular file ({:?}); blobs must be regular files",
                p.display(),
                md.file_type()
            ),
        });
    }
    if md.len() > max {
        return Err(Error::Archive {
            reason: format!(
                "{}: {} bytes, more than the {max} allowed",
                p.display(),
                md.len()
            ),
        });
    }
    Ok((f, md.len()))
}

/// Loads an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`): only the
/// blobs index.json reaches, each read through [`open_layout_file`] and never past the size
/// its descriptor declares. A failed load leaves the store as it was.
pub fn load_oci_dir(store: &ImageStore, dir: &Path) -> Result<Vec<Loaded>> {
    let mut session = LoadSession::new(store);
    let result = ingest_oci_dir(&mut session, dir).and_then(|g| finish_load(&mut session, &g));
    session.finish(result)
}

fn ingest_oci_dir(session: &mut LoadSession<'_>, dir: &Path) -> Result<Gathered> {
    let mut g = Gathered::default();
    let dirf = fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let (mut f, size) = open_layout_file(&dirf, dir, "index.json", MAX_ARCHIVE_JSON)?;
    let mut index = Vec::with_capacity(size as usize);
    (&mut f)
        .take(size)
        .read_to_end(&mut index)
        .map_err(|e| Error::io("read", dir.join("index.json"), e))?;
    let parsed: manifest::Index = parse_json(&index, "index.json")?;
    g.json.insert("index.json".into(), index);
    let mut todo: Vec<(Descriptor, bool)> =
        parsed.manifests.into_iter().map(|d| (d, true)).collect();
    let mut seen = std::collections::HashSet::new();
    while let Some((desc, required)) = todo.pop() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        if seen.len() > 100_000 {
            return Err(Error::Archive {
                reason: format!("{}: more than 100000 blobs", dir.display()),
            });
        }
        let rel = blob_path(&desc.digest);
        let shown = dir.join(&rel);
        let is_manifest = manifest::is_manifest_type(&desc.media_type);
        if session.store.content().has(&desc.digest) {
            session.store.add_blob_ref(&desc.digest, &session.owner)?;
        } else {
            let (file, actual) = match open_layout_file(&dirf, dir, &rel, desc.size) {
                Ok(v) => v,
                // an index may list other platforms' manifests without their blobs
                Err(Error::Io { source, .. })
                    if !required && source.kind() == io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if actual != desc.size {
                return Err(Error::Archive {
                    reason: format!(
                        "{}: {actual} bytes, but its descriptor says {}",
                        shown.display(),
                        desc.size
                    ),
                });
            }
            session.ingest(
                &desc.digest,
                Some(desc.size),
                &mut file.take(desc.size),
                &format!("blob {}", shown.display()),
            )?;
        }
        g.hold(rel.len() + 80, &rel)?;
        g.files.insert(rel, desc.digest.clone());
        if is_manifest {
            match session.store.read_manifest(&desc.digest)?.2 {
                ManifestDoc::Manifest(m) => {
                    todo.push((m.config.clone(), true));
                    todo.extend(m.layers.iter().map(|l| (l.clone(), true)));
                }
                ManifestDoc::Index(i) => {
                    todo.extend(i.manifests.iter().map(|m| (m.clone(), false)));
                }
            }
        }
    }
    Ok(g)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::ParseJson {
        what,
        object: "archive".into(),
        reason: e.to_string(),
    })
}

/// Manifests reachable from index.json, by config digest (so an image from manifest.json
/// keeps the manifest docker or we wrote, and its digest).
fn manifests_by_config(store: &ImageStore, index: &manifest::Index) -> HashMap<Digest, Digest> {
    let mut out = HashMap::new();
    let mut todo: Vec<Digest> = index.manifests.iter().map(|d| d.digest.clone()).collect();
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        seen += 1;
        if seen > 1000 {
            break;
        }
        match store.read_manifest(&d) {
            Ok((_, _, ManifestDoc::Manifest(m))) => {
                out.insert(m.config.digest.clone(), d);
            }
            Ok((_, _, ManifestDoc::Index(i))) => {
                todo.extend(i.manifests.iter().map(|m| m.digest.clone()))
            }
            Err(_) => {}
        }
    }
    out
}

fn finish_load(session: &mut LoadSession<'_>, g: &Gathered) -> Result<Vec<Loaded>> {
    let store = session.store;
    let index: Option<manifest::Index> = match g.json.get("index.json") {
        Some(b) => Some(parse_json(b, "index.json")?),
        None => None,
    };
    let by_config = index
        .as_ref()
        .map(|i| manifests_by_config(store, i))
        .unwrap_or_default();
    // every tag is checked before anything is registered, and each image is tagged in the
    // transaction that records it: a failed load leaves no `<none>` image, and a concurrent
    // prune never sees a loaded image untagged
    let mut images: Vec<(Digest, Vec<Reference>)> = Vec::new();
    if let Some(mj) = g.json.get("manifest.json") {
        let entries: Vec<ArchiveManifestEntry> = parse_json(mj, "manifest.json")?;
        if entries.is_empty() {
            return Err(Error::Archive {
                reason: "manifest.json lists no images: the archive holds no images".into(),
            });
        }
        let mut all_tags = Vec::new();
        for e in &entries {
            let mut tags = Vec::new();
            for t in e.repo_tags.iter().flatten() {
                tags.push(parse_tag(t, "manifest.json")?);
            }
            all_tags.push(tags);
        }
        for (e, tags) in entries.iter().zip(all_tags) {
            let config_path = clean_archive_path(Path::new(&e.config))?;
            let config_digest = g.resolve(&config_path).ok_or_else(|| Error::Archive {
                reason: format!(
                    "config {} named in manifest.json is not in the archive",
                    e.config
                ),
            })?;
            let manifest_digest = match by_config.get(&config_digest) {
                Some(m) => m.clone(),
                None => synthesize_manifest(session, g, &config_digest, &e.layers)?,
            };
            let id = session.register(&manifest_digest, &tags)?;
            images.push((id, tags));
        }
    } else {
        let Some(index) = index else {
            return Err(Error::Archive {
                reason:
                    "neither manifest.json nor index.json found: not a docker archive or OCI layout"
                        .into(),
            });
        };
        if index.manifests.is_empty() {
            return Err(Error::Archive {
                reason: "index.json lists no manifests: the archive holds no images".into(),
            });
        }
        let mut planned = Vec::new();
        for d in &index.manifests {
            let ann = d.annotations.as_ref();
            let name = ann
                .and_then(|a| a.get(ANNOTATION_IMAGE_NAME))
                .cloned()
                .or_else(|| {
                    // a bare tag (as skopeo writes) names no repository
                    ann.and_then(|a| a.get(ANNOTATION_REF_NAME))
                        .filter(|n| n.contains('/') || n.contains(':'))
                        .cloned()
                });
            let tags = match name {
                Some(n) => vec![parse_tag(&n, "index.json")?],
                None => Vec::new(),
            };
            planned.push((d.digest.clone(), tags));
        }
        for (d, tags) in planned {
            let id = session.register(&d, &tags)?;
            images.push((id, tags));
        }
    }
    Ok(images
        .into_iter()
        .map(|(id, tags)| Loaded { id, tags })
        .collect())
}

/// A tag named by an archive, refused before anything is registered if it is not one.
fn parse_tag(t: &str, file: &str) -> Result<Reference> {
    let r: Reference = t.parse().map_err(|e| Error::Archive {
        reason: format!("{file}: invalid tag {t:?}: {e}"),
    })?;
    if r.digest.is_some() {
        return Err(Error::Archive {
            reason: format!("{file}: invalid tag {t:?}: a tag cannot hold a digest"),
        });
    }
    Ok(r)
}

/// A manifest for an image that came without one (legacy docker save): layer media types
/// from their magic bytes.
fn synthesize_manifest(
    session: &mut LoadSession<'_>,
    g: &Gathered,
    config: &Digest,
    layers: &[String],
) -> Result<Digest> {
    let store = session.store;
    let mut descs = Vec::new();
    for l in layers {
        let p = clean_archive_path(Path::new(l))?;
        let d = g.resolve(&p).ok_or_else(|| Error::Archive {
            reason: format!("layer {l} named in manifest.json is not in the archive"),
        })?;
        let mut head = [0u8; 6];
        let mut f = store.content().open_blob(&d)?;
        let n = f
            .read(&mut head)
            .map_err(|e| Error::io("read", store.content().blob_path(&d), e))?;
        let mt = match crate::extract::detect_compression(&head[..n]) {
            Ok(crate::extract::Compression::Gzip) => manifest::OCI_LAYER_GZIP,
            Ok(crate::extract::Compression::Zstd) => manifest::OCI_LAYER_ZSTD,
            Ok(crate::extract::Compression::None) => manifest::OCI_LAYER_TAR,
            Err(reason) => {
                return Err(Error::Archive {
                    reason: format!("layer {l}: {reason}"),
                })
            }
        };
        descs.push(Descriptor::new(mt, d.clone(), store.content().size(&d)?));
    }
    let m = manifest::Manifest {
        schema_version: 2,
        media_type: Some(manifest::OCI_MANIFEST.to_string()),
        config: Descriptor::new(
            manifest::OCI_CONFIG,
            config.clone(),
            store.content().size(config)?,
        ),
        layers: descs,
        annotations: None,
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&m)
        .map_err(|e| Error::InvalidArgument(format!("serialise manifest: {e}")))?;
    let d = Digest::of(&bytes);
    session.ingest(&d, Some(bytes.len() as u64), &mut &bytes[..], "manifest")?;
    Ok(d)
}

/// Writes `names` as an OCI image layout in `dir` (created if needed): blobs hard-linked
/// from the content store when possible, `index.json` naming each manifest with the tag
/// (`org.opencontainers.image.ref.name`, what `skopeo copy oci:DIR:TAG` looks up) and the
/// full name.
pub fn export_oci_layout(store: &ImageStore, names: &[String], dir: &Path) -> Result<()> {
    let images = resolve_for_save(store, names)?;
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| Error::io("create directory", &blobs, e))?;
    let mut manifests = Vec::new();
    for (img, tags) in &images {
        let mut all = vec![img.id.clone(), img.manifest_digest.clone()];
        all.extend(img.layers.iter().cloned());
        for d in &all {
            let dest = blobs.join(d.hex());
            if dest.exists() {
                continue;
            }
            let src = store.content().blob_path(d);
            if fs::hard_link(&src, &dest).is_err() {
                fs::copy(&src, &dest).map_err(|e| Error::io("copy blob to", &dest, e))?;
            }
        }
        let base = Descriptor::new(
            &img.manifest_media_type,
            img.manifest_digest.clone(),
            store.content().size(&img.manifest_digest)?,
        );
        if tags.is_empty() {
            manifests.push(base.clone());
        }
        for t in tags {
            let mut d = base.clone();
            d.annotations = Some(BTreeMap::from([
                (ANNOTATION_IMAGE_NAME.to_string(), t.to_string()),
                (
                    ANNOTATION_REF_NAME.to_string(),
                    t.tag_or_latest().to_string(),
                ),
            ]));
            manifests.push(d);
        }
    }
    let index = manifest::Index {
        schema_version: 2,
        media_type: Some(manifest::OCI_INDEX.to_string()),
        manifests,
        annotations: None,
        extra: Default::default(),
    };
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, &p).map_err(|e| Error::io("rename", &p, e))
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write(
        "index.json",
        &serde_json::to_vec(&index)
            .map_err(|e| Error::InvalidArgument(format!("serialise index: {e}")))?,
    )?;
    Ok(())
}

/// Applies `docker import -c` instructions (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`,
/// `STOPSIGNAL`, `LABEL`, `EXPOSE`, `VOLUME`) to an empty config; shared by the CLI's and
/// the API's import.
pub fn parse_changes(changes: &[String]) -> Result<manifest::ContainerConfig> {
    let mut c = manifest::ContainerConfig::default();
    let list = |v: &str| -> Result<Vec<String>> {
        let v = v.trim();
        if v.starts_with('[') {
            serde_json::from_str(v).map_err(|e| {
                Error::InvalidArgument(format!("change {v:?}: not a JSON array of strings: {e}"))
            })
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), v.to_string()])
        }
    };
    for ch in changes {
        let (inst, rest) = ch
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::InvalidArgument(format!("invalid change {ch:?}")))?;
        let rest = rest.trim();
        match inst.to_ascii_uppercase().as_str() {
            "CMD" => c.cmd = Some(list(rest)?),
            "ENTRYPOINT" => c.entrypoint = Some(list(rest)?),
            "ENV" => {
                let kv = match rest.split_once('=') {
                    Some(_) => rest.to_string(),
                    None => rest.replacen(char::is_whitespace, "=", 1),
                };
                c.env.get_or_insert_with(Vec::new).push(kv);
            }
            "WORKDIR" => c.working_dir = Some(rest.to_string()),
            "USER" => c.user = Some(rest.to_string()),
            "STOPSIGNAL" => c.stop_signal = Some(rest.to_string()),
            "LABEL" => {
                let (k, v) = rest.split_once('=').ok_or_else(|| {
                    Error::InvalidArgument(format!("LABEL needs key=value: {ch:?}"))
                })?;
                c.labels
                    .get_or_insert_with(Default::default)
                    .insert(k.trim_matches('"').into(), v.trim_matches('"').into());
            }
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    c.exposed_ports
                        .get_or_insert_with(Default::default)
                        .insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" => {
                for v in list(rest)
                    .ok()
                    .filter(|_| rest.starts_with('['))
                    .unwrap_or_else(|| rest.split_whitespace().map(str::to_string).collect())
                {
                    c.volumes
                        .get_or_insert_with(Default::default)
                        .insert(v, serde_json::json!({}));
                }
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other} is not a valid change command"
                )))
            }
        }
    }
    Ok(c)
}

/// Options for [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// History comment (`docker import -m`).
    pub message: Option<String>,
    /// Where the tarball came from, for the history (`-` or a path or URL).
    pub source: String,
    /// A container config to set (`docker import -c` changes, already applied).
    pub config: Option<manifest::ContainerConfig>,
}

/// Imports a root file system tarball (plain, gzip or zstd) as a one-layer image, tagged
/// `reference` if given.
pub fn import<R: Read>(
    store: &ImageStore,
    r: R,
    reference: Option<&Reference>,
    opts: &ImportOptions,
) -> Result<Image> {
    let layer = diff::tar_to_blob(store.content(), r, &opts.source)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let p = store.platform();
    let config = ImageConfig {
        created: Some(now.clone()),
        author: None,
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: p.variant.clone(),
        config: Some(opts.config.clone().unwrap_or_default()),
        rootfs: RootFs {
            typ: "layers".into(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        history: Some(vec![History {
            created: Some(now),
            created_by: Some(format!("berth import {}", opts.source)),
            comment: Some(
                opts.message
                    .clone()
                    .unwrap_or_else(|| format!("Imported from {}", opts.source)),
            ),
            ..Default::default()
        }]),
        extra: Default::default(),
    };
    let layer_digest = layer.digest.clone();
    let result = store.create_image(&config, &[layer], reference);
    if result.is_err() {
        // the layer blob this import stored, unless an image or lease already had it
        if let Err(e) = store.discard_blobs(&[layer_digest]) {
            tracing::warn!(error = %e, "could not remove the layer of a failed import");
        }
    }
    result
}

/// Paths in `dir` that a save would write, for tests and callers that want to check a layout.
pub fn layout_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| Error::io("walk", dir, e.into()))?;
        if e.file_type().is_file() {
            out.push(e.path().to_path_buf());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let c = parse_changes(&[
            "CMD [\"/bin/sh\"]".into(),
            "ENV A=b".into(),
            "ENV C d".into(),
            "EXPOSE 80".into(),
            "WORKDIR /w".into(),
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh"]);
        assert_eq!(c.env.unwrap(), vec!["A=b", "C=d"]);
        assert!(c.exposed_ports.unwrap().contains_key("80/tcp"));
        assert!(parse_changes(&["RUN x".into()]).is_err());
    }
}
