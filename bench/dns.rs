//! The embedded resolver beside aardvark-dns (Debian's 1.4, run as netavark runs it: a config directory
//! with one file per network, listening on the bridge gateway), both serving the same network of
//! `BENCH_RECORDS` (1000) containers in a test host namespace, queried from one container namespace.
//!
//! Per server and query kind: queries per second with `BENCH_WINDOW` (64) queries in flight for
//! `BENCH_SECONDS` (3), latency p50/p99, and CPU per query at a paced 2000 queries/s (the median of
//! `BENCH_PACED_ROUNDS` (3) windows of `BENCH_SECONDS`, the servers taking turns); then each server's RSS.
//! Forwarded names go to a fake upstream in a test namespace (both servers are pointed at it: tetherd through
//! TETHER_RESOLV_CONF, aardvark-dns through a private mount namespace with that file over /etc/resolv.conf).
//! `BENCH_REST_S` (10) first measures each server's CPU and wake-ups while nobody asks (0: skipped).
//! `BENCH_PACED_ONLY_S=N` runs only the paced local-name phase, N seconds per server (for profiling);
//! `BENCH_NO_NSID=1` writes the other containers' records without their namespaces' identities, as tether
//! wrote them before it kept those (tetherd then remembers each namespace itself).
//! Run with `sudo cargo bench --bench dns`; touches nothing of the machine's own network.

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "../integration/harness/mod.rs"]
mod harness;

use bench_settings::env_list;
use harness::dns_upstream::{answer_fixed, in_netns, spawn_in_netns, FakeUpstream};
use harness::{cni_result, network_conf, HostNs, NetNs};
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether::client::protocol::Request;
use tether::dns::wire;
use tether::state::{AttachmentRecord, RecordDir};

const AARDVARK: &str = "/usr/lib/podman/aardvark-dns";
const NETWORK: &str = "bench";
const GATEWAY: &str = "10.70.0.1";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Local,
    NetworkForm,
    ForwardedRepeated,
    ForwardedUnique,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Local => "local name",
            Kind::NetworkForm => "NAME.NETWORK (aardvark: NAME.dns.podman)",
            Kind::ForwardedRepeated => "forwarded, 10 names repeated",
            Kind::ForwardedUnique => "forwarded, every name new",
        }
    }
}

struct Server {
    label: &'static str,
    addr: SocketAddr,
    pid: i32,
    /// The suffix of the NAME.NETWORK form this server answers.
    network_suffix: &'static str,
}

struct Measured {
    qps: f64,
    p50: Duration,
    p99: Duration,
    lost: u64,
}

