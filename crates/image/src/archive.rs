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
use crate::manifest::{self, Descriptor, History, ImageConfig, ManifestDoc, RootFs};
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

#[derive(Default)]
struct Gathered {
    // path in archive → blob digest (for every regular file we stored)
    files: HashMap<String, Digest>,
    // small JSON files kept in memory
    json: HashMap<String, Vec<u8>>,
    // symlinks (legacy docker save links duplicate layer.tar files)
    links: HashMap<String, String>,
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
}

/// Loads a docker-archive (legacy or OCI-layout style) or a tarred OCI image layout.
pub fn load<R: Read>(store: &ImageStore, r: R) -> Result<Vec<Loaded>> {
    let mut g = Gathered::default();
    let input = crate::extract::decompress(r, "archive")?;
    let mut ar = tar::Archive::new(input);
    let aerr = |e: io::Error| Error::Archive {
        reason: format!("read tar: {e}"),
    };
    for entry in ar.entries().map_err(aerr)? {
        let mut entry = entry.map_err(aerr)?;
        let raw_path = entry.path().map_err(aerr)?.into_owned();
        let path = clean_archive_path(&raw_path)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name().map_err(aerr)? {
                let base = Path::new(&path)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(target);
                g.links.insert(path, clean_archive_path(&base)?);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let d = Digest::from_hex(hex).map_err(|e| Error::Archive {
                reason: format!("entry {path}: {e}"),
            })?;
            let mut w = store.content().writer(&d, Some(size))?;
            if !w.already_present() {
                io::copy(&mut entry, &mut w).map_err(aerr)?;
            } else {
                io::copy(&mut entry, &mut io::sink()).map_err(aerr)?;
            }
            w.commit().map_err(|e| Error::Archive {
                reason: format!("entry {path}: {e}"),
            })?;
            g.files.insert(path, d);
        } else if (path.ends_with(".json") || path == "oci-layout" || path == "repositories")
            && size <= MAX_ARCHIVE_JSON
        {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(aerr)?;
            g.json.insert(path, buf);
        } else {
            let (d, _) = store.content().write_from_reader(&mut entry)?;
            g.files.insert(path, d);
        }
    }
    finish_load(store, &g)
}

/// Loads an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
pub fn load_oci_dir(store: &ImageStore, dir: &Path) -> Result<Vec<Loaded>> {
    let mut g = Gathered::default();
    let index_path = dir.join("index.json");
    let index = fs::read(&index_path).map_err(|e| Error::io("read", &index_path, e))?;
    g.json.insert("index.json".into(), index);
    let blobs = dir.join("blobs/sha256");
    for ent in fs::read_dir(&blobs).map_err(|e| Error::io("list", &blobs, e))? {
        let ent = ent.map_err(|e| Error::io("list", &blobs, e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let Ok(d) = Digest::from_hex(&name) else {
            continue;
        };
        if !store.content().has(&d) {
            let mut f = fs::File::open(ent.path()).map_err(|e| Error::io("open", ent.path(), e))?;
            let mut w = store.content().writer(&d, None)?;
            if !w.already_present() {
                io::copy(&mut f, &mut w).map_err(|e| Error::io("copy", ent.path(), e))?;
            }
            w.commit()?;
        }
        g.files.insert(format!("blobs/sha256/{name}"), d);
    }
    finish_load(store, &g)
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

fn finish_load(store: &ImageStore, g: &Gathered) -> Result<Vec<Loaded>> {
    let index: Option<manifest::Index> = match g.json.get("index.json") {
        Some(b) => Some(parse_json(b, "index.json")?),
        None => None,
    };
    let by_config = index
        .as_ref()
        .map(|i| manifests_by_config(store, i))
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(mj) = g.json.get("manifest.json") {
        let entries: Vec<ArchiveManifestEntry> = parse_json(mj, "manifest.json")?;
        for e in entries {
            let config_path = clean_archive_path(Path::new(&e.config))?;
            let config_digest = match (g.resolve(&config_path), g.json.get(&config_path)) {
                (Some(d), _) => d,
                (None, Some(bytes)) => store.content().write_bytes(bytes)?,
                (None, None) => {
                    return Err(Error::Archive {
                        reason: format!(
                            "config {} named in manifest.json is not in the archive",
                            e.config
                        ),
                    })
                }
            };
            let manifest_digest = match by_config.get(&config_digest) {
                Some(m) => m.clone(),
                None => synthesize_manifest(store, g, &config_digest, &e.layers)?,
            };
            let id = store.register_untagged(&manifest_digest)?;
            let img = store.get(&id)?;
            let mut tags = Vec::new();
            for t in e.repo_tags.iter().flatten() {
                let r: Reference = t.parse()?;
                store.tag(&img, &r)?;
                tags.push(r);
            }
            out.push(Loaded { id, tags });
        }
        return Ok(out);
    }
    let Some(index) = index else {
        return Err(Error::Archive {
            reason:
                "neither manifest.json nor index.json found: not a docker archive or OCI layout"
                    .into(),
        });
    };
    for d in &index.manifests {
        let id = store.register_untagged(&d.digest)?;
        let img = store.get(&id)?;
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
        let mut tags = Vec::new();
        if let Some(n) = name {
            if let Ok(r) = n.parse::<Reference>() {
                store.tag(&img, &r)?;
                tags.push(r);
            }
        }
        out.push(Loaded { id, tags });
    }
    Ok(out)
}

/// A manifest for an image that came without one (legacy docker save): layer media types
/// from their magic bytes.
fn synthesize_manifest(
    store: &ImageStore,
    g: &Gathered,
    config: &Digest,
    layers: &[String],
) -> Result<Digest> {
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
    store.content().write_bytes(&bytes)
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
    store.create_image(&config, &[layer], reference)
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
