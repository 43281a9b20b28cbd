//! The rest of the day through the API of a real daemon: stats against the cgroup files,
//! update written to the cgroup, cp (the archive API) with a hostile symlink both ways,
//! export, diff, commit (the image runs and keeps the change), prune filters, system df, and
//! OOMKilled with the oom event. Needs root, overlayfs, cgroups and target/debug/berth.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{berth_bin, json, skip, start_daemon, Daemon};

fn req(d: &Daemon, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    common::http(
        &d.sock,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
}

/// `HEAD`: common::http would wait for a body that never comes; read the head only.
fn head(d: &Daemon, path: &str) -> (u16, String) {
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn setup(prefix: &str) -> Option<Daemon> {
    if !nix::unistd::geteuid().is_root() && skip("needs root") {
        return None;
    }
    let Some(berth) = berth_bin() else {
        if skip("target/debug/berth is not built (cargo build -p berth)") {
            return None;
        }
        unreachable!()
    };
    Some(start_daemon(&berth, prefix, true))
}

/// Creates and starts a busybox container running `script`; returns its ID.
fn run(d: &Daemon, name: &str, script: &str, host_config: serde_json::Value) -> String {
    let body = serde_json::json!({
        "Image": "busybox",
        "Cmd": ["sh", "-c", script],
        "Labels": {"dayops": name},
        "HostConfig": host_config,
    });
    let (code, b) = req(
        d,
        "POST",
        &format!("/containers/create?name={name}"),
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "create {name}: {}", String::from_utf8_lossy(&b));
    let id = json(&b)["Id"].as_str().expect("Id").to_string();
    let (code, b) = req(d, "POST", &format!("/containers/{id}/start"), b"");
    assert_eq!(code, 204, "start {name}: {}", String::from_utf8_lossy(&b));
    id
}

fn wait(d: &Daemon, id: &str) -> i64 {
    let (code, b) = req(d, "POST", &format!("/containers/{id}/wait"), b"");
    assert_eq!(code, 200, "wait: {}", String::from_utf8_lossy(&b));
    json(&b)["StatusCode"].as_i64().expect("StatusCode")
}

/// The container's file in the cgroup hierarchy this host has.
fn cg(id: &str, v1_controller: &str, v1_file: &str, v2_file: &str) -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if unified {
        PathBuf::from(format!("/sys/fs/cgroup/berth/{id}/{v2_file}"))
    } else {
        PathBuf::from(format!(
            "/sys/fs/cgroup/{v1_controller}/berth/{id}/{v1_file}"
        ))
    }
}

fn read_u64(p: &Path) -> u64 {
    let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    t.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {t:?}: {e}", p.display()))
}

/// Waits (bounded) until the container's script has made `path` (HEAD says 200).
fn wait_for_path(d: &Daemon, id: &str, path: &str) {
    for _ in 0..300 {
        if head(d, &format!("/containers/{id}/archive?path={path}")).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{path} never appeared in container {id}");
}

fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, typ, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*typ);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        // set_path refuses `..`: write the raw name, as a hostile client would.
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        if let Some(l) = link {
            h.set_link_name(l).expect("link name");
        }
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn tar_names(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn tar_file(data: &[u8], want: &str) -> Option<String> {
    let mut a = tar::Archive::new(data);
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_string_lossy() == want {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read entry");
            return Some(s);
        }
    }
    None
}

#[test]
fn stats_match_the_cgroup_files_and_update_writes_them() {
    let Some(d) = setup("berth-dayops-stats") else {
        return;
    };
    let id = run(&d, "dayops-stats", "sleep 1000", serde_json::json!({}));

    let usage_file = cg(&id, "memory", "memory.usage_in_bytes", "memory.current");
    let pids_file = cg(&id, "pids", "pids.current", "pids.current");
    let before = read_u64(&usage_file);
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/stats?stream=false&one-shot=true"),
        b"",
    );
    let after = read_u64(&usage_file);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    let v = json(&b);
    let usage = v["memory_stats"]["usage"].as_u64().expect("memory usage");
    // The counter moves both ways while it is read (v1's usage_in_bytes is batched per CPU,
    // up to 32 pages each), so the API's value may fall a little outside the two readings.
    let slack = 256 * 1024;
    assert!(
        before.min(after).saturating_sub(slack) <= usage && usage <= before.max(after) + slack,
        "memory usage {usage} outside [{before}, {after}] (± 256 KiB) of {}",
        usage_file.display()
    );
    assert_eq!(
        v["pids_stats"]["current"].as_u64(),
        Some(read_u64(&pids_file))
    );
    assert!(v["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .is_some());
    assert!(v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0);
    assert!(v["cpu_stats"]["online_cpus"].as_u64().unwrap_or(0) >= 1);
    assert!(v["memory_stats"]["stats"].is_object());
    assert!(v["blkio_stats"].is_object());
    assert_eq!(v["name"], "/dayops-stats");

    // Without one-shot, two samples: precpu is the earlier one.
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/stats?stream=false"),
        b"",
    );
    assert_eq!(code, 200);
    let v = json(&b);
    let pre = v["precpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0);
    let cur = v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0);
    assert!(pre > 0 && cur > pre, "precpu {pre} cpu {cur}");

    // A stream gives one JSON document per sample; read two and hang up.
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /containers/{id}/stats HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got.windows(6).filter(|w| w == b"\"read\"").count() < 2 {
        let n = s.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stats stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);

    // update: the cgroup files change now, and inspect shows the new HostConfig.
    let (code, b) = req(
        &d,
        "POST",
        &format!("/containers/{id}/update"),
        br#"{"Memory":67108864,"MemorySwap":134217728,"CpuShares":512,"PidsLimit":50}"#,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(
        read_u64(&cg(&id, "memory", "memory.limit_in_bytes", "memory.max")),
        67108864
    );
    assert_eq!(read_u64(&cg(&id, "pids", "pids.max", "pids.max")), 50);
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(read_u64(&cg(&id, "cpu", "cpu.shares", "")), 512);
    }
    let (_, b) = req(&d, "GET", &format!("/containers/{id}/json"), b"");
    let v = json(&b);
    assert_eq!(v["HostConfig"]["Memory"], 67108864);
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/stats?stream=false&one-shot=1"),
        b"",
    );
    assert_eq!(code, 200);
    assert_eq!(json(&b)["memory_stats"]["limit"], 67108864);
    assert_eq!(json(&b)["pids_stats"]["limit"], 50);

    // Bad input: 400 with a message, nothing changed.
    let (code, b) = req(
        &d,
        "POST",
        &format!("/containers/{id}/update"),
        br#"{"Memory":1024}"#,
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    assert!(json(&b)["message"].as_str().is_some());
    assert_eq!(
        read_u64(&cg(&id, "memory", "memory.limit_in_bytes", "memory.max")),
        67108864
    );
    let (code, _) = req(
        &d,
        "POST",
        "/containers/nope/update",
        br#"{"Memory":67108864}"#,
    );
    assert_eq!(code, 404);
    let (code, _) = req(&d, "GET", "/containers/nope/stats?stream=false", b"");
    assert_eq!(code, 404);
}

