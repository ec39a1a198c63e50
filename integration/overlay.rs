//! tether-overlay across three simulated hosts: three host namespaces whose `ul0` links hang on one bridge
//! in a "fabric" namespace (the underlay, 192.168.77.0/24), each running its own tetherd (own state, run and
//! config) and the plugin, as a runtime on that host would.

#[path = "harness/mod.rs"]
mod harness;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use harness::container_dns_server::{ContainerDnsServer, OWN_ANSWER};
use harness::overlay_cluster::{
    on_both_stores, overlay_conf, overlay_ip, overlay_ips, overlay_mac, wait_until, Cluster, Store,
    Timings, FAILURE_TIMEOUT_MS_FAST,
};

const WRONG_KEY: [u8; 32] = [0x42; 32];

on_both_stores!(
    containers_on_three_hosts_ping_and_connect_over_vxlan_and_del_removes_their_entries_everywhere
);
fn containers_on_three_hosts_ping_and_connect_over_vxlan_and_del_removes_their_entries_everywhere(
    store: Store,
) {
    let cluster = Cluster::on(&store.label("ova"), 3, Timings::FAST, store);
    let conf = overlay_conf("ovl", 100, "10.210.0.0/16");
    let (h1, h2, h3) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    let c1 = h1.ns.container("c1");
    let c2 = h2.ns.container("c2");
    let c3 = h3.ns.container("c3");
    let r1 = h1.add_named(&conf, &c1, "web");
    let r2 = h2.add_named(&conf, &c2, "db");
    let r3 = h3.add_named(&conf, &c3, "cache");
    let (ip1, ip2, ip3) = (overlay_ip(&r1), overlay_ip(&r2), overlay_ip(&r3));
    assert!(
        ip1 != ip2 && ip2 != ip3 && ip1 != ip3,
        "hosts handed out one address twice: {ip1} {ip2} {ip3}"
    );
    assert_eq!(
        c1.mtu("eth0"),
        1450,
        "underlay MTU 1500 minus the VXLAN overhead"
    );

    let before = cluster.vxlan_packets();
    assert!(
        c1.ping_retry(&ip2, 10),
        "c1 on host 1 cannot ping c2 ({ip2}) on host 2"
    );
    assert!(
        c3.ping_retry(&ip1, 10),
        "c3 on host 3 cannot ping c1 ({ip1}) on host 1"
    );
    assert!(
        c2.ping_retry(&ip3, 10),
        "c2 on host 2 cannot ping c3 ({ip3}) on host 3"
    );
    harness::tcp::exchange(&c1, &ip1, 8080, &c2).expect("TCP from c2 to c1 over the overlay");

    // Names resolve across hosts through each host's embedded resolver.
    assert_eq!(
        r1["dns"]["nameservers"][0], "127.0.0.11",
        "the container was not given the resolver"
    );
    wait_until("c1 resolves db on host 2", Duration::from_secs(5), || {
        resolve(&c1, "db") == vec![ip2.clone()]
    });
    wait_until(
        "c3 resolves web.ovl on host 1",
        Duration::from_secs(5),
        || resolve(&c3, "web.ovl") == vec![ip1.clone()],
    );
    assert!(
        cluster.vxlan_packets() > before,
        "no VXLAN (UDP 4789) packet crossed the fabric"
    );

    // Each remote container: one static FDB entry MAC -> its host's VTEP, and no flood entry.
    let fdb1 = h1.fdb("tvx100");
    assert!(
        fdb1.contains(&(overlay_mac(&r2), h2.addr.clone())),
        "host 1 fdb lacks c2: {fdb1:?}"
    );
    assert!(
        fdb1.contains(&(overlay_mac(&r3), h3.addr.clone())),
        "host 1 fdb lacks c3: {fdb1:?}"
    );
    assert!(
        !fdb1.iter().any(|(mac, _)| mac == "00:00:00:00:00:00"),
        "flood entry installed: {fdb1:?}"
    );

    h2.del(&conf, &c2);
    let mac2 = overlay_mac(&r2);
    for h in [h1, h3] {
        wait_until(
            &format!("{} forgets c2", h.addr),
            Duration::from_secs(5),
            || !h.fdb("tvx100").iter().any(|(mac, _)| *mac == mac2),
        );
    }
    assert!(
        !h2.ns.has_link("tvx100"),
        "host 2's last container left but its vxlan device stayed"
    );
    assert!(
        !h2.ns.has_link("tob100"),
        "host 2's last container left but its bridge stayed"
    );
    assert!(c1.ping_retry(&ip3, 5), "c1 lost c3 after c2 left");
    wait_until("c1 stops resolving db", Duration::from_secs(5), || {
        resolve(&c1, "db").is_empty()
    });
}

