//! The few requests made by hand over the daemon's socket (transport.rs) instead of through bollard,
//! each for a reason bollard cannot serve:
//! - wait: `run` must know the daemon has registered the wait before it starts the
//!   container, or a container that exits (and with --rm is removed) at once is missed. The
//!   daemon answers the headers as soon as it has registered it (the docker CLI relies on the
//!   same); bollard's wait stream yields nothing until the body, so it cannot tell.
//! - create: berth's daemon is asked to start the container at once (`?berth-start=N`,
//!   see run.rs), which bollard does not send, and says so in a header, which bollard does
//!   not show.
//! - inspect: the daemon's JSON printed as sent (its field order, its nulls), as docker
//!   prints it; bollard's typed models reorder fields and drop nulls.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::transport::AsyncIo;
use super::{CliError, Client, Result};

/// A response whose headers have arrived; the body is read on demand.
pub struct Response {
    pub status: u16,
    /// The status line and headers, lowercased.
    head: String,
    what: String,
    chunked: bool,
    stream: Box<dyn AsyncIo>,
    buf: Vec<u8>,
}

fn io(op: &str) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        op: op.to_string(),
        source,
    }
}

/// Sends `METHOD /vX.Y{path}` and returns once the status line and headers have arrived.
pub async fn send(client: &Client, method: &str, path: &str) -> Result<Response> {
    send_body(client, method, path, None).await
}

/// [`send`] with a JSON body.
pub async fn send_json(client: &Client, method: &str, path: &str, body: &[u8]) -> Result<Response> {
    send_body(client, method, path, Some(body)).await
}

async fn send_body(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Response> {
    let what = format!("{method} {path}");
    let mut stream = client
        .endpoint
        .connect()
        .await
        .map_err(|_| CliError::Connect {
            host: client.host.clone(),
        })?;
    let kind = if body.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let mut req = format!(
        "{method} /v{}{path} HTTP/1.1\r\nHost: berth\r\n{kind}Content-Length: {}\r\nConnection: close\r\n\r\n",
        client.api_version,
        body.map_or(0, |b| b.len())
    )
    .into_bytes();
    req.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&req).await.map_err(io(&what))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(io(&what))?;
        if n == 0 {
            return Err(CliError::Io {
                op: what,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok(Response {
        status,
        head,
        what,
        chunked,
        stream,
        buf: buf[head_end..].to_vec(),
    })
}

/// A query value percent-encoded (RFC 3986: all but the unreserved characters); written
/// here because one query value is all this module sends that needs it.
pub fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// HTTP/1.1 chunked transfer coding, undone.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

impl Response {
    /// A header's value (its name in lowercase), if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    }

    /// The whole body (the daemon closes the connection after it).
    pub async fn body(mut self) -> Result<Vec<u8>> {
        self.stream
            .read_to_end(&mut self.buf)
            .await
            .map_err(io(&self.what))?;
        if !self.chunked {
            return Ok(self.buf);
        }
        dechunk(&self.buf).ok_or_else(|| CliError::Io {
            op: self.what,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body"),
        })
    }

    /// The body as JSON; a status other than 2xx becomes docker's error with its message.
    pub async fn json(self) -> Result<serde_json::Value> {
        let status = self.status;
        let what = self.what.clone();
        let body = self.body().await?;
        let v: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let message = v
                .as_ref()
                .and_then(|v| v.get("message"))
                .and_then(|m| m.as_str())
                .map(String::from)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(CliError::Daemon { status, message });
        }
        v.ok_or_else(|| CliError::Io {
            op: what,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not JSON"),
        })
    }
}

/// Go's json.Indent with four spaces, as `docker inspect` prints: the text's own order and
/// content kept, empty objects and arrays as `{}` and `[]`.
pub fn indent_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let chars: Vec<char> = raw.chars().collect();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("    ");
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                out.push(c);
                if chars.get(j) == Some(&close) {
                    out.push(close);
                    i = j + 1;
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_escaped() {
        assert_eq!(super::query_escape("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(super::query_escape("a b&c=/é"), "a%20b%26c%3D%2F%C3%A9");
    }

    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(body).as_deref(), Some(&b"hello world"[..]));
        assert_eq!(dechunk(b"zz\r\n"), None);
        assert_eq!(dechunk(b"5\r\nhel"), None);
    }

    #[test]
    fn indents_as_go_does() {
        let raw = r#"[{"Id":"a","Args":[],"E":{},"S":"x,y:{\"q\"}","N":null,"L":[1,2]}]"#;
        let want = "[\n    {\n        \"Id\": \"a\",\n        \"Args\": [],\n        \"E\": {},\n        \"S\": \"x,y:{\\\"q\\\"}\",\n        \"N\": null,\n        \"L\": [\n            1,\n            2\n        ]\n    }\n]";
        assert_eq!(indent_json(raw), want);
    }
}
