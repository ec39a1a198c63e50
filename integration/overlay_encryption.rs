//! Encrypted overlay networks on this machine, for everything that does not need ESP to pass traffic
//! (that is `overlay_esp_vm`): tether's NETLINK_XFRM encoder read back by `ip xfrm`, the input guard read
//! back by `nft`, and an encrypted ADD that fails by name on a kernel without ESP (or, on one with it,
//! closes the port before the VXLAN device exists), and the key rotation schedule the hosts agree on
//! through the cluster store. Each test makes its own namespaces.

#[path = "harness/mod.rs"]
mod harness;

use std::net::IpAddr;

use harness::overlay_cluster::{on_both_stores, wait_until, Cluster, Store, Timings};
use harness::tether_cli::TetherCli;
use harness::HostNs;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tether::driver::overlay::encryption::{block_policy, reqid, PEER_PRIORITY};
use tether::firewall::EspGuard;
use tether::link::xfrm::{
    EspState, Policy, PolicyAction, PolicyDir, Selector, StateId, XfrmSocket, ESP_AEAD,
    ESP_ICV_BITS,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Whether this kernel takes an rfc4106 ESP state, asked with iproute2 in a scratch namespace.
fn kernel_has_esp() -> bool {
    let ns = HostNs::new("espprobe");
    ns.exec(&[
        "ip",
        "xfrm",
        "state",
        "add",
        "src",
        "10.0.0.1",
        "dst",
        "10.0.0.2",
        "proto",
        "esp",
        "spi",
        "0x1000",
        "mode",
        "transport",
        "aead",
        "rfc4106(gcm(aes))",
        "0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324",
        "128",
    ])
    .status
    .success()
}

#[test]
fn policies_from_tethers_encoder_read_back_with_ip_xfrm_and_go_away() {
    let ns = HostNs::new("xfrmpol");
    let (me, peer) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let protect = |dir, src, dst| Policy {
        dir,
        selector: Selector::udp(Some(src), Some(dst), 4790),
        priority: PEER_PRIORITY,
        action: PolicyAction::Protect { reqid: reqid(4790) },
    };
    let policies = [
        block_policy(me, 4790),
        protect(PolicyDir::Out, me, peer),
        protect(PolicyDir::In, peer, me),
    ];
    ns.run_inside(|| {
        let sock = XfrmSocket::open().unwrap();
        for p in &policies {
            sock.update_policy(p).unwrap();
            // Replacing in place: the same policy twice is still one.
            sock.update_policy(p).unwrap();
        }
    });
    let listed = ns.exec_ok(&["ip", "xfrm", "policy", "list"]);
    assert_eq!(listed.matches("dport 4790").count(), 3, "{listed}");
    assert!(
        listed.contains("src 192.0.2.1/32 dst 0.0.0.0/0 proto udp dport 4790 \n\tdir out action block priority 1000"),
        "{listed}"
    );
    assert!(
        listed.contains(
            "src 192.0.2.1/32 dst 192.0.2.2/32 proto udp dport 4790 \n\tdir out priority 100"
        ),
        "{listed}"
    );
    assert!(listed.contains("dir in priority 100"), "{listed}");
    assert_eq!(
        listed
            .matches("tmpl src 0.0.0.0 dst 0.0.0.0\n\t\tproto esp reqid 2122191542 mode transport")
            .count(),
        2,
        "{listed}"
    );
    ns.run_inside(|| {
        let sock = XfrmSocket::open().unwrap();
        for p in &policies {
            assert!(sock.delete_policy(&p.selector, p.dir).unwrap());
            assert!(
                !sock.delete_policy(&p.selector, p.dir).unwrap(),
                "already gone is fine"
            );
        }
    });
    assert_eq!(ns.exec_ok(&["ip", "xfrm", "policy", "list"]).trim(), "");
}

#[test]
fn an_esp_state_is_added_listed_and_deleted_or_refused_naming_the_missing_feature() {
    let has_esp = kernel_has_esp();
    let ns = HostNs::new("xfrmsa");
    let state = EspState {
        id: StateId {
            dst: ip("192.0.2.2"),
            spi: 0x4242,
        },
        src: ip("192.0.2.1"),
        port: 4789,
        reqid: reqid(4789),
        algorithm: ESP_AEAD,
        key: [7; 36],
        icv_bits: ESP_ICV_BITS,
        replay_window: 128,
        soft_bytes: None,
        soft_packets: None,
    };
    let added = ns.run_inside(|| XfrmSocket::open().unwrap().add_state(&state));
    if !has_esp {
        let e = added.expect_err("this kernel refuses ESP, so must tether's state");
        let msg = e.to_string();
        assert!(msg.contains("esp4") && msg.contains("rfc4106"), "{msg}");
        assert!(ns
            .run_inside(|| XfrmSocket::open().unwrap().states().unwrap())
            .is_empty());
        return;
    }
    assert!(added.unwrap());
    let shown = ns.exec_ok(&["ip", "xfrm", "state", "list"]);
    assert!(
        shown.contains("spi 0x00004242 reqid 2122191541 mode transport"),
        "{shown}"
    );
    assert!(
        shown.contains("aead rfc4106(gcm(aes))") && shown.contains("flag esn"),
        "{shown}"
    );
    ns.run_inside(|| {
        let sock = XfrmSocket::open().unwrap();
        assert!(
            !sock.add_state(&state).unwrap(),
            "the same SPI again is kept"
        );
        let listed = sock.states().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id, listed[0].src), (state.id, state.src));
        assert!(sock.delete_state(&state.id).unwrap());
        assert!(!sock.delete_state(&state.id).unwrap());
    });
}

