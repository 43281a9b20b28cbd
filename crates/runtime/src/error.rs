//! The runtime's errors: each variant names the operation that failed and the object (container
//! id, path) it failed on, so a message read in a log points at the cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container id {0:?} is invalid: use 1-1024 characters of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    InvalidId(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {id} is {status}: cannot {op}")]
    WrongState {
        id: String,
        status: String,
        op: &'static str,
    },
    #[error("failed to read the bundle's config {path}: {reason}")]
    LoadSpec { path: PathBuf, reason: String },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    // The cause is part of the message and deliberately not a `source()`: callers print the
    // whole chain, which would repeat it.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{op}: {cause}")]
    Sys { op: String, cause: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    #[error("{0}")]
    Init(String),
    #[error("hook {path}: {reason}")]
    Hook { path: PathBuf, reason: String },
    #[error("{0} is not supported: {1}")]
    Unsupported(String, String),
    #[error("container {id}: its cgroup {cgroup} holds processes the container did not create ({pids:?}); they are not killed: move them out, then delete again")]
    ForeignProcesses {
        id: String,
        cgroup: String,
        pids: Vec<i32>,
    },
    #[error("state of container {id} at {path} is unreadable: {reason}")]
    CorruptState {
        id: String,
        path: PathBuf,
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }
    pub(crate) fn sys(op: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            op: op.into(),
            cause: source.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
