//! Issue 15's remaining network features through the API of a real daemon: a bandwidth limit
//! (`io.berth.network-rate`) measured with iperf3 in both directions and changed by update;
//! `Dns`/`DnsSearch`/`DnsOptions`/`ExtraHosts` in the container's resolv.conf and hosts, on
//! the default bridge, a user network and the host network; bad values refused with 400;
//! and a published SCTP port checked with an SCTP socket. Needs root and the berth binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::{berth_bin, call as req, create, inspect, run_to_exit, skip, start, start_daemon};

fn needs(berth: &mut Option<std::path::PathBuf>) -> bool {
    if !nix::unistd::geteuid().is_root() && skip("needs root") {
        return false;
    }
    *berth = berth_bin();
    if berth.is_none() && skip("target/debug/berth is not built (cargo build -p berth)") {
        return false;
    }
    if Command::new("nft").arg("--version").output().is_err()
        && skip("nft (Debian's nftables) is not installed")
    {
        return false;
    }
    true
}

/// The daemon's own bridge and nft table, removed after it (declared before the daemon).
struct Leftovers {
    table: String,
    bridge: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = berth_net::nft::delete_table(&self.table);
        let _ = berth_net::link::delete_link(&self.bridge);
    }
}

/// Mbit/s received by an iperf3 client run from the host against `127.0.0.1:port`; with
/// `reverse`, the server (the container) sends. The first second (TCP's slow start, the
/// bucket's initial burst) is omitted from the result.
fn iperf(port: u16, reverse: bool) -> f64 {
    let mut cmd = Command::new("iperf3");
    cmd.args([
        "-c",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "3",
        "-O",
        "1",
        "-J",
    ]);
    if reverse {
        cmd.arg("-R");
    }
    // the server in the container may not listen yet right after start
    for _ in 0..50 {
        let out = cmd.stderr(Stdio::null()).output().expect("run iperf3");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return bps / 1e6;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("iperf3 against 127.0.0.1:{port} never ran");
}

/// iperf3 through published `port` both ways: what the container receives must be `ingress`
/// Mbit/s and what it sends `egress`, each within 10%.
fn measured_rates(port: u16, label: &str, ingress: f64, egress: f64) {
    let got_in = iperf(port, false);
    let got_out = iperf(port, true);
    eprintln!("{label}: ingress {got_in:.2} Mbit/s, egress {got_out:.2} Mbit/s");
    assert!(
        within(got_in, ingress),
        "{label}: ingress {got_in} Mbit/s, want {ingress} ±10%"
    );
    assert!(
        within(got_out, egress),
        "{label}: egress {got_out} Mbit/s, want {egress} ±10%"
    );
}

fn within(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.10
}

#[test]
fn network_rate_limits_both_directions_and_updates() {
    let mut berth = None;
    if !needs(&mut berth) {
        return;
    }
    if Command::new("iperf3").arg("--version").output().is_err()
        && skip("iperf3 (Debian's iperf3) is not installed")
    {
        return;
    }
    let Some(berth) = berth else { return };
    let d = start_daemon(&berth, "berth-rate-test", true);
    let s = &d.sock;
    let (table, bridge) = berth_engine::network::instance_names(&d.dir.path().join("data"));
    let _left = Leftovers { table, bridge };

    // bad values are refused at create and at update, naming the value
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=badrate",
        Some(json!({"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"Annotations": {"io.berth.network-rate": "fast"}}})),
    );
    assert_eq!(code, 400, "bad rate at create: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("fast")),
        "{v}"
    );
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=badrate2",
        Some(json!({"Image": "busybox", "Cmd": ["true"],
            "Labels": {"io.berth.network-rate": "10"}})),
    );
    assert_eq!(code, 400, "a rate without unit, as a label: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/containers/create?name=hostrate",
        Some(json!({"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"NetworkMode": "host", "Annotations": {"io.berth.network-rate": "1mbit"}}})),
    );
    assert_eq!(code, 400, "a rate on the host network: {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("network mode host")),
        "{v}"
    );

    // iperf3 makes a temporary file per stream: a writable directory on the host's path
    let tmp = d.dir.path().join("iperf-tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir iperf tmp");
    let tmps = tmp.display().to_string();
    let id = create(
        s,
        "shaped",
        json!({"Image": "busybox",
            "Env": [format!("TMPDIR={tmps}")],
            "Cmd": ["chroot", "/host", "/usr/bin/iperf3", "-s", "-p", "5201"],
            "HostConfig": {
                "Binds": ["/:/host:ro", format!("{tmps}:/host{tmps}")],
                "PortBindings": {"5201/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "Annotations": {"io.berth.network-rate": "10mbit"}}}),
    );
    start(s, &id);
    let i = inspect(s, &id);
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate"], "10mbit",
        "{}",
        i["HostConfig"]
    );
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"],
        "eth0 egress=10mbit ingress=10mbit",
        "{}",
        i["HostConfig"]
    );
    let port: u16 = i["NetworkSettings"]["Ports"]["5201/tcp"][0]["HostPort"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no published port: {}", i["NetworkSettings"]));
    measured_rates(port, "10mbit", 10.0, 10.0);

    // the stats sample counts that traffic on eth0, each way (4 s at 10 Mbit/s is 5 MB)
    let (code, st) = req(
        s,
        "GET",
        &format!("/containers/{id}/stats?stream=false"),
        None,
    );
    assert_eq!(code, 200, "stats: {st}");
    let eth0 = &st["networks"]["eth0"];
    for k in ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets"] {
        assert!(eth0[k].as_u64().is_some_and(|n| n > 1000), "{k}: {eth0}");
    }
    assert!(
        eth0["rx_bytes"].as_u64().is_some_and(|n| n > 4_000_000),
        "{eth0}"
    );
    assert!(
        eth0["tx_bytes"].as_u64().is_some_and(|n| n > 4_000_000),
        "{eth0}"
    );

    // a bad update changes nothing
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{id}/update"),
        Some(json!({"io.berth.network-rate": "20 parsecs"})),
    );
    assert_eq!(code, 400, "bad rate at update: {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("20 parsecs")),
        "{v}"
    );
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{id}/update"),
        Some(json!({"io.berth.network-rate": "20mbit"})),
    );
    assert_eq!(code, 200, "update the rate: {v}");
    let i = inspect(s, &id);
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"],
        "eth0 egress=20mbit ingress=20mbit"
    );
    measured_rates(port, "20mbit", 20.0, 20.0);

    // one direction on its own: what the container receives drops to 5, what it sends stays
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{id}/update?network-rate-ingress=5mbit"),
        None,
    );
    assert_eq!(code, 200, "update the ingress rate: {v}");
    let i = inspect(s, &id);
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"],
        "eth0 egress=20mbit ingress=5mbit"
    );
    measured_rates(port, "20mbit out, 5mbit in", 5.0, 20.0);

    // a restart applies the stored (updated) value again
    let (code, v) = req(s, "POST", &format!("/containers/{id}/restart?t=1"), None);
    assert_eq!(code, 204, "restart: {v}");
    let i = inspect(s, &id);
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"],
        "eth0 egress=20mbit ingress=5mbit"
    );
    // both ways at once replaces the direction's own value; `none` removes the limit
    let (code, v) = req(
        s,
        "POST",
        &format!("/containers/{id}/update?network-rate=none"),
        None,
    );
    assert_eq!(code, 200, "remove the rate: {v}");
    let i = inspect(s, &id);
    assert!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"].is_null(),
        "{}",
        i["HostConfig"]
    );
    let (code, v) = req(s, "DELETE", &format!("/containers/{id}?force=1"), None);
    assert_eq!(code, 204, "remove: {v}");

    // a label (docker 20.10, the Python SDK) works as the annotation does
    let id = create(
        s,
        "labelled",
        json!({"Image": "busybox", "Cmd": ["sleep", "60"],
            "Labels": {"io.berth.network-rate": "500kbit"}}),
    );
    start(s, &id);
    let i = inspect(s, &id);
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"],
        "eth0 egress=500kbit ingress=500kbit",
        "{}",
        i["HostConfig"]
    );
    // a network connected while it runs gets the limit too
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": "rate-net"})),
    );
    assert_eq!(code, 201, "create network: {v}");
    let (code, v) = req(
        s,
        "POST",
        "/networks/rate-net/connect",
        Some(json!({"Container": id})),
    );
    assert_eq!(code, 200, "connect: {v}");
    let i = inspect(s, &id);
    assert_eq!(
        i["HostConfig"]["Annotations"]["io.berth.network-rate.applied"],
        "eth0 egress=500kbit ingress=500kbit, eth1 egress=500kbit ingress=500kbit",
        "{}",
        i["HostConfig"]
    );
    let (code, v) = req(s, "DELETE", &format!("/containers/{id}?force=1"), None);
    assert_eq!(code, 204, "remove: {v}");
    let (code, v) = req(s, "DELETE", "/networks/rate-net", None);
    assert_eq!(code, 204, "remove network: {v}");
}

