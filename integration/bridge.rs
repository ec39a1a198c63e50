//! tether-bridge (with in-process tether-ipam) end to end: kernel state, traffic, firewall, lifecycle.

#[path = "harness/mod.rs"]
mod harness;

use harness::{
    cni_result, docker_forward_drop, network_conf, nft, spec_versions, store, tcp, HostNs, NetNs,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const V: &str = "1.1.0";
fn add(host: &HostNs, c: &NetNs, conf: &Value) -> Value {
    host.tether_bridge().add(c, conf)
}

fn del(host: &HostNs, c: &NetNs, conf: &Value) {
    host.tether_bridge().del(c, conf)
}

fn check(host: &HostNs, c: &NetNs, conf: &Value, prev: &Value) -> harness::PluginOutput {
    host.tether_bridge().check(c, conf, prev)
}

/// Host-side veths of containers: `tv` + hex, on the bridge.
fn host_veths(host: &HostNs) -> Vec<String> {
    host.link_names()
        .into_iter()
        .filter(|n| n.starts_with("tv"))
        .collect()
}

#[test]
fn version_lists_every_spec_version_from_0_1_0_to_1_1_0() {
    let host = HostNs::new("br");
    let v = host
        .tether_bridge()
        .cmd("VERSION")
        .conf(&json!({"cniVersion": V}))
        .run();
    let v = v.result();
    // The reference answers VERSION in its newest version, not the one asked: both are accepted.
    assert!(
        spec_versions::ALL.iter().any(|x| v["cniVersion"] == *x),
        "{v}"
    );
    for version in spec_versions::ALL {
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == version),
            "{version} missing from {v}"
        );
    }
}

#[test]
fn add_answers_in_the_shape_of_every_cni_version() {
    let host = HostNs::new("br");
    let subnets = ["10.40.0.0/24", "fd00:40::/64"];
    for (i, version) in spec_versions::ALL.iter().enumerate() {
        let conf = network_conf::tether_bridge_ranges(&host, version, &subnets);
        let c = host.container(&format!("v{i}"));
        let r = add(&host, &c, &conf);
        assert_eq!(r["cniVersion"], *version, "{r}");
        if version.starts_with("0.1") || version.starts_with("0.2") {
            assert!(
                r.get("interfaces").is_none() && r.get("ips").is_none(),
                "{r}"
            );
            assert!(
                r["ip4"]["ip"].as_str().unwrap().starts_with("10.40.0."),
                "{r}"
            );
            assert!(
                r["ip6"]["ip"].as_str().unwrap().starts_with("fd00:40::"),
                "{r}"
            );
        } else {
            let ifaces = r["interfaces"].as_array().expect("interfaces list");
            let eth0 = ifaces
                .iter()
                .position(|i| i["name"] == "eth0" && i["sandbox"] == c.path_str().as_str())
                .unwrap_or_else(|| panic!("no eth0 in the container's sandbox: {r}"));
            assert!(
                ifaces.iter().any(|i| i["name"] == "tt0"),
                "bridge listed: {r}"
            );
            assert!(
                ifaces
                    .iter()
                    .any(|i| i["name"].as_str().unwrap_or("").starts_with("tv")),
                "host veth listed: {r}"
            );
            assert_eq!(ifaces[eth0]["mac"], c.mac("eth0").as_str(), "{r}");
            let ips = r["ips"].as_array().expect("ips");
            assert_eq!(ips.len(), 2, "{r}");
            for ip in ips {
                assert_eq!(ip["interface"], eth0, "ips point at eth0: {r}");
                let family = if ip["address"].as_str().unwrap().contains(':') {
                    "6"
                } else {
                    "4"
                };
                if version.starts_with("0.") {
                    assert_eq!(ip["version"], family, "{r}");
                } else {
                    assert!(ip.get("version").is_none(), "{r}");
                }
            }
        }
        let on_eth0: BTreeSet<String> = c.global_addresses("eth0").into_iter().collect();
        for a in cni_result::addresses(&r) {
            assert!(
                on_eth0.contains(&a),
                "{a} not on eth0 ({on_eth0:?}) for {version}"
            );
        }
    }
    for (i, version) in spec_versions::ALL.iter().enumerate() {
        let conf = network_conf::tether_bridge_ranges(&host, version, &subnets);
        del(
            &host,
            &NetNs {
                label: format!("v{i}"),
                name: host.name.clone(),
            },
            &conf,
        );
    }
    assert!(host_veths(&host).is_empty(), "{:?}", host_veths(&host));
    assert!(store::is_empty(&host.data_dir(), "net1"));
}

