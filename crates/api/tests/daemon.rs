//! The daemon started in-process (berth-api's `run`), driven over its unix socket with plain
//! HTTP: version negotiation, a container's life through the API, and Docker's error shapes.
//! Needs root, overlayfs and the berth binary (for `berth shim`) built beside this test.

use std::path::Path;

mod common;
use common::{json, start_daemon};

/// One request with a JSON body (or none).
fn http(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    Ok(common::http(
        sock,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.unwrap_or(b""),
    ))
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
    let Some(berth) = common::net::berth_or_skip() else {
        return;
    };
    let d = start_daemon(&berth, "berth-api-test", true);
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

    // A network namespace of its own (here --network none) has loopback up, as Docker's.
    let req = br#"{"Image":"busybox","Cmd":["ip","-o","link","show","lo"],"HostConfig":{"NetworkMode":"none"}}"#;
    let (code, body) = http(s, "POST", "/containers/create", Some(req)).unwrap();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let lo_id = json(&body)["Id"].as_str().unwrap().to_string();
    let (code, _) = http(s, "POST", &format!("/containers/{lo_id}/start"), None).unwrap();
    assert_eq!(code, 204);
    let (_, body) = http(s, "POST", &format!("/containers/{lo_id}/wait"), None).unwrap();
    assert_eq!(json(&body)["StatusCode"], 0);
    let (_, body) = http(
        s,
        "GET",
        &format!("/containers/{lo_id}/logs?stdout=1"),
        None,
    )
    .unwrap();
    let (out, _) = demux(&body);
    assert!(out.contains(",UP"), "lo is not up: {out:?}");
    let (code, _) = http(s, "DELETE", &format!("/containers/{lo_id}"), None).unwrap();
    assert_eq!(code, 204);

    // --init: PID 1 is berth's init, and shows itself as that, not as the shim it was forked
    // from (whose command line names host paths).
    let req = br#"{"Image":"busybox","Cmd":["sh","-c","tr '\\0' ' ' </proc/1/cmdline; echo; cat /proc/1/comm"],"HostConfig":{"Init":true}}"#;
    let (code, body) = http(s, "POST", "/containers/create", Some(req)).unwrap();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let init_id = json(&body)["Id"].as_str().unwrap().to_string();
    let (code, _) = http(s, "POST", &format!("/containers/{init_id}/start"), None).unwrap();
    assert_eq!(code, 204);
    let (_, body) = http(s, "POST", &format!("/containers/{init_id}/wait"), None).unwrap();
    assert_eq!(json(&body)["StatusCode"], 0);
    let (_, body) = http(
        s,
        "GET",
        &format!("/containers/{init_id}/logs?stdout=1"),
        None,
    )
    .unwrap();
    let (out, _) = demux(&body);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().map(str::trim_end),
        Some("berth-init -- sh -c tr '\\0' ' ' </proc/1/cmdline; echo; cat /proc/1/comm"),
        "{out:?}"
    );
    assert_eq!(lines.next(), Some("berth-init"), "{out:?}");
    let (code, _) = http(s, "DELETE", &format!("/containers/{init_id}"), None).unwrap();
    assert_eq!(code, 204);

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
    // (the daemon's own prepared network namespaces, netns-pool/, are no container's)
    assert!(
        !mi.lines()
            .filter(|l| !l.contains("/netns-pool/"))
            .any(|l| l.contains(&*d.dir.path().to_string_lossy())),
        "a container mount was left behind"
    );
}

/// A container whose record is gone but whose directory is still there (a daemon that ended
/// in the middle of a removal's clean-up, which follows the record's deletion) is cleared
/// when the next daemon starts.
#[test]
fn a_removal_cut_short_is_finished_at_the_next_start() {
    use std::time::{Duration, Instant};
    let Some(berth) = common::net::berth_or_skip() else {
        return;
    };
    let id = "5a".repeat(32);
    let mut left = std::path::PathBuf::new();
    let d = common::start_daemon_with(&berth, "berth-sweep-test", false, |cfg| {
        let dir = cfg.data_root.join("containers").join(&id);
        std::fs::create_dir_all(dir.join("rootfs")).expect("the leftover directory");
        std::fs::write(dir.join("hostname"), "5a5a5a5a5a5a\n").expect("a leftover file");
        left = dir;
    });
    let containers = d.dir.path().join("data/containers");
    let t0 = Instant::now();
    // renamed into the trash at start, then deleted by its worker
    let gone = || {
        std::fs::read_dir(&containers)
            .expect("list the containers' directory")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(&id))
    };
    while !gone() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!left.exists(), "{} is still there", left.display());
    assert!(gone(), "the leftover is still in the trash");
    // and the daemon serves, with no container listed
    let (code, body) = http(&d.sock, "GET", "/containers/json?all=1", None).unwrap();
    assert_eq!((code, json(&body)), (200, serde_json::json!([])));
}

/// berth's CLI asks at create (`?berth-start=1`) for the start to begin at once, and sends
/// its attach, wait and start after: all three come too late here (the container has run and
/// exited before any of them), and still the attach gets the whole output, the wait the exit
/// code of a container already removed (--rm), and the start the start's outcome.
#[test]
fn a_start_begun_at_create_keeps_output_and_exit_for_its_client() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};
    let Some(berth) = common::net::berth_or_skip() else {
        return;
    };
    let d = start_daemon(&berth, "berth-early-test", true);
    let body = serde_json::json!({
        "Image": "busybox",
        "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"],
        "AttachStdout": true,
        "AttachStderr": true,
        "HostConfig": {"AutoRemove": true, "NetworkMode": "none"},
    })
    .to_string();
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    write!(
        s,
        "POST /containers/create?berth-start=1 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send create");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read create's answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "create: {answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nberth-started: 1\r\n"),
        "no berth-started header: {answer}"
    );
    let v = json(answer.split("\r\n\r\n").nth(1).expect("a body").as_bytes());
    let id = v["Id"].as_str().expect("Id").to_string();
    // The process runs now; its output (and so its exit) is held for the announced attach.
    std::thread::sleep(Duration::from_millis(500));
    let mut a = UnixStream::connect(&d.sock).expect("connect");
    write!(
        a,
        "POST /containers/{id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: b\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send attach");
    a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut raw = Vec::new();
    a.read_to_end(&mut raw).expect("read the attached stream");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the attach's head");
    assert!(
        raw.starts_with(b"HTTP/1.1 101"),
        "attach: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let (out, err) = demux(&raw[split + 4..]);
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    // --rm: once the output is taken the container ends and is removed...
    let t0 = Instant::now();
    loop {
        let (code, _) = http(&d.sock, "GET", &format!("/containers/{id}/json"), None).unwrap();
        if code == 404 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "not removed: {code}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and the wait its client announced still gets the exit code
    let (code, b) = http(
        &d.sock,
        "POST",
        &format!("/containers/{id}/wait?condition=removed"),
        None,
    )
    .unwrap();
    assert_eq!(
        (code, json(&b)["StatusCode"].clone()),
        (200, serde_json::json!(3))
    );
    let (code, b) = http(&d.sock, "POST", &format!("/containers/{id}/start"), None).unwrap();
    assert_eq!(code, 204, "start: {}", String::from_utf8_lossy(&b));
    // a second wait or start is anyone's: the container is gone
    let (code, _) = http(&d.sock, "POST", &format!("/containers/{id}/start"), None).unwrap();
    assert_eq!(code, 404);
    let (code, _) = http(
        &d.sock,
        "POST",
        &format!("/containers/{id}/wait?condition=removed"),
        None,
    )
    .unwrap();
    assert_eq!(code, 404);
}
