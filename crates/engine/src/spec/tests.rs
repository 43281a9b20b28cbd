//! Unit tests of `build` and `exec_process` against a fixture rootfs.

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    image: berth_image::manifest::ImageConfig,
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn fixture(image_config: Value) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("rootfs/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nwww:x:33:\nshadow:x:42:www\n").unwrap();
    let image = serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap();
    Fixture { dir, image }
}

fn no_ns(c: &str, t: &str) -> Result<PathBuf, SpecError> {
    if c == "other" {
        Ok(PathBuf::from(format!("/proc/4242/ns/{t}")))
    } else {
        Err(SpecError::JoinContainer {
            flag: "--pid",
            container: c.into(),
            reason: "no such container".into(),
        })
    }
}

fn spec_of(f: &Fixture, body: Value) -> Result<oci_spec::runtime::Spec, SpecError> {
    let body: ContainerCreateBody = serde_json::from_value(body).unwrap();
    let p = f.dir.path();
    let rootfs = p.join("rootfs");
    let (hosts, hostname, resolv) = (p.join("hosts"), p.join("hostname"), p.join("resolv"));
    build(&SpecInput {
        id: ID,
        body: &body,
        image: &f.image,
        rootfs: &rootfs,
        hosts_path: &hosts,
        hostname_path: &hostname,
        resolv_path: &resolv,
        cgroups_path: format!("/berth/{ID}"),
        ns_of: &no_ns,
    })
}

fn v(s: &oci_spec::runtime::Spec) -> Value {
    serde_json::to_value(s).unwrap()
}

#[test]
fn command_merge_follows_docker() {
    let f = fixture(json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]}));
    let img = f.image.config.as_ref();
    let s = |x: &[&str]| x.iter().map(|y| y.to_string()).collect::<Vec<_>>();
    assert_eq!(
        merge_command(None, None, img).unwrap(),
        s(&["/ep", "a", "b"])
    );
    assert_eq!(
        merge_command(None, Some(&s(&["c"])), img).unwrap(),
        s(&["/ep", "c"])
    );
    assert_eq!(
        merge_command(Some(&s(&["/x"])), None, img).unwrap(),
        s(&["/x"])
    );
    assert_eq!(
        merge_command(Some(&s(&["/x"])), Some(&s(&["y"])), img).unwrap(),
        s(&["/x", "y"])
    );
    assert_eq!(
        merge_command(Some(&s(&[""])), None, img).unwrap(),
        s(&["a", "b"])
    );
    let e = merge_command(None, None, None).unwrap_err();
    assert_eq!(e.to_string(), "no command specified");
    assert!(e.is_invalid_argument());
}

#[test]
fn env_merge_replaces_and_removes() {
    let s = |x: &[&str]| x.iter().map(|y| y.to_string()).collect::<Vec<_>>();
    assert_eq!(
        merge_env(&s(&["A=1", "B=2"]), &s(&["B=3", "C=4", "A"])),
        s(&["B=3", "C=4"])
    );
}

#[test]
fn defaults_are_dockers() {
    let f = fixture(json!({"Cmd": ["sh"], "Env": ["PATH=/img/bin", "X=1"], "WorkingDir": "/srv"}));
    let s = v(&spec_of(&f, json!({"Env": ["X=2"], "Tty": true})).unwrap());
    assert_eq!(s["hostname"], &ID[..12]);
    let env: Vec<&str> = s["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "PATH=/img/bin",
            &format!("HOSTNAME={}", &ID[..12]),
            "TERM=xterm",
            "X=2",
            "HOME=/root"
        ]
    );
    assert_eq!(s["process"]["cwd"], "/srv");
    assert_eq!(s["process"]["terminal"], true);
    assert_eq!(
        s["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
    assert!(s["process"]["capabilities"]
        .get("inheritable")
        .is_none_or(|i| i.is_null()));
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        s["linux"]["maskedPaths"].as_array().unwrap().len(),
        MASKED_PATHS.len()
    );
    assert_eq!(s["linux"]["readonlyPaths"][3], "/proc/sys");
    assert_eq!(s["linux"]["cgroupsPath"], format!("/berth/{ID}"));
    let types: Vec<&str> = s["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["mount", "pid", "ipc", "uts", "network", "cgroup"]);
    let dests: Vec<&str> = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
            "/etc/resolv.conf",
            "/etc/hostname",
            "/etc/hosts"
        ]
    );
    if Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start").exists() {
        assert_eq!(
            s["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
            "0"
        );
    }
    assert!(s["linux"]
        .get("rootfsPropagation")
        .is_none_or(|p| p.is_null()));
    let shm = &s["mounts"][6];
    assert!(shm["options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "size=67108864"));
    assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], false);
}

