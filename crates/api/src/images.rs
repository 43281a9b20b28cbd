//! `/images/...`: the image store behind the API (list, inspect, remove, tag).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_image::Image;
use serde_json::json;

use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<AppState> {
    Router::new().route("/images/json", get(list)).route(
        "/images/{*rest}",
        get(get_any).post(post_any).delete(remove),
    )
}

fn created_ts(i: &Image) -> i64 {
    i.created.map(|c| c.timestamp()).unwrap_or(0)
}

fn summary(i: &Image) -> serde_json::Value {
    let labels = i
        .config
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    json!({
        "Id": i.id.to_string(),
        "ParentId": "",
        "RepoTags": i.repo_tags.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
        "RepoDigests": i.repo_digests.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
        "Created": created_ts(i),
        "Size": i.size,
        "SharedSize": -1,
        "Labels": labels,
        "Containers": -1,
    })
}

async fn list(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let all = crate::containers::qbool(&q, "all");
    let _ = all;
    let filters = match q.get("filters") {
        Some(f) if !f.is_empty() => crate::system::parse_filters(f)?,
        _ => HashMap::new(),
    };
    let e = st.engine.clone();
    let imgs = blocking(move || Ok(e.images.list()?)).await?;
    let mut out = Vec::new();
    for i in &imgs {
        let dangling = i.repo_tags.is_empty();
        let ok_d = filters
            .get("dangling")
            .is_none_or(|v| v.iter().any(|x| (x == "true") == dangling));
        let ok_ref = filters.get("reference").is_none_or(|v| {
            v.iter().any(|x| {
                i.repo_tags
                    .iter()
                    .any(|t| t.familiar() == *x || t.familiar_name() == *x)
            })
        });
        if ok_d && ok_ref {
            let typed: bollard_stubs::models::ImageSummary = serde_json::from_value(summary(i))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            out.push(serde_json::to_value(typed).unwrap_or_default());
        }
    }
    Ok(Json(serde_json::Value::Array(out)))
}

async fn get_any(State(st): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let e = st.engine.clone();
        let i = blocking(move || {
            e.images.resolve(&name).map_err(|err| match err.kind() {
                berth_image::ErrorKind::NotFound => {
                    ApiError::new(StatusCode::NOT_FOUND, format!("No such image: {name}"))
                }
                _ => err.into(),
            })
        })
        .await?;
        let c = i.config.config.clone();
        let v = json!({
            "Id": i.id.to_string(),
            "RepoTags": i.repo_tags.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
            "RepoDigests": i.repo_digests.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
            "Parent": "",
            "Comment": "",
            "Created": i.config.created.clone().unwrap_or_default(),
            "Author": i.config.author.clone().unwrap_or_default(),
            "Config": c,
            "Architecture": i.config.architecture,
            "Os": i.config.os,
            "Size": i.size,
            "RootFS": {"Type": "layers", "Layers": i.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        });
        let typed: bollard_stubs::models::ImageInspect =
            serde_json::from_value(v).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(Json(serde_json::to_value(typed).unwrap_or_default()).into_response());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("page not found: GET /images/{rest}"),
    ))
}

async fn post_any(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let name = name.to_string();
        let repo = q.get("repo").cloned().unwrap_or_default();
        let tag = q
            .get("tag")
            .cloned()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "latest".into());
        let e = st.engine.clone();
        blocking(move || {
            let img = e.images.resolve(&name)?;
            let r: berth_image::Reference = format!("{repo}:{tag}")
                .parse()
                .map_err(|err: berth_image::Error| ApiError::bad_request(err.to_string()))?;
            e.images.tag(&img, &r)?;
            Ok(())
        })
        .await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("page not found: POST /images/{rest}"),
    ))
}

async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let force = crate::containers::qbool(&q, "force");
    let e = st.engine.clone();
    let actions = blocking(move || {
        // An image a container uses stays, as docker's rmi without -f.
        if !force {
            let img = e.images.resolve(&name)?;
            for r in e.records()? {
                if r.image_id == img.id.to_string() && img.repo_tags.len() <= 1 {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}", &r.id[..12], &img.id.to_string()[7..19]),
                    ));
                }
            }
        }
        Ok(e.images.remove(&name, force)?)
    })
    .await?;
    let out: Vec<serde_json::Value> = actions
        .iter()
        .map(|a| match a {
            berth_image::store::RemoveAction::Untagged(r) => json!({"Untagged": r}),
            berth_image::store::RemoveAction::Deleted(d) => json!({"Deleted": d}),
        })
        .collect();
    Ok(Json(serde_json::Value::Array(out)))
}
