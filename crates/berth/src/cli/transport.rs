//! How the CLI reaches the daemon: its unix socket, or `tcp://` with TLS as the docker CLI
//! does it (`--tlsverify --tlscacert --tlscert --tlskey`, or DOCKER_TLS_VERIFY and
//! DOCKER_CERT_PATH holding ca.pem, cert.pem and key.pem). bollard makes most requests; the
//! few made by hand (raw.rs, image_client.rs) open their connection here, so they go the
//! same way.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bollard::Docker;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

use super::{CliError, Result};

/// The TLS flags given before the command, as docker takes them.
#[derive(Debug, Default, Clone)]
struct TlsFlags {
    tls: bool,
    verify: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

static FLAGS: OnceLock<TlsFlags> = OnceLock::new();

/// Removes `--tls`, `--tlsverify[=bool]`, `--tlscacert X`, `--tlscert X`, `--tlskey X` (also
/// `--flag=X`) found before the command from `args` and keeps them for `Endpoint::parse`.
pub fn take_tls_flags(args: &mut Vec<OsString>) {
    let mut f = TlsFlags::default();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if !a.starts_with('-') {
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let path_flag = matches!(name.as_str(), "--tlscacert" | "--tlscert" | "--tlskey");
        if name == "--tls" || name == "--tlsverify" {
            let on = inline.as_deref().is_none_or(|v| v != "false");
            if name == "--tls" {
                f.tls = on;
            } else {
                f.verify = on;
            }
            args.remove(i);
        } else if path_flag {
            let (value, n) = match inline {
                Some(v) => (Some(v), 1),
                None => (args.get(i + 1).map(|v| v.to_string_lossy().into_owned()), 2),
            };
            let value = value.map(PathBuf::from);
            match name.as_str() {
                "--tlscacert" => f.ca = value,
                "--tlscert" => f.cert = value,
                _ => f.key = value,
            }
            let end = (i + n).min(args.len());
            args.drain(i..end);
        } else {
            // a global flag that takes a value: its value is not the command
            let takes_value = matches!(a.as_str(), "-H" | "--host" | "--data-root");
            i += if takes_value { 2 } else { 1 };
        }
    }
    let _ = FLAGS.set(f);
}

/// Where the client certificates are: the flags, else DOCKER_CERT_PATH, else ~/.docker.
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn tls_files(f: &TlsFlags) -> TlsFiles {
    let dir = std::env::var_os("DOCKER_CERT_PATH")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
        .unwrap_or_else(|| PathBuf::from(".docker"));
    TlsFiles {
        ca: f.ca.clone().unwrap_or_else(|| dir.join("ca.pem")),
        cert: f.cert.clone().unwrap_or_else(|| dir.join("cert.pem")),
        key: f.key.clone().unwrap_or_else(|| dir.join("key.pem")),
    }
}

/// The daemon's address, and for TCP how to speak TLS to it.
#[derive(Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        /// `host:port`
        addr: String,
        tls: Option<Tls>,
    },
}

#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