fn main() {
    let records = env_list("BENCH_RECORDS", &[1000])[0].max(2);
    let seconds = env_list("BENCH_SECONDS", &[3])[0].max(1) as u64;
    let window = env_list("BENCH_WINDOW", &[64])[0].max(1);

    let host = HostNs::new("dnsb");
    let outside = host.outside();
    // Answers every name but the flood's (`*.blackhole.test`), which it never answers.
    let upstream = FakeUpstream::start_with(
        &outside.ns,
        outside.addr,
        Box::new(|q, raw, out| !q.name.ends_with(".blackhole.test") && answer_fixed(q, raw, out)),
    );
    let resolv_conf = host.dir().join("resolv.conf");
    std::fs::write(&resolv_conf, format!("nameserver {}\n", outside.addr)).unwrap();
    let daemon_conf = host.dir().join("tetherd.json");
    std::fs::write(&daemon_conf, r#"{"idleGraceMs": 60000}"#).unwrap();

    // The client: a real container on a tether-bridge network (starts tetherd).
    let client = host.container("client");
    let mut conf = network_conf::tether_bridge(&host, "1.1.0", "10.70.0.0/16");
    conf["name"] = json!(NETWORK);
    conf["bridge"] = json!("tb0");
    let add = |c: &NetNs, name: &str| -> String {
        let out = host
            .tether_bridge()
            .cmd("ADD")
            .container(c)
            .args(&format!("K8S_POD_NAME={name}"))
            .conf(&conf)
            .env(
                "TETHER_RESOLV_CONF",
                Some(&resolv_conf.display().to_string()),
            )
            .env(
                "TETHER_DAEMON_CONFIG",
                Some(&daemon_conf.display().to_string()),
            )
            .run();
        cni_result::ip(out.result(), "4")
    };
    let client_ip = add(&client, "client");

    // The other containers: namespaces made in one `ip -batch`, records written as a plugin would.
    eprintln!("making {} container namespaces...", records - 1);
    let fillers = Fillers::make(&host, records - 1);
    let dir = RecordDir::new(&host.state_dir(), NETWORK);
    let mut aardvark_lines = vec![GATEWAY.to_string(), format!("client {client_ip}  client")];
    for (i, ns) in fillers.paths.iter().enumerate() {
        let ip = filler_ip(i);
        let mut rec: AttachmentRecord = serde_json::from_value(json!({
            "network": NETWORK, "containerId": format!("f{i}"), "ifname": "eth0", "driver": "bridge",
            "netns": ns, "ips": [format!("{ip}/16")], "name": format!("c{i}"), "dns": true,
        }))
        .unwrap();
        // The namespace's identity, as a plugin records it: without it tetherd treats the record as
        // one written before identities were kept.
        if std::env::var_os("BENCH_NO_NSID").is_none() {
            rec.netns_id = Some(tether::netns::NetNs::open(ns).unwrap().id().unwrap());
        }
        dir.write(&rec).unwrap();
        aardvark_lines.push(format!("f{i} {ip}  c{i}"));
    }
    let run_dir = host.run_dir();
    let started = Instant::now();
    tether::client::notify::request(
        &run_dir,
        &Request::Changed {
            network: Some(NETWORK.into()),
            attachment: None,
        },
        Duration::from_secs(120),
    )
    .expect("tetherd took the records");
    eprintln!(
        "tetherd serves {records} containers ({:.0} ms to open every resolver)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let tetherd_pid: i32 = std::fs::read_to_string(run_dir.join("tetherd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let mut servers = vec![Server {
        label: "tetherd",
        addr: "127.0.0.11:53".parse().unwrap(),
        pid: tetherd_pid,
        network_suffix: NETWORK,
    }];
    let aardvark = if Path::new(AARDVARK).exists() {
        let a = Aardvark::start(&host, &aardvark_lines, &resolv_conf);
        servers.push(Server {
            label: "aardvark-dns 1.4",
            addr: format!("{GATEWAY}:53").parse().unwrap(),
            pid: a.pid,
            network_suffix: "dns.podman",
        });
        Some(a)
    } else {
        println!("SKIP aardvark-dns column: {AARDVARK} is missing (Debian package aardvark-dns)");
        None
    };

    let rss_at_rest: Vec<String> = servers.iter().map(|s| rss(s.pid)).collect();
    let rest = Duration::from_secs(env_list("BENCH_REST_S", &[10])[0] as u64);
    if !rest.is_zero() {
        at_rest(&servers, rest);
    }
    if let Some(&paced) = env_list("BENCH_PACED_ONLY_S", &[]).first() {
        paced_only(
            &client,
            &servers,
            records,
            Duration::from_secs(paced as u64),
        );
        drop(aardvark);
        let _ = tether::client::notify::request(&run_dir, &Request::Stop, Duration::from_secs(5));
        return;
    }
    let rounds = env_list("BENCH_PACED_ROUNDS", &[3])[0].max(1);
    let mut rows = Vec::new();
    for kind in [
        Kind::Local,
        Kind::NetworkForm,
        Kind::ForwardedRepeated,
        Kind::ForwardedUnique,
    ] {
        let saturated: Vec<Measured> = servers
            .iter()
            .map(|s| {
                check_answers(&client, s, kind, records);
                saturate(
                    &client,
                    s,
                    kind,
                    records,
                    window,
                    Duration::from_secs(seconds),
                )
            })
            .collect();
        // The paced windows alternate between the servers, round after round, so that the machine's drift
        // over the minute hits both alike; each server's figure is the median of its rounds.
        let mut paced: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        for round in 0..rounds as u64 {
            for (s, samples) in servers.iter().zip(&mut paced) {
                let window = Duration::from_secs(seconds);
                // Names of their own per round: "every name new" stays new.
                let first = (round + 1) * 1_000_000;
                if let Some(cpu) = cpu_per_query(&client, s, kind, records, first, window) {
                    samples.push(cpu);
                }
            }
        }
        for ((s, m), samples) in servers.iter().zip(saturated).zip(paced) {
            rows.push((kind, s.label, m, median(samples)));
        }
    }
    println!();
    println!("| query | server | queries/s | p50 | p99 | lost | CPU per query at 2000/s (median of {rounds}) |");
    println!("|---|---|---|---|---|---|---|");
    for (kind, label, m, cpu) in &rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            kind.label(),
            label,
            m.qps,
            us(m.p50),
            us(m.p99),
            m.lost,
            cpu.map(|c| format!("{c:.1} µs"))
                .unwrap_or_else(|| "n/a".into())
        );
    }
    // tetherd again, while another container on the network floods unique names nobody answers.
    let hostile = host.container("hostile");
    add(&hostile, "hostile");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        spawn_in_netns(&hostile, move || flood_unanswerable(stop))
    };
    let flooded: Vec<(Kind, Measured)> = [Kind::Local, Kind::ForwardedUnique]
        .into_iter()
        .map(|kind| {
            let m = saturate(
                &client,
                &servers[0],
                kind,
                records,
                window,
                Duration::from_secs(seconds),
            );
            (kind, m)
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    let flood_rate = flood.join().expect("flood thread");
    println!();
    println!(
        "| query (tetherd, another container flooding {flood_rate:.0} unanswerable names/s) | queries/s | p50 | p99 | lost |"
    );
    println!("|---|---|---|---|---|");
    for (kind, m) in &flooded {
        println!(
            "| {} | {:.0} | {} | {} | {} |",
            kind.label(),
            m.qps,
            us(m.p50),
            us(m.p99),
            m.lost
        );
    }
    println!();
    println!("| server | RSS with {records} records, before the queries | after them (tetherd: cache full) |");
    println!("|---|---|---|");
    for (s, at_rest) in servers.iter().zip(&rss_at_rest) {
        println!("| {} | {} | {} |", s.label, at_rest, rss(s.pid));
    }
    println!(
        "\nupstream queries seen: {} (repeated names are cached by tetherd only)",
        upstream.queries()
    );
    drop(aardvark);
    let _ = tether::client::notify::request(&run_dir, &Request::Stop, Duration::from_secs(5));
}

/// Unique names the upstream never answers, about 10000 a second, from one socket that never reads its
/// replies; returns the rate reached.
fn flood_unanswerable(stop: Arc<AtomicBool>) -> f64 {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.connect("127.0.0.11:53").unwrap();
    let (start, mut sent) = (Instant::now(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        for _ in 0..10 {
            sent += 1;
            let name = format!("f{sent}.blackhole.test");
            let _ = sock.send(&wire::build_query(sent as u16, &name, wire::TYPE_A, false));
        }
        if let Some(rest) = Duration::from_millis(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    sent as f64 / start.elapsed().as_secs_f64()
}

fn filler_ip(i: usize) -> String {
    format!("10.70.{}.{}", 1 + i / 200, 2 + i % 200)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// VmRSS, split into anonymous memory (heap, stacks) and file-backed pages (mostly the binary's text).
fn rss(pid: i32) -> String {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return "gone".into();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{} kB (anon {}, file {}; {} threads)",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:")
    )
}

/// Only the paced local-name phase, for `seconds` per server, each bracketed by the wall clock (for
/// slicing a `perf record` of the server taken meanwhile).
fn paced_only(client: &NetNs, servers: &[Server], records: usize, seconds: Duration) {
    for s in servers {
        check_answers(client, s, Kind::Local, records);
        let from = std::time::SystemTime::now();
        let cpu = cpu_per_query(client, s, Kind::Local, records, 1_000_000, seconds);
        let to = std::time::SystemTime::now();
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        };
        println!(
            "{} (pid {}): local names paced at 2000/s from {:.3} to {:.3}: CPU per query {}",
            s.label,
            s.pid,
            unix(from),
            unix(to),
            cpu.map(|c| format!("{c:.1} µs"))
                .unwrap_or_else(|| "n/a".into())
        );
    }
}

/// Each server's CPU and wake-ups while nobody asks it anything, over one window (`BENCH_REST_S`, 10 s:
/// two of tetherd's checks for gone containers). The paced CPU per query includes this rate.
fn at_rest(servers: &[Server], window: Duration) {
    let before: Vec<_> = servers.iter().map(|s| schedstat(s.pid)).collect();
    std::thread::sleep(window);
    println!();
    println!(
        "| server, at rest with {} s | CPU | wake-ups |",
        window.as_secs()
    );
    println!("|---|---|---|");
    for (s, before) in servers.iter().zip(before) {
        let per_s = |pick: fn((u64, u64)) -> u64| -> Option<f64> {
            let spent = pick(schedstat(s.pid)?).checked_sub(pick(before?))?;
            Some(spent as f64 / window.as_secs_f64())
        };
        let cpu = per_s(|(ns, _)| ns).map_or("n/a".into(), |ns| format!("{:.2} ms/s", ns / 1e6));
        let woke = per_s(|(_, runs)| runs).map_or("n/a".into(), |n| format!("{n:.1}/s"));
        println!("| {} | {cpu} | {woke} |", s.label);
    }
}

/// What `/proc/PID/task/*/schedstat` sums to over every thread of a process: nanoseconds on a CPU (finer
/// than the 10 ms ticks of /proc/PID/stat, which a few thousand queries barely move) and times put on one
/// (each a wake-up or a return after preemption).
fn schedstat(pid: i32) -> Option<(u64, u64)> {
    let (mut ns, mut runs) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        let mut fields = stat.split_whitespace().map(str::parse::<u64>);
        ns += fields.next()?.ok()?;
        runs += fields.nth(1)?.ok()?;
    }
    Some((ns, runs))
}

fn cpu_ns(pid: i32) -> Option<u64> {
    schedstat(pid).map(|(ns, _)| ns)
}

fn query(kind: Kind, s: &Server, seq: u64, records: usize) -> Vec<u8> {
    let id = seq as u16;
    let k = (seq as usize * 7919) % (records - 1);
    let name = match kind {
        Kind::Local => format!("c{k}"),
        Kind::NetworkForm => format!("c{k}.{}", s.network_suffix),
        Kind::ForwardedRepeated => format!("www{}.example.test", seq % 10),
        Kind::ForwardedUnique => format!("u{seq}-{}.example.test", s.pid),
    };
    wire::build_query(id, &name, wire::TYPE_A, false)
}

/// One query of the kind must get an answer, or the numbers would measure errors.
fn check_answers(client: &NetNs, s: &Server, kind: Kind, records: usize) {
    let q = query(kind, s, 1, records);
    let addr = s.addr;
    let answers = in_netns(client, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        sock.send_to(&q, addr).unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
        wire::answers(&buf[..n])
            .map(|a| a.len())
            .map_err(|e| format!("{e:?}"))
    });
    assert!(
        matches!(answers, Ok(n) if n > 0),
        "{} gave no answer to a {} query: {answers:?}",
        s.label,
        kind.label()
    );
}

