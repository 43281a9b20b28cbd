//! Push: for each blob of a local image, ask the registry whether it has it (HEAD), mount it
//! from another repository of the same registry when one is known to hold it, else upload it
//! (one PUT, or PATCHed chunks for large blobs); then PUT the manifest, byte for byte as
//! stored, so its digest is the same on both sides.

use std::io::Read;
use std::sync::Arc;

use berth_image::digest::Digest;
use berth_image::manifest::{self as im, ManifestDoc};
use berth_image::reference::Reference;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, StatusCode, Url};

use crate::client::{failure, RepositoryClient};
use crate::error::{Error, HttpFailure, Result};
use crate::local::LocalImages;
use crate::progress::Progress;
use crate::store_err;

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub concurrency: usize,
    /// Blobs at least this large are uploaded in chunks.
    pub chunked_threshold: u64,
    /// The size of one PATCH.
    pub chunk_size: u64,
    /// Upload every blob in chunks (tests, registries that want it).
    pub force_chunked: bool,
    /// Repositories on the same registry to try mounting blobs from, besides those the
    /// store knows.
    pub mount_from: Vec<String>,
    /// Credentials the caller brings (see `PullOptions::credentials`).
    pub credentials: Option<crate::Credentials>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 4,
            chunked_threshold: 512 * 1024 * 1024,
            chunk_size: 32 * 1024 * 1024,
            force_chunked: false,
            mount_from: Vec::new(),
            credentials: None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub tag: String,
    pub manifest_digest: Option<Digest>,
    pub manifest_size: u64,
    pub uploaded: Vec<Digest>,
    pub skipped: Vec<Digest>,
    pub mounted: Vec<Digest>,
    /// Blobs that went up in more than one request.
    pub chunked: Vec<Digest>,
}

enum Outcome {
    Exists,
    Mounted,
    Uploaded { chunked: bool },
}

struct BlobJob {
    digest: Digest,
    size: u64,
    show: bool,
}

/// The local image `reference` names: its manifest bytes, media type and blobs.
pub(crate) fn local_manifest(
    store: &dyn LocalImages,
    reference: &Reference,
) -> Result<(Digest, Vec<u8>, String, im::Manifest)> {
    let digest = store
        .manifest_of(reference)
        .map_err(|e| store_err("find image", reference.to_string(), e))?;
    let bytes = store
        .content()
        .read_limited(&digest, im::MAX_MANIFEST_SIZE)
        .map_err(|e| store_err("read manifest", digest.to_string(), e))?;
    let (mt, doc) = im::parse_manifest(&bytes, None, digest.as_str())
        .map_err(|e| store_err("parse manifest", digest.to_string(), e))?;
    match doc {
        ManifestDoc::Manifest(m) => Ok((digest, bytes, mt, *m)),
        ManifestDoc::Index(_) => Err(Error::InvalidArgument {
            message: format!(
                "{reference}: pushing an image index is not supported; push a single-platform image"
            ),
        }),
    }
}

