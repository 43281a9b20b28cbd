//! `berth events`: the daemon's events with docker's flags (`--since`, `--until`,
//! `--filter`, `--format`) and its default line
//! (`2024-01-01T00:00:00.000000000Z container start <id> (image=busybox, name=x)`).

use std::collections::HashMap;
use std::io::Write;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::format::{self, Format};
use super::{CliError, Client, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json' prints each event as JSON)
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

/// A Go duration (`10m`, `1h30m`, `2.5s`, `300ms`) in nanoseconds.
fn go_duration(s: &str) -> Option<i128> {
    if s.is_empty() {
        return None;
    }
    super::selfheal::go_duration_nanos(s, s)
        .ok()
        .map(|t| t as i128)
}

/// What the docker CLI sends for `--since`/`--until`: a duration is before now, a date or
/// RFC 3339 time becomes unix seconds with nanoseconds; unix seconds go as typed; anything
/// else is refused with docker's words.
fn timestamp(v: &str) -> Result<String> {
    let v = v.trim();
    let secs = |nanos: i128| {
        format!(
            "{}.{:09}",
            nanos.div_euclid(1_000_000_000),
            nanos.rem_euclid(1_000_000_000)
        )
    };
    if let Some(d) = go_duration(v) {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
        return Ok(secs(now - d));
    }
    let parsed = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        });
    if let Some(n) = parsed.ok().and_then(|t| t.timestamp_nanos_opt()) {
        return Ok(secs(n as i128));
    }
    let (s, frac) = v.split_once('.').unwrap_or((v, "0"));
    if s.parse::<i64>().is_ok() && !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(v.to_string());
    }
    Err(CliError::Usage(format!(
        "failed to parse value as time or duration: {v:?}"
    )))
}

/// The event as dockerd sent it, with the deprecated fields containers and images carry.
fn message(ev: &bollard::models::EventMessage) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or(Value::Null);
    let typ = v["Type"].as_str().unwrap_or("").to_string();
    if typ == "container" || typ == "image" {
        v["status"] = v["Action"].clone();
        v["id"] = v["Actor"]["ID"].clone();
    }
    if typ == "container" {
        let from = v["Actor"]["Attributes"]["image"].clone();
        if !from.is_null() {
            v["from"] = from;
        }
    }
    v
}

/// docker's default line: local time with nanoseconds, type, action, actor, attributes
/// sorted by key.
fn line(v: &Value) -> String {
    let nanos = v["timeNano"]
        .as_i64()
        .or_else(|| v["time"].as_i64().map(|t| t.saturating_mul(1_000_000_000)))
        .unwrap_or(0);
    let t = chrono::DateTime::from_timestamp_nanos(nanos).with_timezone(&chrono::Local);
    let mut when = t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string();
    if let Some(s) = when.strip_suffix("+00:00") {
        when = format!("{s}Z");
    }
    let mut out = format!(
        "{when} {} {} {}",
        v["Type"].as_str().unwrap_or(""),
        v["Action"].as_str().unwrap_or(""),
        v["Actor"]["ID"].as_str().unwrap_or("")
    );
    if let Some(attrs) = v["Actor"]["Attributes"]
        .as_object()
        .filter(|a| !a.is_empty())
    {
        let mut kv: Vec<(&String, &str)> = attrs
            .iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or("")))
            .collect();
        kv.sort();
        let parts: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(" ({})", parts.join(", ")));
    }
    out
}

/// The template's view of an event: the Go field names docker's templates use.
fn context(v: &Value) -> Value {
    json!({
        "Status": v["status"], "ID": v["id"], "From": v["from"],
        "Type": v["Type"], "Action": v["Action"],
        "Actor": {"ID": v["Actor"]["ID"], "Attributes": v["Actor"]["Attributes"]},
        "Scope": v["scope"], "Time": v["time"], "TimeNano": v["timeNano"],
    })
}

pub async fn events(client: &Client, a: EventsArgs) -> Result<i32> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            return Err(CliError::Usage(format!(
                "invalid filter {f:?}: it is --filter key=value"
            )));
        };
        filters
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    let spec = a.format.as_deref().filter(|f| !f.is_empty());
    let raw_json = matches!(spec, Some("json") | Some("{{json .}}"));
    let tmpl = match spec {
        Some(s) if !raw_json => Some(Format::parse(s).map_err(CliError::Usage)?),
        _ => None,
    };
    let opts = EventsOptions {
        since: a.since.as_deref().map(timestamp).transpose()?,
        until: a.until.as_deref().map(timestamp).transpose()?,
        filters: (!filters.is_empty()).then_some(filters),
    };
    let mut stream = client.docker.events(Some(opts));
    let mut out = std::io::stdout().lock();
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|e| client.err("events", e))?;
        let v = message(&ev);
        let text = if raw_json {
            serde_json::to_string(&v).unwrap_or_default()
        } else if let Some(t) = &tmpl {
            t.render(&format::from_json(&context(&v)))
                .map_err(CliError::Usage)?
        } else {
            line(&v)
        };
        let ok = writeln!(out, "{text}").and_then(|_| out.flush());
        if ok.is_err() {
            // the reader went away (`| head`): done, as docker
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_lines() {
        assert_eq!(go_duration("10m"), Some(600_000_000_000));
        assert_eq!(go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(go_duration("10"), None);
        assert_eq!(
            timestamp("2023-11-14T22:13:20Z").unwrap(),
            "1700000000.000000000"
        );
        assert_eq!(timestamp("1700000000.5").unwrap(), "1700000000.5");
        assert!(timestamp("yesterday").is_err());
        let v = json!({"Type": "container", "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "x", "image": "busybox"}},
            "time": 1700000000, "timeNano": 1700000000000000001i64});
        let l = line(&v);
        assert!(
            l.ends_with(" container start abc (image=busybox, name=x)"),
            "{l}"
        );
    }
}
