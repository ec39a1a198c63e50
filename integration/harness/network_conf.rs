//! Network configurations for tests, with every path pointed into the test's scratch dir.
//! Tests adjust the returned JSON (`conf["mtu"] = json!(1400)`) for the case at hand.

use super::host::HostNs;
use serde_json::{json, Value};

/// The IPAM type behind tether-bridge confs: tether-ipam, or `ITEST_IPAM_TYPE` (e.g. host-local) to
/// check the tests themselves against the reference plugins.
fn bridge_ipam_type() -> String {
    std::env::var("ITEST_IPAM_TYPE").unwrap_or_else(|_| "tether-ipam".to_owned())
}

/// tether-bridge with in-process tether-ipam on one IPv4 subnet; gateway and default route on.
pub fn tether_bridge(host: &HostNs, version: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "net1",
        "type": "tether-bridge",
        "bridge": "tt0",
        "isGateway": true,
        "isDefaultGateway": true,
        "ipam": {
            "type": bridge_ipam_type(),
            "subnet": subnet,
            "dataDir": host.data_dir_str(),
        }
    })
}

/// The same network with one range set per subnet (dual stack when given a v4 and a v6 subnet).
pub fn tether_bridge_ranges(host: &HostNs, version: &str, subnets: &[&str]) -> Value {
    let mut conf = tether_bridge(host, version, subnets[0]);
    conf["ipam"] = json!({
        "type": bridge_ipam_type(),
        "ranges": range_sets(subnets),
        "dataDir": host.data_dir_str(),
    });
    conf
}

/// tether-ipam on its own (as a runtime or another bridge plugin would delegate to it).
pub fn tether_ipam(host: &HostNs, version: &str, subnets: &[&str]) -> Value {
    json!({
        "cniVersion": version,
        "name": "net1",
        "type": "tether-ipam",
        "ipam": {
            "type": "tether-ipam",
            "ranges": range_sets(subnets),
            "dataDir": host.data_dir_str(),
        }
    })
}

/// Debian's reference bridge with reference host-local (at most cniVersion 1.0.0).
pub fn reference_bridge(host: &HostNs, version: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "net1",
        "type": "bridge",
        "bridge": "tt0",
        "isGateway": true,
        "isDefaultGateway": true,
        "ipam": {
            "type": "host-local",
            "subnet": subnet,
            "dataDir": host.data_dir_str(),
        }
    })
}

fn range_sets(subnets: &[&str]) -> Value {
    Value::Array(subnets.iter().map(|s| json!([{ "subnet": s }])).collect())
}
