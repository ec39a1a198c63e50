//! Services across hosts: a service created with `tether service create` on one simulated host of an
//! overlay network exists on every host through the cluster store (gossip and etcd), with the same VIP;
//! a client on another host reaches replicas on two hosts through the VIP, the replicas see the client's
//! own address, DNS answers NAME and tasks.NAME there, and a replica that goes leaves every host's maps.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use harness::overlay_cluster::{
    on_both_stores, overlay_conf, overlay_ip, wait_until, Cluster, Host, Store, Timings,
};
use harness::replica::{ask, HeldConnection, Replica};
use harness::tether_cli::TetherCli;
use harness::NetNs;
use serde_json::{json, Value};

const PORT: u16 = 8080;

fn cli(host: &Host) -> TetherCli<'_> {
    TetherCli::new(&host.ns)
}

/// The network's conflist in the host's config dir, so `tether service create --network` finds it.
fn write_conflist(host: &Host, conf: &Value) {
    let dir = cli(host).conf_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut plugin = conf.clone();
    // `tether attach --alias` reaches the plugin through the aliases capability.
    plugin["capabilities"] = json!({"aliases": true});
    let list = json!({"cniVersion": "1.1.0", "name": conf["name"], "plugins": [plugin]});
    std::fs::write(dir.join("ovl.conflist"), list.to_string()).unwrap();
}

