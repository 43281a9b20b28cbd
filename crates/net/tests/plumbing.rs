//! Real bridges, veths and namespaces: a namespace bound to a file gets a veth on a
//! test-made bridge, and the host reaches a listener inside it over that path. Everything is
//! named uniquely and removed by guards, also when an assertion fails.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};

use berth_net::{link, netns, nft};

mod common;
use common::{
    answer_once, attach_eth0, bridge, facility_or_skip, in_netns, read_from, root_or_skip,
    serve_once_in, setup, uniq, Guard,
};

#[test]
fn veth_in_a_named_netns_on_a_bridge() {
    let Some(mut t) = setup("t4") else {
        return;
    };
    let (nsp, br, hif, pif) = (
        t.ns.clone(),
        t.bridge.clone(),
        t.host_if.clone(),
        t.peer.clone(),
    );
    // a /24 from TEST-NET-ish private space unlikely to be routed here
    let gw: Ipv4Addr = "10.231.77.1".parse().unwrap();
    let ip: Ipv4Addr = "10.231.77.2".parse().unwrap();
    bridge(&br, gw, Some(1400), None).expect("bridge");
    // adopting an existing bridge is not an error
    bridge(&br, gw, None, None).expect("bridge again");
    netns::create(&nsp).expect("netns");
    assert!(netns::is_bound(&nsp));
    attach_eth0(&t, ip, gw, Some(1400)).expect("attach");
    assert!(link::link_exists(&hif).unwrap());
    // the peer was renamed inside: not in the host
    assert!(!link::link_exists(&pif).unwrap());

    // a listener inside the namespace, reached from the host through the bridge
    let (port, server) = serve_once_in(&nsp, ip.into(), b"hello from the netns");
    assert_eq!(read_from(ip.into(), port), "hello from the netns");
    server.join().expect("server");

    // removal: unbinding the namespace takes its veth end and so the host end
    netns::remove(&nsp).expect("remove netns");
    assert!(!nsp.exists());
    link::delete_link(&hif).expect("delete host end");
    assert!(!link::link_exists(&hif).unwrap());
    link::delete_link(&br).expect("delete bridge");
    assert!(!link::link_exists(&br).unwrap());
    t.guard.links.clear();
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

/// The ULA /48 of this run (RFC 4193 space, random), so that nothing routed here is hit.
fn test_ula48() -> [u16; 3] {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    [
        0xfd00 | u16::from(b[0]),
        u16::from_be_bytes([b[1], b[2]]),
        u16::from_be_bytes([b[3], b[4]]),
    ]
}

#[test]
fn v6_addresses_skip_dad_and_route_via_the_gateway() {
    let Some(mut t) = setup("t6") else {
        return;
    };
    if !facility_or_skip(
        std::path::Path::new("/proc/net/if_inet6").exists(),
        "the kernel has no IPv6",
    ) {
        return;
    }
    let (nsp, br, hif) = (t.ns.clone(), t.bridge.clone(), t.host_if.clone());
    let p = test_ula48();
    let gw6 = std::net::Ipv6Addr::new(p[0], p[1], p[2], 1, 0, 0, 0, 1);
    let ip6 = std::net::Ipv6Addr::new(p[0], p[1], p[2], 1, 0, 0, 0, 2);
    let gw: Ipv4Addr = "10.231.79.1".parse().unwrap();
    let ip: Ipv4Addr = "10.231.79.2".parse().unwrap();
    bridge(&br, gw, None, Some((gw6, 64))).expect("dual-stack bridge");
    netns::create(&nsp).expect("netns");
    attach_eth0(&t, ip, gw, None).expect("attach");
    link::configure_v6(&nsp, "eth0", ip6, 64, Some(gw6)).expect("configure v6");

    // at once, inside: the address is not tentative (a tentative one cannot be bound), and the
    // default v6 route goes via the gateway
    let (rx, server) = in_netns(&nsp, move |tx| {
        // thread-self: /proc/self/net would be the main thread's namespace
        let addrs = std::fs::read_to_string("/proc/thread-self/net/if_inet6").expect("if_inet6");
        let hex: String = ip6.octets().iter().map(|b| format!("{b:02x}")).collect();
        let line = addrs
            .lines()
            .find(|l| l.starts_with(&hex))
            .unwrap_or_else(|| panic!("{ip6} not on eth0: {addrs}"))
            .to_string();
        let routes =
            std::fs::read_to_string("/proc/thread-self/net/ipv6_route").expect("ipv6_route");
        let gwhex: String = gw6.octets().iter().map(|b| format!("{b:02x}")).collect();
        let default = routes
            .lines()
            .any(|l| l.starts_with(&format!("{:032x} 00 ", 0)) && l.contains(&gwhex));
        let l = TcpListener::bind((ip6, 0)).expect("bind the new v6 address at once");
        tx.send((line, default, l.local_addr().expect("addr").port()))
            .expect("send");
        answer_once(&l, b"hello over v6");
    });
    let (line, default, port) = rx.recv().expect("from the netns");
    let flags = line
        .split_whitespace()
        .nth(4)
        .and_then(|f| u32::from_str_radix(f, 16).ok())
        .unwrap_or(0);
    // IFA_F_NODAD (0x02) set, IFA_F_TENTATIVE (0x40) not
    assert_eq!(flags & 0x42, 0x02, "flags of {ip6}: {line}");
    assert!(default, "no default v6 route via {gw6}");
    assert_eq!(read_from(ip6.into(), port), "hello over v6");
    server.join().expect("server");

    netns::remove(&nsp).expect("remove netns");
    link::delete_link(&hif).expect("delete host end");
    link::delete_link(&br).expect("delete bridge");
    assert!(!std::fs::read_to_string("/proc/net/if_inet6")
        .unwrap_or_default()
        .contains(
            &gw6.octets()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
    t.guard.links.clear();
}
