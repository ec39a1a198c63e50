//! tether-portmap chained after an interface plugin, as a runtime runs a conflist: published TCP and UDP ports
//! reached from an outside client, from the host, from 127.0.0.1 and from containers (hairpin); conflicts
//! refused whole; DEL with and without runtimeConfig; mixed chains with the reference plugins; tether-bridge
//! publishing ports itself when it declares the capability.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::PathBuf;

use harness::nft_trap::NftTrap;
use harness::{binaries, cni_result, docker_forward_drop, network_conf, nft, tcp, HostNs, NetNs};
use serde_json::{json, Value};

const V: &str = "1.0.0";

fn portmap_conf(name: &str, prev: &Value, ports: &Value) -> Value {
    json!({
        "cniVersion": V,
        "name": name,
        "type": "tether-portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": ports},
        "prevResult": prev,
    })
}

/// An interface plugin with a portmap plugin chained after it, run as libcni runs a conflist of the two.
struct Chain {
    iface: PathBuf,
    portmap: PathBuf,
    /// The portmap plugin's `type` in its conf (the reference plugin checks it).
    portmap_type: &'static str,
}

impl Chain {
    fn tether() -> Chain {
        Chain {
            iface: binaries::tether_bridge(),
            portmap: binaries::tether_portmap(),
            portmap_type: "tether-portmap",
        }
    }

    /// ADD through the interface plugin, then the portmap plugin with the first result as `prevResult` and
    /// `ports` as its `portMappings`. Returns the final result.
    fn add(&self, host: &HostNs, c: &NetNs, conf: &Value, ports: &Value) -> Value {
        let first = host.plugin(&self.iface).add(c, conf);
        let mut pconf = portmap_conf(conf["name"].as_str().unwrap(), &first, ports);
        pconf["type"] = json!(self.portmap_type);
        host.plugin(&self.portmap).add(c, &pconf)
    }
}

fn portmap_del(host: &HostNs, c: &NetNs, prev: &Value, ports: Option<&Value>) {
    let mut conf = portmap_conf("net1", prev, &json!([]));
    match ports {
        Some(p) => conf["runtimeConfig"]["portMappings"] = p.clone(),
        None => {
            conf.as_object_mut().unwrap().remove("runtimeConfig");
        }
    }
    host.plugin(binaries::tether_portmap()).del(c, &conf);
}

fn tether_net(host: &HostNs, subnet: &str) -> Value {
    let mut conf = network_conf::tether_bridge(host, V, subnet);
    conf["hairpinMode"] = json!(true);
    conf["ipMasq"] = json!(true);
    conf
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// The table as nft lists it, without the per-element counters (` counter packets N bytes M`), so a
/// mapping reads `PORT : ADDR`.
fn ruleset(host: &HostNs) -> String {
    let listed = String::from_utf8_lossy(
        &host
            .exec(&["nft", "list", "table", "inet", "tether"])
            .stdout,
    )
    .into_owned();
    without_counters(&listed)
}

fn without_counters(listed: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    let mut rest = listed.split(' ');
    while let Some(word) = rest.next() {
        if word == "counter" {
            let counted: Vec<&str> = rest.clone().take(4).collect();
            if counted.len() == 4 && counted[0] == "packets" && counted[2] == "bytes" {
                rest.nth(3);
                continue;
            }
        }
        words.push(word);
    }
    words.join(" ")
}

#[test]
fn published_tcp_and_udp_ports_are_reached_from_an_outside_client() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    let conf = tether_net(&host, "10.60.0.0/24");
    let c = host.container("c1");
    let ports = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"HostPort": 8053, "ContainerPort": 53, "Protocol": "UDP"},
    ]);
    let res = Chain::tether().add(&host, &c, &conf, &ports);
    let ip = cni_result::ip(&res, "4");
    let seen = tcp::exchange_via(
        &c,
        sock(&ip, 80),
        &outside.ns,
        sock(outside.host_addr, 8080),
    )
    .expect("tcp through the published port");
    assert_eq!(
        seen.ip().to_string(),
        outside.addr,
        "the client's address is kept (no SNAT from outside)"
    );
    tcp::udp_exchange_via(
        &c,
        sock(&ip, 53),
        &outside.ns,
        sock(outside.host_addr, 8053),
    )
    .expect("udp through the published port");
    // Not published: refused.
    assert!(tcp::exchange_via(
        &c,
        sock(&ip, 81),
        &outside.ns,
        sock(outside.host_addr, 8081)
    )
    .is_err());
}