fn inspect(host: &Host, name: &str) -> Value {
    let text = cli(host).ok(&["service", "inspect", name]);
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

/// (address, host, health) of every backend `tether service inspect` shows on `host`.
fn backends(host: &Host, name: &str) -> BTreeSet<(String, String, String)> {
    let v = inspect(host, name);
    v["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["addresses"][0].as_str().unwrap_or_default().to_string(),
                b["host"].as_str().unwrap_or_default().to_string(),
                b["health"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The service table of a client namespace as nft lists it.
fn service_table(client: &NetNs) -> String {
    String::from_utf8_lossy(
        &client
            .exec(&["nft", "list", "table", "inet", "tether_svc"])
            .stdout,
    )
    .into_owned()
}

fn dig(c: &NetNs, name: &str) -> Vec<String> {
    let out = c.exec(&["dig", "+time=2", "+tries=1", "+short", "@127.0.0.11", name]);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

/// `tether attach` of `c` to ovl on `host` as `name` with `alias`: its overlay address.
fn attach_with_cli(host: &Host, c: &NetNs, name: &str, alias: &str) -> String {
    let out = cli(host)
        .with_env("TETHER_DAEMON_CONFIG", host.config_path())
        .attach_json("ovl", c, &["--name", name, "--alias", alias]);
    let text = out.to_string();
    text.split('"')
        .filter_map(|t| t.split_once('/'))
        .map(|(addr, _)| addr)
        .find(|a| a.starts_with("10.234."))
        .unwrap_or_else(|| panic!("no overlay address in {text}"))
        .to_string()
}

on_both_stores!(a_service_made_on_one_host_balances_a_client_on_another_over_replicas_on_two_hosts);
/// Host 1 creates the service and runs replica web-1, host 2 runs web-2, host 0 runs the client (and
/// host 1 a second client): the service and its VIP reach every host through the store, the client
/// reaches both replicas through the VIP with its own address, `service ls/inspect` on every host shows
/// the backends with their hosts, and a replica detached on host 2 leaves both clients' maps.
fn a_service_made_on_one_host_balances_a_client_on_another_over_replicas_on_two_hosts(
    store: Store,
) {
    let mut cluster = Cluster::on(&store.label("svx"), 3, Timings::FAST, store);
    // Held here so the test can kill it while it borrows the hosts (the host's plugin runs still
    // reach it through its run dir).
    let h2_tetherd = cluster.hosts[2].tetherd.take();
    let conf = overlay_conf("ovl", 1500, "10.234.0.0/16");
    let mut replica_conf = conf.clone();
    replica_conf["runtimeConfig"] = json!({"aliases": ["web"]});
    let (h0, h1, h2) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    for h in &cluster.hosts {
        write_conflist(h, &conf);
    }
    let created: Value = serde_json::from_str(&cli(h1).ok(&[
        "service",
        "create",
        "--json",
        "--network",
        "ovl",
        "--port",
        &PORT.to_string(),
        "--health-interval",
        "200",
        "--health-rise",
        "1",
        "--health-fall",
        "2",
        "web",
    ]))
    .unwrap();
    let vip: IpAddr = created["vips"][0].as_str().unwrap().parse().unwrap();

    let (r1c, r2c, r3c) = (
        h1.ns.container("r1"),
        h2.ns.container("r2"),
        h2.ns.container("r3"),
    );
    let ip1 = overlay_ip(&h1.add_named(&replica_conf, &r1c, "web-1"));
    // Attached with the CLI (so `tether detach --drain` can take it down later).
    let ip2 = attach_with_cli(h2, &r2c, "web-2", "web");
    let ip3 = overlay_ip(&h2.add_named(&replica_conf, &r3c, "web-3"));
    let _replicas = [
        Replica::start(&r1c, "web-1", PORT),
        Replica::start(&r2c, "web-2", PORT),
        Replica::start(&r3c, "web-3", PORT),
    ];
    let client = h0.ns.container("client");
    let client_ip = overlay_ip(&h0.add_named(&conf, &client, "client"));
    let near_client = h1.ns.container("near");
    h1.add_named(&conf, &near_client, "near");

    // The service, with its VIP, on every host; both replicas healthy with their hosts everywhere.
    let want: BTreeSet<(String, String, String)> = [
        (ip1.clone(), h1.addr.clone(), "healthy".to_string()),
        (ip2.clone(), h2.addr.clone(), "healthy".to_string()),
        (ip3.clone(), h2.addr.clone(), "healthy".to_string()),
    ]
    .into();
    for h in &cluster.hosts {
        wait_until(
            &format!("{} shows both replicas healthy with their hosts", h.addr),
            Duration::from_secs(20),
            || backends(h, "web") == want,
        );
        let v = inspect(h, "web");
        assert_eq!(v["vips"][0], vip.to_string(), "one VIP on every host");
        let ls = cli(h).ok(&["service", "ls", "--json"]);
        assert!(ls.contains("\"web\""), "service ls on {}: {ls}", h.addr);
    }
    let origin = inspect(h0, "web")["cluster"]["origin"].clone();
    assert_eq!(
        origin,
        json!(h1.addr),
        "the copy names the host that made it"
    );
    let rm = cli(h0).run(&["service", "rm", "web"]);
    assert!(!rm.status.success(), "a copy is removed where it was made");

    // Both replicas through the VIP from host 0, each seeing the client's own address.
    let to = SocketAddr::new(vip, PORT);
    wait_until(
        "the client's map has both replicas",
        Duration::from_secs(10),
        || {
            let t = service_table(&client);
            t.contains(&ip1) && t.contains(&ip2) && t.contains(&ip3)
        },
    );
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        let (name, peer) = ask(&client, to).expect("through the VIP");
        assert_eq!(
            peer.split(':').next().unwrap(),
            client_ip,
            "the replica sees the client's own address"
        );
        seen.insert(name);
    }
    assert_eq!(
        seen,
        ["web-1", "web-2", "web-3"].map(String::from).into(),
        "both hosts' replicas answer"
    );
    // Each slot counted the connections it sent: on host 0 (its client made them all) they add up.
    let counts: Vec<u64> = inspect(h0, "web")["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["connections"].as_u64().expect("a count per backend"))
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 60, "{counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    let near: u64 = inspect(h1, "web")["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["connections"].as_u64())
        .sum();
    assert_eq!(near, 0, "host 1's client made none");

    // Doctor on the client's host takes the other hosts' replicas in the slots for containers.
    let doctor = cli(h0).run(&["doctor", "--json"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        !report.contains("which no container holds"),
        "doctor flags remote replicas: {report}"
    );

    // DNS on the client's host: the VIP, and the replicas of both hosts.
    assert_eq!(dig(&client, "web"), vec![vip.to_string()]);
    let mut tasks = vec![ip1.clone(), ip2.clone(), ip3.clone()];
    tasks.sort();
    assert_eq!(dig(&client, "tasks.web"), tasks);

    // Replica 2 is detached with --drain on host 2: it leaves the maps of the clients on host 0 and
    // host 1 at once, while a connection the client on host 0 holds to it goes on until it closes.
    let held = (0..50)
        .map(|_| HeldConnection::open(&client, to).unwrap())
        .find(|h| h.greeting.starts_with("web-2 "))
        .expect("some connection reaches web-2");
    std::thread::scope(|s| {
        let detach = s.spawn(|| {
            cli(h2)
                .with_env("TETHER_DAEMON_CONFIG", h2.config_path())
                .run(&["detach", "--drain", "30", "--network", "ovl", &r2c.label])
        });
        let started = Instant::now();
        for (label, c) in [("host 0", &client), ("host 1", &near_client)] {
            wait_until(
                &format!("draining web-2 leaves the map of the client on {label}"),
                Duration::from_secs(10),
                || !service_table(c).contains(&ip2),
            );
            eprintln!(
                "{store:?}: draining web-2 left the map on {label} {} ms after the drain began",
                started.elapsed().as_millis()
            );
        }
        for _ in 0..20 {
            let (name, _) = ask(&client, to).expect("through the VIP");
            assert_ne!(name, "web-2", "no new flow to a draining replica");
        }
        assert_eq!(held.say("still there?").unwrap(), "web-2:still there?");
        assert!(
            !detach.is_finished(),
            "the detach waits for the open connection"
        );
        drop(held);
        let out = detach.join().unwrap();
        harness::drain::assert_drained(&out);
    });
    assert!(!r2c.has_link("eth0"), "detached after the drain");
    let mut tasks = vec![ip1.clone(), ip3.clone()];
    tasks.sort();
    assert_eq!(dig(&client, "tasks.web"), tasks);
    wait_until(
        "host 0 shows web-1 and web-3",
        Duration::from_secs(10),
        || backends(h0, "web").len() == 2,
    );

    // Host 2 dies (its tetherd killed, as a crash): once host 0 knows, web-3 leaves the maps too.
    drop(h2_tetherd);
    let down = Instant::now();
    let h2_addr = h2.addr.clone();
    wait_until("host 0 sees host 2 down", Duration::from_secs(15), || {
        !h0.overlay_status()["membersUp"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| {
                m.as_str()
                    .is_some_and(|m| m.starts_with(&format!("{h2_addr}:")))
            })
    });
    let known = down.elapsed();
    wait_until(
        "web-3 leaves the map of the client on host 0",
        Duration::from_secs(10),
        || !service_table(&client).contains(&ip3),
    );
    eprintln!(
        "{store:?}: host 2 seen down {} ms after its kill; web-3 left host 0's map {} ms after that",
        known.as_millis(),
        (down.elapsed() - known).as_millis()
    );
    for _ in 0..10 {
        let (name, _) = ask(&client, to).expect("through the VIP");
        assert_eq!(name, "web-1");
    }

    // Removed on the host that made it: gone from every host.
    cli(h1).ok(&["service", "rm", "web"]);
    // (Host 2 is down: host 0 is the one left to check.)
    wait_until(
        "host 0 forgets the service",
        Duration::from_secs(10),
        || !cli(h0).ok(&["service", "ls", "--json"]).contains("\"web\""),
    );
}

/// The VIP of `name` as `service ls --json` on `host` has it; None when the host lacks the service.
fn vip_on(host: &Host, name: &str) -> Option<String> {
    let list: Value = serde_json::from_str(&cli(host).ok(&["service", "ls", "--json"])).unwrap();
    list.as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["vips"][0].as_str().map(str::to_string))
}

on_both_stores!(two_hosts_that_took_one_vip_end_with_the_earlier_service_keeping_it);
/// Host 1 creates `late` on the VIP host 0's `early` took while host 1's tetherd was down; once it is back
/// the two hosts agree: `early` keeps the VIP, `late` moves, and both hosts list both the same way.
fn two_hosts_that_took_one_vip_end_with_the_earlier_service_keeping_it(store: Store) {
    let mut cluster = Cluster::on(&store.label("svv"), 2, Timings::FAST, store);
    let conf = overlay_conf("ovl", 1501, "10.235.0.0/16");
    for h in &cluster.hosts {
        write_conflist(h, &conf);
    }
    cluster.hosts[1].kill_tetherd();
    let create = |h: &Host, name: &str| {
        cli(h).with_env("TETHER_DAEMON_BIN", "/bin/true").ok(&[
            "service",
            "create",
            "--network",
            "ovl",
            "--port",
            "80",
            "--health",
            "none",
            "--vip",
            "10.96.0.50",
            name,
        ]);
    };
    create(&cluster.hosts[0], "early");
    std::thread::sleep(Duration::from_millis(20));
    create(&cluster.hosts[1], "late");
    cluster.hosts[1].start_tetherd();
    cluster.wait_for_members(1);
    let vip = "10.96.0.50".to_string();
    for h in &cluster.hosts {
        wait_until(
            &format!("{} lists early on the VIP and late moved", h.addr),
            Duration::from_secs(15),
            || {
                vip_on(h, "early") == Some(vip.clone())
                    && vip_on(h, "late").is_some_and(|v| v != vip)
            },
        );
    }
    assert_eq!(
        vip_on(&cluster.hosts[0], "late"),
        vip_on(&cluster.hosts[1], "late"),
        "one VIP for late on both hosts"
    );
}

on_both_stores!(
    a_service_on_a_dual_stack_overlay_reaches_a_replica_on_another_host_through_each_vip
);
/// A dual-stack overlay: the service gets a VIP of each family on every host, and a client on host 0
/// reaches the replica on host 1 through both, seen with its own address of that family.
fn a_service_on_a_dual_stack_overlay_reaches_a_replica_on_another_host_through_each_vip(
    store: Store,
) {
    let cluster = Cluster::on(&store.label("svd"), 2, Timings::FAST, store);
    let mut conf = overlay_conf("ovl", 1502, "10.236.0.0/16");
    conf["subnet"] = json!(["10.236.0.0/16", "fd00:236::/64"]);
    let mut replica_conf = conf.clone();
    replica_conf["runtimeConfig"] = json!({"aliases": ["web"]});
    let (h0, h1) = (&cluster.hosts[0], &cluster.hosts[1]);
    for h in &cluster.hosts {
        write_conflist(h, &conf);
    }
    let created: Value = serde_json::from_str(&cli(h1).ok(&[
        "service",
        "create",
        "--json",
        "--network",
        "ovl",
        "--port",
        &PORT.to_string(),
        "web",
    ]))
    .unwrap();
    let vips: Vec<IpAddr> = created["vips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        vips.len() == 2 && vips[0].is_ipv4() && vips[1].is_ipv6(),
        "a VIP of each family: {created}"
    );
    let r = h1.ns.container("r1");
    h1.add_named(&replica_conf, &r, "web-1");
    let _replica = Replica::start(&r, "web-1", PORT);
    let client = h0.ns.container("client");
    let client_ips = harness::overlay_cluster::overlay_ips(&h0.add_named(&conf, &client, "client"));
    for (vip, own) in vips.iter().zip(&client_ips) {
        let to = SocketAddr::new(*vip, PORT);
        let deadline = Instant::now() + Duration::from_secs(15);
        let answer = loop {
            match ask(&client, to) {
                Ok(a) => break a,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("{e}; client table:\n{}", service_table(&client)),
            }
        };
        assert_eq!(answer.0, "web-1");
        assert!(
            answer.1.contains(own.as_str()),
            "through {vip} the replica saw {} instead of the client's {own}",
            answer.1
        );
    }
}
