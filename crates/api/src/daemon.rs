//! `berth daemon`: listeners, the router, the monitors that learn of container exits, and
//! what happens at start (adopt running containers) and at SIGTERM (leave them running).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use berth_engine::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

/// The daemon's settings: flags, over /etc/berth/daemon.json, over defaults.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `-H`: `unix:///path` (several allowed).
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: Option<PathBuf>,
    /// The berth binary, for `berth shim`.
    pub berth_exe: PathBuf,
    /// `--tls`/`--tlsverify` and their files: what a `tcp://` host needs.
    pub tls: crate::tls::TlsOptions,
    /// `--host-gateway-ip` (daemon.json `host-gateway-ip`).
    pub host_gateway_ip: Option<std::net::Ipv4Addr>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            hosts: vec!["unix:///run/berth/berth.sock".into()],
            data_root: "/var/lib/berth".into(),
            exec_root: "/run/berth".into(),
            pidfile: Some("/run/berth/berth.pid".into()),
            berth_exe: std::env::current_exe().unwrap_or_else(|_| "berth".into()),
            tls: Default::default(),
            host_gateway_ip: None,
        }
    }
}

impl DaemonConfig {
    /// Applies a daemon.json (dockerd's key names where they mean the same) under the
    /// values given on the command line.
    pub fn apply_file(&mut self, path: &Path, flags_given: &[&str]) -> Result<(), String> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        let v: serde_json::Value = serde_json::from_slice(&data)
            .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| format!("{}: must be a JSON object", path.display()))?;
        for (k, val) in obj {
            let given = flags_given.contains(&k.as_str());
            let s = || {
                val.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{}: {k} must be a string", path.display()))
            };
            match k.as_str() {
                "hosts" if !given => {
                    self.hosts = val
                        .as_array()
                        .ok_or_else(|| format!("{}: hosts must be a list", path.display()))?
                        .iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect()
                }
                "data-root" if !given => self.data_root = s()?.into(),
                "exec-root" if !given => self.exec_root = s()?.into(),
                "pidfile" if !given => self.pidfile = Some(s()?.into()),
                "tls" | "tlsverify" if !given => {
                    let b = val
                        .as_bool()
                        .ok_or_else(|| format!("{}: {k} must be true or false", path.display()))?;
                    if k == "tls" {
                        self.tls.tls = b
                    } else {
                        self.tls.verify = b
                    }
                }
                "tlscacert" if !given => self.tls.ca = Some(s()?.into()),
                "tlscert" if !given => self.tls.cert = Some(s()?.into()),
                "tlskey" if !given => self.tls.key = Some(s()?.into()),
                "host-gateway-ip" if !given => {
                    self.host_gateway_ip = Some(
                        parse_host_gateway_ip(&s()?)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    )
                }
                "hosts" | "data-root" | "exec-root" | "pidfile" | "tls" | "tlsverify"
                | "tlscacert" | "tlscert" | "tlskey" | "host-gateway-ip" => {}
                other => tracing::warn!("{}: {other} is not supported; ignored", path.display()),
            }
        }
        Ok(())
    }
}

/// The value of `--host-gateway-ip`: one IPv4 address.
pub fn parse_host_gateway_ip(v: &str) -> Result<std::net::Ipv4Addr, String> {
    match v.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Ok(a),
        Ok(std::net::IpAddr::V6(_)) => Err(format!(
            "host-gateway-ip {v:?}: only an IPv4 address is supported"
        )),
        Err(_) => Err(format!("host-gateway-ip {v:?}: not an IP address")),
    }
}

/// An attach that arrived before its container started: it is told the shim's socket when
/// the container exists (the shim holds the output until it has connected).
pub type PendingAttach = oneshot::Sender<PathBuf>;

pub struct State {
    pub engine: Arc<Engine>,
    pub pending: Mutex<HashMap<String, Vec<PendingAttach>>>,
    /// Starts begun by the daemon itself right after a create (berth's CLI, see
    /// [`EarlyStart`]), by container id.
    pub early: Mutex<HashMap<String, EarlyStart>>,
}

