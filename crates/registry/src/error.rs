//! Errors of the registry client. Each variant names the operation that failed and carries
//! the registry, repository and digest or tag it was about, so that a message read alone says
//! what went wrong where; `kind()` sorts them into the few kinds the API maps to statuses.

use std::path::PathBuf;

/// The broad class of a failure, as the API layer maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Unauthorized,
    InvalidArgument,
    Unavailable,
    Internal,
}

/// One entry of the registry's JSON error body (`{"errors": [{"code", "message", "detail"}]}`),
/// as the distribution spec defines it.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
pub struct RegistryErrorItem {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
struct RegistryErrorBody {
    #[serde(default)]
    errors: Vec<RegistryErrorItem>,
}

/// Why an HTTP exchange with the registry failed: it answered with an error status, or the
/// exchange itself broke (connection refused or reset, timeout, TLS).
#[derive(Debug)]
pub enum HttpFailure {
    Status {
        status: u16,
        errors: Vec<RegistryErrorItem>,
        /// The start of a body that was not the spec's JSON error document.
        body: String,
    },
    Transport(reqwest::Error),
}

impl HttpFailure {
    /// Builds the failure from a status and the body the registry sent with it, decoding the
    /// spec's error document when it is one.
    pub fn from_status(status: u16, body: &[u8]) -> Self {
        let errors = serde_json::from_slice::<RegistryErrorBody>(body)
            .map(|b| b.errors)
            .unwrap_or_default();
        let body = if errors.is_empty() {
            let text = String::from_utf8_lossy(body);
            text.trim().chars().take(200).collect()
        } else {
            String::new()
        };
        HttpFailure::Status {
            status,
            errors,
            body,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            HttpFailure::Status { status, .. } => Some(*status),
            HttpFailure::Transport(e) => e.status().map(|s| s.as_u16()),
        }
    }

    fn kind(&self) -> ErrorKind {
        match self.status() {
            Some(404) => ErrorKind::NotFound,
            Some(401) | Some(403) => ErrorKind::Unauthorized,
            Some(s) if (400..500).contains(&s) => ErrorKind::InvalidArgument,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Status {
                status,
                errors,
                body,
            } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{status} {reason}")?;
                for e in errors {
                    write!(f, ": {}: {}", e.code, e.message)?;
                    if let Some(d) = &e.detail {
                        if !d.is_null() {
                            write!(f, " ({d})")?;
                        }
                    }
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            HttpFailure::Transport(e) => {
                // reqwest's top-level message hides the useful part (refused, reset) in its
                // source chain.
                write!(f, "{e}")?;
                let mut src = std::error::Error::source(e);
                while let Some(s) = src {
                    write!(f, ": {s}")?;
                    src = s.source();
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference {reference:?}: {reason}")]
    ParseReference { reference: String, reason: String },

    #[error("{message}")]
    InvalidArgument { message: String },

    #[error("ping registry {registry}: {cause}")]
    Ping {
        registry: String,
        cause: HttpFailure,
    },

    #[error("authenticate to {registry} for {repository}: {reason}")]
    Authenticate {
        registry: String,
        repository: String,
        status: Option<u16>,
        reason: String,
    },

    #[error("login to {registry}: {reason}")]
    Login { registry: String, reason: String },

    #[error("fetch manifest {reference} from {registry}/{repository}: {cause}")]
    FetchManifest {
        registry: String,
        repository: String,
        reference: String,
        cause: HttpFailure,
    },

    #[error("parse manifest {reference} of {registry}/{repository}: {reason}")]
    ParseManifest {
        registry: String,
        repository: String,
        reference: String,
        reason: String,
    },

    #[error("select platform {platform} in {registry}/{repository}:{reference}: no matching manifest (available: {available})")]
    SelectPlatform {
        registry: String,
        repository: String,
        reference: String,
        platform: String,
        available: String,
    },

    #[error("fetch blob {digest} from {registry}/{repository}: {cause}")]
    FetchBlob {
        registry: String,
        repository: String,
        digest: String,
        cause: HttpFailure,
    },

    #[error("verify {what} {expected} from {registry}/{repository}: digest mismatch, received content has digest {actual}")]
    DigestMismatch {
        registry: String,
        repository: String,
        what: &'static str,
        expected: String,
        actual: String,
    },

    #[error("verify blob {digest} from {registry}/{repository}: size mismatch, expected {expected} bytes, received {actual}")]
    SizeMismatch {
        registry: String,
        repository: String,
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("check blob {digest} in {registry}/{repository}: {cause}")]
    CheckBlob {
        registry: String,
        repository: String,
        digest: String,
        cause: HttpFailure,
    },

    #[error("upload blob {digest} to {registry}/{repository}: {cause}")]
    UploadBlob {
        registry: String,
        repository: String,
        digest: String,
        cause: HttpFailure,
    },

    #[error("upload blob {digest} to {registry}/{repository}: {reason}")]
    UploadProtocol {
        registry: String,
        repository: String,
        digest: String,
        reason: String,
    },

    #[error("push manifest {tag} to {registry}/{repository}: {cause}")]
    PushManifest {
        registry: String,
        repository: String,
        tag: String,
        cause: HttpFailure,
    },

    #[error("{operation} {object} in the local store: {source}")]
    Store {
        operation: &'static str,
        object: String,
        kind: ErrorKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("read {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("parse {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("write {path}: {source}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("credentials for {registry} are kept by the credential helper docker-credential-{helper} ({path}), which berth does not support yet; remove \"credsStore\"/\"credHelpers\" from that file or use DOCKER_CONFIG to point at another one")]
    CredentialHelper {
        registry: String,
        helper: String,
        path: PathBuf,
    },

    #[error("build HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ParseReference { .. }
            | Error::InvalidArgument { .. }
            | Error::ParseManifest { .. }
            | Error::ParseConfig { .. } => ErrorKind::InvalidArgument,
            Error::SelectPlatform { .. } => ErrorKind::NotFound,
            Error::Authenticate { status, .. } => match status {
                Some(s) if *s >= 500 => ErrorKind::Unavailable,
                None => ErrorKind::Unavailable,
                _ => ErrorKind::Unauthorized,
            },
            Error::Login { .. } => ErrorKind::Unauthorized,
            Error::Ping { cause, .. }
            | Error::FetchManifest { cause, .. }
            | Error::FetchBlob { cause, .. }
            | Error::CheckBlob { cause, .. }
            | Error::UploadBlob { cause, .. }
            | Error::PushManifest { cause, .. } => cause.kind(),
            // Content that does not match its digest is a registry (or network) fault the
            // caller can retry elsewhere, not a bad argument.
            Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::UploadProtocol { .. } => ErrorKind::Unavailable,
            Error::Store { kind, .. } => *kind,
            Error::CredentialHelper { .. } => ErrorKind::InvalidArgument,
            Error::ReadConfig { .. }
            | Error::WriteConfig { .. }
            | Error::HttpClient(_)
            | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_registry_error_body() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let f = HttpFailure::from_status(404, body);
        let s = f.to_string();
        assert!(
            s.starts_with("404 Not Found: MANIFEST_UNKNOWN: manifest unknown"),
            "{s}"
        );
        assert_eq!(f.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn keeps_start_of_non_json_body() {
        let f = HttpFailure::from_status(502, b"<html>bad gateway</html>");
        assert_eq!(f.to_string(), "502 Bad Gateway: <html>bad gateway</html>");
        assert_eq!(f.kind(), ErrorKind::Unavailable);
    }
}