fn tls_err(what: &str, path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{what} {}: {e}", path.display()))
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig> {
    // bollard's client-certificate resolver asks for the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| tls_err("read the CA certificate", &files.ca, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err("read the CA certificate", &files.ca, e))?;
    for c in cas {
        roots
            .add(c)
            .map_err(|e| tls_err("the CA certificate", &files.ca, e))?;
    }
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_err("read the client certificate", &files.cert, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err("read the client certificate", &files.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_err("read the client key", &files.key, e))?;
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_err("the client certificate", &files.cert, e))
}

impl Endpoint {
    /// `unix:///path` or `tcp://host:port` with the TLS flags and environment applied.
    pub fn parse(host: &str) -> Result<Endpoint> {
        if let Some(p) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        let Some(rest) = host.strip_prefix("tcp://") else {
            return Err(CliError::Host {
                host: host.to_string(),
            });
        };
        let rest = rest.trim_end_matches('/');
        let flags = FLAGS.get().cloned().unwrap_or_default();
        let env_verify = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
        let verify = flags.verify || env_verify;
        if flags.tls && !verify {
            return Err(CliError::Usage(
                "--tls without --tlsverify would trust any server certificate; berth's CLI \
                 verifies the daemon: give --tlsverify (and --tlscacert, or DOCKER_CERT_PATH)"
                    .into(),
            ));
        }
        let (h, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.to_string()),
            _ => (rest, if verify { "2376" } else { "2375" }.to_string()),
        };
        let addr = format!("{h}:{port}");
        if !verify {
            return Ok(Endpoint::Tcp { addr, tls: None });
        }
        let files = tls_files(&flags);
        let config = client_config(&files)?;
        let name = h.trim_start_matches('[').trim_end_matches(']').to_string();
        let server_name = ServerName::try_from(name).map_err(|e| {
            CliError::Usage(format!("{host}: {h} is not a valid TLS server name: {e}"))
        })?;
        Ok(Endpoint::Tcp {
            addr,
            tls: Some(Tls {
                files: Arc::new(files),
                config: Arc::new(config),
                server_name,
            }),
        })
    }

    /// A bollard client for this endpoint.
    pub fn docker(&self, host: &str) -> Result<Docker> {
        let v = bollard::API_DEFAULT_VERSION;
        let r = match self {
            Endpoint::Unix(p) => Docker::connect_with_unix(&p.to_string_lossy(), 120, v),
            Endpoint::Tcp { addr, tls: None } => Docker::connect_with_http(addr, 120, v),
            Endpoint::Tcp { addr, tls: Some(t) } => {
                Docker::connect_with_ssl(addr, &t.files.key, &t.files.cert, &t.files.ca, 120, v)
            }
        };
        r.map_err(|e| match self {
            // bollard checks that the socket exists: no socket is no daemon
            Endpoint::Unix(_) => CliError::Connect {
                host: host.to_string(),
            },
            Endpoint::Tcp { .. } => CliError::Usage(format!("connect to {host}: {e}")),
        })
    }

    /// Whether anything listens there (to tell "daemon not running" from other errors).
    pub fn reachable(&self) -> bool {
        match self {
            Endpoint::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            Endpoint::Tcp { addr, .. } => std::net::TcpStream::connect(addr).is_ok(),
        }
    }

    /// A blocking connection, TLS done.
    pub fn connect_sync(&self) -> std::io::Result<Box<dyn SyncIo>> {
        match self {
            Endpoint::Unix(p) => Ok(Box::new(std::os::unix::net::UnixStream::connect(p)?)),
            Endpoint::Tcp { addr, tls: None } => Ok(Box::new(std::net::TcpStream::connect(addr)?)),
            Endpoint::Tcp { addr, tls: Some(t) } => {
                let tcp = std::net::TcpStream::connect(addr)?;
                let conn = rustls::ClientConnection::new(t.config.clone(), t.server_name.clone())
                    .map_err(std::io::Error::other)?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                // the handshake now, so that a refused certificate is this call's error
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Ok(Box::new(s))
            }
        }
    }

    /// An async connection, TLS done.
    pub async fn connect(&self) -> std::io::Result<Box<dyn AsyncIo>> {
        match self {
            Endpoint::Unix(p) => Ok(Box::new(tokio::net::UnixStream::connect(p).await?)),
            Endpoint::Tcp { addr, tls: None } => {
                Ok(Box::new(tokio::net::TcpStream::connect(addr).await?))
            }
            Endpoint::Tcp { addr, tls: Some(t) } => {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let s = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(t.server_name.clone(), tcp)
                    .await?;
                Ok(Box::new(s))
            }
        }
    }
}

pub trait SyncIo: Read + Write + Send {}
impl<T: Read + Write + Send> SyncIo for T {}
pub trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncIo for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn tls_flags_are_taken_before_the_command_only() {
        let mut a = args(&[
            "berth",
            "-H",
            "tcp://x:1",
            "--tlsverify",
            "--tlscacert",
            "/c/ca.pem",
            "--tlscert=/c/cert.pem",
            "ps",
            "--tlskey",
            "k",
        ]);
        take_tls_flags(&mut a);
        assert_eq!(
            a,
            args(&["berth", "-H", "tcp://x:1", "ps", "--tlskey", "k"])
        );
        let f = FLAGS.get().cloned().unwrap_or_default();
        assert!(f.verify && !f.tls);
        assert_eq!(f.ca.as_deref(), Some(Path::new("/c/ca.pem")));
        assert_eq!(f.cert.as_deref(), Some(Path::new("/c/cert.pem")));
        assert_eq!(f.key, None);
    }
}