#[test]
fn add_plugs_the_container_into_the_bridge_with_gateway_and_default_route() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.41.0.0/24");
    let c = host.container("c1");
    let r = add(&host, &c, &conf);
    let ip = cni_result::ip(&r, "4");

    let veths = host_veths(&host);
    assert_eq!(veths.len(), 1, "{veths:?}");
    let veth = &veths[0];
    assert!(
        veth.len() <= 15 && veth[2..].chars().all(|ch| ch.is_ascii_hexdigit()),
        "{veth}"
    );
    assert_eq!(host.master(veth).as_deref(), Some("tt0"));
    assert_eq!(
        host.global_addresses("tt0"),
        vec!["10.41.0.1/24".to_owned()]
    );
    assert_eq!(cni_result::gateway(&r, "4").as_deref(), Some("10.41.0.1"));
    assert_eq!(c.global_addresses("eth0"), vec![format!("{ip}/24")]);
    assert_eq!(c.default_gateway("-4").as_deref(), Some("10.41.0.1"));
    assert_eq!(host.sysctl("net.ipv4.ip_forward"), "1");
    assert!(
        c.ping_retry("10.41.0.1", 2),
        "container reaches its gateway"
    );
    assert!(
        nft::has_element(&host, &ip),
        "{ip} not in inet tether: {:?}",
        nft::set_elements(&host)
    );

    del(&host, &c, &conf);
    assert!(host_veths(&host).is_empty());
    assert!(!c.has_link("eth0"));
    assert!(!nft::has_element(&host, &ip));
    assert!(
        nft::set_elements(&host).is_empty(),
        "{:?}",
        nft::set_elements(&host)
    );
    assert!(
        nft::objects_named_for(&host, "net1").is_empty(),
        "{:?}",
        nft::objects(&host)
    );
    assert!(store::is_empty(&host.data_dir(), "net1"));
}

#[test]
fn two_containers_ping_each_other_and_talk_tcp() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.42.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let ip1 = cni_result::ip(&add(&host, &c1, &conf), "4");
    let ip2 = cni_result::ip(&add(&host, &c2, &conf), "4");
    assert!(c1.ping_retry(&ip2, 3), "c1 -> {ip2}");
    assert!(c2.ping_retry(&ip1, 3), "c2 -> {ip1}");
    tcp::exchange(&c2, &ip2, 8080, &c1).expect("tcp c1 -> c2");
    tcp::exchange(&c1, &ip1, 8081, &c2).expect("tcp c2 -> c1");
}

#[test]
fn dual_stack_containers_ping6_right_after_add() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge_ranges(&host, V, &["10.43.0.0/24", "fd00:43::/64"]);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    add(&host, &c1, &conf);
    let r2 = add(&host, &c2, &conf);
    let ip6 = cni_result::ip(&r2, "6");
    // One echo, no retry: with DAD off the address is usable at once.
    assert!(c1.ping(&ip6), "ping6 {ip6} right after ADD");
    assert!(c1.ping_retry(&cni_result::ip(&r2, "4"), 2));
    assert_eq!(c1.default_gateway("-6").as_deref(), Some("fd00:43::1"));
    tcp::exchange(&c2, &ip6, 8080, &c1).expect("tcp over IPv6");
}

