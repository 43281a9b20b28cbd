//! `/containers/...`: parse the request, call the engine, shape the answer.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bollard_stubs::models::ContainerCreateBody;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::daemon::{blocking, spawn_monitor, AppState};
use crate::error::{ApiError, ApiResult};
use crate::stream;
use crate::system::{async_stream, parse_filters};

type Q = Query<HashMap<String, String>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/update", post(update))
}

/// Docker's boolean query values: `1`, `true`, `True`; anything else (or absent) is false.
pub fn qbool(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

/// A JSON body as type `T`, or a 400 naming the field that did not parse.
pub fn parse_body<T: serde::de::DeserializeOwned + Default>(b: &Bytes) -> ApiResult<T> {
    if b.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(b);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(if path == "." {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body at {path}: {}", e.inner())
        })
    })
}

async fn create(State(st): State<AppState>, q: Q, body: Bytes) -> ApiResult<Response> {
    if body.iter().all(|c| c.is_ascii_whitespace()) {
        return Err(ApiError::bad_request(
            "the create request needs a JSON body",
        ));
    }
    crate::selfheal::check_restart_name(&body)?;
    let cfg: ContainerCreateBody = parse_body(&body)?;
    let name = q.get("name").cloned();
    let e = st.engine.clone();
    // berth's CLI: start at once, for N attaches to come (see daemon::EarlyStart)
    let early: Option<u32> = q
        .get("berth-start")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= 3);
    let (id, warnings) = blocking(move || Ok(e.create(name.as_deref(), cfg)?)).await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(json!({"Id": id, "Warnings": warnings})),
    )
        .into_response();
    match early {
        Some(n) => {
            start_early(&st, id, n);
            resp.headers_mut()
                .insert("berth-started", header::HeaderValue::from_static("1"));
        }
        None => {
            let (e, id2) = (st.engine.clone(), id.clone());
            drop(tokio::task::spawn_blocking(move || e.prepare_start(&id2)));
        }
    }
    Ok(resp)
}

/// Begins the start of a container just created, announced by its client (see
/// [`crate::daemon::EarlyStart`]).
fn start_early(st: &AppState, id: String, attaches: u32) {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let (created_tx, created_rx) = tokio::sync::watch::channel(false);
    {
        let mut early = st.early.lock().unwrap_or_else(|p| p.into_inner());
        early.retain(|_, e| e.at.elapsed() < crate::daemon::EARLY_TTL);
        early.insert(
            id.clone(),
            crate::daemon::EarlyStart {
                at: std::time::Instant::now(),
                done: rx,
                created: created_rx,
                answered: false,
                // subscribed before the start: no exit can come before it
                waiter: Some(st.engine.events.subscribe()),
            },
        );
    }
    let st = st.clone();
    tokio::spawn(async move {
        let r = start_container_announced(&st, id, attaches, Some(created_tx)).await;
        let _ = tx.send(Some(r.map_err(|e| (e.status, e.message))));
    });
}

/// The start begun early for `id` that no start request has answered with yet, if any.
fn take_early_start(
    st: &AppState,
    id: &str,
) -> Option<tokio::sync::watch::Receiver<crate::daemon::StartOutcome>> {
    let mut early = st.early.lock().unwrap_or_else(|p| p.into_inner());
    // The entry stays (until EARLY_TTL) for an attach that comes while the start is still
    // under way.
    let e = early.get_mut(id).filter(|e| !e.answered)?;
    e.answered = true;
    Some(e.done.clone())
}

/// The wait subscribed when the start of `id` was begun early, if no wait has taken it yet.
fn take_early_waiter(
    st: &AppState,
    id: &str,
) -> Option<tokio::sync::broadcast::Receiver<berth_engine::events::Event>> {
    let mut early = st.early.lock().unwrap_or_else(|p| p.into_inner());
    early.get_mut(id)?.waiter.take()
}

/// Waits for an early start's outcome.
async fn early_outcome(
    mut done: tokio::sync::watch::Receiver<crate::daemon::StartOutcome>,
) -> ApiResult<()> {
    match done.wait_for(|o| o.is_some()).await {
        Ok(o) => match o.clone() {
            Some(Ok(())) => Ok(()),
            Some(Err((status, message))) => Err(ApiError::new(status, message)),
            None => Err(ApiError::internal("the start was abandoned")),
        },
        Err(_) => Err(ApiError::internal("the start was abandoned")),
    }
}

