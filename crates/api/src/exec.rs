//! `/containers/{id}/exec` and `/exec/...`: processes run in a running container by its shim.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::containers::parse_body;
use crate::daemon::{blocking, AppState};
use crate::error::{ApiError, ApiResult};
use crate::stream;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
        .route("/exec/{id}/resize", post(resize))
}

async fn create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let cfg: ExecConfig = parse_body(&body)?;
    let e = st.engine.clone();
    let exec_id = blocking(move || Ok(e.exec_create(&id, cfg)?)).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))).into_response())
}

async fn exit_code(sock: &std::path::Path, exec_id: &str) -> i64 {
    match stream::shim_request(sock, &json!({"op": "exec_wait", "exec_id": exec_id})).await {
        Ok((_, v)) => v.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(-1),
        Err(_) => -1,
    }
}

async fn start(
    State(st): State<AppState>,
    Path(exec_id): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("read body: {e}")))?;
    let sc: ExecStartConfig = parse_body(&body)?;
    let detach = sc.detach.unwrap_or(false);
    let e = st.engine.clone();
    let id2 = exec_id.clone();
    let plan = blocking(move || Ok(e.exec_plan(&id2, detach)?)).await?;
    let tty = plan.tty || sc.tty.unwrap_or(false);
    let request = json!({"op": "exec", "exec_id": exec_id, "process": plan.process, "stdin": plan.stdin && !detach});
    let finished = {
        let engine = st.engine.clone();
        let sock = plan.socket.clone();
        let exec_id = exec_id.clone();
        move || async move {
            let code = exit_code(&sock, &exec_id).await;
            let _ = tokio::task::spawn_blocking(move || engine.exec_finished(&exec_id, code)).await;
        }
    };
    if detach {
        let (mut conn, v) = stream::shim_request(&plan.socket, &request)
            .await
            .map_err(|e| ApiError::internal(format!("exec: {e}")))?;
        if v.get("ok").and_then(|x| x.as_bool()) != Some(true) {
            let msg = v
                .get("error")
                .and_then(|x| x.as_str())
                .unwrap_or("exec failed")
                .to_string();
            let engine = st.engine.clone();
            let _ = tokio::task::spawn_blocking(move || engine.exec_finished(&exec_id, 126)).await;
            return Err(ApiError::internal(msg));
        }
        tokio::spawn(async move {
            let mut sink = [0u8; 8192];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
            finished().await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    let (resp, on) = stream::upgrade(&mut req, tty)?;
    tokio::spawn(async move {
        let Ok(client) = on.await else { return };
        match stream::shim_request(&plan.socket, &request).await {
            Ok((conn, v)) if v.get("ok").and_then(|x| x.as_bool()) == Some(true) => {
                stream::pump_then(client, conn, finished()).await;
            }
            Ok((_, v)) => {
                // Docker reports a failed exec start in the stream and as exit code 126/127.
                let msg = v
                    .get("error")
                    .and_then(|x| x.as_str())
                    .unwrap_or("exec failed")
                    .to_string();
                let code = if msg.contains("not found") || msg.contains("No such file") {
                    127
                } else {
                    126
                };
                let mut io = hyper_util::rt::TokioIo::new(client);
                let line = format!("OCI runtime exec failed: {msg}\r\n");
                let data = if tty {
                    line.into_bytes()
                } else {
                    stream::frame(1, line.as_bytes())
                };
                let _ = tokio::io::AsyncWriteExt::write_all(&mut io, &data).await;
                let engine = st.engine.clone();
                let _ =
                    tokio::task::spawn_blocking(move || engine.exec_finished(&exec_id, code)).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
            }
            Err(_) => {}
        }
    });
    Ok(resp)
}

async fn inspect(
    State(st): State<AppState>,
    Path(exec_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let e = st.engine.clone();
    let v = blocking(move || Ok(e.exec_inspect(&exec_id)?)).await?;
    Ok(Json(v))
}

async fn resize(
    State(st): State<AppState>,
    Path(exec_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let h: u16 = q.get("h").and_then(|x| x.parse().ok()).unwrap_or(0);
    let w: u16 = q.get("w").and_then(|x| x.parse().ok()).unwrap_or(0);
    let e = st.engine.clone();
    let id2 = exec_id.clone();
    let rec = blocking(move || Ok(e.exec_inspect(&id2)?)).await?;
    let cid = rec
        .get("ContainerID")
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .to_string();
    let sock = st.engine.socket(&cid);
    let _ = stream::shim_request(
        &sock,
        &json!({"op": "exec_resize", "exec_id": exec_id, "height": h, "width": w}),
    )
    .await;
    Ok(StatusCode::OK.into_response())
}
