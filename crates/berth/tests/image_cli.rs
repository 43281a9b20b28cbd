//! End-to-end tests of the image commands of the berth binary, clients of a private daemon
//! (`berth daemon` on its own socket and data root, started per test and killed at the
//! end): import, images (columns, --format, -q, filters), tag, history, image inspect,
//! save/load, rmi and image prune, with Docker's output shapes; the hostile corpus through
//! the API's load and import. Needs root (layers are unpacked with their owners and device
//! nodes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `berth daemon` for one data root; stopped (and waited for) when dropped, and what it
/// keeps of its networks after a stop removed.
struct Daemon {
    child: Child,
    root: PathBuf,
}

impl Daemon {
    fn start(root: &Path) -> Daemon {
        let dir = root.with_extension("daemon");
        std::fs::create_dir_all(&dir).expect("daemon dir");
        let sock = socket_of(root);
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("daemon")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(root)
            .arg("--exec-root")
            .arg(dir.join("run"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .env_remove("BERTH_DATA_ROOT")
            .env_remove("BERTH_HOST")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("daemon.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("start berth daemon");
        let d = Daemon {
            child,
            root: root.to_path_buf(),
        };
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the daemon did not listen on {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM: the daemon unbinds its pool of prepared network namespaces as it goes
        // (a SIGKILL left their mounts and veths behind)
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // its default bridge and nftables tables stay after a stop, by design
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#". "$1/tests/support/netclean.sh" && berth_net_cleanup "$2""#)
            .arg("netclean")
            .arg(&repo)
            .arg(&self.root)
            .status();
    }
}

fn socket_of(root: &Path) -> PathBuf {
    root.with_extension("sock")
}

/// `berth ARGS` as a client of the daemon of `root`.
fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("-H")
        .arg(format!("unix://{}", socket_of(root).display()))
        .args(args)
        .env_remove("BERTH_DATA_ROOT")
        .output()
        .expect("run berth")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let o = berth(root, args);
    assert!(
        o.status.success(),
        "berth {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

fn skip(reason: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("requirement missing under CI: {reason}");
    }
    eprintln!("SKIP: image_cli: {reason}");
    true
}

fn busybox_tarball(dir: &Path) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/make-busybox-rootfs.sh");
    let tarball = dir.join("rootfs.tar");
    let st = Command::new("sh")
        .arg(script)
        .arg(dir.join("rootfs"))
        .arg(&tarball)
        .status()
        .ok()?;
    st.success().then_some(tarball)
}

#[test]
fn image_commands_like_docker() {
    if !nix::unistd::Uid::effective().is_root() && skip("needs root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(tarball) = busybox_tarball(tmp.path()) else {
        skip("tests/make-busybox-rootfs.sh failed");
        return;
    };
    let root = tmp.path().join("data");
    let _daemon = Daemon::start(&root);
    let tb = tarball.to_str().unwrap();

    // import prints the full image ID
    let id = ok(
        &root,
        &[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            "-m",
            "test import",
            tb,
            "busybox:latest",
        ],
    );
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let short = &id[7..19];

    // images: Docker's columns
    let out = ok(&root, &["images"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{header:?}"
    );
    assert!(header.ends_with("SIZE"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("busybox      latest    ") && row.contains(short),
        "{row:?}"
    );
    assert!(row.trim_end().ends_with("MB"), "{row:?}");

    ok(&root, &["tag", "busybox", "localhost:5000/bb:v1"]);
    let out = ok(
        &root,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("busybox:latest {short}"),
            format!("localhost:5000/bb:v1 {short}")
        ]
    );
    assert_eq!(ok(&root, &["images", "-q"]).trim(), short);
    assert_eq!(
        ok(&root, &["images", "--no-trunc", "-q", "busybox"]).trim(),
        id
    );
    let out = ok(
        &root,
        &[
            "images",
            "--filter",
            "reference=localhost*/*",
            "--format",
            "{{.Repository}}",
        ],
    );
    assert_eq!(out.trim(), "localhost:5000/bb");
    assert_eq!(
        ok(&root, &["images", "-f", "dangling=true", "-q"]).trim(),
        ""
    );
    let json_line = ok(&root, &["image", "ls", "--format", "json", "busybox"]);
    let v: serde_json::Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(v["Repository"], "busybox");
    assert_eq!(v["Tag"], "latest");
    assert!(ok(&root, &["images", "--digests"])
        .lines()
        .next()
        .unwrap()
        .contains("DIGEST"));

    // history and inspect
    let out = ok(&root, &["history", "busybox"]);
    assert!(out.starts_with("IMAGE          CREATED"), "{out}");
    assert!(out.contains("test import"), "{out}");
    let out = ok(&root, &["image", "inspect", "busybox"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(v[0]["RootFS"]["Type"], "layers");
    assert_eq!(
        ok(
            &root,
            &[
                "image",
                "inspect",
                "-f",
                "{{.Os}}/{{.Architecture}} {{json .Config.Cmd}}",
                "busybox"
            ]
        )
        .trim(),
        format!("linux/{} [\"/bin/sh\"]", berth_arch())
    );
    let o = berth(&root, &["image", "inspect", "nosuch"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image: nosuch"));

    // save -> load into an empty root
    let archive = tmp.path().join("save.tar");
    ok(
        &root,
        &[
            "save",
            "-o",
            archive.to_str().unwrap(),
            "busybox",
            "localhost:5000/bb:v1",
        ],
    );
    let root2 = tmp.path().join("data2");
    let _daemon2 = Daemon::start(&root2);
    let out = ok(&root2, &["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: busybox:latest")
            && out.contains("Loaded image: localhost:5000/bb:v1"),
        "{out}"
    );
    assert_eq!(ok(&root2, &["images", "--no-trunc", "-q"]).trim(), id);

    // rmi: untag, then delete with the last tag
    assert_eq!(
        ok(&root, &["rmi", "localhost:5000/bb:v1"]).trim(),
        "Untagged: localhost:5000/bb:v1"
    );
    let out = ok(&root, &["rmi", "busybox"]);
    assert_eq!(out, format!("Untagged: busybox:latest\nDeleted: {id}\n"));
    let o = berth(&root, &["rmi", "busybox"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image"));

    // prune: a dangling image goes, the store is empty afterwards
    ok(&root, &["import", tb]);
    assert_eq!(
        ok(&root, &["images", "-f", "dangling=true", "-q"])
            .lines()
            .count(),
        1
    );
    let out = ok(&root, &["image", "prune", "-f"]);
    assert!(
        out.starts_with("Deleted Images:\ndeleted: sha256:"),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(ok(&root, &["images", "-q"]), "");
    let blobs: Vec<_> = std::fs::read_dir(root.join("content/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

fn berth_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Every file under the data root but the database, lock files and empty directories:
/// relative path and size. A refused load or import must leave this unchanged.
fn store_files(root: &Path) -> Vec<(String, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                if rel != "snapshots/locks" {
                    walk(base, &p, out);
                }
            } else if !(rel.starts_with("berth.db") || rel.ends_with(".lock")) {
                out.push((rel, md.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// tests/hostile/make-corpus.sh's inputs through `berth load` and `berth import`: each is a
/// clear error (naming what is wrong), nothing changes in the store, nothing appears on the
/// host, and nothing hangs.
#[test]
fn hostile_corpus_is_refused_by_load_and_import() {
    if !nix::unistd::Uid::effective().is_root() && skip("needs root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hostile/make-corpus.sh");
    let built = Command::new("sh").arg(&script).arg(&corpus).status();
    if !matches!(built, Ok(s) if s.success()) {
        skip("tests/hostile/make-corpus.sh failed (needs python3)");
        return;
    }
    let root = tmp.path().join("data");
    let _daemon = Daemon::start(&root);
    ok(
        &root,
        &[
            "import",
            corpus.join("seed.tar").to_str().unwrap(),
            "seed:1",
        ],
    );
    let files = store_files(&root);
    let images = ok(&root, &["images", "-q", "--no-trunc"]);
    let expect = [
        ("load/traversal.tar", "../../../tmp"),
        ("load/symlink-write-through.tar", "escape/tmp"),
        ("load/hardlink-out.tar", "shadow"),
        ("load/empty-manifest.tar", "holds no images"),
        ("load/invalid-tag.tar", "invalid tag"),
        ("load/diff-id-mismatch.tar", "diff ID"),
        ("load/bad-header-size.tar", "0/layer.tar"),
        ("load/json-bomb.tar.gz", "exceed"),
        ("oci/blob-symlink-dev-zero", "symbolic link"),
        ("oci/blob-fifo", "not a regular file"),
        ("import/traversal.tar", "../../../tmp"),
        ("import/symlink-write-through.tar", "escape/tmp"),
        ("import/hardlink-out.tar", "shadow"),
    ];
    let mut tried = 0;
    for (input, says) in expect {
        let path = corpus.join(input);
        let path = path.to_str().unwrap();
        let o = if input.starts_with("import/") {
            berth(&root, &["import", path, "hostile/import:1"])
        } else {
            berth(&root, &["load", "-i", path])
        };
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{input}: accepted\n{err}");
        assert!(!err.contains("panicked"), "{input}: {err}");
        assert!(
            err.contains(says),
            "{input}: error does not say {says:?}: {err}"
        );
        assert_eq!(store_files(&root), files, "{input}: the store changed");
        assert_eq!(
            ok(&root, &["images", "-q", "--no-trunc"]),
            images,
            "{input}: the image list changed"
        );
        tried += 1;
    }
    // everything the corpus holds was tried
    let count = |d: &str| std::fs::read_dir(corpus.join(d)).unwrap().count();
    assert_eq!(tried, count("load") + count("oci") + count("import"));
    // nothing written on the host through the layers
    for e in std::fs::read_dir("/tmp").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            !(n.starts_with("berth-hostile-")
                && (n.ends_with("-traversal") || n.ends_with("-symlink"))),
            "/tmp/{n} was written through a layer"
        );
    }
}

/// A docker-registry on 127.0.0.1 that wants a password (htpasswd), killed when dropped.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(user: &str, pass: &str) -> Option<Registry> {
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &out.stdout).ok()?;
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: berth-test-secret\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        dir.path().join("data").display(),
        file.display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).ok()?;
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let reg = Registry {
        child,
        addr,
        _dir: dir,
    };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(&reg.addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(reg)
}

/// login, push, pull and logout through the daemon against a registry with a password: the
/// credentials are kept client-side (DOCKER_CONFIG) and travel in X-Registry-Auth.
#[test]
fn registry_commands_through_the_daemon() {
    if !nix::unistd::Uid::effective().is_root() && skip("needs root") {
        return;
    }
    if !Path::new("/usr/bin/docker-registry").exists()
        && skip("docker-registry not installed (run tests/registry/setup.sh)")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(tarball) = busybox_tarball(tmp.path()) else {
        skip("tests/make-busybox-rootfs.sh failed");
        return;
    };
    let Some(reg) = start_registry("tester", "s3cret") else {
        skip("htpasswd (apache2-utils) not installed or the registry did not start");
        return;
    };
    let root = tmp.path().join("data");
    let _daemon = Daemon::start(&root);
    let config = tmp.path().join("docker-config");
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("-H")
            .arg(format!("unix://{}", socket_of(&root).display()))
            .args(args)
            .env_remove("BERTH_DATA_ROOT")
            .env("DOCKER_CONFIG", &config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run berth");
        if let (Some(mut si), Some(text)) = (child.stdin.take(), stdin) {
            si.write_all(text.as_bytes()).expect("stdin");
        }
        let o = child.wait_with_output().expect("berth output");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let image = format!("{}/cli/bb:1", reg.addr);
    let (rc, _, err) = run(&["import", tarball.to_str().unwrap(), &image], None);
    assert_eq!(rc, 0, "{err}");

    // Without credentials the registry refuses the push.
    let (rc, out, err) = run(&["push", &image], None);
    assert_ne!(rc, 0, "{out}{err}");
    // A wrong password is refused by the daemon's /auth and nothing is stored.
    let (rc, out, err) = run(
        &["login", "-u", "tester", "--password-stdin", &reg.addr],
        Some("wrong\n"),
    );
    assert_ne!(rc, 0, "{out}{err}");
    assert!(!config.join("config.json").exists());
    let (rc, out, err) = run(
        &["login", "-u", "tester", "--password-stdin", &reg.addr],
        Some("s3cret\n"),
    );
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let saved = std::fs::read_to_string(config.join("config.json")).expect("config.json");
    assert!(saved.contains(&reg.addr), "{saved}");

    let (rc, out, err) = run(&["push", &image], None);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("Pushed"), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a digest line")
        .to_string();
    let (rc, out, err) = run(&["rmi", &image], None);
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = run(&["pull", &image], None);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.trim_end().ends_with(&image), "{out}");
    let (rc, out, _) = run(
        &[
            "images",
            "--digests",
            "--format",
            "{{.Digest}}",
            &format!("{}/cli/bb", reg.addr),
        ],
        None,
    );
    assert_eq!(rc, 0);
    assert_eq!(out.trim(), digest);
    let (rc, out, err) = run(&["pull", &format!("{}/cli/bb:nosuch", reg.addr)], None);
    assert_ne!(rc, 0, "{out}");
    assert!(err.contains("Error response from daemon"), "{err}");

    let (rc, out, _) = run(&["logout", &reg.addr], None);
    assert_eq!(rc, 0);
    assert!(out.contains("Removing login credentials"), "{out}");
    let (rc, out, err) = run(&["pull", &image], None);
    assert_ne!(rc, 0, "pulled after logout: {out}{err}");
}
