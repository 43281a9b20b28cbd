//! What the API tests share: a daemon started in-process on a temporary data root, plain
//! HTTP over its socket, and the skip rule.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod net;

pub fn skip(reason: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("required facility missing under CI: {reason}");
    }
    eprintln!("SKIP: {reason}");
    true
}

/// target/debug/berth, beside target/debug/deps/<this test>.
pub fn berth_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("berth");
    p.exists().then_some(p)
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // What containers are left go through the API first, then the daemon stops.
        remove_all_containers(&self.sock);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("data/containers"))
            .stderr(Stdio::null())
            .status();
        remove_daemon_networks(&self.dir.path().join("data"));
        sweep_leaked_netns(&self.dir.path().join("run"), None);
    }
}

/// A stopped daemon keeps its default bridge and nftables tables (for the containers a
/// restart adopts); a test's daemon takes them along.
pub fn remove_daemon_networks(data_root: &Path) {
    let (table, bridge) = berth_engine::network::instance_names(data_root);
    let _ = berth_net::link::delete_link(&bridge);
    let _ = berth_net::nft::delete_table(&table);
}

/// Removes every container of the daemon at `sock` (forced), until none is listed: a
/// policy restart can bring one back between a list and its removal. One that cannot be
/// removed is reported (it would keep running, with its shim and namespaces, after the
/// daemon stops).
pub fn remove_all_containers(sock: &Path) {
    for round in 0..5 {
        let (_, body) = http(sock, "GET", "/containers/json?all=1", &[], b"");
        let ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["Id"].as_str().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return;
        }
        for id in ids {
            let (code, body) = http(
                sock,
                "DELETE",
                &format!("/containers/{id}?force=1"),
                &[],
                b"",
            );
            if !(200..300).contains(&code) && code != 404 {
                eprintln!(
                    "LEAK? removing container {id} (round {round}): {code} {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
    eprintln!("LEAK: containers still listed after five rounds of forced removal");
}

/// After a daemon whose exec root is `exec_root` has stopped with every container removed: a
/// network namespace still bound under it is a leak of the daemon's. Each one is reported
/// loudly, with the tail of the daemon's log (`log`) to tell what happened, and unbound, so
/// the machine is left clean either way. (Namespaces a test made itself, elsewhere in its
/// directory, are the test's to remove.)
pub fn sweep_leaked_netns(exec_root: &Path, log: Option<&Path>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let leaked: Vec<&str> = info
        .lines()
        .filter(|l| l.contains(" - nsfs "))
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(exec_root))
        .collect();
    if leaked.is_empty() {
        return;
    }
    eprintln!("LEAK: network namespaces still bound after the daemon stopped: {leaked:?}");
    if let Some(text) = log.and_then(|l| std::fs::read_to_string(l).ok()) {
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(200)..];
        eprintln!(
            "daemon log (last {} lines):\n{}",
            tail.len(),
            tail.join("\n")
        );
    }
    for m in leaked {
        let _ = berth_net::netns::remove(Path::new(m));
    }
}

/// A daemon on a temporary root, with a busybox rootfs tarball at `<dir>/bb.tar`; with
/// `import`, imported as `busybox:latest` through its API (`POST /images/create?fromSrc=-`).
pub fn start_daemon(berth: &Path, prefix: &str, import: bool) -> Daemon {
    start_daemon_with(berth, prefix, import, |_| {})
}

/// [`start_daemon`] with settings of the test's own (`configure` changes the defaults).
pub fn start_daemon_with(
    berth: &Path,
    prefix: &str,
    import: bool,
    configure: impl FnOnce(&mut berth_api::DaemonConfig),
) -> Daemon {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new("sh")
        .arg(repo.join("tests/make-busybox-rootfs.sh"))
        .arg(dir.path().join("rootfs"))
        .arg(dir.path().join("bb.tar"))
        .stdout(Stdio::null())
        .status()
        .expect("make busybox rootfs");
    assert!(st.success());
    let sock = dir.path().join("berth.sock");
    let mut cfg = berth_api::DaemonConfig {
        hosts: vec![format!("unix://{}", sock.display())],
        data_root: dir.path().join("data"),
        exec_root: dir.path().join("run"),
        pidfile: None,
        berth_exe: berth.to_path_buf(),
        ..Default::default()
    };
    configure(&mut cfg);
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
    let d = Daemon {
        dir,
        sock,
        stop: Some(tx),
        thread: Some(thread),
    };
    if import {
        let tar = std::fs::read(d.dir.path().join("bb.tar")).expect("read bb.tar");
        let (status, body) = http(
            &d.sock,
            "POST",
            "/images/create?fromSrc=-&repo=busybox&tag=latest",
            &[("Content-Type", "application/x-tar")],
            &tar,
        );
        let text = String::from_utf8_lossy(&body);
        assert!(
            status == 200 && !text.contains("errorDetail"),
            "import busybox: {status} {text}"
        );
    }
    d
}

/// One HTTP/1.1 request with `Connection: close`; returns status and (de-chunked) body.
pub fn http(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(sock).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send head");
    // A daemon that refuses a request before reading its body closes early: its answer
    // is still there to read.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
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
    (status, rest)
}

pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

/// One request with an optional JSON body; the answer as JSON (Null when empty, the text as
/// a JSON string when it is not JSON).
pub fn call(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let b = body.map(|v| v.to_string()).unwrap_or_default();
    let (code, out) = http(
        sock,
        method,
        path,
        &[("Content-Type", "application/json")],
        b.as_bytes(),
    );
    let v = if out.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&out).into_owned())
        })
    };
    (code, v)
}

/// `POST /containers/create?name=`; the new container's id.
pub fn create(sock: &Path, name: &str, body: serde_json::Value) -> String {
    let (code, v) = call(
        sock,
        "POST",
        &format!("/containers/create?name={name}"),
        Some(body),
    );
    assert_eq!(code, 201, "create {name}: {v}");
    v["Id"].as_str().expect("Id").to_string()
}

pub fn start(sock: &Path, id: &str) {
    let (code, v) = call(sock, "POST", &format!("/containers/{id}/start"), None);
    assert_eq!(code, 204, "start {id}: {v}");
}

pub fn inspect(sock: &Path, id: &str) -> serde_json::Value {
    let (code, v) = call(sock, "GET", &format!("/containers/{id}/json"), None);
    assert_eq!(code, 200, "inspect {id}: {v}");
    v
}

/// A container's stdout and stderr so far, without the 8-byte frame headers of the logs API.
pub fn logs(sock: &Path, id: &str) -> String {
    let (_, raw) = http(
        sock,
        "GET",
        &format!("/containers/{id}/logs?stdout=1&stderr=1"),
        &[],
        b"",
    );
    let mut out = Vec::new();
    let mut b = &raw[..];
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        out.extend_from_slice(&b[8..(8 + n).min(b.len())]);
        b = &b[(8 + n).min(b.len())..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a container to its end and removes it: (exit code, its stdout and stderr).
pub fn run_to_exit(sock: &Path, name: &str, body: serde_json::Value) -> (i64, String) {
    let id = create(sock, name, body);
    start(sock, &id);
    let (code, v) = call(sock, "POST", &format!("/containers/{id}/wait"), None);
    assert_eq!(code, 200, "wait {name}: {v}");
    let exit = v["StatusCode"].as_i64().unwrap_or(-1);
    let out = logs(sock, &id);
    let (code, v) = call(sock, "DELETE", &format!("/containers/{id}?force=1"), None);
    assert_eq!(code, 204, "remove {name}: {v}");
    (exit, out)
}
