//! One repository on one registry, spoken to over the OCI distribution API: the base URL
//! (HTTPS, or plain HTTP for insecure registries), authentication learnt from the `/v2/`
//! ping and renewed on 401, and retries with backoff on transient failures (connection
//! errors and 5xx; never on 4xx, which a retry cannot fix).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::auth::{parse_challenge, Challenge, TokenResponse};
use crate::credentials::Credentials;
use crate::error::{Error, HttpFailure, Result};
use crate::settings::Settings;

/// Attempts of one request before a transient failure is reported.
const ATTEMPTS: u32 = 4;
/// The first pause before a retry; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// What the client will do in the repository; decides the token scope asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

#[derive(Debug, Clone)]
enum AuthState {
    /// The registry asked for nothing.
    Anonymous,
    Basic(String),
    Bearer(String),
}

/// Counts of requests by method, so tests and benchmarks can tell what was done.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub get: AtomicU64,
    pub head: AtomicU64,
    pub post: AtomicU64,
    pub put: AtomicU64,
    pub patch: AtomicU64,
}

/// A client for one repository of one registry.
pub struct RepositoryClient {
    http: reqwest::Client,
    registry: String,
    repository: String,
    base: Url,
    credentials: Option<Credentials>,
    access: Access,
    /// Other repositories of the same registry blobs may be mounted from (push only): their
    /// pull scope is asked for with the token.
    mount_sources: Vec<String>,
    auth: Mutex<AuthState>,
    pub counts: RequestCounts,
}

/// Builds the HTTP client shared by every request: system roots (rustls + native certs),
/// redirects followed (registries send blob GETs to object storage; reqwest drops the
/// Authorization header when the host changes), no overall timeout since layers are large,
/// but a connect timeout so a dead host fails quickly.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(16)
        .tcp_nodelay(true)
        .build()
        .map_err(Error::HttpClient)
}

/// The scheme and host to reach `registry` at.
pub fn base_url(settings: &Settings, registry: &str, host: &str) -> Result<Url> {
    let scheme = if settings.is_insecure(registry) || settings.is_insecure(host) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{host}/")).map_err(|e| Error::InvalidArgument {
        message: format!("invalid registry address {host:?}: {e}"),
    })
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

