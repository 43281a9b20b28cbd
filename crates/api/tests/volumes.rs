//! Volumes through the API, with real containers: `/volumes` (create, list and its filters,
//! inspect, remove, prune), each mount form of a create request (`-v name:/p`, `-v /host:/p`,
//! `-v /p`, `--mount type=bind|volume|tmpfs`, `--tmpfs`, `--volumes-from`, the image's
//! VOLUME), the 409 on removing a volume in use, `rm -v`, bad names and a missing `--mount`
//! bind source, and the copy of an image's files into a new volume (owners, modes, links,
//! xattrs; once; never through a symlink out of the root; never into a bind).
//! Needs root, overlayfs and the berth binary (for `berth shim`) built beside this test.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

mod common;
use common::{berth_bin, skip, start_daemon, Daemon};
use serde_json::{json as j, Value};

fn call(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::call(&d.sock, method, path, body)
}

fn create(d: &Daemon, body: Value) -> String {
    let (code, v) = call(d, "POST", "/containers/create", Some(body));
    assert_eq!(code, 201, "create: {v}");
    v["Id"].as_str().expect("Id").to_string()
}

/// Creates, starts and waits for a container; returns its id, exit code and output.
fn run(d: &Daemon, body: Value) -> (String, i64, String) {
    let id = create(d, body);
    let (code, v) = call(d, "POST", &format!("/containers/{id}/start"), None);
    assert_eq!(code, 204, "start: {v}");
    let (code, v) = call(d, "POST", &format!("/containers/{id}/wait"), None);
    assert_eq!(code, 200, "wait: {v}");
    let status = v["StatusCode"].as_i64().expect("StatusCode");
    let (_, raw) = common::http(
        &d.sock,
        "GET",
        &format!("/containers/{id}/logs?stdout=1&stderr=1"),
        &[],
        b"",
    );
    (id, status, demux(&raw))
}

