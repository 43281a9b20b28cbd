//! The rest of a Docker user's day: `stats`, the archive API (`cp`), `export`, `changes`
//! (`diff`), `commit`, `system df`, and the filters of the prune endpoints.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use berth_engine::changes::CommitOptions;
use bollard_stubs::models::{ContainerCpuStats, ContainerStatsResponse};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use crate::containers::qbool;
use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};

type Q = Query<HashMap<String, String>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/stats", get(stats))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
        .route("/containers/{id}/export", get(export))
        .route("/containers/{id}/changes", get(changes))
        .route("/commit", post(commit))
        .route("/system/df", get(df))
}

/// A `Write` for the blocking pool that hands each chunk to the response body.
struct ChanWriter(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A body produced by `f` on the blocking pool; an error after the first byte ends the
/// stream abruptly (the client sees a truncated tar, as with dockerd).
fn blocking_body<F>(f: F) -> Body
where
    F: FnOnce(&mut std::io::BufWriter<ChanWriter>) -> berth_engine::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, ChanWriter(tx));
        let res = f(&mut w).and_then(|()| {
            w.flush().map_err(|e| berth_engine::Error::Io {
                op: "send",
                path: "archive".into(),
                source: e,
            })
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, "archive stream");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Body::from_stream(s)
}

// ---- stats ----

fn with_pre(
    mut cur: ContainerStatsResponse,
    pre: Option<&ContainerStatsResponse>,
) -> ContainerStatsResponse {
    if let Some(p) = pre {
        cur.precpu_stats = p.cpu_stats.clone();
        cur.preread = p.read.clone();
    } else {
        cur.precpu_stats = Some(ContainerCpuStats::default());
    }
    cur
}

async fn sample(st: &AppState, id: &str) -> ApiResult<ContainerStatsResponse> {
    let e = st.engine.clone();
    let id = id.to_string();
    blocking(move || Ok(e.stats_sample(&id)?)).await
}

async fn stats(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let stream = q
        .get("stream")
        .is_none_or(|v| !matches!(v.as_str(), "0" | "false" | "False"));
    let one_shot = qbool(&q, "one-shot");
    let first = sample(&st, &id).await?;
    let running = first.read.as_deref() != Some(berth_engine::stats::ZERO_TIME);
    if !stream {
        let v = if one_shot || !running {
            with_pre(first, None)
        } else {
            // Docker pairs two samples a second apart, so CPU % has a base.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let second = sample(&st, &id).await?;
            with_pre(second, Some(&first))
        };
        return Ok(Json(v).into_response());
    }
    let body = crate::system::async_stream(move |tx| async move {
        let mut pre: Option<ContainerStatsResponse> = None;
        let mut cur = first;
        loop {
            let running = cur.read.as_deref() != Some(berth_engine::stats::ZERO_TIME);
            let out = with_pre(cur.clone(), pre.as_ref());
            let mut line = serde_json::to_vec(&out).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Ok(Bytes::from(line))).await.is_err() || !running {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            pre = Some(cur);
            cur = match sample(&st, &id).await {
                Ok(s) => s,
                // Removed meanwhile: the stream ends.
                Err(_) => return,
            };
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default())
}

// ---- archive ----

fn path_param(q: &HashMap<String, String>) -> ApiResult<String> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ => Err(ApiError::bad_request(
            "path is required: the path in the container",
        )),
    }
}

async fn stat_header(st: &AppState, id: &str, path: &str) -> ApiResult<(String, HeaderValue)> {
    let e = st.engine.clone();
    let (id2, p2) = (id.to_string(), path.to_string());
    let (cid, stat) = blocking(move || {
        let r = e.find(&id2)?;
        Ok((r.id.clone(), e.archive_stat(&r.id, &p2)?))
    })
    .await?;
    let json = serde_json::to_vec(&stat).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(json);
    let hv = HeaderValue::from_str(&b64)
        .map_err(|e| ApiError::internal(format!("stat header of {path}: {e}")))?;
    Ok((cid, hv))
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

async fn archive_head(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let (_, hv) = stat_header(&st, &id, &path).await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(STAT_HEADER, hv)
        .body(Body::empty())
        .unwrap_or_default())
}

async fn archive_get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let (cid, hv) = stat_header(&st, &id, &path).await?;
    let e = st.engine.clone();
    let body = blocking_body(move |w| e.archive_get(&cid, &path, w));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(STAT_HEADER, hv)
        .body(body)
        .unwrap_or_default())
}

/// The request body as a blocking `Read`, fed chunk by chunk from the connection.
struct ChanReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

