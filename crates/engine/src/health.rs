//! Health checks (HEALTHCHECK, `--health-*`): the configuration a container's probe runs
//! with, the process it runs (an exec in the container), and the state machine its results
//! drive (starting → healthy ⇄ unhealthy, a failing streak, the last five results), kept in
//! SQLite so `inspect` and `ps` read it and a daemon restart does not lose it. The daemon
//! owns only the timer and the exec's I/O.

use berth_image::db::Cached;
use std::path::PathBuf;
use std::time::Duration;

use bollard_stubs::models::{ExecConfig, HealthConfig};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::Record;
use crate::error::{Error, Result};
use crate::Engine;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS health (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    failing_streak INTEGER NOT NULL DEFAULT 0,
    log TEXT NOT NULL DEFAULT '[]'
);
";

/// Docker's defaults (daemon/health.go).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept, and bytes of output kept per result, as Docker.
const MAX_LOG: usize = 5;
pub const MAX_OUTPUT: usize = 4096;
/// Docker refuses durations under a millisecond (other than 0, "the default").
const MIN_DURATION_NS: i64 = 1_000_000;

/// A container's health check with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The probe's argv, run as an exec.
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: i64,
    pub start_period: Duration,
    pub start_interval: Duration,
}

/// One probe's result, as `State.Health.Log` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: i64,
    #[serde(rename = "Output")]
    pub output: String,
}

/// Refuses what Docker refuses at create (daemon/container.go's validateHealthCheck).
pub fn validate(h: Option<&HealthConfig>) -> Result<()> {
    let Some(h) = h else { return Ok(()) };
    for (flag, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        let v = v.unwrap_or(0);
        if v != 0 && v < MIN_DURATION_NS {
            return Err(Error::InvalidArgument(format!(
                "Healthcheck.{flag} in create request must be 0 or at least 1ms (got {v} ns)"
            )));
        }
    }
    if h.retries.unwrap_or(0) < 0 {
        return Err(Error::InvalidArgument(
            "Healthcheck.Retries in create request must not be negative".into(),
        ));
    }
    if let Some(t) = &h.test {
        match t.first().map(String::as_str) {
            None | Some("NONE") => {}
            Some("CMD") | Some("CMD-SHELL") if t.len() > 1 => {}
            Some("CMD") | Some("CMD-SHELL") => {
                return Err(Error::InvalidArgument(format!(
                    "Healthcheck.Test {t:?}: {} needs a command",
                    t[0]
                )))
            }
            Some(o) => {
                return Err(Error::InvalidArgument(format!(
                    "Healthcheck.Test {t:?}: the first element must be NONE, CMD or CMD-SHELL, not {o:?}"
                )))
            }
        }
    }
    Ok(())
}

/// The check that applies: the container's fields over the image's (a zero or absent field
/// takes the image's), `["NONE"]` from either disabling it, Docker's defaults under both.
pub fn resolve(container: Option<&HealthConfig>, image: Option<&HealthConfig>) -> Option<Check> {
    let pick_vec =
        |c: Option<&HealthConfig>| c.and_then(|h| h.test.clone()).filter(|t| !t.is_empty());
    let test = pick_vec(container).or_else(|| pick_vec(image))?;
    let num = |f: fn(&HealthConfig) -> Option<i64>| {
        container
            .and_then(f)
            .filter(|v| *v > 0)
            .or_else(|| image.and_then(f).filter(|v| *v > 0))
    };
    let dur = |f: fn(&HealthConfig) -> Option<i64>, d: Duration| {
        num(f)
            .map(|ns| Duration::from_nanos(ns as u64))
            .unwrap_or(d)
    };
    let cmd = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return None,
    };
    if cmd.is_empty() {
        return None;
    }
    Some(Check {
        cmd,
        interval: dur(|h| h.interval, DEFAULT_INTERVAL),
        timeout: dur(|h| h.timeout, DEFAULT_TIMEOUT),
        retries: num(|h| h.retries).unwrap_or(DEFAULT_RETRIES),
        start_period: dur(|h| h.start_period, Duration::ZERO),
        start_interval: dur(|h| h.start_interval, DEFAULT_START_INTERVAL),
    })
}

/// The health state: status, streak and log after one more result (Docker's
/// handleProbeResult). A failure within the start period, before any success, does not count.
pub fn apply(
    status: &str,
    streak: i64,
    log: &mut Vec<Probe>,
    p: Probe,
    retries: i64,
    in_start_period: bool,
) -> (String, i64) {
    let (status, streak) = if p.exit_code == 0 {
        ("healthy".to_string(), 0)
    } else if status == "starting" && in_start_period {
        (status.to_string(), streak)
    } else if streak + 1 >= retries {
        ("unhealthy".to_string(), streak + 1)
    } else {
        (status.to_string(), streak + 1)
    };
    log.push(p);
    if log.len() > MAX_LOG {
        let extra = log.len() - MAX_LOG;
        log.drain(..extra);
    }
    (status, streak)
}