/// `window` queries in flight for `duration`, from one socket in the client namespace.
fn saturate(
    client: &NetNs,
    s: &Server,
    kind: Kind,
    records: usize,
    window: usize,
    duration: Duration,
) -> Measured {
    let addr = s.addr;
    let server = Server { ..*s };
    in_netns(client, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Batched with sendmmsg/recvmmsg so that one client thread can outrun the server: otherwise the
        // client's own two syscalls per query would cap both columns at the same rate.
        let mut batch = Batch::new(window);
        let mut sent_at: Vec<Option<Instant>> = vec![None; 65536];
        let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
        let (mut seq, mut lost, mut in_flight) = (0u64, 0u64, 0usize);
        let start = Instant::now();
        while start.elapsed() < duration {
            let queries: Vec<Vec<u8>> = (in_flight..window)
                .map(|_| {
                    let q = query(kind, &server, seq, records);
                    sent_at[(seq & 0xffff) as usize] = Some(Instant::now());
                    seq += 1;
                    q
                })
                .collect();
            in_flight += batch.send(&sock, &queries);
            match batch.receive(&sock) {
                Some(replies) => {
                    for reply in replies {
                        if let Some(id) = wire::id(reply) {
                            if let Some(t) = sent_at[id as usize].take() {
                                latencies.push(t.elapsed().as_nanos() as u32);
                            }
                        }
                        in_flight = in_flight.saturating_sub(1);
                    }
                }
                None => {
                    // Nothing came back within the timeout: the window is lost.
                    lost += in_flight as u64;
                    in_flight = 0;
                }
            }
        }
        let elapsed = start.elapsed();
        latencies.sort_unstable();
        let at = |q: f64| {
            Duration::from_nanos(
                latencies
                    .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
                    .copied()
                    .unwrap_or(0) as u64,
            )
        };
        Measured {
            qps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.5),
            p99: at(0.99),
            lost,
        }
    })
}

