//! The daemon's half of restart policies and health checks: the timers. What to do and
//! when is the engine's (berth_engine::restart, berth_engine::health); here a pending
//! restart becomes a tokio timer, a running container with a health check gets a task that
//! probes it by an exec through its shim. (`POST /containers/{id}/update`, which changes the
//! restart policy, is in containers.rs with the resources.)

use std::path::Path;
use std::time::Duration;

use axum::Router;
use berth_engine::health::{truncate_output, Check, Probe, MAX_OUTPUT};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::daemon::{spawn_monitor, AppState};
use crate::error::ApiResult;
use crate::stream;

pub fn routes() -> Router<AppState> {
    // `POST /containers/{id}/update` (the restart policy with the resources) is in
    // containers.rs.
    Router::new()
}

/// A restart policy name Docker does not know is refused with Docker's message, before the
/// body is parsed (the parse would only say "unknown variant"). `body` is a create or an
/// update request.
pub fn check_restart_name(body: &[u8]) -> ApiResult<()> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(()); // the parse that follows says what is wrong
    };
    let p = v
        .get("HostConfig")
        .and_then(|h| h.get("RestartPolicy"))
        .or_else(|| v.get("RestartPolicy"));
    match p.and_then(|p| p.get("Name")).and_then(|n| n.as_str()) {
        None | Some("" | "no" | "always" | "unless-stopped" | "on-failure") => Ok(()),
        Some(other) => Err(crate::error::ApiError::bad_request(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', \
             'on-failure', or 'unless-stopped'"
        ))),
    }
}

/// After the monitor recorded an exit: if the policy made the container `restarting`,
/// its timer.
pub fn after_exit(st: AppState, id: String) {
    tokio::spawn(async move {
        let e = st.engine.clone();
        let id2 = id.clone();
        match tokio::task::spawn_blocking(move || e.pending_restart(&id2)).await {
            Ok(Ok(Some(delay))) => schedule_restart(st, id, delay),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(container = %id, error = %e, "read the restart state"),
            Err(e) => tracing::warn!(container = %id, error = %e, "read the restart state"),
        }
    });
}

/// Starts container `id` after `delay` if it is still waiting then.
pub fn schedule_restart(st: AppState, id: String, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let e = st.engine.clone();
        let id2 = id.clone();
        match tokio::task::spawn_blocking(move || e.restart_due(&id2)).await {
            Ok(Ok(true)) => {
                spawn_monitor(st.clone(), id.clone());
                start_health(st, id);
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(container = %id, error = %e, "restart by policy"),
            Err(e) => tracing::warn!(container = %id, error = %e, "restart by policy"),
        }
    });
}

/// At daemon start, once the live containers are adopted: their health checkers, and the
/// restarts that were pending or that the policies ask for at boot.
pub async fn on_boot(st: &AppState, live: &[String]) -> Result<(), String> {
    for id in live {
        start_health(st.clone(), id.clone());
    }
    let e = st.engine.clone();
    let due = tokio::task::spawn_blocking(move || e.restarts_on_boot())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("restart policies at start: {e}"))?;
    for (id, delay) in due {
        schedule_restart(st.clone(), id, delay);
    }
    Ok(())
}

