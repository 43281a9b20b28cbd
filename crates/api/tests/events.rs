//! `/events` with a real daemon and real containers: Docker's action names and attributes
//! (exitCode, signal, labels, name, image, exec commands, volume mounts, image tags), the
//! deprecated fields, replay with `since`/`until` (unix seconds and RFC 3339), each filter,
//! a live stream, and the 400s for bad times and filters.
//! Needs root, overlayfs and the berth binary (for `berth shim`) built beside this test.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

mod common;
use common::{berth_bin, json, skip, start_daemon, Daemon};
use serde_json::{json as j, Value};

fn call(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::call(&d.sock, method, path, body)
}

fn ok(d: &Daemon, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
    let (code, v) = call(d, method, path, body);
    assert_eq!(code, want, "{method} {path}: {v}");
    v
}

fn daemon() -> Option<Daemon> {
    if !nix::unistd::geteuid().is_root() && skip("needs root") {
        return None;
    }
    let Some(berth) = berth_bin() else {
        if skip("target/debug/berth is not built (cargo build -p berth)") {
            return None;
        }
        unreachable!()
    };
    Some(start_daemon(&berth, "berth-events-test", true))
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn unix(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
}

/// The events between `since` and `until` (both past: the stream ends after the replay).
fn replay(d: &Daemon, since: &str, until: &str, filters: Option<Value>) -> Vec<Value> {
    let mut path = format!("/events?since={since}&until={until}");
    if let Some(f) = filters {
        path.push_str("&filters=");
        path.push_str(&urlencode(&f.to_string()));
    }
    let (code, out) = common::http(&d.sock, "GET", &path, &[], b"");
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json(l.as_bytes()))
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn actions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap_or("?"),
                e["Action"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn find<'a>(evs: &'a [Value], typ: &str, action: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["Type"] == typ && e["Action"] == action)
        .unwrap_or_else(|| panic!("no {typ} {action} in {:?}", actions(evs)))
}