fn median(mut samples: Vec<f64>) -> Option<f64> {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied()
}

/// Server CPU time per query while 2000 queries/s are asked one after another, numbered from `first`.
fn cpu_per_query(
    client: &NetNs,
    s: &Server,
    kind: Kind,
    records: usize,
    first: u64,
    duration: Duration,
) -> Option<f64> {
    const RATE: u64 = 2000;
    let before = cpu_ns(s.pid)?;
    let addr = s.addr;
    let server = Server { ..*s };
    let answered = in_netns(client, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let interval = Duration::from_nanos(1_000_000_000 / RATE);
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        let mut answered = 0u64;
        let mut seq = first;
        while start.elapsed() < duration {
            let due = start + interval * (seq - first) as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = sock.send(&query(kind, &server, seq, records));
            seq += 1;
            if sock.recv(&mut buf).is_ok() {
                answered += 1;
            }
        }
        answered
    });
    let spent = cpu_ns(s.pid)? - before;
    Some(spent as f64 / 1000.0 / answered.max(1) as f64)
}

/// Namespaces for the other containers, made and removed in one `ip -batch` each.
struct Fillers {
    names: Vec<String>,
    paths: Vec<String>,
}

impl Fillers {
    fn make(host: &HostNs, n: usize) -> Fillers {
        let names: Vec<String> = (0..n).map(|i| format!("{}-f{i}", host.ns.name)).collect();
        let fillers = Fillers {
            paths: names.iter().map(|n| format!("/run/netns/{n}")).collect(),
            names,
        };
        fillers.batch("netns add");
        fillers
    }

