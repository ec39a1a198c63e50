//! The routing mesh on one host: `tether service create --publish HOSTPORT:PORT` makes the host answer on
//! HOSTPORT of every local address (from an outside namespace on the host's underlay, from the host itself
//! over 127.0.0.1 and ::1, from containers through hairpin) and forward to a healthy replica, which sees
//! the client's own address. Real traffic from threads inside the test's namespaces (harness/replica.rs).

#[path = "harness/mod.rs"]
mod harness;

use harness::overlay_cluster::{on_both_stores, overlay_conf, Cluster, Store, Timings};
use harness::replica::{ask, ask_udp, ask_udp_peer, in_netns, Replica};
use harness::tether_cli::TetherCli;
use harness::{HostNs, NetNs};
use serde_json::Value;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const HEALTH: [&str; 8] = [
    "--port",
    "80",
    "--health-interval",
    "200",
    "--health-rise",
    "1",
    "--health-fall",
    "2",
];

fn cli(host: &HostNs) -> TetherCli<'_> {
    TetherCli::without_upstreams(host, r#"{"idleGraceMs": 500, "goneCheckMs": 200}"#)
}

/// `tether attach` of `c` as `name`, aliased `service`.
fn replica_of(cli: &TetherCli, net: &str, c: &NetNs, name: &str, service: &str) {
    cli.attach_json(net, c, &["--name", name, "--alias", service]);
}

