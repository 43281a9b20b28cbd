//! Images in and out of the daemon: pull and import (`/images/create`), push, load, save
//! (`/images/get`), and the registry login check (`/auth`). Registry credentials are the
//! client's: they come with each request in `X-Registry-Auth` (base64url JSON), as Docker's.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_registry::{Credentials, Progress, PullOptions, PushOptions, Registry};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};

/// One registry client per data root (its settings are the data root's daemon.json),
/// shared by every request: one connection pool, token caches per request.
fn registry_for(root: &Path) -> ApiResult<Arc<Registry>> {
    static CLIENTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Registry>>>> = OnceLock::new();
    let map = CLIENTS.get_or_init(Default::default);
    let mut map = map
        .lock()
        .map_err(|_| ApiError::internal("registry clients: lock poisoned"))?;
    if let Some(r) = map.get(root) {
        return Ok(r.clone());
    }
    let settings = berth_registry::Settings::load(root).map_err(registry_error)?;
    // The daemon keeps no credentials of its own: a request without X-Registry-Auth is
    // anonymous, so this file is only ever read, and normally absent.
    let creds = berth_registry::CredentialStore::at(root.join("daemon-credentials.json"));
    let r = Arc::new(Registry::new(settings, creds).map_err(registry_error)?);
    map.insert(root.to_path_buf(), r.clone());
    Ok(r)
}

fn registry_error(e: berth_registry::Error) -> ApiError {
    use berth_registry::ErrorKind as K;
    let status = match e.kind() {
        K::NotFound => StatusCode::NOT_FOUND,
        K::Unauthorized => StatusCode::UNAUTHORIZED,
        K::InvalidArgument => StatusCode::BAD_REQUEST,
        K::Unavailable | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// Docker's `X-Registry-Auth`: base64url (padded or not) of `{"username", "password", ...}`.
/// An absent, empty or `{}` header is anonymous; an identity token is not supported here.
pub fn registry_auth(headers: &HeaderMap) -> ApiResult<Option<Credentials>> {
    let Some(v) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let raw = v
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Registry-Auth is not ASCII"))?
        .trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let trimmed = raw.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Auth: not base64: {e}")))?;
    auth_config(&bytes)
}

fn auth_config(bytes: &[u8]) -> ApiResult<Option<Credentials>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct AuthConfig {
        username: String,
        password: String,
    }
    let a: AuthConfig = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("registry auth: invalid JSON: {e}")))?;
    if a.username.is_empty() && a.password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.password,
    }))
}

/// One line of Docker's JSON progress stream.
fn line(v: serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn error_line(message: &str) -> Bytes {
    line(json!({"errorDetail": {"message": message}, "error": message}))
}

/// Docker's text bar, `[=====>     ]  1.2MB/3.4MB`, which old clients print as is.
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let human = |n: u64| {
        let f = n as f64;
        if f >= 1e9 {
            format!("{:.3}GB", f / 1e9)
        } else if f >= 1e6 {
            format!("{:.3}MB", f / 1e6)
        } else if f >= 1e3 {
            format!("{:.3}kB", f / 1e3)
        } else {
            format!("{n}B")
        }
    };
    if total == 0 {
        return human(done);
    }
    let filled = (done.min(total) * WIDTH / total) as usize;
    let arrow = if filled < WIDTH as usize { ">" } else { "" };
    format!(
        "[{}{}{}] {:>8}/{}",
        "=".repeat(filled.saturating_sub(usize::from(!arrow.is_empty()))),
        arrow,
        " ".repeat(WIDTH as usize - filled),
        human(done),
        human(total)
    )
}

/// The registry client's progress as Docker's JSON lines, sent to the response stream.
/// Byte counts are sent at most every 256 KiB per blob (and at the end), so a fast local
/// transfer does not become a flood of lines.
struct JsonProgress {
    /// Lines, each with whether it commits the answer to a stream (a blob's progress does;
    /// `Pulling from x`, sent before the manifest is found, does not).
    tx: mpsc::UnboundedSender<(Bytes, bool)>,
    sent: Mutex<HashMap<Digest, u64>>,
}

