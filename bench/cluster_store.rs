//! The etcd cluster store at scale: N simulated hosts (tetherd's real overlay control plane, `ControlPlane`,
//! one per host, each with its own state directory) in processes of `BENCH_GROUP_SIZE` (50) hosts, each
//! process with its own run directory (so a group's hosts share one claims lock, not the whole fleet), on
//! one etcd 3.4 in a namespace of the bench's own, plus one more host in a process of its own (the
//! *probe*): its RSS is one tetherd's control plane holding the whole cluster's view. The bench process
//! drives the hosts as their plugins would: it writes their state directories and pokes their notify
//! sockets. Each host claims one block as real hosts start, spread evenly over `BENCH_CLAIM_SPREAD_MS`
//! (default 10 ms per host: a fleet started at 100 hosts a second), claim latency from writing the pending
//! claim to the confirming rewrite of its claims file (the file's mtime); then every host publishes 10
//! endpoint records; then, after `BENCH_SETTLE_S` (default 0), the cluster at rest (`BENCH_IDLE_S`,
//! default 10 s): CPU time of the host processes, of etcd and of the probe, and the probe's wake-ups
//! (context switches); then sampled records
//! with a DNS name are written one at a time and their arrival at every other host is the mtime of that
//! host's remote-name file (propagation). Also: etcd's DB size, the host processes' RSS and the probe's.
//! `BENCH_HOSTS=10,50,100` (default), `BENCH_SAMPLES=20`, `BENCH_REPAIR_MS` (the planes' repair pass;
//! tetherd's default when unset), `BENCH_RECORDS_SPREAD_MS` (the hosts' record writes spread evenly over
//! it; default 0, all at once), `BENCH_FLEET_UP_FIRST=1` (claims only once the probe sees every host up;
//! default: as the fleet starts), `BENCH_LEASE_TTL_S` (the hosts' lease TTL; tetherd's default, 10 s,
//! when unset), `BENCH_RECORDS_CAP_S` (600: the records phase's limit; progress is printed every 15 s,
//! with the emptiest host), `BENCH_ETCD_NICE` (etcd's threads at that nice value, e.g. -10: a stand-in
//! for etcd on machines of its own; default: etcd at the bench's own priority), `BENCH_START_SPREAD_MS`
//! (the hosts' planes start evenly over it, as a fleet joining over time; default 0, all at once),
//! `BENCH_RECORDS_RAMP=1` (the records' rate climbing from 0 to twice the average over the spread),
//! `BENCH_PHASE_SAMPLES` (that many hosts' first record carries a DNS name: propagation also at the
//! records phase's rate; default 0), `BENCH_PROBE_TETHERD=PATH` (the probe is that tetherd binary, not
//! one plane in this executable), `BENCH_PROBE_SMAPS=DIR` (the probe's smaps kept there),
//! `BENCH_HOSTS_NICE` (the host groups' nice value, default 10; etcd and the probe are not niced).
//! `BENCH_ETCD_PAUSE_AT_SECS` / `BENCH_ETCD_PAUSE_SECS` (etcd SIGSTOPped that many seconds into the
//! records phase, for that long, then SIGCONTed: an outage; default none).
//! Run with `cargo bench --bench cluster_store`.

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "../integration/harness/mod.rs"]
mod harness;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
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

fn start_plane(ip: Ipv4Addr, endpoints: &[String], state: &Path, run_dir: &Path) -> ControlPlane {
    let cfg = PeerConfig::from_section(&overlay_section(ip, endpoints))
        .unwrap()
        .unwrap();
    ControlPlane::start(cfg, state, run_dir).unwrap()
}

/// The JSON of a host's overlay section on the bench's etcd.
fn overlay_section(ip: Ipv4Addr, endpoints: &[String]) -> serde_json::Value {
    let mut section = json!({"bind": ip.to_string(), "store": {"etcd": {"endpoints": endpoints}}});
    // BENCH_LEASE_TTL_S: the hosts' liveness lease (tetherd's default when unset).
    if let Ok(s) = std::env::var("BENCH_LEASE_TTL_S") {
        section["store"]["etcd"]["leaseTtlSeconds"] = json!(s.parse::<u64>().unwrap());
    }
    // BENCH_REPAIR_MS: the planes' safety pass over everything (tetherd's default when unset).
    if let Ok(ms) = std::env::var("BENCH_REPAIR_MS") {
        section["repairIntervalMs"] = json!(ms.parse::<u64>().unwrap());
    }
    section
}

/// Writes a pending claim of `block` (as the plugin does) and returns when it was written.
fn claim(state: &Path, block: Ipv4Network) -> SystemTime {
    let dir = OverlayDir::new(state, NETWORK);
    let _lock = NetworkLock::exclusive(&claims_lock_name(NETWORK)).unwrap();
    write_pending_claim(&dir, block)
}

/// Writes `dir`'s claims file with one pending claim of `block` and returns when it was written.
fn write_pending_claim(dir: &OverlayDir, block: Ipv4Network) -> SystemTime {
    let t0 = SystemTime::now();
    dir.write_claims(&HostClaims {
        claims: vec![Claim {
            block: IpNetwork::V4(block),
            claimed_at_ms: tether::state::overlay::now_ms(),
            lost: false,
            state: ClaimState::Pending,
        }],
    })
    .unwrap();
    t0
}

