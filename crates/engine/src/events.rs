//! Events (`docker events`, and the API's waits): a broadcast of what happened to which
//! object. Subscribers that fall behind lose old events, never block the engine.
//!
//! The last [`HISTORY`] events are kept for `since` (dockerd keeps as many in memory); they
//! are also appended to a file in the data root, so a daemon restart (even a kill -9) keeps
//! the recent past. The file is rewritten from memory when it has grown to twice that.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

/// How many past events `since` can replay.
pub const HISTORY: usize = 1000;

/// The types an event can have (Docker's names).
pub const TYPES: &[&str] = &[
    "container",
    "image",
    "volume",
    "network",
    "daemon",
    "plugin",
    "service",
    "node",
    "secret",
    "config",
];

#[derive(Debug, Clone)]
pub struct Event {
    /// `container`, `image`, ...
    pub typ: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: HashMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
}

fn now_nano() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn static_type(s: &str) -> Option<&'static str> {
    TYPES.iter().copied().find(|t| *t == s)
}

impl Event {
    pub fn new(
        typ: &'static str,
        action: &str,
        id: &str,
        attributes: HashMap<String, String>,
    ) -> Event {
        Event {
            typ,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time_nano: now_nano(),
        }
    }

    pub fn container(id: &str, action: &str, attributes: HashMap<String, String>) -> Event {
        Event::new("container", action, id, attributes)
    }

    /// An image event as dockerd logs it: the actor is the image ID (or the reference for
    /// pull and push), `name` the reference the user gave.
    pub fn image(action: &str, id: &str, name: &str) -> Event {
        let attrs = HashMap::from([("name".to_string(), name.to_string())]);
        Event::new("image", action, id, attrs)
    }

    /// A network event: `create`/`destroy` carry the network's name and driver, `connect`/
    /// `disconnect` also the container's ID. For the network code to call.
    pub fn network(
        action: &str,
        network_id: &str,
        name: &str,
        driver: &str,
        container: Option<&str>,
    ) -> Event {
        let mut attrs = HashMap::from([
            ("name".to_string(), name.to_string()),
            ("type".to_string(), driver.to_string()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".to_string(), c.to_string());
        }
        Event::new("network", action, network_id, attrs)
    }

    /// Docker's event message (`events.Message`), with the deprecated `status`, `id` and
    /// `from` that containers and images still carry.
    pub fn message(&self) -> serde_json::Value {
        let mut v = json!({
            "Type": self.typ,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000),
            "timeNano": self.time_nano,
        });
        if self.typ == "container" || self.typ == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
        }
        if self.typ == "container" {
            if let Some(img) = self.attributes.get("image") {
                v["from"] = json!(img);
            }
        }
        v
    }
}

/// One event as a line of the history file.
#[derive(Serialize, Deserialize)]
struct Stored {
    t: String,
    a: String,
    id: String,
    attrs: HashMap<String, String>,
    n: i64,
}

impl crate::Engine {
    /// An image event with the image's labels among its attributes, as dockerd sends them
    /// (so that `events --filter label=...` selects image events too). The labels are looked
    /// up by the event's actor; an image already gone (a `delete`) has none.
    pub fn image_event(&self, action: &str, id: &str, name: &str) -> Event {
        let mut ev = Event::image(action, id, name);
        if let Ok(img) = self.images.resolve(id) {
            let labels = img.config.config.as_ref().and_then(|c| c.labels.as_ref());
            for (k, v) in labels.into_iter().flatten() {
                ev.attributes.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        ev
    }
}

impl Stored {
    fn of(e: &Event) -> Stored {
        Stored {
            t: e.typ.to_string(),
            a: e.action.clone(),
            id: e.id.clone(),
            attrs: e.attributes.clone(),
            n: e.time_nano,
        }
    }

    fn event(self) -> Option<Event> {
        Some(Event {
            typ: static_type(&self.t)?,
            action: self.a,
            id: self.id,
            attributes: self.attrs,
            time_nano: self.n,
        })
    }
}

struct Log {
    path: PathBuf,
    file: File,
    lines: usize,
}

struct Inner {
    history: VecDeque<Event>,
    log: Option<Log>,
}

pub struct Events {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The events a history file holds, oldest first, at most [`HISTORY`]. A line cut short by
/// a kill mid-write, or one this version cannot read, is skipped.
fn read_history(path: &Path) -> (VecDeque<Event>, usize) {
    let mut out = VecDeque::new();
    let mut lines = 0;
    let Ok(f) = File::open(path) else {
        return (out, 0);
    };
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        lines += 1;
        if let Some(e) = serde_json::from_str::<Stored>(&line)
            .ok()
            .and_then(Stored::event)
        {
            out.push_back(e);
            if out.len() > HISTORY {
                out.pop_front();
            }
        }
    }
    (out, lines)
}

impl Events {
    /// Events kept in memory only.
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events {
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                log: None,
            }),
            tx,
        }
    }

    /// Events whose history is also kept in `path`; the events it holds are the history.
    /// A file that cannot be written leaves the history in memory only (events are worth
    /// less than a daemon that starts).
    pub fn open(path: &Path) -> Events {
        let ev = Events::new();
        let (history, lines) = read_history(path);
        let log = match open_append(path).and_then(|mut f| {
            // a line a kill cut short must not swallow the next one
            let ends_clean = std::fs::read(path)
                .map(|d| d.last().is_none_or(|b| *b == b'\n'))
                .unwrap_or(true);
            if !ends_clean {
                f.write_all(b"\n")?;
            }
            Ok(f)
        }) {
            Ok(file) => Some(Log {
                path: path.to_path_buf(),
                file,
                lines,
            }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "open the event history; kept in memory only");
                None
            }
        };
        {
            let mut g = ev.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.history = history;
            g.log = log;
        }
        ev
    }

    pub fn send(&self, e: Event) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.history.push_back(e.clone());
        while g.history.len() > HISTORY {
            g.history.pop_front();
        }
        let inner = &mut *g;
        if let Some(log) = inner.log.as_mut() {
            if let Err(err) = append(log, &e, &inner.history) {
                tracing::warn!(path = %log.path.display(), error = %err, "write the event history");
            }
        }
        // Sent under the lock, so that a subscriber taking the history under it sees each
        // event exactly once: either in the history or on its receiver.
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The kept events at or after `since` (nanoseconds), and a receiver of every later one.
    pub fn subscribe_since(&self, since: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let past = match since {
            Some(s) => g
                .history
                .iter()
                .filter(|e| e.time_nano >= s)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (past, self.tx.subscribe())
    }
}