impl RepositoryClient {
    /// Connects: pings `/v2/` to learn how the registry wants to be authenticated and gets a
    /// token (or checks basic credentials) before any real request, so that no upload body is
    /// sent just to learn it was unauthorized.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        http: reqwest::Client,
        settings: &Settings,
        registry: &str,
        host: &str,
        repository: &str,
        credentials: Option<Credentials>,
        access: Access,
        mount_sources: Vec<String>,
    ) -> Result<Self> {
        let base = base_url(settings, registry, host)?;
        let client = RepositoryClient {
            http,
            registry: registry.to_string(),
            repository: repository.to_string(),
            base,
            credentials,
            access,
            mount_sources,
            auth: Mutex::new(AuthState::Anonymous),
            counts: RequestCounts::default(),
        };
        client.ping().await?;
        Ok(client)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `scheme://host/v2/<repository>/<rest>`.
    pub fn url(&self, rest: &str) -> Result<Url> {
        self.base
            .join(&format!("v2/{}/{rest}", self.repository))
            .map_err(|e| Error::Internal(format!("build URL for {rest}: {e}")))
    }

    /// Resolves a `Location` header, which may be relative to the registry.
    pub fn resolve_location(&self, location: &str) -> Result<Url> {
        self.base.join(location).map_err(|e| Error::UploadProtocol {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            digest: String::new(),
            reason: format!("invalid Location {location:?}: {e}"),
        })
    }

    async fn ping(&self) -> Result<()> {
        let url = self
            .base
            .join("v2/")
            .map_err(|e| Error::Internal(format!("build URL: {e}")))?;
        let wrap = |cause| Error::Ping {
            registry: self.registry.clone(),
            cause,
        };
        let resp = self
            .send_raw(|| self.http.get(url.clone()), false)
            .await
            .map_err(wrap)?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(wrap(failure(resp).await));
        }
        self.learn_challenge(&resp).await?;
        // Basic credentials are checked now, so a wrong password is reported as such and not
        // as a failed manifest fetch.
        if let AuthState::Basic(_) = self.auth_state() {
            let resp = self
                .send_raw(|| self.authorize(self.http.get(url.clone())), false)
                .await
                .map_err(wrap)?;
            if !resp.status().is_success() {
                let status = resp.status().as_u16();
                let f = failure(resp).await;
                return Err(Error::Authenticate {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    status: Some(status),
                    reason: format!("credentials refused: {f}"),
                });
            }
        }
        Ok(())
    }

    fn auth_state(&self) -> AuthState {
        match self.auth.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_auth_state(&self, s: AuthState) {
        match self.auth.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// Sets up authentication from a 401 response's challenge.
    async fn learn_challenge(&self, resp: &Response) -> Result<()> {
        let header = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        let unauthorized = |reason: String| Error::Authenticate {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            status: Some(401),
            reason,
        };
        match header {
            Some(Challenge::Basic { .. }) => match &self.credentials {
                Some(c) => {
                    let v = base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.password));
                    self.set_auth_state(AuthState::Basic(format!("Basic {v}")));
                    Ok(())
                }
                None => Err(unauthorized(
                    "401 Unauthorized: the registry requires a login (berth login)".into(),
                )),
            },
            Some(c @ Challenge::Bearer { .. }) => {
                let token = self.fetch_token(&c).await?;
                self.set_auth_state(AuthState::Bearer(token));
                Ok(())
            }
            None => Err(unauthorized(
                "401 Unauthorized without a usable WWW-Authenticate challenge".into(),
            )),
        }
    }

    /// Asks the token server named by the challenge for a token covering this repository
    /// (and the repositories blobs may be mounted from), with the user's credentials if any.
    async fn fetch_token(&self, challenge: &Challenge) -> Result<String> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            return Err(Error::Internal(
                "token fetch without a bearer challenge".into(),
            ));
        };
        let auth_err = |status: Option<u16>, reason: String| Error::Authenticate {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            status,
            reason,
        };
        let mut url = Url::parse(realm)
            .map_err(|e| auth_err(None, format!("invalid token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            let actions = match self.access {
                Access::Pull => "pull",
                Access::Push => "pull,push",
            };
            // A login checks credentials only; it asks for no repository.
            if !self.repository.is_empty() {
                q.append_pair(
                    "scope",
                    &format!("repository:{}:{actions}", self.repository),
                );
            }
            for from in &self.mount_sources {
                q.append_pair("scope", &format!("repository:{from}:pull"));
            }
        }
        let resp = self
            .send_raw(
                || {
                    let rb = self.http.get(url.clone());
                    match &self.credentials {
                        Some(c) => rb.basic_auth(&c.username, Some(&c.password)),
                        None => rb,
                    }
                },
                false,
            )
            .await
            .map_err(|f| auth_err(f.status(), format!("token request to {realm}: {f}")))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let f = failure(resp).await;
            return Err(auth_err(
                Some(status),
                format!("token request to {realm}: {f}"),
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| auth_err(None, format!("read token from {realm}: {e}")))?;
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| auth_err(None, format!("the token server {realm} sent no token")))
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        match self.auth_state() {
            AuthState::Anonymous => rb,
            AuthState::Basic(v) => rb.header(AUTHORIZATION, v),
            AuthState::Bearer(t) => match HeaderValue::from_str(&format!("Bearer {t}")) {
                Ok(v) => rb.header(AUTHORIZATION, v),
                Err(_) => rb,
            },
        }
    }

    /// Sends a request built by `build` (called again for each attempt, so bodies are
    /// recreated), retrying transient failures. Returns any response the registry gave,
    /// error statuses included, except 5xx after the last attempt is still returned as is.
    async fn send_raw<F>(&self, build: F, count: bool) -> Result<Response, HttpFailure>
    where
        F: Fn() -> RequestBuilder,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let req = build().build().map_err(HttpFailure::Transport)?;
            if count {
                self.count(req.method());
            }
            match self.http.execute(req).await {
                Ok(resp) if resp.status().is_server_error() && attempt < ATTEMPTS => {
                    tracing::debug!(status = %resp.status(), url = %resp.url(), attempt, "retrying after server error");
                }
                Ok(resp) => return Ok(resp),
                Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "retrying after transport error");
                }
                Err(e) => return Err(HttpFailure::Transport(e)),
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    fn count(&self, m: &Method) {
        let c = match *m {
            Method::GET => &self.counts.get,
            Method::HEAD => &self.counts.head,
            Method::POST => &self.counts.post,
            Method::PUT => &self.counts.put,
            Method::PATCH => &self.counts.patch,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends an authorized request with retries; on 401 (an expired token) renews the
    /// authorization once and tries again. The response may have any status.
    pub async fn send<F>(&self, build: F) -> Result<Response, HttpFailure>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let resp = self
            .send_raw(|| self.authorize(build(&self.http)), true)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // A bearer token can expire mid-pull; fetch a new one. With basic auth (or none)
        // the answer would be the same, so the 401 stands.
        if let AuthState::Bearer(_) = self.auth_state() {
            if self.learn_challenge(&resp).await.is_ok() {
                return self
                    .send_raw(|| self.authorize(build(&self.http)), true)
                    .await;
            }
        }
        Ok(resp)
    }
}

/// Reads an error response's body (bounded) into a failure that decodes the registry's
/// JSON `errors`.
pub async fn failure(resp: Response) -> HttpFailure {
    let status = resp.status().as_u16();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(_) => bytes::Bytes::new(),
    };
    let body = &body[..body.len().min(64 * 1024)];
    HttpFailure::from_status(status, body)
}