/// The network's facts on a host, as its plugin writes them when the network is first used there: before
/// its block claim, so the host writes other hosts' names from the start of the records phase on.
fn write_facts(state: &Path, ip: Ipv4Addr) {
    OverlayDir::new(state, NETWORK)
        .write_facts(&facts(ip))
        .unwrap();
}

/// 10 endpoint records in `block`, the first with the DNS name `name` if given (no names otherwise).
fn publish_ten(state: &Path, ip: Ipv4Addr, block: Ipv4Network, name: Option<String>) {
    let dir = RecordDir::new(state, NETWORK);
    let base = u32::from(block.network());
    let mut name = name;
    for r in 0..10 {
        dir.write(&record(
            ip,
            Ipv4Addr::from(base + 1 + r as u32),
            r,
            name.take(),
        ))
        .unwrap();
    }
}

/// How long host `w`'s named endpoint `addr`, written at `t0`, took to reach each of the other n - 1
/// hosts (the mtime of its remote-name file there); waits for each until `deadline`.
fn arrivals(
    root: &Path,
    n: usize,
    w: usize,
    addr: Ipv4Addr,
    t0: SystemTime,
    deadline: Instant,
) -> Vec<Duration> {
    let mut took = Vec::new();
    for j in (0..n).filter(|j| *j != w) {
        let path = remote_name_file(root, j, w, addr);
        let arrived = loop {
            if let Some(at) = mtime(&path) {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} of {} never reached {}",
                host_ip(w),
                host_ip(j)
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        took.push(arrived.duration_since(t0).unwrap_or_default());
    }
    took
}

/// Where host `j` writes the name of the endpoint `addr` of host `w` (its mtime is the arrival).
fn remote_name_file(root: &Path, j: usize, w: usize, addr: Ipv4Addr) -> PathBuf {
    host_state(root, j)
        .join("overlay-remote")
        .join(NETWORK)
        .join(format!("{}_{addr}.json", host_ip(w)))
}

/// CPU time (user + system) of process `pid` (`self` for this one), all its threads.
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) from its closing parenthesis on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Context switches (voluntary + involuntary) of every thread of process `pid`: its wake-ups.
fn switches_of(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            kb_of(&status, "voluntary_ctxt_switches:")
                + kb_of(&status, "nonvoluntary_ctxt_switches:")
        })
        .sum()
}