async fn archive_put(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Q,
    body: Body,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let no_overwrite = qbool(&q, "noOverwriteDirNonDir");
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(8);
    tokio::spawn(async move {
        let mut s = body.into_data_stream();
        while let Some(chunk) = s.next().await {
            let item = chunk.map_err(|e| format!("read the body: {e}"));
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    let e = st.engine.clone();
    blocking(move || {
        let mut r = ChanReader {
            rx,
            cur: Bytes::new(),
        };
        let res = e.archive_put(&id, &path, &mut r, no_overwrite);
        // What the tar reader left unread (the second end-of-archive block, padding): read
        // it too (bounded). Answering before the body is read to its end makes the server
        // close the connection under a client still sending (the docker CLI's `cp` then
        // failed with "write: broken pipe").
        let _ = std::io::copy(
            &mut std::io::Read::take(&mut r, 1 << 20),
            &mut std::io::sink(),
        );
        Ok(res?)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

async fn export(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let e = st.engine.clone();
    let cid = blocking(move || Ok(e.find(&id)?.id)).await?;
    let e = st.engine.clone();
    let body = blocking_body(move |w| e.export(&cid, w));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .unwrap_or_default())
}

async fn changes(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let e = st.engine.clone();
    let c = blocking(move || Ok(e.changes(&id)?)).await?;
    Ok(Json(c).into_response())
}

// ---- commit ----

async fn commit(
    State(st): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let one = |k: &str| {
        q.iter()
            .rev()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
    };
    let container = one("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required"))?;
    let config: Option<berth_image::manifest::ContainerConfig> =
        if body.iter().all(|c| c.is_ascii_whitespace()) {
            None
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("commit config: {e}")))?;
            if v.is_null() {
                None
            } else {
                Some(
                    serde_json::from_value(v)
                        .map_err(|e| ApiError::bad_request(format!("commit config: {e}")))?,
                )
            }
        };
    let opts = CommitOptions {
        repo: one("repo"),
        tag: one("tag"),
        comment: one("comment"),
        author: one("author"),
        changes: q
            .iter()
            .filter(|(k, v)| k == "changes" && !v.trim().is_empty())
            // One `changes` value may hold several instructions, one a line (docker CLI).
            .flat_map(|(_, v)| v.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| !l.trim().is_empty())
            .collect(),
        pause: one("pause").is_none_or(|p| !matches!(p.as_str(), "0" | "false" | "False")),
        config,
    };
    let e = st.engine.clone();
    let id = blocking(move || Ok(e.commit(&container, opts)?)).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id}))).into_response())
}

// ---- system df ----

async fn df(State(st): State<AppState>) -> ApiResult<Response> {
    let e = st.engine.clone();
    let v = blocking(move || {
        let records = e.records()?;
        let mut per_image: HashMap<String, i64> = HashMap::new();
        for r in &records {
            *per_image.entry(r.image_id.clone()).or_default() += 1;
        }
        let all = e.images.list()?;
        // Layers (by chain ID) and how many images share each: Docker's LayersSize counts a
        // layer once, SharedSize is an image's part that other images have too.
        let mut layer_users: HashMap<String, (u64, usize)> = HashMap::new();
        for i in &all {
            for c in &i.chain_ids {
                let size = e.images.snapshotter().recorded_size(c.as_str()).unwrap_or(0);
                layer_users.entry(c.to_string()).or_insert((size, 0)).1 += 1;
            }
        }
        let layers_size: u64 = layer_users.values().map(|(s, _)| s).sum();
        let mut images = Vec::new();
        let (mut img_total, mut img_active, mut img_reclaim) = (0i64, 0i64, 0i64);
        for i in all {
            let shared: u64 = i
                .chain_ids
                .iter()
                .filter_map(|c| layer_users.get(c.as_str()))
                .filter(|(_, n)| *n > 1)
                .map(|(s, _)| s)
                .sum();
            let used = per_image.get(&i.id.to_string()).copied().unwrap_or(0);
            img_total += i.size as i64;
            if used > 0 {
                img_active += 1;
            } else {
                img_reclaim += i.size as i64;
            }
            images.push(json!({
                "Id": i.id.to_string(),
                "ParentId": "",
                "RepoTags": i.repo_tags.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
                "RepoDigests": i.repo_digests.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
                "Created": i.created.map(|c| c.timestamp()).unwrap_or(0),
                "Size": i.size,
                "SharedSize": shared,
                "VirtualSize": i.size,
                "Labels": i.config.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default(),
                "Containers": used,
            }));
        }
        let mut containers = Vec::new();
        let (mut c_total, mut c_active, mut c_reclaim) = (0i64, 0i64, 0i64);
        for r in &records {
            let sized = e.inspect_sized(&r.id, true)?;
            let mut s = serde_json::to_value(e.summary(r)).unwrap_or_else(|_| json!({}));
            let rw = sized.size_rw.unwrap_or(0);
            s["SizeRw"] = json!(rw);
            s["SizeRootFs"] = json!(sized.size_root_fs.unwrap_or(0));
            c_total += rw;
            if r.status == "running" || r.status == "paused" {
                c_active += 1;
            } else {
                c_reclaim += rw;
            }
            containers.push(s);
        }
        let layers = layers_size as i64;
        let n_images = images.len();
        let n_containers = containers.len();
        Ok(json!({
            "LayersSize": layers,
            "Images": images,
            "Containers": containers,
            "Volumes": [],
            "BuildCache": [],
            // API 1.52's summary form, beside the older lists.
            "ImageUsage": {"ActiveCount": img_active, "TotalCount": n_images, "Reclaimable": img_reclaim, "TotalSize": img_total},
            "ContainerUsage": {"ActiveCount": c_active, "TotalCount": n_containers, "Reclaimable": c_reclaim, "TotalSize": c_total},
            "VolumeUsage": {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0, "TotalSize": 0},
            "BuildCacheUsage": {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0, "TotalSize": 0},
        }))
    })
    .await?;
    Ok(Json(v).into_response())
}