/// A reply to a DNS question: for an A question one A record of `ip`, else no answer.
fn fake_dns_answer(q: &[u8], ip: [u8; 4]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    while i < q.len() && q[i] != 0 {
        i += 1 + q[i] as usize;
    }
    let qend = i + 5;
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let mut r = q.get(..qend)?.to_vec();
    r[2] |= 0x80; // a response
    r[3] = 0x80; // recursion available, no error
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if qtype == 1 {
        r[7] = 1;
        // the question's name by pointer, A, IN, TTL 60, 4 bytes
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip);
    }
    Some(r)
}

#[test]
fn dns_options_and_extra_hosts() {
    let mut berth = None;
    if !needs(&mut berth) {
        return;
    }
    let Some(berth) = berth else { return };
    let d = start_daemon(&berth, "berth-dnsopt-test", true);
    let s = &d.sock;
    let (table, bridge) = berth_engine::network::instance_names(&d.dir.path().join("data"));
    let _left = Leftovers { table, bridge };

    let hc = |mode: &str| {
        json!({"NetworkMode": mode,
            "Dns": ["192.0.2.53", "192.0.2.54"],
            "DnsSearch": ["a.example", "b.example"],
            "DnsOptions": ["ndots:3", "timeout:2"],
            "ExtraHosts": ["db.test:192.0.2.10", "gw.test:host-gateway", "v6.test:2001:db8::1"]})
    };
    let show = json!(["sh", "-c", "cat /etc/resolv.conf; echo ---; cat /etc/hosts"]);

    // the default bridge: the options replace the host's lines
    let (code, out) = run_to_exit(
        s,
        "dns-bridge",
        json!({"Image": "busybox", "Cmd": show, "HostConfig": hc("bridge")}),
    );
    assert_eq!(code, 0, "{out}");
    let (resolv, hosts) = out.split_once("---").expect("two files");
    let ns: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(
        ns,
        ["nameserver 192.0.2.53", "nameserver 192.0.2.54"],
        "{resolv}"
    );
    assert!(resolv.contains("search a.example b.example\n"), "{resolv}");
    assert!(resolv.contains("options ndots:3 timeout:2\n"), "{resolv}");
    assert!(hosts.contains("192.0.2.10\tdb.test\n"), "{hosts}");
    assert!(hosts.contains("2001:db8::1\tv6.test\n"), "{hosts}");
    let (code, v) = req(s, "GET", "/networks/bridge", None);
    assert_eq!(code, 200, "{v}");
    let bridge_gw = v["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    assert!(
        hosts.contains(&format!("{bridge_gw}\tgw.test\n")),
        "{hosts}"
    );

    // a user network: the embedded server stays first, --dns after it; host-gateway is
    // this network's gateway
    let (code, v) = req(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": "dnsopt-net"})),
    );
    assert_eq!(code, 201, "create network: {v}");
    let (code, v) = req(s, "GET", "/networks/dnsopt-net", None);
    assert_eq!(code, 200, "{v}");
    let gw = v["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let (code, out) = run_to_exit(
        s,
        "dns-user",
        json!({"Image": "busybox", "Cmd": show, "HostConfig": hc("dnsopt-net")}),
    );
    assert_eq!(code, 0, "{out}");
    let (resolv, hosts) = out.split_once("---").expect("two files");
    let ns: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(
        ns,
        [
            format!("nameserver {gw}").as_str(),
            "nameserver 192.0.2.53",
            "nameserver 192.0.2.54"
        ],
        "{resolv}"
    );
    assert!(resolv.contains("search a.example b.example\n"), "{resolv}");
    assert!(hosts.contains(&format!("{gw}\tgw.test\n")), "{hosts}");
    // and a name still resolves through the embedded server
    let (code, out) = run_to_exit(
        s,
        "dns-user-lookup",
        json!({"Image": "busybox", "Cmd": ["nslookup", "dns-user-lookup"],
            "HostConfig": {"NetworkMode": "dnsopt-net", "Dns": ["192.0.2.53"]}}),
    );
    assert_eq!(code, 0, "lookup through the embedded DNS: {out}");

    // other names go to the container's own --dns servers: a test-made one on the host's
    // loopback, which the embedded server (in the daemon, on the host) reaches
    let up = std::net::UdpSocket::bind("127.0.0.77:53").expect("bind the test's DNS server");
    up.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok((n, peer)) = up.recv_from(&mut buf) {
                if let Some(r) = fake_dns_answer(&buf[..n], [192, 0, 2, 99]) {
                    let _ = up.send_to(&r, peer);
                }
            }
        }
    });
    let (code, out) = run_to_exit(
        s,
        "dns-upstream",
        json!({"Image": "busybox", "Cmd": ["nslookup", "-type=a", "outside.test"],
            "HostConfig": {"NetworkMode": "dnsopt-net", "Dns": ["127.0.0.77"]}}),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = server.join();
    assert_eq!(code, 0, "a name forwarded to the container's --dns: {out}");
    assert!(out.contains("192.0.2.99"), "{out}");

    // the host network has its own resolv.conf and hosts too
    let (code, out) = run_to_exit(
        s,
        "dns-host",
        json!({"Image": "busybox", "Cmd": show, "HostConfig": hc("host")}),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nameserver 192.0.2.53\n"), "{out}");
    assert!(out.contains(&format!("{bridge_gw}\tgw.test\n")), "{out}");

    // bad values: 400 naming the value, nothing created
    for (field, value, word) in [
        ("Dns", json!(["not-an-ip"]), "not-an-ip"),
        ("DnsSearch", json!(["a b"]), "a b"),
        ("DnsOptions", json!(["x y"]), "x y"),
        ("ExtraHosts", json!(["nocolon"]), "nocolon"),
        ("ExtraHosts", json!(["h:999.1.1.1"]), "999.1.1.1"),
    ] {
        let mut hc = json!({});
        hc[field] = value;
        let (code, v) = req(
            s,
            "POST",
            "/containers/create?name=dns-bad",
            Some(json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": hc})),
        );
        assert_eq!(code, 400, "{field}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(word)),
            "{field}: {v}"
        );
    }
    let (code, v) = req(s, "GET", "/containers/json?all=1", None);
    assert_eq!(code, 200);
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(0),
        "nothing half-made: {v}"
    );
    let (code, v) = req(s, "DELETE", "/networks/dnsopt-net", None);
    assert_eq!(code, 204, "{v}");
}

#[test]
fn sctp_port_in_use_is_refused() {
    let mut berth = None;
    if !needs(&mut berth) {
        return;
    }
    let Some(berth) = berth else { return };
    let d = start_daemon(&berth, "berth-sctp-test", true);
    let s = &d.sock;
    let (table, bridge) = berth_engine::network::instance_names(&d.dir.path().join("data"));
    let _left = Leftovers { table, bridge };

    let sctp = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::from(132)),
    );
    let busy;
    let (port, want) = match sctp {
        Ok(sock) => {
            sock.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], 0)).into())
                .expect("bind an SCTP port");
            sock.listen(1).expect("listen sctp");
            let port = sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.port())
                .expect("sctp port");
            // the same number is free on TCP, which the old check tested instead
            assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
            busy = Some(sock);
            (port, "already allocated")
        }
        Err(e) => {
            // no SCTP in this kernel: the start must say so, not pretend the port is used
            eprintln!("this kernel has no SCTP ({e}): checking the refusal says so");
            busy = None;
            (39_132, "no SCTP support")
        }
    };
    let id = create(
        s,
        "sctp",
        json!({"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"PortBindings": {"9/sctp": [{"HostPort": port.to_string()}]}}}),
    );
    let (code, v) = req(s, "POST", &format!("/containers/{id}/start"), None);
    assert!(
        code >= 400,
        "a published SCTP port that cannot be had: {code} {v}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains(want)),
        "{v}"
    );
    drop(busy);
    let i = inspect(s, &id);
    assert_eq!(i["State"]["Status"], "created", "{}", i["State"]);
    assert!(
        !d.dir.path().join("run/netns").join(&id).exists(),
        "netns of a failed start"
    );
}

/// The daemon's `--host-gateway-ip` is what `host-gateway` means, on every network.
#[test]
fn host_gateway_ip_setting_replaces_the_network_gateway() {
    let mut berth = None;
    if !needs(&mut berth) {
        return;
    }
    let Some(berth) = berth else { return };
    let d = common::start_daemon_with(&berth, "berth-hostgw-test", true, |c| {
        c.host_gateway_ip = Some("192.0.2.77".parse().expect("address"));
    });
    let s = &d.sock;
    let (table, bridge) = berth_engine::network::instance_names(&d.dir.path().join("data"));
    let _left = Leftovers { table, bridge };
    for mode in ["bridge", "none"] {
        let (code, out) = run_to_exit(
            s,
            &format!("hostgw-{mode}"),
            json!({"Image": "busybox", "Cmd": ["cat", "/etc/hosts"],
                "HostConfig": {"NetworkMode": mode, "ExtraHosts": ["gw.test:host-gateway"]}}),
        );
        assert_eq!(code, 0, "{mode}: {out}");
        assert!(out.contains("192.0.2.77\tgw.test\n"), "{mode}: {out}");
    }
    // and the value is checked where it is given
    assert!(
        berth_api::parse_host_gateway_ip("2001:db8::1").is_err_and(|e| e.contains("only an IPv4"))
    );
    assert!(berth_api::parse_host_gateway_ip("gateway").is_err_and(|e| e.contains("not an IP")));
}
