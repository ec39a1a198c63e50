//! Isolation between tether networks, with real pings.

use super::{addrs, reaches, rules, shell};
use crate::harness::HostNs;
use tether::firewall::{Firewall, NetworkRules};

#[test]
fn containers_on_different_networks_cannot_reach_each_other() {
    let host = HostNs::new("fw");
    let a = host.container("a");
    let b = host.container("b");
    let (h, ca, cb) = (&host.name, &a.name, &b.name);
    assert!(shell(&format!(
        "set -e
         ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1
         for n in a b; do ip -n {h} link add tbi$n type bridge; ip -n {h} link set tbi$n up; done
         ip -n {h} addr add 10.40.0.1/24 dev tbia
         ip -n {h} addr add 10.41.0.1/24 dev tbib
         ip -n {h} link add tvia type veth peer name eth0 netns {ca}
         ip -n {h} link add tvib type veth peer name eth0 netns {cb}
         ip -n {h} link set tvia master tbia up
         ip -n {h} link set tvib master tbib up
         ip -n {ca} addr add 10.40.0.2/24 dev eth0
         ip -n {cb} addr add 10.41.0.2/24 dev eth0
         ip -n {ca} link set eth0 up
         ip -n {cb} link set eth0 up
         ip -n {ca} route add default via 10.40.0.1
         ip -n {cb} route add default via 10.41.0.1"
    )));
    let a_to_b = format!("ip netns exec {ca} ping -c1 -W1 10.41.0.2 >/dev/null 2>&1");
    let a_to_gw = format!("ip netns exec {ca} ping -c1 -W1 10.40.0.1 >/dev/null 2>&1");
    assert!(
        reaches(&a_to_b),
        "routing between the bridges must work without rules"
    );

    let install = |a_iso: bool, b_iso: bool| {
        host.run_inside(|| {
            let fw = Firewall::open().unwrap();
            for (name, bridge, iso, addr) in [
                ("neta", "tbia", a_iso, "10.40.0.2"),
                ("netb", "tbib", b_iso, "10.41.0.2"),
            ] {
                fw.ensure_network(&NetworkRules {
                    isolation: iso,
                    ..rules(name, bridge, true)
                })
                .unwrap();
                fw.add_container(name, &addrs(&[addr])).unwrap();
            }
        })
    };
    install(true, true);
    assert!(
        !shell(&a_to_b),
        "isolated networks must not reach each other"
    );
    assert!(reaches(&a_to_gw), "the gateway stays reachable");
    // B may not open a path to A either.
    let b_to_a = format!("ip netns exec {cb} ping -c1 -W1 10.40.0.2 >/dev/null 2>&1");
    assert!(!shell(&b_to_a));

    // Isolation off on one side still keeps the isolated side closed both ways.
    install(true, false);
    assert!(!shell(&a_to_b));
    assert!(!shell(&b_to_a));
    install(false, false);
    assert!(
        reaches(&a_to_b),
        "networks without isolation reach each other"
    );
    install(true, true);
    assert!(!shell(&a_to_b));
}
