//! The engine's state in SQLite (`<data-root>/engine.db`, WAL): containers and exec sessions.
//! Everything a restarted daemon needs is here or in the shims' files, never only in memory.

use berth_image::db::Cached;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};

/// One container's row.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    /// The create request (`ContainerCreateBody`), as JSON.
    pub body: String,
    pub status: String,
    pub pid: i64,
    pub exit_code: i64,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: i64,
    pub oom_killed: bool,
    pub error: String,
}

pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    image TEXT NOT NULL,
    image_id TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    restart_count INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS execs (
    id TEXT PRIMARY KEY,
    container TEXT NOT NULL,
    body TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    pid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    created TEXT NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0,
    seeded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS container_mounts (
    container TEXT NOT NULL,
    destination TEXT NOT NULL,
    typ TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (container, destination)
);
CREATE INDEX IF NOT EXISTS container_mounts_name ON container_mounts (name);
-- networks (crate::network): a row per network; an endpoint per (container, network), whose
-- ip is its lease (NULL while the container is not running); UNIQUE: never handed out twice
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    bridge TEXT NOT NULL UNIQUE,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    ip_range TEXT NOT NULL DEFAULT '',
    internal INTEGER NOT NULL DEFAULT 0,
    mtu INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS endpoints (
    container TEXT NOT NULL,
    network TEXT NOT NULL,
    seq INTEGER NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    ip TEXT,
    ifname TEXT NOT NULL DEFAULT '',
    ports TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (container, network),
    UNIQUE (network, ip)
);
";

const COLS: &str = "id, name, created, image, image_id, body, status, pid, exit_code, started_at, \
                    finished_at, restart_count, oom_killed, error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: r.get(0)?,
        name: r.get(1)?,
        created: r.get(2)?,
        image: r.get(3)?,
        image_id: r.get(4)?,
        body: r.get(5)?,
        status: r.get(6)?,
        pid: r.get(7)?,
        exit_code: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        restart_count: r.get(11)?,
        oom_killed: r.get::<_, i64>(12)? != 0,
        error: r.get(13)?,
    })
}

