//! Real bridges, veths and namespaces: a namespace bound to a file gets a veth on a
//! test-made bridge, and the host reaches a listener inside it over that path. Everything is
//! named uniquely and removed by guards, also when an assertion fails.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

use berth_net::{link, netns, nft};

fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("needs root (netlink, namespaces)");
    }
    println!("SKIP: needs root (netlink, namespaces)");
    false
}

struct Guard {
    links: Vec<String>,
    ns: Vec<PathBuf>,
    table: Option<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = link::delete_link(l);
        }
        for n in &self.ns {
            let _ = netns::remove(n);
        }
        if let Some(t) = &self.table {
            let _ = nft::delete_table(t);
        }
    }
}

fn uniq() -> String {
    format!("{:x}", std::process::id() & 0xffff)
}

#[test]
fn veth_in_a_named_netns_on_a_bridge() {
    if !root_or_skip() {
        return;
    }
    let u = uniq();
    let dir = tempfile::tempdir().expect("tempdir");
    let nsp = dir.path().join("ns1");
    let br = format!("tbr{u}");
    let (hif, pif) = (format!("tvh{u}"), format!("tvp{u}"));
    let mut g = Guard {
        links: vec![br.clone(), hif.clone(), pif.clone()],
        ns: vec![nsp.clone()],
        table: None,
    };
    // a /24 from TEST-NET-ish private space unlikely to be routed here
    let gw: Ipv4Addr = "10.231.77.1".parse().unwrap();
    let ip: Ipv4Addr = "10.231.77.2".parse().unwrap();
    link::ensure_bridge(&berth_net::BridgeSpec {
        name: br.clone(),
        gateway: gw,
        prefix: 24,
        mtu: Some(1400),
        gateway6: None,
    })
    .expect("bridge");
    // adopting an existing bridge is not an error
    link::ensure_bridge(&berth_net::BridgeSpec {
        name: br.clone(),
        gateway: gw,
        prefix: 24,
        mtu: None,
        gateway6: None,
    })
    .expect("bridge again");
    netns::create(&nsp).expect("netns");
    assert!(netns::is_bound(&nsp));
    link::attach(&berth_net::Attach {
        netns: &nsp,
        host_if: &hif,
        peer_tmp: &pif,
        ifname: "eth0",
        bridge: &br,
        addr: ip,
        prefix: 24,
        gateway: Some(gw),
        mac: berth_net::mac_of(ip),
        mtu: Some(1400),
    })
    .expect("attach");
    assert!(link::link_exists(&hif).unwrap());
    // the peer was renamed inside: not in the host
    assert!(!link::link_exists(&pif).unwrap());

    // a listener inside the namespace, reached from the host through the bridge
    let nsp2 = nsp.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let f = std::fs::File::open(&nsp2).expect("open ns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = TcpListener::bind((ip, 0)).expect("bind inside");
        tx.send(l.local_addr().expect("addr").port()).expect("send");
        let (mut c, _) = l.accept().expect("accept");
        c.write_all(b"hello from the netns").expect("write");
    });
    let port = rx.recv().expect("port");
    let mut c = TcpStream::connect(SocketAddr::from((ip, port))).expect("connect via bridge");
    let mut s = String::new();
    c.read_to_string(&mut s).expect("read");
    assert_eq!(s, "hello from the netns");
    server.join().expect("server");

    // removal: unbinding the namespace takes its veth end and so the host end
    netns::remove(&nsp).expect("remove netns");
    assert!(!nsp.exists());
    link::delete_link(&hif).expect("delete host end");
    assert!(!link::link_exists(&hif).unwrap());
    link::delete_link(&br).expect("delete bridge");
    assert!(!link::link_exists(&br).unwrap());
    g.links.clear();
}

#[test]
fn nft_table_is_replaced_atomically_and_removed() {
    if !root_or_skip() {
        return;
    }
    let t = format!("berth_t{}", uniq());
    let _g = Guard {
        links: vec![],
        ns: vec![],
        table: Some(t.clone()),
    };
    let st = nft::FirewallState {
        networks: vec![nft::NetRules {
            bridge: "tbrx".into(),
            subnet: "10.231.78.0/24".into(),
            internal: false,
            subnet6: None,
        }],
        ports: vec![nft::PortRule {
            proto: "udp".into(),
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 40053,
            container_ip: "10.231.78.2".parse().unwrap(),
            container_port: 53,
            container_ip6: None,
        }],
        comment: "/nonexistent/berth-test".into(),
    };
    nft::apply(&t, &st).expect("apply");
    let l = nft::list_table(&t).unwrap();
    assert!(l.contains("dnat to 10.231.78.2:53"), "{l}");
    // a second apply replaces, it does not add
    nft::apply(&t, &st).expect("apply again");
    let l = nft::list_table(&t).unwrap();
    assert_eq!(l.matches("dnat to").count(), 1, "{l}");
    nft::apply(&t, &nft::FirewallState::default()).expect("apply empty");
    assert!(!nft::list_table(&t).unwrap().contains("dnat to"));
    nft::delete_table(&t).expect("delete");
    assert!(!nft::table_exists(&t).unwrap());
    nft::delete_table(&t).expect("delete twice");
}
