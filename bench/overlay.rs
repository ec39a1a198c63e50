//! tether-overlay: (1) time from ADD returning on host B until a container on host A reaches the new
//! container (ping), p50/p95 over `BENCH_RUNS` (20) ADDs; (2) TCP throughput over the overlay beside the
//! plain underlay path between the same two hosts (iperf3, skipped with a message when not installed);
//! (3) control-plane bytes/s and tetherd RSS with 3 hosts (with containers) and with 50 hosts (control
//! plane only: records in their state dirs, no devices). tetherd's default timings throughout. Hermetic:
//! every host is a namespace of its own. Run with `cargo bench --bench overlay`.

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "../integration/harness/mod.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_settings::env_list;
use harness::overlay_cluster::{
    overlay_conf, overlay_ip, overlay_ips, overlay_status, wait_until, Cluster, Tetherd, Timings,
};
use harness::{HostNs, NetNs};
use serde_json::{json, Value};

fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs = env_list("BENCH_RUNS", &[20])[0].max(1);
    // BENCH_PARTS=4 runs only the 50-host part, and so on (1 latency, 2 throughput, 3 three hosts).
    let parts = env_list("BENCH_PARTS", &[1, 2, 3, 4]);
    if parts.contains(&1) {
        add_to_reachable(runs);
    }
    if parts.contains(&2) {
        throughput();
    }
    if parts.contains(&3) {
        control_plane_3();
    }
    if parts.contains(&4) {
        control_plane_50();
    }
}

/// Part 1 for an IPv4, an IPv6 and a dual-stack network side by side in one run (the dual-stack row
/// pings the IPv6 address, which the control plane publishes as a record of its own).
fn add_to_reachable(runs: usize) {
    let cluster = Cluster::new("boa", 2, Timings::DEFAULT);
    let (a, b) = (&cluster.hosts[0], &cluster.hosts[1]);
    let networks = [
        ("IPv4", 600, json!("10.220.0.0/16")),
        ("IPv6", 601, json!("fd00:220::/64")),
        ("dual stack", 602, json!(["10.221.0.0/16", "fd00:221::/64"])),
    ];
    for (label, vni, subnet) in networks {
        let mut conf = overlay_conf(&format!("ovl{vni}"), vni, "10.220.0.0/16");
        conf["subnet"] = subnet;
        let probe = a.ns.container(&format!("probe{vni}"));
        a.add(&conf, &probe);
        let mut samples = Vec::new();
        let mut adds = Vec::new();
        let mut containers = Vec::new();
        for i in 0..runs {
            let c = b.ns.container(&format!("t{vni}-{i}"));
            let started = Instant::now();
            let result = b.add(&conf, &c);
            let added = Instant::now();
            adds.push(added - started);
            let ip = overlay_ips(&result).pop().unwrap();
            let family = if ip.contains(':') { "-6" } else { "-4" };
            loop {
                if probe
                    .exec(&["ping", family, "-c1", "-W0.05", "-n", &ip])
                    .status
                    .success()
                {
                    samples.push(added.elapsed());
                    break;
                }
                assert!(
                    added.elapsed() < Duration::from_secs(10),
                    "{ip} never became reachable"
                );
            }
            containers.push(c);
        }
        let (p50, p95) = (quantile(&mut samples, 0.5), quantile(&mut samples, 0.95));
        println!(
            "{label}: ADD on host B -> reachable from host A ({runs} ADDs): p50 {}  p95 {}  max {}; the ADD itself p50 {}",
            ms(p50),
            ms(p95),
            ms(*samples.last().unwrap()),
            ms(quantile(&mut adds, 0.5)),
        );
        for c in &containers {
            b.del(&conf, c);
        }
        a.del(&conf, &probe);
    }
}

