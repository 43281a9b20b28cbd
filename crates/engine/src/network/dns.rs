//! The embedded DNS of user-defined networks: one UDP responder per network on its gateway
//! address, answering the names, network aliases and short IDs of the containers attached to
//! that network (all addresses of an alias, rotated per answer: round robin), and forwarding
//! every other question to the host's resolvers. It reads the engine's database read-only, so
//! it needs no lock of the engine and always answers from what is committed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Name, Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};

fn servers() -> &'static Mutex<HashMap<String, Arc<AtomicBool>>> {
    static S: OnceLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Starts the responder of network `net` on `gw`:53 unless it runs already.
pub(crate) fn start(db: &Path, net: &str, gw: Ipv4Addr) -> std::io::Result<()> {
    let mut m = servers().lock().unwrap_or_else(|p| p.into_inner());
    if m.contains_key(net) {
        return Ok(());
    }
    let sock = UdpSocket::bind((gw, 53))?;
    // a bounded wait, so that a stop is seen without traffic
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let stop = Arc::new(AtomicBool::new(false));
    m.insert(net.to_string(), stop.clone());
    let (db, net) = (db.to_path_buf(), net.to_string());
    std::thread::Builder::new()
        .name(format!("dns-{}", &net[..net.len().min(8)]))
        .spawn(move || serve(sock, &db, &net, &stop))?;
    Ok(())
}

pub(crate) fn stop(net: &str) {
    if let Some(s) = servers()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(net)
    {
        s.store(true, Ordering::SeqCst);
    }
}

fn upstreams() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .filter(|a| !a.is_loopback())
        .map(|a| SocketAddr::new(a, 53))
        .collect()
}

fn serve(sock: UdpSocket, db: &PathBuf, net: &str, stop: &AtomicBool) {
    let conn = match Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(network = net, error = %e, "dns: open the database");
            return;
        }
    };
    let _ = conn.busy_timeout(Duration::from_secs(2));
    let rr = AtomicUsize::new(0);
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(out) = answer(&conn, net, &buf[..n], &rr, peer) {
            let _ = sock.send_to(&out, peer);
        }
    }
}

/// The endpoints of network ?1 with a v4 lease, as (id, name, address, endpoint config).
const LEASES_V4: &str = "SELECT c.id, c.name, e.ip, e.config FROM endpoints e \
     JOIN containers c ON c.id = e.container \
     WHERE e.network = ?1 AND e.ip IS NOT NULL";

/// The same for v6 leases: only endpoints with a v4 lease (a running container) answer.
const LEASES_V6: &str = "SELECT c.id, c.name, l.ip, e.config FROM endpoints e \
     JOIN containers c ON c.id = e.container \
     JOIN leases_v6 l ON l.container = e.container AND l.network = e.network \
     WHERE e.network = ?1 AND e.ip IS NOT NULL";

/// The addresses of `name` on network `net` that `leases` lists (LEASES_V4 for A questions,
/// LEASES_V6 for AAAA): container names, aliases, short and full IDs.
fn lookup<A: FromStr + Ord>(conn: &Connection, leases: &str, net: &str, name: &str) -> Vec<A> {
    let Ok(mut st) = conn.prepare(leases) else {
        return Vec::new();
    };
    let rows = st.query_map([net], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    });
    let mut out = Vec::new();
    for (id, cname, ip, cfg) in rows.into_iter().flatten().flatten() {
        let aliases: Vec<String> = serde_json::from_str::<serde_json::Value>(&cfg)
            .ok()
            .and_then(|v| v.get("Aliases").cloned())
            .and_then(|a| serde_json::from_value(a).ok())
            .unwrap_or_default();
        let hit = cname.eq_ignore_ascii_case(name)
            || (name.len() >= 12 && id.starts_with(name))
            || aliases.iter().any(|a| a.eq_ignore_ascii_case(name));
        if hit {
            if let Ok(ip) = ip.parse() {
                out.push(ip);
            }
        }
    }
    out.sort();
    out
}

/// Answers `qname` with `ips` (one record each, made by `rdata`), from `start` on round.
fn push_rotated<'a, A: Copy>(
    reply: &mut Packet<'a>,
    qname: &Name<'a>,
    ips: &[A],
    start: usize,
    rdata: impl Fn(A) -> RData<'a>,
) {
    for i in 0..ips.len() {
        reply.answers.push(ResourceRecord::new(
            qname.clone(),
            CLASS::IN,
            600,
            rdata(ips[(start + i) % ips.len()]),
        ));
    }
}

fn answer(
    conn: &Connection,
    net: &str,
    q: &[u8],
    rr: &AtomicUsize,
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let p = Packet::parse(q).ok()?;
    let question = p.questions.first()?.clone();
    let name = question
        .qname
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ips = if name.contains('.') {
        Vec::new()
    } else {
        lookup::<Ipv4Addr>(conn, LEASES_V4, net, &name)
    };
    if ips.is_empty() {
        // the asking container's --dns servers, as Docker's embedded DNS uses them
        let own = super::dnsopts::container_upstreams(conn, net, peer.ip());
        return forward(q, if own.is_empty() { upstreams() } else { own });
    }
    let mut reply = Packet::new_reply(p.id());
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE | PacketFlag::AUTHORITATIVE_ANSWER);
    if p.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.push(question.clone());
    // A records for A (and ANY) questions; a known name asked for another type gets an empty
    // answer, not a forward that would leak container names upstream
    if matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY) {
        let start = rr.fetch_add(1, Ordering::Relaxed) % ips.len();
        push_rotated(&mut reply, &question.qname, &ips, start, |ip| {
            RData::A(A::from(ip))
        });
    }
    // AAAA on dual-stack networks (the server itself listens on the v4 gateway only)
    if matches!(question.qtype, QTYPE::TYPE(TYPE::AAAA) | QTYPE::ANY) {
        let ips6 = lookup::<Ipv6Addr>(conn, LEASES_V6, net, &name);
        let start = rr.load(Ordering::Relaxed) % ips6.len().max(1);
        push_rotated(&mut reply, &question.qname, &ips6, start, |ip| {
            RData::AAAA(AAAA::from(ip))
        });
    }
    *reply.rcode_mut() = RCODE::NoError;
    reply.build_bytes_vec().ok()
}

fn forward(q: &[u8], ups: Vec<SocketAddr>) -> Option<Vec<u8>> {
    for up in ups {
        let Ok(s) = UdpSocket::bind(if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if s.send_to(q, up).is_err() {
            continue;
        }
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    // nobody to ask: SERVFAIL, so the client stops waiting
    let p = Packet::parse(q).ok()?;
    let mut reply = Packet::new_reply(p.id());
    reply.questions = p.questions.clone();
    *reply.rcode_mut() = RCODE::ServerFailure;
    reply.build_bytes_vec().ok()
}
