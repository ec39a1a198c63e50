//! The firewall (`tether::firewall::Firewall`) against the real kernel: each test runs it inside
//! namespaces the harness made, passes real packets where it says so, and never touches the host's
//! ruleset.

#[path = "harness/mod.rs"]
mod harness;

#[path = "firewall/isolation.rs"]
mod isolation;
#[path = "firewall/ports.rs"]
mod ports;
#[path = "firewall/spoofchk.rs"]
mod spoofchk;
#[path = "firewall/traffic.rs"]
mod traffic;

use std::net::IpAddr;
use std::process::Command;

use harness::HostNs;
use tether::firewall::{
    as_nft_text, Firewall, FirewallError, NetworkId, NetworkRules, PortMapping, PortmapOptions,
    Protocol,
};

/// The elements of one set of table `inet tether`, as `nft -j` prints them.
fn set_json(ns: &harness::NetNs, set: &str) -> String {
    ns.nft_ok(&["-j", "list", "set", "inet", "tether", set])
}
fn rules(name: &str, bridge: &str, masquerade: bool) -> NetworkRules {
    NetworkRules {
        name: name.into(),
        bridge: bridge.into(),
        masquerade,
        isolation: true,
    }
}

fn addrs(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn installing_a_network_twice_leaves_one_copy_of_everything() {
    let ns = HostNs::new("fw");
    let net = rules("web.prod-1", "tbr0", true);
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        assert!(!fw.network_installed("web.prod-1").unwrap());
        fw.ensure_network(&net).unwrap();
        assert!(fw.network_installed("web.prod-1").unwrap());
    });
    let first = ns.nft_ok(&["list", "table", "inet", "tether"]);
    // Force the slow path again too: a second full install must not duplicate anything.
    let id = NetworkId::of("web.prod-1");
    ns.run_inside(|| {
        let script = as_nft_text::network(&net).unwrap();
        assert!(nft_script(&script), "nft -f refused:\n{script}");
        Firewall::open().unwrap().ensure_network(&net).unwrap();
    });
    let second = ns.nft_ok(&["list", "table", "inet", "tether"]);
    assert_eq!(first, second);
    assert_eq!(second.matches("iifname vmap @fwd_in").count(), 1);
    assert_eq!(second.matches("masquerade").count(), 2);
    assert!(second.contains(&format!("chain {}_fwd", id)));
    assert!(second.contains("comment \"tether bridge=tbr0 masq=1 iso=1 nat=iif net=web.prod-1\""));
}

/// The netlink batches make what nft makes of the text they render, to the byte of `nft list ruleset`; and
/// re-applying them over a ruleset nft made (an upgrade from a tether that spawned nft) is accepted.
#[test]
fn netlink_ruleset_lists_exactly_like_the_nft_script_it_renders() {
    let (ours, by_nft) = (HostNs::new("fwn"), HostNs::new("fwt"));
    let net = rules("web.prod-1", "tbr0", true);
    let opts = PortmapOptions::default();
    let mac = [2, 0, 0, 0, 0, 2];
    ours.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&net).unwrap();
        fw.ensure_portmap(&opts).unwrap();
        fw.add_spoofchk("tv1", mac).unwrap();
        fw.add_container("web.prod-1", &addrs(&["10.9.0.2", "fd09::2"]))
            .unwrap();
    });
    by_nft.run_inside(|| {
        for script in [
            as_nft_text::network(&net).unwrap(),
            as_nft_text::published_ports(&opts),
            as_nft_text::spoofchk(),
        ] {
            assert!(nft_script(&script), "nft -f refused:\n{script}");
        }
        let fw = Firewall::open().unwrap();
        fw.add_spoofchk("tv1", mac).unwrap();
        fw.add_container("web.prod-1", &addrs(&["10.9.0.2", "fd09::2"]))
            .unwrap();
    });
    let listing = ours.nft_ok(&["list", "ruleset"]);
    assert_eq!(listing, by_nft.nft_ok(&["list", "ruleset"]));
    by_nft.run_inside(|| {
        Firewall::open()
            .unwrap()
            .reapply_installs(&net, &opts)
            .unwrap();
    });
    assert_eq!(listing, by_nft.nft_ok(&["list", "ruleset"]));
}