/// Starts the health checker of a container that just started (if it has a check). It
/// stops when that run ends.
pub fn start_health(st: AppState, id: String) {
    tokio::spawn(async move {
        // Subscribed before the first look, so an exit in between is not missed.
        let mut rx = st.engine.events.subscribe();
        let e = st.engine.clone();
        let id2 = id.clone();
        let (check, started_at) =
            match tokio::task::spawn_blocking(move || e.health_begin(&id2)).await {
                Ok(Ok(Some(x))) => x,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::warn!(container = %id, error = %e, "start the health check");
                    return;
                }
                Err(_) => return,
            };
        loop {
            let e = st.engine.clone();
            let (id2, s2, c2) = (id.clone(), started_at.clone(), check.clone());
            let wait =
                match tokio::task::spawn_blocking(move || e.health_next(&id2, &s2, &c2)).await {
                    Ok(Ok(Some(w))) => w,
                    _ => return,
                };
            let ended = async {
                loop {
                    match rx.recv().await {
                        Ok(ev) if ev.id == id && (ev.action == "die" || ev.action == "destroy") => {
                            return
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ended => return,
            }
            let Some(p) = probe(&st, &id, &check).await else {
                continue; // paused: no probe, as dockerd
            };
            let e = st.engine.clone();
            let (id2, s2, c2) = (id.clone(), started_at.clone(), check.clone());
            match tokio::task::spawn_blocking(move || e.health_record(&id2, &s2, &c2, p)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(container = %id, error = %e, "record a health probe"),
                Err(_) => return,
            }
        }
    });
}

fn now() -> String {
    berth_engine::engine::now()
}

/// Runs one probe: an exec in the container, its output kept (up to 4 KiB), killed when it
/// outlives the timeout (Docker reports that as exit code -1). None if the container is not
/// running now (paused).
async fn probe(st: &AppState, id: &str, check: &Check) -> Option<Probe> {
    let start = now();
    let fail = |start: String, output: String| Probe {
        start,
        end: now(),
        exit_code: -1,
        output,
    };
    let e = st.engine.clone();
    let (id2, c2) = (id.to_string(), check.clone());
    let (sock, process) = match tokio::task::spawn_blocking(move || e.probe_plan(&id2, &c2)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) if e.kind() == berth_engine::Kind::Conflict => return None,
        Ok(Err(e)) => return Some(fail(start, format!("health check: {e}"))),
        Err(e) => return Some(fail(start, format!("health check: {e}"))),
    };
    let exec_id = format!(
        "health-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let req = json!({"op": "exec", "exec_id": exec_id, "process": process, "stdin": false});
    let (conn, v) = match stream::shim_request(&sock, &req).await {
        Ok(x) => x,
        Err(e) => return Some(fail(start, format!("health check: exec: {e}"))),
    };
    if v.get("ok").and_then(|x| x.as_bool()) != Some(true) {
        let msg = v
            .get("error")
            .and_then(|x| x.as_str())
            .unwrap_or("exec failed");
        return Some(fail(start, format!("health check: exec: {msg}")));
    }
    let pid = v.get("pid").and_then(|p| p.as_i64()).unwrap_or(0);
    Some(
        match tokio::time::timeout(check.timeout, read_output(conn)).await {
            Ok(out) => {
                let code = exec_exit(&sock, &exec_id, check.timeout).await;
                Probe {
                    start,
                    end: now(),
                    exit_code: code,
                    output: truncate_output(&out),
                }
            }
            Err(_) => {
                // The probe's process is the exec's; a pid the shim reported a moment ago, of a
                // child it has not reaped (it is still running), so it is still that process.
                if pid > 0 {
                    if let Err(e) = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    ) {
                        tracing::warn!(container = %id, pid, error = %e, "kill a health probe that timed out");
                    }
                }
                fail(
                    start,
                    format!(
                        "Health check exceeded timeout ({})",
                        humantime(check.timeout)
                    ),
                )
            }
        },
    )
}

/// Go's Duration.String ("300ms", "1.5s", "1m30s"), as Docker's message shows it.
fn humantime(d: Duration) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.9}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if d < Duration::from_secs(1) {
        return format!("{}ms", trim(d.as_secs_f64() * 1000.0));
    }
    let (h, m) = (d.as_secs() / 3600, d.as_secs() / 60 % 60);
    let s = trim(d.as_secs_f64() - (d.as_secs() / 60 * 60) as f64);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// The exec's output, stdout and stderr together (the shim frames them as Docker's
/// multiplexed stream); beyond [`MAX_OUTPUT`] bytes it is read and dropped.
async fn read_output(mut conn: tokio::net::UnixStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        raw.extend_from_slice(&buf[..n]);
        while raw.len() >= 8 {
            let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
            if raw.len() < 8 + len {
                break;
            }
            if out.len() < MAX_OUTPUT {
                let take = len.min(MAX_OUTPUT - out.len());
                out.extend_from_slice(&raw[8..8 + take]);
            }
            raw.drain(..8 + len);
        }
    }
    out
}

async fn exec_exit(sock: &Path, exec_id: &str, limit: Duration) -> i64 {
    let req = json!({"op": "exec_wait", "exec_id": exec_id});
    match tokio::time::timeout(limit, stream::shim_request(sock, &req)).await {
        Ok(Ok((_, v))) => v.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(-1),
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        assert_eq!(humantime(Duration::from_millis(300)), "300ms");
        assert_eq!(humantime(Duration::from_secs(30)), "30s");
        assert_eq!(humantime(Duration::from_millis(1500)), "1.5s");
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::from_secs(3600)), "1h0m0s");
    }
}
