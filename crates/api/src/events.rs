//! `GET /events`: the kept history from `since`, then what happens, until `until` or the
//! client goes; Docker's filters and message shape.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use berth_engine::events::{check_filters, matches, parse_time, Event};
use tokio::sync::broadcast::error::RecvError;

use crate::daemon::AppState;
use crate::error::{ApiError, ApiResult};
use crate::system::{async_stream, parse_filters};

fn time_param(q: &HashMap<String, String>, k: &str) -> ApiResult<Option<i64>> {
    match q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse_time(s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("invalid value for {k}: {e}"))),
    }
}

fn now_nano() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn line(e: &Event) -> bytes::Bytes {
    let mut l = serde_json::to_vec(&e.message()).unwrap_or_default();
    l.push(b'\n');
    bytes::Bytes::from(l)
}

pub async fn events(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let filters: HashMap<String, Vec<String>> = match q.get("filters") {
        Some(f) if !f.is_empty() => parse_filters(f)?,
        _ => HashMap::new(),
    };
    check_filters(&filters).map_err(ApiError::bad_request)?;
    let since = time_param(&q, "since")?;
    let until = time_param(&q, "until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::bad_request(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                q.get("since").map(String::as_str).unwrap_or(""),
                q.get("until").map(String::as_str).unwrap_or("")
            )));
        }
    }
    // dockerd replays its history when either bound is given: `until` alone replays all of
    // it up to then
    let replay_from = since.or(until.map(|_| i64::MIN));
    let (past, mut rx) = st.engine.events.subscribe_since(replay_from);
    let stream = async_stream(move |tx| async move {
        let wanted = |e: &Event| {
            since.is_none_or(|s| e.time_nano >= s)
                && until.is_none_or(|u| e.time_nano <= u)
                && matches(&filters, e)
        };
        for e in past.iter().filter(|e| wanted(e)) {
            if tx.send(Ok(line(e))).await.is_err() {
                return;
            }
        }
        loop {
            let sleep = match until {
                Some(u) => {
                    let left = u.saturating_sub(now_nano());
                    if left <= 0 {
                        break;
                    }
                    std::time::Duration::from_nanos(left as u64)
                }
                None => std::time::Duration::from_secs(u32::MAX as u64),
            };
            let ev = tokio::select! {
                e = rx.recv() => e,
                _ = tokio::time::sleep(sleep) => break,
                // a client gone while nothing happens must not keep its task
                _ = tx.closed() => break,
            };
            let ev = match ev {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "an events client fell behind");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            if wanted(&ev) && tx.send(Ok(line(&ev))).await.is_err() {
                break;
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], stream).into_response())
}
