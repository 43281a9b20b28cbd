//! The metadata database (SQLite in WAL mode at `<data_root>/berth.db`): images, tags with
//! their history, snapshots and container leases. Every change is one transaction. Several
//! berth processes may open it at once; a busy timeout makes them wait instead of failing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
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

/// Most connections a store keeps open at once; a caller beyond that waits for one.
const MAX_CONNECTIONS: usize = 8;

/// A small pool of connections to the database, cheap to clone and share between threads.
/// With WAL, readers on their own connections never wait for a writer, and writers (short
/// IMMEDIATE transactions) wait for each other in SQLite rather than behind one mutex.
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
}

struct Pool {
    // None: in memory, which is one connection shared by everyone
    path: Option<PathBuf>,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// A connection borrowed from the pool; it goes back when dropped.
pub struct PooledConnection<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl std::ops::Deref for PooledConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Some from creation until drop
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection used after drop"))
    }
}

impl std::ops::DerefMut for PooledConnection<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection used after drop"))
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut st = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
            st.idle.push(c);
            drop(st);
            self.pool.freed.notify_one();
        }
    }
}

/// Statements prepared once per connection and then reused from rusqlite's statement cache.
/// The daemon runs the same few dozen statements for every container it creates, starts and
/// removes; parsing and planning them anew each time was a visible share of its CPU per
/// `run` (sqlite3RunParser and friends in `perf record`), all of it under a lock.
pub trait Cached {
    /// [`Connection::execute`] through the statement cache.
    fn exec_c<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// [`Connection::query_row`] through the statement cache.
    fn row_c<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec_c<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row_c<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Enough for every statement the store and the engine run (the default is 16).
pub const STATEMENT_CACHE: usize = 128;

fn configure(conn: &Connection, wal: bool) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // a last resort: transactions are short, so a writer normally waits milliseconds
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(Error::db("set busy timeout"))?;
    if wal {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::db("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::db("set synchronous"))?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(Error::db("enable foreign keys"))?;
    Ok(())
}

impl Db {
    /// Opens (creating) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(Error::db("open"))?;
        configure(&conn, true)?;
        conn.execute_batch(SCHEMA)
            .map_err(Error::db("create schema"))?;
        Ok(Db::with_first(Some(path.to_path_buf()), conn))
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Db> {
        let conn = Connection::open_in_memory().map_err(Error::db("open"))?;
        configure(&conn, false)?;
        conn.execute_batch(SCHEMA)
            .map_err(Error::db("create schema"))?;
        Ok(Db::with_first(None, conn))
    }

    fn with_first(path: Option<PathBuf>, conn: Connection) -> Db {
        Db {
            pool: Arc::new(Pool {
                path,
                state: Mutex::new(PoolState {
                    idle: vec![conn],
                    open: 1,
                }),
                freed: Condvar::new(),
            }),
        }
    }

    /// A connection for one operation: an idle one, a new one while fewer than
    /// `MAX_CONNECTIONS` are open, or else the next one returned. Never hold two at once in
    /// one thread. (A poisoned lock is recovered: it guards only the list of connections.)
    pub fn lock(&self) -> PooledConnection<'_> {
        let pool = &*self.pool;
        let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = st.idle.pop() {
                return PooledConnection {
                    pool,
                    conn: Some(c),
                };
            }
            if let Some(path) = &pool.path {
                if st.open < MAX_CONNECTIONS {
                    st.open += 1;
                    drop(st);
                    match Connection::open(path)
                        .map_err(Error::db("open"))
                        .and_then(|c| configure(&c, true).map(|()| c))
                    {
                        Ok(c) => {
                            return PooledConnection {
                                pool,
                                conn: Some(c),
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not open another database connection");
                            st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
                            // wait for one in use instead (the first connection is never
                            // closed, so one is always open)
                            st.open -= 1;
                        }
                    }
                }
            }
            st = pool.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