/// The outcome of a start: the error's status and message, which every request that
/// awaits it answers with.
pub type StartOutcome = Option<Result<(), (axum::http::StatusCode, String)>>;

/// `docker run` is four round trips in a row: create, then attach and wait, then start, each
/// waiting for the last. berth's own CLI announces at create (`?berth-start=N`) that it will
/// attach N streams, wait and start at once; the daemon then starts the container as soon
/// as it is created, while those requests are on their way. What makes that safe:
/// - the shim holds the output for the N announced attaches (as for attaches made before a
///   start), and an attach that finds the start under way waits for it;
/// - the wait is subscribed here, before the start, and handed to the client's wait request,
///   which so sees the exit (and, with `--rm`, the removal) even when both came first;
/// - the client's start request is answered with this start's outcome.
///
/// An entry nobody claims (its client gone) is dropped after [`EARLY_TTL`].
pub struct EarlyStart {
    pub at: std::time::Instant,
    pub done: tokio::sync::watch::Receiver<StartOutcome>,
    /// Set once the shim is up (before the start's own bookkeeping): an attach connects to
    /// it from then on, as the shim holds the output until it has.
    pub created: tokio::sync::watch::Receiver<bool>,
    /// Whether a start request has already been answered with this start's outcome: a later
    /// one is a start of its own.
    pub answered: bool,
    pub waiter: Option<tokio::sync::broadcast::Receiver<berth_engine::events::Event>>,
}

pub const EARLY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

pub type AppState = Arc<State>;

/// Runs `f` on the blocking pool; a panic in it is a 500 for this request only.
pub async fn blocking<T, F>(f: F) -> crate::error::ApiResult<T>
where
    F: FnOnce() -> crate::error::ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Watches one running container: the shim answers `wait` when its init exits.
pub fn spawn_monitor(state: AppState, id: String) {
    tokio::spawn(async move {
        let sock = state.engine.socket(&id);
        // which shim answered: its report must not end the run of a later one
        let mut shim = None;
        let info = async {
            let mut s = UnixStream::connect(&sock).await.ok()?;
            shim = s.peer_cred().ok().and_then(|c| c.pid());
            s.write_all(b"{\"op\":\"wait\"}\n").await.ok()?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).await.ok()?;
            serde_json::from_str::<berth_engine::shim::ExitInfo>(line.trim()).ok()
        }
        .await;
        let engine = state.engine.clone();
        let id2 = id.clone();
        let res = tokio::task::spawn_blocking(move || engine.exited_from(&id2, shim, info)).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "record a container's exit");
        }
        crate::selfheal::after_exit(state, id);
    });
}

/// Errors made by axum's extractors (a body over the limit: 413) are plain text; Docker's
/// clients read an error's message from `{"message": ...}`.
async fn json_error(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    let status = resp.status();
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => status.to_string(),
    };
    crate::error::ApiError::new(status, text).into_response_owned()
}

/// Docker clients put `/v1.NN` before every path; the routes are written without it.
async fn strip_version(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            let ver = &rest[..slash];
            let ok = ver
                .split_once('.')
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
            if ok {
                let v = crate::volumes::RequestedVersion(ver.to_string());
                let new_path = rest[slash..].to_string();
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                if let Ok(uri) = pq.parse() {
                    *req.uri_mut() = uri;
                }
                req.extensions_mut().insert(v);
            }
        }
    }
    let mut resp = json_error(next.run(req).await).await;
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        axum::http::HeaderValue::from_static(crate::API_VERSION),
    );
    h.insert("Server", axum::http::HeaderValue::from_static("berth"));
    h.insert("Ostype", axum::http::HeaderValue::from_static("linux"));
    resp
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::selfheal::routes())
        .merge(crate::system::routes())
        .merge(crate::containers::routes())
        .merge(crate::dayops::routes())
        .merge(crate::exec::routes())
        .merge(crate::images::routes())
        .merge(crate::volumes::routes())
        .merge(crate::networks::routes())
        .fallback(|req: Request| async move {
            crate::error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("page not found: {} {}", req.method(), req.uri().path()),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            crate::error::ApiError::internal("internal error: the request handler panicked")
                .into_response_owned()
        }))
        .with_state(state)
}