/// A body that streams a blob from the content store, reporting progress.
fn file_body(
    store: &Arc<dyn LocalImages>,
    digest: &Digest,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Body {
    let file = store.content().open_blob(digest);
    let stream = futures_util::stream::unfold(
        (file.map_err(|e| std::io::Error::other(e.to_string())), 0u64),
        move |(file, sent)| {
            let progress = progress.clone();
            async move {
                let mut f = match file {
                    Ok(f) => f,
                    Err(e) => {
                        return Some((Err(e), (Err(std::io::Error::other("already failed")), sent)))
                    }
                };
                // A 256 KiB read, mostly from the page cache, costs less than handing it to a
                // blocking thread, and works on any runtime flavour.
                let mut buf = vec![0u8; 256 * 1024];
                let r = f.read(&mut buf).map(|n| {
                    buf.truncate(n);
                    buf
                });
                match r {
                    Ok(buf) if buf.is_empty() => None,
                    Ok(buf) => {
                        let sent = sent + buf.len() as u64;
                        progress(sent);
                        Some((Ok(bytes::Bytes::from(buf)), (Ok(f), sent)))
                    }
                    Err(e) => Some((Err(e), (Err(std::io::Error::other("already failed")), sent))),
                }
            }
        },
    );
    Body::wrap_stream(stream)
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

async fn push_blob(
    client: &RepositoryClient,
    store: &Arc<dyn LocalImages>,
    job: &BlobJob,
    mount_from: &[String],
    opts: &PushOptions,
    progress: &Arc<dyn Progress>,
) -> Result<Outcome> {
    let digest_s = job.digest.to_string();
    let upload_err = |cause| Error::UploadBlob {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        digest: digest_s.clone(),
        cause,
    };
    let protocol_err = |reason: String| Error::UploadProtocol {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        digest: digest_s.clone(),
        reason,
    };

    let url = client.url(&format!("blobs/{}", job.digest))?;
    let resp = client
        .send(|http| http.head(url.clone()))
        .await
        .map_err(|cause| Error::CheckBlob {
            registry: client.registry().to_string(),
            repository: client.repository().to_string(),
            digest: digest_s.clone(),
            cause,
        })?;
    match resp.status() {
        s if s.is_success() => return Ok(Outcome::Exists),
        StatusCode::NOT_FOUND => {}
        s => {
            return Err(Error::CheckBlob {
                registry: client.registry().to_string(),
                repository: client.repository().to_string(),
                digest: digest_s.clone(),
                cause: HttpFailure::Status {
                    status: s.as_u16(),
                    errors: Vec::new(),
                    body: String::new(),
                },
            })
        }
    }

    let uploads = client.url("blobs/uploads/")?;
    let mut location: Option<String> = None;
    for from in mount_from {
        let mut u = uploads.clone();
        u.query_pairs_mut()
            .append_pair("mount", job.digest.as_str())
            .append_pair("from", from);
        let resp = client
            .send(|http| http.post(u.clone()).header(CONTENT_LENGTH, 0))
            .await
            .map_err(upload_err)?;
        match resp.status() {
            StatusCode::CREATED => {
                if job.show {
                    progress.status(&job.digest, &format!("Mounted from {from}"));
                }
                return Ok(Outcome::Mounted);
            }
            // The registry could not mount and opened an upload session instead.
            StatusCode::ACCEPTED => {
                location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                break;
            }
            _ => {
                tracing::debug!(digest = %job.digest, from, status = %resp.status(), "mount refused")
            }
        }
    }
    let location = match location {
        Some(l) => l,
        None => {
            let resp = client
                .send(|http| http.post(uploads.clone()).header(CONTENT_LENGTH, 0))
                .await
                .map_err(upload_err)?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(upload_err(failure(resp).await));
            }
            resp.headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| protocol_err("upload session without a Location".into()))?
        }
    };
    let mut location = client.resolve_location(&location)?;

    let show = job.show;
    let pdigest = job.digest.clone();
    let total = job.size;
    let prog = progress.clone();
    let report: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |sent| {
        if show {
            prog.bytes(&pdigest, "Pushing", sent, total);
        }
    });

    let chunked = opts.force_chunked || job.size >= opts.chunked_threshold;
    if !chunked {
        let put = with_digest(location, &job.digest);
        let resp = client
            .send(|http| {
                http.put(put.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, job.size)
                    .body(file_body(store, &job.digest, report.clone()))
            })
            .await
            .map_err(upload_err)?;
        if resp.status() != StatusCode::CREATED {
            return Err(upload_err(failure(resp).await));
        }
        return Ok(Outcome::Uploaded { chunked: false });
    }

    // Chunked: PATCH each chunk with its Content-Range (distribution wants `start-end`,
    // inclusive, without a unit), following the Location each answer gives, then PUT the
    // digest with no body to close the session.
    let chunk_size = opts.chunk_size.max(1);
    let mut file = store
        .content()
        .open_blob(&job.digest)
        .map_err(|e| store_err("open blob", job.digest.to_string(), e))?;
    let mut offset: u64 = 0;
    while offset < job.size {
        let want = chunk_size.min(job.size - offset) as usize;
        // Chunks are large: read on a blocking thread, handing the file there and back.
        let (f, read) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let r = file.read_exact(&mut buf).map(|_| bytes::Bytes::from(buf));
            (file, r)
        })
        .await
        .map_err(|e| Error::Internal(format!("blob reader thread: {e}")))?;
        file = f;
        let chunk = read.map_err(|e| {
            store_err(
                "read blob",
                job.digest.to_string(),
                berth_image::error::Error::io(
                    "read blob",
                    store.content().blob_path(&job.digest),
                    e,
                ),
            )
        })?;
        let end = offset + chunk.len() as u64 - 1;
        let loc = location.clone();
        let resp = client
            .send(|http| {
                http.patch(loc.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", format!("{offset}-{end}"))
                    .header(CONTENT_LENGTH, chunk.len())
                    .body(chunk.clone())
            })
            .await
            .map_err(upload_err)?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(upload_err(failure(resp).await));
        }
        let next = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| protocol_err("chunk accepted without a Location".into()))?;
        location = client.resolve_location(next)?;
        offset = end + 1;
        report(offset);
    }
    let put = with_digest(location, &job.digest);
    let resp = client
        .send(|http| http.put(put.clone()).header(CONTENT_LENGTH, 0))
        .await
        .map_err(upload_err)?;
    if resp.status() != StatusCode::CREATED {
        return Err(upload_err(failure(resp).await));
    }
    Ok(Outcome::Uploaded { chunked: true })
}