fn append(log: &mut Log, e: &Event, history: &VecDeque<Event>) -> std::io::Result<()> {
    if log.lines >= 2 * HISTORY {
        // Rewritten whole and renamed over: a kill meanwhile leaves the old file or the new.
        let tmp = log.path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        let mut buf = Vec::new();
        for h in history {
            serde_json::to_writer(&mut buf, &Stored::of(h)).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        std::fs::rename(&tmp, &log.path)?;
        log.file = open_append(&log.path)?;
        log.lines = history.len();
        return Ok(());
    }
    let mut line = serde_json::to_vec(&Stored::of(e)).map_err(std::io::Error::other)?;
    line.push(b'\n');
    log.file.write_all(&line)?;
    log.lines += 1;
    Ok(())
}

/// The filter keys dockerd accepts on `/events`.
pub const FILTER_KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// Checks an `/events` filter set: known keys, known types.
pub fn check_filters(f: &HashMap<String, Vec<String>>) -> Result<(), String> {
    for (k, vals) in f {
        if !FILTER_KEYS.contains(&k.as_str()) {
            return Err(format!("invalid filter '{k}'"));
        }
        if k == "type" {
            if let Some(bad) = vals.iter().find(|v| static_type(v).is_none()) {
                return Err(format!("invalid filter 'type={bad}'"));
            }
        }
    }
    Ok(())
}

/// Whether `ev` passes Docker's event filters: each key present must match (values of one
/// key are alternatives; `label` values must all match). Names and IDs match by prefix as
/// dockerd's, `event` exactly except the actions that carry a suffix (`exec_start: sh`).
pub fn matches(f: &HashMap<String, Vec<String>>, ev: &Event) -> bool {
    let vals = |k: &str| f.get(k).filter(|v| !v.is_empty());
    let exact = |k: &str, s: &str| vals(k).is_none_or(|v| v.iter().any(|x| x == s));
    let fuzzy = |k: &str, s: &str| {
        vals(k).is_none_or(|v| {
            v.iter()
                .any(|x| x == s || (!s.is_empty() && s.starts_with(x)))
        })
    };
    let name = ev.attributes.get("name").map(String::as_str).unwrap_or("");
    // A filter on one type's names holds back every event whose actor it does not name,
    // whatever its type (as dockerd's).
    let named = |k: &str| fuzzy(k, &ev.id) || fuzzy(k, name);
    let event_ok = match vals("event") {
        None => true,
        Some(v) => v.iter().any(|x| {
            x == &ev.action
                || (matches!(x.as_str(), "health_status" | "exec_create" | "exec_start")
                    && ev.action.starts_with(&format!("{x}:")))
        }),
    };
    let image_ok = vals("image").is_none() || {
        let image_name = if ev.typ == "image" {
            name
        } else {
            ev.attributes.get("image").map(String::as_str).unwrap_or("")
        };
        [ev.id.as_str(), image_name]
            .iter()
            .any(|s| exact("image", s) || exact("image", strip_tag(s)))
    };
    let labels_ok = vals("label").is_none_or(|v| {
        v.iter().all(|l| match l.split_once('=') {
            Some((k, want)) => ev.attributes.get(k).is_some_and(|have| have == want),
            None => ev.attributes.contains_key(l),
        })
    });
    event_ok
        && exact("type", ev.typ)
        && exact("scope", "local")
        && named("container")
        && named("volume")
        && named("network")
        && (ev.typ != "daemon" || named("daemon"))
        && vals("daemon").is_none_or(|_| ev.typ == "daemon")
        && image_ok
        && labels_ok
        && ["plugin", "service", "node", "secret", "config"]
            .iter()
            .all(|k| named(k))
}

/// `busybox:latest` -> `busybox`; a registry's port is not a tag; digests stay.
fn strip_tag(s: &str) -> &str {
    if s.contains('@') {
        return s;
    }
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => &s[..i],
        _ => s,
    }
}

