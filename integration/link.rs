//! The link layer (`tether::link::Netlink`) against the real kernel: each test makes its namespaces on the
//! harness, works only inside them, and they go on drop, also when the test fails.

#[path = "harness/mod.rs"]
mod harness;

use std::net::IpAddr;

use harness::HostNs;
use ipnetwork::IpNetwork;
use serde_json::Value;
use tether::link::{
    get_sysctl, set_sysctl, vxlan_name, FdbEntry, FdbWrite, IpFamily, LinkError, MacAddr,
    NeighbourEntry, Netlink, VethSpec, VxlanSpec, VXLAN_PORT,
};
use tether::netns::NetNs;

/// The library's handle on a harness namespace: what `Netlink::in_netns` and `NetNs::run` take.
fn kernel(ns: &harness::NetNs) -> NetNs {
    NetNs::open(ns.path()).expect("open test netns")
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The "local/prefixlen" strings of `ip -j addr show dev DEV`, with their flags.
fn addr_info(ns: &harness::NetNs, dev: &str) -> Vec<(String, Value)> {
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
    let host = HostNs::new("e2e");
    let ctr = host.container("c");
    let (host_ns, ctr_ns) = (kernel(&host), kernel(&ctr));
    let nl = Netlink::in_netns(&host_ns).unwrap();

    let bridge_mac = MacAddr::from_name("ttbr0");
    let bridge = nl.ensure_bridge("ttbr0", Some(1400), bridge_mac).unwrap();
    assert!(bridge.is_bridge() && bridge.up);
    assert_eq!(bridge.mac, Some(bridge_mac));
    assert_eq!(bridge.mtu, 1400);
    let again = nl.ensure_bridge("ttbr0", Some(1400), bridge_mac).unwrap();
    assert_eq!(again, bridge, "a second ensure_bridge changes nothing");

    let peer_mac: MacAddr = "02:00:00:aa:bb:01".parse().unwrap();
    let veth = nl
        .create_veth("tvtest1", "eth0", &ctr_ns, Some(1400), Some(peer_mac))
        .unwrap();
    assert_eq!(veth.kind.as_deref(), Some("veth"));
    assert!(veth.up);
    assert_eq!(veth.mtu, 1400);
    // Both ends are made with the one queue each way a veth uses, not one per CPU cut down afterwards.
    for (ns, name) in [(&*host, "tvtest1"), (&ctr, "eth0")] {
        let details = ns.ip_json(&["-d", "link", "show", name]);
        assert_eq!(
            (&details[0]["num_tx_queues"], &details[0]["num_rx_queues"]),
            (&Value::from(1), &Value::from(1)),
            "{name}: {details}"
        );
    }

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
    let cn = Netlink::in_netns(&ctr_ns).unwrap();
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
        && r.table == u32::from(libc::RT_TABLE_MAIN)));
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
    let host = HostNs::new("vm");
    let ctr = host.container("c");
    let (host_ns, ctr_ns) = (kernel(&host), kernel(&ctr));
    let nl = Netlink::in_netns(&host_ns).unwrap();
    let bridge = nl
        .ensure_bridge("ttbr1", None, MacAddr::from_name("ttbr1"))
        .unwrap();
    let veth = nl
        .create_veth_with(&VethSpec {
            host_name: "tvmaster",
            peer_name: "eth1",
            peer_ns: &ctr_ns,
            mtu: None,
            peer_mac: None,
            host_mac: None,
            host_master: Some(bridge.index),
        })
        .unwrap();
    assert_eq!(veth.master, Some(bridge.index));
    assert!(veth.up);
    let peer = Netlink::in_netns(&ctr_ns)
        .unwrap()
        .link_by_name("eth1")
        .unwrap()
        .unwrap();
    let mac = peer.mac.unwrap();
    assert!(mac.is_unicast());
}

