//! The routing mesh, measured in harness namespaces: connection rate and latency from an outside client
//! on the host's underlay through a published port (table `inet tether_mesh` DNATing to a replica on this
//! host, as tetherd installs it) against the same connections routed straight to the replica; and what
//! one replica change costs in the table with 10, 100 and 1000 published ports of 10 replicas each.
//! Prints medians and p90; asserts nothing. `cargo bench --bench routing_mesh`.
//!
//! Then across two simulated overlay hosts (tetherd on each, gossip store), the replica on the second:
//! the same connections from the underlay to the host with the replica and to the host without one
//! (which forwards to the other host's mesh port), SNATed and then with `--preserve-client-ip` (the
//! reply returning through the forwarding host by its mark's policy route).

#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "latency_stats.rs"]
mod latency_stats;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::replica::in_netns;
use harness::{HostNs, NetNs};
use latency_stats::{ms, stats};
use tether::firewall::mesh_ports::{apply, Forward, MeshKey, MeshTable};
use tether::firewall::netlink::ruleset::Change;
use tether::firewall::Protocol;

const CONNECTIONS: usize = 2000;

fn main() {
    replica_change_cost();
    mesh_against_direct();
    across_hosts();
}

fn key(port: u16) -> MeshKey {
    MeshKey {
        protocol: Protocol::Tcp,
        host_port: port,
        v6: false,
    }
}

fn replicas(i: u32) -> Vec<IpAddr> {
    (0..10)
        .map(|b| IpAddr::V4(Ipv4Addr::from(0x0a00_0002 + i * 10 + b)))
        .collect()
}

fn replica_change_cost() {
    println!("one replica removed or added (element changes + one netlink transaction), 10 replicas each");
    println!(
        "{:>9} {:>12} {:>12} {:>10}",
        "ports", "median", "p90", "elements"
    );
    for ports in [10u32, 100, 1000] {
        let host = HostNs::new("bmesh");
        let (samples, elements) = host.run_inside(|| {
            let mut table = MeshTable::default();
            let mut batch: Vec<Change> = table.install();
            for i in 0..ports {
                batch.extend(
                    table
                        .set_port(key(10000 + i as u16), 80, Forward::Local, &replicas(i))
                        .0,
                );
            }
            apply(&batch, "load").unwrap();
            let mut samples = Vec::new();
            let mut elements = 0;
            for round in 0..200u32 {
                let i = round * 7919 % ports;
                let mut fewer = replicas(i);
                let gone = fewer.remove((round % 10) as usize);
                let k = key(10000 + i as u16);
                let started = Instant::now();
                let (changes, _) = table.set_port(k, 80, Forward::Local, &fewer);
                apply(&changes, "remove").unwrap();
                samples.push(started.elapsed());
                elements = elements.max(changes.len());
                fewer.push(gone);
                let started = Instant::now();
                let (changes, _) = table.set_port(k, 80, Forward::Local, &fewer);
                apply(&changes, "add").unwrap();
                samples.push(started.elapsed());
            }
            (samples, elements)
        });
        let listed = host.nft_ok(&["list", "map", "inet", "tether_mesh", "be4"]);
        let held = listed.matches(" : ").count();
        let s = stats(samples);
        println!(
            "{ports:>9} {:>12} {:>12} {:>10}   (be4 holds {held} replicas)",
            ms(s.median),
            ms(s.p90),
            elements
        );
    }
}

/// A server in `ns` on `addr` that accepts, writes one byte and closes, until `stop`.
fn one_byte_server(
    ns: &NetNs,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (ready, wait) = std::sync::mpsc::channel();
    let server = in_netns(ns, move || {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready.send(()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            if let Ok((mut conn, _)) = listener.accept() {
                let _ = conn.write_all(b"x");
                let _ = conn.shutdown(Shutdown::Both);
            } else {
                std::thread::yield_now();
            }
        }
    });
    wait.recv().unwrap();
    server
}

/// Host namespace between an outside namespace (198.51.100.0/24) and a replica (10.202.0.0/24), routing.
fn topology() -> (HostNs, NetNs, NetNs) {
    let host = HostNs::new("bmeshc");
    let out = host.container("out");
    let replica = host.container("rep");
    for (ns, here, there, net) in [
        (&out, "bmo0", "bmo1", "198.51.100"),
        (&replica, "bmr0", "bmr1", "10.202.0"),
    ] {
        host.ip(&[
            "link", "add", here, "type", "veth", "peer", "name", there, "netns", &ns.name,
        ]);
        host.ip(&["addr", "add", &format!("{net}.1/24"), "dev", here]);
        host.ip(&["link", "set", here, "up"]);
        ns.ip(&["addr", "add", &format!("{net}.2/24"), "dev", there]);
        ns.ip(&["link", "set", there, "up"]);
        ns.ip(&["route", "add", "default", "via", &format!("{net}.1")]);
    }
    host.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    (host, out, replica)
}

