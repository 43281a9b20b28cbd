//! `/volumes`: create, list (with filters), inspect, remove, prune, over the engine's local
//! driver.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use berth_engine::volumes::VolumeRecord;
use bollard_stubs::models::VolumeCreateRequest;
use serde_json::json;

use crate::containers::{parse_body, qbool};
use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};
use crate::system::parse_filters;

type Q = Query<HashMap<String, String>>;

/// The API version a client asked for in its path (`/v1.41/...`); absent without a prefix.
#[derive(Debug, Clone)]
pub struct RequestedVersion(pub String);

impl RequestedVersion {
    /// Whether the request's version is older than `major.minor`.
    fn before(v: Option<&RequestedVersion>, major: u32, minor: u32) -> bool {
        let Some((a, b)) = v.and_then(|v| v.0.split_once('.')) else {
            return false;
        };
        match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(a), Ok(b)) => (a, b) < (major, minor),
            _ => false,
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect))
        .route("/volumes/{name}", delete(remove))
}

fn filters_of(q: &HashMap<String, String>) -> ApiResult<HashMap<String, Vec<String>>> {
    match q.get("filters") {
        Some(f) if !f.is_empty() => parse_filters(f),
        _ => Ok(HashMap::new()),
    }
}

/// `label=k` or `label=k=v` against a volume's labels.
fn label_matches(v: &VolumeRecord, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
        None => v.labels.contains_key(f),
    }
}

fn truthy(flag: &str, s: &str) -> ApiResult<bool> {
    match s {
        "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid filter '{flag}={s}': it is a boolean (true or false)"
        ))),
    }
}

async fn list(State(st): State<AppState>, q: Q) -> ApiResult<Json<serde_json::Value>> {
    let filters = filters_of(&q)?;
    for k in filters.keys() {
        if !matches!(k.as_str(), "dangling" | "name" | "label" | "driver") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let dangling = match filters.get("dangling").and_then(|v| v.first()) {
        Some(d) => Some(truthy("dangling", d)?),
        None => None,
    };
    let e = st.engine.clone();
    let vols = blocking(move || {
        let mut out = Vec::new();
        for v in e.volume_list()? {
            let any = |k: &str, pred: &dyn Fn(&str) -> bool| {
                filters.get(k).is_none_or(|xs| xs.iter().any(|x| pred(x)))
            };
            let labels_ok = filters
                .get("label")
                .is_none_or(|xs| xs.iter().all(|x| label_matches(&v, x)));
            if !(labels_ok
                && any("name", &|x| v.name.contains(x))
                && any("driver", &|x| v.driver == x))
            {
                continue;
            }
            if let Some(d) = dangling {
                if e.volume_users(&v.name)?.is_empty() != d {
                    continue;
                }
            }
            out.push(e.volume_json(&v));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({"Volumes": vols, "Warnings": []})))
}

async fn create(State(st): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: VolumeCreateRequest = parse_body(&body)?;
    let e = st.engine.clone();
    let v = blocking(move || {
        let v = e.volume_create(
            req.name.as_deref(),
            req.driver.as_deref(),
            req.driver_opts.unwrap_or_default(),
            req.labels.unwrap_or_default(),
        )?;
        Ok(e.volume_json(&v))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn inspect(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let e = st.engine.clone();
    let v = blocking(move || {
        let v = e.volume_get(&name)?;
        Ok(e.volume_json(&v))
    })
    .await?;
    Ok(Json(v))
}

async fn remove(State(st): State<AppState>, Path(name): Path<String>, q: Q) -> ApiResult<Response> {
    let force = qbool(&q, "force");
    let e = st.engine.clone();
    blocking(move || Ok(e.volume_remove(&name, force)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Unused volumes. Since API 1.42 only anonymous ones unless `all=true`, as Docker.
async fn prune(
    State(st): State<AppState>,
    ver: Option<Extension<RequestedVersion>>,
    q: Q,
) -> ApiResult<Json<serde_json::Value>> {
    let filters = filters_of(&q)?;
    for k in filters.keys() {
        if !matches!(k.as_str(), "label" | "label!" | "all") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let mut all = RequestedVersion::before(ver.as_ref().map(|v| &v.0), 1, 42);
    if let Some(a) = filters.get("all").and_then(|v| v.first()) {
        all = truthy("all", a)?;
    }
    let e = st.engine.clone();
    let (gone, bytes) = blocking(move || {
        let keep = |v: &VolumeRecord| {
            let want = filters
                .get("label")
                .is_none_or(|xs| xs.iter().all(|x| label_matches(v, x)));
            let unwanted = filters
                .get("label!")
                .is_some_and(|xs| xs.iter().any(|x| label_matches(v, x)));
            !want || unwanted
        };
        Ok(e.volume_prune(all, &keep)?)
    })
    .await?;
    Ok(Json(
        json!({"VolumesDeleted": gone, "SpaceReclaimed": bytes}),
    ))
}