    fn batch(&self, verb: &str) {
        let script: String = self.names.iter().map(|n| format!("{verb} {n}\n")).collect();
        let path = std::env::temp_dir().join(format!("dnsb-batch-{}", std::process::id()));
        std::fs::write(&path, script).unwrap();
        let _ = Command::new("ip")
            .args(["-force", "-batch"])
            .arg(&path)
            .status();
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for Fillers {
    fn drop(&mut self) {
        self.batch("netns del");
    }
}

/// aardvark-dns as netavark runs it, in the test's host namespace, its /etc/resolv.conf replaced in a
/// private mount namespace.
struct Aardvark {
    pid: i32,
    config: PathBuf,
    /// The `run` process (it forks the server and exits, or is the server); reaped on drop.
    launcher: std::process::Child,
}

impl Aardvark {
    // The launcher is reaped in Drop, which the lint cannot follow.
    #[allow(clippy::zombie_processes)]
    fn start(host: &HostNs, lines: &[String], resolv_conf: &Path) -> Aardvark {
        let config = host.dir().join("aardvark-dns");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join(NETWORK), lines.join("\n") + "\n").unwrap();
        let script = format!(
            "mount --bind {} /etc/resolv.conf && exec {AARDVARK} --config {} -p 53 run",
            resolv_conf.display(),
            config.display()
        );
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", host.ns.path_str()))
            .args([
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aardvark-dns");
        // aardvark-dns `run` forks and leaves its pid in the config directory.
        let pid_file = config.join("aardvark.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                std::thread::sleep(Duration::from_millis(300));
                return Aardvark {
                    pid,
                    config,
                    launcher: child,
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aardvark-dns did not start within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Aardvark {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
        let _ = std::fs::remove_dir_all(&self.config);
    }
}

/// sendmmsg/recvmmsg on a connected UDP socket: up to `size` datagrams per syscall.
struct Batch {
    size: usize,
    buffers: Vec<[u8; 1500]>,
}

impl Batch {
    fn new(size: usize) -> Batch {
        Batch {
            size,
            buffers: vec![[0u8; 1500]; size],
        }
    }

    /// Sends every query; returns how many went out.
    fn send(&mut self, sock: &UdpSocket, queries: &[Vec<u8>]) -> usize {
        use std::os::fd::AsRawFd;
        if queries.is_empty() {
            return 0;
        }
        let mut iovs: Vec<libc::iovec> = queries
            .iter()
            .map(|q| libc::iovec {
                iov_base: q.as_ptr() as *mut libc::c_void,
                iov_len: q.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: a zeroed msghdr is valid (no name, no control); the iovec outlives the call.
                let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_iovlen = 1;
                hdr
            })
            .collect();
        // SAFETY: msgs and the buffers they point to live across the call.
        let n =
            unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        n.max(0) as usize
    }

    /// Blocks (up to the socket's read timeout) for one reply, then takes every reply already there.
    fn receive(&mut self, sock: &UdpSocket) -> Option<Vec<&[u8]>> {
        use std::os::fd::AsRawFd;
        let mut iovs: Vec<libc::iovec> = self
            .buffers
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: as in send.
                let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_iovlen = 1;
                hdr
            })
            .collect();
        // SAFETY: msgs point into self.buffers, which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                self.size as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            return None;
        }
        let lens: Vec<usize> = msgs[..n as usize]
            .iter()
            .map(|m| m.msg_len as usize)
            .collect();
        Some(
            self.buffers
                .iter()
                .zip(lens)
                .map(|(b, len)| &b[..len])
                .collect(),
        )
    }
}