#[test]
fn taken_veth_names_are_reported_as_exists() {
    let host = HostNs::new("ex");
    let ctr = host.container("c");
    let (host_ns, ctr_ns) = (kernel(&host), kernel(&ctr));
    let nl = Netlink::in_netns(&host_ns).unwrap();
    nl.create_veth("tvdup", "eth0", &ctr_ns, None, None)
        .unwrap();

    let same_host_name = nl
        .create_veth("tvdup", "eth9", &ctr_ns, None, None)
        .unwrap_err();
    assert!(
        matches!(same_host_name, LinkError::Exists { .. }),
        "{same_host_name}"
    );
    assert!(
        same_host_name.to_string().starts_with(&format!(
            "creating veth tvdup (peer eth9 in {}",
            ctr.path_str()
        )),
        "{same_host_name}"
    );
    let same_peer_name = nl
        .create_veth("tvother", "eth0", &ctr_ns, None, None)
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
    let host = HostNs::new("nbr");
    host.ip(&[
        "link",
        "add",
        "ttnotbr",
        "type",
        "veth",
        "peer",
        "name",
        "ttnotbr-p",
    ]);
    let nl = Netlink::in_netns(&kernel(&host)).unwrap();
    let err = nl
        .ensure_bridge("ttnotbr", None, MacAddr::from_name("ttnotbr"))
        .unwrap_err();
    assert!(matches!(err, LinkError::NotABridge { .. }), "{err}");
    assert!(err.to_string().contains("is a veth, not a bridge"), "{err}");
}

#[test]
fn ensure_bridge_repairs_address_mtu_and_state_of_an_existing_bridge() {
    let host = HostNs::new("rep");
    host.ip(&["link", "add", "ttbr2", "mtu", "1500", "type", "bridge"]);
    let nl = Netlink::in_netns(&kernel(&host)).unwrap();
    let mac = MacAddr::from_name("ttbr2");
    let bridge = nl.ensure_bridge("ttbr2", Some(1450), mac).unwrap();
    assert_eq!((bridge.mac, bridge.mtu, bridge.up), (Some(mac), 1450, true));
    let fresh = nl.link_by_name("ttbr2").unwrap().unwrap();
    assert_eq!(fresh, bridge);
}

#[test]
fn racing_ensure_bridge_callers_all_get_the_same_bridge() {
    let host = HostNs::new("race");
    let host_ns = kernel(&host);
    let mac = MacAddr::from_name("ttrace");
    let indexes: Vec<u32> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let nl = Netlink::in_netns(&host_ns).unwrap();
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
    let host = HostNs::new("miss");
    let host_ns = kernel(&host);
    let nl = Netlink::in_netns(&host_ns).unwrap();
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
    assert!(
        lo.up,
        "the harness brings lo up in every namespace it makes"
    );
}

#[test]
fn a_socket_opened_inside_a_namespace_stays_there_on_any_thread() {
    let host = HostNs::new("bound");
    let target = kernel(&host);
    // Netlink::new() while the thread is inside: the socket belongs to `target` from then on.
    let nl = target.run(Netlink::new).unwrap().unwrap();
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
    let host = HostNs::new("panic");
    let target = kernel(&host);
    let before = NetNs::current().unwrap();

    let inside = target.run(|| NetNs::current().unwrap()).unwrap();
    assert!(inside.same_as(&target).unwrap());
    assert!(NetNs::current().unwrap().same_as(&before).unwrap());

    let result = std::panic::catch_unwind(|| {
        target.run(|| -> () { panic!("closure fails inside the namespace") })
    });
    assert!(result.is_err());
    let after = NetNs::current().unwrap();
    assert!(
        after.same_as(&before).unwrap(),
        "thread left in the target namespace"
    );
    assert!(!after.same_as(&target).unwrap());
}

