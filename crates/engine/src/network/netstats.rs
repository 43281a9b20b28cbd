//! The `networks` map of a stats sample: per interface of the container, the counters of the
//! host end of its veth, read from sysfs without entering the container's namespace. What the
//! host end receives the container sent, so rx and tx are swapped.

use std::collections::HashMap;

use bollard_stubs::models::ContainerNetworkStats;

use crate::engine::Engine;

fn counter(host_if: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{host_if}/statistics/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One interface's counters as the container sees them, from its veth's host end.
fn from_host_end(host_if: &str) -> Option<ContainerNetworkStats> {
    Some(ContainerNetworkStats {
        rx_bytes: Some(counter(host_if, "tx_bytes")?),
        rx_packets: counter(host_if, "tx_packets"),
        rx_errors: counter(host_if, "tx_errors"),
        rx_dropped: counter(host_if, "tx_dropped"),
        tx_bytes: Some(counter(host_if, "rx_bytes")?),
        tx_packets: counter(host_if, "rx_packets"),
        tx_errors: counter(host_if, "rx_errors"),
        tx_dropped: counter(host_if, "rx_dropped"),
        ..Default::default()
    })
}

impl Engine {
    /// Per interface name inside the container (`eth0`...); None for a container without a
    /// network of its own (host, none, container:), as Docker leaves it out.
    pub(crate) fn net_stats(&self, id: &str) -> Option<HashMap<String, ContainerNetworkStats>> {
        let mut out = HashMap::new();
        for e in self.endpoints_of(id).ok()? {
            if e.ip.is_none() || e.ifname.is_empty() {
                continue;
            }
            let (host_if, _) = super::veth_names(id, e.seq);
            if let Some(s) = from_host_end(&host_if) {
                out.insert(e.ifname.clone(), s);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}