#[test]
fn cp_stays_inside_the_container_both_ways_and_export_has_the_files() {
    let Some(d) = setup("berth-dayops-cp") else {
        return;
    };
    let marker = format!("berth-dayops-{}", std::process::id());
    let script = format!(
        "ln -s /etc /x; ln -s ../../../../../../etc /rel; echo inside > /etc/{marker}; touch /ready; sleep 1000"
    );
    let id = run(&d, "dayops-cp", &script, serde_json::json!({}));
    wait_for_path(&d, &id, "/ready");

    // HEAD: the symlink itself, its target inside the container.
    let (code, h) = head(&d, &format!("/containers/{id}/archive?path=/x"));
    assert_eq!(code, 200, "{h}");
    let line = h
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-docker-container-path-stat:")
        })
        .expect("stat header");
    let b64 = line.split_once(':').expect("header").1.trim();
    use base64::Engine as _;
    let stat: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("stat json");
    assert_eq!(stat["name"], "x");
    assert_eq!(stat["linkTarget"], "/etc");
    assert_ne!(stat["mode"].as_u64().unwrap_or(0) & (1 << 27), 0, "{stat}");

    // GET through the symlinks: the container's /etc, never the host's.
    for p in [format!("/x/{marker}"), format!("/rel/{marker}")] {
        let (code, b) = req(
            &d,
            "GET",
            &format!("/containers/{id}/archive?path={p}"),
            b"",
        );
        assert_eq!(code, 200, "{p}: {}", String::from_utf8_lossy(&b));
        assert_eq!(tar_file(&b, &marker).as_deref(), Some("inside\n"), "{p}");
    }
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/archive?path=/x/passwd"),
        b"",
    );
    assert_eq!(code, 200);
    let theirs = tar_file(&b, "passwd").expect("passwd");
    let host = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    assert_ne!(theirs, host, "/x/passwd was the host's /etc/passwd");
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/archive?path=/x/shadow-nope"),
        b"",
    );
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&b));
    assert!(json(&b)["message"].as_str().is_some());

    // PUT through the symlink lands in the container's /etc.
    let put_name = format!("{marker}-put");
    let t = tar_of(&[(&put_name, tar::EntryType::Regular, b"put\n", None)]);
    let (code, b) = req(&d, "PUT", &format!("/containers/{id}/archive?path=/x/"), &t);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    assert!(
        !Path::new("/etc").join(&put_name).exists(),
        "written to the host's /etc"
    );
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/archive?path=/etc/{put_name}"),
        b"",
    );
    assert_eq!(code, 200);
    assert_eq!(tar_file(&b, &put_name).as_deref(), Some("put\n"));

    // Hostile archives: `..`, and a write through a symlink the archive itself made.
    let evil = format!("{marker}-evil");
    let dotdot = format!("../../../../etc/{evil}");
    let t = tar_of(&[(&dotdot, tar::EntryType::Regular, b"evil\n", None)]);
    let (code, b) = req(
        &d,
        "PUT",
        &format!("/containers/{id}/archive?path=/tmp"),
        &t,
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    let through = format!("l/{evil}");
    let t = tar_of(&[
        ("l", tar::EntryType::Symlink, b"", Some("/etc")),
        (&through, tar::EntryType::Regular, b"evil\n", None),
    ]);
    let (code, b) = req(
        &d,
        "PUT",
        &format!("/containers/{id}/archive?path=/tmp"),
        &t,
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    assert!(
        !Path::new("/etc").join(&evil).exists(),
        "written to the host's /etc"
    );
    let (code, _) = req(
        &d,
        "GET",
        &format!("/containers/{id}/archive?path=/etc/{evil}"),
        b"",
    );
    assert_eq!(
        code, 404,
        "written outside the destination in the container"
    );

    // noOverwriteDirNonDir: a file may not replace /etc.
    let t = tar_of(&[("etc", tar::EntryType::Regular, b"x", None)]);
    let (code, _) = req(
        &d,
        "PUT",
        &format!("/containers/{id}/archive?path=/&noOverwriteDirNonDir=true"),
        &t,
    );
    assert_eq!(code, 400);
    let (code, _) = req(&d, "PUT", "/containers/nope/archive?path=/", &t);
    assert_eq!(code, 404);
    let body = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"ReadonlyRootfs":true}}"#;
    let (code, b) = req(&d, "POST", "/containers/create?name=dayops-ro", body);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let t = tar_of(&[("f", tar::EntryType::Regular, b"x", None)]);
    let (code, b) = req(&d, "PUT", "/containers/dayops-ro/archive?path=/tmp", &t);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));

    // Stopped: the rootfs is mounted for the copy, export has the files.
    let (code, _) = req(&d, "POST", &format!("/containers/{id}/stop?t=1"), b"");
    assert_eq!(code, 204);
    let (code, b) = req(
        &d,
        "GET",
        &format!("/containers/{id}/archive?path=/etc/{marker}"),
        b"",
    );
    assert_eq!(code, 200);
    assert_eq!(tar_file(&b, &marker).as_deref(), Some("inside\n"));
    let (code, b) = req(&d, "GET", &format!("/containers/{id}/export"), b"");
    assert_eq!(code, 200);
    let names = tar_names(&b);
    for want in [
        "bin/busybox",
        "etc/passwd",
        &format!("etc/{marker}"),
        &format!("etc/{put_name}"),
        "x",
    ] {
        assert!(names.iter().any(|n| n == want), "export lacks {want}");
    }
    assert_eq!(
        tar_file(&b, &format!("etc/{marker}")).as_deref(),
        Some("inside\n")
    );
}

