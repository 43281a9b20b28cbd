//! Restart policies (`--restart`): whether a container whose process ended is started again,
//! after what delay, and what of it survives a daemon restart. Every decision and count is
//! made here and kept in SQLite (`restart_state`, and the containers table's status and
//! restart_count); the daemon only owns the timers that call [`Engine::restart_due`].
//!
//! Docker's semantics: the delay starts at 100 ms and doubles up to a minute, and goes back
//! to 100 ms once a run lasted 10 s; a user's `stop` or `kill` suspends the policy until the
//! next `start`; at daemon start `always` containers are started again, `unless-stopped` ones
//! only if the user had not stopped them.

use berth_image::db::Cached;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use bollard_stubs::models::{ContainerCreateBody, RestartPolicy, RestartPolicyNameEnum};
use rusqlite::{params, Connection, OptionalExtension};

use crate::db::Record;
use crate::engine::now;
use crate::error::{Error, Result};
use crate::Engine;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS restart_state (
    id TEXT PRIMARY KEY,
    manually_stopped INTEGER NOT NULL DEFAULT 0,
    delay_ms INTEGER NOT NULL DEFAULT 0,
    due_at_ms INTEGER NOT NULL DEFAULT 0
);
";

const FIRST_DELAY_MS: i64 = 100;
const MAX_DELAY_MS: i64 = 60_000;
/// A run at least this long resets the delay, so a container that crashes once a day is not
/// held back by crashes of last week.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// A container's policy, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    Always,
    UnlessStopped,
    /// With the maximum number of restarts (0: no maximum).
    OnFailure(i64),
}

impl Policy {
    pub fn of(p: Option<&RestartPolicy>) -> Policy {
        let max = p.and_then(|p| p.maximum_retry_count).unwrap_or(0);
        match p.and_then(|p| p.name) {
            Some(RestartPolicyNameEnum::ALWAYS) => Policy::Always,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED) => Policy::UnlessStopped,
            Some(RestartPolicyNameEnum::ON_FAILURE) => Policy::OnFailure(max),
            _ => Policy::No,
        }
    }

    pub fn of_body(b: &ContainerCreateBody) -> Policy {
        Policy::of(
            b.host_config
                .as_ref()
                .and_then(|h| h.restart_policy.as_ref()),
        )
    }

    /// Whether a run that ended with `exit_code` is followed by another, the `restarts`
    /// already made and the user's stop considered.
    pub fn restarts(self, exit_code: i64, restarts: i64, manually_stopped: bool) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::Always | Policy::UnlessStopped => true,
            Policy::OnFailure(max) => exit_code != 0 && (max == 0 || restarts < max),
        }
    }
}

/// The delay before the next restart: doubled from the last one, back to the first after a
/// run of [`RESET_AFTER`].
pub fn next_delay_ms(last_ms: i64, ran: Duration) -> i64 {
    if last_ms <= 0 || ran >= RESET_AFTER {
        FIRST_DELAY_MS
    } else {
        (last_ms * 2).min(MAX_DELAY_MS)
    }
}

/// Docker's checks of a policy (daemon/container.go's verifyContainerSettings).
pub fn validate(p: Option<&RestartPolicy>, auto_remove: bool) -> Result<()> {
    let max = p.and_then(|p| p.maximum_retry_count).unwrap_or(0);
    let policy = Policy::of(p);
    match policy {
        Policy::OnFailure(_) if max < 0 => {
            return Err(Error::InvalidArgument(
                "invalid restart policy: maximum retry count cannot be negative".into(),
            ))
        }
        Policy::OnFailure(_) => {}
        _ if max != 0 => {
            return Err(Error::InvalidArgument(format!(
                "invalid restart policy: maximum retry count can only be used with 'on-failure' \
                 (policy '{}')",
                p.and_then(|p| p.name)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )))
        }
        _ => {}
    }
    if auto_remove && policy != Policy::No {
        return Err(Error::InvalidArgument(
            "conflicting options: cannot specify both --restart and --rm (can't create \
             'AutoRemove' container with restart policy)"
                .into(),
        ));
    }
    Ok(())
}