/// Keeps at most [`MAX_OUTPUT`] bytes, cut on a character boundary.
pub fn truncate_output(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]).into_owned();
    let mut end = s.len().min(MAX_OUTPUT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub(crate) fn forget(conn: &Connection, id: &str) -> Result<()> {
    conn.exec_c("DELETE FROM health WHERE id = ?1", [id])
        .map_err(Error::db("remove health state"))?;
    Ok(())
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

struct Row {
    status: String,
    streak: i64,
    log: Vec<Probe>,
}

impl Engine {
    fn health_row(&self, id: &str) -> Result<Option<Row>> {
        self.db
            .lock()
            .row_c(
                "SELECT status, failing_streak, log FROM health WHERE id = ?1",
                [id],
                |r| {
                    Ok(Row {
                        status: r.get(0)?,
                        streak: r.get(1)?,
                        log: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map_err(Error::db("read health state"))
    }

    fn put_health_row(&self, id: &str, row: &Row) -> Result<()> {
        let log = serde_json::to_string(&row.log).unwrap_or_else(|_| "[]".into());
        self.db
            .lock()
            .exec_c(
                "INSERT INTO health (id, status, failing_streak, log) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(id) DO UPDATE SET status = ?2, failing_streak = ?3, log = ?4",
                params![id, row.status, row.streak, log],
            )
            .map_err(Error::db("record health state"))?;
        Ok(())
    }

    /// The health check of container `r`, if it has one.
    pub fn health_check(&self, r: &Record) -> Option<Check> {
        let body = self.body(r);
        let image = r
            .image_id
            .parse()
            .ok()
            .and_then(|d| self.images.get(&d).ok())
            .and_then(|i| i.config.config)
            .and_then(|c| c.extra.get("Healthcheck").cloned())
            .and_then(|v| serde_json::from_value::<HealthConfig>(v).ok());
        resolve(body.healthcheck.as_ref(), image.as_ref())
    }

    /// A run begins to be checked: `starting`, streak 0, the log kept (as Docker). Returns
    /// the check and the run's start time (which tells this run from a later one), or None
    /// if the container has no check or does not run.
    pub fn health_begin(&self, id: &str) -> Result<Option<(Check, String)>> {
        let Some(r) = self.db.get(id)? else {
            return Ok(None);
        };
        if r.status != "running" {
            return Ok(None);
        }
        let Some(check) = self.health_check(&r) else {
            return Ok(None);
        };
        let log = self.health_row(id)?.map(|r| r.log).unwrap_or_default();
        self.put_health_row(
            id,
            &Row {
                status: "starting".into(),
                streak: 0,
                log,
            },
        )?;
        Ok(Some((check, r.started_at)))
    }

    /// The wait before the next probe of the run that began at `started_at`, or None if that
    /// run is over (the checker stops). Within the start period, before a first success,
    /// the start interval applies.
    pub fn health_next(
        &self,
        id: &str,
        started_at: &str,
        check: &Check,
    ) -> Result<Option<Duration>> {
        let Some(r) = self.db.get(id)? else {
            return Ok(None);
        };
        if !matches!(r.status.as_str(), "running" | "paused") || r.started_at != started_at {
            return Ok(None);
        }
        let starting = self.health_row(id)?.is_none_or(|h| h.status == "starting");
        let in_start = parse_time(started_at).is_some_and(|t| {
            chrono::Utc::now() - t
                < chrono::Duration::from_std(check.start_period).unwrap_or_default()
        });
        Ok(Some(if starting && in_start {
            check.start_interval
        } else {
            check.interval
        }))
    }

    /// The shim's socket and the process of one probe of container `id`.
    pub fn probe_plan(&self, id: &str, check: &Check) -> Result<(PathBuf, serde_json::Value)> {
        let r = self.db.find(id)?;
        if r.status != "running" {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let cfg = self.container_dir(&r.id).join("config.json");
        let data = std::fs::read(&cfg).map_err(Error::io("read", &cfg))?;
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(&data)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", cfg.display())))?;
        let body = ExecConfig {
            cmd: Some(check.cmd.clone()),
            ..Default::default()
        };
        let process =
            crate::spec::exec_process(&body, &spec, &self.container_dir(&r.id).join("rootfs"))?;
        Ok((
            self.socket(&r.id),
            serde_json::to_value(process).unwrap_or_default(),
        ))
    }

    /// Records one probe's result for the run that began at `started_at`; a change of
    /// status is a `health_status: <status>` event.
    pub fn health_record(&self, id: &str, started_at: &str, check: &Check, p: Probe) -> Result<()> {
        let lock = self.lock_of(id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = self.db.get(id)? else {
            return Ok(());
        };
        if r.started_at != started_at {
            return Ok(());
        }
        let mut row = self.health_row(id)?.unwrap_or(Row {
            status: "starting".into(),
            streak: 0,
            log: Vec::new(),
        });
        let in_start = match (parse_time(&p.start), parse_time(started_at)) {
            (Some(s), Some(t)) => {
                s - t < chrono::Duration::from_std(check.start_period).unwrap_or_default()
            }
            _ => false,
        };
        let before = row.status.clone();
        let (status, streak) = apply(
            &row.status,
            row.streak,
            &mut row.log,
            p,
            check.retries,
            in_start,
        );
        row.status = status;
        row.streak = streak;
        self.put_health_row(id, &row)?;
        if row.status != before {
            self.emit(&r, &format!("health_status: {}", row.status), &[]);
        }
        Ok(())
    }

    /// The health as Docker reports it: nothing before the first start; while the
    /// container runs, what its probes found; once it is paused or stopped, `unhealthy`
    /// (the checks stop then, as dockerd's do).
    fn health_of(&self, r: &Record) -> Option<Row> {
        self.health_check(r)?;
        let mut row = self.health_row(&r.id).ok().flatten()?;
        if r.status != "running" {
            row.status = "unhealthy".into();
        }
        Some(row)
    }

    /// `healthy`, `unhealthy`, `starting`, or None for a container without a check (or
    /// never started).
    pub fn health_status(&self, r: &Record) -> Option<String> {
        self.health_of(r).map(|h| h.status)
    }

    /// `State.Health` of `inspect` (null without a check, or before the first start).
    pub(crate) fn health_json(&self, r: &Record) -> serde_json::Value {
        match self.health_of(r) {
            Some(h) => json!({"Status": h.status, "FailingStreak": h.streak, "Log": h.log}),
            None => serde_json::Value::Null,
        }
    }

    /// `ps`'s status with the health: "Up 3 seconds (healthy)", "(health: starting)".
    pub(crate) fn status_with_health(&self, r: &Record) -> String {
        let s = crate::engine::human_status(r);
        if r.status != "running" {
            return s;
        }
        match self.health_status(r).as_deref() {
            Some("starting") => format!("{s} (health: starting)"),
            Some(h) => format!("{s} ({h})"),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i64) -> Probe {
        Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn state_machine() {
        let mut log = Vec::new();
        let (s, n) = apply("starting", 0, &mut log, probe(1), 2, true);
        assert_eq!(
            (s.as_str(), n),
            ("starting", 0),
            "a failure in the start period does not count"
        );
        let (s, n) = apply(&s, n, &mut log, probe(0), 2, false);
        assert_eq!((s.as_str(), n), ("healthy", 0));
        let (s, n) = apply(&s, n, &mut log, probe(1), 2, false);
        assert_eq!((s.as_str(), n), ("healthy", 1));
        let (s, n) = apply(&s, n, &mut log, probe(-1), 2, false);
        assert_eq!((s.as_str(), n), ("unhealthy", 2));
        let (s, n) = apply(&s, n, &mut log, probe(0), 2, false);
        assert_eq!((s.as_str(), n), ("healthy", 0));
        for _ in 0..10 {
            apply("healthy", 0, &mut log, probe(0), 2, false);
        }
        assert_eq!(log.len(), MAX_LOG);
    }

    #[test]
    fn resolution() {
        let img = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            interval: Some(2_000_000_000),
            retries: Some(5),
            ..Default::default()
        };
        let c = resolve(None, Some(&img)).expect("image check");
        assert_eq!(c.cmd, vec!["/bin/sh", "-c", "true"]);
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.retries, 5);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let own = HealthConfig {
            test: Some(vec!["CMD".into(), "x".into(), "y".into()]),
            ..Default::default()
        };
        let c = resolve(Some(&own), Some(&img)).expect("own check");
        assert_eq!(c.cmd, vec!["x", "y"]);
        assert_eq!(
            c.interval,
            Duration::from_secs(2),
            "a zero field takes the image's"
        );
        let none = HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(resolve(Some(&none), Some(&img)).is_none());
        assert!(resolve(None, None).is_none());
    }

    #[test]
    fn validation_and_output() {
        let bad = HealthConfig {
            interval: Some(5),
            ..Default::default()
        };
        assert!(validate(Some(&bad)).is_err());
        let bad = HealthConfig {
            test: Some(vec!["BOGUS".into()]),
            ..Default::default()
        };
        assert!(validate(Some(&bad)).is_err());
        let long = "é".repeat(3000);
        let t = truncate_output(long.as_bytes());
        assert!(t.len() <= MAX_OUTPUT && t.chars().all(|c| c == 'é'));
    }
}