fn kb_of(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The probe: one more host, alone in this process as in a real tetherd. It claims its block, publishes
/// its 10 records, and stays until the bench kills it (the bench reads its RSS from /proc).
fn probe() {
    let var = |k: &str| std::env::var(k).unwrap();
    let ip: Ipv4Addr = var("BENCH_PROBE_IP").parse().unwrap();
    let block: Ipv4Network = var("BENCH_PROBE_BLOCK").parse().unwrap();
    let endpoints: Vec<String> = var("BENCH_PROBE_ENDPOINTS")
        .split(',')
        .map(String::from)
        .collect();
    let root = PathBuf::from(var("BENCH_PROBE_DIR"));
    let state = root.join("state");
    let parent = std::os::unix::process::parent_id();
    let plane = start_plane(ip, &endpoints, &state, &root.join("run"));
    std::thread::sleep(Duration::from_secs(1));
    write_facts(&state, ip);
    claim(&state, block);
    plane.refresh(Duration::ZERO);
    publish_ten(&state, ip, block, None);
    plane.refresh(Duration::ZERO);
    // Ends with the bench, also when the bench fails.
    while std::os::unix::process::parent_id() == parent {
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::write(root.join("records"), plane.endpoint_records().to_string());
        let _ = std::fs::write(root.join("up"), plane.status().members_up.len().to_string());
    }
    // As a group does: the bench and its etcd are gone, a polite stop only lingers.
    std::process::exit(0);
}

/// The probe: host n, one more host in a process of its own (in the bench's namespace), whose memory
/// stands for one tetherd's. `BENCH_PROBE_TETHERD=PATH`: the real tetherd binary at PATH, with an
/// overlay section on the bench's etcd, driven as its plugins would (its state directory, its claims
/// lock, its control socket) and counted through its control socket's status; otherwise this executable
/// running one plane (`probe()`), which writes its counts into files.
struct Probe {
    child: std::process::Child,
    dir: PathBuf,
    tetherd: bool,
}

impl Probe {
    fn start(dir: PathBuf, ip: Ipv4Addr, block: Ipv4Network, endpoints: &[String]) -> Probe {
        let Ok(bin) = std::env::var("BENCH_PROBE_TETHERD") else {
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .env("BENCH_PROBE_IP", ip.to_string())
                .env("BENCH_PROBE_BLOCK", block.to_string())
                .env("BENCH_PROBE_ENDPOINTS", endpoints.join(","))
                .env("BENCH_PROBE_DIR", &dir)
                // The probe is one tetherd: the allocator as a real one has it, whatever this process
                // was given.
                .env_remove("MALLOC_ARENA_MAX")
                .spawn()
                .unwrap();
            return Probe {
                child,
                dir,
                tetherd: false,
            };
        };
        let (state, run) = (dir.join("state"), dir.join("run"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let config = dir.join("tetherd.json");
        let section = overlay_section(ip, endpoints);
        std::fs::write(
            &config,
            json!({"stay": true, "overlay": section}).to_string(),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("tetherd.log")).unwrap();
        let child = std::process::Command::new(&bin)
            .args(["--stay", "--config"])
            .arg(&config)
            .env("TETHER_STATE_DIR", &state)
            .env("TETHER_RUN_DIR", &run)
            .env_remove("MALLOC_ARENA_MAX")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tether::client::notify::answers(&run) {
            assert!(
                Instant::now() < deadline,
                "the probe's tetherd never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("the probe is tetherd ({bin}, BENCH_PROBE_TETHERD)");
        // As its plugins would: the network's facts and a claim, then 10 records, each told.
        std::thread::sleep(Duration::from_secs(1));
        claim_in(&run, &state, ip, block);
        let probe = Probe {
            child,
            dir,
            tetherd: true,
        };
        probe.tell(&run);
        publish_ten(&state, ip, block, None);
        probe.tell(&run);
        probe
    }

    /// Tells the probe's tetherd its records changed (what a plugin's notify does).
    fn tell(&self, run: &Path) {
        let changed = tether::client::protocol::Request::Changed {
            network: Some(NETWORK.into()),
            attachment: None,
        };
        let _ = tether::client::notify::request(run, &changed, Duration::from_secs(5));
    }

    /// A number from the probe: its endpoint records, or the members it sees up.
    fn count(&self, file: &str, status_key: &str) -> usize {
        if !self.tetherd {
            return count_in(&self.dir.join(file));
        }
        let req = tether::client::protocol::Request::Status;
        let reply =
            tether::client::notify::request(&self.dir.join("run"), &req, Duration::from_secs(5));
        let status = reply.ok().and_then(|r| r.status).unwrap_or_default();
        match find_key(&status, status_key) {
            Some(serde_json::Value::Number(v)) => v.as_u64().unwrap_or(0) as usize,
            Some(serde_json::Value::Array(v)) => v.len(),
            _ => 0,
        }
    }

    fn records(&self) -> usize {
        self.count("records", "endpointRecords")
    }

    fn up(&self) -> usize {
        self.count("up", "membersUp")
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

/// A tetherd probe does not watch its parent (the bench's own probe does): a failed run must not leave
/// it behind. SIGTERM first, as a service manager stops tetherd, so a profiler wrapped around it
/// (`scripts/tetherd-order` runs it under callgrind) writes its profile; SIGKILL if it is still there.
impl Drop for Probe {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first value named `key` anywhere in `v` (depth first).
fn find_key<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

/// A process's memory from /proc/PID/status, in kB: resident in all, its peak, and the resident split
/// into anonymous (heap, stacks: the process's own), file-backed (its binary's and libraries' pages,
/// shared with every process mapping them and dropped first under pressure) and shared memory.
struct Memory {
    rss: u64,
    peak: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    threads: u64,
}

impl Memory {
    fn of(pid: &str) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |f: &str| kb_of(&status, f);
        Memory {
            rss: kb("VmRSS:"),
            peak: kb("VmHWM:"),
            anon: kb("RssAnon:"),
            file: kb("RssFile:"),
            shmem: kb("RssShmem:"),
            threads: kb("Threads:"),
        }
    }

    fn describe(&self) -> String {
        let mb = |kb: u64| kb as f64 / 1024.0;
        format!(
            "RSS {:.1} MB (anon {:.1} MB, file {:.1} MB, shmem {:.1} MB), peak {:.1} MB, {} threads",
            mb(self.rss),
            mb(self.anon),
            mb(self.file),
            mb(self.shmem),
            mb(self.peak),
            self.threads
        )
    }
}

/// BENCH_PROBE_SMAPS=DIR: the probe's smaps and smaps_rollup copied into DIR (where its memory goes,
/// mapping by mapping).
fn keep_smaps(pid: &str, n: usize) {
    let Ok(dir) = std::env::var("BENCH_PROBE_SMAPS") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["smaps", "smaps_rollup", "status"] {
        let _ = std::fs::copy(
            format!("/proc/{pid}/{f}"),
            Path::new(&dir).join(format!("probe-{n}-{f}")),
        );
    }
}

/// Where group `g`'s processes keep their run directory (its per-network claims locks, as one host's).
fn group_run_dir(root: &Path, g: usize) -> PathBuf {
    root.join(format!("run-g{g}"))
}

fn host_state(root: &Path, i: usize) -> PathBuf {
    root.join(format!("h{i}/state"))
}

fn host_run(root: &Path, i: usize) -> PathBuf {
    root.join(format!("h{i}/run"))
}

/// Asks host `i`'s plane to read its state directory now (what a plugin's notify does).
fn poke(root: &Path, i: usize) {
    let path = tether::client::poke::overlay_socket_path(&host_run(root, i));
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.send_to(&0u64.to_be_bytes(), path);
    }
}

/// A group of simulated hosts, one process (its own run directory, so its own claims locks): starts
/// their planes, then writes `group<g>` every 100 ms ("started records-of-the-emptiest kernel-failures
/// kernel-changes the-emptiest") until the bench is gone.
fn group() {
    let var = |k: &str| std::env::var(k).unwrap();
    let g: usize = var("BENCH_GROUP").parse().unwrap();
    let first: usize = var("BENCH_GROUP_FIRST").parse().unwrap();
    let count: usize = var("BENCH_GROUP_COUNT").parse().unwrap();
    let endpoints: Vec<String> = var("BENCH_GROUP_ENDPOINTS")
        .split(',')
        .map(String::from)
        .collect();
    let root = PathBuf::from(var("BENCH_GROUP_ROOT"));
    let parent = std::os::unix::process::parent_id();
    // BENCH_START_SPREAD_MS: host i of the fleet's n starts its plane at i * spread / n after the bench's
    // start time (each start is a lease grant and a liveness put delivered to every host up by then).
    let start_at = SystemTime::UNIX_EPOCH
        + Duration::from_millis(var("BENCH_GROUP_START_AT").parse().unwrap());
    let start_spread = Duration::from_millis(var("BENCH_GROUP_START_SPREAD").parse().unwrap());
    let fleet: usize = var("BENCH_GROUP_FLEET").parse().unwrap();
    let planes: Vec<ControlPlane> = (first..first + count)
        .map(|i| {
            let at = start_at + start_spread.mul_f64(i as f64 / fleet as f64);
            std::thread::sleep(at.duration_since(SystemTime::now()).unwrap_or_default());
            start_plane(
                host_ip(i),
                &endpoints,
                &host_state(&root, i),
                &host_run(&root, i),
            )
        })
        .collect();
    let out = root.join(format!("group{g}"));
    while std::os::unix::process::parent_id() == parent {
        let (emptiest, fewest) = (first..)
            .zip(&planes)
            .map(|(i, p)| (host_ip(i), p.endpoint_records()))
            .min_by_key(|(_, n)| *n)
            .unwrap_or((host_ip(first), 0));
        let (mut failures, mut changes) = (0, 0);
        // Copying every plane's status (its member list) ten times a second would load the bench.
        if root.join("report-kernel").exists() {
            for p in &planes {
                let s = p.status();
                failures += s.kernel_failures;
                changes += s.kernel_changes;
            }
        }
        let _ = std::fs::write(
            root.join(format!(".group{g}")),
            format!("1 {fewest} {failures} {changes} {emptiest}"),
        );
        let _ = std::fs::rename(root.join(format!(".group{g}")), &out);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The bench is gone (done, or panicked): nothing to report to, and etcd is gone with it. Stopping
    // every plane politely took minutes under load, and the orphaned planes loaded the next run.
    std::process::exit(0);
}

/// What every group's last report says together.
#[derive(Default)]
struct Report {
    /// The fewest endpoint records any host holds, and which host that is.
    fewest: usize,
    emptiest: String,
    kernel_failures: u64,
    kernel_changes: u64,
}

/// Every group's last report together; `None` while a group has not started all its planes.
fn groups_report(root: &Path, groups: usize) -> Option<Report> {
    let mut r = Report {
        fewest: usize::MAX,
        ..Report::default()
    };
    for g in 0..groups {
        let text = std::fs::read_to_string(root.join(format!("group{g}"))).ok()?;
        let f: Vec<&str> = text.split_whitespace().collect();
        let v: Vec<u64> = f.iter().take(4).map(|x| x.parse().unwrap_or(0)).collect();
        if v.len() < 4 || v[0] != 1 {
            return None;
        }
        if (v[1] as usize) < r.fewest {
            r.fewest = v[1] as usize;
            r.emptiest = f.get(4).unwrap_or(&"?").to_string();
        }
        r.kernel_failures += v[2];
        r.kernel_changes += v[3];
    }
    Some(r)
}

/// Writes host `i`'s pending claim of `block` under its group's claims lock (as its plugin does).
fn claim_as_group(root: &Path, group_size: usize, i: usize, block: Ipv4Network) -> SystemTime {
    let run_dir = group_run_dir(root, i / group_size);
    claim_in(&run_dir, &host_state(root, i), host_ip(i), block)
}

/// Writes a host's network facts and pending claim of `block` under the claims lock of its run
/// directory `run_dir` (as its plugin does).
fn claim_in(run_dir: &Path, state: &Path, ip: Ipv4Addr, block: Ipv4Network) -> SystemTime {
    let locks = run_dir.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join(format!("net-{NETWORK}.lock")))
        .unwrap();
    lock.lock().unwrap();
    write_facts(state, ip);
    let dir = OverlayDir::new(state, NETWORK);
    write_pending_claim(&dir, block)
}

/// What etcd answered, by gRPC method: (calls, calls not OK); and `<method> streams`: (streams opened,
/// 0). From etcd's `/metrics` (its gRPC server's counters): what the fleet asked of etcd in a phase.
#[derive(Default)]
struct EtcdCalls(BTreeMap<String, (u64, u64)>);

/// etcd's counters now (etcd serves `/metrics` on its client address, in this thread's namespace).
fn etcd_calls() -> EtcdCalls {
    use std::io::{Read, Write};
    let mut text = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:2379") {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ =
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    let mut calls = EtcdCalls::default();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(k)?.strip_prefix("=\"")?.strip_suffix('"'))
                .unwrap_or("")
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        let method = label("grpc_method");
        match (name, label("grpc_type")) {
            ("grpc_server_handled_total", "unary") => {
                let e = calls.0.entry(method.to_string()).or_default();
                e.0 += n;
                if label("grpc_code") != "OK" {
                    e.1 += n;
                }
            }
            ("grpc_server_started_total", "bidi_stream") => {
                calls.0.entry(format!("{method} streams")).or_default().0 += n;
            }
            _ => {}
        }
    }
    calls
}

impl EtcdCalls {
    /// What etcd answered since `before`: "Txn 1234 (56 failed), ...".
    fn since(&self, before: &EtcdCalls) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter_map(|(method, (n, failed))| {
                let (n0, f0) = before.0.get(method).copied().unwrap_or_default();
                let (n, failed) = (n.saturating_sub(n0), failed.saturating_sub(f0));
                match (n, failed) {
                    (0, _) => None,
                    (n, 0) => Some(format!("{method} {n}")),
                    (n, f) => Some(format!("{method} {n} ({f} failed)")),
                }
            })
            .collect();
        parts.join(", ")
    }
}

/// BENCH_ETCD_PAUSE_AT_SECS / BENCH_ETCD_PAUSE_SECS: the bench's etcd stopped (SIGSTOP) that many
/// seconds into the records phase, for that long, then continued (SIGCONT): an outage longer than the
/// lease, reproducible. `None` when unset.
fn etcd_outage(pid: u32, records_start: Instant) -> Option<std::thread::JoinHandle<()>> {
    let at = Duration::from_secs(
        std::env::var("BENCH_ETCD_PAUSE_AT_SECS")
            .ok()?
            .parse()
            .unwrap(),
    );
    let long = Duration::from_secs(
        std::env::var("BENCH_ETCD_PAUSE_SECS")
            .expect("BENCH_ETCD_PAUSE_AT_SECS without BENCH_ETCD_PAUSE_SECS")
            .parse()
            .unwrap(),
    );
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    Some(std::thread::spawn(move || {
        std::thread::sleep((records_start + at).saturating_duration_since(Instant::now()));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        println!(
            "etcd stopped {:.1} s into the records phase for {} s (BENCH_ETCD_PAUSE_AT_SECS, BENCH_ETCD_PAUSE_SECS)",
            records_start.elapsed().as_secs_f64(),
            long.as_secs()
        );
        std::thread::sleep(long);
        // etcd may be gone already (a failed run tore it down).
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        println!(
            "etcd continued {:.1} s into the records phase",
            records_start.elapsed().as_secs_f64()
        );
    }))
}

/// BENCH_ETCD_NICE: every thread of etcd at this nice value, so the simulated hosts sharing its cores do
/// not starve it (a stand-in for etcd on machines of its own; threads it makes later inherit it).
fn renice_etcd(pid: u32, nice: &str) {
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect();
    let ok = std::process::Command::new("renice")
        .args(["-n", nice, "-p"])
        .args(&tids)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "renice etcd to {nice}");
    println!(
        "etcd (pid {pid}, {} threads) at nice {nice} (BENCH_ETCD_NICE): not the default",
        tids.len()
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn run(n: usize, samples: usize) {
    let load_before = load();
    let ns = HostNs::new(&format!("bcs{n}"));
    ns.ip(&["link", "set", "lo", "up"]);
    let etcd = Etcd::start(&ns, &["127.0.0.1"]);
    if let Ok(nice) = std::env::var("BENCH_ETCD_NICE") {
        renice_etcd(etcd.pid(), &nice);
    }
    // Every process started from here on (the host groups and the probe) is in the bench's namespace.
    let file = std::fs::File::open(ns.path_str()).unwrap();
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let root = ns.dir().join("hosts");
    std::fs::create_dir_all(&root).unwrap();
    // The probe's claims lock lives under this run dir (each group has its own).
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
    // The simulated hosts: BENCH_GROUP_SIZE (50) per process, each group with its own run directory.
    let group_size = env_list("BENCH_GROUP_SIZE", &[50])[0].max(1);
    let groups = n.div_ceil(group_size);
    let start_spread = Duration::from_millis(env_list("BENCH_START_SPREAD_MS", &[0])[0] as u64);
    let start_at = SystemTime::now() + Duration::from_secs(1);
    let start_at_ms = start_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    // BENCH_HOSTS_NICE (10): the host groups' nice value (etcd and the probe stay at the bench's own).
    // On this 2-core VM 1000 simulated hosts took 1.8 cores while etcd got 0.07 (session 18), which
    // measured how the VM starves etcd, not etcd; niced, the hosts get what etcd leaves them.
    let hosts_nice = env_list("BENCH_HOSTS_NICE", &[10])[0].min(19) as libc::c_int;
    println!("{n} hosts: the host groups at nice {hosts_nice} (BENCH_HOSTS_NICE), etcd and the probe at the bench's own");
    let mut fleet = Vec::new();
    for g in 0..groups {
        let first = g * group_size;
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        // SAFETY: setpriority is async-signal-safe and touches no memory of the parent; the child runs
        // it alone between fork and exec, and every thread the group starts later inherits it.
        unsafe {
            cmd.pre_exec(
                move || match libc::setpriority(libc::PRIO_PROCESS, 0, hosts_nice) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                },
            );
        }
        let child = cmd
            .env("BENCH_GROUP", g.to_string())
            .env("BENCH_GROUP_FIRST", first.to_string())
            .env("BENCH_GROUP_COUNT", group_size.min(n - first).to_string())
            .env("BENCH_GROUP_ENDPOINTS", etcd.endpoints().join(","))
            .env("BENCH_GROUP_ROOT", &root)
            .env("TETHER_RUN_DIR", group_run_dir(&root, g))
            .env("BENCH_GROUP_START_AT", start_at_ms.to_string())
            .env(
                "BENCH_GROUP_START_SPREAD",
                start_spread.as_millis().to_string(),
            )
            .env("BENCH_GROUP_FLEET", n.to_string())
            .spawn()
            .unwrap();
        fleet.push(child);
    }
    let deadline = Instant::now() + start_spread + Duration::from_secs(300);
    while groups_report(&root, groups).is_none() {
        assert!(Instant::now() < deadline, "the host groups never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    if !start_spread.is_zero() {
        println!(
            "{n} hosts: every plane started, over {:.1} s (BENCH_START_SPREAD_MS); load average now: {}",
            start_spread.as_secs_f64(),
            load()
        );
    }
    // The probe: host n, a process of its own (in this thread's namespace, the bench's).
    let probe = Probe::start(root.join("probe"), host_ip(n), blocks[n], &etcd.endpoints());
    std::thread::sleep(Duration::from_secs(2));
    // BENCH_FLEET_UP_FIRST=1: the claims wait until the probe sees every host up (the fleet's start,
    // each liveness key delivered to every host, no longer overlaps them). Default: they do not wait.
    if env_list("BENCH_FLEET_UP_FIRST", &[0])[0] == 1 {
        let fleet_up = Instant::now();
        let deadline = fleet_up + Duration::from_secs(600);
        while probe.up() < n {
            assert!(Instant::now() < deadline, "the fleet never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "{n} hosts: the probe saw every host up {:.1} s after it started; load average now: {}",
            fleet_up.elapsed().as_secs_f64() + 2.0,
            load()
        );
    }

    // Claims: host i writes its pending claim at i * spread / n, as hosts of a fleet start one after
    // another, and pokes its plane.
    let spread = Duration::from_millis(env_list("BENCH_CLAIM_SPREAD_MS", &[10 * n])[0] as u64);
    // CPU time is what the other engineers' load on this VM does not change: planes' and etcd's.
    let etcd_pid = etcd.pid().to_string();
    let fleet_cpu = || -> Duration { fleet.iter().map(|c| cpu_of(&c.id().to_string())).sum() };
    let cpu_before_claims = (fleet_cpu(), cpu_of(&etcd_pid));
    let calls_before_claims = etcd_calls();
    let claims_start = Instant::now();
    let mut started = Vec::new();
    for (i, block) in blocks.iter().enumerate().take(n) {
        let at = claims_start + spread.mul_f64(i as f64 / n as f64);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        started.push(claim_as_group(&root, group_size, i, *block));
        poke(&root, i);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut claim_latency = Vec::new();
    for (i, t0) in started.iter().enumerate() {
        let dir = OverlayDir::new(&host_state(&root, i), NETWORK);
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
            assert!(
                Instant::now() < deadline,
                "{} never got its block",
                host_ip(i)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    let claims_cpu = (
        fleet_cpu() - cpu_before_claims.0,
        cpu_of(&etcd_pid) - cpu_before_claims.1,
    );
    // Printed now: at the largest sizes the phases after this may not finish on a small machine.
    println!(
        "{n} hosts: claim p50 {} p99 {} (max {}), claims spread over {:.1} s; CPU from the first claim to the last confirmed: planes {:.0} ms, etcd {:.0} ms; load average now: {}",
        ms(pct(&mut claim_latency, 0.5)),
        ms(pct(&mut claim_latency, 0.99)),
        ms(pct(&mut claim_latency, 1.0)),
        spread.as_secs_f64(),
        claims_cpu.0.as_secs_f64() * 1000.0,
        claims_cpu.1.as_secs_f64() * 1000.0,
        load(),
    );
    println!(
        "{n} hosts: etcd answered in the claims phase: {}",
        etcd_calls().since(&calls_before_claims)
    );

    // Records: 10 per host (no DNS names, so no remote-name files), then wait until every table holds all.
    let cpu_before_records = (fleet_cpu(), cpu_of(&etcd_pid));
    let calls_before_records = etcd_calls();
    let publish_start = Instant::now();
    let outage = etcd_outage(etcd.pid(), publish_start);
    // BENCH_RECORDS_SPREAD_MS (default 0: every host at once): host i publishes at i * spread / n.
    let records_spread = Duration::from_millis(env_list("BENCH_RECORDS_SPREAD_MS", &[0])[0] as u64);
    // BENCH_PHASE_SAMPLES (default 0): that many hosts, evenly spaced, give their first record a DNS name,
    // so propagation is also measured for records written at the phase's rate (their arrival at every
    // other host, read once the phase is over).
    let phase_samples = env_list("BENCH_PHASE_SAMPLES", &[0])[0].min(n);
    let named = |i: usize| phase_samples > 0 && (i * phase_samples) % n < phase_samples;
    let mut phase_written = Vec::new();
    // BENCH_RECORDS_RAMP=1: the rate climbs evenly from 0 to 2n / spread instead (host i at
    // spread * sqrt(i / n)), so one run shows the rate at which etcd's applied index stops keeping up.
    let ramp = env_list("BENCH_RECORDS_RAMP", &[0])[0] == 1;
    for (i, block) in blocks.iter().enumerate().take(n) {
        let share = i as f64 / n as f64;
        let at = publish_start + records_spread.mul_f64(if ramp { share.sqrt() } else { share });
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let name = named(i).then(|| format!("p{i}"));
        let t0 = SystemTime::now();
        publish_ten(&host_state(&root, i), host_ip(i), *block, name);
        poke(&root, i);
        if named(i) {
            phase_written.push((i, Ipv4Addr::from(u32::from(block.network()) + 1), t0));
        }
    }
    // Every host's endpoint records (the probe's included). Block claims are not counted: since the
    // watch carries none, a host reads them when it needs them (and every repair period), not as made.
    let want = (n + 1) * 10;
    // BENCH_RECORDS_CAP_S (600): how long the records phase may take before the run fails (and cleans up).
    let cap = Duration::from_secs(env_list("BENCH_RECORDS_CAP_S", &[600])[0] as u64);
    let deadline = Instant::now() + cap;
    let mut next_progress = Instant::now() + Duration::from_secs(15);
    while groups_report(&root, groups).is_none_or(|r| r.fewest < want) {
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(15);
            let r = groups_report(&root, groups).unwrap_or_default();
            println!(
                "{n} hosts: records phase at {:.0} s: the emptiest host ({}) holds {} of {want} endpoint records; CPU so far: planes {:.0} ms, etcd {:.0} ms; load average {}",
                publish_start.elapsed().as_secs_f64(),
                r.emptiest,
                r.fewest,
                (fleet_cpu() - cpu_before_records.0).as_secs_f64() * 1000.0,
                (cpu_of(&etcd_pid) - cpu_before_records.1).as_secs_f64() * 1000.0,
                load()
            );
        }
        assert!(
            Instant::now() < deadline,
            "records did not reach every host in {} s",
            cap.as_secs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let all_everywhere = publish_start.elapsed();
    if let Some(outage) = outage {
        outage.join().unwrap();
    }
    let records_cpu = (
        fleet_cpu() - cpu_before_records.0,
        cpu_of(&etcd_pid) - cpu_before_records.1,
    );
    println!(
        "{n} hosts: 10 records per host at every host {:.1} s after the first write, CPU meanwhile: planes {:.0} ms, etcd {:.0} ms; load average now: {}",
        all_everywhere.as_secs_f64(),
        records_cpu.0.as_secs_f64() * 1000.0,
        records_cpu.1.as_secs_f64() * 1000.0,
        load()
    );
    // Each host's 10 records are one transaction, delivered to the n other hosts (the probe included).
    let deliveries = (n * n) as f64;
    println!(
        "{n} hosts: CPU per host's transaction (10 records) delivered to one host: etcd {:.1} us, planes {:.1} us ({:.0} transactions at {:.1} a second)",
        records_cpu.1.as_secs_f64() * 1e6 / deliveries,
        records_cpu.0.as_secs_f64() * 1e6 / deliveries,
        n,
        n as f64 / all_everywhere.as_secs_f64().max(records_spread.as_secs_f64()),
    );
    println!(
        "{n} hosts: etcd answered in the records phase: {}",
        etcd_calls().since(&calls_before_records)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut phase_propagation: Vec<Duration> = phase_written
        .iter()
        .flat_map(|(w, addr, t0)| arrivals(&root, n, *w, *addr, *t0, deadline))
        .collect();
    if !phase_propagation.is_empty() {
        println!(
            "{n} hosts: propagation of {} records written in the records phase (BENCH_PHASE_SAMPLES) to every host: p50 {} p99 {} (max {})",
            phase_written.len(),
            ms(pct(&mut phase_propagation, 0.5)),
            ms(pct(&mut phase_propagation, 0.99)),
            ms(pct(&mut phase_propagation, 1.0)),
        );
    }
    // BENCH_SETTLE_S (default 0): a wait before the rest window, so that what the records phase set off
    // (a wave of leases lost in it) is over on every tree before "at rest" is measured.
    let settle = Duration::from_secs(env_list("BENCH_SETTLE_S", &[0])[0] as u64);
    if !settle.is_zero() {
        let calls_before_settle = etcd_calls();
        std::thread::sleep(settle);
        println!(
            "{n} hosts: etcd answered in the {} s before the rest window: {}",
            settle.as_secs(),
            etcd_calls().since(&calls_before_settle)
        );
    }
    // The cluster at rest: nothing is written; what the planes, their etcd clients and etcd still spend.
    let idle = Duration::from_secs(env_list("BENCH_IDLE_S", &[10])[0] as u64);
    let probe_pid = probe.pid();
    let before = (
        fleet_cpu(),
        cpu_of(&etcd_pid),
        cpu_of(&probe_pid),
        switches_of(&probe_pid),
    );
    let calls_before_rest = etcd_calls();
    std::thread::sleep(idle);
    let per_s = |d: Duration| d.as_secs_f64() * 1000.0 / idle.as_secs_f64();
    println!(
        "{n} hosts at rest for {:.0} s: CPU of the {n} planes {:.1} ms/s ({:.3} ms/s per host), etcd {:.1} ms/s, the probe (one tetherd's plane) {:.2} ms/s and {:.1} wake-ups/s; load average {}",
        idle.as_secs_f64(),
        per_s(fleet_cpu() - before.0),
        per_s(fleet_cpu() - before.0) / n as f64,
        per_s(cpu_of(&etcd_pid) - before.1),
        per_s(cpu_of(&probe_pid) - before.2),
        (switches_of(&probe_pid) - before.3) as f64 / idle.as_secs_f64(),
        load(),
    );
    println!(
        "{n} hosts: etcd answered at rest: {}",
        etcd_calls().since(&calls_before_rest)
    );
    // Propagation: sampled records with a DNS name, one at a time, to every other host.
    let mut propagation = Vec::new();
    for s in 0..samples {
        let w = s % n;
        let addr = Ipv4Addr::from(u32::from(blocks[w].network()) + 20 + s as u32);
        let t0 = SystemTime::now();
        RecordDir::new(&host_state(&root, w), NETWORK)
            .write(&record(host_ip(w), addr, 20 + s, Some(format!("s{s}"))))
            .unwrap();
        poke(&root, w);
        let deadline = Instant::now() + Duration::from_secs(60);
        propagation.extend(arrivals(&root, n, w, addr, t0, deadline));
    }

    // The probe's RSS once it holds the whole cluster's records, as one tetherd would.
    let deadline = Instant::now() + Duration::from_secs(120);
    while probe.records() < want {
        assert!(
            Instant::now() < deadline,
            "the probe never had every record"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let probe_memory = Memory::of(&probe.pid());
    keep_smaps(&probe.pid(), n);
    let probe_kind = match probe.tetherd {
        true => "tetherd",
        false => "one plane in the bench executable",
    };
    drop(probe);

    let status = etcd.ctl(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let db_size = v[0]["Status"]["dbSize"].as_u64().unwrap_or(0);
    let rss: u64 = fleet
        .iter()
        .map(|c| {
            kb_of(
                &std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default(),
                "VmRSS:",
            )
        })
        .sum();
    // The groups count their planes' kernel work once asked (the marker file), in their next report.
    std::fs::write(root.join("report-kernel"), "").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for g in 0..groups {
        let _ = std::fs::write(root.join(format!("group{g}")), "0 0 0 0");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut report = None;
    while report.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        report = groups_report(&root, groups);
    }
    let Report {
        kernel_failures: failures,
        kernel_changes: changes,
        ..
    } = report.unwrap_or_default();
    println!(
        "{n} hosts: kernel reconciles failed {failures} times in all (changed {changes} entries): the simulated hosts have no VXLAN device, which the reconcile takes as nothing to do",
    );
    println!(
        "{n} hosts on one etcd: claim p50 {} p99 {} (max {}); 10 records per host at every host {:.1} s after the first write; propagation of {} sampled records to every host p50 {} p99 {} (max {}); etcd DB {:.1} MB; the {groups} host processes' RSS {:.1} MB ({:.0} kB per simulated host)",
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
    println!(
        "{n} hosts: one host alone in a process (the probe, host {}, {}) {}; claims spread over {:.1} s; load average before the run: {}, after: {}",
        n + 1,
        probe_kind,
        probe_memory.describe(),
        spread.as_secs_f64(),
        load_before,
        load(),
    );
    for mut c in fleet {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(etcd);
}

fn main() {
    // TETHER_LOG (a level or target=level pairs) for the hosts' planes and etcd workers, on stderr.
    tether::cni::logging::init_from_env();
    if std::env::var("BENCH_PROBE_IP").is_ok() {
        return probe();
    }
    if std::env::var("BENCH_GROUP").is_ok() {
        return group();
    }
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

/// The count a probe writes into one of its files (0 while the file is missing or half written).
fn count_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|r| r.trim().parse::<usize>().ok())
        .unwrap_or(0)
}