#[test]
fn ipv6_only_network_passes_traffic() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge_ranges(&host, V, &["fd00:44::/64"]);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let r1 = add(&host, &c1, &conf);
    let r2 = add(&host, &c2, &conf);
    assert!(
        cni_result::addresses(&r1).iter().all(|a| a.contains(':')),
        "{r1}"
    );
    assert!(c1.ping(&cni_result::ip(&r2, "6")), "ping6 right after ADD");
    assert!(host
        .global_addresses("tt0")
        .contains(&"fd00:44::1/64".to_owned()));
}

#[test]
fn bridge_mac_does_not_change_when_ports_join() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.45.0.0/24");
    add(&host, &host.container("c1"), &conf);
    let mac = host.mac("tt0");
    add(&host, &host.container("c2"), &conf);
    assert_eq!(host.mac("tt0"), mac, "after the second port");
    add(&host, &host.container("c3"), &conf);
    assert_eq!(host.mac("tt0"), mac, "after the third port");
}

#[test]
fn mtu_is_applied_to_both_veth_ends() {
    let host = HostNs::new("br");
    let mut conf = network_conf::tether_bridge(&host, V, "10.46.0.0/24");
    conf["mtu"] = json!(1400);
    let c = host.container("c1");
    add(&host, &c, &conf);
    assert_eq!(c.mtu("eth0"), 1400);
    assert_eq!(host.mtu(&host_veths(&host)[0]), 1400);
}

#[test]
fn promisc_mode_sets_the_bridge_promiscuous() {
    let host = HostNs::new("br");
    let mut conf = network_conf::tether_bridge(&host, V, "10.47.0.0/24");
    conf["promiscMode"] = json!(true);
    add(&host, &host.container("c1"), &conf);
    let bridge = host.link("tt0").unwrap();
    assert!(
        bridge["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "PROMISC"),
        "{bridge}"
    );
}

#[test]
fn hairpin_mode_is_set_on_the_host_port() {
    // The reference refuses hairpinMode with promiscMode, so each gets its own network.
    let host = HostNs::new("br");
    let mut conf = network_conf::tether_bridge(&host, V, "10.55.0.0/24");
    conf["hairpinMode"] = json!(true);
    add(&host, &host.container("c1"), &conf);
    let veth = &host_veths(&host)[0];
    let detail = host.ip_json(&["-d", "link", "show", "dev", veth]);
    assert_eq!(
        detail[0]["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{detail}"
    );
}

#[test]
fn check_fails_after_the_container_address_is_deleted() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.48.0.0/24");
    let c = host.container("c1");
    let r = add(&host, &c, &conf);
    check(&host, &c, &conf, &r).assert_ok();
    let addr = cni_result::addresses(&r)[0].clone();
    c.ip(&["addr", "del", &addr, "dev", "eth0"]);
    let out = check(&host, &c, &conf, &r);
    assert!(!out.success(), "CHECK passed without {addr}");
    assert!(
        out.error_code().is_some(),
        "CHECK failure is a CNI error: {}",
        out.stdout
    );
}

#[test]
fn check_fails_after_the_default_route_is_deleted() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.49.0.0/24");
    let c = host.container("c1");
    let r = add(&host, &c, &conf);
    check(&host, &c, &conf, &r).assert_ok();
    c.ip(&["route", "del", "default"]);
    let out = check(&host, &c, &conf, &r);
    assert!(!out.success(), "CHECK passed without the default route");
    assert!(
        out.error_code().is_some(),
        "CHECK failure is a CNI error: {}",
        out.stdout
    );
}