/// A `since`/`until` value as the API takes it: unix seconds with an optional fraction
/// (`1700000000.123456789`, as the docker CLI sends), or an RFC 3339 time. In nanoseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("invalid time {s:?}: want unix seconds (with a fraction) or RFC 3339");
    if let Some(first) = s.chars().next() {
        if first.is_ascii_digit() || first == '-' {
            let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
            if let Ok(secs) = secs.parse::<i64>() {
                if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                let nanos: i64 = if frac.is_empty() {
                    0
                } else {
                    format!("{frac:0<9}").parse().map_err(|_| bad())?
                };
                return secs
                    .checked_mul(1_000_000_000)
                    .and_then(|n| n.checked_add(if secs < 0 { -nanos } else { nanos }))
                    .ok_or_else(bad);
            }
        }
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .map_err(|_| bad())?;
    t.timestamp_nanos_opt().ok_or_else(bad)
}

/// The whole seconds a container ran, as `die` reports them (`execDuration`); 0 when either
/// time is unknown.
pub fn exec_duration(started: &str, finished: &str) -> String {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (parse(started), parse(finished)) {
        (Some(a), Some(b)) => (b - a).num_seconds().max(0).to_string(),
        _ => "0".to_string(),
    }
}

/// dockerd's action of a health check's result: `health_status: healthy` (for the health
/// checker to pass to `Engine::emit`).
pub fn health_action(status: &str) -> String {
    format!("health_status: {status}")
}

/// dockerd's action of an exec event: `exec_start: sh -c date` (the command after a colon).
pub fn exec_action(action: &str, body: &bollard_stubs::models::ExecConfig) -> String {
    let cmd = body.cmd.as_deref().unwrap_or_default().join(" ");
    format!("{action}: {cmd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(typ: &'static str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event::new(
            typ,
            action,
            id,
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn f(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("1700000000.000000001").unwrap(),
            1_700_000_000_000_000_001
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00").unwrap(),
            1_700_000_000_250_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1700000000.1234567890").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn filters() {
        let start = ev(
            "container",
            "start",
            "abcdef0123",
            &[
                ("name", "web"),
                ("image", "busybox:latest"),
                ("tier", "front"),
            ],
        );
        let exec = ev("container", "exec_start: sh -c true", "abcdef0123", &[]);
        let vol = ev("volume", "create", "data", &[("driver", "local")]);
        let img = ev("image", "tag", "sha256:1234", &[("name", "busybox:latest")]);
        assert!(matches(&f(&[]), &start));
        assert!(matches(&f(&[("type", "container")]), &start));
        assert!(!matches(&f(&[("type", "container")]), &vol));
        assert!(matches(&f(&[("type", "volume"), ("type", "image")]), &img));
        assert!(matches(&f(&[("container", "web")]), &start));
        assert!(matches(&f(&[("container", "abc")]), &start));
        assert!(!matches(&f(&[("container", "web")]), &vol));
        assert!(matches(&f(&[("image", "busybox")]), &start));
        assert!(matches(&f(&[("image", "busybox:latest")]), &img));
        assert!(!matches(&f(&[("image", "alpine")]), &start));
        assert!(matches(&f(&[("event", "start")]), &start));
        assert!(!matches(&f(&[("event", "star")]), &start));
        assert!(matches(&f(&[("event", "exec_start")]), &exec));
        assert!(matches(&f(&[("label", "tier")]), &start));
        assert!(matches(&f(&[("label", "tier=front")]), &start));
        assert!(!matches(&f(&[("label", "tier=back")]), &start));
        assert!(!matches(&f(&[("label", "tier"), ("label", "x")]), &start));
        assert!(matches(&f(&[("volume", "data")]), &vol));
        assert!(!matches(&f(&[("volume", "other")]), &vol));
        assert!(check_filters(&f(&[("type", "container")])).is_ok());
        assert!(check_filters(&f(&[("type", "box")])).is_err());
        assert!(check_filters(&f(&[("colour", "red")])).is_err());
    }

    #[test]
    fn history_survives_reopen_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        {
            let e = Events::open(&path);
            for i in 0..(2 * HISTORY + 10) {
                e.send(ev("volume", "create", &format!("v{i}"), &[]));
            }
        }
        // a line cut short by a kill is skipped
        let mut f = open_append(&path).unwrap();
        f.write_all(b"{\"t\":\"volu").unwrap();
        drop(f);
        let e = Events::open(&path);
        e.send(ev("volume", "create", "after", &[]));
        drop(e);
        let e = Events::open(&path);
        let (past, _rx) = e.subscribe_since(Some(0));
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past.last().unwrap().id, "after");
        let m = past[0].message();
        assert_eq!(m["Type"], "volume");
        assert_eq!(m["scope"], "local");
        assert!(m.get("status").is_none());
    }
}