#[test]
fn container_elements_are_added_checked_and_removed() {
    let ns = HostNs::new("fw");
    let id = NetworkId::of("n1");
    let container = addrs(&["10.88.0.2", "fd00:88::2"]);
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("n1", "tbr1", true)).unwrap();
        assert!(!fw.container_present("n1", &container).unwrap());
        fw.add_container("n1", &container).unwrap();
        assert!(fw.container_present("n1", &container).unwrap());
    });
    assert!(set_json(&ns, &id.ipv4_set()).contains("\"10.88.0.2\""));
    assert!(set_json(&ns, &id.ipv6_set()).contains("\"fd00:88::2\""));
    // Each container element carries its own counter (read back by `tether inspect`).
    let c4 = ns.nft_ok(&["list", "set", "inet", "tether", &id.ipv4_set()]);
    assert!(c4.contains("10.88.0.2 counter packets 0 bytes 0"), "{c4}");
    // NAT is dispatched by the bridge: the container put no jump in a map (a jump element makes the
    // kernel validate the whole table at every ADD's commit).
    let nat4 = ns.nft_ok(&["list", "map", "inet", "tether", "nat4"]);
    assert!(!nat4.contains("10.88.0.2"), "{nat4}");
    let nat_in = ns.nft_ok(&["list", "map", "inet", "tether", "nat_in"]);
    assert!(
        nat_in.contains(&format!("\"tbr1\" : jump {id}_nat")),
        "{nat_in}"
    );

    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.remove_container("n1", &container).unwrap();
        assert!(!fw.container_present("n1", &container).unwrap());
        // Removing it again, or removing an address never added, is not an error.
        fw.remove_container("n1", &container).unwrap();
        fw.remove_container("n1", &addrs(&["10.88.0.99"])).unwrap();
    });
    assert!(!set_json(&ns, &id.ipv4_set()).contains("10.88.0.2"));
    assert!(!ns
        .nft_ok(&["list", "map", "inet", "tether", "nat4"])
        .contains("10.88.0.2"));
}

/// A network and a container installed by a tether before NAT was dispatched by the bridge (per-container
/// `nat4` jumps, no `nat_in` element, no `nat=iif` in the comment): the next ensure installs the network
/// again with its `nat_in` element, the old container's jump stays until its DEL takes it, and the network
/// still tears down.
#[test]
fn a_network_from_before_nat_by_bridge_is_upgraded_and_its_old_containers_removed_cleanly() {
    let ns = HostNs::new("fwu");
    let id = NetworkId::of("old");
    let net = rules("old", "tbr9", true);
    let current = as_nft_text::network(&net).unwrap();
    let before: String = current
        .lines()
        .filter(|l| !l.contains("nat_in"))
        .map(|l| l.replace(" nat=iif", "") + "\n")
        .collect::<String>()
        + &format!(
            "add element inet tether {}_c4 {{ 10.9.9.2 }}\nadd element inet tether nat4 {{ 10.9.9.2 : jump {id}_nat }}\n",
            id
        );
    ns.run_inside(|| {
        assert!(nft_script(&before), "nft -f refused:\n{before}");
        let fw = Firewall::open().unwrap();
        fw.add_container("old", &addrs(&["10.9.9.3"])).unwrap();
    });
    let old_table = ns.nft_ok(&["list", "table", "inet", "tether"]);
    assert!(!old_table.contains("nat=iif"), "{old_table}");

    ns.run_inside(|| Firewall::open().unwrap().ensure_network(&net).unwrap());
    let table = ns.nft_ok(&["list", "table", "inet", "tether"]);
    assert!(table.contains("nat=iif"), "{table}");
    assert!(table.contains("iifname vmap @nat_in"), "{table}");
    assert!(
        table.contains(&format!("\"tbr9\" : jump {id}_nat")),
        "{table}"
    );
    assert!(
        table.contains("10.9.9.2 : jump"),
        "the old container's jump stays: {table}"
    );

    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.remove_container("old", &addrs(&["10.9.9.2"])).unwrap();
    });
    let nat4 = ns.nft_ok(&["list", "map", "inet", "tether", "nat4"]);
    assert!(!nat4.contains("10.9.9.2"), "DEL takes the old jump: {nat4}");

    ns.run_inside(|| Firewall::open().unwrap().remove_network("old").unwrap());
    let (exists, listing) = ns.nft(&["list", "table", "inet", "tether"]);
    assert!(!exists, "{listing}");
}