#[test]
fn flags_change_the_spec() {
    let f = fixture(json!({"Cmd": ["sh"], "User": "www"}));
    let s = v(&spec_of(&f, json!({"Hostname": "web", "Domainname": "example.org", "Tty": true, "HostConfig": {
        "CapDrop": ["ALL"], "CapAdd": ["net_admin"], "ReadonlyRootfs": true, "ShmSize": 1048576,
        "SecurityOpt": ["no-new-privileges", "apparmor=unconfined"],
        "Tmpfs": {"/run": "size=1m,exec"}, "Binds": [format!("{}:/data:ro,rslave", f.dir.path().display())],
        "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}], "ConsoleSize": [30, 100], "OomScoreAdj": 500,
        "PidMode": "host", "IpcMode": "container:other", "NetworkMode": "host", "CgroupnsMode": "host",
        "Sysctls": {"kernel.domainname": "x.org"}, "GroupAdd": ["root"], "Memory": 33554432
    }})).unwrap());
    assert_eq!(s["hostname"], "web");
    assert_eq!(s["domainname"], "example.org");
    assert_eq!(s["process"]["user"]["uid"], 33);
    assert_eq!(s["process"]["user"]["additionalGids"], json!([33, 42, 0]));
    assert_eq!(
        s["process"]["capabilities"]["effective"],
        json!(["CAP_NET_ADMIN"])
    );
    assert_eq!(s["process"]["noNewPrivileges"], true);
    assert_eq!(s["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(s["process"]["oomScoreAdj"], 500);
    assert_eq!(
        s["process"]["consoleSize"],
        json!({"height": 30, "width": 100})
    );
    assert_eq!(s["root"]["readonly"], true);
    assert_eq!(s["linux"]["resources"]["memory"]["limit"], 33554432);
    let types: Vec<&str> = s["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["mount", "ipc", "uts"]);
    assert_eq!(s["linux"]["namespaces"][1]["path"], "/proc/4242/ns/ipc");
    assert_eq!(s["linux"]["sysctl"]["kernel.domainname"], "x.org");
    let m = |d: &str| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == d)
            .cloned()
    };
    assert!(
        m("/dev/shm").is_none(),
        "a joined IPC namespace brings its own /dev/shm"
    );
    let run = m("/run").unwrap();
    assert!(run["options"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o != "noexec"));
    let data = m("/data").unwrap();
    assert_eq!(data["options"], json!(["rbind", "rslave", "ro"]));
    assert_eq!(s["linux"]["rootfsPropagation"], "rslave");
    assert!(
        s["linux"]["sysctl"]
            .get("net.ipv4.ping_group_range")
            .is_none(),
        "host network: no defaults"
    );
    assert!(m("/etc/hosts").unwrap()["options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "ro"));
    // the default profile follows the container's capabilities
    assert!(!s["linux"]["seccomp"].to_string().contains("\"reboot\""));
}

#[test]
fn privileged_and_unconfined() {
    let f = fixture(json!({"Cmd": ["sh"]}));
    let s = v(&spec_of(&f, json!({"HostConfig": {"Privileged": true}})).unwrap());
    assert!(s["linux"].get("seccomp").is_none_or(|x| x.is_null()));
    assert_eq!(s["linux"]["maskedPaths"], json!([]));
    assert_eq!(
        s["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .len(),
        caps::kernel_caps().unwrap().len()
    );
    assert!(s["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["path"] == "/dev/null"));
    let sys = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(sys["options"].as_array().unwrap().iter().any(|o| o == "rw"));
    let s = v(&spec_of(
        &f,
        json!({"HostConfig": {"IpcMode": "host", "MaskedPaths": ["/proc/x"]}}),
    )
    .unwrap());
    assert_eq!(s["linux"]["maskedPaths"], json!(["/proc/x"]));
    let shm = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], "/dev/shm");
    let s = v(&spec_of(
        &f,
        json!({"HostConfig": {"SecurityOpt": ["seccomp=unconfined", "systempaths=unconfined"]}}),
    )
    .unwrap());
    assert_eq!(s["linux"]["readonlyPaths"], json!([]));
    assert!(s["linux"].get("seccomp").is_none_or(|x| x.is_null()));
    let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
    let s = v(&spec_of(
        &f,
        json!({"HostConfig": {"SecurityOpt": [format!("seccomp={profile}")]}}),
    )
    .unwrap());
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
}

#[test]
fn bad_requests_name_the_flag() {
    let f = fixture(json!({"Cmd": ["sh"]}));
    let err = |body: Value| spec_of(&f, body).unwrap_err();
    for (body, start) in [
        (
            json!({"HostConfig": {"CapAdd": ["CAP_FOO"]}}),
            "--cap-add: unknown capability CAP_FOO",
        ),
        (
            json!({"HostConfig": {"Memory": 4}}),
            "--memory: 4 bytes is below the minimum of 6 MiB",
        ),
        (
            json!({"HostConfig": {"Sysctls": {"kernel.panic": "1"}}}),
            "--sysctl: kernel.panic",
        ),
        (
            json!({"HostConfig": {"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}}}),
            "--sysctl: net.ipv4.ip_forward",
        ),
        (
            json!({"HostConfig": {"PidMode": "container:ghost"}}),
            "--pid container:ghost",
        ),
        (
            json!({"HostConfig": {"Binds": ["myvol:/data"]}}),
            "--volume: myvol: volumes are not supported yet",
        ),
        (
            json!({"HostConfig": {"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}]}}),
            "--mount: volumes are not supported yet",
        ),
        (
            json!({"HostConfig": {"SecurityOpt": ["bogus"]}}),
            "--security-opt: invalid option",
        ),
        (
            json!({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}}),
            "--ulimit: nofile",
        ),
        (
            json!({"HostConfig": {"UsernsMode": "private"}}),
            "--userns:",
        ),
        (
            json!({"User": "nobody"}),
            "--user nobody: unable to find user nobody",
        ),
        (json!({"WorkingDir": "rel"}), "--workdir:"),
        (json!({"Hostname": "bad host"}), "--hostname:"),
        (
            json!({"Hostname": "h", "HostConfig": {"NetworkMode": "container:other"}}),
            "--hostname: conflicts",
        ),
        (
            json!({"HostConfig": {"IpcMode": "container:ghost"}}),
            "--ipc container:ghost",
        ),
    ] {
        let e = err(body);
        assert!(
            e.to_string().starts_with(start),
            "{e} does not start with {start}"
        );
        assert!(e.is_invalid_argument(), "{e}");
    }
}

#[test]
fn a_ulimit_above_what_the_host_allows_is_refused_by_name() {
    let f = fixture(json!({"Cmd": ["sh"]}));
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let e = spec_of(
        &f,
        json!({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": -1}]}}),
    );
    // with CAP_SYS_RESOURCE (or no hard limit at all) any limit can be given
    if can_raise_rlimits() || hard == u64::MAX {
        assert!(e.is_ok());
        return;
    }
    let e = e.unwrap_err();
    assert!(
        e.to_string().starts_with("--ulimit: nofile: hard limit"),
        "{e}"
    );
    assert!(e.is_invalid_argument());
}

#[test]
fn exec_process_overlays_the_container_process() {
    let f = fixture(json!({"Cmd": ["sh"], "Env": ["A=1"]}));
    let spec = spec_of(
        &f,
        json!({"Tty": true, "HostConfig": {"SecurityOpt": ["no-new-privileges"]}}),
    )
    .unwrap();
    let body: ExecConfig = serde_json::from_value(
        json!({"Cmd": ["ls"], "Env": ["A=2"], "User": "www", "WorkingDir": "/tmp"}),
    )
    .unwrap();
    let p = exec_process(&body, &spec, &f.dir.path().join("rootfs")).unwrap();
    let p = serde_json::to_value(&p).unwrap();
    assert_eq!(p["args"], json!(["ls"]));
    assert_eq!(p["user"]["uid"], 33);
    assert_eq!(p["cwd"], "/tmp");
    assert_eq!(p["terminal"], false);
    assert_eq!(p["noNewPrivileges"], true);
    let env: Vec<&str> = p["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"A=2") && !env.contains(&"A=1") && !env.contains(&"TERM=xterm"),
        "{env:?}"
    );
    let body: ExecConfig =
        serde_json::from_value(json!({"Cmd": ["ls"], "Privileged": true})).unwrap();
    let p = exec_process(&body, &spec, &f.dir.path().join("rootfs")).unwrap();
    assert_eq!(
        p.capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .as_ref()
            .unwrap()
            .len(),
        caps::kernel_caps().unwrap().len()
    );
    let body: ExecConfig = serde_json::from_value(json!({"Cmd": []})).unwrap();
    assert!(exec_process(&body, &spec, &f.dir.path().join("rootfs")).is_err());
}

#[test]
fn init_wraps_the_command_when_the_pid_namespace_is_its_own() {
    let f = fixture(json!({"Cmd": ["sleep", "1"]}));
    let mut s = spec_of(&f, json!({})).unwrap();
    assert!(add_init(
        &mut s,
        Path::new("/usr/bin/berth"),
        "/sbin/berth-init",
        &["init"]
    )
    .unwrap());
    let v = v(&s);
    assert_eq!(
        v["process"]["args"],
        json!(["/sbin/berth-init", "init", "--", "sleep", "1"])
    );
    let m = v["mounts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(m["source"], "/usr/bin/berth");
    assert_eq!(m["options"], json!(["bind", "ro"]));
    let mut s = spec_of(&f, json!({"HostConfig": {"PidMode": "host"}})).unwrap();
    assert!(!add_init(&mut s, Path::new("/usr/bin/berth"), "/sbin/berth-init", &[]).unwrap());
}

#[test]
fn a_user_dev_replaces_the_mounts_under_it() {
    let f = fixture(json!({"Cmd": ["sh"]}));
    let s = v(&spec_of(&f, json!({"HostConfig": {"Tmpfs": {"/dev": "size=1m"}}})).unwrap());
    let devs: Vec<&Value> = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"].as_str().unwrap().starts_with("/dev"))
        .collect();
    assert_eq!(devs.len(), 1);
    assert!(devs[0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "size=1m"));
}

#[test]
fn system_paths_are_recorded_as_dockerd_records_them() {
    let mut h = HostConfig::default();
    record_system_paths(&mut h);
    assert_eq!(
        h.masked_paths.as_ref().map(Vec::len),
        Some(MASKED_PATHS.len())
    );
    assert_eq!(
        h.readonly_paths.as_deref().map(|p| p[3].as_str()),
        Some("/proc/sys")
    );

    let mut own = HostConfig {
        masked_paths: Some(vec!["/proc/kcore".into()]),
        ..Default::default()
    };
    record_system_paths(&mut own);
    assert_eq!(own.masked_paths, Some(vec!["/proc/kcore".to_string()]));
    assert_eq!(
        own.readonly_paths.as_ref().map(Vec::len),
        Some(READONLY_PATHS.len())
    );

    let mut privileged = HostConfig {
        privileged: Some(true),
        ..Default::default()
    };
    record_system_paths(&mut privileged);
    assert_eq!(
        (privileged.masked_paths, privileged.readonly_paths),
        (None, None)
    );

    for opt in ["systempaths=unconfined", "systempaths:unconfined"] {
        let mut unconfined = HostConfig {
            security_opt: Some(vec![opt.into()]),
            masked_paths: Some(vec!["/proc/kcore".into()]),
            ..Default::default()
        };
        record_system_paths(&mut unconfined);
        assert_eq!(unconfined.masked_paths, Some(vec![]), "{opt}");
        assert_eq!(unconfined.readonly_paths, Some(vec![]), "{opt}");
    }
}
