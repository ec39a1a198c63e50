//! The cluster-store conformance suite: the same cases on the gossip store and on real etcd 3.4 (Debian's
//! etcd-server, started by the harness on the fabric namespace), and etcd's own cases: a watch resumed
//! after a compaction, the store down for 30 s and back, a three-member cluster losing a member.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::NetNs;
use serde_json::Value;

use harness::overlay_cluster::{
    on_both_stores, overlay_conf, overlay_ip, overlay_mac, wait_until, Cluster, Store, Timings,
};

/// Every address handed out by the hosts' ADDs, distinct; and every confirmed block held by one host.
fn assert_no_address_or_block_twice(cluster: &Cluster, network: &str, ips: &[String]) {
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(
        distinct.len(),
        ips.len(),
        "one address handed out twice: {ips:?}"
    );
    let mut blocks = BTreeMap::new();
    for h in &cluster.hosts {
        for (block, state) in h.own_claims(network) {
            if state == "confirmed" {
                if let Some(other) = blocks.insert(block.clone(), h.addr.clone()) {
                    panic!("{block} confirmed by {other} and {}", h.addr);
                }
            }
        }
    }
}

on_both_stores!(a_host_killed_mid_claim_never_makes_an_address_or_block_twice);
/// Three hosts race for one block while one host's tetherd is killed in the middle of it; after it
/// returns, no address and no confirmed block is held twice, and every host ends with agreed blocks.
fn a_host_killed_mid_claim_never_makes_an_address_or_block_twice(store: Store) {
    let mut cluster = Cluster::on(&store.label("csk"), 3, Timings::FAST, store);
    let mut conf = overlay_conf("mid", 1100, "10.230.0.0/24");
    conf["startBlockKey"] = "mid".into();
    let containers: Vec<_> = (0..3)
        .map(|i| cluster.hosts[i].ns.container(&format!("m{i}")))
        .collect();
    // Taken out of the host before the race, so its plugin starts no tetherd of its own when this one
    // is gone; killed (SIGKILL, as a crash) while the plugins propose.
    let victim = cluster.hosts[2].tetherd.take();
    let barrier = std::sync::Barrier::new(4);
    let outputs = std::thread::scope(|s| {
        let handles: Vec<_> = cluster
            .hosts
            .iter()
            .zip(&containers)
            .map(|(h, c)| {
                let (conf, barrier) = (&conf, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    h.try_add(conf, c)
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(Duration::from_millis(5));
        drop(victim);
        handles
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut ips = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        if out.success() && i == 2 && store == Store::Gossip {
            // Gossip's admitted window: without its tetherd the host used its block unconfirmed, and
            // may share it with another host until the claims are settled below (etcd has no window).
            continue;
        }
        if out.success() {
            ips.push(overlay_ip(out.result()));
        } else {
            // Only the host whose tetherd died may fail, and only with "try again later" (etcd never
            // guesses a block).
            assert_eq!(i, 2, "host {i}'s ADD failed: {} {}", out.stdout, out.stderr);
            assert_eq!(
                store,
                Store::Etcd,
                "gossip goes on unconfirmed: {}",
                out.stdout
            );
            assert_eq!(out.error_code(), Some(11), "{}", out.stdout);
        }
    }
    assert_no_address_or_block_twice(&cluster, "mid", &ips);

    cluster.hosts[2].start_tetherd();
    cluster.wait_for_members(2);
    // A retry of a failed ADD (what a runtime does on code 11) now succeeds.
    if !outputs[2].success() {
        ips.push(overlay_ip(&cluster.hosts[2].add(&conf, &containers[2])));
    }
    // Settled: every claim agreed, or (gossip only) marked lost to the earlier claim of its block.
    wait_until(
        "every host's blocks are settled once host 3 is back",
        Duration::from_secs(15),
        || {
            cluster.hosts.iter().all(|h| {
                let claims = h.own_claims("mid");
                claims
                    .iter()
                    .all(|(_, s)| s == "confirmed" || (s == "lost" && store == Store::Gossip))
            })
        },
    );
    assert_no_address_or_block_twice(&cluster, "mid", &ips);
    if ips.len() == containers.len() {
        for (i, c) in containers.iter().enumerate() {
            for (j, ip) in ips.iter().enumerate() {
                if i != j {
                    assert!(c.ping_retry(ip, 10), "container {i} cannot reach {ip}");
                }
            }
        }
    }
}

on_both_stores!(a_restarted_host_keeps_its_blocks_and_its_peers_relearn_its_containers);
fn a_restarted_host_keeps_its_blocks_and_its_peers_relearn_its_containers(store: Store) {
    let mut cluster = Cluster::on(&store.label("csr"), 2, Timings::FAST, store);
    let conf = overlay_conf("keep", 1200, "10.231.0.0/16");
    let c0 = cluster.hosts[0].ns.container("k0");
    let c1 = cluster.hosts[1].ns.container("k1");
    cluster.hosts[0].add(&conf, &c0);
    let r1 = cluster.hosts[1].add(&conf, &c1);
    let before = cluster.hosts[1].own_claims("keep");
    assert!(before.iter().all(|(_, s)| s == "confirmed"), "{before:?}");

    cluster.hosts[1].kill_tetherd();
    cluster.hosts[1].start_tetherd();
    cluster.wait_for_members(1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        cluster.hosts[1].own_claims("keep"),
        before,
        "the restarted host's blocks changed"
    );
    if let Some(etcd) = &cluster.etcd {
        let out = etcd.ctl(&["get", "--prefix", "/tether/blocks/keep/"]);
        assert!(
            out.contains(&format!("\"host\":\"{}\"", cluster.hosts[1].addr)),
            "the block left etcd: {out}"
        );
    }
    let h0 = &cluster.hosts[0];
    wait_until(
        "host 1 relearns the restarted host's container",
        Duration::from_secs(10),
        || {
            h0.fdb("tvx1200")
                .iter()
                .any(|(mac, _)| *mac == overlay_mac(&r1))
        },
    );
    // The next container of the restarted host comes from the same block.
    let c2 = cluster.hosts[1].ns.container("k2");
    cluster.hosts[1].add(&conf, &c2);
    let blocks = |claims: Vec<(String, String)>| -> Vec<String> {
        claims.into_iter().map(|(b, _)| b).collect()
    };
    assert_eq!(
        blocks(cluster.hosts[1].own_claims("keep"))[0],
        blocks(before)[0],
        "the first block moved"
    );
}

on_both_stores!(records_and_their_deletions_spread_to_every_host);
fn records_and_their_deletions_spread_to_every_host(store: Store) {
    let cluster = Cluster::on(&store.label("css"), 3, Timings::FAST, store);
    let conf = overlay_conf("spread", 1300, "10.232.0.0/16");
    let anchors: Vec<_> = (1..3)
        .map(|i| {
            let c = cluster.hosts[i].ns.container(&format!("a{i}"));
            cluster.hosts[i].add(&conf, &c);
            c
        })
        .collect();
    let mut added = Vec::new();
    for n in 0..5 {
        let c = cluster.hosts[0].ns.container(&format!("s{n}"));
        let r = cluster.hosts[0].add(&conf, &c);
        added.push((c, overlay_mac(&r)));
    }
    for h in &cluster.hosts[1..] {
        wait_until(
            &format!("{} learns host 1's five containers", h.addr),
            Duration::from_secs(10),
            || {
                let fdb = h.fdb("tvx1300");
                added
                    .iter()
                    .all(|(_, mac)| fdb.iter().any(|(m, _)| m == mac))
            },
        );
    }
    for (c, _) in &added[..3] {
        cluster.hosts[0].del(&conf, c);
    }
    for h in &cluster.hosts[1..] {
        wait_until(
            &format!(
                "{} forgets the three deleted ones and keeps the rest",
                h.addr
            ),
            Duration::from_secs(10),
            || {
                let fdb = h.fdb("tvx1300");
                let has = |mac: &String| fdb.iter().any(|(m, _)| m == mac);
                added[..3].iter().all(|(_, mac)| !has(mac))
                    && added[3..].iter().all(|(_, mac)| has(mac))
            },
        );
    }
    drop(anchors);
}

/// Loads nft `rules` in host `i`'s namespace (to cut it off etcd and back).
fn nft(cluster: &Cluster, i: usize, rules: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("nsenter")
        .arg(format!("--net={}", cluster.hosts[i].ns.path_str()))
        .args(["--", "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft {rules}");
}

#[test]
fn a_host_cut_off_etcd_while_it_compacts_lists_again_and_catches_up() {
    let cluster = Cluster::on("cscmp", 2, Timings::FAST, Store::Etcd);
    let conf = overlay_conf("cmp", 1400, "10.233.0.0/16");
    let c1 = cluster.hosts[1].ns.container("w1");
    cluster.hosts[1].add(&conf, &c1);
    let early = cluster.hosts[0].ns.container("early");
    let r_early = cluster.hosts[0].add(&conf, &early);
    let h1 = &cluster.hosts[1];
    wait_until("host 2 learns early", Duration::from_secs(10), || {
        h1.fdb("tvx1400")
            .iter()
            .any(|(m, _)| *m == overlay_mac(&r_early))
    });

    // Host 2 loses etcd; meanwhile host 1 deletes one container and adds another, and etcd compacts
    // its history past what host 2 saw.
    nft(
        &cluster,
        1,
        "table inet cut {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 2379 reject with tcp reset\n }\n}\n",
    );
    // A reset, not a drop: a dropped connection can outlive the cut (TCP retransmits it) and its watch
    // then never needs the history, so the compaction path would go untested.
    std::thread::sleep(Duration::from_secs(5));
    cluster.hosts[0].del(&conf, &early);
    let late = cluster.hosts[0].ns.container("late");
    let r_late = cluster.hosts[0].add(&conf, &late);
    let etcd = cluster.etcd.as_ref().unwrap();
    let rev = etcd.revision();
    etcd.ctl(&["compact", &rev.to_string()]);
    nft(&cluster, 1, "delete table inet cut\n");

    wait_until(
        "host 2 forgets early and learns late after the re-list",
        Duration::from_secs(20),
        || {
            let fdb = h1.fdb("tvx1400");
            fdb.iter().any(|(m, _)| *m == overlay_mac(&r_late))
                && !fdb.iter().any(|(m, _)| *m == overlay_mac(&r_early))
        },
    );
    assert!(
        h1.log().contains("history compacted"),
        "host 2 caught up without its watch being cancelled by the compaction: {}",
        h1.log()
    );
    assert!(
        c1.ping_retry(&overlay_ip(&r_late), 10),
        "host 2's container cannot reach the late one"
    );
}

#[test]
fn with_etcd_a_watch_catching_up_past_4_mb_and_a_list_past_4_mb_are_taken_in() {
    let mut cluster = Cluster::on("csbig", 2, Timings::FAST, Store::Etcd);
    let conf = overlay_conf("big", 1450, "10.236.0.0/16");
    let c1 = cluster.hosts[1].ns.container("b1");
    cluster.hosts[1].add(&conf, &c1);
    // Host 2 loses etcd; meanwhile 4.8 MB change under the prefix (keys of no kind tether knows, read
    // and skipped like any) and host 1 adds a container. Its watch resumes behind all of it: the
    // catch-up is one response larger than the client's default limit of 4 MiB.
    nft(
        &cluster,
        1,
        "table inet cut {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 2379 drop\n }\n}\n",
    );
    std::thread::sleep(Duration::from_secs(5));
    let etcd = cluster.etcd.as_ref().unwrap();
    let bulk = "x".repeat(100_000);
    for i in 0..48 {
        etcd.ctl(&["put", &format!("/tether/bulk/{i}"), &bulk]);
    }
    let late = cluster.hosts[0].ns.container("late");
    let r_late = cluster.hosts[0].add(&conf, &late);
    nft(&cluster, 1, "delete table inet cut\n");
    let h1 = &cluster.hosts[1];
    wait_until(
        "host 2 learns late from its watch's catch-up",
        Duration::from_secs(20),
        || {
            h1.fdb("tvx1450")
                .iter()
                .any(|(m, _)| *m == overlay_mac(&r_late))
        },
    );
    // A tetherd starting now lists the whole prefix (more than 4 MiB) in one response.
    cluster.hosts[1].kill_tetherd();
    let later = cluster.hosts[0].ns.container("later");
    let r_later = cluster.hosts[0].add(&conf, &later);
    cluster.hosts[1].start_tetherd();
    let h1 = &cluster.hosts[1];
    wait_until(
        "host 2, restarted, lists everything and learns later",
        Duration::from_secs(20),
        || {
            h1.fdb("tvx1450")
                .iter()
                .any(|(m, _)| *m == overlay_mac(&r_later))
        },
    );
    assert!(
        c1.ping_retry(&overlay_ip(&r_later), 10),
        "host 2's container cannot reach the later one"
    );
}

/// A container named `{tag}0` on host 0 and one named `{tag}1` on host 1, on `conf`'s network, that reach
/// each other before an outage: their namespaces and ADD results.
fn one_on_each_of_two(cluster: &Cluster, conf: &Value, tag: &str) -> ([NetNs; 2], [Value; 2]) {
    let c0 = cluster.hosts[0].ns.container(&format!("{tag}0"));
    let c1 = cluster.hosts[1].ns.container(&format!("{tag}1"));
    let r0 = cluster.hosts[0].add(conf, &c0);
    let r1 = cluster.hosts[1].add(conf, &c1);
    assert!(
        c0.ping_retry(&overlay_ip(&r1), 10),
        "no traffic before the outage"
    );
    ([c0, c1], [r0, r1])
}

#[test]
fn etcd_down_for_30_seconds_keeps_owned_blocks_working_refuses_new_blocks_with_11_and_converges() {
    let mut cluster = Cluster::on("csdown", 2, Timings::FAST, Store::Etcd);
    let conf = overlay_conf("down", 1500, "10.234.0.0/16");
    let ([_c0, c1], [r0, _r1]) = one_on_each_of_two(&cluster, &conf, "d");

    cluster.etcd.as_mut().unwrap().kill_member(0);
    let started = std::time::Instant::now();
    // Inside the host's own block: ADD and DEL work.
    let during = cluster.hosts[0].ns.container("during");
    let r_during = cluster.hosts[0].add(&conf, &during);
    let gone = cluster.hosts[0].ns.container("gone");
    cluster.hosts[0].add(&conf, &gone);
    cluster.hosts[0].del(&conf, &gone);
    // A new block (another network's first ADD on this host) needs the store: code 11, no guess.
    let other = overlay_conf("down2", 1501, "10.235.0.0/16");
    let fresh = cluster.hosts[0].ns.container("fresh");
    let refused = cluster.hosts[0].try_add(&other, &fresh);
    assert_eq!(
        refused.error_code(),
        Some(11),
        "a new block without etcd: {} {}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stdout.contains("did not confirm"),
        "{}",
        refused.stdout
    );
    assert!(
        cluster.hosts[0]
            .own_claims("down2")
            .iter()
            .all(|(_, s)| s == "pending"),
        "a block was used without etcd"
    );
    // The FDB keeps what it had.
    let h1 = &cluster.hosts[1];
    std::thread::sleep(Duration::from_secs(30).saturating_sub(started.elapsed()));
    assert!(
        h1.fdb("tvx1500")
            .iter()
            .any(|(m, _)| *m == overlay_mac(&r0)),
        "host 2 dropped host 1's container while etcd was down"
    );
    assert!(
        c1.ping(&overlay_ip(&r0)),
        "traffic stopped while etcd was down"
    );

    cluster.etcd.as_mut().unwrap().start_member(0);
    cluster.etcd.as_ref().unwrap().wait_healthy();
    wait_until(
        "host 2 learns the container added during the outage",
        Duration::from_secs(20),
        || {
            h1.fdb("tvx1500")
                .iter()
                .any(|(m, _)| *m == overlay_mac(&r_during))
        },
    );
    let again = cluster.hosts[0].add(&other, &fresh);
    let block: ipnetwork::Ipv4Network = cluster.hosts[0].own_claims("down2")[0].0.parse().unwrap();
    assert!(block.contains(overlay_ip(&again).parse().unwrap()));
    assert!(
        c1.ping_retry(&overlay_ip(&r_during), 10),
        "the container added during the outage is unreachable after it"
    );
}

#[test]
fn a_three_member_etcd_cluster_losing_one_member_disturbs_nothing() {
    let mut cluster = Cluster::on("cs3m", 3, Timings::FAST, Store::Etcd3);
    let conf = overlay_conf("three", 1600, "10.236.0.0/16");
    let c0 = cluster.hosts[0].ns.container("t0");
    let r0 = cluster.hosts[0].add(&conf, &c0);
    cluster.etcd.as_mut().unwrap().kill_member(0);
    // Every host keeps working: new containers, a new network's first block, records spreading.
    let mut ips = vec![overlay_ip(&r0)];
    let mut containers = vec![c0];
    for (i, h) in cluster.hosts.iter().enumerate().skip(1) {
        let c = h.ns.container(&format!("t{i}"));
        ips.push(overlay_ip(&h.add(&conf, &c)));
        containers.push(c);
    }
    let other = overlay_conf("three2", 1601, "10.237.0.0/16");
    let n = cluster.hosts[2].ns.container("n2");
    cluster.hosts[2].add(&other, &n);
    assert!(
        cluster.hosts[2]
            .own_claims("three2")
            .iter()
            .all(|(_, s)| s == "confirmed"),
        "the new block was not confirmed by the remaining members"
    );
    for (i, c) in containers.iter().enumerate() {
        for (j, ip) in ips.iter().enumerate() {
            if i != j {
                assert!(c.ping_retry(ip, 10), "container {i} cannot reach {ip}");
            }
        }
    }
    assert_no_address_or_block_twice(&cluster, "three", &ips);
    cluster.wait_for_members(2);
}

/// Nine containers `<prefix>0..8` on `host`: past half of a 16-address block, so tetherd claims a spare.
fn past_half_a_block(
    host: &harness::overlay_cluster::Host,
    conf: &serde_json::Value,
    prefix: &str,
) -> Vec<harness::NetNs> {
    (0..9)
        .map(|n| {
            let c = host.ns.container(&format!("{prefix}{n}"));
            host.add(conf, &c);
            c
        })
        .collect()
}

/// `tether` run on host 2.
fn cli(cluster: &Cluster) -> harness::tether_cli::TetherCli<'_> {
    harness::tether_cli::TetherCli::new(&cluster.hosts[1].ns)
}

/// The hosts' blocks of `network` as etcd has them: block key tail -> holder.
fn etcd_blocks(cluster: &Cluster, network: &str) -> BTreeMap<String, String> {
    let out = cluster.etcd.as_ref().unwrap().ctl(&[
        "get",
        "--prefix",
        &format!("/tether/blocks/{network}/"),
        "-w",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut blocks = BTreeMap::new();
    for kv in v["kvs"].as_array().into_iter().flatten() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = String::from_utf8(b64.decode(kv["key"].as_str().unwrap()).unwrap()).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&b64.decode(kv["value"].as_str().unwrap()).unwrap()).unwrap();
        let tail = key.rsplit('/').next().unwrap().to_string();
        blocks.insert(tail, value["host"].as_str().unwrap().to_string());
    }
    blocks
}

#[test]
fn with_etcd_a_dual_stack_host_claims_a_spare_block_of_each_family_ahead_and_adds_past_them_need_no_store(
) {
    let mut cluster = Cluster::on("cssix", 2, Timings::FAST, Store::Etcd);
    // /28 and /124 blocks: 16 addresses each; below 8 free in a family, its next block is claimed.
    let mut conf = overlay_conf("six", 1701, "10.239.0.0/24");
    conf["subnet"] = serde_json::json!(["10.239.0.0/24", "fd00:239::/64"]);
    conf["blockSize"] = serde_json::json!(28);
    conf["blockSizeV6"] = serde_json::json!(124);
    let h1 = &cluster.hosts[1];
    let mut containers = Vec::new();
    for n in 0..9 {
        let c = h1.ns.container(&format!("s{n}"));
        h1.add(&conf, &c);
        containers.push(c);
    }
    let me = h1.addr.clone();
    let confirmed = |v6: bool| {
        h1.own_claims("six")
            .iter()
            .filter(|(b, s)| s == "confirmed" && b.contains(':') == v6)
            .count()
    };
    wait_until(
        "host 2 holds a spare confirmed block of each family",
        Duration::from_secs(10),
        || confirmed(false) == 2 && confirmed(true) == 2,
    );
    let in_etcd = etcd_blocks(&cluster, "six");
    let v6_keys: Vec<&String> = in_etcd
        .iter()
        .filter(|(k, h)| k.contains(':') && **h == me)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(v6_keys.len(), 2, "etcd lacks the IPv6 blocks: {in_etcd:?}");
    assert!(
        v6_keys
            .iter()
            .all(|k| k.starts_with("fd00:239:") && k.ends_with("_124")),
        "{v6_keys:?}"
    );

    // etcd gone: ADDs past the first blocks take both addresses from the spares, no store on their path.
    cluster.etcd.as_mut().unwrap().kill_member(0);
    let h1 = &cluster.hosts[1];
    let mut ips = Vec::new();
    for n in 9..20 {
        let c = h1.ns.container(&format!("s{n}"));
        let out = h1.try_add(&conf, &c);
        assert!(
            out.success(),
            "ADD {n} failed while the spare blocks had room: {}",
            out.stdout
        );
        ips.extend(harness::overlay_cluster::overlay_ips(&out.stdout_json));
        containers.push(c);
    }
    assert_eq!(ips.len(), 22, "an address of each family per ADD: {ips:?}");
    assert_no_address_or_block_twice(&cluster, "six", &ips);
}

#[test]
fn with_etcd_a_dead_hosts_empty_ipv6_block_is_reclaimed_after_the_grace_and_its_used_one_is_not() {
    let mut cluster = Cluster::on("csgr6", 2, Timings::FAST, Store::Etcd);
    // /124 blocks: 16 addresses; below 8 free, tetherd claims the next block in the background.
    let mut conf = overlay_conf("grace6", 1702, "fd00:240::/64");
    conf["blockSizeV6"] = serde_json::json!(124);
    let h0 = &cluster.hosts[0];
    let dead = h0.addr.clone();
    let held = past_half_a_block(h0, &conf, "g");
    wait_until(
        "host 1 holds a spare IPv6 block it has not needed yet",
        Duration::from_secs(10),
        || {
            let claims = h0.own_claims("grace6");
            claims.len() == 2
                && claims
                    .iter()
                    .all(|(b, s)| s == "confirmed" && b.starts_with("fd00:240:"))
        },
    );
    let used_block = h0.own_claims("grace6")[0].0.replace('/', "_");
    let of_dead = |blocks: &BTreeMap<String, String>| -> Vec<String> {
        blocks
            .iter()
            .filter(|(_, h)| **h == dead)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let before = of_dead(&etcd_blocks(&cluster, "grace6"));
    assert!(
        before.len() == 2 && before.contains(&used_block),
        "etcd lacks host 1's IPv6 blocks ({used_block} used): {before:?}"
    );

    cluster.hosts[0].kill_tetherd();
    wait_until(
        "the dead host's empty IPv6 block is released after the grace",
        Duration::from_millis(
            Timings::FAST.claim_grace_ms + harness::overlay_cluster::LEASE_TTL_S_FAST * 1000 + 8000,
        ),
        || of_dead(&etcd_blocks(&cluster, "grace6")).len() < 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        of_dead(&etcd_blocks(&cluster, "grace6")),
        vec![used_block.clone()],
        "the dead host's IPv6 block with containers in it was released, or the empty one came back"
    );
    drop(held);
}

#[test]
fn with_etcd_blocks_are_claimed_ahead_so_adds_past_a_block_need_no_store_and_a_dead_hosts_empty_ones_are_reclaimed(
) {
    let mut cluster = Cluster::on("csahead", 2, Timings::FAST, Store::Etcd);
    // /28 blocks: 16 addresses; below 8 free, tetherd claims the next block in the background.
    let mut conf = overlay_conf("ahead", 1700, "10.238.0.0/24");
    conf["blockSize"] = serde_json::json!(28);
    let h1 = &cluster.hosts[1];
    let mut containers = Vec::new();
    for n in 0..9 {
        let c = h1.ns.container(&format!("a{n}"));
        h1.add(&conf, &c);
        containers.push(c);
    }
    let me = h1.addr.clone();
    wait_until(
        "host 2 holds a spare confirmed block it has not needed yet",
        Duration::from_secs(10),
        || {
            let claims = h1.own_claims("ahead");
            claims.len() == 2 && claims.iter().all(|(_, s)| s == "confirmed")
        },
    );
    assert_eq!(
        etcd_blocks(&cluster, "ahead")
            .values()
            .filter(|h| **h == me)
            .count(),
        2,
        "etcd lacks the spare block"
    );

    // etcd gone: ADDs past the first block come from the spare, with no store on their path.
    cluster.etcd.as_mut().unwrap().kill_member(0);
    let h1 = &cluster.hosts[1];
    for n in 9..20 {
        let c = h1.ns.container(&format!("a{n}"));
        let out = h1.try_add(&conf, &c);
        assert!(
            out.success(),
            "ADD {n} failed while the spare block had room: {}",
            out.stdout
        );
        containers.push(c);
    }
    cluster.etcd.as_mut().unwrap().start_member(0);
    cluster.etcd.as_ref().unwrap().wait_healthy();

    // Host 1 claims ahead too, then dies: past the grace its empty spare block is released, the one with
    // containers stays its own (no renumbering) until `tether cluster forget`.
    let h0 = &cluster.hosts[0];
    let dead = h0.addr.clone();
    let held = past_half_a_block(h0, &conf, "b");
    wait_until(
        "host 1 holds a spare block",
        Duration::from_secs(10),
        || {
            h0.own_claims("ahead")
                .iter()
                .filter(|(_, s)| s == "confirmed")
                .count()
                == 2
        },
    );
    let used_block = h0.own_claims("ahead")[0].0.replace('/', "_");

    // `tether cluster status` shows the store, both hosts and the blocks.
    wait_until(
        "status shows etcd reachable and host 1's blocks",
        Duration::from_secs(15),
        || {
            let out = cli(&cluster).run(&["cluster", "status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v["store"] == "etcd"
                && v["sync"]["reachable"] == true
                && v["blocks"][&dead].as_array().is_some_and(|b| b.len() == 2)
        },
    );
    let text = String::from_utf8(cli(&cluster).run(&["cluster", "status"]).stdout).unwrap();
    assert!(
        text.contains("store: etcd") && text.contains(&dead),
        "{text}"
    );
    let refused = cli(&cluster).run(&["cluster", "forget", &dead]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("is up"),
        "forget of a live host: {}",
        String::from_utf8_lossy(&refused.stderr)
    );

    cluster.hosts[0].kill_tetherd();
    wait_until(
        "the dead host's empty spare block is released after the grace",
        Duration::from_millis(
            Timings::FAST.claim_grace_ms + harness::overlay_cluster::LEASE_TTL_S_FAST * 1000 + 8000,
        ),
        || {
            etcd_blocks(&cluster, "ahead")
                .values()
                .filter(|h| **h == dead)
                .count()
                == 1
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let left = etcd_blocks(&cluster, "ahead");
    assert_eq!(
        left.get(&used_block),
        Some(&dead),
        "the dead host's block with containers was released: {left:?}"
    );

    let out = cli(&cluster).run(&["cluster", "forget", &dead]);
    assert!(
        out.status.success(),
        "forget: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !etcd_blocks(&cluster, "ahead").values().any(|h| *h == dead),
        "forget left the host's blocks"
    );
    assert!(
        cluster
            .etcd
            .as_ref()
            .unwrap()
            .keys(&format!("/tether/records/{dead}/"))
            .is_empty(),
        "forget left the host's records"
    );
    drop(held);
}

#[test]
fn etcd_over_tls_with_client_certificates_carries_the_cluster() {
    let cluster = Cluster::on("cstls", 2, Timings::FAST, Store::EtcdTls);
    let conf = overlay_conf("tls", 1800, "10.239.0.0/16");
    let c0 = cluster.hosts[0].ns.container("s0");
    let c1 = cluster.hosts[1].ns.container("s1");
    cluster.hosts[0].add(&conf, &c0);
    let r1 = cluster.hosts[1].add(&conf, &c1);
    assert!(
        c0.ping_retry(&overlay_ip(&r1), 10),
        "no traffic over a cluster kept in etcd over TLS"
    );
    let keys = cluster.etcd.as_ref().unwrap().keys("/tether/");
    assert!(
        keys.iter().any(|k| k.starts_with("/tether/blocks/tls/")),
        "no block in etcd: {keys:?}"
    );
}

/// SIGCONTs a SIGSTOPped etcd when dropped, so a failing test leaves no member stopped.
struct Stopped(u32);

impl Stopped {
    fn signal(pid: u32, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn stop(pid: u32) -> Stopped {
        Stopped::signal(pid, "-STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        Stopped::signal(self.0, "-CONT");
    }
}

/// Restarts host `host`'s tetherd with its etcd lease at `seconds` (the harness's is 2 s).
fn restart_with_lease_ttl(cluster: &mut Cluster, host: usize, seconds: u64) {
    let host = &mut cluster.hosts[host];
    host.kill_tetherd();
    let path = host.config_path();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["overlay"]["store"]["etcd"]["leaseTtlSeconds"] = serde_json::json!(seconds);
    std::fs::write(&path, config.to_string()).unwrap();
    host.start_tetherd();
}

/// The lease id (decimal, as etcdctl's JSON has it) this host's liveness key is on.
fn liveness_lease(cluster: &Cluster, host: usize) -> i64 {
    liveness_key(cluster, host).0
}

#[test]
fn with_etcd_a_call_timing_out_keeps_the_session_and_the_lease() {
    let mut cluster = Cluster::on("cskeep", 1, Timings::FAST, Store::Etcd);
    // A lease of 20 s (the harness's is 2 s): etcd stopped for 4.5 s outlives a call's 3 s timeout,
    // not the lease.
    restart_with_lease_ttl(&mut cluster, 0, 20);
    let conf = overlay_conf("slow", 1700, "10.237.0.0/16");
    let c0 = cluster.hosts[0].ns.container("s0");
    cluster.hosts[0].add(&conf, &c0);
    // The first tetherd's 2 s lease is gone by now; the key is on the new one.
    std::thread::sleep(Duration::from_secs(3));
    let lease = liveness_lease(&cluster, 0);

    // etcd stops answering; meanwhile an ADD inside the owned block publishes a record, whose
    // transaction times out.
    let etcd_pid = cluster.etcd.as_ref().unwrap().pid();
    let stopped = Stopped::stop(etcd_pid);
    let c1 = cluster.hosts[0].ns.container("s1");
    let r1 = cluster.hosts[0].add(&conf, &c1);
    std::thread::sleep(Duration::from_millis(4500));
    drop(stopped);

    let record = format!(
        "/tether/records/{}/slow/endpoint/{}",
        cluster.hosts[0].addr,
        overlay_ip(&r1)
    );
    let etcd = cluster.etcd.as_ref().unwrap();
    wait_until(
        "the record written during the stop reaches etcd",
        Duration::from_secs(20),
        || etcd.keys(&record).len() == 1,
    );
    let log = cluster.hosts[0].log();
    assert_eq!(
        liveness_lease(&cluster, 0),
        lease,
        "the session ended (a new lease) for one timed-out call: {log}"
    );
    assert!(
        log.contains("an etcd call failed; the session stays"),
        "no call failed while etcd was stopped, the test proved nothing: {log}"
    );
}

#[test]
fn with_etcd_a_long_lease_keeps_an_idle_connection_open() {
    let mut cluster = Cluster::on("csidle", 1, Timings::FAST, Store::Etcd);
    // A 30 s lease is renewed every 10 s: in between the connection carries nothing but tetherd's
    // pings, and etcd closes a connection pinged more often than every 5 s three times in a row.
    restart_with_lease_ttl(&mut cluster, 0, 30);
    std::thread::sleep(Duration::from_secs(3));
    let lease = liveness_lease(&cluster, 0);
    // Two renewal periods and a half at rest.
    std::thread::sleep(Duration::from_secs(25));
    let log = cluster.hosts[0].log();
    assert!(
        log.contains("etcd reachable"),
        "the session never started, the test proved nothing: {log}"
    );
    assert!(
        !log.contains("etcd unreachable") && !log.contains("session resumed"),
        "etcd closed the idle connection and the session began again: {log}"
    );
    assert_eq!(liveness_lease(&cluster, 0), lease, "a new lease: {log}");
}

/// Host `host`'s liveness key as `etcdctl get --write-out=json` shows it (its raw text too).
fn liveness_get(cluster: &Cluster, host: usize) -> (Value, String) {
    let key = format!("/tether/hosts/{}", cluster.hosts[host].addr);
    let out = cluster
        .etcd
        .as_ref()
        .unwrap()
        .ctl(&["get", "--write-out=json", &key]);
    (serde_json::from_str(&out).unwrap_or(Value::Null), out)
}

/// The lease id and mod revision of host `host`'s liveness key.
fn liveness_key(cluster: &Cluster, host: usize) -> (i64, i64) {
    let (v, out) = liveness_get(cluster, host);
    let field = |f: &str| {
        v["kvs"][0][f]
            .as_i64()
            .unwrap_or_else(|| panic!("no {f} of host {host}'s liveness key: {out}"))
    };
    (field("lease"), field("mod_revision"))
}

#[test]
fn with_etcd_a_session_ended_by_a_broken_connection_resumes_on_the_same_lease_without_putting_the_liveness_key(
) {
    let mut cluster = Cluster::on("cslease", 1, Timings::FAST, Store::Etcd);
    // A lease of 20 s (the harness's is 2 s): the cut below ends the session, not the lease.
    restart_with_lease_ttl(&mut cluster, 0, 20);
    // The first tetherd's 2 s lease is gone by now; the key is on the new one.
    std::thread::sleep(Duration::from_secs(3));
    let before = liveness_key(&cluster, 0);
    let ended_before = cluster.hosts[0].log().matches("etcd unreachable").count();

    // Every packet to etcd is answered with a reset: the connection itself breaks (the session ends,
    // not just a call), and reconnecting fails until the cut is lifted, well within the lease.
    nft(
        &cluster,
        0,
        "table inet cut {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 2379 reject with tcp reset\n }\n}\n",
    );
    wait_until(
        "the session ends on the broken connection",
        Duration::from_secs(15),
        || cluster.hosts[0].log().matches("etcd unreachable").count() > ended_before,
    );
    std::thread::sleep(Duration::from_secs(2));
    nft(&cluster, 0, "delete table inet cut\n");
    wait_until("a new session answers", Duration::from_secs(15), || {
        let log = cluster.hosts[0].log();
        log.rfind("etcd reachable") > log.rfind("etcd unreachable")
    });
    // A few keep-alive periods on the new session.
    std::thread::sleep(Duration::from_secs(3));
    let log = cluster.hosts[0].log();
    assert_eq!(
        liveness_key(&cluster, 0),
        before,
        "the new session took a new lease or put the liveness key again (lease id, mod revision): {log}"
    );
    assert!(
        log.contains("etcd session resumed on this host's lease"),
        "no session was resumed: {log}"
    );
}

/// Host `i`'s `tether cluster status --json`.
fn status_of(cluster: &Cluster, i: usize) -> serde_json::Value {
    let out = harness::tether_cli::TetherCli::new(&cluster.hosts[i].ns)
        .run(&["cluster", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn with_etcd_no_host_watches_block_claims_yet_status_lists_every_hosts_blocks_and_no_block_is_picked_twice(
) {
    // A fleet's claims were delivered by the watch to every host (N² deliveries): the watch now carries
    // hosts and records only; a host reads the claims when it needs them.
    let cluster = Cluster::on("cswatch", 3, Timings::FAST, Store::Etcd);
    cluster.wait_for_members(2);
    // /28 blocks; every host's first pick is the same block (`startBlockKey`), so host 2 and 3 pick
    // host 1's, which their watches never told them of.
    let mut conf = overlay_conf("wat", 1703, "10.241.0.0/26");
    conf["blockSize"] = serde_json::json!(28);
    conf["startBlockKey"] = "wat".into();
    let a = &cluster.hosts[0];
    let mut containers = Vec::new();
    let mut ips = Vec::new();
    for n in 0..9 {
        let c = a.ns.container(&format!("w{n}"));
        ips.push(overlay_ip(&a.add(&conf, &c)));
        containers.push(c);
    }
    wait_until(
        "host 1 holds two confirmed blocks (one claimed ahead)",
        Duration::from_secs(10),
        || {
            let claims = a.own_claims("wat");
            claims.len() == 2 && claims.iter().all(|(_, s)| s == "confirmed")
        },
    );
    let a_blocks: BTreeSet<String> = a
        .own_claims("wat")
        .into_iter()
        .map(|(b, _)| format!("wat {b}"))
        .collect();
    for (i, h) in cluster.hosts.iter().enumerate().skip(1) {
        let c = h.ns.container(&format!("x{i}"));
        // A lost compare-and-swap gives the pending claim up and fails the ADD with "try again later";
        // the runtime's retry picks another block once the host has read the network's claims.
        let mut out = h.try_add(&conf, &c);
        for _ in 0..10 {
            if out.success() {
                break;
            }
            assert_eq!(out.error_code(), Some(11), "{}", out.stdout);
            std::thread::sleep(Duration::from_millis(500));
            out = h.try_add(&conf, &c);
        }
        assert!(out.success(), "host {} ADD: {}", i + 1, out.stdout);
        ips.push(overlay_ip(out.result()));
        containers.push(c);
    }
    assert_no_address_or_block_twice(&cluster, "wat", &ips);
    // Host 2 did pick host 1's block (its view had none of host 1's claims), and lost the compare.
    assert!(
        cluster.hosts[1]
            .log()
            .contains("the block is another host's in etcd"),
        "host 2 never picked a block etcd gave host 1: the case was not exercised"
    );
    for h in &cluster.hosts[1..] {
        for (block, _) in h.own_claims("wat") {
            assert!(
                !a_blocks.contains(&format!("wat {block}")),
                "{} claims host 1's {block}",
                h.addr
            );
        }
    }
    // Host 1's records reached host 2 by the watch...
    wait_until(
        "host 2 has host 1's nine endpoint records",
        Duration::from_secs(10),
        || status_of(&cluster, 1)["records"]["wat"].as_u64() >= Some(9),
    );
    for i in 0..3 {
        let v = status_of(&cluster, i);
        let events = &v["sync"]["watchEvents"];
        // ...and no host's watch carried one block key, its own claims included.
        assert_eq!(events["blocks"], 0, "host {}: {v}", i + 1);
        assert!(events["hosts"].as_u64() > Some(0), "host {}: {v}", i + 1);
        assert!(events["records"].as_u64() >= Some(9), "host {}: {v}", i + 1);
    }
    // Yet host 2's status lists every host's blocks, as etcd has them.
    let v = status_of(&cluster, 1);
    let listed = |host: &str| -> BTreeSet<String> {
        v["blocks"][host]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(listed(&a.addr), a_blocks, "{v}");
    let in_etcd = etcd_blocks(&cluster, "wat");
    for h in &cluster.hosts {
        let held: BTreeSet<String> = in_etcd
            .iter()
            .filter(|(_, holder)| **holder == h.addr)
            .map(|(tail, _)| format!("wat {}", tail.replace('_', "/")))
            .collect();
        assert!(!held.is_empty(), "{} holds no block in etcd", h.addr);
        assert_eq!(listed(&h.addr), held, "host {} in {v}", h.addr);
    }
}

/// The lease id of host `host`'s liveness key, if it has one now.
fn liveness_lease_now(cluster: &Cluster, host: usize) -> Option<i64> {
    liveness_get(cluster, host).0["kvs"][0]["lease"].as_i64()
}

#[test]
fn with_etcd_stopped_longer_than_the_lease_hosts_grant_again_at_once_and_never_drop_each_others_entries(
) {
    let mut cluster = Cluster::on("csout", 2, Timings::FAST, Store::Etcd);
    // A lease of 10 s (the harness's is 2 s): a lapse counted as a refusal waits 5-15 s before the
    // next grant, one after an outage 1.5 s at most.
    for host in 0..2 {
        restart_with_lease_ttl(&mut cluster, host, 10);
    }
    let conf = overlay_conf("out", 1800, "10.238.0.0/16");
    let ([_c0, _c1], [r0, r1]) = one_on_each_of_two(&cluster, &conf, "o");
    // The first tetherds' 2 s leases are gone by now; the keys are on the 10 s ones.
    std::thread::sleep(Duration::from_secs(3));
    let before = liveness_lease(&cluster, 0);
    let has = |host: usize, mac: &str| {
        cluster.hosts[host]
            .fdb("tvx1800")
            .iter()
            .any(|(m, _)| m == mac)
    };

    // 18 s: past the lease and past the pings' 10 s + 5 s, so every connection breaks too (session 19's
    // outage at a tenth of the fleet). An ADD on host 0 meanwhile publishes a record.
    let stopped = Stopped::stop(cluster.etcd.as_ref().unwrap().pid());
    let during = cluster.hosts[0].ns.container("o2");
    let r_during = cluster.hosts[0].add(&conf, &during);
    std::thread::sleep(Duration::from_secs(18));
    drop(stopped);
    let continued = std::time::Instant::now();

    // etcd expired both leases; each host's entries for the other stay while they grant again.
    let mut regranted = None;
    while continued.elapsed() < Duration::from_secs(12) {
        assert!(
            has(1, &overlay_mac(&r0)) && has(0, &overlay_mac(&r1)),
            "a host dropped the other's entries {:.1} s after etcd continued: {}",
            continued.elapsed().as_secs_f64(),
            cluster.hosts[1].log()
        );
        if regranted.is_none() {
            if let Some(lease) = liveness_lease_now(&cluster, 0) {
                if lease != before {
                    regranted = Some(continued.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = cluster.hosts[0].log();
    let regranted = regranted.unwrap_or_else(|| {
        panic!("host 0 has no new lease 12 s after etcd continued (the old one lapsed?): {log}")
    });
    // Its session's retry pause (0.375 s at most this early) plus the re-grant's jitter (1.5 s at
    // most) and a tick; a refusal's pause is 5 s at least.
    assert!(
        regranted < Duration::from_secs(4),
        "host 0 granted its lease again {regranted:?} after etcd continued: {log}"
    );
    assert!(
        log.contains("this host's etcd lease expired"),
        "the lease never lapsed, the test proved nothing: {log}"
    );
    wait_until(
        "host 1 learns the container added during the outage",
        Duration::from_secs(10),
        || has(1, &overlay_mac(&r_during)),
    );
}

/// The etcd store tells a lease etcd no longer knows (re-grant it at once) from a broken session by the
/// client library's own error for a keep-alive answered with TTL 0 (`tether::overlay::etcd::LEASE_NOT_FOUND`).
/// This pins that error against a real etcd: a keep-alive of a revoked lease.
#[test]
fn with_etcd_a_keep_alive_of_a_revoked_lease_fails_with_the_error_the_store_reads() {
    let host = harness::HostNs::new("cslka");
    let etcd = harness::etcd::Etcd::start(&host, &["127.0.0.1"]);
    let endpoints = etcd.endpoints();
    let outcome = harness::dns_upstream::in_netns(&host, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let mut client = etcd_client::Client::connect(endpoints, None)
                .await
                .expect("connecting to the test's etcd");
            let lease = client.lease_grant(60, None).await.expect("a lease").id();
            client
                .lease_revoke(lease)
                .await
                .expect("revoking the lease");
            client.lease_keep_alive(lease).await.map(drop)
        })
    });
    match outcome {
        Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert!(
            m.contains(tether::overlay::etcd::LEASE_NOT_FOUND),
            "the client words an unknown lease {m:?}, not {:?}: update LEASE_NOT_FOUND",
            tether::overlay::etcd::LEASE_NOT_FOUND
        ),
        other => panic!(
            "a keep-alive of a revoked lease gave {other:?}, not the LeaseKeepAliveError the store reads"
        ),
    }
}
