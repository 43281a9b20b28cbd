//! Images through the API of a daemon started in-process: push to and pull from a real
//! registry on 127.0.0.1 (Debian's docker-registry, with a password), `/auth`, tag, rmi,
//! save, load (a good archive and a hostile one), import with changes, history, list
//! filters and prune; then the docker CLI (28.x) logging in, pulling and pushing through the
//! daemon. Needs root, overlayfs, docker-registry, htpasswd and the berth binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

mod common;
use common::{berth_bin, http, json, skip, start_daemon, Daemon};

#[path = "../../../tests/support/registry.rs"]
mod registry_support;
use registry_support::{TestRegistry as Registry, REGISTRY_BIN};

fn start_registry(user: &str, pass: &str) -> Registry {
    Registry::start(Some((user, pass)))
}

/// A stream of JSON lines.
fn lines(b: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json(l.as_bytes()))
        .collect()
}

fn statuses(b: &[u8]) -> Vec<String> {
    lines(b)
        .iter()
        .filter_map(|v| v["status"].as_str().map(str::to_string))
        .collect()
}

fn stream_error(b: &[u8]) -> Option<String> {
    lines(b)
        .iter()
        .find_map(|v| v["error"].as_str().map(str::to_string))
}

fn auth_header(user: &str, pass: &str, server: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(
        serde_json::json!({"username": user, "password": pass, "serveraddress": server})
            .to_string(),
    )
}

fn ids_of(sock: &Path, filters: &str) -> Vec<serde_json::Value> {
    let (code, body) = http(
        sock,
        "GET",
        &format!("/images/json?filters={filters}"),
        &[],
        b"",
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    json(&body).as_array().cloned().unwrap_or_default()
}

fn requirements() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root");
        return None;
    }
    if !Path::new(REGISTRY_BIN).exists() {
        skip("docker-registry not installed (run tests/registry/setup.sh)");
        return None;
    }
    if Command::new("htpasswd").arg("-h").output().is_err() {
        skip("htpasswd (apache2-utils) not installed");
        return None;
    }
    match berth_bin() {
        Some(b) => Some(b),
        None => {
            skip("target/debug/berth is not built (cargo build -p berth)");
            None
        }
    }
}