impl crate::error::ApiError {
    fn into_response_owned(self) -> Response {
        axum::response::IntoResponse::into_response(self)
    }
}

fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by a daemon that died: connecting to it fails; then it can go.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use: is another daemon running?", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Runs the daemon until SIGTERM or SIGINT. Containers keep running after it returns.
pub async fn run(cfg: DaemonConfig) -> Result<(), String> {
    let mut listeners = Vec::new();
    let mut tcp_hosts = Vec::new();
    for h in &cfg.hosts {
        if let Some(p) = h.strip_prefix("unix://") {
            let p = PathBuf::from(p);
            listeners.push((
                p.clone(),
                bind_unix(&p).map_err(|e| format!("listen on {h}: {e}"))?,
            ));
        } else if h.starts_with("tcp://") {
            tcp_hosts.push(h.clone());
        } else if h.starts_with("fd://") {
            return Err(format!(
                "-H {h}: socket activation is not supported; use unix:///path or tcp:// with TLS"
            ));
        } else {
            return Err(format!(
                "-H {h}: not a unix:///path or tcp://host:port address"
            ));
        }
    }
    let tls_listeners = crate::tls::listeners(&tcp_hosts, &cfg.tls).await?;
    let engine_cfg = berth_engine::Config {
        data_root: cfg.data_root.clone(),
        exec_root: cfg.exec_root.clone(),
        berth_exe: cfg.berth_exe.clone(),
        host_gateway_ip: cfg.host_gateway_ip,
    };
    let engine = tokio::task::spawn_blocking(move || Engine::open(engine_cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("open the engine: {e}"))?;
    let state: AppState = Arc::new(State {
        engine: Arc::new(engine),
        pending: Mutex::new(HashMap::new()),
        early: Mutex::new(HashMap::new()),
    });
    let e = state.engine.clone();
    let live = tokio::task::spawn_blocking(move || e.reconcile())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("adopt running containers: {e}"))?;
    for id in &live {
        spawn_monitor(state.clone(), id.clone());
    }
    crate::selfheal::on_boot(&state, &live).await?;
    if let Some(p) = &cfg.pidfile {
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| format!("write pidfile {}: {e}", p.display()))?;
    }
    let app = router(state.clone());
    let app = tower::Layer::layer(&axum::middleware::from_fn(strip_version), app);
    let mut tasks = Vec::new();
    for (path, l) in listeners {
        let app = app.clone();
        tracing::info!("API listening on unix://{}", path.display());
        tasks.push(tokio::spawn(async move {
            let svc = axum::ServiceExt::<Request>::into_make_service(app);
            if let Err(e) = axum::serve(l, svc).await {
                tracing::error!(error = %e, "API server");
            }
        }));
    }
    for l in tls_listeners {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let svc = axum::ServiceExt::<Request>::into_make_service(app);
            if let Err(e) = axum::serve(l, svc).await {
                tracing::error!(error = %e, "API server (TLS)");
            }
        }));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down; containers keep running");
    for t in tasks {
        t.abort();
    }
    for h in &cfg.hosts {
        if let Some(p) = h.strip_prefix("unix://") {
            let _ = std::fs::remove_file(p);
        }
    }
    if let Some(p) = &cfg.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DaemonConfig;

    #[test]
    fn daemon_json_host_gateway_ip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("daemon.json");
        std::fs::write(&f, r#"{"host-gateway-ip": "192.0.2.8"}"#).expect("write");
        let mut cfg = DaemonConfig::default();
        cfg.apply_file(&f, &[]).expect("apply");
        assert_eq!(cfg.host_gateway_ip, Some("192.0.2.8".parse().expect("ip")));
        // the flag wins over the file
        let mut cfg = DaemonConfig::default();
        cfg.apply_file(&f, &["host-gateway-ip"]).expect("apply");
        assert_eq!(cfg.host_gateway_ip, None);
        std::fs::write(&f, r#"{"host-gateway-ip": "fd00::1"}"#).expect("write");
        let e = DaemonConfig::default()
            .apply_file(&f, &[])
            .err()
            .unwrap_or_default();
        assert!(e.contains("only an IPv4 address"), "{e}");
    }
}