#[test]
fn a_published_port_is_reached_under_a_forward_drop_policy_once_tethers_device_group_is_accepted() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    docker_forward_drop::leave_forward_drop(&host);
    let conf = tether_net(&host, "10.71.0.0/24");
    let c = host.container("c1");
    let ports = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let res = Chain::tether().add(&host, &c, &conf, &ports);
    let ip = cni_result::ip(&res, "4");
    let through = || {
        tcp::exchange_via(
            &c,
            sock(&ip, 80),
            &outside.ns,
            sock(outside.host_addr, 8080),
        )
    };
    assert!(
        through().is_err(),
        "the DROP policy let a published port through"
    );
    docker_forward_drop::accept_tether_device_group(&host);
    through().expect("tcp through the published port with the rule");
}

#[test]
fn published_port_is_reached_from_the_host_and_from_localhost() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    let conf = tether_net(&host, "10.61.0.0/24");
    let c = host.container("c1");
    let ports = json!([{"hostPort": 8080, "containerPort": 80}]);
    let res = Chain::tether().add(&host, &c, &conf, &ports);
    let ip = cni_result::ip(&res, "4");
    tcp::exchange_via(&c, sock(&ip, 80), &host, sock(outside.host_addr, 8080))
        .expect("host -> host address");
    tcp::exchange_via(&c, sock(&ip, 80), &host, sock("127.0.0.1", 8080))
        .expect("host -> 127.0.0.1");
    assert_eq!(host.sysctl("net.ipv4.conf.tt0.route_localnet"), "1");
}

#[test]
fn hairpin_a_container_reaches_its_own_and_a_neighbours_published_port() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    let conf = tether_net(&host, "10.62.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let res = Chain::tether().add(
        &host,
        &c1,
        &conf,
        &json!([{"hostPort": 8080, "containerPort": 80}]),
    );
    Chain::tether().add(&host, &c2, &conf, &json!([]));
    let ip1 = cni_result::ip(&res, "4");
    tcp::exchange_via(&c1, sock(&ip1, 80), &c2, sock(outside.host_addr, 8080))
        .expect("neighbour hairpin");
    tcp::exchange_via(&c1, sock(&ip1, 80), &c1, sock(outside.host_addr, 8080))
        .expect("own port hairpin");
}

#[test]
fn a_second_container_cannot_publish_the_same_port_and_nothing_of_it_is_installed() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    let conf = tether_net(&host, "10.63.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let r1 = Chain::tether().add(
        &host,
        &c1,
        &conf,
        &json!([{"hostPort": 8080, "containerPort": 80}]),
    );
    let r2 = host.tether_bridge().add(&c2, &conf);
    let ports2 =
        json!([{"hostPort": 9090, "containerPort": 90}, {"hostPort": 8080, "containerPort": 80}]);
    let out = host
        .plugin(binaries::tether_portmap())
        .cmd("ADD")
        .container(&c2)
        .conf(&portmap_conf("net1", &r2, &ports2))
        .run();
    assert_eq!(out.error_code(), Some(103), "{}", out.stdout);
    assert!(
        out.stdout.contains("8080"),
        "the error names the port: {}",
        out.stdout
    );
    let ip2 = cni_result::ip(&r2, "4");
    assert!(
        !ruleset(&host).contains(&format!("9090 : {ip2}")),
        "half-installed: {}",
        ruleset(&host)
    );
    // The runtime cleans up the failed ADD with DEL: the holder keeps its port.
    portmap_del(&host, &c2, &r2, Some(&ports2));
    let ip1 = cni_result::ip(&r1, "4");
    tcp::exchange_via(
        &c1,
        sock(&ip1, 80),
        &outside.ns,
        sock(outside.host_addr, 8080),
    )
    .expect("the first container still owns 8080");
}