impl JsonProgress {
    fn send(&self, b: Bytes) {
        // A client that went away: the transfer finishes (it is the daemon's now) unread.
        let _ = self.tx.send((b, true));
    }
    fn send_soft(&self, b: Bytes) {
        let _ = self.tx.send((b, false));
    }
}

impl Progress for JsonProgress {
    fn status(&self, blob: &Digest, status: &str) {
        self.send(line(
            json!({"status": status, "progressDetail": {}, "id": blob.short()}),
        ));
    }
    fn bytes(&self, blob: &Digest, verb: &str, done: u64, total: u64) {
        let due = match self.sent.lock() {
            Ok(mut m) => {
                let last = m.entry(blob.clone()).or_insert(0);
                if done >= total || done.saturating_sub(*last) >= 256 * 1024 || *last == 0 {
                    *last = done.max(1);
                    true
                } else {
                    false
                }
            }
            Err(_) => false,
        };
        if due {
            self.send(line(json!({
                "status": verb,
                "progressDetail": {"current": done, "total": total},
                "progress": bar(done, total),
                "id": blob.short(),
            })));
        }
    }
    fn line(&self, text: &str) {
        // `latest: Pulling from library/busybox` is Docker's `{"status": "Pulling from
        // library/busybox", "id": "latest"}`.
        let v = match text.split_once(": Pulling from ") {
            Some((id, repo)) if !id.contains(' ') => {
                json!({"status": format!("Pulling from {repo}"), "id": id})
            }
            _ => json!({"status": text}),
        };
        self.send_soft(line(v));
    }
}

