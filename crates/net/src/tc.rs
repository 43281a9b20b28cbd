//! Bandwidth limits: a token bucket filter (TBF) as the root qdisc of an interface, set and
//! read through rtnetlink. A qdisc shapes what an interface sends, so a container's two
//! directions are the two ends of its veth: the container end's egress (inside its netns) is
//! what the container sends, the host end's egress is what it receives. No ifb is needed.
//!
//! rtnetlink 0.14 can add a qdisc but has no way to attach options to the request, and
//! netlink-packet-route 0.19 knows no TBF options: the request is built here from its parts,
//! and `struct tc_tbf_qopt` (linux/pkt_sched.h) is written as bytes.

use std::fs::File;
use std::path::Path;

use crate::link::Nl;
use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_utils::nla::{DefaultNla, Nla, NlasIterator};
use nix::sched::CloneFlags;

use crate::{errno, Error, Result};

// linux/pkt_sched.h
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const ENOENT: i32 = 2;
const EINVAL: i32 = 22;

/// The handle berth gives its root qdisc (`1:`), so that a reader knows the qdisc is berth's.
const BERTH_MAJOR: u16 = 1;

/// A TBF's parameters: the rate in bytes per second, the bucket and the queue in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    pub rate: u64,
    pub burst: u32,
    pub limit: u32,
}

impl Tbf {
    /// A bucket of 20 ms at the rate (at least 16 full frames: a smaller one makes a fast
    /// link slower than asked, since a timer tick refills at most one bucket), and a queue of
    /// 100 ms more, beyond which packets drop and TCP backs off.
    pub fn for_rate(bytes_per_sec: u64) -> Tbf {
        let burst = (bytes_per_sec / 50).clamp(16 * 1514, u64::from(u32::MAX / 2));
        let limit = (burst + bytes_per_sec / 10).min(u64::from(u32::MAX));
        Tbf {
            rate: bytes_per_sec,
            burst: burst as u32,
            limit: limit as u32,
        }
    }

    /// `struct tc_tbf_qopt`: two `struct tc_ratespec` (cell_log u8, linklayer u8, overhead
    /// u16, cell_align s16, mpu u16, rate u32), then limit, buffer and mtu (u32 each), in host
    /// byte order. The buffer (in scheduler ticks) is left to the kernel, which derives it
    /// from TCA_TBF_BURST; the peak rate is unused.
    fn qopt(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(36);
        b.push(0); // cell_log
        b.push(TC_LINKLAYER_ETHERNET); // a known link layer: no rate table needed
        b.extend_from_slice(&0u16.to_ne_bytes()); // overhead
        b.extend_from_slice(&0i16.to_ne_bytes()); // cell_align
        b.extend_from_slice(&0u16.to_ne_bytes()); // mpu
                                                  // above 4 GB/s the 32-bit field saturates and TCA_TBF_RATE64 carries the rate
        b.extend_from_slice(&(self.rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 12]); // peakrate
        b.extend_from_slice(&self.limit.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // buffer
        b.extend_from_slice(&0u32.to_ne_bytes()); // mtu
        b
    }
}

/// Sends one request and waits for its acknowledgement.
fn ack(c: &Nl, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<(), rtnetlink::Error> {
    let mut h = c.h.clone();
    c.block(async move {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut resp = h.request(req)?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if e.code.is_some() {
                    return Err(rtnetlink::Error::NetlinkError(e));
                }
            }
        }
        Ok(())
    })
}

/// Runs `f` on a thread of its own that has entered `netns` (the calling thread's namespace
/// when None): the namespace is per thread, and the thread ends with `f`.
fn in_netns<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(p) = netns {
                let ns = File::open(p).map_err(Error::io("open netns", p.display().to_string()))?;
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(Error::sys("enter netns", p.display().to_string()))?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Nft("netlink thread panicked".into())))
    })
}