#[test]
fn sysctls_written_inside_a_namespace_stay_there() {
    let host = HostNs::new("sysctl");
    let target = kernel(&host);
    let outside = get_sysctl("net/ipv4/ip_forward").unwrap();
    let inside_before = target
        .run(|| get_sysctl("net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    let flipped = if inside_before == "1" { "0" } else { "1" };
    target
        .run(|| set_sysctl("net/ipv4/ip_forward", flipped))
        .unwrap()
        .unwrap();
    let inside_after = target
        .run(|| get_sysctl("net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    assert_eq!(inside_after, flipped);
    assert_eq!(get_sysctl("net/ipv4/ip_forward").unwrap(), outside);
}

#[test]
fn vxlan_fdb_and_neighbour_entries_round_trip() {
    let host = HostNs::new("vxlan");
    host.ip(&[
        "link", "add", "under0", "type", "veth", "peer", "name", "under1",
    ]);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", "under0"]);
    host.ip(&["link", "set", "under0", "up"]);
    let ns = kernel(&host);
    let nl = Netlink::in_netns(&ns).unwrap();
    let under = nl.link_by_name("under0").unwrap().unwrap();
    let br = nl
        .ensure_bridge("tbr7", Some(1450), MacAddr::from_name("tbr7"))
        .unwrap();
    let spec = VxlanSpec {
        name: vxlan_name(7),
        vni: 7,
        local: "192.0.2.1".parse().unwrap(),
        underlay: under.index,
        port: VXLAN_PORT,
        mtu: Some(1450),
        master: Some(br.index),
    };
    let dev = nl.ensure_vxlan(&spec).unwrap();
    assert_eq!(dev.name, "tvx7");
    assert_eq!(dev.master, Some(br.index));
    assert_eq!(
        nl.ensure_vxlan(&spec).unwrap().index,
        dev.index,
        "idempotent"
    );

    let a = FdbEntry {
        mac: "02:00:00:00:00:0a".parse().unwrap(),
        dst: "192.0.2.2".parse().unwrap(),
    };
    let moved = FdbEntry {
        mac: a.mac,
        dst: "192.0.2.3".parse().unwrap(),
    };
    nl.fdb_add(dev.index, &a, FdbWrite::Replace).unwrap();
    nl.fdb_add(dev.index, &a, FdbWrite::Replace).unwrap();
    assert_eq!(nl.fdb_entries(dev.index).unwrap(), vec![a]);
    nl.fdb_add(dev.index, &moved, FdbWrite::Replace).unwrap();
    assert_eq!(
        nl.fdb_entries(dev.index).unwrap(),
        vec![moved],
        "replace moves a MAC"
    );
    assert!(nl.fdb_del(dev.index, &moved).unwrap());
    assert!(!nl.fdb_del(dev.index, &moved).unwrap());
    assert!(nl.fdb_entries(dev.index).unwrap().is_empty());

    // The kernel appends destinations only to the all-zero (flood) and multicast entries.
    let zero = MacAddr::new([0; 6]);
    let f1 = FdbEntry {
        mac: zero,
        dst: "192.0.2.2".parse().unwrap(),
    };
    let f2 = FdbEntry {
        mac: zero,
        dst: "192.0.2.3".parse().unwrap(),
    };
    nl.fdb_add(dev.index, &f1, FdbWrite::Append).unwrap();
    nl.fdb_add(dev.index, &f2, FdbWrite::Append).unwrap();
    let mut both = nl.fdb_entries(dev.index).unwrap();
    both.sort();
    assert_eq!(both, vec![f1, f2], "append keeps the first destination");
    assert!(nl.fdb_del(dev.index, &f1).unwrap());
    assert_eq!(nl.fdb_entries(dev.index).unwrap(), vec![f2]);

    let n = NeighbourEntry {
        ip: "10.200.0.5".parse().unwrap(),
        mac: a.mac,
    };
    nl.neighbour_replace(dev.index, &n).unwrap();
    nl.neighbour_replace(dev.index, &n).unwrap();
    assert_eq!(nl.permanent_neighbours(dev.index).unwrap(), vec![n]);
    assert!(nl.neighbour_del(dev.index, n.ip).unwrap());
    assert!(!nl.neighbour_del(dev.index, n.ip).unwrap());
    assert!(nl.permanent_neighbours(dev.index).unwrap().is_empty());
}

#[test]
fn sockets_in_two_namespaces_each_see_only_their_own_links() {
    let host = HostNs::new("bs");
    let ctr = host.container("c");
    let (host_ns, ctr_ns) = (kernel(&host), kernel(&ctr));
    let nl = Netlink::in_netns(&host_ns).unwrap();
    nl.create_veth("tvbeside", "eth0", &ctr_ns, None, None)
        .unwrap();
    let inner = Netlink::in_netns(&ctr_ns).unwrap();
    assert_eq!(inner.netns_path(), Some(ctr_ns.path()));
    assert!(inner.link_by_name("eth0").unwrap().is_some());
    assert!(inner.link_by_name("tvbeside").unwrap().is_none());
    assert!(nl.link_by_name("tvbeside").unwrap().is_some());
    assert!(nl.link_by_name("eth0").unwrap().is_none());
    let eth0 = inner.link_by_name("eth0").unwrap().unwrap();
    inner.set_up(eth0.index).unwrap();
    assert!(nl.delete_link_by_name("tvbeside").unwrap());
    assert!(
        inner.link_by_name("eth0").unwrap().is_none(),
        "peer went with it"
    );
}

#[test]
fn a_dump_longer_than_one_datagram_comes_back_whole() {
    // A link dump answers in datagrams of at most 32 KB, each link's message 1-2 KB with its
    // statistics: 300 links take many datagrams, all of which must be read.
    let host = HostNs::new("dm");
    let ns = kernel(&host);
    let nl = Netlink::in_netns(&ns).unwrap();
    let batch: String = (0..150)
        .map(|i| format!("link add dma{i} type veth peer name dmb{i}\n"))
        .collect();
    host.ns.ip_batch(&batch);
    let links = nl.links().unwrap();
    let ours = links.iter().filter(|l| l.name.starts_with("dm")).count();
    assert_eq!(ours, 300, "every veth end, both sides of 150 pairs");
    assert!(links.iter().any(|l| l.name == "lo"));
    // Addresses of one link out of a dump of all of them.
    let dma7 = nl.link_by_name("dma7").unwrap().unwrap();
    for i in 0..150u32 {
        let link = nl.link_by_name(&format!("dma{i}")).unwrap().unwrap();
        let address: IpNetwork = format!("10.77.{}.{}/16", i / 200, i % 200 + 1)
            .parse()
            .unwrap();
        nl.add_address(link.index, address, false).unwrap();
    }
    assert_eq!(
        nl.addresses(dma7.index).unwrap(),
        vec!["10.77.0.8/16".parse::<IpNetwork>().unwrap()]
    );
}

#[test]
fn a_full_bridge_refuses_a_port_with_an_error_that_says_so() {
    // BR_MAX_PORTS: a bridge takes 1023 ports; the kernel answers the next with EXFULL.
    let host = HostNs::new("bf");
    let ns = kernel(&host);
    let nl = Netlink::in_netns(&ns).unwrap();
    let bridge = nl
        .ensure_bridge("bf0", None, "02:42:0a:4e:00:01".parse().unwrap())
        .unwrap();
    let batch: String = (0..1023)
        .map(|i| format!("link add bfa{i} master bf0 type veth peer name bfb{i}\n"))
        .collect();
    host.ns.ip_batch(&batch);
    let peer_ns = kernel(&host.container("c"));
    let err = nl
        .add_veth(&VethSpec {
            host_name: "bfx",
            peer_name: "eth0",
            peer_ns: &peer_ns,
            mtu: None,
            peer_mac: None,
            host_mac: None,
            host_master: Some(bridge.index),
        })
        .unwrap_err();
    assert!(
        matches!(err, LinkError::BridgeFull { ports: 1023, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("another network"), "{err}");
}