#[test]
fn the_input_guard_reads_back_with_nft_once_however_often_installed_and_goes_away() {
    let ns = HostNs::new("espguard");
    ns.run_inside(|| {
        EspGuard { port: 4790 }.install().unwrap();
        EspGuard { port: 4790 }.install().unwrap();
    });
    let chain = ns.nft_ok(&["list", "chain", "inet", "tether", "esp_in_4790"]);
    assert!(
        chain.contains("type filter hook input priority mangle - 10; policy accept;"),
        "{chain}"
    );
    assert_eq!(
        chain
            .matches("udp dport 4790 meta ipsec missing drop")
            .count(),
        1,
        "{chain}"
    );
    ns.run_inside(|| {
        EspGuard { port: 4790 }.remove().unwrap();
        EspGuard { port: 4790 }.remove().unwrap();
    });
    let (found, _) = ns.nft(&["list", "chain", "inet", "tether", "esp_in_4790"]);
    assert!(!found, "the chain is gone");
}

#[test]
fn an_encrypted_add_fails_by_name_without_esp_and_otherwise_closes_the_port_first() {
    let has_esp = kernel_has_esp();
    let ns = HostNs::new("encadd");
    ns.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul0p"]);
    ns.ip(&["addr", "add", "192.168.91.1/24", "dev", "ul0"]);
    ns.ip(&["link", "set", "ul0", "up"]);
    ns.ip(&["link", "set", "ul0p", "up"]);
    let conf = json!({
        "cniVersion": "1.1.0", "name": "encnet", "type": "tether-overlay", "vni": 4211,
        "subnet": "10.211.0.0/24", "underlay": "ul0", "egress": false, "encrypted": true
    });
    let c = ns.container("c1");
    let out = ns
        .plugin(env!("CARGO_BIN_EXE_tether-overlay"))
        .cmd("ADD")
        .container(&c)
        .conf(&conf)
        .run();
    if has_esp {
        out.assert_ok();
        let policies = ns.exec_ok(&["ip", "xfrm", "policy", "list"]);
        assert!(
            policies.contains("dport 4789 \n\tdir out action block"),
            "{policies}"
        );
        ns.nft_ok(&["list", "chain", "inet", "tether", "esp_in_4789"]);
        ns.plugin(env!("CARGO_BIN_EXE_tether-overlay"))
            .del(&c, &conf);
        let policies = ns.exec_ok(&["ip", "xfrm", "policy", "list"]);
        assert!(
            !policies.contains("action block"),
            "the last DEL reopens: {policies}"
        );
        return;
    }
    let e = out.expect_error(2);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("encrypted") && msg.contains("esp4") && msg.contains("never"),
        "{msg}"
    );
    // Refused before anything was made: no VXLAN device, no block policy, no guard.
    assert!(!ns.has_link("tvx4211"), "{:?}", ns.link_names());
    assert_eq!(ns.exec_ok(&["ip", "xfrm", "policy", "list"]).trim(), "");
    let (guard, _) = ns.nft(&["list", "chain", "inet", "tether", "esp_in_4789"]);
    assert!(!guard);
    // And the container has no overlay interface.
    assert!(!c.has_link("eth0"));
}

