//! A real registry for the Rust tests (Debian's docker-registry) on a free port of 127.0.0.1
//! with plain HTTP, its storage in a tempdir, killed on drop. Shared by the test crates that
//! push and pull (`#[path]`-included, as tests of different crates share no module).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

pub struct TestRegistry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts the registry; with `auth`, it asks for that user and password (htpasswd, bcrypt)
    /// and also accepts deletes.
    pub fn start(auth: Option<(&str, &str)>) -> TestRegistry {
        // A port found free can be taken by another test's registry before ours binds it:
        // ours then exits, and a connect reaches the other one (until that one is gone).
        // So the registry must be seen listening itself, else it starts again elsewhere.
        for _ in 0..5 {
            if let Some(reg) = Self::try_start(auth) {
                return reg;
            }
        }
        panic!("docker-registry did not start listening on a free port in 5 tries");
    }

    fn try_start(auth: Option<(&str, &str)>) -> Option<TestRegistry> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            dir.path().join("data").display()
        );
        if auth.is_some() {
            config.push_str("  delete:\n    enabled: true\n");
        }
        config.push_str(&format!(
            "http:\n  addr: {addr}\n  secret: berth-test-secret\n"
        ));
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write registry config");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let mut reg = TestRegistry {
            child,
            addr,
            _dir: dir,
        };
        // Start-up wait only; no assertion depends on how long anything takes.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !listens(reg.child.id(), port) {
            if reg.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(reg)
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (/proc/net/tcp's
/// LISTEN entry for it, and a descriptor of the process naming its inode).
fn listens(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
    });
    let Some(inode) = inode else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == want))
    })
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
