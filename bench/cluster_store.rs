//! The etcd cluster store at scale: N simulated hosts (tetherd's real overlay control plane, `ControlPlane`,
//! one per host, each with its own state directory, all threads of this process) on one etcd 3.4 in a
//! namespace of the bench's own. Each host claims one block (claim latency: from writing the pending claim
//! to the confirming rewrite of its claims file, by the file's mtime), then publishes 10 endpoint records;
//! then sampled records with a DNS name are written one at a time and their arrival at every other host is
//! the mtime of that host's remote-name file (propagation). Also: etcd's DB size and this process's RSS per
//! host. `BENCH_HOSTS=10,50,100` (default), `BENCH_SAMPLES=20`. Run with `cargo bench --bench cluster_store`.

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "../integration/harness/mod.rs"]
mod harness;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bench_settings::env_list;
use harness::etcd::Etcd;
use harness::HostNs;
use ipnetwork::{IpNetwork, Ipv4Network};
use serde_json::json;
use tether::link::MacAddr;
use tether::overlay::{ControlPlane, PeerConfig};
use tether::state::overlay::{
    claims_lock_name, Claim, ClaimState, HostClaims, NetworkFacts, OverlayDir,
};
use tether::state::{AttachmentRecord, DriverKind, NetworkLock, RecordDir};

const NETWORK: &str = "bench";
const SUBNET: &str = "10.96.0.0/12";
const BLOCK_PREFIX: u8 = 26;

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64) * p).ceil() as usize;
    samples[i.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, (i / 250) as u8, (i % 250 + 1) as u8)
}

