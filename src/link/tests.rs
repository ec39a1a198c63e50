//! Root tests: each makes its own network namespaces (`tt-<tag>-<pid>`), works only inside them
//! and deletes them on drop, also when the test fails.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::*;
use crate::netns::NetNs;

/// A named namespace made with `ip netns add` and removed on drop.
struct TestNetns {
    name: String,
    ns: NetNs,
}

impl TestNetns {
    fn new(tag: &str) -> TestNetns {
        assert_eq!(
            // SAFETY: geteuid has no preconditions and cannot fail.
            unsafe { libc::geteuid() },
            0,
            "link tests create network namespaces and need root"
        );
        let name = format!("tt-{tag}-{}", std::process::id());
        // A leftover from a killed earlier run with a recycled pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ip(&["netns", "add", &name]);
        let ns = NetNs::open(format!("/run/netns/{name}")).expect("open test netns");
        TestNetns { name, ns }
    }

    /// `ip -j -n NAME args...` parsed as JSON.
    fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j", "-n", &self.name];
        full.extend_from_slice(args);
        let out = run_ip(&full);
        if out.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ip {full:?} gave bad JSON: {e}: {out}"))
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn run_ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The "local/prefixlen" strings of `ip -j addr show dev DEV`, with their flags.
fn addr_info(ns: &TestNetns, dev: &str) -> Vec<(String, Value)> {
    let links = ns.ip_json(&["addr", "show", "dev", dev]);
    links[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]),
                a.clone(),
            )
        })
        .collect()
}