fn demux(mut b: &[u8]) -> String {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        out.extend_from_slice(&b[8..8 + n]);
        b = &b[8 + n..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sh(image: &str, script: &str, host_config: Value) -> Value {
    j!({"Image": image, "Cmd": ["sh", "-c", script], "HostConfig": host_config})
}

fn volume_names(d: &Daemon, filters: &str) -> Vec<String> {
    let path = if filters.is_empty() {
        "/volumes".to_string()
    } else {
        format!("/volumes?filters={}", urlencode(filters))
    };
    let (code, v) = call(d, "GET", &path, None);
    assert_eq!(code, 200, "list volumes: {v}");
    assert!(v["Warnings"].is_array(), "Warnings: {v}");
    let mut n: Vec<String> = v["Volumes"]
        .as_array()
        .expect("Volumes")
        .iter()
        .map(|x| x["Name"].as_str().expect("Name").to_string())
        .collect();
    n.sort();
    n
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn mounts_of(d: &Daemon, id: &str) -> Vec<Value> {
    let (code, v) = call(d, "GET", &format!("/containers/{id}/json"), None);
    assert_eq!(code, 200, "inspect: {v}");
    v["Mounts"].as_array().expect("Mounts").clone()
}

fn container_count(d: &Daemon) -> usize {
    let (_, v) = call(d, "GET", "/containers/json?all=1", None);
    v.as_array().map(Vec::len).unwrap_or(0)
}

/// Unmounts what volumes with `type=` options left mounted under the data root, also when a
/// test fails before it removes them (the tempdir could not be removed otherwise).
struct UnmountVolumes(std::path::PathBuf);

impl Drop for UnmountVolumes {
    fn drop(&mut self) {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.0.to_string_lossy().into_owned();
        let mut points: Vec<&str> = table
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
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
    Some(start_daemon(&berth, "berth-volumes-test", true))
}

#[test]
fn volumes_api_names_filters_and_removal() {
    let Some(d) = daemon() else { return };
    let data = d.dir.path().join("data");
    let _unmount = UnmountVolumes(data.join("volumes"));

    let (code, v) = call(
        &d,
        "POST",
        "/volumes/create",
        Some(j!({"Name": "data1", "Labels": {"team": "db", "tier": "x"}})),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["Name"], "data1");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "db");
    let mp = data.join("volumes/data1/_data");
    assert_eq!(v["Mountpoint"], mp.to_str().expect("utf-8"));
    assert!(mp.is_dir());
    assert!(v["CreatedAt"].as_str().is_some_and(|s| s.starts_with("20")));
    let mode = std::fs::metadata(data.join("volumes"))
        .expect("volumes dir")
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // creating it again returns the same volume
    let (code, v2) = call(&d, "POST", "/volumes/create", Some(j!({"Name": "data1"})));
    assert_eq!((code, &v2["CreatedAt"]), (201, &v["CreatedAt"]));

    // a generated name is 64 hex characters
    let (code, v) = call(&d, "POST", "/volumes/create", Some(j!({})));
    assert_eq!(code, 201, "{v}");
    let gen = v["Name"].as_str().expect("Name").to_string();
    assert!(gen.len() == 64 && gen.bytes().all(|b| b.is_ascii_hexdigit()));

    // bad names and options: 400, nothing made
    for bad in ["a/b", "..", "../escape", "x", ".hidden", "a b"] {
        let (code, v) = call(&d, "POST", "/volumes/create", Some(j!({"Name": bad})));
        assert_eq!(code, 400, "{bad}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(!data.join("escape").exists() && !data.join("volumes/a").exists());
    let (code, v) = call(
        &d,
        "POST",
        "/volumes/create",
        Some(j!({"Name": "opts", "DriverOpts": {"bogus": "1"}})),
    );
    assert_eq!(code, 400, "{v}");
    let (code, v) = call(
        &d,
        "POST",
        "/volumes/create",
        Some(j!({"Name": "plug", "Driver": "nfs-plugin"})),
    );
    assert_eq!(code, 404, "{v}");
    let mut all = vec!["data1".to_string(), gen.clone()];
    all.sort();
    assert_eq!(volume_names(&d, ""), all);

    // inspect, 404
    let (code, v) = call(&d, "GET", "/volumes/data1", None);
    assert_eq!((code, v["Name"].as_str()), (200, Some("data1")));
    let (code, v) = call(&d, "GET", "/volumes/nope", None);
    assert_eq!(code, 404);
    assert_eq!(v["message"], "get nope: no such volume");

    // filters
    assert_eq!(volume_names(&d, r#"{"label":["team=db"]}"#), vec!["data1"]);
    assert_eq!(volume_names(&d, r#"{"label":["team"]}"#), vec!["data1"]);
    assert!(volume_names(&d, r#"{"label":["team=web"]}"#).is_empty());
    assert_eq!(volume_names(&d, r#"{"name":["ata"]}"#), vec!["data1"]);
    assert_eq!(volume_names(&d, r#"{"driver":["local"]}"#).len(), 2);
    let (code, _) = call(
        &d,
        "GET",
        "/volumes?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(code, 400);

    // in use by a container (not running): dangling=false, 409 naming it
    let id = create(
        &d,
        j!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["data1:/data"]}}),
    );
    let (_, c) = call(&d, "GET", &format!("/containers/{id}/json"), None);
    let cname = c["Name"]
        .as_str()
        .expect("Name")
        .trim_start_matches('/')
        .to_string();
    assert_eq!(volume_names(&d, r#"{"dangling":["false"]}"#), vec!["data1"]);
    assert_eq!(
        volume_names(&d, r#"{"dangling":["true"]}"#),
        vec![gen.clone()]
    );
    let (code, v) = call(&d, "DELETE", "/volumes/data1", None);
    assert_eq!(code, 409, "{v}");
    let msg = v["message"].as_str().expect("message");
    assert!(msg.contains(&id) && msg.contains(&cname), "{msg}");
    let (code, _) = call(&d, "DELETE", "/volumes/data1?force=1", None);
    assert_eq!(code, 409);
    assert!(mp.is_dir());

    // prune: anonymous only by default (API >= 1.42); the named volume stays, so does the
    // used one; all=true takes unused named ones
    let (code, v) = call(&d, "POST", "/volumes/create", Some(j!({"Name": "spare"})));
    assert_eq!(code, 201, "{v}");
    std::fs::write(data.join("volumes/spare/_data/f"), b"x").expect("write into spare");
    let (code, v) = call(&d, "POST", "/v1.45/volumes/prune", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["VolumesDeleted"], j!([]), "{v}");
    let (_, anon) = call(
        &d,
        "POST",
        "/volumes/create",
        Some(j!({"Name": "anon1", "Labels": {"com.docker.volume.anonymous": ""}})),
    );
    assert_eq!(anon["Name"], "anon1");
    let (_, v) = call(&d, "POST", "/v1.45/volumes/prune", None);
    assert_eq!(v["VolumesDeleted"], j!(["anon1"]), "{v}");
    let (_, v) = call(
        &d,
        "POST",
        &format!(
            "/v1.45/volumes/prune?filters={}",
            urlencode(r#"{"all":["true"],"label!":["keep"]}"#)
        ),
        None,
    );
    let mut deleted: Vec<String> =
        serde_json::from_value(v["VolumesDeleted"].clone()).expect("list");
    deleted.sort();
    let mut want = vec![gen.clone(), "spare".to_string()];
    want.sort();
    assert_eq!(deleted, want);
    assert!(v["SpaceReclaimed"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(volume_names(&d, ""), vec!["data1"]);
    assert!(mp.is_dir());

    // removing the container frees it; the data stays until the volume goes
    let (code, _) = call(&d, "DELETE", &format!("/containers/{id}"), None);
    assert_eq!(code, 204);
    let (code, _) = call(&d, "DELETE", "/volumes/data1", None);
    assert_eq!(code, 204);
    assert!(!data.join("volumes/data1").exists());
    let (code, _) = call(&d, "DELETE", "/volumes/data1", None);
    assert_eq!(code, 404);
    let (code, _) = call(&d, "DELETE", "/volumes/data1?force=1", None);
    assert_eq!(code, 204);
}

#[test]
fn every_mount_form_reaches_the_container() {
    let Some(d) = daemon() else { return };
    let data = d.dir.path().join("data");
    let _unmount = UnmountVolumes(data.join("volumes"));
    let host = d.dir.path().join("host");

    // -v name:/p creates the volume; what the container writes is in it, and outlives it
    let (id1, code, out) = run(
        &d,
        sh(
            "busybox",
            "echo hello > /data/f && cat /data/f",
            j!({"Binds": ["named:/data"]}),
        ),
    );
    assert_eq!((code, out.trim()), (0, "hello"));
    assert_eq!(
        std::fs::read_to_string(data.join("volumes/named/_data/f")).expect("volume file"),
        "hello\n"
    );
    let m = mounts_of(&d, &id1);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["Type"], "volume");
    assert_eq!(m[0]["Name"], "named");
    assert_eq!(m[0]["Destination"], "/data");
    assert_eq!(m[0]["Driver"], "local");
    assert_eq!(m[0]["RW"], true);
    assert_eq!(
        m[0]["Source"],
        data.join("volumes/named/_data").to_str().expect("utf-8")
    );
    let (code, _) = call(&d, "DELETE", &format!("/containers/{id1}?v=1"), None);
    assert_eq!(code, 204);
    // rm -v keeps a named volume
    let (_, code, out) = run(
        &d,
        sh("busybox", "cat /data/f", j!({"Binds": ["named:/data:ro"]})),
    );
    assert_eq!((code, out.trim()), (0, "hello"));

    // :ro is read-only (the error message and the status through one pipe: the order of
    // lines across stdout and stderr is not kept, here as with dockerd)
    let (idro, code, out) = run(
        &d,
        sh(
            "busybox",
            "exec 2>&1; echo x > /data/g; echo $?",
            j!({"Binds": ["named:/data:ro"]}),
        ),
    );
    assert_eq!((code, out.lines().last()), (0, Some("1")), "{out}");
    assert_eq!(mounts_of(&d, &idro)[0]["RW"], false);

    // -v /host:/p: a missing source directory is created; options are kept
    let src = host.join("made/by/v");
    let (idb, code, out) = run(
        &d,
        sh(
            "busybox",
            "echo b > /b/file && cat /b/file",
            j!({"Binds": [format!("{}:/b:rw,z", src.display())]}),
        ),
    );
    assert_eq!((code, out.trim()), (0, "b"));
    assert_eq!(
        std::fs::read_to_string(src.join("file")).expect("bind file"),
        "b\n"
    );
    let m = mounts_of(&d, &idb);
    assert_eq!(
        (
            &m[0]["Type"],
            &m[0]["Source"],
            &m[0]["Mode"],
            &m[0]["Propagation"]
        ),
        (
            &j!("bind"),
            &j!(src.to_str().expect("utf-8")),
            &j!("rw,z"),
            &j!("rprivate")
        )
    );

    // --mount type=bind with a missing source: 400, nothing created
    let before = container_count(&d);
    let (code, v) = call(
        &d,
        "POST",
        "/containers/create",
        Some(
            j!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Mounts": [
            {"Type": "bind", "Source": host.join("absent").to_str(), "Target": "/x"}]}}),
        ),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["message"]
        .as_str()
        .is_some_and(|m| m.contains("bind source path does not exist")));
    assert!(!host.join("absent").exists());
    assert_eq!(container_count(&d), before);
    // a bad volume name in -v or --mount: 400, no volume
    for hc in [
        j!({"Binds": ["../up:/x"]}),
        j!({"Binds": ["a/b:/x"]}),
        j!({"Mounts": [{"Type": "volume", "Source": "..", "Target": "/x"}]}),
    ] {
        let (code, v) = call(
            &d,
            "POST",
            "/containers/create",
            Some(j!({"Image": "busybox", "Cmd": ["true"], "HostConfig": hc})),
        );
        assert_eq!(code, 400, "{hc}: {v}");
    }
    assert_eq!(container_count(&d), before);
    assert_eq!(volume_names(&d, ""), vec!["named"]);

    // --mount type=bind (existing source, read-only), type=volume (readonly, new named),
    // type=tmpfs (size, mode), --tmpfs
    let (idm, code, out) = run(
        &d,
        sh(
            "busybox",
            "cat /mb/file; touch /mv/t 2>/dev/null || echo mv-ro; \
             grep -E ' /(mt|tt) ' /proc/mounts | cut -d' ' -f2,3,4; stat -c %a /mt",
            j!({"Mounts": [
                {"Type": "bind", "Source": src.to_str(), "Target": "/mb", "ReadOnly": true},
                {"Type": "volume", "Source": "mvol", "Target": "/mv", "ReadOnly": true},
                {"Type": "tmpfs", "Target": "/mt", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1770}}],
                "Tmpfs": {"/tt": "size=2m"}}),
        ),
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "b");
    assert_eq!(lines[1], "mv-ro");
    assert!(
        out.contains("/mt tmpfs") && out.contains("size=1024k"),
        "{out}"
    );
    assert!(
        out.contains("/tt tmpfs") && out.contains("size=2048k"),
        "{out}"
    );
    assert_eq!(lines.last().copied(), Some("1770"));
    let m = mounts_of(&d, &idm);
    let by = |dst: &str| {
        m.iter()
            .find(|x| x["Destination"] == dst)
            .cloned()
            .expect(dst)
    };
    assert_eq!(
        (by("/mv")["Type"].clone(), by("/mv")["RW"].clone()),
        (j!("volume"), j!(false))
    );
    assert_eq!(by("/mb")["Type"], "bind");
    assert_eq!(by("/mt")["Type"], "tmpfs");

    // a volume with type=tmpfs options: a tmpfs under the container's path
    let (code, v) = call(
        &d,
        "POST",
        "/volumes/create",
        Some(
            j!({"Name": "tvol", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=3m"}}),
        ),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["Options"]["type"], "tmpfs");
    let (idt, code, out) = run(
        &d,
        sh(
            "busybox",
            "grep ' /tv ' /proc/mounts",
            j!({"Binds": ["tvol:/tv"]}),
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tmpfs") && out.contains("size=3072k"), "{out}");
    // a type=none,o=bind volume is the device directory
    let dev = host.join("device");
    std::fs::create_dir_all(&dev).expect("device dir");
    std::fs::write(dev.join("in-device"), b"dev\n").expect("device file");
    let (code, v) = call(
        &d,
        "POST",
        "/volumes/create",
        Some(
            j!({"Name": "bvol", "DriverOpts": {"type": "none", "o": "bind", "device": dev.to_str()}}),
        ),
    );
    assert_eq!(code, 201, "{v}");
    let (idbv, code, out) = run(
        &d,
        sh("busybox", "cat /bv/in-device", j!({"Binds": ["bvol:/bv"]})),
    );
    assert_eq!((code, out.trim()), (0, "dev"));

    // -v /p (Config.Volumes): an anonymous volume; rm -v removes it, the named one stays
    let (ida, code, _) = run(
        &d,
        j!({"Image": "busybox", "Cmd": ["sh", "-c", "echo a > /anon/f"], "Volumes": {"/anon": {}},
            "HostConfig": {"Binds": ["keep:/keep"]}}),
    );
    assert_eq!(code, 0);
    let m = mounts_of(&d, &ida);
    let anon = m
        .iter()
        .find(|x| x["Destination"] == "/anon")
        .and_then(|x| x["Name"].as_str())
        .expect("anonymous volume")
        .to_string();
    assert_eq!(anon.len(), 64);
    let (_, v) = call(&d, "GET", &format!("/volumes/{anon}"), None);
    assert!(
        v["Labels"].get("com.docker.volume.anonymous").is_some(),
        "{v}"
    );
    assert!(data.join(format!("volumes/{anon}/_data/f")).exists());

    // --volumes-from, :ro: the other container's volumes and binds, read-only
    let (idf, code, out) = run(
        &d,
        sh(
            "busybox",
            "cat /anon/f; test -d /keep && echo keep; touch /anon/x 2>/dev/null || echo ro",
            j!({"VolumesFrom": [format!("{ida}:ro")]}),
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["a", "keep", "ro"]);
    assert_eq!(mounts_of(&d, &idf).len(), 2);
    let (code, v) = call(
        &d,
        "POST",
        "/containers/create",
        Some(j!({"Image": "busybox", "HostConfig": {"VolumesFrom": ["no-such-container"]}})),
    );
    assert_eq!(code, 404, "{v}");
    // the anonymous volume is in use by the --volumes-from container: rm -v of its owner
    // keeps it; rm -v of the last one does not remove a volume it did not make
    let (code, _) = call(&d, "DELETE", &format!("/containers/{ida}?v=1"), None);
    assert_eq!(code, 204);
    assert!(data.join(format!("volumes/{anon}/_data/f")).exists());
    let (code, _) = call(&d, "DELETE", &format!("/containers/{idf}?v=1"), None);
    assert_eq!(code, 204);
    assert!(data.join(format!("volumes/{anon}")).exists());
    assert!(data.join("volumes/keep").exists());
    // an anonymous volume of a container removed with v=1 while nobody else uses it goes
    let (idz, _, _) = run(
        &d,
        j!({"Image": "busybox", "Cmd": ["true"], "Volumes": {"/z": {}}}),
    );
    let z = mounts_of(&d, &idz)[0]["Name"]
        .as_str()
        .expect("Name")
        .to_string();
    let (code, _) = call(&d, "DELETE", &format!("/containers/{idz}?v=1"), None);
    assert_eq!(code, 204);
    assert!(!data.join(format!("volumes/{z}")).exists());
    let (code, _) = call(&d, "GET", &format!("/volumes/{z}"), None);
    assert_eq!(code, 404);

    for id in [idro, idb, idm, idt, idbv] {
        let (code, _) = call(&d, "DELETE", &format!("/containers/{id}"), None);
        assert_eq!(code, 204);
    }
    // nothing uses tvol now: removing it unmounts its tmpfs
    let (code, v) = call(&d, "DELETE", "/volumes/tvol", None);
    assert_eq!(code, 204, "{v}");
    assert!(!data.join("volumes/tvol").exists());
    let (code, _) = call(&d, "DELETE", "/volumes/bvol", None);
    assert_eq!(code, 204);
    // the device of a bind volume is the user's: it stays
    assert!(dev.join("in-device").exists());
}

/// A tarball of `dir` with numeric owners and xattrs.
fn tar_of(dir: &Path, out: &Path) {
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
}

#[test]
fn a_new_volume_is_seeded_from_the_image_once() {
    let Some(d) = daemon() else { return };
    let data = d.dir.path().join("data");
    let _unmount = UnmountVolumes(data.join("volumes"));
    // an image with /seed (owners, modes, a symlink, a hard link, an xattr) declared a VOLUME,
    // and /evil -> /etc, an absolute link that must resolve inside the image
    let root = d.dir.path().join("rootfs");
    let seed = root.join("seed");
    std::fs::create_dir_all(seed.join("sub")).expect("mkdir seed");
    std::fs::write(seed.join("file"), b"seeded\n").expect("file");
    std::os::unix::fs::chown(seed.join("file"), Some(1234), Some(5678)).expect("chown");
    std::fs::set_permissions(seed.join("file"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::os::unix::fs::chown(seed.join("sub"), Some(42), Some(43)).expect("chown sub");
    std::fs::set_permissions(seed.join("sub"), std::fs::Permissions::from_mode(0o711))
        .expect("chmod sub");
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o750)).expect("chmod seed");
    std::os::unix::fs::chown(&seed, Some(7), Some(8)).expect("chown seed");
    std::os::unix::fs::symlink("../file", seed.join("sub/link")).expect("symlink");
    std::fs::hard_link(seed.join("file"), seed.join("hard")).expect("hard link");
    let xattrs = xattr::set(seed.join("file"), "user.berth", b"kept").is_ok();
    std::os::unix::fs::symlink("/etc", root.join("evil")).expect("evil link");
    let tarball = d.dir.path().join("seed.tar");
    tar_of(&root, &tarball);
    let body = std::fs::read(&tarball).expect("read tarball");
    let (code, out) = common::http(
        &d.sock,
        "POST",
        "/images/create?fromSrc=-&repo=seedimg&tag=latest&changes=VOLUME%20%2Fseed",
        &[("Content-Type", "application/x-tar")],
        &body,
    );
    assert_eq!(code, 200, "import: {}", String::from_utf8_lossy(&out));

    let check = |dir: &Path| {
        let md = std::fs::metadata(dir.join("file")).expect("seeded file");
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1234, 5678, 0o640)
        );
        let md = std::fs::metadata(dir.join("sub")).expect("seeded dir");
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (42, 43, 0o711));
        let md = std::fs::metadata(dir).expect("volume dir");
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (7, 8, 0o750));
        assert_eq!(
            std::fs::read_link(dir.join("sub/link")).expect("seeded link"),
            Path::new("../file")
        );
        let (a, b) = (
            std::fs::metadata(dir.join("file")).expect("file"),
            std::fs::metadata(dir.join("hard")).expect("hard"),
        );
        assert_eq!(a.ino(), b.ino(), "the hard link is one file");
        if xattrs {
            assert_eq!(
                xattr::get(dir.join("file"), "user.berth").expect("getxattr"),
                Some(b"kept".to_vec())
            );
        } else {
            eprintln!("note: the test's filesystem refused a user xattr; xattr copy not checked");
        }
    };

    // the image's VOLUME: an anonymous volume, seeded
    let (ida, code, out) = run(&d, sh("seedimg", "cat /seed/file", j!({})));
    assert_eq!((code, out.trim()), (0, "seeded"));
    let m = mounts_of(&d, &ida);
    assert_eq!(m.len(), 1, "{m:?}");
    let anon = m[0]["Name"].as_str().expect("Name").to_string();
    check(&data.join(format!("volumes/{anon}/_data")));

    // a new named volume at the same path: seeded; then changed; a later container of the
    // same volume sees the change, not a second copy
    let (_, code, _) = run(
        &d,
        sh(
            "seedimg",
            "rm /seed/file && echo mine > /seed/new",
            j!({"Binds": ["sv:/seed"]}),
        ),
    );
    assert_eq!(code, 0);
    let sv = data.join("volumes/sv/_data");
    assert!(!sv.join("file").exists() && sv.join("hard").exists());
    let (_, code, out) = run(
        &d,
        sh(
            "seedimg",
            "ls /seed; cat /seed/new",
            j!({"Binds": ["sv:/seed"]}),
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.lines().any(|l| l == "file"), "copied twice: {out}");
    assert!(out.contains("mine"));
    // also mounted elsewhere, in an image without the files: nothing copied again
    let (_, code, _) = run(&d, sh("seedimg", "true", j!({"Binds": ["sv:/srv"]})));
    assert_eq!(code, 0);
    assert!(!sv.join("file").exists());

    // nocopy (-v and --mount): empty
    let (_, code, out) = run(
        &d,
        sh(
            "seedimg",
            "ls -A /seed | wc -l; ls -A /s2 | wc -l",
            j!({"Binds": ["nc:/seed:nocopy"], "Mounts": [
                {"Type": "volume", "Source": "nc2", "Target": "/s2", "VolumeOptions": {"NoCopy": true}}]}),
        ),
    );
    assert_eq!(
        (code, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["0", "0"])
    );
    // ... and seeding with the files happens when mounted where they are
    let (_, code, _) = run(
        &d,
        j!({"Image": "seedimg", "Cmd": ["true"], "HostConfig": {"Mounts": [
            {"Type": "volume", "Source": "mounted", "Target": "/seed"}]}}),
    );
    assert_eq!(code, 0);
    check(&data.join("volumes/mounted/_data"));

    // a bind is never seeded
    let empty = d.dir.path().join("empty-bind");
    std::fs::create_dir(&empty).expect("mkdir");
    let (_, code, _) = run(
        &d,
        sh(
            "seedimg",
            "true",
            j!({"Binds": [format!("{}:/seed", empty.display())]}),
        ),
    );
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_dir(&empty).expect("read bind").count(), 0);

    // /evil -> /etc resolves inside the image: the image's /etc, never the host's
    // (the copy is made before the start; whether the runtime then accepts a mount on a
    // symlink is not this test's business)
    let id = create(&d, sh("seedimg", "true", j!({"Binds": ["ev:/evil"]})));
    let _ = call(&d, "POST", &format!("/containers/{id}/start"), None);
    let ev = data.join("volumes/ev/_data");
    assert!(
        ev.join("passwd").exists(),
        "the image's /etc was not copied"
    );
    assert_eq!(
        std::fs::read(ev.join("passwd")).expect("passwd"),
        std::fs::read(root.join("etc/passwd")).expect("image passwd")
    );
    assert!(!ev.join("os-release").exists() && !ev.join("debian_version").exists());
}