#[test]
fn adding_a_container_to_a_network_not_installed_says_so() {
    let ns = HostNs::new("fw");
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        let err = fw
            .add_container("ghost", &addrs(&["10.0.0.2"]))
            .unwrap_err();
        assert!(
            matches!(err, FirewallError::NetworkNotInstalled { .. }),
            "{err}"
        );
        // Removing from a network that is not there is fine (DEL of something gone).
        fw.remove_container("ghost", &addrs(&["10.0.0.2"])).unwrap();
        fw.remove_network("ghost").unwrap();
    });
}

#[test]
fn removing_the_last_network_leaves_no_chain_set_or_table() {
    let ns = HostNs::new("fw");
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("keep", "tbr2", true)).unwrap();
        fw.ensure_network(&rules("drop", "tbr3", true)).unwrap();
        fw.add_container("keep", &addrs(&["10.1.0.2"])).unwrap();
        // A container never removed must not block the teardown.
        fw.add_container("drop", &addrs(&["10.2.0.2", "fd00:2::2"]))
            .unwrap();
        fw.remove_network("drop").unwrap();
        fw.remove_network("drop").unwrap();
        assert!(!fw.network_installed("drop").unwrap());
        assert!(fw.network_installed("keep").unwrap());
    });
    let table = ns.nft_ok(&["list", "table", "inet", "tether"]);
    let drop_id = NetworkId::of("drop").to_string();
    assert!(!table.contains(&drop_id), "{table}");
    assert!(!table.contains("tbr3"), "{table}");
    assert!(!table.contains("10.2.0.2"), "{table}");
    assert!(table.contains("10.1.0.2"), "{table}");

    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.remove_network("keep").unwrap();
    });
    let (exists, _) = ns.nft(&["list", "table", "inet", "tether"]);
    assert!(
        !exists,
        "table inet tether should be gone with its last network"
    );
}

#[test]
fn toggling_masquerade_reinstalls_and_keeps_containers() {
    let ns = HostNs::new("fw");
    let container = addrs(&["10.3.0.2"]);
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("toggle", "tbr4", false)).unwrap();
        fw.add_container("toggle", &container).unwrap();
    });
    assert!(!ns
        .nft_ok(&["list", "table", "inet", "tether"])
        .contains("masquerade"));
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("toggle", "tbr5", true)).unwrap();
        assert!(fw.container_present("toggle", &container).unwrap());
    });
    let table = ns.nft_ok(&["list", "table", "inet", "tether"]);
    assert!(table.contains("oifname != \"tbr5\" masquerade"), "{table}");
    assert!(table.contains("masq=1"), "{table}");
    assert!(!table.contains("tbr4"), "{table}");
}

#[test]
fn twenty_threads_adding_at_once_lose_no_element() {
    let ns = HostNs::new("fw");
    let id = NetworkId::of("busy");
    std::thread::scope(|scope| {
        for i in 0..20u8 {
            let ns = &ns;
            scope.spawn(move || {
                ns.run_inside(|| {
                    let fw = Firewall::open().unwrap();
                    // Racing first installs must all succeed too.
                    fw.ensure_network(&rules("busy", "tbr6", true)).unwrap();
                    let addr: IpAddr = format!("10.6.0.{}", i + 2).parse().unwrap();
                    fw.add_container("busy", &[addr]).unwrap();
                })
            });
        }
    });
    let set = set_json(&ns, &id.ipv4_set());
    for i in 0..20 {
        assert!(
            set.contains(&format!("\"10.6.0.{}\"", i + 2)),
            "missing 10.6.0.{}",
            i + 2
        );
    }
    let table = ns.nft_ok(&["list", "table", "inet", "tether"]);
    assert_eq!(table.matches("iifname vmap @fwd_in").count(), 1);
}

