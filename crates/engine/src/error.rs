//! The engine's errors. Each carries the object it is about; `kind()` is what the API maps
//! to an HTTP status, in one place.

/// What kind of failure, as Docker's API distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Conflict,
    InvalidArgument,
    /// The request asked for the state the object is already in (HTTP 304).
    NotModified,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Could not find the file {path} in container {id}")]
    NoSuchPath { id: String, path: String },
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Conflict(String),
    #[error("container {0} is already {1}")]
    NotModified(String, &'static str),
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("image store: {0}")]
    Image(#[from] berth_image::Error),
    #[error("runtime: {0}")]
    Runtime(#[from] berth_runtime::Error),
    #[error("database: {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("network: {0}")]
    Net(#[from] berth_net::Error),
    #[error("shim of container {id}: {reason}")]
    Shim { id: String, reason: String },
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NoSuchContainer(_)
            | Error::NoSuchExec(_)
            | Error::NoSuchImage(_)
            | Error::NoSuchNetwork(_) => Kind::NotFound,
            Error::NoSuchVolume(_) | Error::NotFound(_) | Error::NoSuchPath { .. } => {
                Kind::NotFound
            }
            Error::NameInUse { .. } | Error::Conflict(_) => Kind::Conflict,
            Error::InvalidName(_) | Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::NotModified(..) => Kind::NotModified,
            Error::Spec(e) if e.is_invalid_argument() => Kind::InvalidArgument,
            Error::Image(e) => match e.kind() {
                berth_image::ErrorKind::NotFound => Kind::NotFound,
                berth_image::ErrorKind::Conflict | berth_image::ErrorKind::AlreadyExists => {
                    Kind::Conflict
                }
                berth_image::ErrorKind::InvalidArgument => Kind::InvalidArgument,
                _ => Kind::Internal,
            },
            _ => Kind::Internal,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<std::path::PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Db { op, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