struct SimHost {
    ip: Ipv4Addr,
    state: PathBuf,
    plane: ControlPlane,
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn facts(ip: Ipv4Addr) -> NetworkFacts {
    NetworkFacts {
        network: NETWORK.into(),
        vni: 4242,
        subnet: Some(SUBNET.parse().unwrap()),
        block_prefix: BLOCK_PREFIX,
        subnet6: None,
        block_prefix6: None,
        vtep: IpAddr::V4(ip),
        bridge: "tob4242".into(),
        vxlan: "tvx4242".into(),
        port: tether::link::VXLAN_PORT,
        encrypted: false,
    }
}

fn record(ip: Ipv4Addr, addr: Ipv4Addr, n: usize, name: Option<String>) -> AttachmentRecord {
    AttachmentRecord {
        network: NETWORK.into(),
        container_id: format!("c{n}").parse().unwrap(),
        ifname: "eth0".parse().unwrap(),
        driver: DriverKind::Overlay,
        netns: None,
        netns_id: None,
        host_ifname: None,
        bridge: None,
        mac: Some(MacAddr::new([
            2,
            ip.octets()[2],
            ip.octets()[3],
            0,
            0,
            n as u8,
        ])),
        macspoofchk: false,
        ips: vec![IpNetwork::V4(Ipv4Network::new(addr, 12).unwrap())],
        dns: name.is_some(),
        name,
        aliases: Vec::new(),
        internal: false,
        own_resolver: false,
        remote: None,
    }
}

fn run(n: usize, samples: usize) {
    let ns = HostNs::new(&format!("bcs{n}"));
    ns.ip(&["link", "set", "lo", "up"]);
    let etcd = Etcd::start(&ns, &["127.0.0.1"]);
    // Every thread started from here on (the planes and their etcd workers) is in the bench's namespace.
    let file = std::fs::File::open(ns.path_str()).unwrap();
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let root = ns.dir().join("hosts");
    // The claims lock lives under the run dir: one for the process, as on one host.
    std::env::set_var("TETHER_RUN_DIR", root.join("run"));

    let blocks: Vec<Ipv4Network> = tether::state::overlay::blocks(tether::state::overlay::Pool {
        subnet: SUBNET.parse().unwrap(),
        block_prefix: BLOCK_PREFIX,
    })
    .filter_map(|b| match b {
        IpNetwork::V4(b) => Some(b),
        IpNetwork::V6(_) => None,
    })
    .collect();
    let mut hosts = Vec::new();
    for i in 0..n {
        let ip = host_ip(i);
        let state = root.join(format!("h{i}/state"));
        let run_dir = root.join(format!("h{i}/run"));
        let section = json!({"bind": ip.to_string(), "store": {"etcd": {
            "endpoints": etcd.endpoints(), "leaseTtlSeconds": 10}}});
        let cfg = PeerConfig::from_section(&section).unwrap().unwrap();
        let plane = ControlPlane::start(cfg, &state, &run_dir).unwrap();
        hosts.push(SimHost { ip, state, plane });
    }
    std::thread::sleep(Duration::from_secs(1));

    // Claims: every host writes a pending claim of its own block at once and pokes its plane.
    let mut started = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let dir = OverlayDir::new(&h.state, NETWORK);
        let _lock = NetworkLock::exclusive(&claims_lock_name(NETWORK)).unwrap();
        let t0 = SystemTime::now();
        dir.write_claims(&HostClaims {
            claims: vec![Claim {
                block: IpNetwork::V4(blocks[i]),
                claimed_at_ms: tether::state::overlay::now_ms(),
                lost: false,
                state: ClaimState::Pending,
            }],
        })
        .unwrap();
        started.push(t0);
    }
    for h in &hosts {
        h.plane.refresh(Duration::ZERO);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut claim_latency = Vec::new();
    for (h, t0) in hosts.iter().zip(&started) {
        let dir = OverlayDir::new(&h.state, NETWORK);
        loop {
            let confirmed = dir
                .claims()
                .ok()
                .is_some_and(|c| c.claims.iter().all(|c| c.state == ClaimState::Confirmed));
            if confirmed {
                let at = mtime(&dir.path().join("claims.json")).unwrap();
                claim_latency.push(at.duration_since(*t0).unwrap_or_default());
                break;
            }
            assert!(Instant::now() < deadline, "{} never got its block", h.ip);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // Records: 10 per host (no DNS names, so no remote-name files), then wait until every table holds all.
    let publish_start = Instant::now();
    for (i, h) in hosts.iter().enumerate() {
        OverlayDir::new(&h.state, NETWORK)
            .write_facts(&facts(h.ip))
            .unwrap();
        let dir = RecordDir::new(&h.state, NETWORK);
        let base = u32::from(blocks[i].network());
        for r in 0..10 {
            dir.write(&record(h.ip, Ipv4Addr::from(base + 1 + r as u32), r, None))
                .unwrap();
        }
        h.plane.refresh(Duration::ZERO);
    }
    // Own records plus every host's block and endpoint records.
    let want = n * 11;
    let deadline = Instant::now() + Duration::from_secs(600);
    while hosts.iter().any(|h| h.plane.status().records < want) {
        assert!(
            Instant::now() < deadline,
            "records did not reach every host in 600 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let all_everywhere = publish_start.elapsed();

    // Propagation: sampled records with a DNS name, one at a time, to every other host.
    let mut propagation = Vec::new();
    for s in 0..samples {
        let w = s % n;
        let writer = &hosts[w];
        let addr = Ipv4Addr::from(u32::from(blocks[w].network()) + 20 + s as u32);
        let t0 = SystemTime::now();
        RecordDir::new(&writer.state, NETWORK)
            .write(&record(writer.ip, addr, 20 + s, Some(format!("s{s}"))))
            .unwrap();
        writer.plane.refresh(Duration::ZERO);
        let id = format!("{}_{addr}.json", writer.ip);
        let deadline = Instant::now() + Duration::from_secs(60);
        for (j, h) in hosts.iter().enumerate() {
            if j == w {
                continue;
            }
            let path = h.state.join("overlay-remote").join(NETWORK).join(&id);
            let arrived = loop {
                if let Some(at) = mtime(&path) {
                    break at;
                }
                assert!(
                    Instant::now() < deadline,
                    "sample {s} never reached {}",
                    h.ip
                );
                std::thread::sleep(Duration::from_millis(2));
            };
            propagation.push(arrived.duration_since(t0).unwrap_or_default());
        }
    }

    let status = etcd.ctl(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let db_size = v[0]["Status"]["dbSize"].as_u64().unwrap_or(0);
    let rss = rss_kb();
    let statuses: Vec<_> = hosts.iter().map(|h| h.plane.status()).collect();
    println!(
        "{n} hosts: kernel reconciles failed {} times in all (changed {} entries): the simulated hosts have no VXLAN device, which the reconcile takes as nothing to do",
        statuses.iter().map(|s| s.kernel_failures).sum::<u64>(),
        statuses.iter().map(|s| s.kernel_changes).sum::<u64>(),
    );
    println!(
        "{n} hosts on one etcd: claim p50 {} p99 {} (max {}); 10 records per host at every host {:.1} s after the first write; propagation of {} sampled records to every host p50 {} p99 {} (max {}); etcd DB {:.1} MB; this process RSS {:.1} MB ({:.0} kB per simulated host)",
        ms(pct(&mut claim_latency, 0.5)),
        ms(pct(&mut claim_latency, 0.99)),
        ms(pct(&mut claim_latency, 1.0)),
        all_everywhere.as_secs_f64(),
        samples,
        ms(pct(&mut propagation, 0.5)),
        ms(pct(&mut propagation, 0.99)),
        ms(pct(&mut propagation, 1.0)),
        db_size as f64 / 1e6,
        rss as f64 / 1024.0,
        rss as f64 / n as f64,
    );
    for h in hosts {
        h.plane.stop();
    }
    drop(etcd);
}

fn main() {
    let samples = env_list("BENCH_SAMPLES", &[20])[0].max(1);
    for n in env_list("BENCH_HOSTS", &[10, 50, 100]) {
        // Each size in a process of its own: a fresh namespace, RSS and thread count.
        if std::env::var("BENCH_ONE").is_ok() {
            run(n, samples);
            continue;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("BENCH_ONE", "1")
            .env("BENCH_HOSTS", n.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "the {n}-host run failed");
    }
}
