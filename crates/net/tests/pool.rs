//! Prepared namespaces for real: one made ahead (lo up, eth0 waiting inside, the host end on
//! no bridge), claimed onto a test-made bridge with an address, a MAC and a default route,
//! reached from the host through that bridge; unbinding it takes the veth pair along (the
//! kernel's work), and a discarded one leaves nothing. Unique names, guards that clean up.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use berth_net::{link, netns, pool};

mod common;
use common::{bridge, read_from, serve_once_in, setup};

/// The kernel destroys an unbound namespace, and the veths in it, in its cleanup work: the
/// host end goes soon after, not at once. Waits for that (10 s at most) and says if it went.
fn gone_eventually(name: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if !link::link_exists(name).expect("look up link") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// eth0's line and the routes inside the namespace, as `ip` shows them (sysfs and /proc/net
/// would show the test process's own namespace, not a thread's).
fn inside(ns: &std::path::Path) -> (String, String) {
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg("ip")
            .args(args)
            .output()
            .expect("nsenter ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (ip(&["-o", "link", "show", "eth0"]), ip(&["-4", "route"]))
}

#[test]
fn prepared_netns_is_claimed_onto_a_bridge_and_goes_with_its_namespace() {
    let Some(mut t) = setup("tp") else {
        return;
    };
    // the pool's name of the namespace and of its host end; the container's names
    let (nsp, pool_if) = (t.ns.clone(), t.peer.clone());
    let (named, host_if) = (t.dir.path().join("c0"), t.host_if.clone());
    let br = t.bridge.clone();
    t.guard.ns.push(named.clone());
    let gw: Ipv4Addr = "10.231.78.1".parse().unwrap();
    let ip: Ipv4Addr = "10.231.78.2".parse().unwrap();
    bridge(&br, gw, None, None).expect("bridge");

    let p = pool::prepare(&nsp, &pool_if).expect("prepare");
    assert!(netns::is_bound(&nsp));
    assert!(link::link_exists(&pool_if).unwrap(), "host end waits");
    // the container's name for it, as the engine binds it
    netns::bind(&nsp, &named).expect("bind under the container's name");
    let mut host = pool::Sock::open().expect("host socket");
    p.claim(
        &mut host,
        &pool::Claim {
            host_if: &host_if,
            bridge: &br,
            addr: ip,
            prefix: 24,
            gateway: Some(gw),
            mac: berth_net::mac_of(ip),
            mtu: None,
        },
    )
    .expect("claim");
    netns::remove(&nsp).expect("unbind the pool's name");
    assert!(link::link_exists(&host_if).unwrap(), "renamed host end");
    assert!(!link::link_exists(&pool_if).unwrap(), "pool name gone");
    let master = std::fs::read_link(format!("/sys/class/net/{host_if}/master")).expect("master");
    assert!(master.ends_with(&br), "{master:?}");
    let (eth0, routes) = inside(&named);
    assert!(eth0.contains("link/ether 02:42:0a:e7:4e:02"), "{eth0}");
    assert!(eth0.contains(",UP,"), "{eth0}");
    assert!(
        routes.contains("default via 10.231.78.1 dev eth0"),
        "{routes}"
    );

    // reached from the host over the bridge
    let (port, server) = serve_once_in(&named, ip.into(), b"pooled");
    assert_eq!(read_from(ip.into(), port), "pooled");
    server.join().expect("server");

    // unbinding the last name: the kernel removes the pair
    netns::remove(&named).expect("unbind");
    assert!(
        gone_eventually(&host_if),
        "host end of an unbound namespace left"
    );

    // a prepared one that is never used: discarding it leaves nothing either
    let q = t.dir.path().join("p1");
    t.guard.ns.push(q.clone());
    let p = pool::prepare(&q, &pool_if).expect("prepare again");
    pool::discard(p).expect("discard");
    assert!(!q.exists());
    assert!(
        gone_eventually(&pool_if),
        "host end of a discarded entry left"
    );
    link::delete_link(&br).expect("delete bridge");
    t.guard.links.clear();
}