/// Runs `work` with a progress sink and answers with its stream of lines. What `work`
/// returns (its last lines, or its error) ends the stream. If it fails before sending
/// anything, the answer is a plain HTTP error instead, so clients show
/// `Error response from daemon: ...` as for dockerd.
async fn progress_response<F, Fut>(work: F) -> ApiResult<Response>
where
    F: FnOnce(Arc<JsonProgress>) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Vec<Bytes>>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Bytes, bool)>();
    let progress = Arc::new(JsonProgress {
        tx: tx.clone(),
        sent: Mutex::new(HashMap::new()),
    });
    drop(tx);
    let mut task = tokio::spawn(work(progress));
    // Lines are held until one commits the answer to a stream or the work ends.
    let mut held: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some((b, commit)) => {
                    held.push(b);
                    if commit {
                        break;
                    }
                }
                None => {
                    let r = (&mut task).await?;
                    return finished(held, r);
                }
            },
            r = &mut task => {
                let r = r?;
                while let Ok((b, _)) = rx.try_recv() {
                    held.push(b);
                }
                return finished(held, r);
            }
        }
    }
    let body = crate::system::async_stream(move |out| async move {
        for b in held {
            if out.send(Ok(b)).await.is_err() {
                return;
            }
        }
        let r = loop {
            tokio::select! {
                b = rx.recv() => match b {
                    Some((b, _)) => {
                        if out.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    None => break (&mut task).await,
                },
                r = &mut task => break r,
            }
        };
        while let Ok((b, _)) = rx.try_recv() {
            if out.send(Ok(b)).await.is_err() {
                return;
            }
        }
        let tail = match r {
            Ok(Ok(tail)) => tail,
            Ok(Err(e)) => vec![error_line(&e.message)],
            Err(e) => vec![error_line(&format!("internal error: {e}"))],
        };
        for b in tail {
            if out.send(Ok(b)).await.is_err() {
                return;
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The answer of work that ended before committing to a stream: its lines, or its error
/// as a plain HTTP error.
fn finished(held: Vec<Bytes>, r: ApiResult<Vec<Bytes>>) -> ApiResult<Response> {
    let mut lines = held;
    lines.extend(r?);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(lines.concat()),
    )
        .into_response())
}

/// A query string's values by name, repeated names kept (`changes=..&changes=..`).
type Params = Vec<(String, String)>;

fn param<'a>(q: &'a Params, k: &str) -> Option<&'a str> {
    q.iter()
        .find(|(n, v)| n == k && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// `POST /images/create`: pull (`fromImage`, `tag`) or import (`fromSrc=-`, the body).
pub async fn create(
    State(st): State<AppState>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if let Some(src) = param(&q, "fromSrc") {
        return import(st, &q, src, body).await;
    }
    let Some(from) = param(&q, "fromImage") else {
        return Err(ApiError::bad_request(
            "fromImage or fromSrc is required to create an image",
        ));
    };
    let name = match param(&q, "tag") {
        Some(t) if t.contains(':') => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let reference: Reference = name
        .parse()
        .map_err(|e: berth_image::Error| ApiError::bad_request(format!("{name}: {e}")))?;
    if let Some(p) = param(&q, "platform") {
        let want = berth_image::Platform::parse(p)
            .map_err(|e| ApiError::bad_request(format!("platform {p:?}: {e}")))?;
        if st.engine.images.platform().match_score(&want).is_none() {
            return Err(ApiError::bad_request(format!(
                "platform {p} is not supported by this daemon ({})",
                st.engine.images.platform()
            )));
        }
    }
    let creds = registry_auth(&headers)?;
    let reg = registry_for(st.engine.images.root())?;
    let store: Arc<dyn berth_registry::LocalImages> = st.engine.images.clone();
    tracing::info!(image = %reference, "pull");
    let engine = st.engine.clone();
    progress_response(move |progress| async move {
        let opts = PullOptions {
            credentials: creds,
            ..PullOptions::default()
        };
        let report = reg
            .pull(store, &reference, &opts, progress.as_ref())
            .await
            .map_err(registry_error)?;
        progress.finish();
        let shown = reference.familiar();
        engine
            .events
            .send(engine.image_event("pull", &shown, &reference.familiar_name()));
        let status = if report.fetched.is_empty() {
            format!("Status: Image is up to date for {shown}")
        } else {
            format!("Status: Downloaded newer image for {shown}")
        };
        Ok(vec![
            line(json!({"status": format!("Digest: {}", report.resolved_digest)})),
            line(json!({ "status": status })),
        ])
    })
    .await
}

/// Spools a request body to a file in the store (archives and root file systems can be
/// far larger than memory), so the blocking readers of the image library can take it.
async fn spool(root: &Path, body: Body) -> ApiResult<tempfile::NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(root)
        .map_err(|e| ApiError::internal(format!("create a file in {}: {e}", root.display())))?;
    let std_file = tmp
        .reopen()
        .map_err(|e| ApiError::internal(format!("open {}: {e}", tmp.path().display())))?;
    let mut f = tokio::fs::File::from_std(std_file);
    let mut s = body.into_data_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("read the body: {e}")))?;
        f.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("write {}: {e}", tmp.path().display())))?;
    }
    f.flush()
        .await
        .map_err(|e| ApiError::internal(format!("write {}: {e}", tmp.path().display())))?;
    Ok(tmp)
}

