//! The crate's error type: one enum whose variants name the operation that failed and carry
//! the object (path, digest, reference), plus a coarse `ErrorKind` that the API layer maps to
//! an HTTP status in one place.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Coarse classification of an [`Error`], for mapping to API status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    Conflict,
    Unavailable,
    Internal,
}

/// Everything that can go wrong in the image crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {value:?}: {reason}")]
    ParseDigest { value: String, reason: String },
    #[error("invalid reference format {value:?}: {reason}")]
    ParseReference { value: String, reason: String },
    #[error("blob {digest} not found in the content store")]
    BlobNotFound { digest: Digest },
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    BlobDigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} size mismatch: expected {expected} bytes, got {actual}")]
    BlobSizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to parse {what} {object}: {reason}")]
    ParseJson {
        what: &'static str,
        object: String,
        reason: String,
    },
    #[error("unsupported media type {media_type:?} for {object}")]
    UnsupportedMediaType { media_type: String, object: String },
    #[error(
        "no manifest for platform {platform} in manifest list {digest} (available: {available})"
    )]
    PlatformNotFound {
        platform: String,
        digest: Digest,
        available: String,
    },
    #[error("failed to extract layer {layer}: entry {entry:?}: {reason}")]
    ExtractEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("failed to extract layer {layer}: {reason}")]
    ExtractLayer { layer: String, reason: String },
    #[error("layer {layer} diff ID mismatch: config says {expected}, content is {actual}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("database {op} failed: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("No such image: {reference}")]
    ImageNotFound { reference: String },
    #[error("image reference {reference:?} is ambiguous: matches {count} images")]
    ImageAmbiguous { reference: String, count: usize },
    #[error("conflict: unable to remove {reference}: {reason}")]
    ImageInUse { reference: String, reason: String },
    #[error("snapshot {key} not found")]
    SnapshotNotFound { key: String },
    #[error("snapshot {key} already exists")]
    SnapshotExists { key: String },
    #[error("snapshot {key}: {reason}")]
    SnapshotState { key: String, reason: String },
    #[error("failed to mount {target}: {reason}")]
    Mount { target: PathBuf, reason: String },
    #[error("invalid archive: {reason}")]
    Archive { reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The coarse kind of this error, for mapping to API status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ParseDigest { .. }
            | Error::ParseReference { .. }
            | Error::ParseJson { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::ExtractEntry { .. }
            | Error::ExtractLayer { .. }
            | Error::DiffIdMismatch { .. }
            | Error::BlobDigestMismatch { .. }
            | Error::BlobSizeMismatch { .. }
            | Error::Archive { .. }
            | Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::BlobNotFound { .. }
            | Error::ImageNotFound { .. }
            | Error::SnapshotNotFound { .. }
            | Error::PlatformNotFound { .. } => ErrorKind::NotFound,
            Error::SnapshotExists { .. } => ErrorKind::AlreadyExists,
            Error::ImageAmbiguous { .. }
            | Error::ImageInUse { .. }
            | Error::SnapshotState { .. } => ErrorKind::Conflict,
            Error::Database { source, .. } => match source {
                rusqlite::Error::SqliteFailure(e, _)
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        || e.code == rusqlite::ErrorCode::DatabaseLocked =>
                {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Internal,
            },
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                _ => ErrorKind::Internal,
            },
            Error::Mount { .. } => ErrorKind::Internal,
        }
    }

    /// Shorthand for an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Database { op, source }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