#[test]
fn images_through_the_api() {
    let Some(berth) = requirements() else {
        return;
    };
    let d = start_daemon(&berth, "berth-api-images", false);
    let s = &d.sock;
    let reg = start_registry("tester", "s3cret");
    let good = auth_header("tester", "s3cret", &reg.addr);
    let bad = auth_header("tester", "wrong", &reg.addr);

    // Import (fromSrc=-) with changes and a message: the rootfs tarball as the body.
    let tarball = std::fs::read(d.dir.path().join("bb.tar")).expect("read bb.tar");
    let (code, body) = http(
        s,
        "POST",
        "/images/create?fromSrc=-&repo=busybox&tag=latest&message=from%20a%20test\
         &changes=CMD%20%5B%22sh%22%5D&changes=LABEL%20kind%3Dbb&changes=ENV%20A%3Db",
        &[("Content-Type", "application/x-tar")],
        &tarball,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let id = statuses(&body)[0].clone();
    assert!(id.starts_with("sha256:"), "{id}");
    let (code, body) = http(s, "GET", "/images/busybox/json", &[], b"");
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(v["Config"]["Labels"]["kind"], "bb");
    assert!(v["Config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == "A=b")));
    // A change that is no instruction is a 400 naming it.
    let (code, body) = http(
        s,
        "POST",
        "/images/create?fromSrc=-&changes=RUN%20x",
        &[],
        &tarball,
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(json(&body)["message"]
        .as_str()
        .unwrap_or("")
        .contains("RUN"));

    // History: newest first, the top entry with the image's ID, tags and the message.
    let (code, body) = http(s, "GET", "/images/busybox:latest/history", &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let h = json(&body);
    assert_eq!(h[0]["Id"], id.as_str());
    assert_eq!(h[0]["Tags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(h[0]["Comment"], "from a test");
    assert!(h[0]["Size"].as_i64().unwrap_or(0) > 0);
    let (code, _) = http(s, "GET", "/images/nosuch/history", &[], b"");
    assert_eq!(code, 404);

    // /auth: the registry's answer, nothing stored.
    let (code, body) = http(
        s,
        "POST",
        "/auth",
        &[("Content-Type", "application/json")],
        format!(
            r#"{{"username":"tester","password":"wrong","serveraddress":"{}"}}"#,
            reg.addr
        )
        .as_bytes(),
    );
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(
        s,
        "POST",
        "/auth",
        &[("Content-Type", "application/json")],
        format!(
            r#"{{"username":"tester","password":"s3cret","serveraddress":"{}"}}"#,
            reg.addr
        )
        .as_bytes(),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["Status"], "Login Succeeded");

    // Tag, then push: refused with wrong credentials, done with the right ones.
    let remote = format!("{}/test/bb", reg.addr);
    let (code, body) = http(
        s,
        "POST",
        &format!("/images/busybox/tag?repo={remote}&tag=v1"),
        &[],
        b"",
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(
        s,
        "POST",
        &format!("/images/{remote}/push?tag=v1"),
        &[("X-Registry-Auth", &bad)],
        b"",
    );
    let refused = code >= 400 || stream_error(&body).is_some();
    assert!(refused, "{code} {}", String::from_utf8_lossy(&body));
    let (code, body) = http(
        s,
        "POST",
        &format!("/images/{remote}/push?tag=v1"),
        &[("X-Registry-Auth", &good)],
        b"",
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        stream_error(&body),
        None,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let st = statuses(&body);
    assert!(
        st.iter()
            .any(|l| l.starts_with("The push refers to repository")),
        "{st:?}"
    );
    assert!(st.iter().any(|l| l == "Pushed"), "{st:?}");
    let aux = lines(&body)
        .into_iter()
        .find(|v| v.get("aux").is_some())
        .expect("aux line with the digest");
    let pushed_digest = aux["aux"]["Digest"].as_str().unwrap_or("").to_string();
    assert!(pushed_digest.starts_with("sha256:"));
    let (code, _) = http(
        s,
        "POST",
        "/images/nosuch/push",
        &[("X-Registry-Auth", &good)],
        b"",
    );
    assert_eq!(code, 404);

    // rmi of the pushed tag, then pull it back: progress lines, digest, status.
    let (code, body) = http(s, "DELETE", &format!("/images/{remote}:v1"), &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)[0]["Untagged"], format!("{remote}:v1"));
    let (code, body) = http(
        s,
        "POST",
        &format!("/images/create?fromImage={remote}&tag=v1"),
        &[("X-Registry-Auth", &good)],
        b"",
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        stream_error(&body),
        None,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let st = statuses(&body);
    assert!(st.contains(&"Pulling from test/bb".to_string()), "{st:?}");
    assert!(st.contains(&format!("Digest: {pushed_digest}")), "{st:?}");
    assert!(
        st.iter()
            .any(|l| l.starts_with("Status: ") && l.ends_with(&format!("{remote}:v1"))),
        "{st:?}"
    );
    let (code, body) = http(s, "GET", &format!("/images/{remote}:v1/json"), &[], b"");
    assert_eq!(code, 200);
    assert_eq!(json(&body)["Id"], id.as_str());
    // Without credentials the registry refuses; an unknown tag is an HTTP error, as dockerd's.
    let (code, body) = http(
        s,
        "POST",
        &format!("/images/create?fromImage={remote}&tag=v1"),
        &[],
        b"",
    );
    assert!(
        code >= 400 || stream_error(&body).is_some(),
        "{code} {}",
        String::from_utf8_lossy(&body)
    );
    let (code, body) = http(
        s,
        "POST",
        &format!("/images/create?fromImage={remote}&tag=nosuch"),
        &[("X-Registry-Auth", &good)],
        b"",
    );
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    assert!(json(&body)["message"].is_string());

    // Save both names of the image, remove them, load the archive back.
    let (code, archive) = http(
        s,
        "GET",
        &format!("/images/get?names=busybox:latest&names={remote}:v1"),
        &[],
        b"",
    );
    assert_eq!(code, 200);
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(archive.as_slice());
    for e in ar.entries().expect("a tar") {
        let e = e.expect("a tar entry");
        names.push(e.path().expect("path").display().to_string());
    }
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    let (code, one) = http(s, "GET", "/images/busybox:latest/get", &[], b"");
    assert_eq!(code, 200);
    assert!(!one.is_empty());
    let (code, _) = http(s, "GET", "/images/get?names=nosuch", &[], b"");
    assert_eq!(code, 404);
    let (code, body) = http(s, "DELETE", "/images/busybox:latest?force=1", &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(s, "DELETE", &format!("/images/{remote}:v1"), &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, _) = http(s, "GET", "/images/busybox/json", &[], b"");
    assert_eq!(code, 404);
    let (code, body) = http(
        s,
        "POST",
        "/images/load?quiet=1",
        &[("Content-Type", "application/x-tar")],
        &archive,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let streams: Vec<String> = lines(&body)
        .iter()
        .filter_map(|v| v["stream"].as_str().map(str::to_string))
        .collect();
    assert!(
        streams.contains(&"Loaded image: busybox:latest\n".to_string()),
        "{streams:?}"
    );
    assert!(
        streams.contains(&format!("Loaded image: {remote}:v1\n")),
        "{streams:?}"
    );
    let (code, body) = http(s, "GET", "/images/busybox/json", &[], b"");
    assert_eq!(code, 200);
    assert_eq!(json(&body)["Id"], id.as_str());

    // Without quiet, dockerd streams each layer's progress before the result.
    for r in ["busybox:latest", &format!("{remote}:v1")] {
        let (code, body) = http(s, "DELETE", &format!("/images/{r}?force=1"), &[], b"");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    let (code, body) = http(
        s,
        "POST",
        "/images/load?quiet=0",
        &[("Content-Type", "application/x-tar")],
        &archive,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let msgs = lines(&body);
    let layer_lines: Vec<&serde_json::Value> = msgs
        .iter()
        .filter(|v| v["status"] == "Loading layer")
        .collect();
    let last = layer_lines.last().expect("Loading layer lines");
    assert_eq!(last["id"].as_str().map(str::len), Some(12), "{last}");
    assert!(last["progressDetail"]["total"].as_u64() > Some(0), "{last}");
    assert_eq!(
        last["progressDetail"]["current"], last["progressDetail"]["total"],
        "{last}"
    );
    assert_eq!(
        msgs.last()
            .and_then(|v| v["stream"].as_str())
            .map(|t| t.starts_with("Loaded image: ")),
        Some(true),
        "{msgs:?}"
    );
    let (code, body) = http(s, "GET", "/images/busybox/json", &[], b"");
    assert_eq!(code, 200);
    assert_eq!(json(&body)["Id"], id.as_str());

    // A body that is no archive, and a hostile one, are refused; the daemon keeps serving.
    let (code, body) = http(s, "POST", "/images/load", &[], b"not a tar at all");
    assert!(
        (400..500).contains(&code),
        "{code} {}",
        String::from_utf8_lossy(&body)
    );
    let hostile = {
        let mut b = tar::Builder::new(Vec::new());
        let manifest = br#"[{"Config":"../../../../etc/passwd","RepoTags":["evil:1"],"Layers":["/etc/shadow"]}]"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", &manifest[..])
            .expect("tar entry");
        b.into_inner().expect("tar")
    };
    let (code, body) = http(s, "POST", "/images/load", &[], &hostile);
    assert!(
        (400..500).contains(&code),
        "{code} {}",
        String::from_utf8_lossy(&body)
    );
    let (code, _) = http(s, "GET", "/images/evil:1/json", &[], b"");
    assert_eq!(code, 404);
    let (code, _) = http(s, "GET", "/_ping", &[], b"");
    assert_eq!(code, 200);

    // List filters: reference, label, dangling; then prune takes the dangling image only.
    let (code, body) = http(
        s,
        "POST",
        "/images/create?fromSrc=-&message=dangling",
        &[],
        &tarball,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let dangling_id = statuses(&body)[0].clone();
    let enc = |f: &str| {
        f.replace('"', "%22")
            .replace('{', "%7B")
            .replace('}', "%7D")
    };
    let busy = ids_of(s, &enc(r#"{"reference":["busy*"]}"#));
    assert_eq!(busy.len(), 1, "{busy:?}");
    assert_eq!(busy[0]["RepoTags"], serde_json::json!(["busybox:latest"]));
    let labelled = ids_of(s, &enc(r#"{"label":["kind=bb"]}"#));
    assert!(
        labelled.iter().all(|i| i["Id"] == id.as_str()),
        "{labelled:?}"
    );
    assert!(!labelled.is_empty());
    let dangling = ids_of(s, &enc(r#"{"dangling":["true"]}"#));
    assert_eq!(dangling.len(), 1, "{dangling:?}");
    assert_eq!(dangling[0]["Id"], dangling_id.as_str());
    let (code, body) = http(
        s,
        "GET",
        "/images/json?filters=%7B%22nosuch%22%3A%5B%22x%22%5D%7D",
        &[],
        b"",
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(s, "POST", "/images/prune", &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v = json(&body);
    let deleted: Vec<&str> = v["ImagesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["Deleted"].as_str())
        .collect();
    assert_eq!(deleted, vec![dangling_id.as_str()], "{v}");
    assert!(v["SpaceReclaimed"].is_u64());
    let (code, _) = http(s, "GET", "/images/busybox/json", &[], b"");
    assert_eq!(code, 200, "prune took a tagged image");

    docker_cli(&d, &reg, &remote);
}

/// The docker CLI (28.x, on PATH) logging in, pushing and pulling through berth's daemon.
fn docker_cli(d: &Daemon, reg: &Registry, remote: &str) {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Client.Version}}"])
        .env("DOCKER_HOST", "unix:///nonexistent")
        .output();
    let major = version
        .as_ref()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split('.')
                .next()
                .map(str::to_string)
        })
        .and_then(|m| m.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if major < 23 {
        skip("a docker CLI 23 or newer is not on PATH");
        return;
    }
    let config = d.dir.path().join("docker-config");
    let docker = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new("docker");
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
            .env("DOCKER_CONFIG", &config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run docker");
        if let Some(mut si) = child.stdin.take() {
            if let Some(text) = stdin {
                si.write_all(text.as_bytes()).expect("docker stdin");
            }
        }
        let out = child.wait_with_output().expect("docker output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (rc, out) = docker(
        &["login", "-u", "tester", "--password-stdin", &reg.addr],
        Some("wrong\n"),
    );
    assert_ne!(rc, 0, "{out}");
    let (rc, out) = docker(
        &["login", "-u", "tester", "--password-stdin", &reg.addr],
        Some("s3cret\n"),
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let (rc, out) = docker(&["tag", "busybox:latest", &format!("{remote}:cli")], None);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = docker(&["push", &format!("{remote}:cli")], None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("cli: digest: sha256:"), "{out}");
    let (rc, out) = docker(&["rmi", &format!("{remote}:cli")], None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains(&format!("Untagged: {remote}:cli")), "{out}");
    let (rc, out) = docker(&["pull", &format!("{remote}:cli")], None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    let (rc, out) = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"], None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains(&format!("{remote}:cli")), "{out}");
    let (rc, out) = docker(&["pull", &format!("{remote}:nosuch")], None);
    assert_ne!(rc, 0, "{out}");
    let saved = d.dir.path().join("saved.tar");
    let saved_s = saved.display().to_string();
    let (rc, out) = docker(&["save", "-o", &saved_s, "busybox:latest"], None);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = docker(&["load", "-i", &saved_s], None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let (rc, out) = docker(&["history", "busybox:latest"], None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("from a test"), "{out}");
}
