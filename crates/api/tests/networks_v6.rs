//! Dual-stack networks through the API of a real daemon: two containers on an IPv6 network
//! reach each other by v6 address and get AAAA answers for each other's names; one on another
//! v6 network cannot reach them; NAT66 to a test-made "outside" namespace; an internal v6
//! network without a way out; a published port on the host's IPv6 address; `connect` with a
//! static IPv6Address; bad input refused with nothing half-made; and no address, lease or rule
//! left after removal. Traffic goes only to addresses this test made (a random ULA /48).
//! Needs root and the berth binary.

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

mod common;
use common::net::{
    berth_and_nft_or_skip, bridges_of, check_gone, http_get, links, nc_get, outside_world,
    published_port, remove, Leftovers,
};
use common::{call as req, create, inspect, run_to_exit, skip, start, start_daemon};

fn host_v6_addrs() -> String {
    std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default()
}

/// The hex form /proc/net/if_inet6 uses.
fn if_inet6_hex(a: Ipv6Addr) -> String {
    a.octets().iter().map(|b| format!("{b:02x}")).collect()
}

fn v6_leases(db: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys\nc=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True)\nprint(c.execute('SELECT count(*) FROM leases_v6').fetchone()[0])")
        .arg(db)
        .output()
        .expect("python3 sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A random ULA /48 (RFC 4193) for this run: fdXX:XXXX:XXXX::/48.
fn test_ula() -> [u16; 3] {
    let mut b = [0u8; 5];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b).map(|_| f));
    assert!(f.is_ok(), "read /dev/urandom");
    [
        0xfd00 | b[0] as u16,
        u16::from_be_bytes([b[1], b[2]]),
        u16::from_be_bytes([b[3], b[4]]),
    ]
}

fn addr6(p: [u16; 3], sub: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(p[0], p[1], p[2], sub, 0, 0, 0, host)
}