on_both_stores!(
    ipv6_only_and_dual_stack_networks_ping_across_hosts_resolve_aaaa_and_program_ipv6_neighbours
);
fn ipv6_only_and_dual_stack_networks_ping_across_hosts_resolve_aaaa_and_program_ipv6_neighbours(
    store: Store,
) {
    let cluster = Cluster::on(&store.label("ovm"), 3, Timings::FAST, store);
    let (h1, h2, h3) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);

    // IPv6 only: one address per container, from /122 blocks of the /64, over the IPv4 underlay.
    let six = overlay_conf("ov6", 106, "fd00:106::/64");
    let c1 = h1.ns.container("c1");
    let c2 = h2.ns.container("c2");
    let c3 = h3.ns.container("c3");
    let r1 = h1.add_named(&six, &c1, "web6");
    let r2 = h2.add_named(&six, &c2, "db6");
    let r3 = h3.add_named(&six, &c3, "cache6");
    let (a1, a2, a3) = (overlay_ips(&r1), overlay_ips(&r2), overlay_ips(&r3));
    for a in [&a1, &a2, &a3] {
        assert!(
            a.len() == 1 && a[0].starts_with("fd00:106::"),
            "an IPv6-only network gave {a:?}"
        );
    }
    assert!(
        a1 != a2 && a2 != a3 && a1 != a3,
        "one address twice: {a1:?} {a2:?} {a3:?}"
    );
    assert!(c1.ping_retry(&a2[0], 10), "c1 cannot ping6 c2 ({})", a2[0]);
    assert!(c3.ping_retry(&a1[0], 10), "c3 cannot ping6 c1 ({})", a1[0]);
    assert!(c2.ping_retry(&a3[0], 10), "c2 cannot ping6 c3 ({})", a3[0]);
    harness::tcp::exchange(&c1, &a1[0], 8080, &c2).expect("TCP over IPv6 from c2 to c1");
    wait_until(
        "c1 resolves db6 AAAA on host 2",
        Duration::from_secs(5),
        || resolve6(&c1, "db6") == a2,
    );
    assert!(
        resolve(&c1, "db6").is_empty(),
        "an A record for an IPv6-only container"
    );
    // The remote container's IPv6 address is a static neighbour of the VXLAN device (its proxy answers
    // neighbour solicitations with it), next to the MAC -> VTEP FDB entry.
    let neigh = h1.neighbours("tvx106");
    assert!(
        neigh.contains(&(a2[0].clone(), overlay_mac(&r2))),
        "host 1 has no IPv6 neighbour for c2: {neigh:?}"
    );
    assert!(
        h1.fdb("tvx106")
            .contains(&(overlay_mac(&r2), h2.addr.clone())),
        "host 1 fdb lacks c2"
    );

    // Dual stack: an address of each family, both reachable, A and AAAA both answered across hosts.
    let mut dual = overlay_conf("ovd", 107, "10.219.0.0/16");
    dual["subnet"] = serde_json::json!(["fd00:107::/64", "10.219.0.0/16"]);
    let d1 = h1.ns.container("d1");
    let d2 = h2.ns.container("d2");
    let q1 = h1.add_named(&dual, &d1, "front");
    let q2 = h2.add_named(&dual, &d2, "back");
    let (b1, b2) = (overlay_ips(&q1), overlay_ips(&q2));
    assert!(
        b1.len() == 2 && b1[0].starts_with("10.219.") && b1[1].starts_with("fd00:107::"),
        "a dual-stack container got {b1:?}"
    );
    assert!(b2.len() == 2 && b1 != b2, "{b1:?} {b2:?}");
    let check = h1.check(&dual, &d1, &q1);
    assert!(
        check.success(),
        "CHECK of a dual-stack container: {}",
        check.stdout
    );
    d1.exec_ok(&["ip", "addr", "del", &format!("{}/64", b1[1]), "dev", "eth0"]);
    let check = h1.check(&dual, &d1, &q1);
    assert!(!check.success(), "CHECK missed the lost IPv6 address");
    d1.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{}/64", b1[1]),
        "dev",
        "eth0",
        "nodad",
    ]);
    for ip in &b2 {
        assert!(d1.ping_retry(ip, 10), "d1 cannot ping d2 at {ip}");
    }
    assert!(d2.ping_retry(&b1[1], 10), "d2 cannot ping6 d1");
    wait_until(
        "d1 resolves back, A and AAAA",
        Duration::from_secs(5),
        || {
            resolve(&d1, "back") == vec![b2[0].clone()]
                && resolve6(&d1, "back") == vec![b2[1].clone()]
        },
    );

    // tether cluster status lists the IPv6 blocks with the IPv4 ones.
    let status = harness::tether_cli::TetherCli::new(&h1.ns).run(&["cluster", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let of_h2: Vec<String> = v["blocks"][&h2.addr]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str().map(str::to_string))
        .collect();
    for wanted in ["ov6 fd00:106:", "ovd fd00:107:", "ovd 10.219."] {
        assert!(
            of_h2
                .iter()
                .any(|b| b.starts_with(wanted) && b.contains('/')),
            "cluster status shows no `{wanted}...` block of host 2: {of_h2:?}\n{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let text = harness::tether_cli::TetherCli::new(&h1.ns).run(&["cluster", "status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("fd00:106::"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // DEL: the IPv6 neighbour and the names go everywhere.
    h2.del(&dual, &d2);
    wait_until(
        "host 1 forgets d2's IPv6 neighbour",
        Duration::from_secs(5),
        || !h1.neighbours("tvx107").iter().any(|(ip, _)| *ip == b2[1]),
    );
    wait_until("d1 stops resolving back", Duration::from_secs(5), || {
        resolve6(&d1, "back").is_empty()
    });
    h2.del(&six, &c2);
    assert!(c1.ping_retry(&a3[0], 5), "c1 lost c3 after c2 left");
}

#[test]
fn a_dual_stack_add_that_gets_no_ipv6_address_fails_and_gives_its_ipv4_address_back() {
    let cluster = Cluster::new("ovn", 1, Timings::FAST);
    let h = &cluster.hosts[0];
    // One IPv6 block of four addresses, the subnet's address and the gateway's (::1) kept out, as in
    // IPv4: room for two containers.
    let mut conf = overlay_conf("ovf", 108, "10.220.0.0/24");
    conf["subnet"] = serde_json::json!(["10.220.0.0/24", "fd00:220::/126"]);
    conf["blockSizeV6"] = serde_json::json!(126);
    let leases = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(h.ns.state_dir().join("overlay/ovf/leases"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        names.sort();
        names
    };
    let mut held = Vec::new();
    for i in 0..2 {
        let c = h.ns.container(&format!("f{i}"));
        held.extend(overlay_ips(&h.add(&conf, &c)));
    }
    held.sort();
    assert_eq!(leases(), held, "two containers, an address of each family");
    let third = h.ns.container("f2");
    let out = h.try_add(&conf, &third);
    out.expect_error(110);
    assert!(out.stdout.contains("fd00:220::/126"), "{}", out.stdout);
    assert_eq!(
        leases(),
        held,
        "the failed ADD kept the IPv4 address it took before the IPv6 one failed"
    );
    assert!(!third.has_link("eth0"), "the failed ADD left an interface");
}

#[test]
fn each_family_of_a_dual_stack_network_hands_out_addresses_round_robin_on_its_own() {
    let cluster = Cluster::new("ovr", 1, Timings::FAST);
    let h = &cluster.hosts[0];
    let mut conf = overlay_conf("ovrr", 109, "10.221.0.0/24");
    conf["subnet"] = serde_json::json!(["10.221.0.0/24", "fd00:221::/64"]);
    // One container stays, so the network (and its lease store) outlives the one that leaves.
    let keep = h.ns.container("keep");
    let kept = overlay_ips(&h.add(&conf, &keep));
    let gone = h.ns.container("gone");
    let freed = overlay_ips(&h.add(&conf, &gone));
    h.del(&conf, &gone);
    let next = h.ns.container("next");
    let got = overlay_ips(&h.add(&conf, &next));
    assert_eq!(got.len(), 2, "{got:?}");
    for family in 0..2 {
        assert!(
            got[family] != freed[family] && got[family] != kept[family],
            "the next container got {} again, just freed (kept {kept:?}, freed {freed:?}, got {got:?}): \
             this family's round-robin position was lost to the other family's",
            got[family]
        );
    }
}

/// The safety pass's period in the repair test: short, so the test is quick; tetherd's default is 30 s.
const REPAIR_MS: u64 = 2000;

on_both_stores!(kernel_entries_deleted_by_hand_are_restored_by_the_repair_pass_within_its_period);
/// Nothing in the store changes after the entries go, so only the repair pass (`repairIntervalMs`) can
/// bring them back: within one period, plus slack for a loaded machine.
fn kernel_entries_deleted_by_hand_are_restored_by_the_repair_pass_within_its_period(store: Store) {
    let timings = Timings {
        repair_interval_ms: REPAIR_MS,
        ..Timings::FAST
    };
    let cluster = Cluster::on(&store.label("ovr"), 2, timings, store);
    let conf = overlay_conf("ovr", 103, "10.213.0.0/16");
    let (h1, h2) = (&cluster.hosts[0], &cluster.hosts[1]);
    let c1 = h1.ns.container("c1");
    let c2 = h2.ns.container("c2");
    h1.add(&conf, &c1);
    let r2 = h2.add(&conf, &c2);
    let (mac2, ip2) = (overlay_mac(&r2), overlay_ip(&r2));
    let fdb_entry = (mac2.clone(), h2.addr.clone());
    let neighbour = (ip2.clone(), mac2.clone());
    wait_until("host 1 programs c2", Duration::from_secs(10), || {
        h1.fdb("tvx103").contains(&fdb_entry) && h1.neighbours("tvx103").contains(&neighbour)
    });
    h1.ns.exec_ok(&[
        "bridge", "fdb", "del", &mac2, "dev", "tvx103", "dst", &h2.addr, "self",
    ]);
    h1.ns
        .exec_ok(&["ip", "neigh", "del", &ip2, "dev", "tvx103"]);
    assert!(
        !h1.fdb("tvx103").contains(&fdb_entry),
        "the FDB entry was not deleted by hand"
    );
    wait_until(
        "host 1 restores c2's FDB and neighbour entries",
        Duration::from_millis(REPAIR_MS + 3000),
        || h1.fdb("tvx103").contains(&fdb_entry) && h1.neighbours("tvx103").contains(&neighbour),
    );
    assert!(
        c1.ping_retry(&ip2, 5),
        "c1 cannot reach c2 after the repair"
    );
}

on_both_stores!(two_overlay_networks_with_different_vnis_cannot_reach_each_other);
fn two_overlay_networks_with_different_vnis_cannot_reach_each_other(store: Store) {
    let cluster = Cluster::on(&store.label("ovb"), 2, Timings::FAST, store);
    let (h1, h2) = (&cluster.hosts[0], &cluster.hosts[1]);
    let blue = overlay_conf("blue", 201, "10.211.0.0/16");
    let red = overlay_conf("red", 202, "10.212.0.0/16");
    let blue1 = h1.ns.container("b1");
    let blue2 = h2.ns.container("b2");
    let red2 = h2.ns.container("r2");
    let rb1 = h1.add(&blue, &blue1);
    let rb2 = h2.add(&blue, &blue2);
    let rr2 = h2.add(&red, &red2);
    assert!(
        blue1.ping_retry(&overlay_ip(&rb2), 10),
        "blue containers cannot reach each other"
    );
    assert!(
        !blue1.ping_retry(&overlay_ip(&rr2), 2),
        "blue reached red across VNIs"
    );
    assert!(
        !red2.ping(&overlay_ip(&rb1)),
        "red reached blue across VNIs"
    );
    assert!(
        !h1.fdb("tvx201")
            .iter()
            .any(|(mac, _)| *mac == overlay_mac(&rr2)),
        "red's endpoint was programmed into blue's vxlan device"
    );
}

on_both_stores!(
    a_killed_host_leaves_the_tables_after_the_failure_timeout_frees_its_block_after_the_grace_and_recovers_on_restart
);
/// On etcd the dead host's block still holds its container's record, so it is never freed (no host is
/// renumbered by an outage); on gossip it goes after the grace.
fn a_killed_host_leaves_the_tables_after_the_failure_timeout_frees_its_block_after_the_grace_and_recovers_on_restart(
    store: Store,
) {
    let mut cluster = Cluster::on(&store.label("ovc"), 3, Timings::FAST, store);
    let conf = overlay_conf("ovl", 300, "10.213.0.0/16");
    let c1 = cluster.hosts[0].ns.container("c1");
    let c3 = cluster.hosts[2].ns.container("c3");
    let r1 = cluster.hosts[0].add(&conf, &c1);
    let r3 = cluster.hosts[2].add(&conf, &c3);
    let mac3 = overlay_mac(&r3);
    assert!(
        c1.ping_retry(&overlay_ip(&r3), 10),
        "c1 cannot reach c3 before the failure"
    );

    cluster.hosts[2].kill_tetherd();
    let h1 = &cluster.hosts[0];
    wait_until(
        "host 1 drops the dead host's endpoints",
        Duration::from_millis(FAILURE_TIMEOUT_MS_FAST * 6),
        || !h1.fdb("tvx300").iter().any(|(mac, _)| *mac == mac3),
    );

    let dead = cluster.hosts[2].addr.clone();
    if store == Store::Gossip {
        assert!(
            h1.peer_claim_hosts("ovl").contains(&dead),
            "host 1 never knew the dead host's block"
        );
    } else {
        // etcd: no host watches the others' claims; host 1 reads them when the dead host's reclaim is
        // due (past the grace), or at its repair period.
        wait_until(
            "host 1 reads the dead host's block once the grace is past",
            Duration::from_millis(Timings::FAST.claim_grace_ms + 5000),
            || h1.peer_claim_hosts("ovl").contains(&dead),
        );
    }
    if store == Store::Gossip {
        // Its block is free again after the grace period (3 s here).
        wait_until(
            "host 1 releases the dead host's block after the grace",
            Duration::from_secs(10),
            || !h1.peer_claim_hosts("ovl").contains(&dead),
        );
    } else {
        // Past the grace, the block with a container's record in it stays the dead host's.
        std::thread::sleep(Duration::from_millis(Timings::FAST.claim_grace_ms + 2000));
        assert!(
            h1.peer_claim_hosts("ovl").contains(&dead),
            "etcd released a dead host's block that still has a container in it"
        );
        let etcd = cluster.etcd.as_ref().unwrap();
        assert!(
            !etcd
                .keys(&format!("/tether/hosts/{dead}"))
                .iter()
                .any(|k| k.ends_with(&dead)),
            "the dead host's liveness key outlived its lease"
        );
    }

    cluster.hosts[2].start_tetherd();
    cluster.wait_for_members(2);
    let h1 = &cluster.hosts[0];
    wait_until(
        "host 1 relearns the restarted host's endpoints",
        Duration::from_secs(10),
        || h1.fdb("tvx300").iter().any(|(mac, _)| *mac == mac3),
    );
    assert!(
        c3.ping_retry(&overlay_ip(&r1), 10),
        "the restarted host's container cannot reach c1"
    );
}

#[test]
fn a_message_sealed_with_the_wrong_key_is_dropped() {
    let cluster = Cluster::new("ovd", 2, Timings::FAST);
    let conf = overlay_conf("ovl", 400, "10.214.0.0/16");
    let h1 = &cluster.hosts[0];
    let c1 = h1.ns.container("c1");
    h1.add(&conf, &c1);
    let rejected_before = h1.overlay_status()["datagramsRejected"].as_u64().unwrap();

    // A well-formed record batch that would plant a fake endpoint, sealed with a key the cluster lacks.
    let forged_mac = [2, 0xde, 0xad, 0xbe, 0xef, 1];
    let packet = tether::overlay::Packet::Records {
        records: vec![tether::overlay::Record {
            key: tether::overlay::RecordKey::Endpoint {
                host: "192.168.77.2".parse().unwrap(),
                network: "ovl".into(),
                ip: std::net::IpAddr::V4(Ipv4Addr::new(10, 214, 0, 200)),
            },
            version: u64::MAX / 2,
            value: Some(tether::overlay::RecordValue::Endpoint {
                vni: 400,
                mac: forged_mac,
                vtep: "192.168.77.2".parse().unwrap(),
                names: vec!["forged".into()],
                healthy_for: Vec::new(),
            }),
        }],
        reply: false,
    };
    let sealed = tether::overlay::Sealer::new(&WRONG_KEY).seal(&tether::overlay::encode(&packet));
    let target: SocketAddr = format!("{}:7946", h1.addr).parse().unwrap();
    let from = cluster.hosts[1].ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(from).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(&sealed, target).unwrap();
    })
    .join()
    .unwrap();

    wait_until(
        "host 1 counts the rejected datagram",
        Duration::from_secs(5),
        || h1.overlay_status()["datagramsRejected"].as_u64().unwrap() > rejected_before,
    );
    assert!(
        h1.log()
            .contains("dropped an overlay control-plane datagram"),
        "the drop was not logged"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !h1.fdb("tvx400")
            .iter()
            .any(|(mac, _)| mac == "02:de:ad:be:ef:01"),
        "the forged endpoint reached the kernel"
    );
}

#[test]
fn egress_leaves_masqueraded_through_the_gateway_bridge_where_containers_cannot_meet() {
    let cluster = Cluster::new("ove", 1, Timings::FAST);
    let h1 = &cluster.hosts[0];
    let conf = overlay_conf("ovl", 500, "10.215.0.0/16");
    let outside = h1.ns.outside();
    h1.ns.ip(&["route", "add", "default", "via", outside.addr]);
    let c1 = h1.ns.container("c1");
    let c2 = h1.ns.container("c2");
    let r1 = h1.add(&conf, &c1);
    let r2 = h1.add(&conf, &c2);
    assert!(
        c1.ping_retry(outside.addr, 5),
        "no egress from the overlay container"
    );
    assert!(
        c1.ping_retry(&overlay_ip(&r2), 5),
        "containers of one host cannot talk over their overlay"
    );
    let gw2 = r2["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !c1.ping_retry(&gw2, 2),
        "containers met through the gateway bridge"
    );
    assert_eq!(
        c1.default_gateway("-4").as_deref(),
        r1["ips"][1]["gateway"].as_str(),
        "the default route goes through the gateway bridge"
    );
}

#[test]
fn ipv6_egress_leaves_masqueraded_through_the_gateway_bridge_and_its_last_del_leaves_nothing_behind(
) {
    let cluster = Cluster::new("ov6e", 1, Timings::FAST);
    let h1 = &cluster.hosts[0];
    let outside = h1.ns.outside();
    let (host6, out6) = ("2001:db8:501::1", "2001:db8:501::2");
    h1.ns.ip(&["route", "add", "default", "via", outside.addr]);
    h1.ns.ip(&[
        "addr",
        "add",
        &format!("{host6}/64"),
        "dev",
        "out0",
        "nodad",
    ]);
    outside
        .ns
        .ip(&["addr", "add", &format!("{out6}/64"), "dev", "up0", "nodad"]);
    h1.ns.ip(&["-6", "route", "add", "default", "via", out6]);
    // The outside knows no route to the containers' addresses: only a masqueraded reply finds its way.
    let mut dual = overlay_conf("ov6e", 501, "10.222.0.0/16");
    dual["subnet"] = serde_json::json!(["10.222.0.0/16", "fd00:501::/64"]);
    let six = overlay_conf("ov6f", 502, "fd00:502::/64");
    let (d1, s1) = (h1.ns.container("d1"), h1.ns.container("s1"));
    let rd = h1.add(&dual, &d1);
    let rs = h1.add(&six, &s1);

    for (c, r) in [(&d1, &rd), (&s1, &rs)] {
        let gw6 = r["ips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["address"]
                    .as_str()
                    .unwrap()
                    .starts_with("fd74:6574:6877:")
            })
            .unwrap_or_else(|| panic!("no IPv6 egress address in the result: {r}"));
        assert_eq!(
            c.default_gateway("-6").as_deref(),
            gw6["gateway"].as_str(),
            "the IPv6 default route goes through the gateway bridge"
        );
        assert_eq!(gw6["gateway"], "fd74:6574:6877::1");
        assert!(
            r["routes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["dst"] == "::/0"),
            "no IPv6 default route in the result: {r}"
        );
        assert!(
            c.ping_retry(out6, 5),
            "no IPv6 egress from the overlay container"
        );
        assert!(c.ping_retry(outside.addr, 5), "IPv4 egress went missing");
        let at: SocketAddr = format!("[{out6}]:8080").parse().unwrap();
        let seen = harness::tcp::exchange_via(&outside.ns, at, c, at)
            .expect("TCP over IPv6 from the overlay container to the outside");
        assert_eq!(
            seen.ip().to_string(),
            host6,
            "the outside saw the container's own address: not masqueraded"
        );
    }

    // The host's last egress attachment takes the bridge, its firewall network and its store along.
    h1.del(&dual, &d1);
    assert!(
        h1.ns.has_link("tether_gwbridge"),
        "the bridge went while s1 used it"
    );
    assert!(s1.ping_retry(out6, 5), "s1 lost IPv6 egress when d1 left");
    h1.del(&six, &s1);
    assert!(
        !h1.ns.has_link("tether_gwbridge"),
        "the gateway bridge stayed"
    );
    let ruleset = h1.ns.exec_ok(&["nft", "list", "ruleset"]);
    assert!(
        !ruleset.contains("tether_gwbridge") && !ruleset.contains("fd74:6574:6877"),
        "the gateway bridge's rules or elements stayed:\n{ruleset}"
    );
    assert!(
        !h1.ns
            .state_dir()
            .join("overlay-gateway/tether_gwbridge")
            .exists(),
        "the gateway bridge's lease store stayed"
    );
}

#[test]
fn add_and_del_work_while_tetherd_is_down_and_the_cluster_converges_when_it_returns() {
    let mut cluster = Cluster::new("ovf", 2, Timings::FAST);
    let conf = overlay_conf("ovl", 700, "10.216.0.0/16");
    let c1 = cluster.hosts[0].ns.container("c1");
    let r1 = cluster.hosts[0].add(&conf, &c1);
    cluster.hosts[1].kill_tetherd();
    let c2 = cluster.hosts[1].ns.container("c2");
    let gone = cluster.hosts[1].ns.container("gone");
    let r2 = cluster.hosts[1].add(&conf, &c2);
    cluster.hosts[1].add(&conf, &gone);
    cluster.hosts[1].del(&conf, &gone);
    assert_eq!(
        cluster.hosts[0].own_claims("ovl")[0].1,
        "confirmed",
        "host 1's block was taken with both hosts up"
    );
    // Host 1 alone is no majority of two: its block of a new network is used unconfirmed, after the
    // bounded wait.
    let lonely = overlay_conf("ovl2", 701, "10.219.0.0/16");
    let c3 = cluster.hosts[0].ns.container("c3");
    cluster.hosts[0].add(&lonely, &c3);
    assert_eq!(
        cluster.hosts[0].own_claims("ovl2")[0].1,
        "unconfirmed",
        "a block taken without a majority up must be marked unconfirmed"
    );
    let taken_alone = cluster.hosts[1].own_claims("ovl");
    assert!(
        !taken_alone.is_empty() && taken_alone.iter().all(|(_, s)| s == "unconfirmed"),
        "a block taken without tetherd must be marked unconfirmed: {taken_alone:?}"
    );

    cluster.hosts[1].start_tetherd();
    cluster.wait_for_members(1);
    wait_until(
        "the blocks taken without agreement are confirmed once tetherd returns",
        Duration::from_secs(10),
        || {
            [(1, "ovl"), (0, "ovl2")].iter().all(|(h, net)| {
                cluster.hosts[*h]
                    .own_claims(net)
                    .iter()
                    .all(|(_, s)| s == "confirmed")
            })
        },
    );
    let h1 = &cluster.hosts[0];
    wait_until(
        "host 1 learns the container added while tetherd was down",
        Duration::from_secs(10),
        || {
            h1.fdb("tvx700")
                .iter()
                .any(|(mac, _)| *mac == overlay_mac(&r2))
        },
    );
    assert_eq!(
        h1.fdb("tvx700").len(),
        1,
        "the container deleted while tetherd was down is programmed"
    );
    assert!(
        c2.ping_retry(&overlay_ip(&r1), 10),
        "c2 cannot reach c1 after tetherd came back"
    );
}

/// The A records `dig @127.0.0.11` returns inside `c` for `name`.
fn resolve(c: &harness::NetNs, name: &str) -> Vec<String> {
    resolve_at(c, "127.0.0.11", &[name])
}

/// The A records `dig @server` returns inside `c` for the query in `args`.
fn resolve_at(c: &harness::NetNs, server: &str, args: &[&str]) -> Vec<String> {
    resolve_type(c, server, args, "A")
}

/// The AAAA records `dig @127.0.0.11` returns inside `c` for `name`.
fn resolve6(c: &harness::NetNs, name: &str) -> Vec<String> {
    resolve_type(c, "127.0.0.11", &[name], "AAAA")
}

fn resolve_type(c: &harness::NetNs, server: &str, args: &[&str], kind: &str) -> Vec<String> {
    let at = format!("@{server}");
    let mut all = vec!["dig", "+short", "+time=1", "+tries=1", &at];
    all.extend_from_slice(args);
    all.push(kind);
    let out = c.exec(&all);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

on_both_stores!(hosts_that_fill_their_blocks_claim_new_ones_and_never_hand_out_an_address_twice);
fn hosts_that_fill_their_blocks_claim_new_ones_and_never_hand_out_an_address_twice(store: Store) {
    let cluster = Cluster::on(&store.label("ovg"), 3, Timings::FAST, store);
    // /29 blocks hold 8 addresses (all usable: the prefix is the subnet's), so 10 containers per host
    // need a second block on every host.
    let mut conf = overlay_conf("ovl", 800, "10.217.0.0/24");
    conf["blockSize"] = serde_json::json!(29);
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..10 {
        for (i, h) in cluster.hosts.iter().enumerate() {
            let c = h.ns.container(&format!("h{i}n{round}"));
            let ip = overlay_ip(&h.add(&conf, &c));
            if let Some(other) = seen.insert(ip.clone(), i) {
                panic!("{ip} handed out by host {other} and host {i}");
            }
        }
    }
    for h in &cluster.hosts {
        let claims: serde_json::Value = serde_json::from_slice(
            &std::fs::read(h.ns.state_dir().join("overlay/ovl/claims.json")).unwrap(),
        )
        .unwrap();
        assert!(
            claims["claims"].as_array().unwrap().len() >= 2,
            "{} filled a block but claimed no second one: {claims}",
            h.addr
        );
    }
}

/// Every host's first ADD at the same moment, all wanting the same block first (one
/// `startBlockKey` for all): the block is agreed before use, so no address is handed out twice, every claim ends confirmed
/// and on a different block, and every container reaches every other. `dual`: the network is dual-stack,
/// and the hosts race for a block of each family (four /26 and four /122 blocks).
fn first_adds_racing_for_one_block(label: &str, hosts: usize, store: Store, dual: bool) {
    let cluster = Cluster::on(label, hosts, Timings::FAST, store);
    for round in 0..3u32 {
        let network = format!("race{round}");
        // Four /26 blocks: every host wants the first one it finds free from the same start.
        let mut conf = overlay_conf(&network, 910 + round, &format!("10.218.{round}.0/24"));
        if dual {
            conf["subnet"] = serde_json::json!([
                format!("10.218.{round}.0/24"),
                format!("fd00:218:{round}::/120")
            ]);
        }
        conf["startBlockKey"] = "race".into();
        let containers: Vec<_> = (0..hosts)
            .map(|i| cluster.hosts[i].ns.container(&format!("r{round}h{i}")))
            .collect();
        let barrier = std::sync::Barrier::new(hosts);
        let results: Vec<serde_json::Value> = std::thread::scope(|s| {
            let handles: Vec<_> = cluster
                .hosts
                .iter()
                .zip(&containers)
                .map(|(h, c)| {
                    let (conf, barrier) = (&conf, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        h.add(conf, c)
                    })
                })
                .collect();
            handles.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let ips: Vec<String> = results.iter().flat_map(overlay_ips).collect();
        let families = if dual { 2 } else { 1 };
        assert_eq!(ips.len(), hosts * families, "round {round}: {ips:?}");
        let distinct: std::collections::BTreeSet<_> = ips.iter().collect();
        if distinct.len() != ips.len() {
            for h in &cluster.hosts {
                eprintln!(
                    "host {} claims {:?}\n{}",
                    h.addr,
                    h.own_claims(&network),
                    h.log()
                );
            }
        }
        assert_eq!(
            distinct.len(),
            ips.len(),
            "round {round}: one address handed out twice: {ips:?}"
        );
        let mut blocks = std::collections::BTreeMap::new();
        for h in &cluster.hosts {
            for (block, state) in h.own_claims(&network) {
                assert_eq!(
                    state, "confirmed",
                    "round {round}: {} uses {block} without the members' agreement",
                    h.addr
                );
                if let Some(other) = blocks.insert(block.clone(), h.addr.clone()) {
                    panic!("round {round}: {block} claimed by {other} and {}", h.addr);
                }
            }
        }
        let v6_blocks = blocks.keys().filter(|b| b.contains(':')).count();
        assert!(
            !dual || v6_blocks >= hosts,
            "round {round}: {hosts} hosts but {v6_blocks} IPv6 blocks: {blocks:?}"
        );
        for (i, c) in containers.iter().enumerate() {
            for (j, ip) in ips.iter().enumerate() {
                if i != j / families {
                    assert!(
                        c.ping_retry(ip, 10),
                        "round {round}: container on host {i} cannot ping {ip} on host {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn two_hosts_whose_first_adds_race_for_one_block_never_hand_out_an_address_twice() {
    first_adds_racing_for_one_block("ovh", 2, Store::Gossip, false);
}

on_both_stores!(three_hosts_whose_first_adds_race_for_one_block_never_hand_out_an_address_twice);
fn three_hosts_whose_first_adds_race_for_one_block_never_hand_out_an_address_twice(store: Store) {
    first_adds_racing_for_one_block(&store.label("ovi"), 3, store, false);
}

on_both_stores!(
    three_hosts_whose_first_dual_stack_adds_race_for_a_block_of_each_family_never_hand_out_an_address_twice
);
fn three_hosts_whose_first_dual_stack_adds_race_for_a_block_of_each_family_never_hand_out_an_address_twice(
    store: Store,
) {
    first_adds_racing_for_one_block(&store.label("ovk"), 3, store, true);
}

#[test]
fn one_block_taken_unconfirmed_by_two_hosts_goes_to_the_earlier_claim_and_check_flags_the_other() {
    let mut cluster = Cluster::new("ovj", 2, Timings::FAST);
    cluster.hosts[0].kill_tetherd();
    cluster.hosts[1].kill_tetherd();
    // Both tetherds down and the same start block: the weak case the guarantee leaves open.
    let mut conf = overlay_conf("split", 720, "10.220.0.0/24");
    conf["startBlockKey"] = "split".into();
    let c0 = cluster.hosts[0].ns.container("s0");
    let c1 = cluster.hosts[1].ns.container("s1");
    let r0 = cluster.hosts[0].add(&conf, &c0);
    let r1 = cluster.hosts[1].add(&conf, &c1);
    let (h0, h1) = (
        cluster.hosts[0].own_claims("split"),
        cluster.hosts[1].own_claims("split"),
    );
    assert_eq!(h0.len(), 1, "{h0:?}");
    assert_eq!(h0, h1, "both hosts took the same block unconfirmed");
    assert_eq!(h0[0].1, "unconfirmed");

    cluster.hosts[0].start_tetherd();
    cluster.hosts[1].start_tetherd();
    cluster.wait_for_members(1);
    wait_until(
        "the earlier claim is confirmed and the later one lost",
        Duration::from_secs(10),
        || {
            cluster.hosts[0].own_claims("split")[0].1 == "confirmed"
                && cluster.hosts[1].own_claims("split")[0].1 == "lost"
        },
    );
    assert!(
        cluster.hosts[0].check(&conf, &c0, &r0).status.success(),
        "CHECK fails for the container of the winning block"
    );
    let flagged = cluster.hosts[1].check(&conf, &c1, &r1);
    assert!(
        !flagged.status.success() && flagged.stdout.contains("another host's claim won"),
        "CHECK passes for a container whose block was lost: {} {}",
        flagged.stdout,
        flagged.stderr
    );
    // The losing host moves: its next container gets an address of another, agreed block.
    let c2 = cluster.hosts[1].ns.container("s2");
    let r2 = cluster.hosts[1].add(&conf, &c2);
    let moved: Vec<_> = cluster.hosts[1]
        .own_claims("split")
        .into_iter()
        .filter(|(_, s)| s == "confirmed")
        .collect();
    assert_eq!(moved.len(), 1, "the loser took one new agreed block");
    assert_ne!(moved[0].0, h0[0].0);
    let block: ipnetwork::Ipv4Network = moved[0].0.parse().unwrap();
    let ip2: std::net::Ipv4Addr = overlay_ip(&r2).parse().unwrap();
    assert!(
        block.contains(ip2),
        "{ip2} is not from the new block {block}"
    );
}

#[test]
fn an_overlay_container_serves_its_own_port_53_across_hosts_while_127_0_0_11_answers_tether_names()
{
    let cluster = Cluster::new("ov53", 2, Timings::FAST);
    let conf = overlay_conf("ovl", 900, "10.218.0.0/16");
    let (h1, h2) = (&cluster.hosts[0], &cluster.hosts[1]);
    let (c1, near, far) = (
        h1.ns.container("c1"),
        h1.ns.container("near"),
        h2.ns.container("far"),
    );
    let ip1 = overlay_ip(&h1.add_named(&conf, &c1, "web"));
    h1.add_named(&conf, &near, "near");
    let ip_far = overlay_ip(&h2.add_named(&conf, &far, "db"));
    let server = ContainerDnsServer::start(&c1, "0.0.0.0:53", "[::]:53")
        .expect("the overlay container binds port 53 itself");

    // 127.0.0.11 inside it still answers tether's names, those of the other host's containers too.
    wait_until("c1 resolves db on host 2", Duration::from_secs(5), || {
        resolve(&c1, "db") == vec![ip_far.clone()]
    });
    assert_eq!(
        resolve_at(&c1, "127.0.0.11", &["+tcp", "db.ovl"]),
        vec![ip_far]
    );
    assert_eq!(
        server.queries(),
        0,
        "a query to 127.0.0.11 reached the container's server"
    );

    // Its overlay address on port 53 is its own server, from this host and across the overlay.
    let own = vec![OWN_ANSWER.to_string()];
    assert_eq!(resolve_at(&near, &ip1, &["app.example"]), own, "same host");
    wait_until(
        "the far container reaches c1's server",
        Duration::from_secs(5),
        || resolve_at(&far, &ip1, &["app.example"]) == own,
    );
    assert_eq!(
        resolve_at(&far, &ip1, &["+tcp", "app.example"]),
        own,
        "across hosts, tcp"
    );
    assert!(server.queries() >= 3);
}
