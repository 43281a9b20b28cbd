//! The user's terminal for `-t`: raw mode for the session (restored on drop, also on error),
//! its size, and resizing the container's tty whenever the window changes (SIGWINCH).

use std::io::IsTerminal;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// Puts stdin in raw mode while alive.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// None when stdin is not a terminal (nothing to change).
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // nothing sensible to do if the terminal is gone
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// (rows, columns) of the terminal on stdout, or stdin when stdout is redirected.
pub fn size() -> Option<(u16, u16)> {
    let ws = tcgetwinsize(std::io::stdout())
        .or_else(|_| tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// What to resize: the container's tty or an exec's.
#[derive(Clone)]
pub enum Target {
    Container(String),
    Exec(String),
}

async fn resize(docker: &bollard::Docker, target: &Target) -> bool {
    let Some((h, w)) = size() else { return true };
    resize_to(docker, target, h, w).await
}

/// A shell attached to again has nothing new to print; a size change makes it redraw its
/// prompt (SIGWINCH), so `attach` first sets a size one larger, as the docker CLI does, and
/// `follow_window` then sets the real one.
pub async fn nudge(docker: &bollard::Docker, target: &Target) {
    if let Some((h, w)) = size() {
        resize_to(docker, target, h.saturating_add(1), w.saturating_add(1)).await;
    }
}

async fn resize_to(docker: &bollard::Docker, target: &Target, h: u16, w: u16) -> bool {
    let r = match target {
        Target::Container(id) => {
            docker
                .resize_container_tty(
                    id,
                    bollard::query_parameters::ResizeContainerTTYOptions {
                        h: h.into(),
                        w: w.into(),
                    },
                )
                .await
        }
        Target::Exec(id) => {
            docker
                .resize_exec(
                    id,
                    bollard::query_parameters::ResizeExecOptions {
                        h: h.into(),
                        w: w.into(),
                    },
                )
                .await
        }
    };
    r.is_ok()
}

/// Sizes the tty now and on every SIGWINCH, until the returned task is aborted.
pub fn follow_window(docker: bollard::Docker, target: Target) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // an exec's process may not exist yet when its start returns, and then the daemon
        // refuses the first resize; retry a few times, as the docker CLI does, rather than
        // leave the tty at 0x0 until the window changes
        for attempt in 1..=10u64 {
            if resize(&docker, &target).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10 * attempt)).await;
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            // a resize that fails (the process just exited) is not worth reporting
            resize(&docker, &target).await;
        }
    })
}

/// docker's detach keys (`ctrl-p,ctrl-q`, `a,ctrl-x`) as bytes.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let b = k.as_bytes();
        if b.len() == 1 {
            out.push(b[0]);
            continue;
        }
        let Some(c) = k.strip_prefix("ctrl-") else {
            return Err(format!("Unknown character: '{k}'"));
        };
        let code = match c.as_bytes() {
            [x] if x.is_ascii_lowercase() => x - b'a' + 1,
            [b'@'] => 0,
            [b'['] => 27,
            [b'\\'] => 28,
            [b']'] => 29,
            [b'^'] => 30,
            [b'_'] => 31,
            _ => return Err(format!("Unknown character: '{k}'")),
        };
        out.push(code);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Ok(vec![16, 17]));
        assert_eq!(parse_detach_keys("a,ctrl-x"), Ok(vec![b'a', 24]));
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }
}