// ---- prune filters ----

/// Docker's prune filters for containers: `until` (created before), `label`, `label!`.
pub struct PruneFilters {
    until: Option<chrono::DateTime<chrono::Utc>>,
    labels: Vec<(String, Option<String>)>,
    not_labels: Vec<(String, Option<String>)>,
}

fn label_pair(v: &str) -> (String, Option<String>) {
    match v.split_once('=') {
        Some((a, b)) => (a.to_string(), Some(b.to_string())),
        None => (v.to_string(), None),
    }
}

fn label_hit(labels: &HashMap<String, String>, (k, v): &(String, Option<String>)) -> bool {
    match (labels.get(k), v) {
        (Some(_), None) => true,
        (Some(have), Some(want)) => have == want,
        _ => false,
    }
}

impl PruneFilters {
    /// From the `filters` query parameter; `allowed` names the other filters the caller
    /// handles itself (left in the map it returns).
    pub fn parse(
        raw: Option<&String>,
        allowed: &[&str],
    ) -> ApiResult<(PruneFilters, HashMap<String, Vec<String>>)> {
        let mut map = match raw {
            Some(f) if !f.is_empty() => crate::system::parse_filters(f)?,
            _ => HashMap::new(),
        };
        let mut f = PruneFilters {
            until: None,
            labels: Vec::new(),
            not_labels: Vec::new(),
        };
        for v in map.remove("until").unwrap_or_default() {
            f.until = Some(
                berth_image::query::parse_until(&v)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            );
        }
        f.labels = map
            .remove("label")
            .unwrap_or_default()
            .iter()
            .map(|v| label_pair(v))
            .collect();
        f.not_labels = map
            .remove("label!")
            .unwrap_or_default()
            .iter()
            .map(|v| label_pair(v))
            .collect();
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
        Ok((f, map))
    }

    pub fn matches(
        &self,
        created: Option<chrono::DateTime<chrono::Utc>>,
        labels: &HashMap<String, String>,
    ) -> bool {
        if let (Some(u), Some(c)) = (self.until, created) {
            if c >= u {
                return false;
            }
        }
        self.labels.iter().all(|l| label_hit(labels, l))
            && !self.not_labels.iter().any(|l| label_hit(labels, l))
    }
}

/// `POST /containers/prune`: stopped containers passing the filters are removed.
pub async fn prune_containers(
    st: AppState,
    q: HashMap<String, String>,
) -> ApiResult<Json<serde_json::Value>> {
    let (f, _) = PruneFilters::parse(q.get("filters"), &[])?;
    let e = st.engine.clone();
    let (deleted, reclaimed) = blocking(move || {
        let mut out = Vec::new();
        let mut reclaimed = 0i64;
        for r in e.records()? {
            if !(r.status == "exited" || r.status == "created" || r.status == "dead") {
                continue;
            }
            let labels = e.body(&r).labels.unwrap_or_default();
            let created = chrono::DateTime::parse_from_rfc3339(&r.created)
                .ok()
                .map(|d| d.with_timezone(&chrono::Utc));
            if !f.matches(created, &labels) {
                continue;
            }
            let rw = e
                .inspect_sized(&r.id, true)
                .ok()
                .and_then(|i| i.size_rw)
                .unwrap_or(0);
            match e.remove(&r.id, false) {
                Ok(()) => {
                    reclaimed += rw;
                    out.push(r.id);
                }
                Err(err) if err.kind() == berth_engine::Kind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok((out, reclaimed))
    })
    .await?;
    Ok(Json(
        json!({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}

/// The image labels filter `label!` (ImageFilters knows `label`, `until`): taken out of the
/// map before it is parsed, and checked here.
pub fn take_negated_labels(
    map: &mut HashMap<String, Vec<String>>,
) -> Vec<(String, Option<String>)> {
    map.remove("label!")
        .unwrap_or_default()
        .iter()
        .map(|v| label_pair(v))
        .collect()
}

pub fn image_passes_negated(img: &berth_image::Image, neg: &[(String, Option<String>)]) -> bool {
    let labels: HashMap<String, String> = img
        .config
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    !neg.iter().any(|l| label_hit(&labels, l))
}