#[test]
fn bridge_veth_addresses_and_routes_end_to_end() {
    let host = TestNetns::new("e2eh");
    let ctr = TestNetns::new("e2ec");
    let nl = Netlink::in_netns(&host.ns).unwrap();

    let bridge_mac = MacAddr::from_name("ttbr0");
    let bridge = nl.ensure_bridge("ttbr0", Some(1400), bridge_mac).unwrap();
    assert!(bridge.is_bridge() && bridge.up);
    assert_eq!(bridge.mac, Some(bridge_mac));
    assert_eq!(bridge.mtu, 1400);
    let again = nl.ensure_bridge("ttbr0", Some(1400), bridge_mac).unwrap();
    assert_eq!(again, bridge, "a second ensure_bridge changes nothing");

    let peer_mac: MacAddr = "02:00:00:aa:bb:01".parse().unwrap();
    let veth = nl
        .create_veth("tvtest1", "eth0", &ctr.ns, Some(1400), Some(peer_mac))
        .unwrap();
    assert_eq!(veth.kind.as_deref(), Some("veth"));
    assert!(veth.up);
    assert_eq!(veth.mtu, 1400);

    // A port with a lower MAC than the bridge's must not change the bridge's address.
    nl.set_mac(veth.index, "02:00:00:00:00:01".parse().unwrap())
        .unwrap();
    nl.set_master(veth.index, bridge.index).unwrap();
    nl.set_hairpin(veth.index, true).unwrap();
    let bridge_now = nl.link_by_index(bridge.index).unwrap().unwrap();
    assert_eq!(bridge_now.mac, Some(bridge_mac), "bridge MAC stays pinned");
    let veth_now = nl.link_by_name("tvtest1").unwrap().unwrap();
    assert_eq!(veth_now.master, Some(bridge.index));
    let details = host.ip_json(&["-d", "link", "show", "tvtest1"]);
    assert_eq!(details[0]["master"], "ttbr0");
    assert_eq!(
        details[0]["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{details}"
    );
    nl.set_hairpin(veth.index, false).unwrap();
    let details = host.ip_json(&["-d", "link", "show", "tvtest1"]);
    assert_eq!(details[0]["linkinfo"]["info_slave_data"]["hairpin"], false);
    nl.set_learning(veth.index, false).unwrap();
    nl.set_promisc(bridge.index, true).unwrap();
    nl.set_mtu(veth.index, 1380).unwrap();
    let details = host.ip_json(&["-d", "link", "show", "tvtest1"]);
    assert_eq!(details[0]["linkinfo"]["info_slave_data"]["learning"], false);
    assert_eq!(details[0]["mtu"], 1380);
    let bridge_details = host.ip_json(&["-d", "link", "show", "ttbr0"]);
    assert!(bridge_details[0]["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("PROMISC")));
    let too_big = nl.set_mtu(veth.index, 70_000).unwrap_err();
    assert!(
        too_big.to_string().starts_with(&format!(
            "setting the MTU of link #{} to 70000 failed: ",
            veth.index
        )),
        "{too_big}"
    );
    nl.set_mtu(veth.index, 1400).unwrap();

    nl.add_address(bridge.index, net("10.88.0.1/24"), false)
        .unwrap();
    nl.add_address(bridge.index, net("fd00:88::1/64"), true)
        .unwrap();

    // Container side, through a socket opened inside the container namespace.
    let cn = Netlink::in_netns(&ctr.ns).unwrap();
    let eth0 = cn.link_by_name("eth0").unwrap().expect("peer in container");
    assert_eq!(eth0.mac, Some(peer_mac));
    assert_eq!(eth0.mtu, 1400);
    assert!(
        !eth0.up,
        "the peer comes up only when the container side says so"
    );
    cn.set_up(eth0.index).unwrap();
    assert!(cn.link_by_index(eth0.index).unwrap().unwrap().up);
    assert!(
        nl.link_by_name("eth0").unwrap().is_none(),
        "peer not left in host"
    );

    cn.add_address(eth0.index, net("10.88.0.2/24"), false)
        .unwrap();
    cn.add_address(eth0.index, net("fd00:88::2/64"), true)
        .unwrap();
    // Same address again: fine. Same IPv6 address with another prefix: refused.
    cn.add_address(eth0.index, net("10.88.0.2/24"), false)
        .unwrap();
    cn.add_address(eth0.index, net("fd00:88::2/64"), true)
        .unwrap();
    assert!(matches!(
        cn.add_address(eth0.index, net("fd00:88::2/80"), true),
        Err(LinkError::Exists { .. })
    ));

    cn.add_route(
        net("0.0.0.0/0"),
        Some(ip("10.88.0.1")),
        Some(eth0.index),
        None,
    )
    .unwrap();
    cn.add_route(
        net("::/0"),
        Some(ip("fd00:88::1")),
        Some(eth0.index),
        Some(1300),
    )
    .unwrap();
    cn.add_route(net("192.168.77.0/24"), None, Some(eth0.index), None)
        .unwrap();
    let dup = cn
        .add_route(
            net("0.0.0.0/0"),
            Some(ip("10.88.0.1")),
            Some(eth0.index),
            None,
        )
        .unwrap_err();
    assert!(matches!(dup, LinkError::Exists { .. }), "{dup}");
    assert!(dup
        .to_string()
        .starts_with("adding route 0.0.0.0/0 via 10.88.0.1"));

    // What the kernel says, seen by iproute2.
    let addrs = addr_info(&ctr, "eth0");
    let v4 = addrs
        .iter()
        .find(|(a, _)| a == "10.88.0.2/24")
        .expect("v4 addr");
    assert_eq!(v4.1["family"], "inet");
    let v6 = addrs
        .iter()
        .find(|(a, _)| a == "fd00:88::2/64")
        .expect("v6 addr");
    assert!(
        v6.1.get("tentative").is_none(),
        "nodad address is usable: {}",
        v6.1
    );
    assert_eq!(v6.1["nodad"], true, "{}", v6.1);

    let routes4 = ctr.ip_json(&["-4", "route", "show", "default"]);
    assert_eq!(routes4[0]["gateway"], "10.88.0.1");
    assert_eq!(routes4[0]["dev"], "eth0");
    let routes6 = ctr.ip_json(&["-6", "route", "show", "default"]);
    assert_eq!(routes6[0]["gateway"], "fd00:88::1");
    assert_eq!(routes6[0]["metrics"][0]["mtu"], 1300, "{routes6}");
    let link_route = ctr.ip_json(&["-4", "route", "show", "192.168.77.0/24"]);
    assert_eq!(link_route[0]["scope"], "link");

    // And what our own readers say.
    let mine = cn.addresses(eth0.index).unwrap();
    assert!(mine.contains(&net("10.88.0.2/24")) && mine.contains(&net("fd00:88::2/64")));
    let v4_routes = cn.routes(IpFamily::V4).unwrap();
    assert!(v4_routes.iter().any(|r| r.is_default()
        && r.gw == Some(ip("10.88.0.1"))
        && r.oif == Some(eth0.index)
        && r.table == route::MAIN_TABLE));
    let v6_routes = cn.routes(IpFamily::V6).unwrap();
    assert!(v6_routes
        .iter()
        .any(|r| r.is_default() && r.gw == Some(ip("fd00:88::1")) && r.mtu == Some(1300)));
    assert_eq!(
        cn.default_route_interface().unwrap().map(|l| l.name),
        Some("eth0".to_string())
    );
    assert_eq!(nl.default_route_interface().unwrap(), None);
    assert_eq!(cn.mac_of(eth0.index).unwrap(), Some(peer_mac));

    // Traffic flows at once, IPv6 included (no DAD wait).
    let ping4 = ctr.exec(&["ping", "-c1", "-W2", "10.88.0.1"]);
    assert!(
        ping4.status.success(),
        "{}",
        String::from_utf8_lossy(&ping4.stdout)
    );
    let ping6 = ctr.exec(&["ping", "-6", "-c1", "-W2", "fd00:88::1"]);
    assert!(
        ping6.status.success(),
        "{}",
        String::from_utf8_lossy(&ping6.stdout)
    );

    // Undo, and undo again: a second delete reports "already gone".
    assert!(cn
        .del_route(net("0.0.0.0/0"), Some(ip("10.88.0.1")), None)
        .unwrap());
    assert!(!cn
        .del_route(net("0.0.0.0/0"), Some(ip("10.88.0.1")), None)
        .unwrap());
    assert!(cn.del_address(eth0.index, net("10.88.0.2/24")).unwrap());
    assert!(!cn.del_address(eth0.index, net("10.88.0.2/24")).unwrap());
    assert!(nl.delete_link_by_name("tvtest1").unwrap());
    assert!(!nl.delete_link_by_name("tvtest1").unwrap());
    assert!(!nl.delete_link(veth.index).unwrap());
    assert!(
        cn.link_by_name("eth0").unwrap().is_none(),
        "peer went with it"
    );
    assert!(nl.delete_link(bridge.index).unwrap());
    assert!(!nl.delete_link(bridge.index).unwrap());
}

#[test]
fn veth_host_end_can_join_the_bridge_in_the_creating_request() {
    let host = TestNetns::new("vmh");
    let ctr = TestNetns::new("vmc");
    let nl = Netlink::in_netns(&host.ns).unwrap();
    let bridge = nl
        .ensure_bridge("ttbr1", None, MacAddr::from_name("ttbr1"))
        .unwrap();
    let veth = nl
        .create_veth_with(&VethSpec {
            host_name: "tvmaster",
            peer_name: "eth1",
            peer_ns: &ctr.ns,
            mtu: None,
            peer_mac: None,
            host_mac: None,
            host_master: Some(bridge.index),
        })
        .unwrap();
    assert_eq!(veth.master, Some(bridge.index));
    assert!(veth.up);
    let peer = Netlink::in_netns(&ctr.ns)
        .unwrap()
        .link_by_name("eth1")
        .unwrap()
        .unwrap();
    let mac = peer.mac.unwrap();
    assert!(mac.is_unicast());
}

#[test]
fn taken_veth_names_are_reported_as_exists() {
    let host = TestNetns::new("exh");
    let ctr = TestNetns::new("exc");
    let nl = Netlink::in_netns(&host.ns).unwrap();
    nl.create_veth("tvdup", "eth0", &ctr.ns, None, None)
        .unwrap();

    let same_host_name = nl
        .create_veth("tvdup", "eth9", &ctr.ns, None, None)
        .unwrap_err();
    assert!(
        matches!(same_host_name, LinkError::Exists { .. }),
        "{same_host_name}"
    );
    assert!(
        same_host_name
            .to_string()
            .starts_with("creating veth tvdup (peer eth9 in /run/netns/tt-exc-"),
        "{same_host_name}"
    );
    let same_peer_name = nl
        .create_veth("tvother", "eth0", &ctr.ns, None, None)
        .unwrap_err();
    assert!(
        matches!(same_peer_name, LinkError::Exists { .. }),
        "{same_peer_name}"
    );
    assert!(
        nl.link_by_name("tvother").unwrap().is_none(),
        "nothing half-made"
    );
}

#[test]
fn ensure_bridge_refuses_a_link_that_is_not_a_bridge() {
    let host = TestNetns::new("nbr");
    run_ip(&[
        "-n",
        &host.name,
        "link",
        "add",
        "ttnotbr",
        "type",
        "veth",
        "peer",
        "name",
        "ttnotbr-p",
    ]);
    let nl = Netlink::in_netns(&host.ns).unwrap();
    let err = nl
        .ensure_bridge("ttnotbr", None, MacAddr::from_name("ttnotbr"))
        .unwrap_err();
    assert!(matches!(err, LinkError::NotABridge { .. }), "{err}");
    assert!(err.to_string().contains("is a veth, not a bridge"), "{err}");
}

#[test]
fn ensure_bridge_repairs_address_mtu_and_state_of_an_existing_bridge() {
    let host = TestNetns::new("rep");
    run_ip(&[
        "-n", &host.name, "link", "add", "ttbr2", "mtu", "1500", "type", "bridge",
    ]);
    let nl = Netlink::in_netns(&host.ns).unwrap();
    let mac = MacAddr::from_name("ttbr2");
    let bridge = nl.ensure_bridge("ttbr2", Some(1450), mac).unwrap();
    assert_eq!((bridge.mac, bridge.mtu, bridge.up), (Some(mac), 1450, true));
    let fresh = nl.link_by_name("ttbr2").unwrap().unwrap();
    assert_eq!(fresh, bridge);
}

#[test]
fn racing_ensure_bridge_callers_all_get_the_same_bridge() {
    let host = TestNetns::new("race");
    let mac = MacAddr::from_name("ttrace");
    let indexes: Vec<u32> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let nl = Netlink::in_netns(&host.ns).unwrap();
                    nl.ensure_bridge("ttrace", None, mac).unwrap().index
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(indexes.windows(2).all(|w| w[0] == w[1]), "{indexes:?}");
}

#[test]
fn missing_links_read_as_none_and_delete_as_false() {
    let host = TestNetns::new("miss");
    let nl = Netlink::in_netns(&host.ns).unwrap();
    assert!(nl.link_by_name("ttnothing").unwrap().is_none());
    assert!(nl.link_by_index(999_999).unwrap().is_none());
    assert!(!nl.delete_link(999_999).unwrap());
    assert!(!nl.delete_link_by_name("ttnothing").unwrap());
    let err = nl.set_up(999_999).unwrap_err();
    assert!(matches!(err, LinkError::NotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "setting up link #999999 failed: it does not exist"
    );
    let lo = nl.link_by_name("lo").unwrap().unwrap();
    assert_eq!(lo.index, 1);
    assert!(!lo.up, "a new namespace starts with lo down");
}

#[test]
fn a_socket_opened_inside_a_namespace_stays_there_on_any_thread() {
    let target = TestNetns::new("bound");
    // Netlink::new() while the thread is inside: the socket belongs to `target` from then on.
    let nl = target.ns.run(Netlink::new).unwrap().unwrap();
    let names: Vec<String> =
        std::thread::spawn(move || nl.links().unwrap().into_iter().map(|l| l.name).collect())
            .join()
            .unwrap();
    assert_eq!(
        names,
        vec!["lo".to_string()],
        "only the new namespace's loopback"
    );
}

#[test]
fn run_restores_the_thread_namespace_even_when_the_closure_panics() {
    let target = TestNetns::new("panic");
    let before = NetNs::current().unwrap();

    let inside = target.ns.run(|| NetNs::current().unwrap()).unwrap();
    assert!(inside.same_as(&target.ns).unwrap());
    assert!(NetNs::current().unwrap().same_as(&before).unwrap());

    let result = std::panic::catch_unwind(|| {
        target
            .ns
            .run(|| -> () { panic!("closure fails inside the namespace") })
    });
    assert!(result.is_err());
    let after = NetNs::current().unwrap();
    assert!(
        after.same_as(&before).unwrap(),
        "thread left in the target namespace"
    );
    assert!(!after.same_as(&target.ns).unwrap());
}

#[test]
fn sysctls_written_inside_a_namespace_stay_there() {
    let target = TestNetns::new("sysctl");
    let outside = get_sysctl("net/ipv4/ip_forward").unwrap();
    let inside_before = target
        .ns
        .run(|| get_sysctl("net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    let flipped = if inside_before == "1" { "0" } else { "1" };
    target
        .ns
        .run(|| set_sysctl("net/ipv4/ip_forward", flipped))
        .unwrap()
        .unwrap();
    let inside_after = target
        .ns
        .run(|| get_sysctl("net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    assert_eq!(inside_after, flipped);
    assert_eq!(get_sysctl("net/ipv4/ip_forward").unwrap(), outside);
}

/// Not an assertion: prints what one container's link setup costs. Run with --nocapture.
#[test]
fn timing_of_veth_address_and_route_setup() {
    let host = TestNetns::new("timeh");
    let ctr = TestNetns::new("timec");
    let nl = Netlink::in_netns(&host.ns).unwrap();
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
        let cn = Netlink::in_netns(&ctr.ns).unwrap();
        marks.push(Instant::now());
        nl.create_veth_with(&VethSpec {
            host_name: &host_name,
            peer_name: "eth0",
            peer_ns: &ctr.ns,
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
    for (step, mut v) in steps.iter().zip(samples) {
        v.sort();
        let median = v[v.len() / 2];
        if *step != "delete veth" {
            setup_total += median;
        }
        println!("  {step:<36} {median:?}");
    }
    println!("  {:<36} {setup_total:?}", "sum of setup medians");
}