#[test]
fn a_foreign_table_is_left_alone() {
    let ns = HostNs::new("fw");
    let (ok, _) = ns.nft(&["add table ip other; add chain ip other c { type filter hook forward priority 0; policy accept; }; add rule ip other c tcp dport 22 counter accept; \
         add table bridge other; add chain bridge other p { type filter hook prerouting priority 0; policy accept; }; add rule bridge other p ether saddr 02:00:00:00:00:01 counter accept"]);
    assert!(ok);
    let before = (
        ns.nft_ok(&["list", "table", "ip", "other"]),
        ns.nft_ok(&["list", "table", "bridge", "other"]),
    );
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("mine", "tbr7", true)).unwrap();
        fw.add_container("mine", &addrs(&["10.7.0.2"])).unwrap();
        fw.add_spoofchk("tv7", [2, 0, 0, 0, 0, 7]).unwrap();
        fw.ensure_portmap(&PortmapOptions::default()).unwrap();
        let ports = [PortMapping {
            host_ip: None,
            host_port: 8080,
            container_ip: "10.7.0.2".parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }];
        fw.add_ports(&ports).unwrap();
        fw.remove_ports(&ports).unwrap();
        fw.remove_spoofchk("tv7", [2, 0, 0, 0, 0, 7]).unwrap();
        fw.remove_container("mine", &addrs(&["10.7.0.2"])).unwrap();
        fw.remove_network("mine").unwrap();
    });
    let after = (
        ns.nft_ok(&["list", "table", "ip", "other"]),
        ns.nft_ok(&["list", "table", "bridge", "other"]),
    );
    assert_eq!(after, before);
}

/// Runs `sh -c script` and reports whether it succeeded.
/// Applies an nft script with nft itself, in the calling thread's namespace: what tether's netlink
/// batches must be equivalent to.
fn nft_script(script: &str) -> bool {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

fn shell(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("run sh")
        .success()
}

/// A ping script that must get through: three tries, because a fresh port's carrier (the kernel's
/// linkwatch may take up to a second under load) and ARP can eat the first echo. Pings that must be
/// dropped stay single: more tries could only make them fail.
fn reaches(ping: &str) -> bool {
    (0..3).any(|_| shell(ping))
}

#[test]
fn container_traffic_leaving_the_network_is_masqueraded() {
    // Three namespaces: `host` (bridge + firewall), `ctr` (the container) and `out` (a peer
    // that has no route back to the container subnet, so only masqueraded pings come back).
    let host = HostNs::new("fw");
    let ctr = host.container("ctr");
    let out = host.container("out");
    let (h, c, o) = (&host.name, &ctr.name, &out.name);
    assert!(shell(&format!(
        "set -e
         ip -n {h} link add tbr9 type bridge
         ip -n {h} addr add 10.9.0.1/24 dev tbr9
         ip -n {h} link set tbr9 up
         ip -n {h} link add tvc9 type veth peer name eth0 netns {c}
         ip -n {h} link set tvc9 master tbr9 up
         ip -n {c} addr add 10.9.0.2/24 dev eth0
         ip -n {c} link set eth0 up
         ip -n {c} link set lo up
         ip -n {c} route add default via 10.9.0.1
         ip -n {h} link add tvo9 type veth peer name eth0 netns {o}
         ip -n {h} addr add 192.0.2.1/24 dev tvo9
         ip -n {h} link set tvo9 up
         ip -n {o} addr add 192.0.2.2/24 dev eth0
         ip -n {o} link set eth0 up
         ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1"
    )));
    let ping = format!("ip netns exec {c} ping -c1 -W1 192.0.2.2 >/dev/null 2>&1");
    let to_gateway = format!("ip netns exec {c} ping -c1 -W1 10.9.0.1 >/dev/null 2>&1");
    // The links are up (so the next refusal is the missing masquerade, not a port still coming up).
    assert!(reaches(&to_gateway), "the container must reach its gateway");
    assert!(!shell(&ping), "ping must fail without masquerade");

    host.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("traffic", "tbr9", true)).unwrap();
        fw.add_container("traffic", &addrs(&["10.9.0.2"])).unwrap();
    });
    assert!(reaches(&ping), "ping through masquerade failed");
}

#[test]
fn a_forward_drop_policy_in_another_table_is_found_and_left_alone() {
    let ns = HostNs::new("fw");
    assert!(ns.nft(&["add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }"]).0);
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_network(&rules("dropped", "tbr10", true)).unwrap();
        let drops = fw.foreign_forward_drops().unwrap();
        assert_eq!(drops.len(), 1, "{drops:?}");
        assert_eq!(
            (
                drops[0].family,
                drops[0].table.as_str(),
                drops[0].chain.as_str()
            ),
            ("ip", "filter", "FORWARD")
        );
        let advice = drops[0].to_string();
        assert!(
            advice.contains("nft insert rule ip filter FORWARD meta iifgroup 7447 accept")
                && advice
                    .contains("iptables -I DOCKER-USER -m devgroup --dst-group 7447 -j ACCEPT"),
            "{advice}"
        );
    });
    assert!(ns
        .nft_ok(&["list", "table", "ip", "filter"])
        .contains("policy drop"));
}