/// The DEL's veth delete runs in the plugin binary started again as its own helper (a static build) or in a
/// fork: the helper protocol is argv naming the link, the link's index on stdout, exit 0 once deleted.
#[test]
fn the_plugin_run_as_its_reaper_helper_deletes_the_link_and_reports_its_index() {
    let host = HostNs::new("reap");
    host.ip(&["link", "add", "rp0", "type", "veth", "peer", "name", "rp1"]);
    let index = host.link("rp0").expect("rp0 was made")["ifindex"]
        .as_u64()
        .unwrap();
    let bridge = harness::binaries::tether_bridge();
    let out = host.exec(&[bridge.to_str().unwrap(), "--tether-reap-link", "rp0"]);
    assert!(out.status.success(), "helper failed: {out:?}");
    assert_eq!(
        out.stdout,
        (index as u32).to_ne_bytes(),
        "the index it reported"
    );
    assert!(
        !host.has_link("rp0") && !host.has_link("rp1"),
        "both ends are gone"
    );

    // A link that is not there: index 0, and success (DEL of something already gone).
    let out = host.exec(&[bridge.to_str().unwrap(), "--tether-reap-link", "rp0"]);
    assert!(out.status.success(), "helper failed: {out:?}");
    assert_eq!(out.stdout, 0u32.to_ne_bytes());
}

#[test]
fn del_succeeds_twice() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.50.0.0/24");
    let c = host.container("c1");
    add(&host, &c, &conf);
    del(&host, &c, &conf);
    del(&host, &c, &conf);
    assert!(host_veths(&host).is_empty());
    assert!(store::is_empty(&host.data_dir(), "net1"));
}

#[test]
fn del_succeeds_after_the_netns_is_deleted_and_frees_everything() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.51.0.0/24");
    let c = host.container("c1");
    let ip = cni_result::ip(&add(&host, &c, &conf), "4");
    host.delete_container(&c);
    del(&host, &c, &conf);
    assert!(host_veths(&host).is_empty());
    assert!(store::is_empty(&host.data_dir(), "net1"));
    assert!(
        !nft::has_element(&host, &ip),
        "{:?}",
        nft::set_elements(&host)
    );
    del(&host, &c, &conf);
}

#[test]
fn ip_masq_lets_a_container_reach_the_outside() {
    let host = HostNs::new("br");
    let outside = host.outside();
    let mut conf = network_conf::tether_bridge(&host, V, "10.52.0.0/24");
    conf["ipMasq"] = json!(true);
    let c = host.container("c1");
    add(&host, &c, &conf);
    assert!(
        c.ping_retry(outside.addr, 3),
        "no reply from {} with ipMasq",
        outside.addr
    );
    tcp::exchange(&outside.ns, outside.addr, 8080, &c).expect("tcp to the outside");
}

#[test]
fn without_ip_masq_the_outside_cannot_answer() {
    let host = HostNs::new("br");
    let outside = host.outside();
    let mut conf = network_conf::tether_bridge(&host, V, "10.53.0.0/24");
    conf["ipMasq"] = json!(false);
    let c = host.container("c1");
    add(&host, &c, &conf);
    assert!(c.ping_retry("10.53.0.1", 2), "the container itself is up");
    assert!(
        !c.ping_retry(outside.addr, 2),
        "reply without masquerade: outside must not route back"
    );
}

#[test]
fn status_succeeds_and_gc_frees_leases_of_vanished_containers() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.54.0.0/24");
    host.tether_bridge()
        .cmd("STATUS")
        .conf(&conf)
        .run()
        .assert_ok();
    let keep = cni_result::ip(&add(&host, &host.container("c1"), &conf), "4");
    add(&host, &host.container("c2"), &conf);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    host.tether_bridge().cmd("GC").conf(&gc).run().assert_ok();
    let leases: Vec<String> = store::leases(&host.data_dir(), "net1")
        .into_iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(leases, vec![keep]);
}

