//! Many runtimes calling at once: 100 ADDs into one network in parallel, then 100 DELs.

#[path = "harness/mod.rs"]
mod harness;

use harness::{cni_result, network_conf, nft, store, HostNs, NetNs};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

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

/// Runs `command` for every container at once, one thread each, released together as a runtime removing
/// many containers would spawn them; returns (container, output).
fn run_all(
    host: &HostNs,
    containers: &[NetNs],
    command: &str,
    conf: &Value,
) -> Vec<(String, harness::PluginOutput)> {
    let start = Barrier::new(containers.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = containers
            .iter()
            .map(|c| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
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

/// The network's first ADD and last DEL, over and over from four threads: every ADD may be the one that makes
/// the bridge and chains, every DEL the one that removes them (the bridge in the background). While a
/// container is attached its bridge carries traffic and its chains are there; no address is held twice; at the
/// end nothing of the network is left.
#[test]
fn first_add_and_last_del_of_one_network_hammered_from_four_threads() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 12;
    let host = HostNs::new("ham");
    let conf = network_conf::tether_bridge(&host, "1.0.0", "10.61.0.0/24");
    let containers: Vec<NetNs> = (0..THREADS)
        .map(|i| host.container(&format!("c{i}")))
        .collect();
    let held: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let call = |c: &NetNs, command: &str| {
        host.tether_bridge()
            .cmd(command)
            .container(c)
            .conf(&conf)
            .run()
    };
    std::thread::scope(|s| {
        for c in &containers {
            let (held, call, host) = (&held, &call, &host);
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let out = call(c, "ADD");
                    let ip = cni_result::ip(out.result(), "4");
                    assert!(
                        held.lock().unwrap().insert(ip.clone()),
                        "{ip} handed out twice (round {round})"
                    );
                    assert_eq!(c.global_addresses("eth0"), vec![format!("{ip}/24")]);
                    assert!(
                        c.ping_retry("10.61.0.1", 3),
                        "{} cannot reach its gateway on tt0 (round {round})",
                        c.label
                    );
                    let chains = nft::objects_named_for(host, "_fwd");
                    assert_eq!(chains.len(), 1, "{chains:?} while {} is attached", c.label);
                    held.lock().unwrap().remove(&ip);
                    call(c, "DEL").assert_ok();
                    assert!(!c.has_link("eth0"));
                }
            });
        }
    });
    // The last DEL removed the chains before it returned; the bridge goes in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.has_link("tt0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !host.has_link("tt0"),
        "the bridge outlived its last container"
    );
    assert!(nft::objects_named_for(&host, "_fwd").is_empty());
    assert!(nft::objects_named_for(&host, "_nat").is_empty());
    assert!(
        nft::set_elements(&host).is_empty(),
        "{:?}",
        nft::set_elements(&host)
    );
    assert!(store::is_empty(&host.data_dir(), "net1"));
    let veths: Vec<String> = host
        .link_names()
        .into_iter()
        .filter(|n| n.starts_with("tv"))
        .collect();
    assert!(veths.is_empty(), "veths left: {veths:?}");
}