async fn list(State(st): State<AppState>, q: Q) -> ApiResult<Json<serde_json::Value>> {
    let all = qbool(&q, "all");
    let limit: Option<usize> = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let filters = match q.get("filters") {
        Some(f) if !f.is_empty() => parse_filters(f)?,
        _ => HashMap::new(),
    };
    let e = st.engine.clone();
    let out = blocking(move || {
        let mut out = Vec::new();
        for r in e.records()? {
            let running = matches!(r.status.as_str(), "running" | "paused" | "restarting");
            if !all
                && limit.is_none()
                && !running
                && !filters.contains_key("status")
                && !filters.contains_key("exited")
            {
                continue;
            }
            let body = e.body(&r);
            let labels = body.labels.clone().unwrap_or_default();
            let ok = |k: &str, pred: &dyn Fn(&str) -> bool| {
                filters.get(k).is_none_or(|v| v.iter().any(|x| pred(x)))
            };
            let pass = ok("name", &|x| r.name.contains(x.trim_start_matches('/')))
                && ok("id", &|x| r.id.starts_with(x))
                && ok("status", &|x| x == r.status)
                && ok("exited", &|x| {
                    r.status == "exited" && x.parse::<i64>().ok() == Some(r.exit_code)
                })
                && ok("ancestor", &|x| {
                    r.image == x
                        || r.image_id.starts_with(x)
                        || r.image_id.trim_start_matches("sha256:").starts_with(x)
                })
                // Every label filter must match (dockerd's MatchKVList): compose lists a
                // service's containers with project and service labels together.
                && filters.get("label").is_none_or(|v| {
                    v.iter().all(|x| match x.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
                        None => labels.contains_key(x),
                    })
                })
                && ok("health", &|x| {
                    e.health_status(&r).unwrap_or_else(|| "none".into()) == x
                });
            if !pass {
                continue;
            }
            out.push(serde_json::to_value(e.summary(&r)).unwrap_or_default());
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(serde_json::Value::Array(out)))
}

async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult<Json<serde_json::Value>> {
    let e = st.engine.clone();
    let size = qbool(&q, "size");
    let v = blocking(move || Ok(e.inspect_sized(&id, size)?)).await?;
    let v = serde_json::to_value(v).unwrap_or_default();
    Ok(Json(crate::shape::container_inspect(v)))
}

/// Starts a container. Clients that attached before the start are told the shim's socket
/// once the container exists; the shim, told how many they are, holds the output for them.
pub async fn start_container(st: &AppState, id: String) -> ApiResult<()> {
    start_container_announced(st, id, 0, None).await
}

/// A start for which `announced` attaches are still to come, besides those waiting for it;
/// `created` is told when the shim is up.
async fn start_container_announced(
    st: &AppState,
    id: String,
    announced: u32,
    created: Option<tokio::sync::watch::Sender<bool>>,
) -> ApiResult<()> {
    let e = st.engine.clone();
    let st2 = st.clone();
    let full = blocking(move || {
        let mut full = String::new();
        let attachers = |full_id: &str| {
            announced
                + st2
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(full_id)
                    .map_or(0, |w| w.iter().filter(|t| !t.is_closed()).count() as u32)
        };
        e.start(&id, &attachers, &mut |c| {
            full = c.id.to_string();
            let waiting = st2
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(c.id)
                .unwrap_or_default();
            for w in waiting {
                if w.send(c.socket.clone()).is_err() {
                    // Its client went away after it was counted: an attach without streams
                    // in its place, so that the shim does not hold the output for it.
                    let sock = c.socket.clone();
                    let none =
                        json!({"op": "attach", "stdin": false, "stdout": false, "stderr": false});
                    tokio::runtime::Handle::current().spawn(async move {
                        let _ = stream::shim_request(&sock, &none).await;
                    });
                }
            }
            if let Some(c) = &created {
                let _ = c.send(true);
            }
        })?;
        Ok(full)
    })
    .await?;
    spawn_monitor(st.clone(), full.clone());
    crate::selfheal::start_health(st.clone(), full);
    Ok(())
}

async fn start(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    match take_early_start(&st, &id) {
        Some(done) => early_outcome(done).await?,
        None => start_container(&st, id).await?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn timeout_param(q: &HashMap<String, String>) -> ApiResult<Option<i64>> {
    match q.get("t").or(q.get("timeout")) {
        Some(t) => t.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid timeout {t:?}: not a number of seconds"))
        }),
        None => Ok(None),
    }
}

async fn stop(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let t = timeout_param(&q)?;
    let sig = q.get("signal").cloned().filter(|s| !s.is_empty());
    let e = st.engine.clone();
    blocking(move || Ok(e.stop(&id, t, sig.as_deref())?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn restart(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let t = timeout_param(&q)?;
    let sig = q.get("signal").cloned().filter(|s| !s.is_empty());
    let e = st.engine.clone();
    let id2 = id.clone();
    blocking(move || match e.stop(&id2, t, sig.as_deref()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == berth_engine::Kind::NotModified => Ok(()),
        Err(err) => Err(err.into()),
    })
    .await?;
    start_container(&st, id.clone()).await?;
    if let Ok(r) = st.engine.find(&id) {
        st.engine.emit(&r, "restart", &[]);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn kill(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let sig = match q.get("signal").filter(|s| !s.is_empty()) {
        Some(s) => berth_engine::engine::parse_signal(s)?,
        None => libc::SIGKILL,
    };
    let e = st.engine.clone();
    blocking(move || Ok(e.kill(&id, sig)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn pause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let e = st.engine.clone();
    blocking(move || Ok(e.pause(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn unpause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let e = st.engine.clone();
    blocking(move || Ok(e.unpause(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let force = qbool(&q, "force");
    let volumes = qbool(&q, "v");
    let e = st.engine.clone();
    blocking(move || Ok(e.remove_with_volumes(&id, force, volumes)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rename(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let name = q
        .get("name")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("rename needs a name"))?;
    let e = st.engine.clone();
    blocking(move || Ok(e.rename(&id, &name)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn top(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let e = st.engine.clone();
    let (titles, rows) = blocking(move || Ok(e.top(&id)?)).await?;
    Ok(Json(json!({"Titles": titles, "Processes": rows})))
}

async fn prune(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    crate::dayops::prune_containers(st, q).await
}

/// `POST /containers/{id}/update`: resources applied to the running container's cgroup
/// (engine::update), and the restart policy (engine::restart); an unknown policy name is
/// refused with Docker's message before anything changes.
async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    crate::selfheal::check_restart_name(&body)?;
    let u: bollard_stubs::models::ContainerUpdateBody = parse_body(&body)?;
    // berth's bandwidth limit: the update body has no annotations, so it comes as an extra
    // top-level key of the same name as the annotation, or as ?network-rate=
    let rates = rate_changes(&q, &body);
    let e = st.engine.clone();
    let policy = u.restart_policy.clone();
    let warnings = blocking(move || {
        if !rates.is_empty() {
            let c: Vec<(&str, &str)> = rates.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.update_network_rate(&id, &c)?;
        }
        let w = berth_engine::update::apply_resources(&e, &id, &u)?;
        e.update_restart_policy(&id, policy)?;
        Ok(w)
    })
    .await?;
    Ok(Json(json!({ "Warnings": warnings })))
}

/// berth's bandwidth limit in an update: the body has no annotations, so each key comes as
/// an extra top-level key named as the annotation (`io.berth.network-rate`, `...-rate.egress`,
/// `...-rate.ingress`), or as a query parameter (`network-rate`, `network-rate-egress`,
/// `network-rate-ingress`).
fn rate_changes(q: &HashMap<String, String>, body: &Bytes) -> Vec<(&'static str, String)> {
    use berth_engine::network::rate::{EGRESS_KEY, INGRESS_KEY, KEY};
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut out = Vec::new();
    for (key, param) in [
        (KEY, "network-rate"),
        (EGRESS_KEY, "network-rate-egress"),
        (INGRESS_KEY, "network-rate-ingress"),
    ] {
        let v = q
            .get(param)
            .cloned()
            .or_else(|| json.get(key).and_then(|v| v.as_str()).map(String::from));
        if let Some(v) = v {
            out.push((key, v));
        }
    }
    out
}

async fn resize(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let h: u16 = q.get("h").and_then(|x| x.parse().ok()).unwrap_or(0);
    let w: u16 = q.get("w").and_then(|x| x.parse().ok()).unwrap_or(0);
    let e = st.engine.clone();
    let r = blocking(move || Ok(e.find(&id)?)).await?;
    if r.status != "running" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container {} is not running", r.id),
        ));
    }
    let sock = st.engine.socket(&r.id);
    let (_, resp) = stream::shim_request(&sock, &json!({"op": "resize", "height": h, "width": w}))
        .await
        .map_err(|e| ApiError::internal(format!("resize: {e}")))?;
    if resp.get("ok").and_then(|v| v.as_bool()) != Some(true) {
        return Err(ApiError::bad_request(format!(
            "resize: {}",
            resp.get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("refused")
        )));
    }
    Ok(StatusCode::OK.into_response())
}

/// `POST /containers/{id}/wait`: headers at once, the body when the condition is met.
async fn wait(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let cond = q
        .get("condition")
        .cloned()
        .unwrap_or_else(|| "not-running".into());
    if !matches!(cond.as_str(), "not-running" | "next-exit" | "removed" | "") {
        return Err(ApiError::bad_request(format!(
            "invalid condition {cond:?}: not-running, next-exit or removed"
        )));
    }
    let early = match cond.as_str() {
        "next-exit" | "removed" => take_early_waiter(&st, &id),
        _ => None,
    };
    let (mut rx, r_id, mut code, running) = match early {
        // subscribed before the start: the container may have run, and gone, since
        Some(rx) => (rx, id, 0, false),
        None => {
            // Subscribe before looking, so an exit in between is not missed.
            let rx = st.engine.events.subscribe();
            let e = st.engine.clone();
            let r = blocking(move || Ok(e.find(&id)?)).await?;
            let running = r.status == "running" || r.status == "paused";
            (rx, r.id, r.exit_code, running)
        }
    };
    let body = async_stream(move |tx| async move {
        let done_now = (cond == "not-running" || cond.is_empty()) && !running;
        if !done_now {
            loop {
                match rx.recv().await {
                    Ok(ev) if ev.id == r_id => {
                        if ev.action == "die" {
                            code = ev
                                .attributes
                                .get("exitCode")
                                .and_then(|c| c.parse().ok())
                                .unwrap_or(code);
                            if cond != "removed" {
                                break;
                            }
                        }
                        if ev.action == "destroy" {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        }
        let v = json!({"StatusCode": code, "Error": null});
        let _ = tx
            .send(Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default())))
            .await;
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /containers/{id}/attach`: hijacks the connection; before the container starts, the
/// stream waits for it (docker run attaches first, then starts).
async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Q,
    mut req: Request,
) -> ApiResult<Response> {
    let e = st.engine.clone();
    let r = blocking(move || Ok(e.find(&id)?)).await?;
    let tty = st.engine.body(&r).tty.unwrap_or(false);
    let (resp, on) = stream::upgrade(&mut req, tty)?;
    st.engine.emit(&r, "attach", &[]);
    let want = json!({
        "op": "attach",
        "stdin": qbool(&q, "stdin"),
        "stdout": qbool(&q, "stdout"),
        "stderr": qbool(&q, "stderr"),
    });
    let (sock_tx, sock_rx) = oneshot::channel();
    let running = r.status == "running";
    // A start begun at create that has not yet marked the container running: this attach is
    // one it holds the output for (a failed one leaves it for the next start, as any).
    let early = (r.status == "created")
        .then(|| {
            st.early
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&r.id)
                .map(|e| (e.done.clone(), e.created.clone()))
        })
        .flatten()
        .filter(|(d, _)| !matches!(*d.borrow(), Some(Err(_))));
    if running {
        let _ = sock_tx.send(st.engine.socket(&r.id));
    } else if let Some((done, mut created)) = early {
        // the start begun at create is under way: the shim holds the output for us, and
        // we connect as soon as it is up (a container that exits at once waits for us)
        let sock = st.engine.socket(&r.id);
        tokio::spawn(async move {
            if created.wait_for(|c| *c).await.is_ok() || early_outcome(done).await.is_ok() {
                let _ = sock_tx.send(sock);
            }
        });
    } else {
        st.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(r.id.clone())
            .or_default()
            .push(sock_tx);
    }
    tokio::spawn(async move {
        let Ok(client) = on.await else { return };
        let Ok(sock) = sock_rx.await else {
            return;
        };
        if let Ok((conn, v)) = stream::shim_request(&sock, &want).await {
            if v.get("ok").and_then(|x| x.as_bool()) == Some(true) {
                stream::pump(client, conn).await;
            }
        }
    });
    Ok(resp)
}

/// `GET /containers/{id}/logs`: from the json-file log, framed unless the container has a tty.
async fn logs(State(st): State<AppState>, Path(id): Path<String>, q: Q) -> ApiResult<Response> {
    let e = st.engine.clone();
    let r = blocking(move || Ok(e.find(&id)?)).await?;
    let body = st.engine.body(&r);
    let tty = body.tty.unwrap_or(false);
    if body
        .host_config
        .as_ref()
        .and_then(|h| h.log_config.as_ref())
        .and_then(|l| l.typ.as_deref())
        == Some("none")
    {
        return Err(ApiError::bad_request(
            "configured logging driver does not support reading",
        ));
    }
    let want_out = qbool(&q, "stdout");
    let want_err = qbool(&q, "stderr");
    if !want_out && !want_err {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = qbool(&q, "follow");
    let timestamps = qbool(&q, "timestamps");
    let tail: Option<usize> = q.get("tail").and_then(|t| t.parse().ok());
    let since = q
        .get("since")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0);
    let until = q
        .get("until")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0);
    let path = st.engine.log_path(&r.id);
    let engine = st.engine.clone();
    let cid = r.id.clone();
    let out = async_stream(move |tx| async move {
        let emit = |line: &str| -> Option<Vec<u8>> {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let stream = v.get("stream")?.as_str()?;
            let log = v.get("log")?.as_str()?;
            let time = v.get("time").and_then(|t| t.as_str()).unwrap_or("");
            let ts = chrono::DateTime::parse_from_rfc3339(time)
                .map(|d| d.timestamp() as f64 + d.timestamp_subsec_nanos() as f64 / 1e9)
                .unwrap_or(0.0);
            if since.is_some_and(|s| ts < s) || until.is_some_and(|u| ts > u) {
                return None;
            }
            let n = match stream {
                "stdout" if want_out => 1,
                "stderr" if want_err => 2,
                _ => return None,
            };
            let mut payload = Vec::new();
            if timestamps {
                payload.extend_from_slice(time.as_bytes());
                payload.push(b' ');
            }
            payload.extend_from_slice(log.as_bytes());
            Some(if tty {
                payload
            } else {
                stream::frame(n, &payload)
            })
        };
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(_) => return,
        };
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).await.is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&buf);
        let complete = match text.rfind('\n') {
            Some(i) => i + 1,
            None => 0,
        };
        let mut lines: Vec<&str> = text[..complete].lines().collect();
        if let Some(n) = tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        for l in lines {
            if let Some(b) = emit(l) {
                if tx.send(Ok(Bytes::from(b))).await.is_err() {
                    return;
                }
            }
        }
        if !follow {
            return;
        }
        let mut pending: Vec<u8> = buf[complete..].to_vec();
        loop {
            let mut chunk = Vec::new();
            let n = f.read_to_end(&mut chunk).await.unwrap_or(0);
            if n > 0 {
                pending.extend_from_slice(&chunk);
                while let Some(i) = pending.iter().position(|c| *c == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    if let Some(b) = emit(String::from_utf8_lossy(&line).trim_end()) {
                        if tx.send(Ok(Bytes::from(b))).await.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            let e = engine.clone();
            let c = cid.clone();
            let running = tokio::task::spawn_blocking(move || {
                e.find(&c)
                    .map(|r| r.status == "running" || r.status == "paused")
            })
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false);
            if !running {
                // One last read: the shim writes the final lines before it reports the exit.
                let mut chunk = Vec::new();
                if f.read_to_end(&mut chunk).await.unwrap_or(0) > 0 {
                    pending.extend_from_slice(&chunk);
                    continue;
                }
                return;
            }
            if tx.is_closed() {
                return;
            }
            // A json-file log has no change notification through the API; a short sleep
            // between reads while following is what docker's own follower does with
            // its file watcher fallback.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(([(header::CONTENT_TYPE, ct)], out).into_response())
}
