//! Published ports with real TCP: from another machine, from the host's localhost, and
//! hairpin from containers of the same network.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::{addrs, rules, shell};
use crate::harness::{HostNs, NetNs};
use tether::firewall::{route_localnet_sysctl, Firewall, PortMapping, PortmapOptions, Protocol};

/// Serves in the namespace until `connections` clients came: answers each with the
/// address it saw them come from.
fn serve(ns: &NetNs, port: u16, connections: usize) -> std::thread::JoinHandle<()> {
    let listener = ns.run_inside(|| TcpListener::bind(("0.0.0.0", port)).unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let peer = stream.peer_addr().unwrap();
            let _ = stream.write_all(peer.ip().to_string().as_bytes());
        }
    })
}

/// Connects from inside `ns`; returns the address the server saw, or None.
fn fetch(ns: &NetNs, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().unwrap();
    ns.run_inside(|| {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    })
}

#[test]
fn published_port_is_reachable_from_outside_localhost_and_hairpin() {
    let host = HostNs::new("fw");
    let ctr = host.container("ctr");
    let nbr = host.container("nbr");
    let client = host.container("client");
    let (h, c, n, o) = (&host.name, &ctr.name, &nbr.name, &client.name);
    assert!(shell(&format!(
        "set -e
         ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1
         ip -n {h} link set lo up
         ip -n {h} link add tbp0 type bridge
         ip -n {h} addr add 10.30.0.1/24 dev tbp0
         ip -n {h} link set tbp0 up
         for x in c:{c}:2 n:{n}:3; do
           k=${{x%%:*}}; rest=${{x#*:}}; ns=${{rest%%:*}}; i=${{rest#*:}}
           ip -n {h} link add tvp$k type veth peer name eth0 netns $ns
           ip -n {h} link set tvp$k master tbp0 up
           ip -n {h} link set tvp$k type bridge_slave hairpin on
           ip -n $ns addr add 10.30.0.$i/24 dev eth0
           ip -n $ns link set eth0 up
           ip -n $ns link set lo up
           ip -n $ns route add default via 10.30.0.1
         done
         ip -n {h} link add tvpo type veth peer name eth0 netns {o}
         ip -n {h} addr add 192.0.2.1/24 dev tvpo
         ip -n {h} link set tvpo up
         ip -n {o} addr add 192.0.2.2/24 dev eth0
         ip -n {o} link set eth0 up
         ip -n {o} route add 10.30.0.0/24 via 192.0.2.1"
    )));
    assert!(shell(&format!(
        "ip netns exec {h} sysctl -qw {}=1",
        route_localnet_sysctl("tbp0")
    )));
    host.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("pub", "tbp0", true)).unwrap();
        fw.add_container("pub", &addrs(&["10.30.0.2"])).unwrap();
        fw.add_container("pub", &addrs(&["10.30.0.3"])).unwrap();
        fw.ensure_portmap(&PortmapOptions::default()).unwrap();
        fw.add_ports(&[PortMapping {
            host_ip: None,
            host_port: 8080,
            container_ip: "10.30.0.2".parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }])
        .unwrap();
    });
    let server = serve(&ctr, 80, 5);

    // From another machine through the host's address: the client's own address arrives.
    assert_eq!(
        fetch(&client, "192.0.2.1:8080").as_deref(),
        Some("192.0.2.2")
    );
    // Straight to the container address: isolation drops it.
    assert_eq!(fetch(&client, "10.30.0.2:80"), None);
    // From the host itself, to its own address (the container answers it through its
    // default route) and to localhost (masqueraded to the bridge address).
    assert_eq!(fetch(&host, "192.0.2.1:8080").as_deref(), Some("192.0.2.1"));
    assert_eq!(fetch(&host, "127.0.0.1:8080").as_deref(), Some("10.30.0.1"));
    // Hairpin: a neighbour, and the container itself, through the host's address. With
    // br_netfilter loaded (bridge-nf-call-iptables=1, as on this machine) the DNAT happens
    // while the frame is being bridged and goes back out the port it came in on: that
    // needs the port's hairpin mode (the bridge plugin's `hairpinMode`).
    assert_eq!(fetch(&nbr, "192.0.2.1:8080").as_deref(), Some("10.30.0.1"));
    assert_eq!(fetch(&ctr, "192.0.2.1:8080").as_deref(), Some("10.30.0.1"));
    server.join().unwrap();
}
