//! `/_ping`, `/version`, `/info`, `/events`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::daemon::AppState;
use crate::error::ApiResult;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(crate::events::events))
}

async fn ping() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
        ],
        "OK",
    )
        .into_response()
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn version() -> ApiResult<Json<serde_json::Value>> {
    let v = json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"), "Details": {
            "ApiVersion": crate::API_VERSION, "MinAPIVersion": crate::MIN_API_VERSION,
            "Os": "linux", "Arch": "amd64", "KernelVersion": kernel()}}],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": crate::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": kernel(),
        "BuildTime": "",
    });
    let typed: bollard_stubs::models::SystemVersion =
        serde_json::from_value(v).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    Ok(Json(serde_json::to_value(typed).unwrap_or_default()))
}

async fn info(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let e = st.engine.clone();
    let (recs, images) = crate::daemon::blocking(move || {
        Ok((e.records()?, e.images.list().map(|l| l.len()).unwrap_or(0)))
    })
    .await?;
    let count = |s: &str| recs.iter().filter(|r| r.status == s).count();
    let uts = nix::sys::utsname::uname().ok();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|k| k.parse::<i64>().ok())
                })
        })
        .unwrap_or(0)
        * 1024;
    let cgv = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let v = json!({
        "ID": "berth",
        "Containers": recs.len(),
        "ContainersRunning": count("running"),
        "ContainersPaused": count("paused"),
        "ContainersStopped": recs.len() - count("running") - count("paused"),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [],
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgv,
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": "berth",
        "OSType": "linux",
        "Architecture": uts.as_ref().map(|u| u.machine().to_string_lossy().into_owned()).unwrap_or_default(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "DockerRootDir": st.engine.config().data_root,
        "Name": uts.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth": {"path": "berth-runtime"}},
        "DefaultRuntime": "berth",
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    });
    let typed: bollard_stubs::models::SystemInfo =
        serde_json::from_value(v).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    Ok(Json(serde_json::to_value(typed).unwrap_or_default()))
}

/// Docker's `filters` query parameter: `{"key": ["v"]}` or the old `{"key": {"v": true}}`.
pub fn parse_filters(s: &str) -> ApiResult<HashMap<String, Vec<String>>> {
    let v: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| crate::error::ApiError::bad_request(format!("invalid filters: {e}")))?;
    let mut out = HashMap::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            let list: Vec<String> = match val {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => {
                    return Err(crate::error::ApiError::bad_request(format!(
                        "invalid filter {k:?}"
                    )))
                }
            };
            out.insert(k.clone(), list);
        }
    }
    Ok(out)
}

/// A streaming body fed by a task through a channel.
pub fn async_stream<F, Fut>(f: F) -> axum::body::Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    axum::body::Body::from_stream(s)
}