/// `fromSrc=-`: the body is a root file system tarball; `repo`, `tag`, `message` and
/// `changes` (repeated) as `docker import` sends them.
async fn import(st: AppState, q: &Params, src: &str, body: Body) -> ApiResult<Response> {
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "fromSrc={src}: only '-' (the request body) is supported; this daemon fetches no URLs"
        )));
    }
    let reference = match param(q, "repo") {
        Some(repo) => {
            let n = match param(q, "tag") {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            Some(
                n.parse::<Reference>()
                    .map_err(|e| ApiError::bad_request(format!("{n}: {e}")))?,
            )
        }
        None => None,
    };
    // The docker CLI repeats `changes`; bollard sends one, its lines joined by newlines.
    let changes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "changes")
        .flat_map(|(_, v)| v.lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let config = berth_image::archive::parse_changes(&changes)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let opts = berth_image::archive::ImportOptions {
        message: param(q, "message").map(str::to_string),
        source: "-".into(),
        config: Some(config),
    };
    let tmp = spool(st.engine.images.root(), body).await?;
    let e = st.engine.clone();
    let img = blocking(move || {
        let f = std::fs::File::open(tmp.path())
            .map_err(|err| ApiError::internal(format!("open {}: {err}", tmp.path().display())))?;
        Ok(berth_image::archive::import(
            &e.images,
            std::io::BufReader::new(f),
            reference.as_ref(),
            &opts,
        )?)
    })
    .await?;
    let id = img.id.to_string();
    st.engine
        .events
        .send(st.engine.image_event("import", &id, &id));
    let body = line(json!({"status": id}));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /images/{name}/push?tag=`.
pub async fn push(
    st: AppState,
    name: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let full = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.clone(),
    };
    let reference: Reference = full
        .parse()
        .map_err(|e: berth_image::Error| ApiError::bad_request(format!("{full}: {e}")))?;
    {
        let (e, r) = (st.engine.clone(), reference.to_string());
        blocking(move || {
            e.images.resolve(&r).map_err(super::not_found(&r))?;
            Ok(())
        })
        .await?;
    }
    let creds = registry_auth(&headers)?;
    let reg = registry_for(st.engine.images.root())?;
    let store: Arc<dyn berth_registry::LocalImages> = st.engine.images.clone();
    tracing::info!(image = %reference, "push");
    let engine = st.engine.clone();
    progress_response(move |progress| async move {
        let opts = PushOptions {
            credentials: creds,
            ..PushOptions::default()
        };
        let report = reg
            .push(store, &reference, &opts, progress.clone())
            .await
            .map_err(registry_error)?;
        engine.events.send(engine.image_event(
            "push",
            &reference.familiar(),
            &reference.familiar_name(),
        ));
        let mut tail = Vec::new();
        if let Some(d) = report.manifest_digest {
            tail.push(line(json!({
                "progressDetail": {},
                "aux": {"Tag": report.tag, "Digest": d.to_string(), "Size": report.manifest_size},
            })));
        }
        Ok(tail)
    })
    .await
}

/// `POST /images/load`: the body is a docker-archive (or OCI layout) tar.
pub async fn load(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> ApiResult<Response> {
    let quiet = crate::containers::qbool(&q, "quiet");
    let tmp = spool(st.engine.images.root(), body).await?;
    let e = st.engine.clone();
    let load = move |progress: Option<Arc<JsonProgress>>| -> ApiResult<Vec<Bytes>> {
        let f = std::fs::File::open(tmp.path())
            .map_err(|err| ApiError::internal(format!("open {}: {err}", tmp.path().display())))?;
        let r = std::io::BufReader::new(f);
        let loaded = match &progress {
            // dockerd's lines: `{"status":"Loading layer","progressDetail":{..},"id":..}`
            Some(p) => berth_image::archive::load_with_progress(&e.images, r, &|d, done, total| {
                p.bytes(d, "Loading layer", done, total)
            }),
            None => berth_image::archive::load(&e.images, r),
        }
        .map_err(|err| match err.kind() {
            // Whatever is wrong with an archive is the client's to fix.
            berth_image::ErrorKind::InvalidArgument | berth_image::ErrorKind::NotFound => {
                ApiError::bad_request(err.to_string())
            }
            _ => err.into(),
        })?;
        let mut out = Vec::new();
        for l in &loaded {
            let id = l.id.to_string();
            e.events.send(e.image_event("load", &id, &id));
            if l.tags.is_empty() {
                out.push(line(
                    json!({"stream": format!("Loaded image ID: {}\n", l.id)}),
                ));
            }
            for t in &l.tags {
                out.push(line(
                    json!({"stream": format!("Loaded image: {}\n", t.familiar())}),
                ));
            }
        }
        Ok(out)
    };
    if !quiet {
        return progress_response(|p| async move { blocking(move || load(Some(p))).await }).await;
    }
    let out = blocking(move || load(None)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(out.concat()),
    )
        .into_response())
}

/// A `Write` into the response body: the blocking archive writer on one side, the client
/// on the other. A client that went away makes the next write fail, which ends the save.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 256 * 1024;
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(State(st): State<AppState>, Query(q): Query<Params>) -> ApiResult<Response> {
    let names: Vec<String> = q
        .into_iter()
        .filter(|(k, v)| k == "names" && !v.is_empty())
        .map(|(_, v)| v)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "names: at least one image is required",
        ));
    }
    save(st, names).await
}

/// A docker-archive of `names`, streamed as it is written. Every name is resolved first so
/// that an unknown one is a 404, not a broken stream.
pub async fn save(st: AppState, names: Vec<String>) -> ApiResult<Response> {
    {
        let (e, names) = (st.engine.clone(), names.clone());
        blocking(move || {
            let mut ids = Vec::new();
            for n in &names {
                ids.push(
                    e.images
                        .resolve(n)
                        .map_err(super::not_found(n))?
                        .id
                        .to_string(),
                );
            }
            for id in ids {
                e.events.send(e.image_event("save", &id, &id));
            }
            Ok(())
        })
        .await?;
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let e = st.engine.clone();
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter {
            tx,
            buf: Vec::new(),
        };
        let r = berth_image::archive::save(&e.images, &names, w).and_then(|mut w| {
            w.flush()
                .map_err(|err| berth_image::Error::InvalidArgument(format!("send: {err}")))
        });
        if let Err(err) = r {
            tracing::warn!(error = %err, "save failed mid-stream");
            // An error in the body makes the client's read fail, not look complete.
            let _ = err_tx.blocking_send(Err(std::io::Error::other(err.to_string())));
        }
    });
    let s = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(s),
    )
        .into_response())
}

/// `POST /auth`: checks the client's credentials against the registry; stores nothing.
pub async fn auth(State(st): State<AppState>, body: Bytes) -> ApiResult<Response> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Req {
        serveraddress: String,
    }
    let r: Req = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("auth: invalid JSON: {e}")))?;
    let Some(creds) = auth_config(&body)? else {
        return Err(ApiError::bad_request(
            "auth: username and password are required",
        ));
    };
    let server = (!r.serveraddress.is_empty()).then_some(r.serveraddress);
    let reg = registry_for(st.engine.images.root())?;
    reg.check_login(server.as_deref(), &creds)
        .await
        .map_err(|e| match e.kind() {
            berth_registry::ErrorKind::Unauthorized
            | berth_registry::ErrorKind::InvalidArgument => {
                ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
            }
            _ => registry_error(e),
        })?;
    Ok(Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_forms() {
        let mut h = HeaderMap::new();
        assert!(registry_auth(&h).unwrap().is_none());
        h.insert("x-registry-auth", "e30=".parse().unwrap());
        assert!(registry_auth(&h).unwrap().is_none());
        let enc = base64::engine::general_purpose::URL_SAFE
            .encode(br#"{"username":"u","password":"p?>","serveraddress":"x"}"#);
        h.insert("x-registry-auth", enc.parse().unwrap());
        let c = registry_auth(&h).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        h.insert("x-registry-auth", "!!".parse().unwrap());
        assert!(registry_auth(&h).is_err());
    }

    #[test]
    fn bars() {
        assert!(bar(0, 100).starts_with("[>"));
        assert!(bar(100, 100).starts_with("[=================================================="));
        assert_eq!(bar(5, 0), "5B");
    }
}
