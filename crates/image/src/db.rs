//! The metadata database (SQLite in WAL mode at `<data_root>/berth.db`): images, tags with
//! their history, snapshots and container leases. Every change is one transaction. Several
//! berth processes may open it at once; a busy timeout makes them wait instead of failing.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{Error, Result};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,                -- config digest (Docker's image ID)
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,                       -- from the config, RFC 3339
    size INTEGER NOT NULL,              -- sum of the unpacked layer sizes
    added TEXT NOT NULL                 -- when this store got it
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    blob_digest TEXT NOT NULL,
    diff_id TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
-- blobs an image keeps besides its layers: manifest, config, the index it was pulled by
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE TABLE IF NOT EXISTS tags (
    reference TEXT PRIMARY KEY,          -- registry/repository:tag
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    tagged_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repo_digests (
    reference TEXT PRIMARY KEY,          -- registry/repository@sha256:...
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS tag_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    reference TEXT NOT NULL,
    image_id TEXT NOT NULL,
    action TEXT NOT NULL,                -- 'tag' | 'untag'
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- directory name under <snapshots>/
    key TEXT NOT NULL UNIQUE,             -- chain ID for committed layers
    parent TEXT,
    kind TEXT NOT NULL,                   -- 'active' | 'view' | 'committed'
    size INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
-- blobs held by something other than an image (a build's cache, a pull in progress)
CREATE TABLE IF NOT EXISTS blob_leases (
    digest TEXT NOT NULL,
    owner TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (digest, owner)
);
CREATE TABLE IF NOT EXISTS leases (
    snapshot_key TEXT NOT NULL,
    owner TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (snapshot_key, owner)
);
"#;

/// A shared connection to the database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(Error::db("open"))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(Error::db("set busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::db("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::db("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(Error::db("enable foreign keys"))?;
        conn.execute_batch(SCHEMA)
            .map_err(Error::db("create schema"))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Db> {
        let conn = Connection::open_in_memory().map_err(Error::db("open"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(Error::db("enable foreign keys"))?;
        conn.execute_batch(SCHEMA)
            .map_err(Error::db("create schema"))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, for one operation (a poisoned lock is recovered: SQLite's own
    /// transactions keep the data consistent even if a holder panicked).
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
