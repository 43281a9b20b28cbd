//! Pull: resolve a tag or digest to a manifest (choosing the platform from an index),
//! verify every byte against its digest, fetch the config and then the layers in parallel
//! (bounded), streaming each to the content store on a blocking thread so no layer is ever
//! held in memory, unpack each layer as soon as it is committed while the others download,
//! skip what the store already has, then register the image.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use berth_image::digest::Digest;
use berth_image::manifest::{self as im, ManifestDoc, Platform};
use berth_image::reference::Reference;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::client::{failure, RepositoryClient};
use crate::error::{Error, HttpFailure, Result};
use crate::local::LocalImages;
use crate::progress::Progress;
use crate::store_err;

/// Attempts of one blob download: a connection that breaks mid-body restarts the blob.
const BLOB_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to choose from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Blobs downloaded at once.
    pub concurrency: usize,
    /// Credentials the caller brings (a daemon's client, through `X-Registry-Auth`); when
    /// `None` the credential file is read, as the CLI did.
    pub credentials: Option<crate::Credentials>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            concurrency: 6,
            credentials: None,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The digest of the image manifest registered (the platform's, if an index was pulled).
    pub manifest_digest: Digest,
    /// The digest of the index or list the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// The digest the reference resolved to (index or manifest), which `Digest:` prints.
    pub resolved_digest: Digest,
    pub image_id: Digest,
    /// Blobs downloaded.
    pub fetched: Vec<Digest>,
    /// Blobs already in the store.
    pub skipped: Vec<Digest>,
    pub bytes_downloaded: u64,
}

/// A manifest as fetched and verified.
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub content_type: Option<String>,
}

