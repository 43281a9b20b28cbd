//! What the berth-net tests share: the skip rule, a guard that removes what a test made (also
//! when an assertion fails), a name suffix unique to the run, and a listener in a namespace
//! reached from the host.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use berth_net::{link, netns, nft};

/// False, after saying why, when the test cannot run here; under CI=true it fails instead.
pub fn facility_or_skip(present: bool, reason: &str) -> bool {
    if !present {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{reason}");
        println!("SKIP: {reason}");
    }
    present
}

pub fn root_or_skip() -> bool {
    facility_or_skip(
        nix::unistd::geteuid().is_root(),
        "needs root (netlink, namespaces)",
    )
}

/// What a test made: namespaces unbound first, then links deleted, then the table.
pub struct Guard {
    pub links: Vec<String>,
    pub ns: Vec<PathBuf>,
    pub table: Option<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = netns::remove(n);
        }
        for l in &self.links {
            let _ = link::delete_link(l);
        }
        if let Some(t) = &self.table {
            let _ = nft::delete_table(t);
        }
    }
}

/// A suffix for the names of this run's links and tables.
pub fn uniq() -> String {
    format!("{:x}", std::process::id() & 0xffff)
}

/// A test bridge with a v4 gateway (and a v6 one if given).
pub fn bridge(
    name: &str,
    gateway: Ipv4Addr,
    mtu: Option<u32>,
    gateway6: Option<(std::net::Ipv6Addr, u8)>,
) -> berth_net::Result<()> {
    link::ensure_bridge(&berth_net::BridgeSpec {
        name: name.to_string(),
        gateway,
        prefix: 24,
        mtu,
        gateway6,
    })
}

/// Enters namespace `ns` on a new thread and runs `serve` there; what it sends back arrives
/// through the returned receiver.
pub fn in_netns<T: Send + 'static>(
    ns: &Path,
    serve: impl FnOnce(&std::sync::mpsc::Sender<T>) + Send + 'static,
) -> (std::sync::mpsc::Receiver<T>, std::thread::JoinHandle<()>) {
    let ns = ns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("open ns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        serve(&tx);
    });
    (rx, t)
}

/// Accepts one connection on `l` and writes `msg` to it.
pub fn answer_once(l: &TcpListener, msg: &[u8]) {
    let (mut c, _) = l.accept().expect("accept");
    c.write_all(msg).expect("write");
}

/// A listener on `ip` inside namespace `ns` that answers one connection with `msg`; returns
/// its port and the thread to join.
pub fn serve_once_in(
    ns: &Path,
    ip: IpAddr,
    msg: &'static [u8],
) -> (u16, std::thread::JoinHandle<()>) {
    let (rx, t) = in_netns(ns, move |tx| {
        let l = TcpListener::bind((ip, 0)).expect("bind inside");
        tx.send(l.local_addr().expect("addr").port()).expect("send");
        answer_once(&l, msg);
    });
    (rx.recv().expect("port"), t)
}

/// What the listener at `ip`:`port` says, read to the end.
pub fn read_from(ip: IpAddr, port: u16) -> String {
    let mut c = TcpStream::connect(SocketAddr::from((ip, port)))
        .unwrap_or_else(|e| panic!("connect to {ip} port {port}: {e}"));
    let mut s = String::new();
    c.read_to_string(&mut s).expect("read");
    s
}

/// A test's temporary directory with a namespace path in it, and the names of its bridge and
/// veth pair (`<prefix>b`, `h`, `p` and the run's suffix), all in the guard.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub ns: PathBuf,
    pub bridge: String,
    pub host_if: String,
    pub peer: String,
    pub guard: Guard,
}

/// The set-up of a test, or None (said why) when it cannot run here.
pub fn setup(prefix: &str) -> Option<Setup> {
    if !root_or_skip() {
        return None;
    }
    let u = uniq();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = dir.path().join(format!("{prefix}ns"));
    let (bridge, host_if, peer) = (
        format!("{prefix}b{u}"),
        format!("{prefix}h{u}"),
        format!("{prefix}p{u}"),
    );
    let guard = Guard {
        links: vec![bridge.clone(), host_if.clone(), peer.clone()],
        ns: vec![ns.clone()],
        table: None,
    };
    Some(Setup {
        dir,
        ns,
        bridge,
        host_if,
        peer,
        guard,
    })
}

/// The veth pair of `s` made, its peer as `eth0` in `s.ns` with `ip`/24 and a default route
/// via `gw`, its host end on `s.bridge`.
pub fn attach_eth0(
    s: &Setup,
    ip: Ipv4Addr,
    gw: Ipv4Addr,
    mtu: Option<u32>,
) -> berth_net::Result<()> {
    link::attach(&berth_net::Attach {
        netns: &s.ns,
        host_if: &s.host_if,
        peer_tmp: &s.peer,
        ifname: "eth0",
        bridge: &s.bridge,
        addr: ip,
        prefix: 24,
        gateway: Some(gw),
        mac: berth_net::mac_of(ip),
        mtu,
    })
}