/// The network's first ADD installs its chains, the published-port chains and macspoofchk's table; its last
/// DEL removes the network's chains: all of it over netlink, with every nft on the machine replaced by a
/// trap that fails and records its call.
#[test]
fn the_first_add_and_the_last_del_of_a_network_never_run_nft() {
    let trap = NftTrap::new("pm");
    trap.assert_armed();
    let bridge = trap.wrap(&binaries::tether_bridge());
    let portmap = trap.wrap(&binaries::tether_portmap());
    let host = HostNs::new("pm");
    let outside = host.outside();
    let mut conf = tether_net(&host, "10.67.0.0/24");
    conf["macspoofchk"] = json!(true);
    let c = host.container("c1");
    let ports = json!([{"hostPort": 8087, "containerPort": 80, "protocol": "tcp"}]);
    assert!(
        nft::table(&host).is_none(),
        "a fresh host has no tether table"
    );

    let chain = Chain {
        iface: bridge.clone(),
        portmap: portmap.clone(),
        portmap_type: "tether-portmap",
    };
    let res = chain.add(&host, &c, &conf, &ports);
    let ip = cni_result::ip(&res, "4");
    let network_chains = || nft::objects_named_for(&host, "_fwd");
    assert_eq!(network_chains().len(), 1, "{:?}", nft::objects(&host));
    tcp::exchange_via(
        &c,
        sock(&ip, 80),
        &outside.ns,
        sock(outside.host_addr, 8087),
    )
    .expect("tcp through the published port");
    let mac = c.mac("eth0");
    let spoofchk = host.exec_ok(&["nft", "list", "table", "bridge", "tether"]);
    assert!(spoofchk.contains(&mac), "{spoofchk}");

    let mut pconf = portmap_conf("net1", &res, &ports);
    pconf["cniVersion"] = json!(V);
    host.plugin(&portmap).del(&c, &pconf);
    host.plugin(&bridge).del(&c, &conf);
    assert!(network_chains().is_empty(), "{:?}", nft::objects(&host));
    assert!(!nft::has_element(&host, &ip));
    assert_eq!(trap.calls(), "", "a plugin ran nft");
}

#[test]
fn del_with_and_without_runtime_config_leaves_no_element() {
    let host = HostNs::new("pm");
    let conf = tether_net(&host, "10.64.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let p1 = json!([{"hostPort": 8081, "containerPort": 80}]);
    let p2 = json!([{"hostPort": 8082, "containerPort": 80, "protocol": "udp"}]);
    let r1 = Chain::tether().add(&host, &c1, &conf, &p1);
    let r2 = Chain::tether().add(&host, &c2, &conf, &p2);
    let (ip1, ip2) = (cni_result::ip(&r1, "4"), cni_result::ip(&r2, "4"));
    let rules = ruleset(&host);
    for (ip, port) in [(&ip1, "8081"), (&ip2, "8082")] {
        assert!(
            rules.contains(&format!("{port} : {ip}")),
            "{ip}:{port} not published:\n{rules}"
        );
    }

    // CHECK passes while published.
    let mut check = portmap_conf("net1", &r1, &p1);
    check["cniVersion"] = json!(V);
    host.plugin(binaries::tether_portmap())
        .cmd("CHECK")
        .container(&c1)
        .conf(&check)
        .run()
        .assert_ok();

    portmap_del(&host, &c1, &r1, Some(&p1));
    portmap_del(&host, &c2, &r2, None);
    let rules = ruleset(&host);
    for (ip, port) in [(&ip1, "8081"), (&ip2, "8082")] {
        assert!(
            !rules.contains(&format!("{port} : {ip}")),
            "{ip}:{port} left behind:\n{rules}"
        );
    }
    // CHECK now fails: the mapping is gone.
    let out = host
        .plugin(binaries::tether_portmap())
        .cmd("CHECK")
        .container(&c1)
        .conf(&check)
        .run();
    assert!(
        !out.status.success(),
        "CHECK passed with the port unpublished"
    );
    // DEL again succeeds.
    portmap_del(&host, &c1, &r1, None);
}

/// A mixed chain publishes 8080 -> 80 and an outside client reaches it through the host address.
fn mixed_chain_publishes_a_port(host: &HostNs, chain: &Chain, conf: &Value) {
    let outside = host.outside();
    let c = host.container("c1");
    let ports = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let ip = cni_result::ip(&chain.add(host, &c, conf, &ports), "4");
    tcp::exchange_via(
        &c,
        sock(&ip, 80),
        &outside.ns,
        sock(outside.host_addr, 8080),
    )
    .expect("outside -> published port");
}

#[test]
fn reference_bridge_with_tether_portmap_publishes_a_port() {
    let host = HostNs::new("pm");
    let mut conf = network_conf::reference_bridge(&host, V, "10.65.0.0/24");
    conf["ipMasq"] = json!(true);
    let chain = Chain {
        iface: binaries::reference("bridge"),
        ..Chain::tether()
    };
    mixed_chain_publishes_a_port(&host, &chain, &conf);
}

#[test]
fn tether_bridge_with_reference_portmap_publishes_a_port() {
    let host = HostNs::new("pm");
    let conf = tether_net(&host, "10.66.0.0/24");
    let chain = Chain {
        portmap: binaries::reference("portmap"),
        portmap_type: "portmap",
        ..Chain::tether()
    };
    mixed_chain_publishes_a_port(&host, &chain, &conf);
}

#[test]
fn a_published_port_works_over_ipv6_too() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    host.ip(&["addr", "add", "fd99::1/64", "dev", "out0", "nodad"]);
    outside
        .ns
        .ip(&["addr", "add", "fd99::2/64", "dev", "up0", "nodad"]);
    let mut conf = network_conf::tether_bridge_ranges(&host, V, &["10.68.0.0/24", "fd00:68::/64"]);
    conf["hairpinMode"] = json!(true);
    let c = host.container("c1");
    let ports = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let res = Chain::tether().add(&host, &c, &conf, &ports);
    let ip6 = cni_result::ip(&res, "6");
    let ip4 = cni_result::ip(&res, "4");
    tcp::exchange_via(&c, sock(&ip6, 80), &outside.ns, sock("fd99::1", 8080))
        .expect("IPv6 published port");
    tcp::exchange_via(
        &c,
        sock(&ip4, 80),
        &outside.ns,
        sock(outside.host_addr, 8080),
    )
    .expect("IPv4 too");
}

