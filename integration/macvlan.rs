//! tether-macvlan end to end on a simulated physical network (`harness::switch_segment`): the parent is a
//! veth end in the test's host namespace cabled to a switch holding the gateway and one machine.

#[path = "harness/mod.rs"]
mod harness;

use harness::switch_segment::{SwitchSegment as Segment, SEGMENT_GATEWAY, SEGMENT_MACHINE};
use harness::{cni_result, store, HostNs, NetNs, PluginCall, PluginOutput};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PARENT: &str = "mvp0";
const GATEWAY: &str = SEGMENT_GATEWAY;
const MACHINE: &str = SEGMENT_MACHINE;
const NET: &str = "mvnet";
const VLAN_ERROR: &str = "802.1Q VLAN support (kernel module 8021q) is not available on this host";

/// The host namespace with parent `mvp0`, cabled to a switch with the gateway and one machine.
fn segment(label: &str) -> Segment {
    Segment::new(label, PARENT)
}

/// The network: mode `mode` on `mvp0`, tether-ipam on 192.0.2.0/24 with the switch's gateway.
fn conf(seg: &Segment, mode: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": NET,
        "type": "tether-macvlan",
        "master": PARENT,
        "mode": mode,
        "ipam": {
            "type": "tether-ipam",
            "subnet": "192.0.2.0/24",
            "rangeStart": "192.0.2.10",
            "rangeEnd": "192.0.2.99",
            "gateway": GATEWAY,
            "dataDir": seg.host.data_dir_str(),
        }
    })
}

fn macvlan(host: &HostNs) -> PluginCall<'_> {
    host.plugin(env!("CARGO_BIN_EXE_tether-macvlan"))
}

fn run(seg: &Segment, cmd: &str, c: &NetNs, conf: &Value) -> PluginOutput {
    macvlan(&seg.host).cmd(cmd).container(c).conf(conf).run()
}

fn add(seg: &Segment, c: &NetNs, conf: &Value) -> Value {
    run(seg, "ADD", c, conf).result().clone()
}

fn del(seg: &Segment, c: &NetNs, conf: &Value) {
    run(seg, "DEL", c, conf).assert_ok();
}

/// `ip -d link show` of the container's eth0: kind and mode of the macvlan.
fn macvlan_mode(c: &NetNs, ifname: &str) -> Option<String> {
    let link = c
        .try_ip_json(&["-d", "link", "show", "dev", ifname])?
        .as_array()?
        .first()?
        .clone();
    let info = &link["linkinfo"];
    if info["info_kind"] != "macvlan" {
        return None;
    }
    info["info_data"]["mode"].as_str().map(str::to_owned)
}

/// Links of a container other than loopback: after DEL (or a failed ADD) there must be none of ours.
fn links_besides_lo(c: &NetNs) -> Vec<String> {
    c.link_names().into_iter().filter(|n| n != "lo").collect()
}

fn leases(seg: &Segment) -> Vec<String> {
    store::leases(&seg.host.data_dir(), NET)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect()
}

