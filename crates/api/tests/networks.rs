//! Networks through the API of a real daemon: user networks that reach inside and not across,
//! NAT to a test-made "outside" namespace, an internal network without a way out, published
//! TCP and UDP ports on 127.0.0.1 and on a host address, a port in use, bad input refused with
//! nothing half-made, and no veth, namespace, bridge, rule or lease left after removal.
//! Traffic goes only to addresses this test made. Needs root and the berth binary.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use serde_json::json;

mod common;
use common::net::{
    berth_and_nft_or_skip, bridges_of, check_gone, http_get, links, nc_get, outside_world,
    published_port, remove, Leftovers,
};
use common::{call as req, create, inspect, run_to_exit, start, start_daemon};

#[test]
fn networks_connect_isolate_nat_publish_and_clean_up() {
    let Some(berth) = berth_and_nft_or_skip() else {
        return;
    };
    let k = (std::process::id() % 200) as u8 + 20;
    let mut left = Leftovers::new();
    let d = start_daemon(&berth, "berth-net-test", true);
    let s = &d.sock;
    let (table, default_bridge) = berth_engine::network::instance_names(&d.dir.path().join("data"));
    left.table = Some(table.clone());
    left.links.push(default_bridge.clone());

    // the test's "outside world": a namespace behind a bridge of its own, with a server
    let host_addr = Ipv4Addr::new(198, 18, k, 1);
    let outside_addr = Ipv4Addr::new(198, 18, k, 2);
    let outside_port = outside_world(
        &mut left,
        d.dir.path(),
        "bx",
        (host_addr, outside_addr),
        None,
        "outside-hello",
    );

    // networks: one with a subnet given, one chosen, one internal
    let subnet = format!("10.{}.{k}.0/24", 100 + (std::process::id() % 50));
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(
            json!({"Name": "tn-a", "IPAM": {"Config": [{"Subnet": subnet}]}, "Labels": {"t": "1"}}),
        ),
    );
    assert_eq!(code, 201, "create tn-a: {v}");
    let (code, v) = req(s, "POST", "/networks/create", Some(json!({"Name": "tn-b"})));
    assert_eq!(code, 201, "create tn-b: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": "tn-int", "Internal": true})),
    );
    assert_eq!(code, 201, "create tn-int: {v}");
    let nets = ["tn-a", "tn-b", "tn-int"];
    let bridges = bridges_of(s, &nets, &mut left, |_, _| {});
    assert!(links().contains(&bridges[0]), "bridge of tn-a is up");
    let (_, v) = req(
        s,
        "GET",
        "/networks?filters=%7B%22label%22%3A%5B%22t%3D1%22%5D%7D",
        None,
    );
    assert_eq!(v.as_array().map(|a| a.len()), Some(1), "label filter: {v}");

    // bad input: refused, nothing half-made
    let before = links();
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": "tn-overlap", "IPAM": {"Config": [{"Subnet": subnet}]}})),
    );
    assert_eq!(code, 409, "overlapping subnet: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(
            json!({"Name": "tn-gw", "IPAM": {"Config": [{"Subnet": "10.251.7.0/24", "Gateway": "10.252.7.1"}]}}),
        ),
    );
    assert_eq!(code, 400, "gateway outside: {v}");
    let (code, v) = req(s, "POST", "/networks/create", Some(json!({"Name": "tn-a"})));
    assert_eq!(code, 409, "existing name: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=badip",
        Some(
            json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "tn-a"},
            "NetworkingConfig": {"EndpointsConfig": {"tn-a": {"IPAMConfig": {"IPv4Address": "10.9.9.9"}}}}}),
        ),
    );
    assert_eq!(code, 400, "IP outside the subnet: {v}");
    for (ports, what) in [
        (json!({"80/icmp": [{"HostPort": "8080"}]}), "protocol"),
        (json!({"80/tcp": [{"HostPort": "80x"}]}), "host port"),
        (json!({"0/tcp": [{"HostPort": "8080"}]}), "container port"),
    ] {
        let (code, v) = req(
            s,
            "POST",
            "/containers/create?name=badport",
            Some(
                json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"PortBindings": ports}}),
            ),
        );
        assert_eq!(code, 400, "invalid port spec ({what}): {v}");
    }
    let (code, v) = req(s, "GET", "/networks/nope", None);
    assert_eq!(code, 404, "{v}");
    assert_eq!(links(), before, "bad input made links");
    let (_, v) = req(s, "GET", "/containers/json?all=1", None);
    assert_eq!(
        v.as_array().map(|a| a.len()),
        Some(0),
        "bad input made containers: {v}"
    );
    let (_, v) = req(s, "GET", "/networks", None);
    assert_eq!(v.as_array().map(|a| a.len()), Some(4), "networks: {v}");

    // two containers on tn-a reach each other; one on tn-b cannot
    let static_ip = format!("10.{}.{k}.50", 100 + (std::process::id() % 50));
    let a1 = create(
        s,
        "a1",
        json!({"Image": "busybox", "Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"],
            "HostConfig": {"NetworkMode": "tn-a"},
            "NetworkingConfig": {"EndpointsConfig": {"tn-a": {"IPAMConfig": {"IPv4Address": static_ip}, "Aliases": ["web"]}}}}),
    );
    start(s, &a1);
    let i = inspect(s, &a1);
    let net = &i["NetworkSettings"]["Networks"]["tn-a"];
    assert_eq!(net["IPAddress"], json!(static_ip), "{net}");
    assert_eq!(net["IPPrefixLen"], json!(24));
    assert!(
        net["Gateway"].as_str().is_some_and(|g| g.ends_with(".1")),
        "{net}"
    );
    assert!(
        net["MacAddress"]
            .as_str()
            .is_some_and(|m| m.starts_with("02:42:")),
        "{net}"
    );
    let (code, out) = run_to_exit(
        s,
        "a2",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", nc_get(&static_ip, 80)], "HostConfig": {"NetworkMode": "tn-a"}}),
    );
    assert_eq!(code, 0, "a2 → a1 on tn-a: {out}");
    assert!(out.contains(&a1[..12]), "a1 answered: {out}");
    let (code, out) = run_to_exit(
        s,
        "b1",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", format!("ping -c1 -W2 {static_ip} || exit 1; {}", nc_get(&static_ip, 80))], "HostConfig": {"NetworkMode": "tn-b"}}),
    );
    assert_ne!(code, 0, "tn-b must not reach tn-a: {out}");
    assert!(!out.contains(&a1[..12]), "{out}");
    // names: the embedded DNS of tn-a answers the name and the alias; tn-b's does not know it
    let (code, out) = run_to_exit(
        s,
        "dns1",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "nslookup a1 && nslookup web && ping -c1 -W2 web"],
            "HostConfig": {"NetworkMode": "tn-a"}}),
    );
    assert_eq!(code, 0, "names on tn-a: {out}");
    assert!(out.contains(&format!("Address: {static_ip}")), "{out}");
    let (code, out) = run_to_exit(
        s,
        "dns2",
        json!({"Image": "busybox", "Cmd": ["nslookup", "a1"], "HostConfig": {"NetworkMode": "tn-b"}}),
    );
    assert_ne!(code, 0, "tn-b resolved a name of tn-a: {out}");
    assert!(!out.contains(&static_ip), "{out}");
    // a container on tn-b connected to tn-a too reaches it
    let c1 = create(
        s,
        "c1",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", nc_get(&static_ip, 80)], "HostConfig": {"NetworkMode": "tn-b"}}),
    );
    let (code, v) = req(
        s,
        "POST",
        "/networks/tn-a/connect",
        Some(json!({"Container": "c1", "EndpointConfig": {"Aliases": ["both"]}})),
    );
    assert_eq!(code, 200, "connect: {v}");
    start(s, &c1);
    let (_, v) = req(s, "POST", &format!("/containers/{c1}/wait"), None);
    assert_eq!(v["StatusCode"], json!(0), "c1 on both networks reaches a1");
    let (code, v) = req(s, "DELETE", "/networks/tn-a", None);
    assert_eq!(code, 409, "a network with containers is not removed: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/networks/tn-a/disconnect",
        Some(json!({"Container": "c1"})),
    );
    assert_eq!(code, 200, "disconnect: {v}");
    let (code, _) = req(s, "DELETE", &format!("/containers/{c1}?force=1"), None);
    assert_eq!(code, 204);

    // NAT to the outside; an internal network has no way out
    let (code, out) = run_to_exit(
        s,
        "nat1",
        json!({"Image": "busybox", "Cmd": ["nc", "-w", "5", outside_addr.to_string(), outside_port.to_string()]}),
    );
    assert_eq!(code, 0, "outbound NAT: {out}");
    // the outside saw the host's address, not the container's
    assert!(
        out.contains(&format!("outside-hello from-{host_addr}")),
        "{out}"
    );
    let (code, out) = run_to_exit(
        s,
        "int1",
        json!({"Image": "busybox", "Cmd": ["nc", "-w", "3", outside_addr.to_string(), outside_port.to_string()],
            "HostConfig": {"NetworkMode": "tn-int"}}),
    );
    assert_ne!(code, 0, "an internal network reached the outside: {out}");

    // published ports: TCP on 127.0.0.1 and on a host address, UDP, a port in use
    let p1 = create(
        s,
        "p1",
        json!({"Image": "busybox", "Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"],
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": ""}]}}}),
    );
    start(s, &p1);
    let i = inspect(s, &p1);
    let port = published_port(&i, "80/tcp");
    assert_eq!(i["HostConfig"]["NetworkMode"], json!("bridge"));
    for host in [Ipv4Addr::LOCALHOST, host_addr] {
        let got = http_get(SocketAddr::from((host, port)))
            .unwrap_or_else(|e| panic!("GET {host}:{port}: {e}"));
        assert!(got.contains(&p1[..12]), "{host}:{port} answered {got}");
    }
    let (_, v) = req(s, "GET", "/containers/json", None);
    let ps = v
        .as_array()
        .and_then(|a| a.iter().find(|c| c["Id"] == json!(p1)))
        .cloned()
        .expect("p1 in ps");
    assert_eq!(ps["Ports"][0]["PublicPort"], json!(port), "{ps}");
    // hairpin: another container reaches p1 through the host's address
    let (code, out) = run_to_exit(
        s,
        "hairpin",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", nc_get(&host_addr.to_string(), port)]}),
    );
    assert_eq!(code, 0, "hairpin: {out}");
    assert!(out.contains(&p1[..12]), "{out}");

    let u1 = create(
        s,
        "u1",
        json!({"Image": "busybox",
            "Cmd": ["chroot", "/host", "/usr/bin/python3", "-c",
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9999))\nwhile True:\n d,a=s.recvfrom(100)\n s.sendto(b'pong:'+d,a)"],
            "HostConfig": {"Binds": ["/:/host:ro"], "PortBindings": {"9999/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}),
    );
    start(s, &u1);
    let i = inspect(s, &u1);
    let uport = published_port(&i, "9999/udp");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut got = None;
    // the server needs a moment to bind after start: datagrams before it are lost
    for _ in 0..40 {
        sock.send_to(b"ping", ("127.0.0.1", uport)).expect("send");
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    assert_eq!(
        got.as_deref(),
        Some("pong:ping"),
        "UDP through the published port"
    );

    let busy = TcpListener::bind("0.0.0.0:0").expect("bind a busy port");
    let busy_port = busy.local_addr().expect("addr").port();
    let x1 = create(
        s,
        "x1",
        json!({"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": busy_port.to_string()}]}}}),
    );
    let (code, v) = req(s, "POST", &format!("/containers/{x1}/start"), None);
    assert!(code == 409 || code == 500, "a port in use: {code} {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("already allocated")),
        "{v}"
    );
    assert!(
        !d.dir.path().join("run/netns").join(&x1).exists(),
        "netns of a failed start"
    );
    drop(busy);

    // removal: no veth, namespace, bridge, rule or lease behind
    let mut ids = vec![a1.clone(), p1.clone(), u1.clone(), x1.clone()];
    ids.sort();
    remove(s, &ids, &nets);
    check_gone(&ids, &bridges, &table);
    let netns_left: Vec<_> = std::fs::read_dir(d.dir.path().join("run/netns"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(netns_left.is_empty(), "netns left: {netns_left:?}");
    let rules = berth_net::nft::list_table(&table).expect("list table");
    assert!(!rules.contains("dnat to"), "port rules left: {rules}");
    let (_, v) = req(s, "GET", "/networks/bridge", None);
    assert_eq!(v["Containers"], json!({}), "leases left: {v}");
    let (_, v) = req(s, "POST", "/networks/prune", None);
    assert_eq!(v["NetworksDeleted"], json!([]), "{v}");
    drop(d);
}