fn iperf3_installed() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Gbit/s of a 5-second iperf3 run from `client` to a one-shot server on `server`.
fn iperf(server: &NetNs, client: &NetNs, server_ip: &str) -> f64 {
    let mut srv = Command::new("nsenter")
        .arg(format!("--net={}", server.path_str()))
        .args(["--", "iperf3", "-s", "-1", "-B", server_ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let out = client.exec_ok(&["iperf3", "-c", server_ip, "-t", "5", "-J"]);
    let _ = srv.wait();
    let v: Value = serde_json::from_str(&out).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9
}

fn throughput() {
    if !iperf3_installed() {
        println!("SKIP throughput: iperf3 is not installed (apt-get install iperf3)");
        return;
    }
    let cluster = Cluster::new("bob", 2, Timings::DEFAULT);
    let (a, b) = (&cluster.hosts[0], &cluster.hosts[1]);
    let conf = overlay_conf("ovl", 601, "10.221.0.0/16");
    let ca = a.ns.container("ca");
    let cb = b.ns.container("cb");
    let ra = a.add(&conf, &ca);
    b.add(&conf, &cb);
    let ip = overlay_ip(&ra);
    wait_until("the overlay works", Duration::from_secs(10), || {
        cb.ping(&ip)
    });
    let overlay = iperf(&ca, &cb, &ip);
    let plain = iperf(&a.ns, &b.ns, &a.addr);
    println!("TCP throughput, container to container over VXLAN: {overlay:.2} Gbit/s; same hosts over the plain underlay veth path: {plain:.2} Gbit/s ({:.0} %)", 100.0 * overlay / plain.max(1e-9));
}

/// Sums bytes sent over `window` by the tetherds serving `run_dirs`.
fn bytes_per_second(run_dirs: &[std::path::PathBuf], window: Duration) -> f64 {
    let sent = |d: &std::path::PathBuf| overlay_status(d)["bytesSent"].as_u64().unwrap_or(0);
    let before: u64 = run_dirs.iter().map(sent).sum();
    std::thread::sleep(window);
    let after: u64 = run_dirs.iter().map(sent).sum();
    (after - before) as f64 / window.as_secs_f64()
}

fn control_plane_3() {
    let cluster = Cluster::new("boc", 3, Timings::DEFAULT);
    let conf = overlay_conf("ovl", 602, "10.222.0.0/16");
    let mut containers = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        for j in 0..5 {
            let c = h.ns.container(&format!("c{i}x{j}"));
            h.add(&conf, &c);
            containers.push(c);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let run_dirs: Vec<_> = cluster.hosts.iter().map(|h| h.ns.run_dir()).collect();
    let total = bytes_per_second(&run_dirs, Duration::from_secs(20));
    let rss: Vec<u64> = cluster
        .hosts
        .iter()
        .map(|h| h.tetherd.as_ref().unwrap().rss_kb())
        .collect();
    println!(
        "3 hosts, 5 containers each: control plane {:.0} bytes/s per host sent; tetherd RSS {} kB (max of 3)",
        total / 3.0,
        rss.iter().max().unwrap()
    );
}

/// `BENCH_GOSSIP_HOSTS` (default 50, at most 250) tetherds in one namespace, each bound to its own loopback
/// address, each with one overlay network of 5 endpoints in its state dir (no kernel devices: reconcile
/// finds none and does nothing).
fn control_plane_50() {
    let n = env_list("BENCH_GOSSIP_HOSTS", &[50])[0].clamp(4, 250);
    let ns = HostNs::new(&format!("bo{n}"));
    ns.ip(&["link", "set", "lo", "up"]);
    let addrs: Vec<String> = (1..=n).map(|i| format!("10.98.0.{i}")).collect();
    for a in &addrs {
        ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    let seeds: Vec<String> = addrs.iter().take(3).map(|a| format!("{a}:7946")).collect();
    let mut daemons = Vec::new();
    let mut run_dirs = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let dir = ns.dir().join(format!("h{i}"));
        write_fake_host_state(&dir.join("state"), addr, i);
        let config = json!({"stay": true, "overlay": Timings::DEFAULT.section_for(&format!("{addr}:7946"), &seeds, n as u32)});
        let config_path = dir.join("tetherd.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        daemons.push(Tetherd::start(&ns, &dir, &config_path));
        run_dirs.push(dir.join("run"));
    }
    let started = Instant::now();
    let seen = |d: &std::path::PathBuf| {
        overlay_status(d)["membersUp"]
            .as_array()
            .map_or(0, Vec::len)
    };
    while run_dirs.iter().any(|d| seen(d) < n - 1) {
        if started.elapsed() > Duration::from_secs(180) {
            let counts: Vec<usize> = run_dirs.iter().map(seen).collect();
            panic!("{n} hosts did not converge in 180 s; peers seen per host: {counts:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "{n} hosts: full membership everywhere {:.1} s after the last start",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let total = bytes_per_second(&run_dirs, Duration::from_secs(20));
    let rss: Vec<u64> = daemons.iter().map(Tetherd::rss_kb).collect();
    let records = overlay_status(&run_dirs[0])["records"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "{n} hosts, 5 endpoints each (control plane only): {:.0} bytes/s per host sent; {} records per host; tetherd RSS median {} kB, max {} kB",
        total / n as f64,
        records,
        {
            let mut r = rss.clone();
            r.sort();
            r[r.len() / 2]
        },
        rss.iter().max().unwrap()
    );
}

fn write_fake_host_state(state: &std::path::Path, addr: &str, i: usize) {
    use tether::state::overlay::{Claim, ClaimState, HostClaims, NetworkFacts, OverlayDir};
    use tether::state::{AttachmentRecord, RecordDir};
    let subnet: ipnetwork::Ipv4Network = "10.230.0.0/16".parse().unwrap();
    let block: ipnetwork::IpNetwork = format!("10.230.{i}.0/26").parse().unwrap();
    let dir = OverlayDir::new(state, "ovl");
    dir.write_facts(&NetworkFacts {
        network: "ovl".into(),
        vni: 603,
        subnet: Some(subnet),
        block_prefix: 26,
        subnet6: None,
        block_prefix6: None,
        vtep: addr.parse().unwrap(),
        bridge: "tob603".into(),
        vxlan: "tvx603".into(),
        port: tether::link::VXLAN_PORT,
        encrypted: false,
    })
    .unwrap();
    dir.write_claims(&HostClaims {
        claims: vec![Claim {
            block,
            claimed_at_ms: 1,
            lost: false,
            // Written as agreed: the bench measures the steady control plane, not block agreement.
            state: ClaimState::Confirmed,
        }],
    })
    .unwrap();
    let records = RecordDir::new(state, "ovl");
    for j in 0..5u8 {
        records
            .write(&AttachmentRecord {
                network: "ovl".into(),
                container_id: format!("h{i}c{j}").parse().unwrap(),
                ifname: "eth0".parse().unwrap(),
                driver: tether::state::DriverKind::Overlay,
                netns: None,
                netns_id: None,
                host_ifname: None,
                bridge: Some("tob603".parse().unwrap()),
                mac: Some(tether::link::MacAddr::new([2, 0, 0, 0, i as u8, j])),
                macspoofchk: false,
                ips: vec![format!("10.230.{i}.{}/16", j + 1).parse().unwrap()],
                name: None,
                aliases: Vec::new(),
                dns: false,
                internal: false,
                own_resolver: false,
                remote: None,
            })
            .unwrap();
    }
}
