//! Services end to end: `tether service create` on a network made by `tether network create`, replicas
//! attached with `tether attach --alias`, tetherd balancing the VIP inside each client's namespace,
//! probing the replicas and answering the names. Real traffic from threads inside the test's container
//! namespaces (harness/replica.rs); each test has its own host namespace, state and tetherd.

#[path = "harness/mod.rs"]
mod harness;

use harness::replica::{ask, ask_udp, HeldConnection, Replica};
use harness::switch_segment::{SwitchSegment, SEGMENT_SUBNET};
use harness::tether_cli::TetherCli;
use harness::{HostNs, NetNs};
use serde_json::Value;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

fn cli(host: &HostNs) -> TetherCli<'_> {
    TetherCli::without_upstreams(host, r#"{"idleGraceMs": 500}"#)
}

/// Attaches `c` to `network` as `name` with `aliases`; its first address of each family.
fn attach(cli: &TetherCli, network: &str, c: &NetNs, name: &str, aliases: &[&str]) -> Vec<IpAddr> {
    let mut extra = vec!["--name", name];
    for a in aliases {
        extra.extend(["--alias", a]);
    }
    let out = cli.attach_json(network, c, &extra);
    let text = out.to_string();
    // The attachment's addresses, whatever the shape around them: every "a.b.c.d/n" and "x::y/n" string.
    let mut ips = Vec::new();
    for token in text.split('"') {
        if let Some((addr, _)) = token.split_once('/') {
            if let Ok(ip) = addr.parse::<IpAddr>() {
                // Routes (0.0.0.0/0) are not addresses.
                if !ip.is_unspecified() && !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }
    assert!(!ips.is_empty(), "no address in {text}");
    ips
}

fn inspect(cli: &TetherCli, name: &str) -> Value {
    let text = cli.ok(&["service", "inspect", name]);
    let v: Value = serde_json::from_str(&text).unwrap();
    v[0].clone()
}

/// Waits (up to 20 s) until `count` backends of the service are healthy.
fn wait_healthy(cli: &TetherCli, name: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = inspect(cli, name);
        let healthy = v["backends"]
            .as_array()
            .map(|b| b.iter().filter(|b| b["health"] == "healthy").count())
            .unwrap_or(0);
        if healthy == count {
            return v;
        }
        assert!(Instant::now() < deadline, "never {count} healthy: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn health_of(v: &Value, container: &str) -> String {
    v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["containerId"] == container)
        .map(|b| b["health"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// `dig +short NAME TYPE` at 127.0.0.11 from inside `c`, sorted.
fn dig(c: &NetNs, name: &str, qtype: &str) -> Vec<String> {
    let out = c.exec(&[
        "dig",
        "+time=3",
        "+tries=1",
        "+short",
        "@127.0.0.11",
        name,
        qtype,
    ]);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

fn vip_of(v: &Value, v4: bool) -> IpAddr {
    v["vips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str()?.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() == v4)
        .expect("a VIP of the family")
}

const FAST_HEALTH: [&str; 6] = [
    "--health-interval",
    "200",
    "--health-rise",
    "1",
    "--health-fall",
    "2",
];

fn create_service(cli: &TetherCli, network: &str, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["service", "create", "--json", "--network", network];
    args.extend_from_slice(extra);
    args.push(name);
    serde_json::from_str(&cli.ok(&args)).unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Driver {
    Bridge,
    InternalBridge,
    Macvlan,
}

/// Three replicas answer through the VIP (each family the network has), each sees the client's own
/// address, and DNS answers NAME with the VIP and tasks.NAME with the replicas.
fn three_replicas_behind_a_vip(driver: Driver) {
    let segment;
    let own_host;
    let host = match driver {
        Driver::Macvlan => {
            segment = SwitchSegment::new("svcmv", "svp0");
            &segment.host
        }
        _ => {
            own_host = HostNs::new("svc3");
            &own_host
        }
    };
    let cli = cli(host);
    let create: Vec<&str> = match driver {
        Driver::Bridge => vec!["--subnet", "10.77.0.0/24", "--ipv6"],
        Driver::InternalBridge => vec!["--subnet", "10.77.0.0/24", "--ipv6", "--internal"],
        Driver::Macvlan => vec![
            "-d",
            "macvlan",
            "-o",
            "parent=svp0",
            "--subnet",
            SEGMENT_SUBNET,
            "--ip-range",
            "192.0.2.64/26",
        ],
    };
    let mut args = vec!["network", "create"];
    args.extend(create);
    args.push("web-net");
    cli.ok(&args);
    let client = host.container("client");
    let client_ips = attach(&cli, "web-net", &client, "client", &[]);
    let mut replicas = Vec::new();
    let mut replica_ips = Vec::new();
    for i in 1..=3 {
        let c = host.container(&format!("r{i}"));
        let name = format!("web-{i}");
        replica_ips.extend(attach(&cli, "web-net", &c, &name, &["web"]));
        replicas.push((c, name));
    }
    let mut args = vec!["--port", "80"];
    args.extend(FAST_HEALTH);
    let spec = create_service(&cli, "web-net", "web", &args);
    let _servers: Vec<Replica> = replicas
        .iter()
        .map(|(c, name)| Replica::start(c, name, 80))
        .collect();
    wait_healthy(&cli, "web", 3);

    let families: Vec<bool> = if driver == Driver::Macvlan {
        vec![true]
    } else {
        vec![true, false]
    };
    assert_eq!(
        spec["vips"].as_array().unwrap().len(),
        families.len(),
        "{spec}"
    );
    for v4 in families {
        let vip = vip_of(&spec, v4);
        let client_ip = client_ips.iter().find(|ip| ip.is_ipv4() == v4).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..60 {
            let (name, peer) = ask(&client, SocketAddr::new(vip, 80)).unwrap();
            assert_eq!(
                peer,
                client_ip.to_string(),
                "the replica sees the client itself"
            );
            seen.insert(name);
        }
        assert_eq!(seen.len(), 3, "60 connections to {vip} reached {seen:?}");
    }

    assert_eq!(
        dig(&client, "web", "A"),
        vec![vip_of(&spec, true).to_string()]
    );
    if driver != Driver::Macvlan {
        assert_eq!(
            dig(&client, "web.web-net", "AAAA"),
            vec![vip_of(&spec, false).to_string()]
        );
    }
    let mut tasks: Vec<String> = replica_ips
        .iter()
        .filter(|ip| ip.is_ipv4())
        .map(|ip| ip.to_string())
        .collect();
    tasks.sort();
    assert_eq!(dig(&client, "tasks.web", "A"), tasks);
    cli.ok(&["service", "rm", "web"]);
    // The network's last service gone, its clients keep nothing of it.
    let (listed, _) = client.nft(&["list", "table", "inet", "tether_svc"]);
    assert!(
        !listed,
        "table inet tether_svc left in the client after service rm"
    );
}

#[test]
fn three_replicas_behind_a_vip_on_a_bridge_network() {
    three_replicas_behind_a_vip(Driver::Bridge);
}

#[test]
fn three_replicas_behind_a_vip_on_an_internal_network() {
    three_replicas_behind_a_vip(Driver::InternalBridge);
}

#[test]
fn three_replicas_behind_a_vip_on_a_macvlan_network() {
    three_replicas_behind_a_vip(Driver::Macvlan);
}

/// With `--affinity client`, one client keeps its replica connection after connection.
#[test]
fn client_affinity_keeps_a_client_on_one_replica() {
    let host = HostNs::new("svcaff");
    let cli = cli(&host);
    cli.create_network("n", "10.83.0.0/24");
    let clients: Vec<NetNs> = (1..=2).map(|i| host.container(&format!("c{i}"))).collect();
    for (i, c) in clients.iter().enumerate() {
        attach(&cli, "n", c, &format!("client-{i}"), &[]);
    }
    let mut servers = Vec::new();
    for i in 1..=3 {
        let c = host.container(&format!("r{i}"));
        attach(&cli, "n", &c, &format!("s-{i}"), &["sticky"]);
        servers.push(Replica::start(&c, &format!("s-{i}"), 80));
    }
    let spec = create_service(
        &cli,
        "n",
        "sticky",
        &["--port", "80", "--health", "none", "--affinity", "client"],
    );
    let vip = SocketAddr::new(vip_of(&spec, true), 80);
    for c in &clients {
        let names: HashSet<String> = (0..20).map(|_| ask(c, vip).unwrap().0).collect();
        assert_eq!(names.len(), 1, "one client, one replica: {names:?}");
    }
    cli.ok(&["service", "rm", "sticky"]);
}

/// A replica that stops listening fails its probes and leaves (its established connection goes on:
/// draining), and comes back once it listens again.
#[test]
fn a_stopped_replica_leaves_drains_and_returns() {
    let host = HostNs::new("svchealth");
    let cli = cli(&host);
    cli.create_network("n", "10.78.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let (r1, r2) = (host.container("r1"), host.container("r2"));
    attach(&cli, "n", &r1, "api-1", &["api"]);
    attach(&cli, "n", &r2, "api-2", &["api"]);
    let mut args = vec!["--port", "8080"];
    args.extend(FAST_HEALTH);
    let spec = create_service(&cli, "n", "api", &args);
    let vip = SocketAddr::new(vip_of(&spec, true), 8080);
    let s1 = Replica::start(&r1, "api-1", 8080);
    let mut s2 = Replica::start(&r2, "api-2", 8080);
    wait_healthy(&cli, "api", 2);

    // A connection held to api-2 across its departure.
    let held = (0..50)
        .map(|_| HeldConnection::open(&client, vip).unwrap())
        .find(|h| h.greeting.starts_with("api-2 "))
        .expect("some connection reaches api-2");

    s2.stop_listening();
    let deadline = Instant::now() + Duration::from_secs(20);
    while health_of(&inspect(&cli, "api"), &r2.label) != "unhealthy" {
        assert!(Instant::now() < deadline, "api-2 never marked unhealthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..30 {
        assert_eq!(ask(&client, vip).unwrap().0, "api-1");
    }
    assert_eq!(held.say("still there?").unwrap(), "api-2:still there?");
    assert_eq!(
        dig(&client, "tasks.api", "A").len(),
        1,
        "an unhealthy replica leaves tasks.api"
    );

    s2.listen();
    wait_healthy(&cli, "api", 2);
    let names: HashSet<String> = (0..60).map(|_| ask(&client, vip).unwrap().0).collect();
    assert_eq!(names.len(), 2, "api-2 is back: {names:?}");
    drop(s1);
    cli.ok(&["service", "rm", "api"]);
}

/// No replica: a TCP connect to the VIP is reset at once, not left to time out.
#[test]
fn a_service_without_replicas_refuses_at_once() {
    let host = HostNs::new("svcnone");
    let cli = cli(&host);
    cli.create_network("n", "10.79.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let spec = create_service(&cli, "n", "nobody", &["--port", "80", "--health", "none"]);
    let vip = vip_of(&spec, true);
    let err = ask(&client, SocketAddr::new(vip, 80)).unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
    // A port the service does not balance is refused too.
    let err = ask(&client, SocketAddr::new(vip, 81)).unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
    // Refused: a VIP outside the service range, one inside the network, a name taken.
    for (vip, name, why) in [
        ("192.168.77.1", "x", "outside the service range"),
        ("10.79.0.9", "x", "outside the service range"),
        (&vip.to_string(), "y", "taken by another service"),
    ] {
        let out = cli.run(&[
            "service",
            "create",
            "--network",
            "n",
            "--port",
            "80",
            "--vip",
            vip,
            name,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "--vip {vip}: {err}"
        );
    }
    cli.ok(&["service", "rm", "nobody"]);
}

/// A UDP client that keeps its source port moves to another replica as soon as its replica is
/// detached: the first datagram after `tether detach` returns gets an answer from the other one.
#[test]
fn a_udp_client_on_a_fixed_port_moves_when_its_replica_is_detached() {
    let host = HostNs::new("svcudp");
    let cli = cli(&host);
    cli.create_network("n", "10.80.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let (r1, r2) = (host.container("r1"), host.container("r2"));
    attach(&cli, "n", &r1, "dns-1", &["dns"]);
    attach(&cli, "n", &r2, "dns-2", &["dns"]);
    let spec = create_service(&cli, "n", "dns", &["--port", "5353/udp"]);
    let vip = SocketAddr::new(vip_of(&spec, true), 5353);
    let _s1 = Replica::start(&r1, "dns-1", 5353);
    let _s2 = Replica::start(&r2, "dns-2", 5353);
    let first = ask_udp(&client, 40053, vip, Duration::from_secs(2)).unwrap();
    for _ in 0..5 {
        assert_eq!(
            ask_udp(&client, 40053, vip, Duration::from_secs(2)).unwrap(),
            first,
            "conntrack keeps the flow"
        );
    }
    let (gone, other) = if first == "dns-1" {
        (&r1, "dns-2")
    } else {
        (&r2, "dns-1")
    };
    let detached = Instant::now();
    cli.ok(&["detach", "--network", "n", &gone.label]);
    let answer = ask_udp(&client, 40053, vip, Duration::from_secs(1)).unwrap();
    eprintln!(
        "moved to {answer} {:?} after the detach began",
        detached.elapsed()
    );
    assert_eq!(answer, other);
    cli.ok(&["service", "rm", "dns"]);
}

/// Nothing of tether cuts an idle flow: a connection through the VIP idle for 61 s still works.
#[test]
fn an_idle_flow_through_the_vip_outlives_a_minute() {
    let host = HostNs::new("svcidle");
    let cli = cli(&host);
    cli.create_network("n", "10.81.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let r1 = host.container("r1");
    attach(&cli, "n", &r1, "db-1", &["db"]);
    let spec = create_service(&cli, "n", "db", &["--port", "5432", "--health", "none"]);
    let _s1 = Replica::start(&r1, "db-1", 5432);
    let held = HeldConnection::open(&client, SocketAddr::new(vip_of(&spec, true), 5432)).unwrap();
    std::thread::sleep(Duration::from_secs(61));
    assert_eq!(held.say("after a minute").unwrap(), "db-1:after a minute");
    cli.ok(&["service", "rm", "db"]);
}

/// dnsrr: NAME answers the replicas themselves; nothing is balanced.
#[test]
fn dnsrr_names_answer_the_replicas() {
    let host = HostNs::new("svcrr");
    let cli = cli(&host);
    cli.create_network("n", "10.82.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let mut ips = Vec::new();
    for i in 1..=2 {
        let c = host.container(&format!("r{i}"));
        ips.extend(
            attach(&cli, "n", &c, &format!("cache-{i}"), &["cache"])
                .into_iter()
                .filter(|ip| ip.is_ipv4())
                .map(|ip| ip.to_string()),
        );
    }
    let spec = create_service(&cli, "n", "cache", &["--mode", "dnsrr"]);
    assert!(spec["vips"].as_array().unwrap().is_empty());
    ips.sort();
    assert_eq!(dig(&client, "cache", "A"), ips);
    assert_eq!(dig(&client, "tasks.cache.n", "A"), ips);
    // Backend answers are short-lived: TTL at most 5 s.
    let out = client.exec(&[
        "dig",
        "+time=3",
        "+tries=1",
        "+noall",
        "+answer",
        "@127.0.0.11",
        "cache",
        "A",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let ttls: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert!(!ttls.is_empty() && ttls.iter().all(|t| *t <= 5), "{text}");
    cli.ok(&["service", "rm", "cache"]);
}

/// 500 services fit on a /24 network: their VIPs take none of its addresses, every client holds all
/// of them, and the last one still balances to its replica.
#[test]
fn five_hundred_services_fit_on_a_slash_24() {
    let host = HostNs::new("svc500");
    let cli = cli(&host);
    cli.create_network("n", "10.84.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let mut vips = HashSet::new();
    for i in 1..=500 {
        let spec = create_service(
            &cli,
            "n",
            &format!("s{i}"),
            &["--port", "80", "--health", "none"],
        );
        assert!(vips.insert(vip_of(&spec, true)), "VIP taken twice: {spec}");
    }
    let r = host.container("r");
    let started = Instant::now();
    let r_ips = attach(&cli, "n", &r, "r", &["s500"]);
    // Not asserted (speed is the bench's business): the attach includes the new client's 500 services.
    eprintln!(
        "attach with 500 services on the network: {:?}",
        started.elapsed()
    );
    assert!(r_ips.iter().all(|ip| !vips.contains(ip)));
    let _server = Replica::start(&r, "r", 80);
    let last = vip_of(
        &serde_json::from_str(&cli.ok(&["service", "inspect", "s500"])).unwrap_or(Value::Null)[0],
        true,
    );
    assert_eq!(ask(&client, SocketAddr::new(last, 80)).unwrap().0, "r");
    let listed = client.nft_ok(&["list", "map", "inet", "tether_svc", "svc4"]);
    assert_eq!(listed.matches("jump").count(), 500, "{listed}");
    assert_eq!(cli.ok(&["service", "ls", "-q"]).lines().count(), 500);
}

/// A replica whose container dies without DEL (its namespace deleted) leaves once tetherd releases it.
#[test]
fn a_replica_that_dies_leaves() {
    let host = HostNs::new("svcdead");
    let cli = TetherCli::without_upstreams(&host, r#"{"idleGraceMs": 500, "goneCheckMs": 200}"#);
    cli.create_network("n", "10.85.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let (r1, r2) = (host.container("r1"), host.container("r2"));
    attach(&cli, "n", &r1, "w-1", &["w"]);
    attach(&cli, "n", &r2, "w-2", &["w"]);
    let spec = create_service(&cli, "n", "w", &["--port", "80", "--health", "none"]);
    let vip = SocketAddr::new(vip_of(&spec, true), 80);
    let _s1 = Replica::start(&r1, "w-1", 80);
    {
        let _s2 = Replica::start(&r2, "w-2", 80);
    }
    host.delete_container(&r2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while inspect(&cli, "w")["backends"].as_array().unwrap().len() != 1 {
        assert!(Instant::now() < deadline, "the dead replica never left");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..30 {
        assert_eq!(ask(&client, vip).unwrap().0, "w-1");
    }
    cli.ok(&["service", "rm", "w"]);
}

/// A tetherd killed and started again keeps the backends its predecessor had in (they do not wait for
/// `rise` new probes), so the VIP answers right away.
#[test]
fn a_restarted_tetherd_keeps_healthy_backends_in() {
    let host = HostNs::new("svcrestart");
    let cli = cli(&host);
    cli.create_network("n", "10.86.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let (r1, r2) = (host.container("r1"), host.container("r2"));
    attach(&cli, "n", &r1, "k-1", &["k"]);
    attach(&cli, "n", &r2, "k-2", &["k"]);
    let spec = create_service(
        &cli,
        "n",
        "k",
        &[
            "--port",
            "80",
            "--health-interval",
            "500",
            "--health-rise",
            "3",
        ],
    );
    let vip = SocketAddr::new(vip_of(&spec, true), 80);
    let _s1 = Replica::start(&r1, "k-1", 80);
    let _s2 = Replica::start(&r2, "k-2", 80);
    wait_healthy(&cli, "k", 2);

    let pid_file = host.run_dir().join("tetherd.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        assert!(Instant::now() < deadline, "tetherd survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next attach starts a new tetherd and returns once it serves the records.
    let late = host.container("late");
    attach(&cli, "n", &late, "late", &[]);
    let new_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(pid, new_pid);
    for _ in 0..5 {
        ask(&client, vip).unwrap();
    }
    cli.ok(&["service", "rm", "k"]);
}

/// `tether detach --drain`: the replica leaves the maps at once (new connections go to the other one)
/// while the detach waits for its open connection; when that one closes, the detach goes on and the
/// interface goes.
#[test]
fn a_replica_detached_with_drain_takes_no_new_flows_and_keeps_its_open_one_until_it_ends() {
    let host = HostNs::new("svcdrain");
    let cli = cli(&host);
    cli.create_network("n", "10.84.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let (r1, r2) = (host.container("r1"), host.container("r2"));
    attach(&cli, "n", &r1, "api-1", &["api"]);
    attach(&cli, "n", &r2, "api-2", &["api"]);
    let spec = create_service(&cli, "n", "api", &["--port", "8080", "--health", "none"]);
    let vip = SocketAddr::new(vip_of(&spec, true), 8080);
    let _s1 = Replica::start(&r1, "api-1", 8080);
    let _s2 = Replica::start(&r2, "api-2", 8080);
    wait_healthy(&cli, "api", 2);
    let held = (0..50)
        .map(|_| HeldConnection::open(&client, vip).unwrap())
        .find(|h| h.greeting.starts_with("api-2 "))
        .expect("some connection reaches api-2");

    std::thread::scope(|s| {
        let detach = s.spawn(|| cli.run(&["detach", "--drain", "30", "--network", "n", &r2.label]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while health_of(&inspect(&cli, "api"), &r2.label) != "draining" {
            assert!(Instant::now() < deadline, "api-2 never draining");
            std::thread::sleep(Duration::from_millis(50));
        }
        for _ in 0..30 {
            assert_eq!(
                ask(&client, vip).unwrap().0,
                "api-1",
                "no new flow to a draining replica"
            );
        }
        assert_eq!(dig(&client, "tasks.api", "A").len(), 1);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(held.say("still there?").unwrap(), "api-2:still there?");
        assert!(
            !detach.is_finished(),
            "the detach waits for the open connection"
        );
        assert!(r2.has_link("eth0"), "the interface stays while draining");
        let closed = Instant::now();
        drop(held);
        let out = detach.join().unwrap();
        harness::drain::assert_drained(&out);
        eprintln!(
            "the detach finished {} ms after the held connection closed",
            closed.elapsed().as_millis()
        );
    });
    assert!(!r2.has_link("eth0"), "detached after the drain");
    cli.ok(&["service", "rm", "api"]);
}

/// tetherd's threads' voluntary context switches per second over `window`: how often it wakes.
fn wakeups_per_second(pid: i32, window: Duration) -> f64 {
    let switches = || -> u64 {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("tetherd's tasks")
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
    };
    let before = switches();
    std::thread::sleep(window);
    (switches() - before) as f64 / window.as_secs_f64()
}

/// With no service to probe, tetherd does not tick for health checks (it woke every 50 ms for them,
/// ~35 times a second in all): only its record, namespace and cache checks wake it. A service with a
/// health check starts the probes, and removing it stops them again.
#[test]
fn an_idle_tetherd_wakes_for_health_probes_only_while_a_service_has_them() {
    const IDLE_MAX: f64 = 15.0;
    let host = HostNs::new("svcidle");
    let cli = cli(&host);
    cli.create_network("n", "10.87.0.0/24");
    let client = host.container("client");
    attach(&cli, "n", &client, "client", &[]);
    let pid: i32 = std::fs::read_to_string(host.run_dir().join("tetherd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let idle = wakeups_per_second(pid, Duration::from_secs(4));
    assert!(
        idle < IDLE_MAX,
        "an idle tetherd woke {idle:.1} times a second"
    );

    let r1 = host.container("r1");
    attach(&cli, "n", &r1, "p-1", &["p"]);
    let mut args = vec!["--port", "8080"];
    args.extend(FAST_HEALTH);
    create_service(&cli, "n", "p", &args);
    let _s1 = Replica::start(&r1, "p-1", 8080);
    wait_healthy(&cli, "p", 1);
    let probing = wakeups_per_second(pid, Duration::from_secs(2));
    assert!(
        probing > idle,
        "probing ({probing:.1}/s) should wake tetherd more than idling ({idle:.1}/s)"
    );

    cli.ok(&["service", "rm", "p"]);
    std::thread::sleep(Duration::from_millis(500));
    let after = wakeups_per_second(pid, Duration::from_secs(4));
    assert!(
        after < IDLE_MAX,
        "tetherd woke {after:.1} times a second after the service went"
    );
}
