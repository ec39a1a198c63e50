//! What the kernel steps under one ADD cost, measured in-process in harness namespaces (no plugin
//! processes): the link layer's veth, address and route setup, and the firewall's per-network install
//! and per-container element updates. Prints medians; asserts nothing. `cargo bench --bench kernel_steps`.

#[path = "../integration/harness/mod.rs"]
mod harness;
// Only the median is printed here, as the timing tests that became this bench printed it.
#[allow(dead_code)]
#[path = "latency_stats.rs"]
mod latency_stats;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use harness::HostNs;
use ipnetwork::IpNetwork;
use latency_stats::stats;
use tether::firewall::{Firewall, NetworkRules};
use tether::link::{MacAddr, Netlink, VethSpec};
use tether::netns::NetNs;

fn main() {
    link_steps();
    firewall_steps();
}

fn median(samples: Vec<Duration>) -> Duration {
    stats(samples).median
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One container's link setup, step by step, over a bridge that exists.
fn link_steps() {
    let host = HostNs::new("timel");
    let ctr = host.container("c");
    let host_ns = NetNs::open(host.path()).unwrap();
    let ctr_ns = NetNs::open(ctr.path()).unwrap();
    let nl = Netlink::in_netns(&host_ns).unwrap();
    let bridge = nl
        .ensure_bridge("ttbrt", None, MacAddr::from_name("ttbrt"))
        .unwrap();
    const ROUNDS: usize = 20;
    let steps = [
        "open socket in netns",
        "create veth (host up, in bridge)",
        "look up peer",
        "peer up",
        "add IPv4 address",
        "add IPv6 address (nodad)",
        "add IPv4 default route",
        "add IPv6 default route",
        "delete veth",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); steps.len()];
    for round in 0..ROUNDS {
        let host_name = format!("tvt{round}");
        let mut marks = vec![Instant::now()];
        let cn = Netlink::in_netns(&ctr_ns).unwrap();
        marks.push(Instant::now());
        nl.create_veth_with(&VethSpec {
            host_name: &host_name,
            peer_name: "eth0",
            peer_ns: &ctr_ns,
            mtu: None,
            peer_mac: None,
            host_mac: None,
            host_master: Some(bridge.index),
        })
        .unwrap();
        marks.push(Instant::now());
        let eth0 = cn.link_by_name("eth0").unwrap().unwrap();
        marks.push(Instant::now());
        cn.set_up(eth0.index).unwrap();
        marks.push(Instant::now());
        cn.add_address(eth0.index, net("10.99.0.2/24"), false)
            .unwrap();
        marks.push(Instant::now());
        cn.add_address(eth0.index, net("fd00:99::2/64"), true)
            .unwrap();
        marks.push(Instant::now());
        cn.add_route(
            net("0.0.0.0/0"),
            Some(ip("10.99.0.1")),
            Some(eth0.index),
            None,
        )
        .unwrap();
        marks.push(Instant::now());
        cn.add_route(net("::/0"), Some(ip("fd00:99::1")), Some(eth0.index), None)
            .unwrap();
        marks.push(Instant::now());
        assert!(nl.delete_link_by_name(&host_name).unwrap());
        marks.push(Instant::now());
        for (i, pair) in marks.windows(2).enumerate() {
            samples[i].push(pair[1] - pair[0]);
        }
    }
    let mut setup_total = Duration::ZERO;
    println!("link timing, medians over {ROUNDS} rounds:");
    for (step, v) in steps.iter().zip(samples) {
        let median = median(v);
        if *step != "delete veth" {
            setup_total += median;
        }
        println!("  {step:<36} {median:?}");
    }
    println!("  {:<36} {setup_total:?}", "sum of setup medians");
}

/// A network's first install, then 500 containers' elements added and removed, then the teardown.
fn firewall_steps() {
    let host = HostNs::new("timef");
    host.run_inside(|| {
        let fw = Firewall::open().unwrap();
        let net = NetworkRules {
            name: "timed".into(),
            bridge: "tbr8".into(),
            masquerade: true,
            isolation: true,
        };
        let start = Instant::now();
        fw.ensure_network(&net).unwrap();
        let install = start.elapsed();
        let mut ensure = Vec::new();
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for i in 0..500u32 {
            let addr = [IpAddr::from([10, 8, (i / 250) as u8, (i % 250 + 2) as u8])];
            let t = Instant::now();
            fw.ensure_network(&net).unwrap();
            ensure.push(t.elapsed());
            let t = Instant::now();
            fw.add_container("timed", &addr).unwrap();
            add.push(t.elapsed());
        }
        for i in 0..500u32 {
            let addr = [IpAddr::from([10, 8, (i / 250) as u8, (i % 250 + 2) as u8])];
            let t = Instant::now();
            fw.remove_container("timed", &addr).unwrap();
            remove.push(t.elapsed());
        }
        let start = Instant::now();
        fw.remove_network("timed").unwrap();
        let teardown = start.elapsed();
        println!(
            "firewall timings: first install {install:?}, ensure_network when installed median {:?}, \
             add_container median {:?}, remove_container median {:?}, remove_network {teardown:?}",
            median(ensure),
            median(add),
            median(remove)
        );
    });
}
