//! `/networks/...`: list, inspect, create, remove, prune, connect, disconnect.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bollard_stubs::models::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use serde_json::json;

use crate::containers::parse_body;
use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};
use crate::system::parse_filters;

type Q = Query<HashMap<String, String>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

fn filters(q: &HashMap<String, String>) -> ApiResult<HashMap<String, Vec<String>>> {
    match q.get("filters") {
        Some(f) if !f.is_empty() => parse_filters(f),
        _ => Ok(HashMap::new()),
    }
}

async fn list(State(st): State<AppState>, q: Q) -> ApiResult<Json<serde_json::Value>> {
    let f = filters(&q)?;
    let e = st.engine.clone();
    let out = blocking(move || Ok(e.network_list(&f)?)).await?;
    Ok(Json(json!(out)))
}

async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let e = st.engine.clone();
    let v = blocking(move || {
        let n = e.find_network(&id)?;
        Ok(e.network_json(&n, true)?)
    })
    .await?;
    Ok(Json(v))
}

async fn create(State(st): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: NetworkCreateRequest = parse_body(&body)?;
    if req.name.trim().is_empty() {
        return Err(ApiError::bad_request("network create: Name is required"));
    }
    let e = st.engine.clone();
    let (id, warning) = blocking(move || Ok(e.network_create(req)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": id, "Warning": warning})),
    )
        .into_response())
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let e = st.engine.clone();
    blocking(move || Ok(e.network_remove(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prune(State(st): State<AppState>, q: Q) -> ApiResult<Json<serde_json::Value>> {
    let f = filters(&q)?;
    let labels = f.get("label").cloned().unwrap_or_default();
    let e = st.engine.clone();
    let gone = blocking(move || Ok(e.network_prune(&labels)?)).await?;
    Ok(Json(json!({"NetworksDeleted": gone})))
}

async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: NetworkConnectRequest = parse_body(&body)?;
    if req.container.is_empty() {
        return Err(ApiError::bad_request(
            "network connect: Container is required",
        ));
    }
    let e = st.engine.clone();
    blocking(move || {
        Ok(e.network_connect(&id, &req.container, req.endpoint_config.unwrap_or_default())?)
    })
    .await?;
    Ok(StatusCode::OK)
}

async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: NetworkDisconnectRequest = parse_body(&body)?;
    if req.container.is_empty() {
        return Err(ApiError::bad_request(
            "network disconnect: Container is required",
        ));
    }
    let e = st.engine.clone();
    blocking(move || Ok(e.network_disconnect(&id, &req.container)?)).await?;
    Ok(StatusCode::OK)
}