#[test]
fn diff_and_commit_keep_the_change() {
    let Some(d) = setup("berth-dayops-commit") else {
        return;
    };
    let id = run(
        &d,
        "dayops-commit",
        "echo kept > /newfile; rm /etc/group; echo x >> /etc/passwd",
        serde_json::json!({}),
    );
    assert_eq!(wait(&d, &id), 0);
    let (code, b) = req(&d, "GET", &format!("/containers/{id}/changes"), b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    let changes = json(&b);
    let kind = |p: &str| {
        changes
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["Path"] == p)
            .and_then(|c| c["Kind"].as_i64())
    };
    assert_eq!(kind("/newfile"), Some(1), "{changes}");
    assert_eq!(kind("/etc/group"), Some(2), "{changes}");
    assert_eq!(kind("/etc/passwd"), Some(0), "{changes}");
    assert_eq!(kind("/etc"), Some(0), "{changes}");

    let (code, b) = req(
        &d,
        "POST",
        &format!("/commit?container={id}&repo=dayops-committed&tag=v1&comment=hello&author=Dayops%20Tester&changes=CMD%20%5B%22cat%22%2C%22%2Fnewfile%22%5D&changes=ENV%20DAYOPS%3D1"),
        b"",
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let image = json(&b)["Id"].as_str().expect("Id").to_string();
    let (code, b) = req(&d, "GET", "/images/dayops-committed:v1/json", b"");
    assert_eq!(code, 200);
    let v = json(&b);
    assert_eq!(v["Id"], image.as_str());
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["cat", "/newfile"]));
    assert_eq!(v["Author"], "Dayops Tester", "{v}");
    assert_eq!(v["Comment"], "hello", "{v}");
    assert!(v["Config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == "DAYOPS=1")));

    // The new image runs, with the change and without the deletion.
    let body = br#"{"Image":"dayops-committed:v1"}"#;
    let (code, b) = req(
        &d,
        "POST",
        "/containers/create?name=dayops-from-commit",
        body,
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let id2 = json(&b)["Id"].as_str().expect("Id").to_string();
    let (code, _) = req(&d, "POST", &format!("/containers/{id2}/start"), b"");
    assert_eq!(code, 204);
    assert_eq!(wait(&d, &id2), 0);
    let (_, logs) = req(&d, "GET", &format!("/containers/{id2}/logs?stdout=1"), b"");
    assert!(String::from_utf8_lossy(&logs).contains("kept"));
    let (code, _) = req(
        &d,
        "GET",
        &format!("/containers/{id2}/archive?path=/etc/group"),
        b"",
    );
    assert_eq!(code, 404, "the deletion was not kept");

    let (code, _) = req(&d, "POST", "/commit?container=nope", b"");
    assert_eq!(code, 404);
    let (code, _) = req(
        &d,
        "POST",
        &format!("/commit?container={id}&repo=BAD%20NAME"),
        b"",
    );
    assert_eq!(code, 400);

    // system df: the images and containers, with sizes; no volumes yet.
    let (code, b) = req(&d, "GET", "/system/df", b"");
    assert_eq!(code, 200);
    let v = json(&b);
    assert!(v["LayersSize"].as_i64().unwrap_or(0) > 0);
    assert_eq!(v["Images"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["Containers"].as_array().map(Vec::len), Some(2));
    assert!(v["Containers"][0]["SizeRw"].is_i64());
    assert_eq!(v["Volumes"], serde_json::json!([]));

    // prune filters: label! keeps one, label takes the other.
    let f = "%7B%22label%21%22%3A%5B%22dayops%3Ddayops-commit%22%5D%7D"; // {"label!":["dayops=dayops-commit"]}
    let (code, b) = req(&d, "POST", &format!("/containers/prune?filters={f}"), b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    let deleted = json(&b)["ContainersDeleted"].clone();
    assert_eq!(deleted, serde_json::json!([id2]), "{deleted}");
    let f = "%7B%22until%22%3A%5B%221000000000%22%5D%7D"; // {"until":["1000000000"]}: 2001
    let (_, b) = req(&d, "POST", &format!("/containers/prune?filters={f}"), b"");
    assert_eq!(json(&b)["ContainersDeleted"], serde_json::json!([]));
    let f = "%7B%22label%22%3A%5B%22dayops%3Ddayops-commit%22%5D%7D";
    let (_, b) = req(&d, "POST", &format!("/containers/prune?filters={f}"), b"");
    assert_eq!(json(&b)["ContainersDeleted"], serde_json::json!([id]));
    let (code, _) = req(
        &d,
        "POST",
        "/containers/prune?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        b"",
    );
    assert_eq!(code, 400);
    // images: the committed image has no label "x", so label=x prunes nothing.
    let f = "%7B%22dangling%22%3A%5B%22false%22%5D%2C%22label%22%3A%5B%22x%22%5D%7D";
    let (code, b) = req(&d, "POST", &format!("/images/prune?filters={f}"), b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["ImagesDeleted"], serde_json::json!([]));
    let (code, _) = req(&d, "GET", "/images/dayops-committed:v1/json", b"");
    assert_eq!(code, 200);
}

#[test]
fn an_oom_kill_sets_oomkilled_and_sends_the_oom_event() {
    let Some(d) = setup("berth-dayops-oom") else {
        return;
    };
    let body = serde_json::json!({
        "Image": "busybox",
        "Cmd": ["sh", "-c", "head -c 200m /dev/zero | tail"],
        "HostConfig": {"Memory": 16777216, "MemorySwap": 16777216},
    });
    let (code, b) = req(
        &d,
        "POST",
        "/containers/create?name=dayops-oom",
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let id = json(&b)["Id"].as_str().expect("Id").to_string();

    let mut ev = UnixStream::connect(&d.sock).expect("connect");
    ev.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        ev,
        "GET /events?filters=%7B%22container%22%3A%5B%22{id}%22%5D%7D HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    // The subscription is made once the answer's head arrives.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = ev.read(&mut buf).expect("events head");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let (code, b) = req(&d, "POST", &format!("/containers/{id}/start"), b"");
    assert_eq!(code, 204, "{}", String::from_utf8_lossy(&b));
    assert_ne!(wait(&d, &id), 0);
    let (_, b) = req(&d, "GET", &format!("/containers/{id}/json"), b"");
    let v = json(&b);
    assert_eq!(v["State"]["OOMKilled"], true, "{}", v["State"]);
    let text = |g: &[u8]| String::from_utf8_lossy(g).into_owned();
    while !text(&got).contains("\"Action\":\"die\"") {
        let n = ev.read(&mut buf).expect("events");
        assert!(n > 0, "the event stream ended before die: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let t = text(&got);
    let oom = t.find("\"Action\":\"oom\"").expect("an oom event");
    let die = t.find("\"Action\":\"die\"").expect("a die event");
    assert!(oom < die, "oom comes before die: {t}");
}

/// A client still sending the tail of its archive (the end-of-archive blocks, padding) when
/// the daemon has what it needs gets the answer after the whole body, not a closed
/// connection: the docker CLI's `cp` failed with "write: broken pipe" now and then.
#[test]
fn archive_put_reads_the_whole_body_before_answering() {
    let Some(d) = setup("berth-dayops-tail") else {
        return;
    };
    let id = run(
        &d,
        "dayops-tail",
        "touch /ready; sleep 1000",
        serde_json::json!({}),
    );
    wait_for_path(&d, &id, "/ready");
    let t = tar_of(&[("tail-file", tar::EntryType::Regular, b"tail\n", None)]);
    // the first end-of-archive block ends what the daemon reads for the files
    let cut = t.len() - 512 * 2 + 512;
    // more than the sockets' buffers hold, less than what the daemon drains (1 MiB)
    let tail_len = (t.len() - cut) + 900 * 1024;
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "PUT /containers/{id}/archive?path=/tmp HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        cut + tail_len
    )
    .expect("send the head");
    s.write_all(&t[..cut]).expect("send the archive");
    // long enough for the daemon to have extracted the file and, before the fix, answered
    std::thread::sleep(Duration::from_millis(500));
    let mut tail = t[cut..].to_vec();
    tail.resize(tail_len, 0);
    s.write_all(&tail)
        .expect("the daemon closed the connection before the body's end");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (code, h) = head(&d, &format!("/containers/{id}/archive?path=/tmp/tail-file"));
    assert_eq!(code, 200, "the file was not written: {h}");
}

/// The mount options of the overlay at `target`, from the host's mount table.
fn mount_options(target: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let t = target.to_string_lossy();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(&*t))
        .and_then(|l| l.split(" - ").nth(1))
        .map(str::to_string)
}

#[test]
fn a_container_removed_on_exit_has_a_volatile_layer_and_others_do_not() {
    let Some(d) = setup("berth-dayops-vol") else {
        return;
    };
    let rootfs = |id: &str| d.dir.path().join("data/containers").join(id).join("rootfs");
    let rm = run(
        &d,
        "dayops-rm",
        "touch /ready; sleep 1000",
        serde_json::json!({"AutoRemove": true}),
    );
    let kept = run(
        &d,
        "dayops-kept",
        "touch /ready; sleep 1000",
        serde_json::json!({}),
    );
    wait_for_path(&d, &rm, "/ready");
    wait_for_path(&d, &kept, "/ready");
    let o = mount_options(&rootfs(&rm)).expect("the --rm container's rootfs is mounted");
    let volatile = |o: &str| {
        o.split(',')
            .any(|x| x == "volatile" || x == "fsync=volatile")
    };
    assert!(volatile(&o), "--rm: {o}");
    let o = mount_options(&rootfs(&kept)).expect("the other container's rootfs is mounted");
    assert!(!volatile(&o), "no --rm: {o}");
    // ended, the --rm one goes with its mount; the other one's layer mounts again after
    // its stop (a restart)
    for id in [&rm, &kept] {
        let (code, b) = req(&d, "POST", &format!("/containers/{id}/kill"), b"");
        assert_eq!(code, 204, "kill: {}", String::from_utf8_lossy(&b));
    }
    let (code, _) = req(
        &d,
        "POST",
        &format!("/containers/{rm}/wait?condition=removed"),
        b"",
    );
    assert!(code == 200 || code == 404, "wait removed: {code}");
    assert_eq!(mount_options(&rootfs(&rm)), None);
    wait(&d, &kept);
    let (code, b) = req(&d, "POST", &format!("/containers/{kept}/start"), b"");
    assert_eq!(code, 204, "start again: {}", String::from_utf8_lossy(&b));
    wait_for_path(&d, &kept, "/ready");
}
