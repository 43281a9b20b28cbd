//! The protocol paths a plain docker-registry does not exercise, against a small scripted
//! HTTP server on 127.0.0.1: bearer-token auth (challenge, token fetch with scope, token
//! use), a retried 503, a blob GET redirected to "storage", an index from which the
//! linux/amd64 manifest is chosen, and a 4xx that is not retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_image::content::ContentStore;
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_registry::local::StoreResult;
use berth_registry::{progress, CredentialStore, LocalImages, PullOptions, Registry, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Store {
    content: ContentStore,
    _dir: tempfile::TempDir,
}

impl LocalImages for Store {
    fn content(&self) -> &ContentStore {
        &self.content
    }
    fn register(&self, _: &Reference, manifest: &Digest) -> StoreResult<Digest> {
        self.content.read(manifest)?;
        Ok(manifest.clone())
    }
    fn manifest_of(&self, r: &Reference) -> StoreResult<Digest> {
        Err(berth_image::error::Error::ImageNotFound {
            reference: r.to_string(),
        })
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    Resp {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

#[derive(Default)]
struct State {
    log: Vec<String>,
    manifest_503_sent: bool,
    /// The first GET of the layer is cut off halfway (a connection reset mid-body).
    layer_cut_sent: bool,
    scopes: Vec<String>,
}

/// Serves one request per connection (Connection: close keeps the parsing trivial).
async fn serve(
    listener: TcpListener,
    blobs: Arc<HashMap<String, (String, Vec<u8>)>>,
    state: Arc<Mutex<State>>,
) {
    let port = listener.local_addr().unwrap().port();
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let blobs = blobs.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            let mut lines = text.split("\r\n");
            let request_line = lines.next().unwrap_or("").to_string();
            let mut parts = request_line.split(' ');
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            let auth = lines
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .map(|l| l[14..].trim().to_string())
                .unwrap_or_default();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let bearer_ok = auth == "Bearer tok-123";
            let challenge =
                format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\"");
            let mut cut = false;
            let r = {
                let mut st = state.lock().unwrap();
                st.log.push(format!("{method} {path}"));
                if path == "/token" {
                    st.scopes.push(query.to_string());
                    resp(
                        200,
                        &[("Content-Type", "application/json")],
                        br#"{"token":"tok-123"}"#,
                    )
                } else if let Some(d) = path.strip_prefix("/storage/") {
                    match blobs.get(d) {
                        Some((mt, b)) => {
                            if mt == "layer" && !st.layer_cut_sent {
                                st.layer_cut_sent = true;
                                cut = true;
                            }
                            resp(200, &[], b)
                        }
                        None => resp(404, &[], b""),
                    }
                } else if !bearer_ok {
                    resp(
                        401,
                        &[("WWW-Authenticate", challenge.as_str()), ("Content-Type", "application/json")],
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                    )
                } else if path == "/v2/" {
                    resp(200, &[], b"{}")
                } else if path == "/v2/x/y/manifests/forbidden" {
                    resp(
                        403,
                        &[("Content-Type", "application/json")],
                        br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
                    )
                } else if let Some(rest) = path.strip_prefix("/v2/x/y/manifests/") {
                    if rest == "1" && !st.manifest_503_sent {
                        st.manifest_503_sent = true;
                        resp(503, &[], b"try again")
                    } else {
                        let key = if rest == "1" { "index" } else { rest };
                        match blobs.get(key) {
                            Some((mt, b)) => resp(200, &[("Content-Type", mt.as_str())], b),
                            None => resp(404, &[], br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
                        }
                    }
                } else if let Some(d) = path.strip_prefix("/v2/x/y/blobs/") {
                    let loc = format!("http://127.0.0.1:{port}/storage/{d}");
                    resp(307, &[("Location", loc.as_str())], b"")
                } else {
                    resp(404, &[], b"")
                }
            };
            let mut out = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                r.status,
                r.body.len()
            );
            for (k, v) in &r.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let _ = sock.write_all(out.as_bytes()).await;
            if cut {
                let _ = sock.write_all(&r.body[..r.body.len() / 2]).await;
                return; // dropped: the client sees the body end early
            }
            if method != "HEAD" {
                let _ = sock.write_all(&r.body).await;
            }
            let _ = sock.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_retry_redirect_and_index() {
    let layer = b"not really a tar, but the registry does not care".to_vec();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let ld = Digest::of(&layer);
    let cd = Digest::of(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let md = Digest::of(&manifest);
    let other = br#"{"schemaVersion":2}"#.to_vec();
    let od = Digest::of(&other);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{od}","size":{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        other.len(),
        manifest.len()
    )
    .into_bytes();
    let idx_d = Digest::of(&index);
    let mut blobs = HashMap::new();
    let oci_m = "application/vnd.oci.image.manifest.v1+json".to_string();
    blobs.insert(
        "index".to_string(),
        ("application/vnd.oci.image.index.v1+json".to_string(), index),
    );
    blobs.insert(md.to_string(), (oci_m.clone(), manifest));
    blobs.insert(ld.to_string(), ("layer".to_string(), layer.clone()));
    blobs.insert(cd.to_string(), (String::new(), config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State::default()));
    let server = tokio::spawn(serve(listener, Arc::new(blobs), state.clone()));

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store {
        content: ContentStore::open(dir.path().join("c")).unwrap(),
        _dir: tempfile::tempdir().unwrap(),
    });
    let creds = tempfile::tempdir().unwrap();
    let r = Registry::new(
        Settings::default(),
        CredentialStore::at(creds.path().join("config.json")),
    )
    .unwrap();
    let reference: Reference = format!("127.0.0.1:{port}/x/y:1").parse().unwrap();
    let report = r
        .pull(
            store.clone(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, md);
    assert_eq!(report.index_digest.as_ref(), Some(&idx_d));
    assert_eq!(report.resolved_digest, idx_d);
    assert_eq!(store.content.read(&ld).unwrap(), layer);
    {
        let st = state.lock().unwrap();
        assert!(st.manifest_503_sent);
        // The layer download broken halfway was started again and completed.
        assert!(st.layer_cut_sent);
        let layer_gets = st
            .log
            .iter()
            .filter(|l| **l == format!("GET /storage/{ld}"))
            .count();
        assert_eq!(layer_gets, 2, "{:?}", st.log);
        assert_eq!(
            st.scopes.len(),
            1,
            "one token for the whole pull: {:?}",
            st.scopes
        );
        assert!(
            st.scopes[0].contains("scope=repository%3Ax%2Fy%3Apull")
                && st.scopes[0].contains("service=fake-registry"),
            "{:?}",
            st.scopes
        );
        assert!(st.log.iter().any(|l| l.starts_with("GET /storage/")));
    }

    // A platform the index does not have: NotFound, listing what there is.
    let opts = PullOptions {
        platform: Some(berth_image::manifest::Platform::parse("linux/s390x").unwrap()),
        ..PullOptions::default()
    };
    let e = r
        .pull(store.clone(), &reference, &opts, &progress::Silent)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), berth_registry::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("linux/arm64/v8, linux/amd64"), "{e}");

    // 403 is final: one request, decoded error, Unauthorized kind.
    let before = state.lock().unwrap().log.len();
    let forbidden: Reference = format!("127.0.0.1:{port}/x/y:forbidden").parse().unwrap();
    let e = r
        .pull(
            store.clone(),
            &forbidden,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), berth_registry::ErrorKind::Unauthorized, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("403") && msg.contains("DENIED") && msg.contains("x/y"),
        "{msg}"
    );
    let log = state.lock().unwrap().log.clone();
    let manifest_gets = log[before..]
        .iter()
        .filter(|l| l.contains("manifests/forbidden"))
        .count();
    assert_eq!(manifest_gets, 1, "{log:?}");
    server.abort();
}