/// Entries of the `bridge tether` table's macspoofchk sets, as nft prints them.
fn spoofchk_elements(host: &HostNs) -> String {
    let out = host.exec(&["nft", "list", "table", "bridge", "tether"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn macspoofchk_drops_frames_from_a_changed_mac_and_del_removes_its_entry() {
    let host = HostNs::new("br");
    let mut conf = network_conf::tether_bridge(&host, V, "10.56.0.0/24");
    conf["macspoofchk"] = json!(true);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let r1 = add(&host, &c1, &conf);
    let ip2 = cni_result::ip(&add(&host, &c2, &conf), "4");
    let mac1 = c1.mac("eth0");
    assert_eq!(r1["interfaces"][2]["mac"], json!(mac1));
    assert!(c1.ping_retry(&ip2, 3), "c1 -> {ip2} with its own MAC");
    assert!(
        spoofchk_elements(&host).contains(&mac1),
        "{}",
        spoofchk_elements(&host)
    );

    c1.ip(&["link", "set", "eth0", "address", "02:00:00:00:00:99"]);
    c1.ip(&["neigh", "flush", "dev", "eth0"]);
    assert!(
        !c1.ping_retry(&ip2, 2),
        "a frame from a spoofed MAC reached c2"
    );

    c1.ip(&["link", "set", "eth0", "address", &mac1]);
    assert!(
        c1.ping_retry(&ip2, 3),
        "c1 -> {ip2} after restoring its MAC"
    );

    // CHECK sees the entry; DEL removes exactly it.
    check(&host, &c1, &conf, &r1).assert_ok();
    del(&host, &c1, &conf);
    assert!(
        !spoofchk_elements(&host).contains(&mac1),
        "{}",
        spoofchk_elements(&host)
    );
}

#[test]
fn containers_on_two_tether_networks_cannot_reach_each_other() {
    let host = HostNs::new("br");
    let a = network_conf::tether_bridge(&host, V, "10.57.0.0/24");
    let mut b = network_conf::tether_bridge(&host, V, "10.58.0.0/24");
    b["name"] = json!("net2");
    b["bridge"] = json!("tt1");
    let (a1, a2, b1) = (
        host.container("a1"),
        host.container("a2"),
        host.container("b1"),
    );
    add(&host, &a1, &a);
    let ip_a2 = cni_result::ip(&add(&host, &a2, &a), "4");
    let ip_b1 = cni_result::ip(&add(&host, &b1, &b), "4");
    assert!(a1.ping_retry(&ip_a2, 3), "same network: a1 -> {ip_a2}");
    assert!(b1.ping_retry("10.58.0.1", 3), "b1 reaches its own gateway");
    assert!(!a1.ping_retry(&ip_b1, 2), "net1 reached net2 ({ip_b1})");
    assert!(
        tcp::exchange(&b1, &ip_b1, 8080, &a1).is_err(),
        "tcp across networks must fail"
    );
}

#[test]
fn the_outside_cannot_reach_a_container_address_directly() {
    let host = HostNs::new("br");
    let outside = host.outside();
    let mut conf = network_conf::tether_bridge(&host, V, "10.59.0.0/24");
    conf["ipMasq"] = json!(true);
    let c = host.container("c1");
    let ip = cni_result::ip(&add(&host, &c, &conf), "4");
    // Give the outside a route to the containers through the host: only the firewall stands in the way.
    outside
        .ns
        .ip(&["route", "add", "10.59.0.0/24", "via", outside.host_addr]);
    assert!(c.ping_retry(outside.addr, 3), "egress works");
    assert!(
        !outside.ns.ping_retry(&ip, 2),
        "unpublished ingress to {ip} was let in"
    );
}

#[test]
fn under_a_forward_drop_policy_one_rule_on_tethers_device_group_lets_every_network_through() {
    let host = HostNs::new("br");
    let outside = host.outside();
    docker_forward_drop::leave_forward_drop(&host);
    let mut a = network_conf::tether_bridge(&host, V, "10.61.0.0/24");
    a["ipMasq"] = json!(true);
    let mut b = network_conf::tether_bridge(&host, V, "10.62.0.0/24");
    b["name"] = json!("net2");
    b["bridge"] = json!("tt1");
    b["ipMasq"] = json!(true);
    let (a1, a2, b1) = (
        host.container("a1"),
        host.container("a2"),
        host.container("b1"),
    );
    add(&host, &a1, &a);
    let ip_a2 = cni_result::ip(&add(&host, &a2, &a), "4");
    let ip_b1 = cni_result::ip(&add(&host, &b1, &b), "4");
    for bridge in ["tt0", "tt1"] {
        assert_eq!(
            host.link(bridge).unwrap()["group"],
            json!("7447"),
            "{bridge} is in tether's device group"
        );
    }
    assert!(
        !a1.ping_retry(outside.addr, 2),
        "the DROP policy should stop egress until the host lets tether through"
    );

    docker_forward_drop::accept_tether_device_group(&host);
    assert!(a1.ping_retry(outside.addr, 3), "egress with the rule");
    tcp::exchange(&outside.ns, outside.addr, 8080, &a1).expect("tcp to the outside");
    assert!(b1.ping_retry(outside.addr, 3), "the second network too");
    assert!(a1.ping_retry(&ip_a2, 3), "neighbours on one network");
    // tether's own drops are final whatever the other table accepts.
    assert!(!a1.ping_retry(&ip_b1, 2), "net1 reached net2 ({ip_b1})");
    outside
        .ns
        .ip(&["route", "add", "10.61.0.0/24", "via", outside.host_addr]);
    assert!(
        !outside.ns.ping_retry(&ip_a2, 2),
        "unpublished ingress to {ip_a2} was let in"
    );
}

#[test]
fn icc_false_keeps_neighbours_apart_but_not_from_the_gateway() {
    let host = HostNs::new("br");
    let mut conf = network_conf::tether_bridge(&host, V, "10.67.0.0/24");
    conf["icc"] = json!(false);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    add(&host, &c1, &conf);
    let ip2 = cni_result::ip(&add(&host, &c2, &conf), "4");
    assert!(c1.ping_retry("10.67.0.1", 3), "the gateway stays reachable");
    assert!(!c1.ping_retry(&ip2, 2), "icc=false let c1 reach {ip2}");
}

#[test]
fn host_ports_carry_no_ipv6_of_their_own_and_bridged_ipv6_still_flows() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge_ranges(&host, V, &["10.45.0.0/24", "fd00:45::/64"]);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    add(&host, &c1, &conf);
    let r2 = add(&host, &c2, &conf);
    for port in host_veths(&host) {
        assert_eq!(
            host.sysctl(&format!("net.ipv6.conf.{port}.disable_ipv6")),
            "1",
            "{port}"
        );
        assert!(host.addresses(&port).is_empty(), "{port} has addresses");
        assert_eq!(host.master(&port).as_deref(), Some("tt0"));
        assert!(
            host.link(&port).unwrap()["flags"]
                .as_array()
                .unwrap()
                .contains(&json!("UP")),
            "{port} is up"
        );
    }
    // The host's IPv6 routes do not grow with its ports (only the bridge's own).
    let per_port_routes: Vec<String> = host
        .ip(&["-6", "route", "show", "table", "all"])
        .lines()
        .filter(|l| l.contains(" dev tv"))
        .map(str::to_owned)
        .collect();
    assert!(per_port_routes.is_empty(), "{per_port_routes:?}");
    assert!(
        c1.ping(&cni_result::ip(&r2, "6")),
        "ping6 across the bridge"
    );
}

/// Packets `ifname` in `c` has sent, from the kernel's counters.
fn tx_packets(c: &NetNs, ifname: &str) -> u64 {
    let link = c.ip_json(&["-s", "link", "show", "dev", ifname]);
    link[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no tx counter for {ifname}: {link}"))
}

#[test]
fn an_ipv4_only_container_interface_has_no_ipv6_and_sends_nothing_by_itself() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.47.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    add(&host, &c1, &conf);
    let ip2 = cni_result::ip(&add(&host, &c2, &conf), "4");
    // Long enough for what a fresh IPv6 interface sends on its own (MLD reports, the link-local address's
    // DAD probe, a router solicitation: each within 1 s of coming up), which the bridge would flood to every
    // other container of the network.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        c2.addresses("eth0"),
        vec![format!("{ip2}/24")],
        "no link-local"
    );
    assert_eq!(
        tx_packets(&c2, "eth0"),
        0,
        "c2 sent frames nobody asked for"
    );
    assert!(c2.ping_retry("10.47.0.1", 2), "IPv4 still flows");
}

#[test]
fn a_dual_stack_container_interface_keeps_its_link_local_address() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge_ranges(&host, V, &["10.48.0.0/24", "fd00:48::/64"]);
    let c1 = host.container("c1");
    add(&host, &c1, &conf);
    let addrs = c1.addresses("eth0");
    assert!(addrs.iter().any(|a| a.starts_with("fe80:")), "{addrs:?}");
}