#[test]
fn events_names_attributes_filters_and_replay() {
    let Some(d) = daemon() else { return };
    let t0 = now();
    let id = ok(
        &d,
        "POST",
        "/containers/create?name=ev-one",
        Some(j!({"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"],
                 "Labels": {"tier": "front", "team": "a"},
                 "HostConfig": {"Binds": ["ev-vol:/data"]}})),
        201,
    )["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    ok(&d, "POST", &format!("/containers/{id}/start"), None, 204);
    ok(&d, "POST", &format!("/containers/{id}/wait"), None, 200);

    let id2 = ok(
        &d,
        "POST",
        "/containers/create?name=ev-two",
        Some(j!({"Image": "busybox", "Cmd": ["sleep", "300"]})),
        201,
    )["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    ok(&d, "POST", &format!("/containers/{id2}/start"), None, 204);
    let exec = ok(
        &d,
        "POST",
        &format!("/containers/{id2}/exec"),
        Some(j!({"Cmd": ["sh", "-c", "exit 0"], "AttachStdout": true})),
        201,
    )["Id"]
        .as_str()
        .expect("exec Id")
        .to_string();
    ok(
        &d,
        "POST",
        &format!("/exec/{exec}/start"),
        Some(j!({"Detach": true})),
        200,
    );
    // the exec's end is reported by the shim after the start returns
    let mut done = false;
    for _ in 0..1200 {
        let v = ok(&d, "GET", &format!("/exec/{exec}/json"), None, 200);
        if v["Running"] == false && v["ExitCode"].is_i64() {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(done, "the exec did not finish");
    ok(&d, "POST", &format!("/containers/{id2}/pause"), None, 204);
    ok(&d, "POST", &format!("/containers/{id2}/unpause"), None, 204);
    ok(
        &d,
        "POST",
        &format!("/containers/{id2}/rename?name=ev-three"),
        None,
        204,
    );
    ok(
        &d,
        "POST",
        &format!("/containers/{id2}/kill?signal=SIGKILL"),
        None,
        204,
    );
    ok(&d, "POST", &format!("/containers/{id2}/wait"), None, 200);
    ok(&d, "DELETE", &format!("/containers/{id2}"), None, 204);
    ok(
        &d,
        "POST",
        "/images/busybox/tag?repo=evimg&tag=v1",
        None,
        201,
    );
    ok(&d, "DELETE", "/images/evimg:v1", None, 200);
    ok(&d, "DELETE", &format!("/containers/{id}"), None, 204);
    ok(&d, "DELETE", "/volumes/ev-vol", None, 204);
    let t1 = now();
    let (since, until) = (unix(t0), unix(t1));

    let all = replay(&d, &since, &until, None);
    let names = actions(&all);
    for want in [
        "volume create",
        "container create",
        "volume mount",
        "container start",
        "container die",
        "volume unmount",
        "container exec_create: sh -c exit 0",
        "container exec_start: sh -c exit 0",
        "container exec_die",
        "container pause",
        "container unpause",
        "container rename",
        "container kill",
        "container destroy",
        "image tag",
        "image untag",
        "volume destroy",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    // in order, and only ones from this range
    let pos = |w: &str| names.iter().position(|n| n == w).expect(w);
    assert!(pos("container create") < pos("container start"));
    assert!(pos("container start") < pos("container die"));
    for e in &all {
        let t = e["timeNano"].as_i64().expect("timeNano");
        assert!(t >= t0.timestamp_nanos_opt().unwrap_or(0), "{e}");
        assert_eq!(e["time"].as_i64(), Some(t / 1_000_000_000), "{e}");
        assert_eq!(e["scope"], "local", "{e}");
    }

    let create = find(&all, "container", "create");
    assert_eq!(create["Actor"]["ID"], id.as_str());
    let a = &create["Actor"]["Attributes"];
    assert_eq!(a["name"], "ev-one");
    assert_eq!(a["image"], "busybox");
    assert_eq!(a["tier"], "front");
    // the deprecated fields clients still read
    assert_eq!(create["status"], "create");
    assert_eq!(create["id"], id.as_str());
    assert_eq!(create["from"], "busybox");
    assert_eq!(
        find(&all, "container", "die")["Actor"]["Attributes"]["exitCode"],
        "3"
    );
    let kill = find(&all, "container", "kill");
    assert_eq!(kill["Actor"]["Attributes"]["signal"], "9");
    assert_eq!(kill["Actor"]["Attributes"]["name"], "ev-three");
    assert_eq!(
        find(&all, "container", "rename")["Actor"]["Attributes"]["oldName"],
        "/ev-two"
    );
    let mount = find(&all, "volume", "mount");
    assert_eq!(mount["Actor"]["ID"], "ev-vol");
    assert_eq!(mount["Actor"]["Attributes"]["container"], id.as_str());
    assert_eq!(mount["Actor"]["Attributes"]["destination"], "/data");
    assert_eq!(mount["Actor"]["Attributes"]["read/write"], "true");
    assert!(mount.get("status").is_none(), "{mount}");
    let tag = find(&all, "image", "tag");
    assert_eq!(tag["Actor"]["Attributes"]["name"], "evimg:v1");
    assert!(tag["Actor"]["ID"]
        .as_str()
        .is_some_and(|s| s.starts_with("sha256:")));
    assert_eq!(
        find(&all, "container", "exec_die")["Actor"]["Attributes"]["exitCode"],
        "0"
    );

    // the same range in RFC 3339
    let rfc = replay(
        &d,
        &urlencode(&t0.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        &urlencode(&t1.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        None,
    );
    assert_eq!(actions(&rfc), names);

    // filters
    let only = |f: Value| actions(&replay(&d, &since, &until, Some(f)));
    let vols = only(j!({"type": ["volume"]}));
    assert!(
        !vols.is_empty() && vols.iter().all(|n| n.starts_with("volume ")),
        "{vols:?}"
    );
    let two = only(j!({"type": ["volume", "image"]}));
    assert!(two.iter().any(|n| n.starts_with("image ")), "{two:?}");
    assert!(two.iter().all(|n| !n.starts_with("container ")), "{two:?}");
    let one = replay(&d, &since, &until, Some(j!({"container": ["ev-one"]})));
    assert!(!one.is_empty());
    assert!(
        one.iter().all(|e| e["Actor"]["ID"] == id.as_str()),
        "{:?}",
        actions(&one)
    );
    let by_id = only(j!({"container": [&id[..12]]}));
    assert_eq!(by_id, actions(&one));
    assert_eq!(only(j!({"event": ["die"]})), vec!["container die"; 2]);
    let execs = only(j!({"event": ["exec_start"]}));
    assert_eq!(execs, vec!["container exec_start: sh -c exit 0"]);
    let front = replay(&d, &since, &until, Some(j!({"label": ["tier=front"]})));
    assert!(!front.is_empty());
    assert!(front.iter().all(|e| e["Actor"]["ID"] == id.as_str()));
    assert_eq!(
        actions(&replay(&d, &since, &until, Some(j!({"label": ["tier"]})))),
        actions(&front)
    );
    assert!(only(j!({"label": ["tier=back"]})).is_empty());
    assert!(only(j!({"label": ["tier=front", "team=b"]})).is_empty());
    let img = only(j!({"image": ["busybox"]}));
    assert!(img.iter().any(|n| n == "container create"), "{img:?}");
    let evimg = only(j!({"image": ["evimg:v1"]}));
    assert_eq!(evimg, vec!["image tag"]);
    let vol = only(j!({"volume": ["ev-vol"]}));
    assert_eq!(
        vol,
        vec![
            "volume create",
            "volume mount",
            "volume unmount",
            "volume destroy"
        ]
    );
    assert!(only(j!({"network": ["nope"]})).is_empty());
    assert!(only(j!({"type": ["daemon"]})).is_empty());

    // until before since's events: nothing; since after them: nothing
    assert!(replay(
        &d,
        &unix(t1),
        &unix(now()),
        Some(j!({"type": ["container"]}))
    )
    .is_empty());
    // until alone replays the whole history up to then (as dockerd)
    let (code, out) = common::http(&d.sock, "GET", &format!("/events?until={until}"), &[], b"");
    assert_eq!(code, 200);
    let upto: Vec<Value> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| json(l.as_bytes()))
        .collect();
    // the history also holds the daemon's setup before t0 (common's import of busybox)
    let upto = actions(&upto);
    assert!(
        upto.ends_with(&names),
        "{upto:?} does not end with {names:?}"
    );
    let before = &upto[..upto.len() - names.len()];
    assert!(before.iter().all(|a| a == "image import"), "{before:?}");
}

#[test]
fn events_stream_live_and_refuse_bad_input() {
    let Some(d) = daemon() else { return };
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let f = urlencode(&j!({"type": ["container"], "event": ["create"]}).to_string());
    write!(
        s,
        "GET /events?filters={f} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    // the head comes once the daemon has subscribed
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("head");
        assert!(!line.is_empty(), "the daemon closed the stream");
        if line == "\r\n" {
            break;
        }
    }
    let id = ok(
        &d,
        "POST",
        "/containers/create?name=ev-live",
        Some(j!({"Image": "busybox", "Cmd": ["true"]})),
        201,
    )["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    let ev = loop {
        line.clear();
        r.read_line(&mut line).expect("an event");
        assert!(!line.is_empty(), "the stream ended before the event");
        if line.starts_with('{') {
            break json(line.trim().as_bytes());
        }
    };
    assert_eq!(ev["Action"], "create");
    assert_eq!(ev["Actor"]["ID"], id.as_str());
    assert_eq!(ev["Actor"]["Attributes"]["name"], "ev-live");
    drop(r);
    drop(s);

    for (path, what) in [
        (
            "/events?since=yesterday".to_string(),
            "invalid value for since",
        ),
        ("/events?until=1.2.3".to_string(), "invalid value for until"),
        (
            "/events?since=2000&until=1000".to_string(),
            "cannot be after",
        ),
        (
            format!("/events?filters={}", urlencode(r#"{"colour":["red"]}"#)),
            "invalid filter",
        ),
        (
            format!("/events?filters={}", urlencode(r#"{"type":["box"]}"#)),
            "invalid filter",
        ),
    ] {
        let (code, v) = call(&d, "GET", &path, None);
        assert_eq!(code, 400, "{path}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(what)),
            "{path}: {v}"
        );
    }
}

#[test]
fn events_of_stop_and_image_transfers() {
    let Some(d) = daemon() else { return };
    let t0 = now();
    let id = ok(
        &d,
        "POST",
        "/containers/create?name=ev-stop",
        Some(j!({"Image": "busybox", "Cmd": ["sleep", "300"]})),
        201,
    )["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    ok(&d, "POST", &format!("/containers/{id}/start"), None, 204);
    // sleep as PID 1 ignores SIGTERM: the stop escalates to SIGKILL after a second
    ok(&d, "POST", &format!("/containers/{id}/stop?t=1"), None, 204);
    ok(&d, "DELETE", &format!("/containers/{id}"), None, 204);

    let tar = std::fs::read(d.dir.path().join("bb.tar")).expect("read bb.tar");
    let (code, out) = common::http(
        &d.sock,
        "POST",
        "/images/create?fromSrc=-&repo=evimp&tag=v1&changes=LABEL%20evl%3Dyes",
        &[("Content-Type", "application/x-tar")],
        &tar,
    );
    assert_eq!(code, 200, "import: {}", String::from_utf8_lossy(&out));
    let image_id = json(String::from_utf8_lossy(&out).trim().as_bytes())["status"]
        .as_str()
        .expect("import status")
        .to_string();
    let (code, saved) = common::http(&d.sock, "GET", "/images/evimp:v1/get", &[], b"");
    assert_eq!(code, 200, "save");
    ok(&d, "DELETE", "/images/evimp:v1", None, 200);
    let (code, out) = common::http(
        &d.sock,
        "POST",
        "/images/load",
        &[("Content-Type", "application/x-tar")],
        &saved,
    );
    assert_eq!(code, 200, "load: {}", String::from_utf8_lossy(&out));
    let t1 = now();

    let all = replay(&d, &unix(t0), &unix(t1), None);
    let names = actions(&all);
    let kills: Vec<&str> = all
        .iter()
        .filter(|e| e["Action"] == "kill")
        .filter_map(|e| e["Actor"]["Attributes"]["signal"].as_str())
        .collect();
    assert_eq!(kills, vec!["15", "9"], "{names:?}");
    let pos = |w: &str| names.iter().position(|n| n == w).expect(w);
    assert!(pos("container kill") < pos("container stop"), "{names:?}");
    let die = find(&all, "container", "die");
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "137");
    assert!(
        die["Actor"]["Attributes"]["execDuration"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{die}"
    );
    let images: Vec<(String, String)> = all
        .iter()
        .filter(|e| e["Type"] == "image")
        .map(|e| {
            (
                e["Action"].as_str().unwrap_or("").to_string(),
                e["Actor"]["ID"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = ["import", "save", "untag", "delete", "load"]
        .iter()
        .map(|a| (a.to_string(), image_id.clone()))
        .collect();
    assert_eq!(images, want);
    assert_eq!(find(&all, "image", "import")["status"], "import");
    // the image's labels travel with its events, as dockerd sends them
    for a in ["import", "save", "untag"] {
        let ev = find(&all, "image", a);
        assert_eq!(ev["Actor"]["Attributes"]["evl"], "yes", "{a}: {ev}");
    }
}
