//! The CLI's side of restart policies and health checks: `--health-*` flags into the API's
//! HealthConfig (Go durations, as docker parses them), and `update --restart`.

use bollard::models::HealthConfig;

use super::opts::RunOpts;
use super::{CliError, Result};

/// Health check flags of `run` and `create`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HealthOpts {
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries
    /// countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
}

/// A Go duration ("1.5s", "1m30s", "250ms", "0") in nanoseconds.
pub fn parse_go_duration(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let total = go_duration_nanos(rest, s)?;
    if total > i64::MAX as f64 {
        return Err(format!("time: invalid duration {s:?}"));
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

impl HealthOpts {
    /// The create request's Healthcheck: None when no flag was given (the image's applies).
    pub fn healthcheck(&self) -> Result<Option<HealthConfig>> {
        let dur = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
            match v {
                None => Ok(None),
                Some(x) => {
                    let ns = parse_go_duration(x).map_err(|e| {
                        CliError::Usage(format!("invalid argument {x:?} for \"{flag}\" flag: {e}"))
                    })?;
                    if ns < 0 {
                        return Err(CliError::Usage(format!("{flag} cannot be negative")));
                    }
                    Ok(Some(ns))
                }
            }
        };
        let interval = dur("--health-interval", &self.health_interval)?;
        let timeout = dur("--health-timeout", &self.health_timeout)?;
        let start_period = dur("--health-start-period", &self.health_start_period)?;
        let start_interval = dur("--health-start-interval", &self.health_start_interval)?;
        if self.health_retries.is_some_and(|r| r < 0) {
            return Err(CliError::Usage(
                "--health-retries cannot be negative".into(),
            ));
        }
        let any_opt = self.health_cmd.is_some()
            || interval.is_some()
            || timeout.is_some()
            || start_period.is_some()
            || start_interval.is_some()
            || self.health_retries.is_some();
        if self.no_healthcheck {
            if any_opt {
                return Err(CliError::Usage(
                    "--no-healthcheck conflicts with --health-* options".into(),
                ));
            }
            return Ok(Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }));
        }
        if !any_opt {
            return Ok(None);
        }
        Ok(Some(HealthConfig {
            test: self
                .health_cmd
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| vec!["CMD-SHELL".into(), c.clone()]),
            interval,
            timeout,
            retries: self.health_retries,
            start_period,
            start_interval,
        }))
    }
}

/// The number-unit pairs of a Go duration without its sign (`1h30m`, `1.5s`, `250ms`),
/// summed in nanoseconds as Go's time.ParseDuration reads them; `whole` is the text the
/// user gave, for the message.
pub(super) fn go_duration_nanos(mut rest: &str, whole: &str) -> std::result::Result<f64, String> {
    let s = whole;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("time: invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// The create request's Healthcheck from `run`'s flags.
pub fn healthcheck_of(o: &RunOpts) -> Result<Option<HealthConfig>> {
    o.health.healthcheck()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("1s"), Ok(1_000_000_000));
        assert_eq!(parse_go_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn health_flags() {
        let h = HealthOpts {
            health_cmd: Some("curl -f localhost".into()),
            health_interval: Some("2s".into()),
            health_retries: Some(4),
            ..Default::default()
        };
        let c = h.healthcheck().expect("valid").expect("some");
        assert_eq!(
            c.test,
            Some(vec![
                "CMD-SHELL".to_string(),
                "curl -f localhost".to_string()
            ])
        );
        assert_eq!(c.interval, Some(2_000_000_000));
        assert_eq!(c.retries, Some(4));
        assert!(HealthOpts::default().healthcheck().expect("ok").is_none());
        let none = HealthOpts {
            no_healthcheck: true,
            ..Default::default()
        };
        assert_eq!(
            none.healthcheck().expect("ok").and_then(|c| c.test),
            Some(vec!["NONE".to_string()])
        );
        let both = HealthOpts {
            no_healthcheck: true,
            health_cmd: Some("true".into()),
            ..Default::default()
        };
        assert!(both.healthcheck().is_err());
        let bad = HealthOpts {
            health_timeout: Some("3".into()),
            ..Default::default()
        };
        assert!(bad.healthcheck().is_err());
    }
}
