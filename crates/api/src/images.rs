//! `/images/...` and `/auth`: the image store and the registry client behind the API (list,
//! inspect, remove, tag, pull, push, load, save, import, history, prune, login check). Long
//! operations answer with Docker's stream of JSON lines; an error before anything was
//! streamed is a plain HTTP error, one after is an `errorDetail` line, as dockerd does.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_image::query::ImageFilters;
use berth_image::Image;
use serde_json::json;

use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};

mod transfer;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(transfer::create))
        .route("/images/load", post(transfer::load))
        .route("/images/get", get(transfer::save_many))
        .route("/images/prune", post(prune))
        .route("/auth", post(transfer::auth))
        .route(
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
    let filters = match q.get("filters") {
        Some(f) if !f.is_empty() => crate::system::parse_filters(f)?,
        _ => HashMap::new(),
    };
    let digests = crate::containers::qbool(&q, "digests");
    let e = st.engine.clone();
    let (imgs, f) = blocking(move || {
        let f = ImageFilters::parse(&e.images, &filters)?;
        Ok((e.images.list()?, f))
    })
    .await?;
    let mut out = Vec::new();
    for i in &imgs {
        if !f.matches(i) || !f.any_tag_matches(i) {
            continue;
        }
        let mut v = summary(i);
        if !f.reference.is_empty() {
            // Only the tags the reference filter selects are listed, as dockerd does.
            let tags: Vec<String> = i
                .repo_tags
                .iter()
                .filter(|t| {
                    f.reference_matches(&t.familiar_name(), t.tag.as_deref().unwrap_or("latest"))
                })
                .map(|t| t.familiar())
                .collect();
            v["RepoTags"] = json!(tags);
        }
        if !digests {
            // Docker sends RepoDigests either way; `digests` only changes the CLI's columns.
        }
        let typed: bollard_stubs::models::ImageSummary =
            serde_json::from_value(v).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(serde_json::to_value(typed).map_err(|e| ApiError::internal(e.to_string()))?);
    }
    Ok(Json(serde_json::Value::Array(out)))
}

async fn get_any(State(st): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/history") {
        return history(st, name.to_string()).await;
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return transfer::save(st, vec![name.to_string()]).await;
    }
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let e = st.engine.clone();
        let v = blocking(move || {
            let img = e.images.resolve(&name).map_err(not_found(&name))?;
            Ok(berth_image::query::inspect(&e.images, &img))
        })
        .await?;
        // Docker's shape, checked against the API's type, served as built (field order
        // and nulls as dockerd prints them).
        let _typed: bollard_stubs::models::ImageInspect =
            serde_json::from_value(v.clone()).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(Json(v).into_response());
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
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/push") {
        return transfer::push(st, name.to_string(), q, headers).await;
    }
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
            e.events
                .send(e.image_event("tag", &img.id.to_string(), &r.familiar()));
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
        let id = e.images.resolve(&name).ok().map(|i| i.id.to_string());
        // the labels now: after the removal the image may be gone
        let untag = id.as_deref().map(|id| e.image_event("untag", id, id));
        let actions = e.images.remove(&name, force)?;
        for a in &actions {
            let ev = match a {
                berth_image::store::RemoveAction::Untagged(_) => untag
                    .clone()
                    .unwrap_or_else(|| berth_engine::events::Event::image("untag", "", "")),
                berth_image::store::RemoveAction::Deleted(d) => {
                    let d = d.to_string();
                    berth_engine::events::Event::image("delete", &d, &d)
                }
            };
            e.events.send(ev);
        }
        Ok(actions)
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

fn not_found(name: &str) -> impl Fn(berth_image::Error) -> ApiError + '_ {
    move |err| match err.kind() {
        berth_image::ErrorKind::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, format!("No such image: {name}"))
        }
        _ => err.into(),
    }
}

async fn history(st: AppState, name: String) -> ApiResult<Response> {
    let e = st.engine.clone();
    let v = blocking(move || {
        let img = e.images.resolve(&name).map_err(not_found(&name))?;
        let entries = berth_image::query::history(&e.images, &img);
        let tags: Vec<String> = img.repo_tags.iter().map(|r| r.familiar()).collect();
        let out: Vec<bollard_stubs::models::ImageHistoryResponseItem> = entries
            .iter()
            .enumerate()
            .map(|(i, h)| bollard_stubs::models::ImageHistoryResponseItem {
                id: if i == 0 {
                    img.id.to_string()
                } else {
                    "<missing>".into()
                },
                created: h.created.map(|t| t.timestamp()).unwrap_or(0),
                created_by: h.created_by.clone(),
                tags: if i == 0 { tags.clone() } else { Vec::new() },
                size: i64::try_from(h.size).unwrap_or(i64::MAX),
                comment: h.comment.clone(),
            })
            .collect();
        Ok(out)
    })
    .await?;
    Ok(Json(v).into_response())
}

/// `POST /images/prune`: dangling images (all unused ones with `dangling=false`) that pass
/// the filters and that no container uses, then the blobs and layers nothing holds.
async fn prune(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let mut filters = match q.get("filters") {
        Some(f) if !f.is_empty() => crate::system::parse_filters(f)?,
        _ => HashMap::new(),
    };
    // Without a dangling filter a prune takes untagged images only.
    filters
        .entry("dangling".to_string())
        .or_insert_with(|| vec!["true".into()]);
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "false" | "0")));
    if all {
        filters.remove("dangling");
    }
    let negated = crate::dayops::take_negated_labels(&mut filters);
    let e = st.engine.clone();
    let v = blocking(move || {
        let f = ImageFilters::parse(&e.images, &filters)?;
        let used: std::collections::HashSet<String> =
            e.records()?.into_iter().map(|r| r.image_id).collect();
        let before = berth_image::query::usage(&e.images);
        let mut deleted = Vec::new();
        for img in e.images.list()? {
            if !f.matches(&img)
                || !crate::dayops::image_passes_negated(&img, &negated)
                || used.contains(&img.id.to_string())
                || e.images.in_use(&img)?
            {
                continue;
            }
            match e.images.remove(&img.id.to_string(), true) {
                Ok(actions) => deleted.extend(actions.iter().map(|a| match a {
                    berth_image::store::RemoveAction::Untagged(r) => json!({"Untagged": r}),
                    berth_image::store::RemoveAction::Deleted(d) => json!({"Deleted": d}),
                })),
                // Removed meanwhile by another request: nothing left to prune of it.
                Err(err) if err.kind() == berth_image::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        e.images.gc()?;
        let reclaimed = before.saturating_sub(berth_image::query::usage(&e.images));
        Ok(json!({"ImagesDeleted": deleted, "SpaceReclaimed": reclaimed}))
    })
    .await?;
    Ok(Json(v))
}
