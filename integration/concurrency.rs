//! Many runtimes calling at once: 100 ADDs into one network in parallel, then 100 DELs.

#[path = "harness/mod.rs"]
mod harness;

use harness::{cni_result, network_conf, nft, store, HostNs, NetNs};
use serde_json::Value;
use std::collections::BTreeSet;

const CONTAINERS: usize = 100;

#[test]
fn hundred_concurrent_adds_then_dels_into_one_network() {
    let host = HostNs::new("conc");
    let conf = network_conf::tether_bridge(&host, "1.1.0", "10.60.0.0/16");
    let containers: Vec<NetNs> = (0..CONTAINERS)
        .map(|i| host.container(&format!("c{i}")))
        .collect();

    let adds = run_all(&host, &containers, "ADD", &conf);
    let failures: Vec<String> = adds
        .iter()
        .filter(|(_, out)| !out.success())
        .map(|(c, out)| format!("{c}: {} {}", out.stdout, out.stderr))
        .collect();
    assert!(
        failures.is_empty(),
        "{} ADDs failed, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let ips: BTreeSet<String> = adds
        .iter()
        .map(|(_, out)| cni_result::ip(out.result(), "4"))
        .collect();
    assert_eq!(ips.len(), CONTAINERS, "duplicate addresses");
    assert_eq!(store::leases(&host.data_dir(), "net1").len(), CONTAINERS);
    let veths = host
        .link_names()
        .into_iter()
        .filter(|n| n.starts_with("tv"))
        .count();
    assert_eq!(veths, CONTAINERS, "one host veth per container");
    // Racing ADDs lose no firewall element: each address is in the network's set.
    let elements: BTreeSet<String> = nft::set_elements(&host).into_iter().collect();
    let missing: Vec<&String> = ips.iter().filter(|ip| !elements.contains(*ip)).collect();
    assert!(missing.is_empty(), "firewall elements lost: {missing:?}");
    for c in &containers {
        assert_eq!(
            c.global_addresses("eth0").len(),
            1,
            "{} has its address",
            c.label
        );
    }

    let dels = run_all(&host, &containers, "DEL", &conf);
    let failures: Vec<String> = dels
        .iter()
        .filter(|(_, out)| !out.success())
        .map(|(c, out)| format!("{c}: {} {}", out.stdout, out.stderr))
        .collect();
    assert!(
        failures.is_empty(),
        "{} DELs failed, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        store::is_empty(&host.data_dir(), "net1"),
        "{:?}",
        store::leases(&host.data_dir(), "net1")
    );
    let left: Vec<String> = host
        .link_names()
        .into_iter()
        .filter(|n| n.starts_with("tv"))
        .collect();
    assert!(left.is_empty(), "veths left: {left:?}");
    assert!(
        nft::set_elements(&host).is_empty(),
        "{:?}",
        nft::set_elements(&host)
    );
}

/// Runs `command` for every container at once, one thread each; returns (container, output).
fn run_all(
    host: &HostNs,
    containers: &[NetNs],
    command: &str,
    conf: &Value,
) -> Vec<(String, harness::PluginOutput)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = containers
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let out = host
                        .tether_bridge()
                        .cmd(command)
                        .container(c)
                        .conf(conf)
                        .run();
                    (c.label.clone(), out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("plugin thread"))
            .collect()
    })
}