/// An exec session's row.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container: String,
    /// The `ExecConfig` request, as JSON.
    pub body: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(Error::db("open engine.db"))?;
        conn.set_prepared_statement_cache_capacity(berth_image::db::STATEMENT_CACHE);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::db("set WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::db("set synchronous"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(Error::db("set busy timeout"))?;
        conn.execute_batch(SCHEMA)
            .map_err(Error::db("create schema"))?;
        conn.execute_batch(crate::restart::SCHEMA)
            .map_err(Error::db("create the restart policy schema"))?;
        conn.execute_batch(crate::health::SCHEMA)
            .map_err(Error::db("create the health check schema"))?;
        conn.execute_batch(crate::network::ipam6::SCHEMA)
            .map_err(Error::db("create the IPv6 network schema"))?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, r: &Record) -> Result<()> {
        let conn = self.lock();
        let res = conn.exec_c(
            &format!("INSERT INTO containers ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"),
            params![
                r.id, r.name, r.created, r.image, r.image_id, r.body, r.status, r.pid,
                r.exit_code, r.started_at, r.finished_at, r.restart_count, r.oom_killed as i64,
                r.error
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let id: String = conn
                    .row_c(
                        "SELECT id FROM containers WHERE name = ?1",
                        [&r.name],
                        |x| x.get(0),
                    )
                    .unwrap_or_default();
                Err(Error::NameInUse {
                    name: r.name.clone(),
                    id,
                })
            }
            Err(e) => Err(Error::db("insert container")(e)),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        self.lock()
            .row_c(
                &format!("SELECT {COLS} FROM containers WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(Error::db("read container"))
    }

    /// Finds a container by full ID, name (with or without `/`) or unique ID prefix, as
    /// Docker does (an exact ID, then an exact name, then a prefix).
    pub fn find(&self, s: &str) -> Result<Record> {
        let s = s.strip_prefix('/').unwrap_or(s);
        if s.is_empty() {
            return Err(Error::NoSuchContainer(s.to_string()));
        }
        let conn = self.lock();
        let q = |sql: &str, arg: &str| -> Result<Vec<Record>> {
            let mut st = conn
                .prepare_cached(sql)
                .map_err(Error::db("find container"))?;
            let rows = st
                .query_map([arg], row)
                .map_err(Error::db("find container"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(Error::db("find container"))?;
            Ok(rows)
        };
        let mut v = q(&format!("SELECT {COLS} FROM containers WHERE id = ?1"), s)?;
        if let Some(r) = v.pop() {
            return Ok(r);
        }
        let mut v = q(&format!("SELECT {COLS} FROM containers WHERE name = ?1"), s)?;
        if let Some(r) = v.pop() {
            return Ok(r);
        }
        if s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let pat = format!("{}%", s.to_ascii_lowercase());
            let mut v = q(
                &format!("SELECT {COLS} FROM containers WHERE id LIKE ?1"),
                &pat,
            )?;
            if v.len() == 1 {
                return Ok(v.remove(0));
            }
            if v.len() > 1 {
                return Err(Error::InvalidArgument(format!(
                    "multiple IDs found with provided prefix: {s}"
                )));
            }
        }
        Err(Error::NoSuchContainer(s.to_string()))
    }

    pub fn list(&self) -> Result<Vec<Record>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM containers ORDER BY created DESC"
            ))
            .map_err(Error::db("list containers"))?;
        let rows = st
            .query_map([], row)
            .map_err(Error::db("list containers"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("list containers"));
        rows
    }

    /// Records a start: running, with the init's pid.
    pub fn set_running(&self, id: &str, pid: i64, started_at: &str) -> Result<()> {
        self.lock()
            .exec_c(
                "UPDATE containers SET status = 'running', pid = ?2, started_at = ?3, \
                 exit_code = 0, error = '', oom_killed = 0 WHERE id = ?1",
                params![id, pid, started_at],
            )
            .map_err(Error::db("record start"))?;
        Ok(())
    }

    /// Records an exit. Only a container that was running (or paused) changes.
    pub fn set_exited(
        &self,
        id: &str,
        exit_code: i64,
        finished_at: &str,
        oom_killed: bool,
        error: &str,
    ) -> Result<bool> {
        let n = self
            .lock()
            .exec_c(
                "UPDATE containers SET status = 'exited', pid = 0, exit_code = ?2, \
                 finished_at = ?3, oom_killed = ?4, error = ?5 \
                 WHERE id = ?1 AND status IN ('running', 'paused', 'restarting')",
                params![id, exit_code, finished_at, oom_killed as i64, error],
            )
            .map_err(Error::db("record exit"))?;
        Ok(n > 0)
    }

    pub fn set_status(&self, id: &str, status: &str) -> Result<()> {
        self.lock()
            .exec_c(
                "UPDATE containers SET status = ?2 WHERE id = ?1",
                params![id, status],
            )
            .map_err(Error::db("record status"))?;
        Ok(())
    }

    /// Replaces the stored create request (`docker update` changes its HostConfig).
    pub fn set_body_json(&self, id: &str, body: &str) -> Result<()> {
        self.lock()
            .exec_c(
                "UPDATE containers SET body = ?2 WHERE id = ?1",
                params![id, body],
            )
            .map_err(Error::db("record the container's configuration"))?;
        Ok(())
    }

    pub fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let res = self.lock().exec_c(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, new_name],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::NameInUse {
                    name: new_name.to_string(),
                    id: self.find(new_name).map(|r| r.id).unwrap_or_default(),
                })
            }
            Err(e) => Err(Error::db("rename container")(e)),
        }
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        self.remove_if(id, false).map(|_| ())
    }

    /// The container's row and the rows that hang off it, in one transaction (one commit, not
    /// four, on the exit path of `run --rm`). With `only_ended`, only a row that still records
    /// a run (running, paused or restarting) goes: the first report of that run's end removes
    /// it, a second one finds nothing. True if the row went.
    pub fn remove_if(&self, id: &str, only_ended: bool) -> Result<bool> {
        let conn = self.lock();
        let tx = conn
            .unchecked_transaction()
            .map_err(Error::db("remove container"))?;
        let n = if only_ended {
            tx.exec_c(
                "DELETE FROM containers WHERE id = ?1 \
                 AND status IN ('running', 'paused', 'restarting')",
                [id],
            )
        } else {
            tx.exec_c("DELETE FROM containers WHERE id = ?1", [id])
        }
        .map_err(Error::db("remove container"))?;
        if only_ended && n == 0 {
            return Ok(false);
        }
        tx.exec_c("DELETE FROM execs WHERE container = ?1", [id])
            .map_err(Error::db("remove execs"))?;
        crate::restart::forget(&tx, id)?;
        crate::health::forget(&tx, id)?;
        tx.commit().map_err(Error::db("remove container"))?;
        Ok(n > 0)
    }

    pub fn insert_exec(&self, e: &ExecRecord) -> Result<()> {
        self.lock()
            .exec_c(
                "INSERT INTO execs (id, container, body, running, exit_code, pid) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    e.id,
                    e.container,
                    e.body,
                    e.running as i64,
                    e.exit_code,
                    e.pid
                ],
            )
            .map_err(Error::db("insert exec"))?;
        Ok(())
    }

    pub fn get_exec(&self, id: &str) -> Result<ExecRecord> {
        self.lock()
            .row_c(
                "SELECT id, container, body, running, exit_code, pid FROM execs WHERE id = ?1",
                [id],
                |r| {
                    Ok(ExecRecord {
                        id: r.get(0)?,
                        container: r.get(1)?,
                        body: r.get(2)?,
                        running: r.get::<_, i64>(3)? != 0,
                        exit_code: r.get(4)?,
                        pid: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(Error::db("read exec"))?
            .ok_or_else(|| Error::NoSuchExec(id.to_string()))
    }

    pub fn update_exec(
        &self,
        id: &str,
        running: bool,
        exit_code: Option<i64>,
        pid: i64,
    ) -> Result<()> {
        self.lock()
            .exec_c(
                "UPDATE execs SET running = ?2, exit_code = ?3, pid = ?4 WHERE id = ?1",
                params![id, running as i64, exit_code, pid],
            )
            .map_err(Error::db("update exec"))?;
        Ok(())
    }
}
