//! Progress of a pull or push, per layer, as Docker shows it: bars that update in place on a
//! terminal (indicatif), one plain line per state change otherwise (logs, pipes, tests).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use berth_image::digest::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives what happens to each blob. Implementations must be cheap: `bytes` is called for
/// every chunk received or sent.
pub trait Progress: Send + Sync {
    /// A new state of a blob: `Pulling fs layer`, `Already exists`, `Download complete`,
    /// `Pull complete`, `Pushed`, `Layer already exists`, `Mounted from x`, ...
    fn status(&self, blob: &Digest, status: &str);
    /// `done` of `total` bytes transferred; `verb` is `Downloading` or `Pushing`.
    fn bytes(&self, blob: &Digest, verb: &str, done: u64, total: u64);
    /// A line not about one blob (`latest: Pulling from x`, `Digest: ...`).
    fn line(&self, text: &str);
    /// Every blob is done: bars stop redrawing and stay as they are, so what is printed
    /// next (by this or by the caller) lands below them.
    fn finish(&self) {}
}

/// Reports nothing (library use, tests).
pub struct Silent;

impl Progress for Silent {
    fn status(&self, _: &Digest, _: &str) {}
    fn bytes(&self, _: &Digest, _: &str, _: u64, _: u64) {}
    fn line(&self, _: &str) {}
}

/// One line per state change on stdout, Docker's non-terminal output.
pub struct Plain;

impl Progress for Plain {
    fn status(&self, blob: &Digest, status: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}: {status}", blob.short());
    }
    fn bytes(&self, _: &Digest, _: &str, _: u64, _: u64) {}
    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }
}

/// A bar per blob on a terminal.
pub struct Bars {
    multi: MultiProgress,
    finished: std::sync::atomic::AtomicBool,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    style_bytes: ProgressStyle,
    style_msg: ProgressStyle,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Self {
        let style_bytes = ProgressStyle::with_template(
            "{prefix}: {msg:<12} [{bar:40}] {bytes:>10}/{total_bytes:<10}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let style_msg = ProgressStyle::with_template("{prefix}: {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            finished: std::sync::atomic::AtomicBool::new(false),
            bars: Mutex::new(HashMap::new()),
            style_bytes,
            style_msg,
        }
    }

    fn with_bar(&self, blob: &Digest, f: impl FnOnce(&ProgressBar)) {
        let mut bars = match self.bars.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let bar = bars.entry(blob.clone()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new(0));
            b.set_style(self.style_msg.clone());
            b.set_prefix(blob.short().to_string());
            b
        });
        f(bar);
    }
}

impl Progress for Bars {
    fn status(&self, blob: &Digest, status: &str) {
        let msg_style = self.style_msg.clone();
        self.with_bar(blob, |b| {
            b.set_style(msg_style);
            b.set_message(status.to_string());
            b.tick();
        });
    }
    fn bytes(&self, blob: &Digest, verb: &str, done: u64, total: u64) {
        let style = self.style_bytes.clone();
        self.with_bar(blob, |b| {
            if b.length() != Some(total) {
                b.set_style(style);
                b.set_length(total);
                b.set_message(verb.to_string());
            }
            b.set_position(done);
        });
    }
    fn line(&self, text: &str) {
        // Before any bar exists, and after they are finished, a line printed through
        // MultiProgress may be held back or drawn over.
        let empty = self.bars.lock().map(|b| b.is_empty()).unwrap_or(false);
        if empty || self.finished.load(std::sync::atomic::Ordering::Relaxed) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }
    fn finish(&self) {
        let bars = match self.bars.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        for b in bars.values() {
            b.finish();
        }
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Bars when stdout is a terminal, plain lines otherwise.
pub fn for_stdout() -> Box<dyn Progress> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Plain)
    }
}
