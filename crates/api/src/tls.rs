//! The API on TCP: only behind TLS (rustls), as dockerd's `--tls`/`--tlsverify`. Anyone who
//! can reach the API can start a privileged container, so a plain TCP listener is refused and
//! `--tlsverify` (client certificates signed by `--tlscacert`) is the intended mode.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// dockerd's TLS flags (and daemon.json keys of the same names).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--tls`: serve TLS; clients are not asked for a certificate.
    pub tls: bool,
    /// `--tlsverify`: serve TLS and require a client certificate signed by `ca` (implies tls).
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsOptions {
    pub fn enabled(&self) -> bool {
        self.tls || self.verify
    }
}

fn need<'a>(p: &'a Option<PathBuf>, flag: &str) -> Result<&'a Path, String> {
    p.as_deref()
        .ok_or_else(|| format!("TLS on a TCP listener needs {flag}"))
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("read {what} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The rustls server configuration for `opts`, or an error naming the flag or file at fault.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, String> {
    let cert_path = need(&opts.cert, "--tlscert")?;
    let key_path = need(&opts.key, "--tlskey")?;
    let certs = load_certs(cert_path, "--tlscert")?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("read --tlskey {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = if opts.verify {
        let ca_path = need(&opts.ca, "--tlscacert (with --tlsverify)")?;
        let mut roots = RootCertStore::empty();
        for c in load_certs(ca_path, "--tlscacert")? {
            roots
                .add(c)
                .map_err(|e| format!("--tlscacert {}: {e}", ca_path.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("--tlscacert {}: {e}", ca_path.display()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let cfg = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--tlscert {} with --tlskey {}: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Arc::new(cfg))
}

/// `tcp://HOST:PORT` as dockerd takes it: an empty host is every address, no port is 2376.
pub fn tcp_addr(host: &str) -> Result<String, String> {
    let rest = host
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("-H {host}: not a tcp:// address"))?
        .trim_end_matches('/');
    let (h, port) = if let Some(end) = rest.find(']').filter(|_| rest.starts_with('[')) {
        let after = &rest[end + 1..];
        (&rest[..=end], after.strip_prefix(':').unwrap_or(after))
    } else {
        rest.rsplit_once(':').unwrap_or((rest, ""))
    };
    let port = if port.is_empty() { "2376" } else { port };
    if port.parse::<u16>().is_err() {
        return Err(format!("-H {host}: {port} is not a port number"));
    }
    let h = if h.is_empty() { "0.0.0.0" } else { h };
    Ok(format!("{h}:{port}"))
}

/// Accepts TCP connections and hands out those whose TLS handshake succeeded; handshakes run
/// concurrently so that one slow or silent client cannot hold up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a client may take over its handshake before the connection is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub async fn bind(host: &str, cfg: Arc<ServerConfig>) -> Result<TlsListener, String> {
        let addr = tcp_addr(host)?;
        let l = TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("listen on {host}: {e}"))?;
        let local = l
            .local_addr()
            .map_err(|e| format!("listen on {host}: {e}"))?;
        let acceptor = TlsAcceptor::from(cfg);
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match l.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of fds and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept on the TLS listener");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake refused")
                        }
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            addr: local,
            task,
        })
    }
}

/// The listeners for the daemon's `tcp://` hosts; refused without TLS, warned about without
/// client verification (dockerd allows `--tls` alone, so berth does too).
pub async fn listeners(hosts: &[String], opts: &TlsOptions) -> Result<Vec<TlsListener>, String> {
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    if !opts.enabled() {
        return Err(format!(
            "-H {}: berth does not serve the API on TCP without TLS: whoever reaches the port \
             could run privileged containers. Give --tlsverify --tlscacert CA.pem --tlscert \
             CERT.pem --tlskey KEY.pem (or --tls for server TLS without client certificates)",
            hosts[0]
        ));
    }
    let cfg = server_config(opts)?;
    let mut out = Vec::new();
    for h in hosts {
        let l = TlsListener::bind(h, cfg.clone()).await?;
        if opts.verify {
            tracing::info!("API listening on {h} (TLS, client certificates verified)");
        } else {
            tracing::warn!(
                "API listening on {h} with TLS but without --tlsverify: any client that \
                 reaches it has full control of this machine"
            );
        }
        out.push(l);
    }
    Ok(out)
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (only by abort, at shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_as_dockerd_reads_them() {
        assert_eq!(
            tcp_addr("tcp://127.0.0.1:2376").as_deref(),
            Ok("127.0.0.1:2376")
        );
        assert_eq!(tcp_addr("tcp://127.0.0.1").as_deref(), Ok("127.0.0.1:2376"));
        assert_eq!(tcp_addr("tcp://:1234").as_deref(), Ok("0.0.0.0:1234"));
        assert_eq!(tcp_addr("tcp://[::1]:99").as_deref(), Ok("[::1]:99"));
        assert_eq!(tcp_addr("tcp://[::1]").as_deref(), Ok("[::1]:2376"));
        assert!(tcp_addr("tcp://host:port").is_err());
        assert!(tcp_addr("unix:///x").is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let opts = TlsOptions {
            verify: true,
            cert: Some("/nonexistent/cert.pem".into()),
            key: Some("/nonexistent/key.pem".into()),
            ca: None,
            tls: false,
        };
        let e = server_config(&opts).err().unwrap_or_default();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
        let e = server_config(&TlsOptions {
            tls: true,
            ..Default::default()
        })
        .err()
        .unwrap_or_default();
        assert!(e.contains("--tlscert"), "{e}");
    }
}

#[cfg(test)]
mod config_file_tests {
    use crate::DaemonConfig;

    #[test]
    fn daemon_json_tls_keys_under_the_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("daemon.json");
        std::fs::write(
            &f,
            r#"{"tls": true, "tlsverify": true, "tlscacert": "/j/ca.pem",
                "tlscert": "/j/cert.pem", "tlskey": "/j/key.pem"}"#,
        )
        .expect("write daemon.json");
        let mut cfg = DaemonConfig::default();
        cfg.tls.cert = Some("/flag/cert.pem".into());
        cfg.apply_file(&f, &["tlscert"]).expect("apply");
        assert!(cfg.tls.tls && cfg.tls.verify);
        assert_eq!(
            cfg.tls.ca.as_deref(),
            Some(std::path::Path::new("/j/ca.pem"))
        );
        assert_eq!(
            cfg.tls.cert.as_deref(),
            Some(std::path::Path::new("/flag/cert.pem"))
        );
        assert_eq!(
            cfg.tls.key.as_deref(),
            Some(std::path::Path::new("/j/key.pem"))
        );
        std::fs::write(&f, r#"{"tlsverify": "yes"}"#).expect("write daemon.json");
        let e = DaemonConfig::default()
            .apply_file(&f, &[])
            .err()
            .unwrap_or_default();
        assert!(e.contains("tlsverify must be true or false"), "{e}");
    }
}