fn mesh_against_direct() {
    let (host, out, replica) = topology();
    let replica_addr: IpAddr = "10.202.0.2".parse().unwrap();
    host.run_inside(|| {
        let mut table = MeshTable::default();
        let mut changes = table.install();
        changes.extend(
            table
                .set_port(key(8080), 80, Forward::Local, &[replica_addr])
                .0,
        );
        apply(&changes, "install").unwrap();
    });
    let stop = Arc::new(AtomicBool::new(false));
    let server = one_byte_server(&replica, SocketAddr::new(replica_addr, 80), stop.clone());
    println!();
    println!("connect + 1 byte + close from outside the host, 3 x {CONNECTIONS} connections each, alternating");
    let targets = [
        ("straight to the replica", SocketAddr::new(replica_addr, 80)),
        (
            "through the mesh port",
            "198.51.100.1:8080".parse().unwrap(),
        ),
    ];
    compare(&out, &targets);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
}

/// 3 rounds of CONNECTIONS connections from `client` to each target, alternating; prints each.
fn compare(client: &NetNs, targets: &[(&str, SocketAddr); 2]) {
    let mut all: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut rates = [Vec::new(), Vec::new()];
    for _round in 0..3 {
        for (which, (_, to)) in targets.iter().enumerate() {
            let to = *to;
            let (samples, elapsed) = in_netns(client, move || {
                let mut samples = Vec::with_capacity(CONNECTIONS);
                let started = Instant::now();
                for _ in 0..CONNECTIONS {
                    let t = Instant::now();
                    let mut s = TcpStream::connect(to).unwrap();
                    let _ = s.read(&mut [0u8; 1]);
                    drop(s);
                    samples.push(t.elapsed());
                }
                (samples, started.elapsed())
            })
            .join()
            .unwrap();
            rates[which].push(CONNECTIONS as f64 / elapsed.as_secs_f64());
            all[which].extend(samples);
        }
    }
    for (which, (name, _)) in targets.iter().enumerate() {
        let s = stats(std::mem::take(&mut all[which]));
        let r = &rates[which];
        println!(
            "{name:>24}: median {} p90 {}  rate {:.0}-{:.0} connections/s",
            ms(s.median),
            ms(s.p90),
            r.iter().cloned().fold(f64::MAX, f64::min),
            r.iter().cloned().fold(0.0, f64::max)
        );
    }
}

/// Waits until every target accepts a connection from `client`.
fn answered(client: &NetNs, targets: &[(&str, SocketAddr); 2]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while targets.iter().any(|(_, to)| {
        let to = *to;
        in_netns(client, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(1))
                .and_then(|mut s| s.read(&mut [0u8; 1]))
                .map_or(true, |n| n == 0)
        })
        .join()
        .unwrap()
    }) {
        assert!(
            Instant::now() < deadline,
            "the mesh never answered on both hosts"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn across_hosts() {
    use harness::overlay_cluster::{overlay_conf, Cluster, Timings};
    use harness::tether_cli::TetherCli;
    let cluster = Cluster::new("bmsx", 2, Timings::FAST);
    let (a, b) = (&cluster.hosts[0], &cluster.hosts[1]);
    let conf = overlay_conf("ovb", 620, "10.218.0.0/16");
    let conflist = serde_json::json!({"cniVersion": "1.1.0", "name": "ovb", "plugins": [conf]});
    a.add_named(&conf, &a.ns.container("c1"), "client");
    let replica = b.ns.container("r1");
    let result = b.add_named(&conf, &replica, "web");
    // The replica's gateway-bridge address: where its host's mesh forwards to.
    let egress: IpAddr = result["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = one_byte_server(&replica, SocketAddr::new(egress, 80), stop.clone());
    let clis: Vec<TetherCli> = [a, b]
        .into_iter()
        .map(|host| {
            let conf_dir = host.ns.dir().join("conf");
            std::fs::create_dir_all(&conf_dir).unwrap();
            std::fs::write(conf_dir.join("ovb.conflist"), conflist.to_string()).unwrap();
            TetherCli::new(&host.ns).with_env("TETHER_DAEMON_CONFIG", host.config_path())
        })
        .collect();
    // Made and published once; the cluster store copies both to the other host.
    clis[0].ok(&[
        "service",
        "create",
        "--network",
        "ovb",
        "--port",
        "80",
        "--health",
        "none",
        "--publish",
        "8080:80",
        "web",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !clis[1].ok(&["service", "ls", "-q"]).contains("web") {
        assert!(
            Instant::now() < deadline,
            "the service never reached the other host"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let client = &cluster.fabric;
    client.ip(&["addr", "add", "192.168.77.200/24", "dev", "fab0"]);
    let targets = [
        (
            "host with the replica",
            SocketAddr::new(b.addr.parse().unwrap(), 8080),
        ),
        (
            "host without (remote)",
            SocketAddr::new(a.addr.parse().unwrap(), 8080),
        ),
    ];
    // Until both hosts forward (host a learns the replica through the store).
    answered(client, &targets);
    println!();
    println!("two overlay hosts, replica on the second: 3 x {CONNECTIONS} connections from the underlay to each host");
    compare(client, &targets);
    clis[0].ok(&["service", "update", "--preserve-client-ip", "true", "web"]);
    // Until host b knows host a's MAC and its return route (a connection through a then completes).
    std::thread::sleep(Duration::from_secs(2));
    answered(client, &targets);
    println!("the same with --preserve-client-ip (no SNAT; the reply returns through host a)");
    compare(client, &targets);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
}