pub(crate) fn validate_create(body: &ContainerCreateBody) -> Result<()> {
    let hc = body.host_config.as_ref();
    validate(
        hc.and_then(|h| h.restart_policy.as_ref()),
        hc.and_then(|h| h.auto_remove) == Some(true),
    )
}

/// Removes a container's row (with the container's).
pub(crate) fn forget(conn: &Connection, id: &str) -> Result<()> {
    conn.exec_c("DELETE FROM restart_state WHERE id = ?1", [id])
        .map_err(Error::db("remove restart state"))?;
    Ok(())
}

#[derive(Debug, Default, Clone, Copy)]
struct Row {
    manually_stopped: bool,
    delay_ms: i64,
    due_at_ms: i64,
}

/// The pid of the shim whose state directory is `state_dir`, 0 if unknown.
pub(crate) fn shim_pid(state_dir: &std::path::Path) -> i32 {
    std::fs::read_to_string(state_dir.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The shims of runs that ended, by container, until the next start or the removal: a pidfd, opened when
/// the exit is recorded (so it is that shim for good, whatever pid is reused later). Only
/// in memory: after a daemon restart those shims are long gone.
static ENDING_SHIMS: std::sync::Mutex<Option<HashMap<String, OwnedFd>>> =
    std::sync::Mutex::new(None);

pub(crate) fn hold_shim(id: &str, pid: i32) {
    if pid <= 0 {
        return;
    }
    // An error: the shim is gone already, nothing to wait for.
    if let Ok(fd) = berth_sys::pidfd_open(pid) {
        let mut m = ENDING_SHIMS.lock().unwrap_or_else(|p| p.into_inner());
        m.get_or_insert_with(HashMap::new)
            .insert(id.to_string(), fd);
    }
}

pub(crate) fn take_shim(id: &str) -> Option<OwnedFd> {
    let mut m = ENDING_SHIMS.lock().unwrap_or_else(|p| p.into_inner());
    m.as_mut().and_then(|m| m.remove(id))
}

/// Waits (up to `limit`) for the shim of the last run of container `id` to exit. The shim
/// deletes the container's runtime state and its socket as it goes: a new run started
/// before that would lose both.
pub(crate) fn wait_shim_gone(id: &str, fd: Option<OwnedFd>, limit: Duration) {
    let Some(fd) = fd else { return };
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    if let Ok(0) = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
        tracing::warn!(
            container = id,
            "the shim of the last run has not exited; starting anyway"
        );
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ran_for(started_at: &str, finished_at: &str) -> Duration {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (t(started_at), t(finished_at)) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    }
}

impl Engine {
    fn restart_row(&self, id: &str) -> Result<Row> {
        self.db
            .lock()
            .row_c(
                "SELECT manually_stopped, delay_ms, due_at_ms FROM restart_state WHERE id = ?1",
                [id],
                |r| {
                    Ok(Row {
                        manually_stopped: r.get::<_, i64>(0)? != 0,
                        delay_ms: r.get(1)?,
                        due_at_ms: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(Error::db("read restart state"))
            .map(Option::unwrap_or_default)
    }

    fn put_restart_row(&self, id: &str, row: Row) -> Result<()> {
        self.db
            .lock()
            .exec_c(
                "INSERT INTO restart_state (id, manually_stopped, delay_ms, due_at_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET \
                 manually_stopped = ?2, delay_ms = ?3, due_at_ms = ?4",
                params![id, row.manually_stopped as i64, row.delay_ms, row.due_at_ms],
            )
            .map_err(Error::db("record restart state"))?;
        Ok(())
    }

    /// The container's restart policy now (as created, or as changed by `update`).
    pub fn restart_policy(&self, r: &Record) -> Policy {
        Policy::of_body(&self.body(r))
    }

    /// A user's `start`: the policy applies again, from a count of zero (as Docker's
    /// ResetRestartManager).
    ///
    /// One transaction that, for a container started for the first time, changes nothing and
    /// so writes nothing (no row is the default state; the count is 0): it was two commits,
    /// with a row written, on every start.
    pub(crate) fn manual_start(&self, id: &str) -> Result<()> {
        let conn = self.db.lock();
        let tx = conn
            .unchecked_transaction()
            .map_err(Error::db("reset restart state"))?;
        forget(&tx, id)?;
        tx.exec_c(
            "UPDATE containers SET restart_count = 0 \
             WHERE id = ?1 AND restart_count != 0 AND status NOT IN ('running', 'paused')",
            [id],
        )
        .map_err(Error::db("reset restart count"))?;
        tx.commit().map_err(Error::db("reset restart state"))
    }

    /// A user's `stop` or `kill`: the policy is suspended until the next start. A container
    /// waiting for its restart is simply stopped there: true, and nothing else is to do.
    pub(crate) fn manual_stop(&self, id: &str) -> Result<bool> {
        let mut row = self.restart_row(id)?;
        row.manually_stopped = true;
        row.due_at_ms = 0;
        self.put_restart_row(id, row)?;
        let n = self
            .db
            .lock()
            .exec_c(
                "UPDATE containers SET status = 'exited' WHERE id = ?1 AND status = 'restarting'",
                [id],
            )
            .map_err(Error::db("cancel a pending restart"))?;
        Ok(n > 0)
    }

    /// Whether the user stopped the container (and has not started it since).
    pub fn manually_stopped(&self, id: &str) -> Result<bool> {
        Ok(self.restart_row(id)?.manually_stopped)
    }

    /// After a run ended (the container lock held, the exit recorded): if the policy says
    /// so, the container becomes `restarting` with its next delay, all of it persisted so a
    /// daemon killed now starts it when it comes back.
    pub(crate) fn decide_restart(
        &self,
        before: &Record,
        exit_code: i64,
        finished: &str,
        shim_pid: i32,
    ) -> Result<()> {
        // Only the end of a real run counts: not a second report of the same exit.
        if !matches!(before.status.as_str(), "running" | "paused") {
            return Ok(());
        }
        let row = self.restart_row(&before.id)?;
        let policy = self.restart_policy(before);
        if !policy.restarts(exit_code, before.restart_count, row.manually_stopped) {
            return Ok(());
        }
        let delay = next_delay_ms(row.delay_ms, ran_for(&before.started_at, finished));
        self.put_restart_row(
            &before.id,
            Row {
                manually_stopped: false,
                delay_ms: delay,
                due_at_ms: now_ms() + delay,
            },
        )?;
        self.db
            .lock()
            .exec_c(
                "UPDATE containers SET status = 'restarting', restart_count = restart_count + 1 \
                 WHERE id = ?1 AND status = 'exited'",
                [&before.id],
            )
            .map_err(Error::db("record a pending restart"))?;
        hold_shim(&before.id, shim_pid);
        tracing::info!(container = %before.id, delay_ms = delay, "restarting by policy");
        Ok(())
    }

    /// How long until the pending restart of `id` is due; None if none is pending.
    pub fn pending_restart(&self, id: &str) -> Result<Option<Duration>> {
        let Some(r) = self.db.get(id)? else {
            return Ok(None);
        };
        if r.status != "restarting" {
            return Ok(None);
        }
        let row = self.restart_row(id)?;
        Ok(Some(Duration::from_millis(
            (row.due_at_ms - now_ms()).max(0) as u64,
        )))
    }

    /// At daemon start (after [`Engine::reconcile`]): the restarts to schedule, with their
    /// remaining delays. Those pending when the daemon went away, and, as Docker does, every
    /// stopped `always` container and each `unless-stopped` one the user had not stopped.
    pub fn restarts_on_boot(&self) -> Result<Vec<(String, Duration)>> {
        let mut out = Vec::new();
        for r in self.db.list()? {
            if r.status == "exited" && !r.started_at.is_empty() {
                let row = self.restart_row(&r.id)?;
                let boot = match self.restart_policy(&r) {
                    Policy::Always => true,
                    Policy::UnlessStopped => !row.manually_stopped,
                    _ => false,
                };
                if boot {
                    self.put_restart_row(
                        &r.id,
                        Row {
                            manually_stopped: false,
                            delay_ms: 0,
                            due_at_ms: now_ms(),
                        },
                    )?;
                    self.db.set_status(&r.id, "restarting")?;
                }
            }
            if let Some(d) = self.pending_restart(&r.id)? {
                out.push((r.id, d));
            }
        }
        Ok(out)
    }

    /// The timer of a pending restart fired: starts the container if it is still waiting
    /// (a user's stop, start or removal meanwhile wins). True if it was started.
    pub fn restart_due(&self, id: &str) -> Result<bool> {
        // Taken whatever happens next, so a container removed meanwhile leaves no descriptor.
        let shim = take_shim(id);
        let lock = self.lock_of(id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = self.db.get(id)? else {
            return Ok(false);
        };
        let row = self.restart_row(id)?;
        if r.status != "restarting" || row.manually_stopped {
            return Ok(false);
        }
        wait_shim_gone(id, shim, Duration::from_secs(10));
        match self.start_locked(id, 0, &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(e) => {
                // As Docker: a restart that fails leaves the container stopped, with the error.
                let msg = format!("restart by policy: {e}");
                self.db.set_exited(id, r.exit_code, &now(), false, &msg)?;
                Err(e)
            }
        }
    }

    /// `POST /containers/{id}/update` for what berth applies of it: the restart policy.
    pub fn update_restart_policy(&self, s: &str, p: Option<RestartPolicy>) -> Result<()> {
        let r = self.db.find(s)?;
        let Some(p) = p else {
            return Ok(());
        };
        let lock = self.lock_of(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.db.find(&r.id)?;
        let mut body = self.body(&r);
        let hc = body.host_config.get_or_insert_with(Default::default);
        validate(Some(&p), hc.auto_remove == Some(true))?;
        hc.restart_policy = Some(p);
        let json = serde_json::to_string(&body)
            .map_err(|e| Error::InvalidArgument(format!("update {}: {e}", r.id)))?;
        self.db
            .lock()
            .exec_c(
                "UPDATE containers SET body = ?2 WHERE id = ?1",
                params![r.id, json],
            )
            .map_err(Error::db("update restart policy"))?;
        self.emit(&r, "update", &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: RestartPolicyNameEnum, max: i64) -> RestartPolicy {
        RestartPolicy {
            name: Some(name),
            maximum_retry_count: Some(max),
        }
    }

    #[test]
    fn decisions() {
        assert!(!Policy::No.restarts(1, 0, false));
        assert!(Policy::Always.restarts(0, 100, false));
        assert!(!Policy::Always.restarts(0, 0, true));
        assert!(Policy::UnlessStopped.restarts(0, 0, false));
        assert!(!Policy::OnFailure(2).restarts(0, 0, false));
        assert!(Policy::OnFailure(2).restarts(1, 1, false));
        assert!(!Policy::OnFailure(2).restarts(1, 2, false));
        assert!(Policy::OnFailure(0).restarts(3, 1000, false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let short = Duration::from_millis(50);
        let mut d = next_delay_ms(0, short);
        assert_eq!(d, 100);
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_delay_ms(d, short);
            seen.push(d);
        }
        assert_eq!(&seen[..4], &[100, 200, 400, 800]);
        assert_eq!(*seen.last().unwrap_or(&0), 60_000);
        assert_eq!(next_delay_ms(60_000, Duration::from_secs(10)), 100);
    }

    #[test]
    fn validation() {
        use RestartPolicyNameEnum::*;
        assert!(validate(Some(&p(ON_FAILURE, 3)), false).is_ok());
        assert!(validate(Some(&p(ON_FAILURE, -1)), false).is_err());
        assert!(validate(Some(&p(ALWAYS, 3)), false).is_err());
        assert!(validate(Some(&p(ALWAYS, 0)), true).is_err());
        assert!(validate(Some(&p(NO, 0)), true).is_ok());
        assert!(validate(None, true).is_ok());
    }
}