fn attachment_records(seg: &Segment) -> usize {
    std::fs::read_dir(seg.host.state_dir().join("attachments").join(NET))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn bridge_mode_containers_reach_the_gateway_the_machine_and_each_other() {
    let seg = segment("mvb");
    let conf = conf(&seg, "bridge");
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    let r1 = add(&seg, &c1, &conf);
    let r2 = add(&seg, &c2, &conf);

    // The result names the one interface, in the sandbox, with its address and the IPAM gateway.
    assert_eq!(r1["interfaces"][0]["name"], "eth0", "{r1}");
    assert_eq!(r1["interfaces"][0]["sandbox"], c1.path_str(), "{r1}");
    assert_eq!(r1["ips"][0]["interface"], 0, "{r1}");
    assert_eq!(cni_result::gateway(&r1, "4").as_deref(), Some(GATEWAY));
    let (ip1, ip2) = (cni_result::ip(&r1, "4"), cni_result::ip(&r2, "4"));
    assert_ne!(ip1, ip2);
    assert_eq!(c1.global_addresses("eth0"), vec![format!("{ip1}/24")]);
    assert_eq!(macvlan_mode(&c1, "eth0").as_deref(), Some("bridge"));
    assert_eq!(c1.default_gateway("-4").as_deref(), Some(GATEWAY));
    assert_eq!(
        c1.mtu("eth0"),
        seg.host.mtu(PARENT),
        "MTU defaults to the parent's"
    );
    assert_eq!(
        r1["interfaces"][0]["mac"].as_str(),
        Some(c1.mac("eth0").as_str())
    );
    // The address is announced when the link comes up (gratuitous ARP), for neighbours with stale entries.
    assert_eq!(c1.sysctl("net.ipv4.conf.eth0.arp_notify"), "1");
    // An IPv4-only network gives the child no IPv6 at all, as Docker does: no link-local address, and no
    // SLAAC address from the LAN's routers.
    assert_eq!(c1.sysctl("net.ipv6.conf.eth0.disable_ipv6"), "1");
    assert_eq!(c1.addresses("eth0"), vec![format!("{ip1}/24")]);
    // Never visible on the host: no temporary or final name left there.
    assert_eq!(seg.host.link_names(), vec!["lo", PARENT]);

    assert!(c1.ping_retry(GATEWAY, 3), "container reaches the gateway");
    assert!(c1.ping_retry(MACHINE, 3), "container reaches the machine");
    assert!(
        c2.ping_retry(&ip1, 3),
        "bridge mode: containers reach each other"
    );
    assert!(
        seg.machine.ping_retry(&ip2, 3),
        "the machine reaches a container"
    );

    del(&seg, &c1, &conf);
    del(&seg, &c2, &conf);
    assert!(links_besides_lo(&c1).is_empty(), "{:?}", c1.link_names());
    assert!(links_besides_lo(&c2).is_empty(), "{:?}", c2.link_names());
    assert!(leases(&seg).is_empty(), "leases left: {:?}", leases(&seg));
    assert_eq!(attachment_records(&seg), 0);
    // DEL of what is already gone succeeds, and so does DEL after the namespace went away.
    del(&seg, &c1, &conf);
    seg.host.delete_container(&c2);
    del(&seg, &c2, &conf);
}

#[test]
fn dual_stack_containers_get_both_families_and_default_routes_through_both_gateways() {
    let seg = segment("mv6");
    seg.switch
        .ip(&["addr", "add", "2001:db8::1/64", "dev", "br0", "nodad"]);
    seg.machine
        .ip(&["addr", "add", "2001:db8::200/64", "dev", "eth0", "nodad"]);
    let mut conf = conf(&seg, "bridge");
    conf["ipam"] = json!({
        "type": "tether-ipam",
        "ranges": [
            [{"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.10", "rangeEnd": "192.0.2.99", "gateway": GATEWAY}],
            [{"subnet": "2001:db8::/64", "rangeStart": "2001:db8::10", "rangeEnd": "2001:db8::99", "gateway": "2001:db8::1"}]
        ],
        "dataDir": seg.host.data_dir_str(),
    });
    let c1 = seg.host.container("c1");
    let r = add(&seg, &c1, &conf);
    let ip6 = cni_result::ip(&r, "6");
    assert!(c1.global_addresses("eth0").contains(&format!("{ip6}/64")));
    assert_eq!(c1.sysctl("net.ipv6.conf.eth0.disable_ipv6"), "0");
    assert_eq!(c1.sysctl("net.ipv6.conf.eth0.ndisc_notify"), "1");
    assert_eq!(c1.default_gateway("-4").as_deref(), Some(GATEWAY));
    assert_eq!(c1.default_gateway("-6").as_deref(), Some("2001:db8::1"));
    // Duplicate address detection stays on (a real segment): the address is usable within seconds.
    assert!(c1.ping_retry("2001:db8::200", 5), "IPv6 to the machine");
    assert!(c1.ping_retry(MACHINE, 3));
    del(&seg, &c1, &conf);
    assert!(leases(&seg).is_empty());
}

#[test]
fn private_mode_containers_cannot_reach_each_other_but_reach_the_network() {
    let seg = segment("mvp");
    let conf = conf(&seg, "private");
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    let ip1 = cni_result::ip(&add(&seg, &c1, &conf), "4");
    add(&seg, &c2, &conf);
    assert_eq!(macvlan_mode(&c2, "eth0").as_deref(), Some("private"));
    assert!(c2.ping_retry(GATEWAY, 3));
    assert!(c2.ping_retry(MACHINE, 3));
    assert!(
        !c2.ping_retry(&ip1, 2),
        "private mode: siblings must not meet"
    );
    // Unlike vepa, not even a switch that reflects frames (hairpin) brings them together.
    seg.switch
        .exec_ok(&["bridge", "link", "set", "dev", "sw0", "hairpin", "on"]);
    assert!(
        !c2.ping_retry(&ip1, 2),
        "private mode with a hairpin switch port"
    );
    del(&seg, &c1, &conf);
    del(&seg, &c2, &conf);
    assert!(leases(&seg).is_empty());
}

/// VEPA sends every frame to the switch; siblings meet only when the switch reflects frames back out of the
/// port they came in on. A Linux bridge does that only with `hairpin on` for the port: off, the siblings
/// are cut off from each other; on, they talk (through the switch, not inside the host).
#[test]
fn vepa_mode_siblings_meet_only_through_a_hairpin_switch_port() {
    let seg = segment("mvv");
    let conf = conf(&seg, "vepa");
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    let ip1 = cni_result::ip(&add(&seg, &c1, &conf), "4");
    add(&seg, &c2, &conf);
    assert_eq!(macvlan_mode(&c2, "eth0").as_deref(), Some("vepa"));
    assert!(c2.ping_retry(MACHINE, 3));
    assert!(!c2.ping_retry(&ip1, 2), "switch port without hairpin");
    seg.switch
        .exec_ok(&["bridge", "link", "set", "dev", "sw0", "hairpin", "on"]);
    assert!(c2.ping_retry(&ip1, 3), "switch port with hairpin reflects");
    del(&seg, &c1, &conf);
    del(&seg, &c2, &conf);
}

/// Passthru hands the whole parent to one child (it takes the parent's MAC): a second child on the same
/// parent is refused with a message that says why, and leaves neither a link nor a lease.
#[test]
fn passthru_mode_takes_the_parent_for_one_container_only() {
    let seg = segment("mvt");
    let conf = conf(&seg, "passthru");
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    add(&seg, &c1, &conf);
    assert_eq!(macvlan_mode(&c1, "eth0").as_deref(), Some("passthru"));
    assert_eq!(c1.mac("eth0"), seg.host.mac(PARENT));
    assert!(c1.ping_retry(MACHINE, 3));

    let out = run(&seg, "ADD", &c2, &conf);
    let err = out.expect_error(101);
    assert!(
        err["msg"].as_str().unwrap().contains("passthru"),
        "message says why: {err}"
    );
    assert!(links_besides_lo(&c2).is_empty(), "{:?}", c2.link_names());
    assert_eq!(leases(&seg).len(), 1, "the refused ADD gave its lease back");
    del(&seg, &c1, &conf);
    assert!(leases(&seg).is_empty());
}

/// Source mode delivers to the child only frames whose *source* MAC is listed: with the machine's MAC
/// listed the container talks to the machine, but not to the gateway (whose MAC is not listed).
#[test]
fn source_mode_receives_only_from_the_listed_macs() {
    let seg = segment("mvs");
    let mut conf = conf(&seg, "source");
    conf["sourceMacs"] = json!([seg.machine.mac("eth0")]);
    let c1 = seg.host.container("c1");
    add(&seg, &c1, &conf);
    assert_eq!(macvlan_mode(&c1, "eth0").as_deref(), Some("source"));
    assert!(c1.ping_retry(MACHINE, 3), "listed source reaches the child");
    assert!(!c1.ping_retry(GATEWAY, 2), "unlisted source does not");
    del(&seg, &c1, &conf);
    assert!(links_besides_lo(&c1).is_empty());
}

#[test]
fn master_defaults_to_the_default_route_interface() {
    let seg = segment("mvd");
    seg.host
        .ip(&["addr", "add", "192.0.2.250/24", "dev", PARENT]);
    seg.host.ip(&["route", "add", "default", "via", GATEWAY]);
    let mut conf = conf(&seg, "bridge");
    conf.as_object_mut().unwrap().remove("master");
    conf.as_object_mut().unwrap().remove("mode");
    let c1 = seg.host.container("c1");
    add(&seg, &c1, &conf);
    assert_eq!(macvlan_mode(&c1, "eth0").as_deref(), Some("bridge"));
    assert!(c1.ping_retry(MACHINE, 3));
    del(&seg, &c1, &conf);
}

#[test]
fn mtu_and_mac_are_applied_and_an_mtu_above_the_parent_is_refused() {
    let seg = segment("mvm");
    let mut conf = conf(&seg, "bridge");
    conf["mtu"] = json!(1400);
    let c1 = seg.host.container("c1");
    let r = macvlan(&seg.host)
        .cmd("ADD")
        .container(&c1)
        .args("MAC=02:aa:bb:cc:dd:01")
        .conf(&conf)
        .run();
    let r = r.result();
    assert_eq!(c1.mtu("eth0"), 1400);
    assert_eq!(c1.mac("eth0"), "02:aa:bb:cc:dd:01");
    assert_eq!(r["interfaces"][0]["mac"], "02:aa:bb:cc:dd:01");
    del(&seg, &c1, &conf);

    conf["mtu"] = json!(9000);
    let out = run(&seg, "ADD", &c1, &conf);
    let err = out.expect_error(7);
    assert!(
        err["msg"].as_str().unwrap().contains("larger than the MTU"),
        "{err}"
    );
    assert!(links_besides_lo(&c1).is_empty());
    assert!(leases(&seg).is_empty());
}

#[test]
fn failed_adds_leave_no_child_and_no_lease() {
    let seg = segment("mvf");
    let mut conf = conf(&seg, "bridge");
    // One address in the range: the second ADD finds IPAM exhausted.
    conf["ipam"]["rangeEnd"] = json!("192.0.2.10");
    let (c1, c2, c3) = (
        seg.host.container("c1"),
        seg.host.container("c2"),
        seg.host.container("c3"),
    );
    add(&seg, &c1, &conf);
    let out = run(&seg, "ADD", &c2, &conf);
    assert!(!out.success(), "IPAM exhausted must fail: {}", out.stdout);
    assert!(links_besides_lo(&c2).is_empty(), "{:?}", c2.link_names());
    assert_eq!(leases(&seg), vec!["192.0.2.10"]);

    // A static address outside the subnet is refused by IPAM before any link exists.
    let out = macvlan(&seg.host)
        .cmd("ADD")
        .container(&c2)
        .args("IP=10.9.9.9")
        .conf(&conf)
        .run();
    assert!(!out.success());
    assert!(links_besides_lo(&c2).is_empty());

    // A failure after the lease and the child exist: CNI_IFNAME is taken in the container, so the rename
    // fails and both the child and the lease are undone.
    del(&seg, &c1, &conf);
    c3.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let out = run(&seg, "ADD", &c3, &conf);
    let err = out.expect_error(7);
    assert!(
        err["msg"].as_str().unwrap().contains("already exists"),
        "{err}"
    );
    assert_eq!(links_besides_lo(&c3), vec!["eth0", "other0"]);
    assert!(leases(&seg).is_empty(), "lease left: {:?}", leases(&seg));
    assert_eq!(attachment_records(&seg), 0);
}

#[test]
fn status_fails_with_code_50_when_the_parent_is_gone() {
    let seg = segment("mvst");
    let conf = conf(&seg, "bridge");
    let status = || macvlan(&seg.host).cmd("STATUS").conf(&conf).run();
    status().assert_ok();
    seg.host.ip(&["link", "del", PARENT]);
    let out = status();
    let err = out.expect_error(50);
    assert!(err["msg"].as_str().unwrap().contains(PARENT), "{err}");
    let c1 = seg.host.container("c1");
    let out = run(&seg, "ADD", &c1, &conf);
    out.expect_error(7);
    assert!(leases(&seg).is_empty());
}

#[test]
fn check_passes_on_a_healthy_attachment_and_names_what_drifted() {
    let seg = segment("mvc");
    let conf = conf(&seg, "bridge");
    let c1 = seg.host.container("c1");
    let result = add(&seg, &c1, &conf);
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    run(&seg, "CHECK", &c1, &with_prev).assert_ok();

    let mut other_mode = with_prev.clone();
    other_mode["mode"] = json!("private");
    let err = run(&seg, "CHECK", &c1, &other_mode)
        .expect_error(100)
        .clone();
    assert!(
        err["msg"].as_str().unwrap().contains("mode bridge"),
        "{err}"
    );

    let addr = format!("{}/24", cni_result::ip(&result, "4"));
    c1.ip(&["addr", "del", &addr, "dev", "eth0"]);
    let err = run(&seg, "CHECK", &c1, &with_prev)
        .expect_error(100)
        .clone();
    assert!(err["msg"].as_str().unwrap().contains(&addr), "{err}");
    del(&seg, &c1, &conf);
}

#[test]
fn gc_removes_attachments_the_runtime_no_longer_lists() {
    let seg = segment("mvg");
    let conf = conf(&seg, "bridge");
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    add(&seg, &c1, &conf);
    add(&seg, &c2, &conf);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    macvlan(&seg.host).cmd("GC").conf(&gc).run().assert_ok();
    assert_eq!(macvlan_mode(&c1, "eth0").as_deref(), Some("bridge"));
    assert!(links_besides_lo(&c2).is_empty(), "{:?}", c2.link_names());
    assert_eq!(leases(&seg).len(), 1);
    assert_eq!(attachment_records(&seg), 1);
    del(&seg, &c1, &conf);
}

#[test]
fn twenty_concurrent_adds_all_succeed_with_distinct_addresses() {
    const N: usize = 20;
    let seg = segment("mvx");
    let conf = conf(&seg, "bridge");
    let containers: Vec<NetNs> = (0..N)
        .map(|i| seg.host.container(&format!("c{i}")))
        .collect();
    let all = |cmd: &str| -> Vec<PluginOutput> {
        std::thread::scope(|s| {
            let handles: Vec<_> = containers
                .iter()
                .map(|c| s.spawn(|| run(&seg, cmd, c, &conf)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let adds = all("ADD");
    let failed: Vec<&PluginOutput> = adds.iter().filter(|o| !o.success()).collect();
    assert!(
        failed.is_empty(),
        "{} ADDs failed: {:?}",
        failed.len(),
        failed.first()
    );
    let ips: BTreeSet<String> = adds
        .iter()
        .map(|o| cni_result::ip(o.result(), "4"))
        .collect();
    assert_eq!(ips.len(), N, "duplicate addresses");
    for c in &containers {
        assert_eq!(
            macvlan_mode(c, "eth0").as_deref(),
            Some("bridge"),
            "{}",
            c.label
        );
    }
    assert!(containers[N - 1].ping_retry(MACHINE, 3));
    let dels = all("DEL");
    assert!(dels.iter().all(PluginOutput::success));
    assert!(containers.iter().all(|c| links_besides_lo(c).is_empty()));
    assert!(leases(&seg).is_empty());
}

/// The parent lives in the container (a VF moved there, say): the child is made next to it.
#[test]
fn link_in_container_uses_a_parent_inside_the_container() {
    let seg = segment("mvi");
    let c1 = seg.host.container("c1");
    seg.switch.ip(&[
        "link", "add", "swc0", "type", "veth", "peer", "name", "vf0", "netns", &c1.name,
    ]);
    seg.switch.ip(&["link", "set", "swc0", "master", "br0"]);
    seg.switch.ip(&["link", "set", "swc0", "up"]);
    c1.ip(&["link", "set", "vf0", "up"]);
    let mut conf = conf(&seg, "bridge");
    conf["master"] = json!("vf0");
    conf["linkInContainer"] = json!(true);
    add(&seg, &c1, &conf);
    assert_eq!(macvlan_mode(&c1, "eth0").as_deref(), Some("bridge"));
    assert!(c1.ping_retry(MACHINE, 3));
    del(&seg, &c1, &conf);
    assert_eq!(links_besides_lo(&c1), vec!["vf0"], "the parent stays");
}

#[test]
fn tether_macvlan_with_reference_host_local_ipam() {
    let seg = segment("mvh");
    let mut conf = conf(&seg, "bridge");
    conf["cniVersion"] = json!("1.0.0");
    conf["ipam"]["type"] = json!("host-local");
    let c1 = seg.host.container("c1");
    let r = add(&seg, &c1, &conf);
    assert_eq!(cni_result::gateway(&r, "4").as_deref(), Some(GATEWAY));
    assert!(c1.ping_retry(MACHINE, 3));
    assert_eq!(leases(&seg).len(), 1, "host-local wrote its lease");
    del(&seg, &c1, &conf);
    assert!(leases(&seg).is_empty());
    assert!(links_besides_lo(&c1).is_empty());
}

/// This kernel may lack 802.1Q: then a VLAN parent must fail with an error naming the missing feature and
/// leave nothing behind. With 8021q present (Debian's kernel) the sub-interface is made on first use and
/// removed with its last user (the VM test covers traffic).
#[test]
fn vlan_parent_is_created_on_first_use_or_refused_clearly_without_8021q() {
    let seg = segment("mvq");
    let supported = seg
        .host
        .exec(&[
            "ip", "link", "add", "link", PARENT, "name", "probe.9", "type", "vlan", "id", "9",
        ])
        .status
        .success();
    if supported {
        seg.host.ip(&["link", "del", "probe.9"]);
    }
    let vlan_dir = seg.host.state_dir().join("vlan");
    let by_field = {
        let mut c = conf(&seg, "bridge");
        c["vlan"] = json!(10);
        c
    };
    let by_name = {
        let mut c = conf(&seg, "bridge");
        c["master"] = json!(format!("{PARENT}.20"));
        c
    };
    let c1 = seg.host.container("c1");
    for (conf, sub) in [(&by_field, "mvp0.10"), (&by_name, "mvp0.20")] {
        let out = run(&seg, "ADD", &c1, conf);
        if supported {
            out.result();
            assert!(seg.host.has_link(sub), "{sub} created");
            assert!(vlan_dir.join(format!("{sub}.json")).exists());
            del(&seg, &c1, conf);
            assert!(!seg.host.has_link(sub), "{sub} removed with its last user");
        } else {
            eprintln!("this kernel has no 802.1Q: checking the refusal of {sub}");
            let err = out.expect_error(101);
            assert!(err["msg"].as_str().unwrap().contains(VLAN_ERROR), "{err}");
            assert!(!seg.host.has_link(sub));
        }
        assert!(links_besides_lo(&c1).is_empty(), "{:?}", c1.link_names());
        assert!(leases(&seg).is_empty(), "lease left: {:?}", leases(&seg));
        let records = std::fs::read_dir(&vlan_dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(records, 0, "no VLAN record left");
    }
}

/// A dotted parent the user made is used as is and never recorded or deleted by tether (here a veth
/// named like a VLAN sub-interface, since this kernel may lack 802.1Q).
#[test]
fn a_user_made_dotted_parent_is_used_and_left_alone() {
    let seg = segment("mvu");
    seg.host.ip(&[
        "link",
        "add",
        "mvp0.30",
        "type",
        "veth",
        "peer",
        "name",
        "sw30",
        "netns",
        &seg.switch.name,
    ]);
    seg.host.ip(&["link", "set", "mvp0.30", "up"]);
    seg.switch.ip(&["link", "set", "sw30", "master", "br0"]);
    seg.switch.ip(&["link", "set", "sw30", "up"]);
    let mut conf = conf(&seg, "bridge");
    conf["master"] = json!("mvp0.30");
    let c1 = seg.host.container("c1");
    add(&seg, &c1, &conf);
    assert!(c1.ping_retry(MACHINE, 3));
    del(&seg, &c1, &conf);
    assert!(seg.host.has_link("mvp0.30"), "the user's link stays");
    assert!(!seg
        .host
        .state_dir()
        .join("vlan")
        .join("mvp0.30.json")
        .exists());
}

/// The registry of tether-made sub-interfaces follows its users across networks: each network's containers
/// are listed while attached, and the record goes with the last one. (A veth stands in for the VLAN link on
/// kernels without 802.1Q; a link that is not a VLAN is never deleted, so it survives here.)
#[test]
fn a_recorded_vlan_parent_tracks_its_users_across_networks() {
    let seg = segment("mvr");
    seg.host.ip(&[
        "link",
        "add",
        "mvp0.40",
        "type",
        "veth",
        "peer",
        "name",
        "sw40",
        "netns",
        &seg.switch.name,
    ]);
    seg.host.ip(&["link", "set", "mvp0.40", "up"]);
    seg.switch.ip(&["link", "set", "sw40", "master", "br0"]);
    seg.switch.ip(&["link", "set", "sw40", "up"]);
    let record_path = seg.host.state_dir().join("vlan").join("mvp0.40.json");
    std::fs::create_dir_all(record_path.parent().unwrap()).unwrap();
    std::fs::write(
        &record_path,
        r#"{"link": "mvp0.40", "lower": "mvp0", "vlan": 40, "networks": {}}"#,
    )
    .unwrap();
    let record = || -> Option<Value> {
        std::fs::read(&record_path)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    };

    let mut net_a = conf(&seg, "bridge");
    net_a["vlan"] = json!(40);
    let mut net_b = net_a.clone();
    net_b["name"] = json!("other");
    net_b["ipam"]["rangeStart"] = json!("192.0.2.100");
    net_b["ipam"]["rangeEnd"] = json!("192.0.2.120");
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    add(&seg, &c1, &net_a);
    add(&seg, &c2, &net_b);
    assert!(c1.ping_retry(MACHINE, 3));
    let r = record().expect("record kept while in use");
    assert_eq!(r["networks"][NET], json!(["c1/eth0"]), "{r}");
    assert_eq!(r["networks"]["other"], json!(["c2/eth0"]), "{r}");

    // GC of the first network with nothing valid releases its user (DEL would do the same).
    let mut gc = net_a.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    macvlan(&seg.host).cmd("GC").conf(&gc).run().assert_ok();
    assert!(links_besides_lo(&c1).is_empty(), "{:?}", c1.link_names());
    let r = record().expect("network other still uses it");
    assert!(r["networks"].get(NET).is_none(), "{r}");
    del(&seg, &c2, &net_b);
    assert!(record().is_none(), "record removed with the last user");
    assert!(seg.host.has_link("mvp0.40"), "not a VLAN link: left alone");
}

#[test]
fn a_parent_that_is_a_bridge_port_is_refused_with_a_reason() {
    let seg = segment("mvbp");
    seg.host.ip(&["link", "add", "hbr0", "type", "bridge"]);
    seg.host.ip(&["link", "set", PARENT, "master", "hbr0"]);
    let conf = conf(&seg, "bridge");
    let c1 = seg.host.container("c1");
    let out = run(&seg, "ADD", &c1, &conf);
    let err = out.expect_error(101);
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("cannot carry macvlans"),
        "{err}"
    );
    assert!(links_besides_lo(&c1).is_empty());
    assert!(leases(&seg).is_empty());
}

/// The whole config is read before any kernel work: a bad `embeddedDns` is what the ADD answers, even with a
/// parent that does not exist (which the first kernel step would trip on).
#[test]
fn a_bad_embedded_dns_is_refused_before_the_parent_is_looked_up() {
    let seg = segment("mvd");
    let mut conf = conf(&seg, "bridge");
    conf["master"] = json!("nosuch0");
    conf["embeddedDns"] = json!("no");
    let c1 = seg.host.container("c1");
    let out = run(&seg, "ADD", &c1, &conf);
    let err = out.expect_error(7);
    assert!(
        err["msg"].as_str().unwrap().contains("embeddedDns"),
        "{err}"
    );
    assert!(links_besides_lo(&c1).is_empty());
    assert!(leases(&seg).is_empty());
}

/// CNI_NETNS is optional for DEL: the child is found through the namespace the attachment record names.
#[test]
fn del_without_cni_netns_removes_the_child_through_the_record() {
    let seg = segment("mvn");
    let conf = conf(&seg, "bridge");
    let c1 = seg.host.container("c1");
    add(&seg, &c1, &conf);
    macvlan(&seg.host)
        .cmd("DEL")
        .container(&c1)
        .env("CNI_NETNS", None)
        .conf(&conf)
        .run()
        .assert_ok();
    assert!(links_besides_lo(&c1).is_empty(), "{:?}", c1.link_names());
    assert!(leases(&seg).is_empty());
}