/// Limits what `ifname` (in `netns`, or in the caller's namespace) sends to `tbf`, replacing
/// any root qdisc it has; None removes berth's limit (the interface's default qdisc returns).
pub fn set_limit(netns: Option<&Path>, ifname: &str, tbf: Option<Tbf>) -> Result<()> {
    in_netns(netns, || {
        let c = Nl::open()?;
        let index = c.must_index(ifname)? as i32;
        let mut m = TcMessage::with_index(index);
        m.header.parent = TcHandle::ROOT;
        let Some(t) = tbf else {
            return match ack(&c, RouteNetlinkMessage::DelQueueDiscipline(m), 0) {
                // no root qdisc of its own: nothing to remove
                Err(e) if matches!(errno(&e), Some(ENOENT) | Some(EINVAL)) => Ok(()),
                r => r.map_err(Error::nl("remove rate limit of", ifname)),
            };
        };
        m.header.handle = TcHandle {
            major: BERTH_MAJOR,
            minor: 0,
        };
        m.attributes.push(TcAttribute::Kind("tbf".into()));
        let mut opts = vec![
            TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, t.qopt())),
            TcOption::Other(DefaultNla::new(
                TCA_TBF_BURST,
                t.burst.to_ne_bytes().to_vec(),
            )),
        ];
        if t.rate > u64::from(u32::MAX) {
            opts.push(TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                t.rate.to_ne_bytes().to_vec(),
            )));
        }
        m.attributes.push(TcAttribute::Options(opts));
        ack(
            &c,
            RouteNetlinkMessage::NewQueueDiscipline(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(Error::nl("set rate limit of", ifname))
    })
}

/// The rate (bytes per second) of the TBF root qdisc of `ifname`, if it has one.
pub fn limit_of(netns: Option<&Path>, ifname: &str) -> Result<Option<u64>> {
    in_netns(netns, || {
        let c = Nl::open()?;
        let index = c.must_index(ifname)? as i32;
        let h = c.h.clone();
        let all: Vec<TcMessage> = c
            .block(async move { h.qdisc().get().execute().try_collect().await })
            .map_err(Error::nl("list qdiscs of", ifname))?;
        for m in all {
            if m.header.index != index || m.header.parent != TcHandle::ROOT {
                continue;
            }
            if !m
                .attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == "tbf"))
            {
                return Ok(None);
            }
            return Ok(m.attributes.iter().find_map(|a| match a {
                TcAttribute::Options(o) => tbf_rate(o),
                _ => None,
            }));
        }
        Ok(None)
    })
}

/// The rate in a TBF's dumped options: netlink-packet-route hands an unknown kind's options
/// over as one opaque attribute whose value holds the nested ones.
fn tbf_rate(opts: &[TcOption]) -> Option<u64> {
    let mut nested = Vec::new();
    for o in opts {
        let mut v = vec![0u8; o.value_len()];
        o.emit_value(&mut v);
        nested.extend_from_slice(&v);
    }
    let mut rate32 = None;
    let mut rate64 = None;
    for nla in NlasIterator::new(&nested[..]) {
        let nla = nla.ok()?;
        let v = nla.value();
        match nla.kind() {
            TCA_TBF_PARMS if v.len() >= 12 => {
                rate32 = Some(u64::from(u32::from_ne_bytes([v[8], v[9], v[10], v[11]])));
            }
            TCA_TBF_RATE64 if v.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v[..8]);
                rate64 = Some(u64::from_ne_bytes(b));
            }
            _ => {}
        }
    }
    rate64.or(rate32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qopt_layout() {
        let t = Tbf::for_rate(1_250_000);
        let b = t.qopt();
        assert_eq!(b.len(), 36);
        assert_eq!(b[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 1_250_000);
        assert_eq!(u32::from_ne_bytes([b[24], b[25], b[26], b[27]]), t.limit);
        assert!(t.burst >= 16 * 1514 && t.limit > t.burst);
        let fast = Tbf::for_rate(10_000_000_000);
        assert_eq!(
            u32::from_ne_bytes([
                fast.qopt()[8],
                fast.qopt()[9],
                fast.qopt()[10],
                fast.qopt()[11]
            ]),
            u32::MAX
        );
    }
}