/// GETs a manifest by tag or digest and verifies it: against the digest asked for, and
/// against `Docker-Content-Digest` when the registry sends one.
pub(crate) async fn fetch_manifest(
    client: &RepositoryClient,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<FetchedManifest> {
    let wrap = |cause| Error::FetchManifest {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        reference: reference.to_string(),
        cause,
    };
    let url = client.url(&format!("manifests/{reference}"))?;
    let accept = im::MANIFEST_ACCEPT.join(", ");
    let resp = client
        .send(|http| http.get(url.clone()).header(ACCEPT, accept.as_str()))
        .await
        .map_err(wrap)?;
    if !resp.status().is_success() {
        return Err(wrap(failure(resp).await));
    }
    let parse_err = |reason: String| Error::ParseManifest {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        reference: reference.to_string(),
        reason,
    };
    if resp.content_length().unwrap_or(0) > im::MAX_MANIFEST_SIZE {
        return Err(parse_err(format!(
            "{} bytes is more than the {} allowed",
            resp.content_length().unwrap_or(0),
            im::MAX_MANIFEST_SIZE
        )));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
    let header_digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<Digest>().ok());
    let mut bytes = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| wrap(HttpFailure::Transport(e)))?;
        if (bytes.len() + chunk.len()) as u64 > im::MAX_MANIFEST_SIZE {
            return Err(parse_err(format!(
                "more than the {} bytes allowed",
                im::MAX_MANIFEST_SIZE
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let digest = Digest::of(&bytes);
    let mismatch = |expected: &Digest| Error::DigestMismatch {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        what: "manifest",
        expected: expected.to_string(),
        actual: digest.to_string(),
    };
    if let Some(e) = expected {
        if *e != digest {
            return Err(mismatch(e));
        }
    }
    if let Some(h) = &header_digest {
        if *h != digest {
            return Err(mismatch(h));
        }
    }
    Ok(FetchedManifest {
        bytes,
        digest,
        content_type,
    })
}

/// One blob to fetch.
#[derive(Clone)]
struct BlobJob {
    digest: Digest,
    size: u64,
    /// Layers are shown in progress; the config is not (as Docker does).
    show: bool,
}

enum Chunk {
    Data(bytes::Bytes),
    End,
}

/// Streams one blob into the content store, verifying size as it arrives and digest at the
/// end; retried from the start when the connection breaks.
async fn fetch_blob(
    client: &RepositoryClient,
    store: &Arc<dyn LocalImages>,
    job: &BlobJob,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut attempt = 1;
    loop {
        match fetch_blob_once(client, store, job, progress).await {
            Err(Error::FetchBlob {
                cause: HttpFailure::Transport(e),
                ..
            }) if attempt < BLOB_ATTEMPTS => {
                tracing::debug!(digest = %job.digest, error = %e, attempt, "blob download broke; restarting it");
                attempt += 1;
            }
            r => return r,
        }
    }
}

async fn fetch_blob_once(
    client: &RepositoryClient,
    store: &Arc<dyn LocalImages>,
    job: &BlobJob,
    progress: &dyn Progress,
) -> Result<u64> {
    let wrap = |cause| Error::FetchBlob {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        digest: job.digest.to_string(),
        cause,
    };
    let url = client.url(&format!("blobs/{}", job.digest))?;
    let resp = client
        .send(|http| http.get(url.clone()))
        .await
        .map_err(wrap)?;
    if !resp.status().is_success() {
        return Err(wrap(failure(resp).await));
    }
    let size_mismatch = |actual: u64| Error::SizeMismatch {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        digest: job.digest.to_string(),
        expected: job.size,
        actual,
    };
    if let Some(len) = resp.content_length() {
        if len != job.size {
            return Err(size_mismatch(len));
        }
    }

    // The writer is blocking file I/O (and may wait on another writer's lock): it runs on
    // its own thread, fed through a bounded channel so a slow disk slows the download
    // instead of filling memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(64);
    let content = store.content().clone();
    let digest = job.digest.clone();
    let size = job.size;
    let writer = tokio::task::spawn_blocking(move || -> Result<(), berth_image::error::Error> {
        let mut w = content.writer(&digest, Some(size))?;
        let present = w.already_present();
        while let Some(c) = rx.blocking_recv() {
            match c {
                Chunk::Data(b) => {
                    if !present {
                        w.write_all(&b).map_err(|e| {
                            berth_image::error::Error::io(
                                "write blob",
                                content.blob_path(&digest),
                                e,
                            )
                        })?;
                    }
                }
                Chunk::End => {
                    w.commit()?;
                    return Ok(());
                }
            }
        }
        // The sender went away without End: the download failed; dropping the writer
        // removes its temporary file.
        Ok(())
    });

    let started = Instant::now();
    let mut received: u64 = 0;
    let mut stream = resp
        .bytes_stream()
        .map_err(|e| wrap(HttpFailure::Transport(e)));
    let mut outcome: Result<()> = Ok(());
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        received += chunk.len() as u64;
        if received > job.size {
            // A registry must not make us write more than the manifest promised.
            outcome = Err(size_mismatch(received));
            break;
        }
        if job.show {
            progress.bytes(&job.digest, "Downloading", received, job.size);
        }
        if tx.send(Chunk::Data(chunk)).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    if outcome.is_ok() {
        if received != job.size {
            outcome = Err(size_mismatch(received));
        } else {
            tracing::debug!(
                digest = %job.digest,
                ms = started.elapsed().as_millis() as u64,
                "blob received"
            );
            if job.show {
                progress.status(&job.digest, "Verifying Checksum");
            }
            let _ = tx.send(Chunk::End).await;
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Internal(format!("blob writer thread: {e}")))?;
    // The writer's own failure (disk full, digest mismatch) explains a short stream, so it
    // is reported first; when the network failed, the writer just discarded its file.
    let written = written.map_err(|e| match e {
        berth_image::error::Error::BlobDigestMismatch { expected, actual } => {
            Error::DigestMismatch {
                registry: client.registry().to_string(),
                repository: client.repository().to_string(),
                what: "blob",
                expected: expected.to_string(),
                actual: actual.to_string(),
            }
        }
        berth_image::error::Error::BlobSizeMismatch { actual, .. } => size_mismatch(actual),
        e => store_err("write blob", job.digest.to_string(), e),
    });
    written?;
    outcome?;
    tracing::debug!(
        digest = %job.digest,
        size = job.size,
        ms = started.elapsed().as_millis() as u64,
        "blob downloaded (received, verified, synced)"
    );
    Ok(received)
}

/// One layer to unpack as soon as its blob is in the store.
struct UnpackStep {
    blob: Digest,
    diff_id: Digest,
    chain_id: Digest,
    parent: Option<Digest>,
}

/// The layers' diff IDs and chain IDs from the image config (already in the store). Empty
/// when the config cannot tell (unreadable, or not one diff ID per layer): `register` then
/// unpacks everything and reports what is wrong.
async fn unpack_plan(store: &Arc<dyn LocalImages>, manifest: &im::Manifest) -> Vec<UnpackStep> {
    let content = store.content().clone();
    let config = manifest.config.digest.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let bytes = content.read_limited(&config, im::MAX_CONFIG_SIZE).ok()?;
        im::ImageConfig::parse(&bytes, config.as_str()).ok()
    })
    .await
    .ok()
    .flatten();
    let Some(cfg) = parsed else {
        return Vec::new();
    };
    let diff_ids = cfg.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Vec::new();
    }
    let chains = im::chain_ids(&diff_ids);
    manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| UnpackStep {
            blob: l.digest.clone(),
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            parent: i.checked_sub(1).map(|p| chains[p].clone()),
        })
        .collect()
}

async fn unpack(store: &Arc<dyn LocalImages>, step: &UnpackStep) -> Result<()> {
    let t = Instant::now();
    let store = store.clone();
    let (blob, diff_id, chain_id, parent) = (
        step.blob.clone(),
        step.diff_id.clone(),
        step.chain_id.clone(),
        step.parent.clone(),
    );
    tokio::task::spawn_blocking(move || {
        store
            .unpack_layer(&blob, &diff_id, &chain_id, parent.as_ref())
            .map_err(|e| store_err("unpack layer", blob.to_string(), e))
    })
    .await
    .map_err(|e| Error::Internal(format!("unpack thread: {e}")))??;
    tracing::debug!(blob = %step.blob, ms = t.elapsed().as_millis() as u64, "layer unpacked");
    Ok(())
}

/// Pulls `reference` into `store`. The blobs of the image are held (leased) from before the
/// pull looks at what is present until the image is registered, so that an rmi or prune
/// running at the same time cannot delete a blob the pull counted on.
pub(crate) async fn pull(
    client: &RepositoryClient,
    store: Arc<dyn LocalImages>,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullReport> {
    static PULLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let owner = format!(
        "berth.pull/{}-{}",
        std::process::id(),
        PULLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let fetched = std::sync::Mutex::new(Vec::new());
    let unpacked = std::sync::Mutex::new(Vec::new());
    let result = pull_held(
        client,
        store.clone(),
        reference,
        opts,
        progress,
        &owner,
        (&fetched, &unpacked),
    )
    .await;
    let releaser = store.clone();
    let o = owner.clone();
    // A failed pull must not leave the blobs it downloaded behind (issue 12): the store is
    // to look as it did before; those another image or pull needs are kept by the store.
    let discard = match (&result, fetched.into_inner()) {
        (Err(_), Ok(list)) => list,
        _ => Vec::new(),
    };
    let layers = match (&result, unpacked.into_inner()) {
        (Err(_), Ok(list)) => list,
        _ => Vec::new(),
    };
    // SQLite work: off the async threads
    if let Err(e) = tokio::task::spawn_blocking(move || {
        // layers before blobs: an unpacked layer is what a full disk most needs freed
        if !layers.is_empty() {
            releaser.discard_layers(&layers);
        }
        if discard.is_empty() {
            releaser.release_blobs(&o)
        } else {
            releaser.release_and_discard_blobs(&o, &discard)
        }
    })
    .await
    {
        tracing::warn!(owner, error = %e, "could not drop a pull's blob leases");
    }
    result
}

async fn pull_held(
    client: &RepositoryClient,
    store: Arc<dyn LocalImages>,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
    owner: &str,
    (fetched_log, unpacked_log): (
        &std::sync::Mutex<Vec<Digest>>,
        &std::sync::Mutex<Vec<Digest>>,
    ),
) -> Result<PullReport> {
    let t0 = Instant::now();
    let by = match &reference.digest {
        Some(d) => d.to_string(),
        None => reference.tag_or_latest().to_string(),
    };
    progress.line(&format!("{by}: Pulling from {}", reference.repository));
    let top = fetch_manifest(client, &by, reference.digest.as_ref()).await?;
    let parse = |m: &FetchedManifest, what: &str| {
        im::parse_manifest(&m.bytes, m.content_type.as_deref(), what).map_err(|e| {
            Error::ParseManifest {
                registry: client.registry().to_string(),
                repository: client.repository().to_string(),
                reference: what.to_string(),
                reason: e.to_string(),
            }
        })
    };
    let resolved_digest = top.digest.clone();
    let (manifest, fetched_manifest, index_digest) = match parse(&top, &by)? {
        (_, ManifestDoc::Manifest(m)) => (*m, top, None),
        (_, ManifestDoc::Index(idx)) => {
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let desc = im::select_platform(&idx, &top.digest, &want).map_err(|e| {
                Error::SelectPlatform {
                    registry: client.registry().to_string(),
                    repository: client.repository().to_string(),
                    reference: by.clone(),
                    platform: want.to_string(),
                    available: match e {
                        berth_image::error::Error::PlatformNotFound { available, .. } => available,
                        e => e.to_string(),
                    },
                }
            })?;
            let d = desc.digest.clone();
            let child = fetch_manifest(client, d.as_str(), Some(&d)).await?;
            match parse(&child, d.as_str())? {
                (_, ManifestDoc::Manifest(m)) => {
                    let content = store.content().clone();
                    if !content.has(&top.digest) {
                        if let Ok(mut l) = fetched_log.lock() {
                            l.push(top.digest.clone());
                        }
                    }
                    let idx_bytes = top.bytes.clone();
                    // Kept so the index digest a user pulled by stays resolvable.
                    tokio::task::spawn_blocking(move || content.write_bytes(&idx_bytes))
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?
                        .map_err(|e| store_err("write index", top.digest.to_string(), e))?;
                    (*m, child, Some(top.digest.clone()))
                }
                (_, ManifestDoc::Index(_)) => {
                    return Err(Error::ParseManifest {
                        registry: client.registry().to_string(),
                        repository: client.repository().to_string(),
                        reference: d.to_string(),
                        reason: "an index nested in an index is not supported".into(),
                    })
                }
            }
        }
    };
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "manifest resolved");

    for l in &manifest.layers {
        if l.urls.as_ref().map(|u| !u.is_empty()).unwrap_or(false)
            && l.media_type.contains("foreign")
        {
            return Err(Error::ParseManifest {
                registry: client.registry().to_string(),
                repository: client.repository().to_string(),
                reference: fetched_manifest.digest.to_string(),
                reason: format!("foreign layer {} is not supported", l.digest),
            });
        }
    }
    {
        let mut held = vec![manifest.config.digest.clone()];
        held.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let store = store.clone();
        let owner = owner.to_string();
        tokio::task::spawn_blocking(move || store.hold_blobs(&owner, &held))
            .await
            .map_err(|e| Error::Internal(format!("lease thread: {e}")))?
            .map_err(|e| store_err("lease blobs", reference.to_string(), e))?;
    }
    let t1 = Instant::now();
    let mut fetched = Vec::new();
    let mut skipped = Vec::new();
    let mut bytes_downloaded = 0;

    // The config first: it is small, and its diff IDs let each layer be unpacked as soon as
    // its download finishes, while the others are still arriving.
    let config_job = BlobJob {
        digest: manifest.config.digest.clone(),
        size: manifest.config.size,
        show: false,
    };
    if store.content().has(&config_job.digest) {
        skipped.push(config_job.digest.clone());
    } else {
        bytes_downloaded += fetch_blob(client, &store, &config_job, progress).await?;
        if let Ok(mut l) = fetched_log.lock() {
            l.push(config_job.digest.clone());
        }
        fetched.push(config_job.digest.clone());
    }
    let plan = unpack_plan(&store, &manifest).await;

    let mut jobs: Vec<BlobJob> = Vec::new();
    for l in &manifest.layers {
        if !jobs.iter().any(|j| j.digest == l.digest) {
            jobs.push(BlobJob {
                digest: l.digest.clone(),
                size: l.size,
                show: true,
            });
        }
    }
    let mut present = Vec::new();
    for j in &jobs {
        let has = store.content().has(&j.digest);
        progress.status(
            &j.digest,
            if has {
                "Already exists"
            } else {
                "Pulling fs layer"
            },
        );
        present.push(has);
    }

    // Downloads and unpacks are bounded separately: a layer waiting for a CPU to unpack on
    // must not hold a connection another layer could download on.
    let downloads = tokio::sync::Semaphore::new(opts.concurrency.max(1));
    let unpackers = tokio::sync::Semaphore::new(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );
    let results: Vec<Result<(Digest, Option<u64>, bool)>> =
        // Indices, not references, go through the stream: a closure over `&BlobJob` makes
        // the future not provably `Send` (rustc's higher-ranked lifetime limitation), and
        // the daemon runs pulls on spawned tasks.
        futures_util::stream::iter(0..jobs.len())
            .map(|i| {
                let j = &jobs[i];
                let has = &present[i];
                let store = &store;
                let plan = &plan;
                let downloads = &downloads;
                let unpackers = &unpackers;
                async move {
                    let mut n = None;
                    if !*has {
                        let _slot = downloads
                            .acquire()
                            .await
                            .map_err(|e| Error::Internal(e.to_string()))?;
                        n = Some(fetch_blob(client, store, j, progress).await?);
                        if let Ok(mut l) = fetched_log.lock() {
                            l.push(j.digest.clone());
                        }
                        progress.status(&j.digest, "Download complete");
                    }
                    let mut unpacked = false;
                    for step in plan.iter().filter(|s| s.blob == j.digest) {
                        let _cpu = unpackers
                            .acquire()
                            .await
                            .map_err(|e| Error::Internal(e.to_string()))?;
                        if !*has {
                            progress.status(&j.digest, "Extracting");
                        }
                        unpack(store, step).await?;
                        if !*has {
                            if let Ok(mut l) = unpacked_log.lock() {
                                l.push(step.chain_id.clone());
                            }
                        }
                        unpacked = true;
                    }
                    if unpacked && !*has {
                        progress.status(&j.digest, "Pull complete");
                    }
                    Ok((j.digest.clone(), n, unpacked))
                }
            })
            .buffer_unordered(jobs.len().max(1))
            .collect()
            .await;
    let mut late = Vec::new();
    for r in results {
        let (d, n, unpacked) = r?;
        match n {
            Some(n) => {
                bytes_downloaded += n;
                if !unpacked {
                    late.push(d.clone());
                }
                fetched.push(d);
            }
            None => skipped.push(d),
        }
    }
    tracing::debug!(
        ms = t1.elapsed().as_millis() as u64,
        bytes = bytes_downloaded,
        blobs = fetched.len(),
        "blobs downloaded and layers unpacked"
    );
    // Layers the plan did not cover (no usable config) are unpacked by `register`.
    for d in &late {
        progress.status(d, "Extracting");
    }

    // The manifest goes in last: it is what makes the image complete.
    let t2 = Instant::now();
    let content = store.content().clone();
    let mbytes = fetched_manifest.bytes.clone();
    let manifest_digest = fetched_manifest.digest.clone();
    if !content.has(&manifest_digest) {
        if let Ok(mut l) = fetched_log.lock() {
            l.push(manifest_digest.clone());
        }
    }
    let store2 = store.clone();
    let reference2 = reference.clone();
    let md = manifest_digest.clone();
    // Registered under what the reference resolved to (the index, when there is one), as
    // Docker records it: that is the digest `docker pull` and `berth images --digests` show
    // and the one that pulls the same image again.
    let registered = resolved_digest.clone();
    let image_id = tokio::task::spawn_blocking(move || {
        content
            .write_bytes(&mbytes)
            .map_err(|e| store_err("write manifest", md.to_string(), e))?;
        store2
            .register(&reference2, &registered)
            .map_err(|e| store_err("register image", reference2.to_string(), e))
    })
    .await
    .map_err(|e| Error::Internal(format!("register thread: {e}")))??;
    tracing::debug!(ms = t2.elapsed().as_millis() as u64, "image registered");
    for d in &late {
        progress.status(d, "Pull complete");
    }
    progress.finish();
    tracing::debug!(total_ms = t0.elapsed().as_millis() as u64, "pull done");
    Ok(PullReport {
        manifest_digest,
        index_digest,
        resolved_digest,
        image_id,
        fetched,
        skipped,
        bytes_downloaded,
    })
}