/// `tether cluster status --json`'s rotation on host `i`.
fn rotation(cluster: &Cluster, i: usize) -> Value {
    let out = TetherCli::new(&cluster.hosts[i].ns).run(&["cluster", "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["rotation"].clone()
}

/// Host `i`'s tetherd again with an `encryption` section rotating every `interval_s`.
fn restart_with_encryption(cluster: &mut Cluster, i: usize, interval_s: u64) {
    let host = &mut cluster.hosts[i];
    let key = host.ns.dir().join("data.key");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let path = host.config_path();
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["overlay"]["encryption"] = json!({"keyFile": key, "rotationIntervalS": interval_s});
    std::fs::write(&path, config.to_string()).unwrap();
    host.kill_tetherd();
    host.start_tetherd();
}

fn both_agree(cluster: &Cluster, check: impl Fn(&Value) -> bool) -> bool {
    let (a, b) = (rotation(cluster, 0), rotation(cluster, 1));
    a["schedule"] == b["schedule"] && check(&a["schedule"])
}

/// Hosts configured with different intervals agree on one schedule through the store (a configured one:
/// the first in the store, or the longest of those entering it at once); `tether cluster rotation` sets a new one for every host,
/// in force from a boundary at least one old interval ahead; a restarted host keeps the cluster's
/// schedule, not its config's; an interval under 2 s is refused.
fn hosts_take_the_rotation_from_the_store(store: Store) {
    let mut cluster = Cluster::on(&store.label("rot"), 2, Timings::FAST, store);
    restart_with_encryption(&mut cluster, 0, 30);
    restart_with_encryption(&mut cluster, 1, 60);
    cluster.wait_for_members(1);
    wait_until(
        "both hosts count the same schedule",
        Duration::from_secs(20),
        || {
            both_agree(&cluster, |s| {
                [30_000, 60_000].contains(&s["current"]["intervalMs"].as_u64().unwrap_or(0))
            })
        },
    );
    let old_ms = rotation(&cluster, 0)["schedule"]["current"]["intervalMs"]
        .as_u64()
        .unwrap();

    let before_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let out = TetherCli::new(&cluster.hosts[0].ns).run(&["cluster", "rotation", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("every 5 s"),
        "{stdout}"
    );
    wait_until(
        "both hosts count the new interval",
        Duration::from_secs(20),
        || both_agree(&cluster, |s| s["current"]["intervalMs"] == 5_000),
    );
    let schedule = rotation(&cluster, 1)["schedule"].clone();
    assert_eq!(schedule["previous"]["intervalMs"], old_ms);
    let anchor = schedule["current"]["anchorMs"].as_u64().unwrap();
    assert!(
        anchor >= before_ms + old_ms,
        "in force {anchor} ms, set at {before_ms}"
    );
    assert_eq!(anchor % old_ms, 0, "on an old epoch boundary");

    restart_with_encryption(&mut cluster, 1, 30);
    cluster.wait_for_members(1);
    wait_until(
        "the restarted host keeps the cluster's schedule",
        Duration::from_secs(20),
        || rotation(&cluster, 1)["schedule"] == schedule,
    );
    assert_eq!(rotation(&cluster, 0)["schedule"], schedule);

    let out = TetherCli::new(&cluster.hosts[0].ns).run(&["cluster", "rotation", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("at least 2 seconds"),
        "{stderr}"
    );
}
on_both_stores!(hosts_take_the_rotation_from_the_store);