pub(crate) async fn push(
    client: &RepositoryClient,
    store: Arc<dyn LocalImages>,
    reference: &Reference,
    local: (Digest, Vec<u8>, String, im::Manifest),
    mount_from: Vec<String>,
    opts: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<PushReport> {
    let (manifest_digest, manifest_bytes, media_type, manifest) = local;
    progress.line(&format!(
        "The push refers to repository [{}]",
        reference.name()
    ));
    let mut jobs: Vec<BlobJob> = Vec::new();
    // Layers first, bottom to top, as Docker lists them; the config last.
    for l in &manifest.layers {
        if !jobs.iter().any(|j| j.digest == l.digest) {
            jobs.push(BlobJob {
                digest: l.digest.clone(),
                size: l.size,
                show: true,
            });
        }
    }
    if !jobs.iter().any(|j| j.digest == manifest.config.digest) {
        jobs.push(BlobJob {
            digest: manifest.config.digest.clone(),
            size: manifest.config.size,
            show: false,
        });
    }
    for j in &jobs {
        if j.show {
            progress.status(&j.digest, "Preparing");
        }
    }
    let results: Vec<(Digest, Result<Outcome>)> = futures_util::stream::iter(0..jobs.len())
        // Indices rather than `&BlobJob`: see pull.rs (the future must be `Send`).
        .map(|i| {
            let j = &jobs[i];
            let store = &store;
            let progress = &progress;
            let mount_from = &mount_from;
            async move {
                let r = push_blob(client, store, j, mount_from, opts, progress).await;
                if j.show {
                    match &r {
                        Ok(Outcome::Exists) => progress.status(&j.digest, "Layer already exists"),
                        Ok(Outcome::Uploaded { .. }) => progress.status(&j.digest, "Pushed"),
                        _ => {}
                    }
                }
                (j.digest.clone(), r)
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut report = PushReport {
        tag: reference
            .digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_else(|| reference.tag_or_latest().to_string()),
        ..Default::default()
    };
    for (d, r) in results {
        match r? {
            Outcome::Exists => report.skipped.push(d),
            Outcome::Mounted => report.mounted.push(d),
            Outcome::Uploaded { chunked } => {
                if chunked {
                    report.chunked.push(d.clone());
                }
                report.uploaded.push(d);
            }
        }
    }

    let url = client.url(&format!("manifests/{}", report.tag))?;
    let wrap = |cause| Error::PushManifest {
        registry: client.registry().to_string(),
        repository: client.repository().to_string(),
        tag: report.tag.clone(),
        cause,
    };
    let body = bytes::Bytes::from(manifest_bytes);
    let resp = client
        .send(|http| {
            http.put(url.clone())
                .header(CONTENT_TYPE, media_type.as_str())
                .body(body.clone())
        })
        .await
        .map_err(wrap)?;
    if resp.status() != StatusCode::CREATED {
        return Err(wrap(failure(resp).await));
    }
    if let Some(d) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<Digest>().ok())
    {
        if d != manifest_digest {
            return Err(Error::DigestMismatch {
                registry: client.registry().to_string(),
                repository: client.repository().to_string(),
                what: "pushed manifest",
                expected: manifest_digest.to_string(),
                actual: d.to_string(),
            });
        }
    }
    progress.finish();
    progress.line(&format!(
        "{}: digest: {} size: {}",
        report.tag,
        manifest_digest,
        body.len()
    ));
    report.manifest_digest = Some(manifest_digest);
    report.manifest_size = body.len() as u64;
    Ok(report)
}
