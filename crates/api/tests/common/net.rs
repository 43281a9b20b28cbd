//! What the network tests share: their skip rule, what they made outside the daemon and its
//! removal, a test-made "outside world" (a namespace behind a bridge of its own, with a
//! server that names who called), HTTP to a published port, and the checks that nothing of
//! the containers and networks is left.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{berth_bin, call, skip};

/// The berth binary, when the test can run: as root, with it built.
pub fn berth_or_skip() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() && skip("needs root") {
        return None;
    }
    let b = berth_bin();
    if b.is_none() && skip("target/debug/berth is not built (cargo build -p berth)") {
        return None;
    }
    b
}

/// The same, with nft installed too.
pub fn berth_and_nft_or_skip() -> Option<PathBuf> {
    let b = berth_or_skip()?;
    let nft = std::process::Command::new("nft").arg("--version").output();
    if nft.is_err() && skip("nft (Debian's nftables) is not installed") {
        return None;
    }
    Some(b)
}

/// `GET /hostname` over HTTP/1.0: the text of the answer.
pub fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut tries = 0;
    let mut c = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            // the server in the container may not listen yet right after start
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            r => break r?,
        }
    };
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    Ok(s)
}

/// The shell line that does `http_get` inside a busybox container.
pub fn nc_get(ip: &str, port: u16) -> String {
    format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} {port}")
}

/// The host's links, a name a line.
pub fn links() -> String {
    let out = std::process::Command::new("ls")
        .arg("/sys/class/net")
        .output()
        .expect("ls /sys/class/net");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the test made outside the daemon, and the daemon's own bridge and tables: removed
/// after the daemon (declared before it, so dropped after it), also on failure.
pub struct Leftovers {
    pub links: Vec<String>,
    pub netns: Vec<PathBuf>,
    pub table: Option<String>,
    /// Tells the outside server to stop.
    pub stop: Arc<AtomicBool>,
}

impl Leftovers {
    pub fn new() -> Leftovers {
        Leftovers {
            links: Vec::new(),
            netns: Vec::new(),
            table: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for n in &self.netns {
            let _ = berth_net::netns::remove(n);
        }
        for l in &self.links {
            let _ = berth_net::link::delete_link(l);
        }
        if let Some(t) = &self.table {
            let _ = berth_net::nft::delete_table(t);
        }
    }
}

/// Makes the outside world of a test in `dir` (recorded in `left`): links named
/// `<tag>b|h|p<pid>`, the host with `v4.0` (and `v6.0`) on its bridge, the namespace with
/// `v4.1` (and `v6.1`) and a server on its v6 address if it has one, else on its v4 one,
/// that answers `<greeting> from-<caller's address>`. Returns the server's port.
pub fn outside_world(
    left: &mut Leftovers,
    dir: &Path,
    tag: &str,
    v4: (Ipv4Addr, Ipv4Addr),
    v6: Option<(Ipv6Addr, Ipv6Addr)>,
    greeting: &'static str,
) -> u16 {
    // beside the test daemon's directory, not in it: the daemon (and its directory) may go
    // first, and a namespace still bound there would keep the directory from being removed
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let ns = dir.with_file_name(format!("{}-outside-ns", name.unwrap_or_default()));
    let pid = std::process::id() % 100000;
    let (br, host_if, peer) = (
        format!("{tag}b{pid}"),
        format!("{tag}h{pid}"),
        format!("{tag}p{pid}"),
    );
    left.links.extend([br.clone(), host_if.clone()]);
    left.netns.push(ns.clone());
    berth_net::link::ensure_bridge(&berth_net::BridgeSpec {
        name: br.clone(),
        gateway: v4.0,
        prefix: 24,
        mtu: None,
        gateway6: v6.map(|(gw, _)| (gw, 64)),
    })
    .expect("outside bridge");
    berth_net::netns::create(&ns).expect("outside netns");
    berth_net::link::attach(&berth_net::Attach {
        netns: &ns,
        host_if: &host_if,
        peer_tmp: &peer,
        ifname: "eth0",
        bridge: &br,
        addr: v4.1,
        prefix: 24,
        gateway: None,
        mac: berth_net::mac_of(v4.1),
        mtu: None,
    })
    .expect("outside veth");
    if let Some((_, a6)) = v6 {
        berth_net::link::configure_v6(&ns, "eth0", a6, 64, None).expect("outside v6 address");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = left.stop.clone();
    let listen: IpAddr = v6.map_or(v4.1.into(), |(_, a6)| a6.into());
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("open outside ns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter outside ns");
        let l = TcpListener::bind((listen, 0)).expect("bind outside server");
        l.set_nonblocking(true).expect("nonblocking");
        tx.send(l.local_addr().expect("addr").port())
            .expect("send port");
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut c, peer)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.write_all(format!("{greeting} from-{}\n", peer.ip()).as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    rx.recv().expect("outside port")
}

/// Inspects networks `names` (each checked by `check`); their bridges, recorded in `left`.
pub fn bridges_of(
    sock: &Path,
    names: &[&str],
    left: &mut Leftovers,
    check: impl Fn(&str, &serde_json::Value),
) -> Vec<String> {
    let mut bridges = Vec::new();
    for n in names {
        let (code, v) = call(sock, "GET", &format!("/networks/{n}"), None);
        assert_eq!(code, 200, "inspect {n}: {v}");
        check(n, &v);
        let b = v["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .expect("bridge name")
            .to_string();
        left.links.push(b.clone());
        bridges.push(b);
    }
    bridges
}

/// The host port published for `key` (as `80/tcp`) in a container's inspect.
pub fn published_port(inspect: &serde_json::Value, key: &str) -> u16 {
    inspect["NetworkSettings"]["Ports"][key][0]["HostPort"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no published port {key}: {}", inspect["NetworkSettings"]))
}

/// Removes the containers `ids` (forced), then the networks `nets`.
pub fn remove(sock: &Path, ids: &[String], nets: &[&str]) {
    for id in ids {
        let (code, v) = call(sock, "DELETE", &format!("/containers/{id}?force=1"), None);
        assert_eq!(code, 204, "remove {id}: {v}");
    }
    for n in nets {
        let (code, v) = call(sock, "DELETE", &format!("/networks/{n}"), None);
        assert_eq!(code, 204, "remove network {n}: {v}");
    }
}

/// After `remove`: no bridge of `bridges`, no veth of the containers `ids` and no rule of
/// the bridges in table `table` is left.
pub fn check_gone(ids: &[String], bridges: &[String], table: &str) {
    let now = links();
    for b in bridges {
        assert!(!now.lines().any(|l| l == b), "bridge {b} left");
    }
    for id in ids {
        assert!(
            !now.contains(&format!("vb{}", &id[..9])),
            "veth of {id} left: {now}"
        );
    }
    let rules = berth_net::nft::list_table(table).expect("list table");
    for b in bridges {
        assert!(!rules.contains(b.as_str()), "rules of {b} left: {rules}");
    }
}
