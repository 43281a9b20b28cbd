//! The daemon started in-process (berth-api's `run`), driven over its unix socket with plain
//! HTTP: version negotiation, a container's life through the API, and Docker's error shapes.
//! Needs root, overlayfs and the berth binary (for `berth shim`) built beside this test.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn skip(reason: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("required facility missing under CI: {reason}");
    }
    eprintln!("SKIP: {reason}");
    true
}

/// target/debug/berth, beside target/debug/deps/<this test>.
fn berth_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("berth");
    p.exists().then_some(p)
}

struct Daemon {
    dir: tempfile::TempDir,
    sock: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Remove what containers are left, through the API, then stop the daemon.
        if let Ok((_, body)) = http(&self.sock, "GET", "/containers/json?all=1", None) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                for c in v.as_array().into_iter().flatten() {
                    if let Some(id) = c["Id"].as_str() {
                        let _ = http(
                            &self.sock,
                            "DELETE",
                            &format!("/containers/{id}?force=1"),
                            None,
                        );
                    }
                }
            }
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("data/containers"))
            .status();
    }
}

fn start_daemon(berth: &Path) -> Daemon {
    let dir = tempfile::Builder::new()
        .prefix("berth-api-test")
        .tempdir()
        .expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new("sh")
        .arg(repo.join("tests/make-busybox-rootfs.sh"))
        .arg(dir.path().join("rootfs"))
        .arg(dir.path().join("bb.tar"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("make busybox rootfs");
    assert!(st.success());
    let st = Command::new(berth)
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .arg("import")
        .arg(dir.path().join("bb.tar"))
        .arg("busybox:latest")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("berth import");
    assert!(st.success());
    let sock = dir.path().join("berth.sock");
    let cfg = berth_api::DaemonConfig {
        hosts: vec![format!("unix://{}", sock.display())],
        data_root: dir.path().join("data"),
        exec_root: dir.path().join("run"),
        pidfile: None,
        berth_exe: berth.to_path_buf(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            tokio::select! {
                r = berth_api::run(cfg) => { r.expect("daemon"); }
                _ = rx => {}
            }
        });
    });
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the daemon did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        dir,
        sock,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and (de-chunked) body.
fn http(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or(b"");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut rest = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(nl) = rest[i..].windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[i..i + nl]).trim(), 16)
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            let start = i + nl + 2;
            out.extend_from_slice(&rest[start..start + n]);
            i = start + n + 2;
        }
        rest = out;
    }
    Ok((status, rest))
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

/// Docker's multiplexed frames → (stdout, stderr).
fn demux(mut b: &[u8]) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let payload = &b[8..8 + n];
        if b[0] == 2 {
            err.extend_from_slice(payload)
        } else {
            out.extend_from_slice(payload)
        }
        b = &b[8 + n..];
    }
    (
        String::from_utf8_lossy(&out).into(),
        String::from_utf8_lossy(&err).into(),
    )
}

#[test]
fn the_api_runs_a_container_and_speaks_dockers_errors() {
    if !nix::unistd::geteuid().is_root() && skip("needs root") {
        return;
    }
    let Some(berth) = berth_bin() else {
        if skip("target/debug/berth is not built (cargo build -p berth)") {
            return;
        }
        unreachable!()
    };
    let d = start_daemon(&berth);
    let s = &d.sock;

    // Version negotiation: /_ping carries the API version; prefixed and bare paths work.
    let (code, body) = http(s, "GET", "/_ping", None).unwrap();
    assert_eq!((code, body.as_slice()), (200, &b"OK"[..]));
    for p in ["/version", "/v1.41/version", "/v1.53/version"] {
        let (code, body) = http(s, "GET", p, None).unwrap();
        assert_eq!(code, 200, "{p}");
        assert_eq!(json(&body)["ApiVersion"], berth_api::API_VERSION);
    }

    // A container's life: create, start, wait, logs (stdout and stderr apart), remove.
    let req = br#"{"Image":"busybox","Cmd":["sh","-c","echo out; echo err >&2; exit 3"],"UnknownField":1}"#;
    let (code, body) = http(
        s,
        "POST",
        "/v1.45/containers/create?name=api-test",
        Some(req),
    )
    .unwrap();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    let (code, body) = http(s, "POST", &format!("/containers/{id}/start"), None).unwrap();
    assert_eq!(code, 204, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(s, "POST", &format!("/containers/{id}/wait"), None).unwrap();
    assert_eq!(code, 200);
    assert_eq!(json(&body)["StatusCode"], 3);
    let (code, body) = http(
        s,
        "GET",
        &format!("/containers/{id}/logs?stdout=1&stderr=1"),
        None,
    )
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(demux(&body), ("out\n".to_string(), "err\n".to_string()));
    let (_, body) = http(s, "GET", "/containers/api-test/json", None).unwrap();
    let v = json(&body);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["Name"], "/api-test");

    // Errors are Docker's: {"message"} with its status codes.
    let (code, body) = http(
        s,
        "POST",
        "/containers/create?name=api-test",
        Some(br#"{"Image":"busybox","Cmd":["true"]}"#),
    )
    .unwrap();
    assert_eq!(code, 409);
    assert!(json(&body)["message"]
        .as_str()
        .unwrap()
        .contains("is already in use"));
    let (code, body) = http(
        s,
        "POST",
        "/containers/create",
        Some(br#"{"Image":"busybox","Cmd":"not a list"}"#),
    )
    .unwrap();
    assert_eq!(code, 400);
    assert!(
        json(&body)["message"].as_str().unwrap().contains("Cmd"),
        "the field is named"
    );
    let (code, body) = http(
        s,
        "POST",
        "/containers/create",
        Some(br#"{"Image":"nosuchimage"}"#),
    )
    .unwrap();
    assert_eq!(code, 404);
    assert!(json(&body)["message"]
        .as_str()
        .unwrap()
        .contains("No such image"));
    let (code, _) = http(s, "GET", "/containers/nosuchcontainer/json", None).unwrap();
    assert_eq!(code, 404);
    let (code, _) = http(s, "POST", "/containers/create", Some(b"{not json")).unwrap();
    assert_eq!(code, 400);

    // A running container cannot be removed without force; with force it is gone.
    let req = br#"{"Image":"busybox","Cmd":["sleep","60"]}"#;
    let (_, body) = http(s, "POST", "/containers/create", Some(req)).unwrap();
    let id2 = json(&body)["Id"].as_str().unwrap().to_string();
    assert_eq!(
        http(s, "POST", &format!("/containers/{id2}/start"), None)
            .unwrap()
            .0,
        204
    );
    assert_eq!(
        http(s, "POST", &format!("/containers/{id2}/start"), None)
            .unwrap()
            .0,
        304
    );
    assert_eq!(
        http(s, "DELETE", &format!("/containers/{id2}"), None)
            .unwrap()
            .0,
        409
    );
    assert_eq!(
        http(s, "DELETE", &format!("/containers/{id2}?force=1"), None)
            .unwrap()
            .0,
        204
    );
    assert_eq!(
        http(s, "DELETE", &format!("/containers/{id}"), None)
            .unwrap()
            .0,
        204
    );
    let (_, body) = http(s, "GET", "/containers/json?all=1", None).unwrap();
    assert_eq!(json(&body).as_array().map(|a| a.len()), Some(0));
    // Nothing of them is left mounted.
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&*d.dir.path().to_string_lossy()),
        "a container mount was left behind"
    );
}