/// tether-bridge declaring `portMappings` itself, as `tether network create` writes it: one plugin process
/// publishes the ports (from outside and from 127.0.0.1), CHECK verifies them, a second container whose port
/// conflicts fails whole (no interface, no address, no element of it left), and DEL unpublishes.
#[test]
fn tether_bridge_with_the_port_mappings_capability_publishes_ports_in_one_process() {
    let host = HostNs::new("pm");
    let outside = host.outside();
    let mut conf = tether_net(&host, "10.68.0.0/24");
    conf["capabilities"] = json!({"portMappings": true});
    conf["snat"] = json!(true);
    let with_ports = |ports: Value| {
        let mut conf = conf.clone();
        conf["runtimeConfig"] = json!({ "portMappings": ports });
        conf
    };
    let ports = json!([{"hostPort": 8088, "containerPort": 80, "protocol": "tcp"}]);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let res = host.tether_bridge().add(&c1, &with_ports(ports.clone()));
    let ip = cni_result::ip(&res, "4");
    tcp::exchange_via(
        &c1,
        sock(&ip, 80),
        &outside.ns,
        sock(outside.host_addr, 8088),
    )
    .expect("tcp through the port tether-bridge published");
    tcp::exchange_via(&c1, sock(&ip, 80), &host, sock("127.0.0.1", 8088))
        .expect("host -> 127.0.0.1");
    host.tether_bridge()
        .check(&c1, &with_ports(ports.clone()), &res)
        .assert_ok();

    let clash =
        json!([{"hostPort": 9098, "containerPort": 90}, {"hostPort": 8088, "containerPort": 80}]);
    let out = host
        .tether_bridge()
        .cmd("ADD")
        .container(&c2)
        .conf(&with_ports(clash))
        .run();
    assert_eq!(out.error_code(), Some(103), "{}", out.stdout);
    let listed = ruleset(&host);
    assert!(!listed.contains("9098"), "half-published: {listed}");
    assert!(!c2.has_link("eth0"), "the failed ADD left its interface");
    assert!(
        !listed.contains("10.68.0.3"),
        "the failed ADD left its address in the network's set: {listed}"
    );

    host.tether_bridge().del(&c1, &with_ports(ports));
    let listed = ruleset(&host);
    assert!(!listed.contains("8088"), "DEL left the port: {listed}");
    assert!(!listed.contains(&ip), "DEL left the container: {listed}");
}
