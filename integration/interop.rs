//! Mixed chains with Debian's reference plugins (CNI up to 1.0.0): our IPAM under their bridge, their
//! IPAM under our bridge. Both must pass traffic and clean up.

#[path = "harness/mod.rs"]
mod harness;

use harness::{cni_result, network_conf, store, tcp, HostNs, NetNs};
use serde_json::{json, Value};

fn two_containers_talk(host: &HostNs, plugin: &str, conf: &Value) -> (NetNs, NetNs) {
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let run = |c: &NetNs| {
        host.plugin(plugin)
            .cmd("ADD")
            .container(c)
            .conf(conf)
            .run()
            .result()
            .clone()
    };
    let ip1 = cni_result::ip(&run(&c1), "4");
    let ip2 = cni_result::ip(&run(&c2), "4");
    assert!(c1.ping_retry(&ip2, 3), "c1 -> {ip2}");
    assert!(c2.ping_retry(&ip1, 3), "c2 -> {ip1}");
    tcp::exchange(&c2, &ip2, 8080, &c1).expect("tcp c1 -> c2");
    (c1, c2)
}

#[test]
fn reference_bridge_with_tether_ipam_passes_traffic() {
    let host = HostNs::new("iop");
    let mut conf = network_conf::reference_bridge(&host, "1.0.0", "10.70.0.0/24");
    conf["ipam"] = json!({
        "type": "tether-ipam",
        "subnet": "10.70.0.0/24",
        "dataDir": host.data_dir_str(),
    });
    let bridge = harness::binaries::reference("bridge");
    let bridge = bridge.to_str().unwrap();
    let (c1, c2) = two_containers_talk(&host, bridge, &conf);
    assert_eq!(
        store::leases(&host.data_dir(), "net1").len(),
        2,
        "tether-ipam holds the leases"
    );
    for c in [&c1, &c2] {
        host.plugin(bridge)
            .cmd("DEL")
            .container(c)
            .conf(&conf)
            .run()
            .assert_ok();
    }
    assert!(store::is_empty(&host.data_dir(), "net1"));
}

#[test]
fn tether_bridge_with_reference_host_local_passes_traffic() {
    let host = HostNs::new("iop");
    let mut conf = network_conf::tether_bridge(&host, "1.0.0", "10.71.0.0/24");
    conf["ipam"] = json!({
        "type": "host-local",
        "subnet": "10.71.0.0/24",
        "dataDir": host.data_dir_str(),
    });
    let bridge = harness::binaries::tether_bridge();
    let bridge = bridge.to_str().unwrap();
    let (c1, c2) = two_containers_talk(&host, bridge, &conf);
    assert_eq!(
        store::leases(&host.data_dir(), "net1").len(),
        2,
        "host-local holds the leases"
    );
    for c in [&c1, &c2] {
        host.plugin(bridge)
            .cmd("DEL")
            .container(c)
            .conf(&conf)
            .run()
            .assert_ok();
    }
    assert!(store::leases(&host.data_dir(), "net1").is_empty());
    let veths: Vec<String> = host
        .link_names()
        .into_iter()
        .filter(|n| n.starts_with("tv"))
        .collect();
    assert!(veths.is_empty(), "{veths:?}");
}