fn service(cli: &TetherCli, name: &str) -> Value {
    let v: Value = serde_json::from_str(&cli.ok(&["service", "inspect", name])).unwrap();
    v[0].clone()
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn healthy(cli: &TetherCli, name: &str) -> usize {
    service(cli, name)["backends"]
        .as_array()
        .map_or(0, |b| b.iter().filter(|b| b["health"] == "healthy").count())
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// The elements of table inet tether_mesh that mention `needle`; None without the table.
fn mesh_elements(host: &HostNs, needle: &str) -> Option<Vec<String>> {
    let (ok, text) = host.nft(&["list", "table", "inet", "tether_mesh"]);
    ok.then(|| {
        text.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    })
}

/// Binds TCP `port` on every address of `ns` (the way a server would, SO_REUSEADDR on); the error
/// when it cannot.
fn bind_in(ns: &NetNs, port: u16) -> Result<(), String> {
    in_netns(ns, move || {
        std::net::TcpListener::bind(SocketAddr::from(([0u16; 8], port)))
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
}

#[test]
fn a_published_port_answers_on_every_address_with_the_clients_own_address() {
    let host = HostNs::new("mesh1");
    let out = host.outside();
    let cli = cli(&host);
    cli.ok(&[
        "network",
        "create",
        "--subnet",
        "10.78.0.0/24",
        "--ipv6",
        "mnet",
    ]);
    let client = host.container("client");
    cli.attach_json("mnet", &client, &["--name", "client"]);
    let (r1, r2) = (host.container("r1"), host.container("r2"));
    replica_of(&cli, "mnet", &r1, "web-1", "web");
    replica_of(&cli, "mnet", &r2, "web-2", "web");
    let _s1 = Replica::start(&r1, "web-1", 80);
    let _s2 = Replica::start(&r2, "web-2", 80);
    let mut args = vec!["service", "create", "--network", "mnet"];
    args.extend(HEALTH);
    args.extend(["--publish", "8080:80", "--publish", "8053:80/udp", "web"]);
    cli.ok(&args);
    until("two healthy replicas", || healthy(&cli, "web") == 2);

    // From outside, on the host's underlay address: both replicas, each seeing the outside client.
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let (name, peer) = ask(&out.ns, at(out.host_addr, 8080)).unwrap();
        assert_eq!(peer, out.addr, "the replica sees the outside client itself");
        seen.insert(name);
    }
    assert_eq!(seen.len(), 2, "30 connections reached {seen:?}");
    // From the host itself, over both loopbacks and its own addresses.
    for to in ["127.0.0.1", "::1", out.host_addr] {
        let (name, _) = ask(&host.ns, at(to, 8080)).unwrap_or_else(|e| panic!("{to}: {e}"));
        assert!(name.starts_with("web-"), "{to}: {name}");
    }
    // From a container (hairpin): through the host's underlay address and its gateway.
    for to in [out.host_addr, "10.78.0.1"] {
        let (name, _) = ask(&client, at(to, 8080)).unwrap_or_else(|e| panic!("hairpin {to}: {e}"));
        assert!(name.starts_with("web-"), "hairpin {to}: {name}");
    }
    // UDP too.
    let answer = ask_udp(
        &out.ns,
        40053,
        at(out.host_addr, 8053),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(answer.starts_with("web-"), "{answer}");
    // UDP from the host itself over both loopbacks (::1 through tetherd's relay, answered from ::1).
    for (to, port) in [("127.0.0.1", 40056), ("::1", 40057), ("::1", 40058)] {
        let (name, _, from) = ask_udp_peer(&host.ns, port, at(to, 8053), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("udp {to}: {e}"));
        assert!(name.starts_with("web-"), "udp {to}: {name}");
        assert_eq!(from, at(to, 8053), "udp {to}: the answer's source");
    }

    let v = service(&cli, "web");
    let ports = v["mesh"]["ports"]
        .as_array()
        .expect("inspect shows the mesh");
    let tcp = ports
        .iter()
        .find(|p| p["publish"] == "8080:80/tcp")
        .unwrap();
    assert!(
        tcp["forwardedLocal"].as_u64().unwrap() >= 35,
        "35 connections counted: {tcp}"
    );
    assert_eq!(tcp["forwardedRemote"], 0, "{tcp}");
    let udp = ports
        .iter()
        .find(|p| p["publish"] == "8053:80/udp")
        .unwrap();
    assert!(udp["forwardedLocal"].as_u64().unwrap() >= 1, "{udp}");
    cli.ok(&["service", "rm", "web"]);
    until("the mesh table gone", || mesh_elements(&host, "").is_none());
}

#[test]
fn the_local_policy_refuses_without_a_replica_and_a_killed_replica_leaves() {
    let host = HostNs::new("mesh2");
    let out = host.outside();
    let cli = cli(&host);
    cli.create_network("mnet", "10.79.0.0/24");
    let mut args = vec!["service", "create", "--network", "mnet"];
    args.extend(HEALTH);
    args.extend(["--publish", "8080:80", "--mesh-policy", "local", "web"]);
    cli.ok(&args);
    // No replica on this host: a reset at once, not a timeout, and not tetherd's held socket.
    until("the mesh table", || mesh_elements(&host, "8080").is_some());
    let err = ask(&out.ns, at(out.host_addr, 8080)).unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
    let v = service(&cli, "web");
    assert!(
        v["mesh"]["ports"][0]["refused"].as_u64().unwrap() >= 1,
        "{v}"
    );

    let (r1, r2) = (host.container("r1"), host.container("r2"));
    replica_of(&cli, "mnet", &r1, "web-1", "web");
    replica_of(&cli, "mnet", &r2, "web-2", "web");
    let _s1 = Replica::start(&r1, "web-1", 80);
    let s2 = Replica::start(&r2, "web-2", 80);
    until("two healthy replicas", || healthy(&cli, "web") == 2);
    let first = ask_udp(
        &out.ns,
        40054,
        at(out.host_addr, 8080),
        Duration::from_secs(2),
    );
    assert!(first.is_err(), "only TCP is published: {first:?}");

    // web-2 dies (its server stops): a second later, no connection reaches it.
    drop(s2);
    let died = Instant::now();
    until("web-2 out", || healthy(&cli, "web") == 1);
    eprintln!("web-2 left the mesh {:?} after it died", died.elapsed());
    std::thread::sleep(Duration::from_secs(1).saturating_sub(died.elapsed()));
    for _ in 0..20 {
        let (name, _) = ask(&out.ns, at(out.host_addr, 8080)).unwrap();
        assert_eq!(name, "web-1");
    }
    cli.ok(&["service", "rm", "web"]);
}

#[test]
fn publish_rm_and_add_three_times_leave_nothing_behind() {
    let host = HostNs::new("mesh3");
    let out = host.outside();
    let cli = cli(&host);
    cli.create_network("mnet", "10.82.0.0/24");
    let r1 = host.container("r1");
    replica_of(&cli, "mnet", &r1, "web-1", "web");
    let _s1 = Replica::start(&r1, "web-1", 80);
    let mut args = vec!["service", "create", "--network", "mnet"];
    args.extend(HEALTH);
    args.push("web");
    cli.ok(&args);
    until("a healthy replica", || healthy(&cli, "web") == 1);
    for round in 0..3 {
        cli.ok(&["service", "update", "--publish-add", "8081:80", "web"]);
        until("the port published", || {
            ask(&out.ns, at(out.host_addr, 8081)).is_ok()
        });
        // tetherd holds the port: nothing else on the host can bind it.
        let err = bind_in(&host.ns, 8081).unwrap_err();
        assert!(err.contains("in use"), "round {round}: {err}");
        cli.ok(&["service", "update", "--publish-rm", "8081", "web"]);
        until("the mesh table gone", || mesh_elements(&host, "").is_none());
        until("the port free", || bind_in(&host.ns, 8081).is_ok());
        let err = ask(&out.ns, at(out.host_addr, 8081)).unwrap_err();
        assert!(err.contains("Connection refused"), "round {round}: {err}");
    }
    cli.ok(&["service", "rm", "web"]);
}

#[test]
fn a_port_held_elsewhere_is_refused_naming_its_holder() {
    let host = HostNs::new("mesh4");
    let cli = cli(&host);
    cli.create_network("mnet", "10.83.0.0/24");
    let c = host.container("c1");
    cli.attach_json("mnet", &c, &["--name", "app", "--publish", "8092:80"]);
    let mut args = vec!["service", "create", "--network", "mnet"];
    args.extend(HEALTH);
    args.extend(["--publish", "8091:80", "web"]);
    cli.ok(&args);

    // A listener of a process on the host.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = in_netns(&host.ns, move || {
        let l = std::net::TcpListener::bind("0.0.0.0:8093").unwrap();
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
        drop(l);
    });
    ready_rx.recv().unwrap();
    let pid = std::process::id().to_string();
    for (publish, holder) in [
        ("8091:80", "service web"),
        ("8092:80", "container app"),
        ("8093:80", pid.as_str()),
    ] {
        let out = cli.run(&[
            "service",
            "create",
            "--network",
            "mnet",
            "--port",
            "80",
            "--publish",
            publish,
            "api",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{err}");
        assert!(
            !out.status.success() && err.contains(holder),
            "--publish {publish}: {err}"
        );
        // Refused as a whole: no service left behind.
        assert!(!cli.ok(&["service", "ls"]).contains("api"));
    }
    stop_tx.send(()).unwrap();
    listener.join().unwrap();
    // The other way round: a container cannot publish a port the mesh has.
    let c2 = host.container("c2");
    let path = c2.path_str();
    let out = cli.run(&[
        "attach",
        "--network",
        "mnet",
        "--netns",
        &path,
        "--publish",
        "8091:80",
        "c2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(
        !out.status.success() && err.contains("service web's routing mesh"),
        "{err}"
    );
    // The same port twice in one service, and a port it does not publish.
    let out = cli.run(&["service", "update", "--publish-add", "8091:81", "web"]);
    assert!(!out.status.success());
    let out = cli.run(&["service", "update", "--publish-rm", "9999", "web"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not publish"),
        "{err}"
    );
    cli.ok(&["service", "rm", "web"]);
}

on_both_stores!(on_an_overlay_every_host_answers_and_the_local_policy_refuses_without_a_replica);
/// Three hosts on an overlay network, replicas on the second and third; the service and its publications
/// made once, on the first, and copied to the others by the cluster store. A host with a replica forwards to it (at its gateway-bridge address) and the replica
/// sees the outside client; the first host has none and forwards to the other two hosts' mesh ports,
/// SNATed (the replica sees the first host), until its policy becomes `local`: then it refuses.
fn on_an_overlay_every_host_answers_and_the_local_policy_refuses_without_a_replica(store: Store) {
    let cluster = Cluster::on(&store.label("mshov"), 3, Timings::FAST, store);
    let conf = overlay_conf("ovm", 610, "10.217.0.0/16");
    let conflist = serde_json::json!({"cniVersion": "1.1.0", "name": "ovm", "plugins": [conf]});
    let (a, b, c) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    // Host a has the network too (a container that is no replica), so it learns the others' containers.
    let other = a.ns.container("c1");
    a.add_named(&conf, &other, "client");
    let mut servers = Vec::new();
    for (host, name) in [(b, "web-b"), (c, "web-c")] {
        let r = host.ns.container("r1");
        host.add_named(&conf, &r, "web");
        servers.push(Replica::start(&r, name, 80));
    }
    let client = &cluster.fabric;
    client.ip(&["addr", "add", "192.168.77.200/24", "dev", "fab0"]);
    // The fabric's own addresses (192.168.77.250 serves etcd there and is picked first when present).
    let outside = ["192.168.77.200", "192.168.77.250"];
    let clis: Vec<TetherCli> = [a, b, c]
        .into_iter()
        .map(|host| {
            let conf_dir = host.ns.dir().join("conf");
            std::fs::create_dir_all(&conf_dir).unwrap();
            std::fs::write(conf_dir.join("ovm.conflist"), conflist.to_string()).unwrap();
            TetherCli::new(&host.ns).with_env("TETHER_DAEMON_CONFIG", host.config_path())
        })
        .collect();
    // The service and its publications are made once, on host a; the cluster store copies both to the
    // other hosts, where they cannot be changed.
    let mut args = vec!["service", "create", "--network", "ovm", "--port", "80"];
    args.extend([
        "--health",
        "none",
        "--publish",
        "8080:80",
        "--publish",
        "8053:80/udp",
    ]);
    args.push("web");
    clis[0].ok(&args);
    for cli in &clis[1..] {
        until("the publications copied to every host", || {
            cli.run(&["service", "inspect", "web"]).status.success()
                && service(cli, "web")["mesh"]["ports"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2)
        });
        let out = cli.run(&["service", "update", "--publish-add", "8081:80", "web"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(&format!("created on host {}", a.addr)),
            "an update on a copy: {err}"
        );
    }
    for (host, name) in [(b, "web-b"), (c, "web-c")] {
        let to = at(&host.addr, 8080);
        until("a host with a replica answers", || ask(client, to).is_ok());
        let (answer, peer) = ask(client, to).unwrap();
        assert_eq!(answer, name, "a host's own replica first");
        assert!(outside.contains(&peer.as_str()), "the replica saw {peer}");
    }
    // Host a learns both replicas through the cluster store (overlay-remote records named "web"), and
    // its balancer has them as healthy backends (no probes: --health none).
    until("both remote replicas backends of web on host a", || {
        remote_backends(a, "web", &[&b.addr, &c.addr]) == 2
    });
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let (name, peer) = ask(client, at(&a.addr, 8080)).unwrap();
        assert_eq!(
            peer, a.addr,
            "across hosts the replica sees the balancing host"
        );
        seen.insert(name);
    }
    assert_eq!(
        seen.len(),
        2,
        "30 connections through host a reached {seen:?}"
    );
    // UDP too, each datagram from a new source port (a fixed one stays on its first replica).
    let mut seen = HashSet::new();
    for port in 41000..41020 {
        let to = at(&a.addr, 8053);
        seen.insert(ask_udp(client, port, to, Duration::from_secs(2)).unwrap());
    }
    assert_eq!(
        seen.len(),
        2,
        "20 datagrams through host a reached {seen:?}"
    );
    // An IPv6 client of host a (the underlay is IPv4): tetherd relays it into the mesh, TCP and UDP.
    a.ns.ip(&["addr", "add", "fd77::1/64", "dev", "ul0", "nodad"]);
    client.ip(&["addr", "add", "fd77::200/64", "dev", "fab0", "nodad"]);
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let (name, _) = ask(client, at("fd77::1", 8080)).unwrap();
        seen.insert(name);
    }
    assert_eq!(
        seen.len(),
        2,
        "10 IPv6 connections through host a reached {seen:?}"
    );
    let (name, _, from) =
        ask_udp_peer(client, 41050, at("fd77::1", 8053), Duration::from_secs(2)).unwrap();
    assert!(name.starts_with("web-"), "{name}");
    assert_eq!(from, at("fd77::1", 8053));
    // From host a itself, over both loopbacks, without a replica there.
    for to in ["::1", "127.0.0.1"] {
        let (name, _) = ask(&a.ns, at(to, 8080)).unwrap_or_else(|e| panic!("{to} on host a: {e}"));
        assert!(name.starts_with("web-"), "{to}: {name}");
    }
    let v = service(&clis[0], "web");
    assert!(
        v["mesh"]["ports"][0]["forwardedRemote"].as_u64().unwrap() >= 30,
        "{v}"
    );
    // Every host shows the others' counters, from the cluster store, with their age: b sees that a
    // forwarded its 30 connections to other hosts, a sees b and c serve them with their own replicas.
    let port_of = |h: &Value, publish: &str| -> Value {
        h["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["publish"] == publish).cloned())
            .unwrap_or_default()
    };
    let host_view = |cli: &TetherCli, host: &str| -> Value {
        service(cli, "web")["mesh"]["hosts"]
            .as_array()
            .and_then(|all| all.iter().find(|h| h["host"] == host).cloned())
            .unwrap_or_default()
    };
    // Host a publishes its counters now and then: wait for one copy at b that has both the TCP and the
    // UDP forwards (waiting for TCP alone and then reading UDP raced a publish between the two).
    let mut seen_at_b = Value::Null;
    until("host b shows host a's remote forwards, TCP and UDP", || {
        seen_at_b = host_view(&clis[1], &a.addr);
        let forwarded = |publish| port_of(&seen_at_b, publish)["forwardedRemote"].as_u64();
        forwarded("8080:80/tcp") >= Some(30) && forwarded("8053:80/udp") >= Some(20)
    });
    eprintln!("host b shows host a: {seen_at_b}");
    assert!(seen_at_b["ageMs"].as_u64().unwrap() < 60_000, "{seen_at_b}");
    let served = || -> u64 {
        [b, c]
            .iter()
            .map(|h| {
                port_of(&host_view(&clis[0], &h.addr), "8080:80/tcp")["forwardedLocal"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    until("host a shows b and c served its 30 connections", || {
        served() >= 30
    });
    preserving_the_client_across_hosts(&cluster, &clis[0]);

    // --publish-mode host: host a (no replica) does not publish at all: no element, nothing holds the
    // port (a process may bind it), a connection meets no listener; b still answers with its own.
    clis[0].ok(&["service", "update", "--publish-mode", "host", "web"]);
    until("host a stops publishing", || {
        mesh_elements(&a.ns, "8080").is_none_or(|e| e.is_empty()) && bind_in(&a.ns, 8080).is_ok()
    });
    let err = ask(client, at(&a.addr, 8080)).unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(ask(client, at(&b.addr, 8080)).unwrap().0, "web-b");
    clis[0].ok(&["service", "update", "--publish-mode", "mesh", "web"]);
    until("host a publishes again", || {
        ask(client, at(&a.addr, 8080)).is_ok()
    });

    clis[0].ok(&["service", "update", "--mesh-policy", "local", "web"]);
    until("host a refuses", || {
        ask(client, at(&a.addr, 8080)).is_err_and(|e| e.contains("Connection refused"))
    });
    let v = service(&clis[0], "web");
    assert!(
        v["mesh"]["ports"][0]["refused"].as_u64().unwrap() >= 1,
        "{v}"
    );
    assert_eq!(ask(client, at(&b.addr, 8080)).unwrap().0, "web-b");

    // A port a process on host b holds: b leaves it out of its copy and says so; c takes it.
    let _squatter = Replica::start(&b.ns, "squatter", 8090);
    clis[0].ok(&["service", "update", "--publish-add", "8090:80", "web"]);
    until("host b refuses its copy of 8090", || {
        service(&clis[1], "web")["mesh"]["refusedHere"][0]["publish"] == "8090:80/tcp"
    });
    let v = service(&clis[1], "web");
    let held_by = v["mesh"]["refusedHere"][0]["heldBy"].as_str().unwrap_or("");
    assert!(held_by.contains("socket on port 8090/tcp"), "{v}");
    until("host c publishes 8090", || {
        ask(client, at(&c.addr, 8090)).is_ok_and(|(name, _)| name == "web-c")
    });
    assert_eq!(ask(client, at(&b.addr, 8090)).unwrap().0, "squatter");

    // Removed once, on host a: gone from every host, no element and no held socket left.
    clis[0].ok(&[
        "service",
        "update",
        "--publish-rm",
        "8080",
        "--publish-rm",
        "8053/udp",
        "--publish-rm",
        "8090",
        "web",
    ]);
    for host in [a, b, c] {
        until("the publication gone from every host", || {
            ["8080", "8053", "8090"]
                .iter()
                .all(|port| mesh_elements(&host.ns, port).is_none_or(|e| e.is_empty()))
        });
        let refused = ask(client, at(&host.addr, 8080));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("Connection refused")),
            "{}: {refused:?}",
            host.addr
        );
    }
    for cli in &clis {
        assert!(service(cli, "web")["mesh"].is_null());
    }
}

/// `--preserve-client-ip` (service web of the overlay test, replicas on hosts b and c, none on a): an
/// outside client routed through the fabric namespace (198.51.100.2) connects to host a. Without the
/// flag the replica sees a; with it, the client itself, over TCP and UDP. b and c route 198.51.100.0/24
/// straight to the fabric, under strict rp_filter: only their return path (the connection's mark, the
/// policy route back through a) brings the reply to the client, and it comes from a (UDP checks whence).
fn preserving_the_client_across_hosts(cluster: &Cluster, creator: &TetherCli) {
    let fabric = &cluster.fabric;
    let out = fabric.outside();
    out.ns
        .ip(&["route", "add", "default", "via", out.host_addr]);
    fabric.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for host in &cluster.hosts {
        host.ns
            .ip(&["route", "add", "198.51.100.0/24", "via", "192.168.77.200"]);
        host.ns.exec_ok(&[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=1",
            "net.ipv4.conf.ul0.rp_filter=1",
        ]);
    }
    let a = &cluster.hosts[0].addr;
    let (_, peer) = ask(&out.ns, at(a, 8080)).unwrap();
    assert_eq!(
        peer, *a,
        "without --preserve-client-ip the replica sees host a"
    );
    let (_, peer, from) =
        ask_udp_peer(&out.ns, 42000, at(a, 8053), Duration::from_secs(2)).unwrap();
    assert_eq!(
        (peer.as_str(), from),
        (a.as_str(), at(a, 8053)),
        "UDP without the flag"
    );

    creator.ok(&["service", "update", "--preserve-client-ip", "true", "web"]);
    until("the replicas see the outside client through host a", || {
        ask(&out.ns, at(a, 8080)).is_ok_and(|(_, peer)| peer == out.addr)
    });
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let (name, peer) = ask(&out.ns, at(a, 8080)).unwrap();
        assert_eq!(peer, out.addr, "{name} saw {peer}, not the outside client");
        seen.insert(name);
    }
    assert_eq!(
        seen.len(),
        2,
        "30 connections through host a reached {seen:?}"
    );
    let mut seen = HashSet::new();
    for port in 42001..42021 {
        let to = at(a, 8053);
        let (name, peer, from) = ask_udp_peer(&out.ns, port, to, Duration::from_secs(2)).unwrap();
        assert_eq!(peer, out.addr, "{name} saw {peer} over UDP");
        assert_eq!(from, to, "the answer came back through host a");
        seen.insert(name);
    }
    assert_eq!(
        seen.len(),
        2,
        "20 datagrams through host a reached {seen:?}"
    );
    creator.ok(&["service", "update", "--preserve-client-ip", "false", "web"]);
    until("host a SNATs again", || {
        ask(&out.ns, at(a, 8080)).is_ok_and(|(_, peer)| peer == *a)
    });
}

/// How many healthy backends of `service` the tetherd of `host` has from the hosts `from`.
fn remote_backends(host: &harness::overlay_cluster::Host, service: &str, from: &[&str]) -> usize {
    let reply = tether::client::notify::request(
        &host.ns.run_dir(),
        &tether::client::protocol::Request::Status,
        Duration::from_secs(2),
    );
    let status = reply.ok().and_then(|r| r.status).unwrap_or_default();
    let backends = &status["services"]["balancer"]["services"][service]["backends"];
    backends.as_object().map_or(0, |all| {
        all.iter()
            .filter(|(id, v)| {
                from.iter().any(|h| id.starts_with(&format!("{h}_"))) && v["health"] == "healthy"
            })
            .count()
    })
}

on_both_stores!(a_replica_killed_on_one_host_leaves_every_hosts_mesh_within_a_second);
/// Three hosts, replicas on b and c, the service (health probes every 200 ms, down after two misses)
/// made on a. b's replica dies: its own health probes take it out of b's mesh (b then forwards to c),
/// and b's record in the cluster store takes it out of a's. From one second after the death, every
/// connection through a and through b is answered by c's replica.
fn a_replica_killed_on_one_host_leaves_every_hosts_mesh_within_a_second(store: Store) {
    let cluster = Cluster::on(&store.label("mshkl"), 3, Timings::FAST, store);
    let conf = overlay_conf("ovk", 611, "10.218.0.0/16");
    let conflist = serde_json::json!({"cniVersion": "1.1.0", "name": "ovk", "plugins": [conf]});
    let (a, b, c) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    let other = a.ns.container("c1");
    a.add_named(&conf, &other, "client");
    let mut servers = Vec::new();
    for (host, name) in [(b, "web-b"), (c, "web-c")] {
        let r = host.ns.container("r1");
        host.add_named(&conf, &r, "web");
        servers.push(Replica::start(&r, name, 80));
    }
    let client = &cluster.fabric;
    client.ip(&["addr", "add", "192.168.77.200/24", "dev", "fab0"]);
    let conf_dir = a.ns.dir().join("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("ovk.conflist"), conflist.to_string()).unwrap();
    let cli = TetherCli::new(&a.ns).with_env("TETHER_DAEMON_CONFIG", a.config_path());
    let mut args = vec!["service", "create", "--network", "ovk"];
    args.extend(HEALTH);
    args.extend(["--publish", "8080:80", "web"]);
    cli.ok(&args);
    until("host a balances over both hosts' replicas", || {
        let names: HashSet<String> = (0..20)
            .filter_map(|_| ask(client, at(&a.addr, 8080)).ok().map(|(n, _)| n))
            .collect();
        names.len() == 2
    });
    until("host b answers with its replica", || {
        ask(client, at(&b.addr, 8080)).is_ok_and(|(n, _)| n == "web-b")
    });

    // web-b dies. Ask through a and b until both answer web-c every time; time the last miss.
    drop(servers.remove(0));
    let died = Instant::now();
    let mut last_miss = None;
    let mut streak = 0;
    while streak < 40 {
        assert!(died.elapsed() < Duration::from_secs(20), "never settled");
        let through = if streak % 2 == 0 { &a.addr } else { &b.addr };
        match ask(client, at(through, 8080)) {
            Ok((name, _)) if name == "web-c" => streak += 1,
            other => {
                last_miss = Some((died.elapsed(), through.clone(), other));
                streak = 0;
            }
        }
    }
    eprintln!(
        "after web-b died: last miss {last_miss:?}; settled {:?}",
        died.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1).saturating_sub(died.elapsed()));
    for i in 0..40 {
        let through = if i % 2 == 0 { &a.addr } else { &b.addr };
        let (name, _) = ask(client, at(through, 8080)).unwrap();
        assert_eq!(
            name, "web-c",
            "a second after web-b died, through {through}"
        );
    }
}
