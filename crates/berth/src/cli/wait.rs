//! POST /containers/{id}/wait, made by hand over the unix socket. `run` must know the daemon
//! has registered the wait before it starts the container, or a container that exits (and
//! with --rm is removed) at once is missed. The daemon answers the headers as soon as it has
//! registered it (the docker CLI relies on the same); bollard's wait stream yields nothing
//! until the body, so it cannot tell.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{CliError, Client, Result};

pub struct PendingWait {
    id: String,
    stream: UnixStream,
    body: Vec<u8>,
}

fn io(op: String) -> impl FnOnce(std::io::Error) -> CliError {
    move |source| CliError::Io { op, source }
}

fn daemon_message(status: u16, body: &[u8]) -> CliError {
    let text = String::from_utf8_lossy(body);
    let message = json_in(&text)
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| text.trim().to_string());
    CliError::Daemon { status, message }
}

/// The one JSON object in a (possibly chunked) body: between its first `{` and last `}`.
fn json_in(text: &str) -> Option<serde_json::Value> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    serde_json::from_str(text.get(start..=end)?).ok()
}

/// Sends the wait request and returns once the daemon has answered its headers.
pub async fn register(client: &Client, id: &str, condition: &str) -> Result<PendingWait> {
    let mut stream = UnixStream::connect(&client.socket)
        .await
        .map_err(|_| CliError::Connect {
            host: client.host.clone(),
        })?;
    let req = format!(
        "POST /v{}/containers/{id}/wait?condition={condition} HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        client.api_version
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(io(format!("send wait request for {id}")))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(io(format!("read wait response for {id}")))?;
        if n == 0 {
            return Err(CliError::Io {
                op: format!("read wait response for {id}"),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut pending = PendingWait {
        id: id.to_string(),
        stream,
        body: buf[head_end..].to_vec(),
    };
    if status != 200 {
        pending.read_rest().await?;
        return Err(daemon_message(status, &pending.body));
    }
    Ok(pending)
}

impl PendingWait {
    async fn read_rest(&mut self) -> Result<()> {
        self.stream
            .read_to_end(&mut self.body)
            .await
            .map_err(io(format!("read wait response for {}", self.id)))?;
        Ok(())
    }

    /// The container's exit code, once it has met the condition.
    pub async fn status(mut self) -> Result<i64> {
        self.read_rest().await?;
        let text = String::from_utf8_lossy(&self.body);
        let v = json_in(&text).ok_or_else(|| CliError::Io {
            op: format!("parse wait response for {}", self.id),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, text.to_string()),
        })?;
        if let Some(msg) = v
            .get("Error")
            .and_then(|e| e.get("Message"))
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
        {
            return Err(CliError::Daemon {
                status: 500,
                message: msg.to_string(),
            });
        }
        Ok(v.get("StatusCode").and_then(|c| c.as_i64()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_json_in_a_chunked_body() {
        let body = "1e\r\n{\"StatusCode\":3,\"Error\":null}\r\n0\r\n\r\n";
        let v = json_in(body).expect("json");
        assert_eq!(v["StatusCode"], 3);
        assert!(json_in("no json").is_none());
    }
}
