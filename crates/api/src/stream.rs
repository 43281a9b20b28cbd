//! Hijacked connections (attach, exec start) and Docker's stream framing.
//!
//! Docker clients ask for `Upgrade: tcp`; the daemon answers 101 and the connection becomes a
//! raw byte stream in both directions: the client's stdin one way, the container's output
//! the other (with a tty as raw bytes, without one in 8-byte-header frames). The shim already
//! speaks that framing, so here the bytes are only carried between the two sockets.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::error::{ApiError, ApiResult};

pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// One frame of Docker's multiplexed stream: stream 1 stdout, 2 stderr.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Takes the upgrade of a hijack request and builds the 101 answer.
pub fn upgrade(req: &mut Request, tty: bool) -> ApiResult<(Response, OnUpgrade)> {
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    if !wants {
        return Err(ApiError::bad_request(
            "this endpoint streams over a hijacked connection: send Connection: Upgrade and Upgrade: tcp",
        ));
    }
    let on = req
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or_else(|| ApiError::internal("the connection cannot be upgraded"))?;
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, content_type(tty))
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((resp, on))
}

/// Connects to a shim and sends one request; returns the connection after its response
/// line (read byte by byte, so no stream byte after it is consumed here).
pub async fn shim_request(
    sock: &Path,
    req: &serde_json::Value,
) -> std::io::Result<(UnixStream, serde_json::Value)> {
    let mut s = UnixStream::connect(sock).await?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await?;
    let mut resp = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the shim closed the connection",
            ));
        }
        if b[0] == b'\n' {
            break;
        }
        resp.push(b[0]);
        if resp.len() > 64 * 1024 {
            return Err(std::io::Error::other("the shim's answer is too long"));
        }
    }
    let v = serde_json::from_slice(&resp).map_err(std::io::Error::other)?;
    Ok((s, v))
}

/// Carries bytes between the client's hijacked connection and the shim until the shim's
/// side ends (the process exited); the client's end of input is passed on as a shutdown.
pub async fn pump(client: hyper::upgrade::Upgraded, shim: UnixStream) {
    pump_then(client, shim, async {}).await
}

/// [`pump`], running `after` once the shim's side has ended and before the client's side
/// is closed (an exec's exit code is recorded before its client can ask for it).
pub async fn pump_then(
    client: hyper::upgrade::Upgraded,
    shim: UnixStream,
    after: impl std::future::Future<Output = ()>,
) {
    let client = TokioIo::new(client);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = shim.into_split();
    let input = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let _ = tokio::io::copy(&mut sr, &mut cw).await;
    after.await;
    let _ = cw.shutdown().await;
    input.abort();
}