fn mcast_snooping(host: &HostNs, bridge: &str) -> u64 {
    let link = host.ip_json(&["-d", "link", "show", "dev", bridge]);
    link[0]["linkinfo"]["info_data"]["mcast_snooping"]
        .as_u64()
        .unwrap_or_else(|| panic!("no mcast_snooping on {bridge}: {link}"))
}

#[test]
fn a_bridge_tether_creates_has_multicast_snooping_off_and_a_found_one_keeps_its_setting() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.49.0.0/24");
    add(&host, &host.container("c1"), &conf);
    assert_eq!(mcast_snooping(&host, "tt0"), 0);

    // An operator who runs a querier turns it back on; later ADDs leave it so.
    host.ip(&[
        "link",
        "set",
        "tt0",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
    ]);
    let c2 = host.container("c2");
    let ip2 = cni_result::ip(&add(&host, &c2, &conf), "4");
    assert_eq!(mcast_snooping(&host, "tt0"), 1);
    assert!(c2.ping_retry("10.49.0.1", 2), "{ip2} reaches its gateway");
}

#[test]
fn add_replaces_a_host_veth_left_by_a_crashed_add_of_the_same_container() {
    let host = HostNs::new("br");
    let conf = network_conf::tether_bridge(&host, V, "10.46.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let r1 = add(&host, &c1, &conf);
    let port = host_veths(&host).pop().expect("host veth of c1");
    // What a crash after the veth create leaves: the pair exists, but its peer sits in another namespace
    // (so only the host name collides), with nothing recorded.
    host.ip(&["link", "del", &port]);
    host.ip(&[
        "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &c2.name,
    ]);
    let again = add(&host, &c1, &conf);
    assert_eq!(
        cni_result::ip(&again, "4"),
        cni_result::ip(&r1, "4"),
        "same lease"
    );
    assert_eq!(host.master(&port).as_deref(), Some("tt0"));
    assert!(!c2.has_link("eth0"), "the leftover pair went away");
}

#[test]
fn an_add_to_a_full_bridge_says_so_and_leaves_nothing_behind() {
    // BR_MAX_PORTS: the kernel gives a bridge 1023 ports. Fill the network's bridge with veths of
    // the test's own, then ADD one more container.
    let host = HostNs::new("bfull");
    let conf = network_conf::tether_bridge(&host, V, "10.46.0.0/16");
    let c1 = host.container("c1");
    add(&host, &c1, &conf);
    let batch: String = (0..1022)
        .map(|i| format!("link add fa{i} master tt0 type veth peer name fb{i}\n"))
        .collect();
    host.ns.ip_batch(&batch);
    let c2 = host.container("c2");
    let out = host
        .tether_bridge()
        .cmd("ADD")
        .container(&c2)
        .conf(&conf)
        .run();
    assert!(!out.success(), "ADD to a full bridge succeeded");
    assert!(out.error_code().is_some(), "{}", out.stdout);
    assert!(
        out.stdout.contains("1023 ports") && out.stdout.contains("another network"),
        "the error says what happened and what to do: {}",
        out.stdout
    );
    // Rolled back: no veth of c2 and no lease for it.
    assert_eq!(host_veths(&host).len(), 1, "only c1's veth stays");
    let leases = store::leases(&host.data_dir(), conf["name"].as_str().unwrap());
    assert_eq!(leases.len(), 1, "only c1's lease stays: {leases:?}");
}
