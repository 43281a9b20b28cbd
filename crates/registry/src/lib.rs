//! berth's registry client: the OCI distribution protocol (as Docker Hub, distribution,
//! Harbor, GHCR and friends speak it) for pulling images into the local image store and
//! pushing them out, with token and basic authentication, credentials kept like Docker's,
//! and plain HTTP only for registries configured as insecure (loopback always is).
//!
//! Entry point: [`Registry`]; the local store is reached through [`local::LocalImages`].

#![forbid(unsafe_code)]
// Errors carry registry, repository, digest and the decoded registry answer by value; they
// are on the cold path of network operations, where their size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod client;
pub mod credentials;
pub mod error;
pub mod local;
pub mod progress;
pub mod pull;
pub mod push;
pub mod settings;

use std::sync::Arc;

use berth_image::reference::{Reference, DEFAULT_REGISTRY, DEFAULT_REGISTRY_HOST};

pub use client::Access;
pub use credentials::{CredentialStore, Credentials};
pub use error::{Error, ErrorKind, Result};
pub use local::LocalImages;
pub use progress::Progress;
pub use pull::{PullOptions, PullReport};
pub use push::{PushOptions, PushReport};
pub use settings::Settings;

use client::RepositoryClient;

/// Wraps an error of the image crate with the operation that failed here.
pub(crate) fn store_err(
    operation: &'static str,
    object: String,
    e: berth_image::error::Error,
) -> Error {
    use berth_image::error::ErrorKind as K;
    let kind = match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::InvalidArgument => ErrorKind::InvalidArgument,
        K::Unavailable => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    Error::Store {
        operation,
        object,
        kind,
        source: Box::new(e),
    }
}

/// A server as given to `login`/`logout` (`127.0.0.1:5000`, `https://reg.example/`, nothing
/// for Docker Hub): the registry name and the host to contact.
pub fn normalize_server(server: Option<&str>) -> (String, String) {
    let s = server
        .unwrap_or(DEFAULT_REGISTRY)
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => (
            DEFAULT_REGISTRY.to_string(),
            DEFAULT_REGISTRY_HOST.to_string(),
        ),
        other => (other.to_string(), other.to_string()),
    }
}

/// The registry client: one HTTP connection pool, the insecure-registry settings and the
/// credential file, used for any number of pulls and pushes.
pub struct Registry {
    http: reqwest::Client,
    settings: Settings,
    credentials: CredentialStore,
}

impl Registry {
    pub fn new(settings: Settings, credentials: CredentialStore) -> Result<Self> {
        Ok(Registry {
            http: client::http_client()?,
            settings,
            credentials,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn credential_store(&self) -> &CredentialStore {
        &self.credentials
    }

    async fn connect(
        &self,
        reference: &Reference,
        access: Access,
        mount_sources: Vec<String>,
        given: Option<Credentials>,
    ) -> Result<RepositoryClient> {
        if given.is_some() {
            return RepositoryClient::connect(
                self.http.clone(),
                &self.settings,
                &reference.registry,
                reference.registry_host(),
                &reference.repository,
                given,
                access,
                mount_sources,
            )
            .await;
        }
        // Credentials kept by a helper (Docker Desktop's `credsStore`) are not readable here;
        // public images must still pull, so the helper only matters if the registry then
        // asks for a login, and the error says so.
        let (creds, helper_note) = match self.credentials.get(&reference.registry) {
            Ok(c) => (c, None),
            Err(e @ Error::CredentialHelper { .. }) => {
                tracing::warn!(error = %e, "continuing without credentials");
                (None, Some(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let r = RepositoryClient::connect(
            self.http.clone(),
            &self.settings,
            &reference.registry,
            reference.registry_host(),
            &reference.repository,
            creds,
            access,
            mount_sources,
        )
        .await;
        match (r, helper_note) {
            (
                Err(Error::Authenticate {
                    registry,
                    repository,
                    status,
                    reason,
                }),
                Some(note),
            ) => Err(Error::Authenticate {
                registry,
                repository,
                status,
                reason: format!("{reason}; {note}"),
            }),
            (r, _) => r,
        }
    }

    /// Pulls `reference` (by tag or digest) into `store` and registers it.
    pub async fn pull(
        &self,
        store: Arc<dyn LocalImages>,
        reference: &Reference,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<PullReport> {
        let client = self
            .connect(
                reference,
                Access::Pull,
                Vec::new(),
                opts.credentials.clone(),
            )
            .await?;
        let r = pull::pull(&client, store, reference, opts, progress).await;
        tracing::debug!(
            get = client.counts.get.load(std::sync::atomic::Ordering::Relaxed),
            "pull requests"
        );
        r
    }

    /// Pushes the local image `reference` to its registry.
    pub async fn push(
        &self,
        store: Arc<dyn LocalImages>,
        reference: &Reference,
        opts: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushReport> {
        let local = push::local_manifest(store.as_ref(), reference)?;
        let mut mount_from = opts.mount_from.clone();
        for r in store.mount_sources(reference) {
            if !mount_from.contains(&r) {
                mount_from.push(r);
            }
        }
        mount_from.retain(|r| *r != reference.repository);
        let client = self
            .connect(
                reference,
                Access::Push,
                mount_from.clone(),
                opts.credentials.clone(),
            )
            .await?;
        let report = push::push(
            &client,
            store.clone(),
            reference,
            local,
            mount_from,
            opts,
            progress,
        )
        .await?;
        if let Some(d) = &report.manifest_digest {
            let (store, reference, d) = (store.clone(), reference.clone(), d.clone());
            let _ = tokio::task::spawn_blocking(move || store.record_pushed(&reference, &d)).await;
        }
        Ok(report)
    }

    /// Checks `creds` against `server` and, if the registry accepts them, stores them.
    /// Returns the registry name they were stored under.
    pub async fn login(&self, server: Option<&str>, creds: Credentials) -> Result<String> {
        let registry = self.check_login(server, &creds).await?;
        self.credentials.store(&registry, &creds)?;
        Ok(registry)
    }

    /// Checks `creds` against `server` without storing them (a daemon's `/auth`: the
    /// credentials are the client's to keep). Returns the registry's name.
    pub async fn check_login(&self, server: Option<&str>, creds: &Credentials) -> Result<String> {
        let (registry, host) = normalize_server(server);
        RepositoryClient::connect(
            self.http.clone(),
            &self.settings,
            &registry,
            &host,
            "",
            Some(creds.clone()),
            Access::Pull,
            Vec::new(),
        )
        .await
        .map_err(|e| match e {
            Error::Authenticate { reason, .. } => Error::Login {
                registry: registry.clone(),
                reason,
            },
            e => e,
        })?;
        Ok(registry)
    }

    /// Forgets the credentials of `server`; returns whether there were any.
    pub fn logout(&self, server: Option<&str>) -> Result<bool> {
        let (registry, _) = normalize_server(server);
        self.credentials.remove(&registry)
    }
}