#[test]
fn ipv6_networks_reach_isolate_nat_publish_and_clean_up() {
    let Some(berth) = berth_and_nft_or_skip() else {
        return;
    };
    if !Path::new("/proc/net/if_inet6").exists() && skip("the kernel has no IPv6") {
        return;
    }
    if Command::new("python3").arg("--version").output().is_err()
        && skip("python3 (to read the lease table) is not installed")
    {
        return;
    }
    let pid = std::process::id();
    let k = (pid % 200) as u8 + 20;
    let ula = test_ula();
    let mut left = Leftovers::new();
    let d = start_daemon(&berth, "berth-net6-test", true);
    let s = &d.sock;
    let (table, default_bridge) = berth_engine::network::instance_names(&d.dir.path().join("data"));
    left.table = Some(table.clone());
    left.links.push(default_bridge.clone());

    // the "outside world": a namespace behind a bridge of its own, dual stack, with a v6 server
    let host_gw4 = Ipv4Addr::new(198, 19, k, 1);
    let outside4 = Ipv4Addr::new(198, 19, k, 2);
    let host_gw6 = addr6(ula, 0xff, 1);
    let outside6 = addr6(ula, 0xff, 2);
    let outside_port = outside_world(
        &mut left,
        d.dir.path(),
        "b6",
        (host_gw4, outside4),
        Some((host_gw6, outside6)),
        "outside6-hello",
    );

    // networks: dual stack with both subnets given, --ipv6 alone (a ULA /64 chosen), internal
    let sub4 = format!("10.{}.{k}.0/24", 60 + (pid % 40));
    let sub6a = format!("{}/64", addr6(ula, 1, 0));
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": "t6a", "EnableIPv6": true,
            "IPAM": {"Config": [{"Subnet": sub4}, {"Subnet": sub6a}]}})),
    );
    assert_eq!(code, 201, "create t6a: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": "t6b", "EnableIPv6": true})),
    );
    assert_eq!(code, 201, "create t6b: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(
            json!({"Name": "t6int", "EnableIPv6": true, "Internal": true,
            "IPAM": {"Config": [{"Subnet": format!("{}/64", addr6(ula, 3, 0))}]}}),
        ),
    );
    assert_eq!(code, 201, "create t6int: {v}");
    let nets = ["t6a", "t6b", "t6int"];
    let bridges = bridges_of(s, &nets, &mut left, |n, v| {
        assert_eq!(v["EnableIPv6"], json!(true), "{n}: {v}");
        let cfgs = v["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
        assert_eq!(cfgs.len(), 2, "{n}: a v4 and a v6 config: {v}");
        assert!(
            cfgs[1]["Subnet"].as_str().is_some_and(|x| x.contains(':')),
            "{v}"
        );
    });
    let (_, v) = req(s, "GET", "/networks/t6a", None);
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], json!(sub4), "{v}");
    assert_eq!(v["IPAM"]["Config"][1]["Subnet"], json!(sub6a), "{v}");
    let gw6a = addr6(ula, 1, 1);
    assert_eq!(v["IPAM"]["Config"][1]["Gateway"], json!(gw6a.to_string()));
    assert!(
        host_v6_addrs().contains(&if_inet6_hex(gw6a)),
        "the bridge of t6a has its v6 gateway"
    );
    let (_, v) = req(s, "GET", "/networks/t6b", None);
    let auto = v["IPAM"]["Config"][1]["Subnet"].as_str().unwrap_or("");
    assert!(
        auto.starts_with("fd") && auto.ends_with("/64"),
        "--ipv6 alone picks a ULA /64: {v}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
            .unwrap_or_default()
            .trim(),
        "1",
        "IPv6 forwarding on with a v6 network"
    );

    // bad input: 400 naming the value, nothing half-made
    let before = links();
    for (body, what, needle) in [
        (
            json!({"Name": "t6x", "EnableIPv6": true, "IPAM": {"Config": [{"Subnet": format!("{}/80", addr6(ula, 1, 0))}]}}),
            "overlapping v6 subnet",
            "overlaps",
        ),
        (
            json!({"Name": "t6x", "EnableIPv6": true, "IPAM": {"Config": [{"Subnet": format!("{}/64", addr6(ula, 4, 0)), "Gateway": addr6(ula, 5, 1).to_string()}]}}),
            "v6 gateway outside its subnet",
            "is not a host address",
        ),
        (
            json!({"Name": "t6x", "EnableIPv6": true, "IPAM": {"Config": [{"Subnet": format!("{}/127", addr6(ula, 4, 0))}]}}),
            "v6 prefix too long",
            "/127",
        ),
        (
            json!({"Name": "t6x", "EnableIPv6": true, "IPAM": {"Config": [{"Subnet": format!("{}/64", addr6(ula, 4, 9))}]}}),
            "v6 subnet with host bits",
            "host bits",
        ),
        (
            json!({"Name": "t6x", "EnableIPv6": true, "IPAM": {"Config": [{"Subnet": "fd00:zz::/64"}]}}),
            "malformed v6 subnet",
            "fd00:zz::/64",
        ),
        (
            json!({"Name": "t6x", "IPAM": {"Config": [{"Subnet": format!("{}/64", addr6(ula, 4, 0))}]}}),
            "v6 subnet without EnableIPv6",
            "not enabled",
        ),
    ] {
        let (code, v) = req(s, "POST", "/networks/create", Some(body));
        assert_eq!(code, 400, "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{what}: {v}"
        );
    }
    for (net, ip6, what) in [
        (
            "t6a",
            addr6(ula, 9, 5).to_string(),
            "--ip6 outside the subnet",
        ),
        ("t6a", "fd00::zz".to_string(), "malformed --ip6"),
        (
            "bridge",
            addr6(ula, 1, 5).to_string(),
            "--ip6 on a v4-only network",
        ),
    ] {
        let (code, v) = req(
            s,
            "POST",
            "/containers/create?name=badip6",
            Some(
                json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": net},
                "NetworkingConfig": {"EndpointsConfig": {net: {"IPAMConfig": {"IPv6Address": ip6}}}}}),
            ),
        );
        assert_eq!(code, 400, "{what}: {v}");
    }
    assert_eq!(links(), before, "bad input made links");
    let (_, v) = req(s, "GET", "/networks", None);
    assert_eq!(v.as_array().map(|a| a.len()), Some(4), "networks: {v}");
    let (_, v) = req(s, "GET", "/containers/json?all=1", None);
    assert_eq!(v.as_array().map(|a| a.len()), Some(0), "containers: {v}");

    // two containers on t6a reach each other over v6, by address and by name (AAAA)
    let a1_ip6 = addr6(ula, 1, 0x50);
    let a1 = create(
        s,
        "a1",
        json!({"Image": "busybox", "Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"],
            "HostConfig": {"NetworkMode": "t6a", "PortBindings": {"80/tcp": [{"HostPort": ""}]}},
            "ExposedPorts": {"80/tcp": {}},
            "NetworkingConfig": {"EndpointsConfig": {"t6a": {"IPAMConfig": {"IPv6Address": a1_ip6.to_string()}, "Aliases": ["web"]}}}}),
    );
    start(s, &a1);
    let i = inspect(s, &a1);
    let net = &i["NetworkSettings"]["Networks"]["t6a"];
    assert_eq!(net["GlobalIPv6Address"], json!(a1_ip6.to_string()), "{net}");
    assert_eq!(net["GlobalIPv6PrefixLen"], json!(64), "{net}");
    assert_eq!(net["IPv6Gateway"], json!(gw6a.to_string()), "{net}");
    assert!(
        net["IPAddress"].as_str().is_some_and(|a| !a.is_empty()),
        "{net}"
    );
    let (_, v) = req(s, "GET", "/networks/t6a", None);
    assert_eq!(
        v["Containers"][&a1]["IPv6Address"],
        json!(format!("{a1_ip6}/64")),
        "{v}"
    );
    let (code, out) = run_to_exit(
        s,
        "a2",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", format!("ping -6 -c1 -W3 {a1_ip6} && {}", nc_get(&a1_ip6.to_string(), 80))],
            "HostConfig": {"NetworkMode": "t6a"}}),
    );
    assert_eq!(code, 0, "a2 → a1 over v6 on t6a: {out}");
    assert!(out.contains(&a1[..12]), "a1 answered: {out}");
    // names: AAAA from the embedded DNS; its own v6 address in its /etc/hosts
    let dns6_ip6 = addr6(ula, 1, 0x70);
    let (code, out) = run_to_exit(
        s,
        "dns6",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", format!("nslookup -type=AAAA a1 && nslookup -type=AAAA web && ping -6 -c1 -W3 web && grep '^{dns6_ip6}\t' /etc/hosts")],
            "HostConfig": {"NetworkMode": "t6a"},
            "NetworkingConfig": {"EndpointsConfig": {"t6a": {"IPAMConfig": {"IPv6Address": dns6_ip6.to_string()}}}}}),
    );
    assert_eq!(code, 0, "AAAA on t6a: {out}");
    assert!(out.contains(&a1_ip6.to_string()), "{out}");
    // the same address twice is refused at start
    let dup = create(
        s,
        "dup",
        json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "t6a"},
            "NetworkingConfig": {"EndpointsConfig": {"t6a": {"IPAMConfig": {"IPv6Address": a1_ip6.to_string()}}}}}),
    );
    let (code, v) = req(s, "POST", &format!("/containers/{dup}/start"), None);
    assert!(code == 409 || code == 500, "a v6 address twice: {code} {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("already in use")),
        "{v}"
    );
    let (code, _) = req(s, "DELETE", &format!("/containers/{dup}?force=1"), None);
    assert_eq!(code, 204);

    // another v6 network cannot reach them
    let (code, out) = run_to_exit(
        s,
        "b1",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", format!("ping -6 -c1 -W2 {a1_ip6} || exit 1; {}", nc_get(&a1_ip6.to_string(), 80))],
            "HostConfig": {"NetworkMode": "t6b"}}),
    );
    assert_ne!(code, 0, "t6b must not reach t6a over v6: {out}");
    assert!(!out.contains(&a1[..12]), "{out}");

    // NAT66 to the outside, seen from there as the host's address; internal has no way out
    let (code, out) = run_to_exit(
        s,
        "nat6",
        json!({"Image": "busybox", "Cmd": ["nc", "-w", "5", outside6.to_string(), outside_port.to_string()],
            "HostConfig": {"NetworkMode": "t6a"}}),
    );
    assert_eq!(code, 0, "outbound NAT66: {out}");
    assert!(
        out.contains(&format!("outside6-hello from-{host_gw6}")),
        "{out}"
    );
    let (code, out) = run_to_exit(
        s,
        "int6",
        json!({"Image": "busybox", "Cmd": ["nc", "-w", "3", outside6.to_string(), outside_port.to_string()],
            "HostConfig": {"NetworkMode": "t6int"}}),
    );
    assert_ne!(code, 0, "an internal v6 network reached the outside: {out}");

    // a published port answers on a host IPv6 address
    let port = published_port(&i, "80/tcp");
    let got = http_get(SocketAddr::from((host_gw6, port)))
        .unwrap_or_else(|e| panic!("GET [{host_gw6}]:{port}: {e}"));
    assert!(
        got.contains(&a1[..12]),
        "[{host_gw6}]:{port} answered {got}"
    );
    // and to another container through the host's v6 address (hairpin)
    let (code, out) = run_to_exit(
        s,
        "hairpin6",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", nc_get(&host_gw6.to_string(), port)],
            "HostConfig": {"NetworkMode": "t6a"}}),
    );
    assert_eq!(code, 0, "v6 hairpin: {out}");
    assert!(out.contains(&a1[..12]), "{out}");

    // connect of a running container on a v4-only network: its first v6 network gives it the
    // default v6 route, so it reaches the outside over NAT66
    // it goes on when the test says so (a file in a bind mount), after the connect returned
    let sig = d.dir.path().join("sig");
    std::fs::create_dir_all(&sig).expect("signal dir");
    let v4only = create(
        s,
        "v4only",
        json!({"Image": "busybox",
            "Cmd": ["sh", "-c", format!("while [ ! -e /sig/go ]; do sleep 0.05; done; nc -w 5 {outside6} {outside_port}")],
            "HostConfig": {"Binds": [format!("{}:/sig", sig.display())]}}),
    );
    start(s, &v4only);
    let (code, v) = req(
        s,
        "POST",
        "/networks/t6a/connect",
        Some(json!({"Container": "v4only"})),
    );
    assert_eq!(code, 200, "connect v4only: {v}");
    std::fs::write(sig.join("go"), b"").expect("signal v4only");
    let (_, v) = req(s, "POST", &format!("/containers/{v4only}/wait"), None);
    assert_eq!(
        v["StatusCode"],
        json!(0),
        "v4only → outside over v6 after connect: {v}"
    );
    let (code, _) = req(s, "DELETE", &format!("/containers/{v4only}?force=1"), None);
    assert_eq!(code, 204);

    // connect --ip6 of a running container: the address is there at once
    let c1 = create(
        s,
        "c1",
        json!({"Image": "busybox", "Cmd": ["sleep", "60"], "HostConfig": {"NetworkMode": "t6b"}}),
    );
    start(s, &c1);
    let c1_ip6 = addr6(ula, 1, 0x60);
    let (code, v) = req(
        s,
        "POST",
        "/networks/t6a/connect",
        Some(
            json!({"Container": "c1", "EndpointConfig": {"IPAMConfig": {"IPv6Address": c1_ip6.to_string()}}}),
        ),
    );
    assert_eq!(code, 200, "connect --ip6: {v}");
    let i = inspect(s, &c1);
    assert_eq!(
        i["NetworkSettings"]["Networks"]["t6a"]["GlobalIPv6Address"],
        json!(c1_ip6.to_string()),
        "{}",
        i["NetworkSettings"]
    );
    // a refusal comes from c1's own stack: the address is up on it (nothing listens on 1)
    let r = TcpStream::connect_timeout(&SocketAddr::from((c1_ip6, 1)), Duration::from_secs(5));
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "host → c1's connected v6 address: {r:?}"
    );
    let (code, v) = req(
        s,
        "POST",
        "/networks/t6a/disconnect",
        Some(json!({"Container": "c1"})),
    );
    assert_eq!(code, 200, "disconnect: {v}");
    let db = d.dir.path().join("data/engine.db");
    // a1 and c1 (on t6b) hold v6 leases now
    assert_eq!(v6_leases(&db), "2", "leases after disconnect");
    let rules6 = berth_net::nft::list_table6(&table).expect("list ip6 table");
    assert!(
        rules6.contains(&format!("dnat to [{a1_ip6}]:80")),
        "{rules6}"
    );

    // removal: no veth, bridge, address, rule or lease behind
    let ids = [a1.clone(), c1.clone()];
    remove(s, &ids, &[]);
    assert_eq!(
        v6_leases(&db),
        "0",
        "v6 leases left after the containers went"
    );
    remove(s, &[], &nets);
    check_gone(&ids, &bridges, &table);
    let addrs = host_v6_addrs();
    assert!(!addrs.contains(&if_inet6_hex(gw6a)), "v6 gateway left");
    let rules6 = berth_net::nft::list_table6(&table).expect("list ip6 table");
    assert!(
        rules6.is_empty(),
        "the ip6 table stays while no network has IPv6: {rules6}"
    );
    drop(d);
}
