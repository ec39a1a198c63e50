//! One hostile container against the shared resolver (issue 21), while a victim container on the same
//! network keeps resolving. The hostile one sends for `FLOOD` seconds: garbage datagrams and 200
//! slowloris TCP connections that trickle a byte now and then throughout; queries for unique names whose
//! upstream answers are 3 KiB (cacheable) and 16 KiB (too large to cache) in the first half; a flood of
//! unique names its upstream never answers in the second. The victim asks, one at a time, a local name over UDP, a new forwarded name over
//! UDP and, every tenth query, a forwarded name over TCP. Asserted: at least 99% of the victim's queries
//! get their right answer, and tetherd's RSS stays under `RSS_BOUND` (the bound the README states).
//! Everything runs in the test's own namespaces; the upstream is a fake one in an outside namespace.

#[path = "harness/mod.rs"]
mod harness;

use harness::dns_upstream::{answer_fixed, spawn_in_netns, FakeUpstream, UPSTREAM_ANSWER};
use harness::{cni_result, network_conf, HostNs, NetNs};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether::dns::wire;

/// How long the hostile container attacks while the victim measures.
const FLOOD: Duration = Duration::from_secs(10);
/// tetherd's resident memory must stay under this during the attack (README: the resolver's limits).
const RSS_BOUND_KIB: u64 = 64 * 1024;
const RESOLVER: &str = "127.0.0.11:53";
/// Answer sizes of the test upstream: `*.mid.test` fits the cache, `*.big.test` does not.
const MID_ANSWERS: usize = 190;
const BIG_ANSWERS: usize = 1000;

fn upstream_answer(q: &wire::Question, raw: &[u8], out: &mut Vec<u8>) -> bool {
    let many = if q.name.ends_with(".blackhole.test") {
        return false; // never answered: each one holds a pending upstream query until it times out
    } else if q.name.ends_with(".big.test") {
        BIG_ANSWERS
    } else if q.name.ends_with(".mid.test") {
        MID_ANSWERS
    } else {
        return answer_fixed(q, raw, out);
    };
    let mut w = wire::ReplyWriter::start(out, raw, q, 0, false, 65_000);
    for i in 0..many {
        w.answer(
            wire::TYPE_A,
            300,
            wire::Rdata::A(Ipv4Addr::from(0xc633_6400 + i as u32)),
        );
    }
    w.finish(q);
    true
}

fn add(host: &HostNs, c: &NetNs, conf: &Value, name: &str) -> String {
    let env = |f: &str| Some(host.dir().join(f).display().to_string());
    let out = host
        .tether_bridge()
        .cmd("ADD")
        .container(c)
        .args(&format!("K8S_POD_NAME={name}"))
        .conf(conf)
        .env("TETHER_RESOLV_CONF", env("resolv.conf").as_deref())
        .env("TETHER_DAEMON_CONFIG", env("tetherd.json").as_deref())
        .run();
    cni_result::ip(out.result(), "4")
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("tetherd runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn tetherd_pid(run_dir: &Path) -> i32 {
    std::fs::read_to_string(run_dir.join("tetherd.pid"))
        .expect("tetherd.pid")
        .trim()
        .parse()
        .unwrap()
}

/// The A records of a reply to `id`, if it is a NOERROR reply.
fn addresses(reply: &[u8], id: u16) -> Option<Vec<Ipv4Addr>> {
    if wire::id(reply) != Some(id) || wire::rcode(reply) != wire::RCODE_NOERROR {
        return None;
    }
    let answers = wire::answers(reply).ok()?;
    Some(
        answers
            .iter()
            .filter(|(t, d)| *t == wire::TYPE_A && d.len() == 4)
            .map(|(_, d)| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .collect(),
    )
}

fn ask_udp(socket: &UdpSocket, id: u16, name: &str) -> Option<Vec<Ipv4Addr>> {
    socket
        .send(&wire::build_query(id, name, wire::TYPE_A, false))
        .ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).ok()?; // the read timeout ends the wait
        if wire::id(&buf[..n]) == Some(id) {
            return addresses(&buf[..n], id);
        }
    }
}

fn ask_tcp(id: u16, name: &str) -> Option<Vec<Ipv4Addr>> {
    let mut s =
        TcpStream::connect_timeout(&RESOLVER.parse().unwrap(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let query = wire::build_query(id, name, wire::TYPE_A, false);
    let mut frame = (query.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&query);
    s.write_all(&frame).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).ok()?;
    addresses(&reply, id)
}

/// What the victim saw: per query, whether it got the right answer and how long it took.
struct VictimRun {
    results: Vec<(bool, Duration)>,
}

impl VictimRun {
    fn success_rate(&self) -> f64 {
        let ok = self.results.iter().filter(|(ok, _)| *ok).count();
        ok as f64 / self.results.len().max(1) as f64
    }

    fn p99(&self) -> Duration {
        let mut t: Vec<Duration> = self.results.iter().map(|(_, d)| *d).collect();
        t.sort();
        t.get(t.len() * 99 / 100).copied().unwrap_or_default()
    }
}

fn victim(peer_ip: Ipv4Addr, stop: Arc<AtomicBool>) -> VictimRun {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(RESOLVER).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut results = Vec::new();
    let mut i: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        i = i.wrapping_add(1);
        let started = Instant::now();
        let ok = match i % 10 {
            0 => ask_tcp(i, &format!("t{i}.victim.test")) == Some(vec![UPSTREAM_ANSWER]),
            n if n % 2 == 1 => ask_udp(&socket, i, "peer") == Some(vec![peer_ip]),
            _ => ask_udp(&socket, i, &format!("v{i}.victim.test")) == Some(vec![UPSTREAM_ANSWER]),
        };
        results.push((ok, started.elapsed()));
        std::thread::sleep(Duration::from_millis(5));
    }
    VictimRun { results }
}

/// Garbage throughout, from one UDP socket, about 10000 datagrams a second: for the first half of the
/// flood names with large answers, for the second half unique names the upstream never answers (each
/// holds a pending upstream query, so the first half's would get none while they are out). Replies
/// are never read (they overflow the socket's buffer and are dropped).
fn udp_flood(stop: Arc<AtomicBool>) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(RESOLVER).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut sent = 0u64;
    let mut n = 0u32;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let unanswerable = started.elapsed() > FLOOD / 2;
        let tick = Instant::now();
        for _ in 0..4 {
            let garbage: Vec<u8> = (0..(seed % 600) as usize)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = socket.send(&garbage);
        }
        for _ in 0..6 {
            n += 1;
            let name = match (unanswerable, n % 2) {
                (true, _) => format!("x{n}.blackhole.test"),
                (false, 0) => format!("y{n}.mid.test"),
                (false, _) => format!("y{n}.big.test"),
            };
            let _ = socket.send(&wire::build_query(n as u16, &name, wire::TYPE_A, true));
        }
        sent += 10;
        if let Some(rest) = Duration::from_millis(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    sent
}

/// 200 TCP connections that each send a frame header promising 65535 bytes, then one byte now and
/// then; a closed one is opened again.
fn slowloris(stop: Arc<AtomicBool>) -> u64 {
    let mut conns: Vec<Option<TcpStream>> = (0..200).map(|_| None).collect();
    let mut opened = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for c in conns.iter_mut() {
            let alive = c.as_mut().is_some_and(|s| s.write_all(&[0x42]).is_ok());
            if !alive {
                *c = TcpStream::connect(RESOLVER).ok().and_then(|mut s| {
                    s.write_all(&[0xff, 0xff, 0]).ok()?;
                    Some(s)
                });
                opened += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    opened
}

#[test]
fn a_hostile_container_leaves_its_neighbour_resolving_and_tetherd_small() {
    let host = HostNs::new("dnsh");
    let outside = host.outside();
    let upstream = FakeUpstream::start_with(&outside.ns, outside.addr, Box::new(upstream_answer));
    std::fs::write(
        host.dir().join("resolv.conf"),
        format!("nameserver {}\n", outside.addr),
    )
    .unwrap();
    // The default upstream timeout (1.5 s): unanswered names hold their pending slot that long.
    std::fs::write(host.dir().join("tetherd.json"), r#"{"idleGraceMs": 500}"#).unwrap();
    let mut conf = network_conf::tether_bridge(&host, "1.1.0", "10.72.0.0/24");
    conf["name"] = json!("shared");
    conf["bridge"] = json!("th0");
    let (bad, good, peer) = (
        host.container("bad"),
        host.container("good"),
        host.container("peer"),
    );
    add(&host, &bad, &conf, "bad");
    add(&host, &good, &conf, "good");
    let peer_ip: Ipv4Addr = add(&host, &peer, &conf, "peer").parse().unwrap();
    let pid = tetherd_pid(&host.run_dir());
    let rss_before = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        spawn_in_netns(&bad, move || udp_flood(stop))
    };
    let loris = {
        let stop = stop.clone();
        spawn_in_netns(&bad, move || slowloris(stop))
    };
    std::thread::sleep(Duration::from_millis(500)); // the attack is under way before measuring
    let measured = {
        let stop = stop.clone();
        spawn_in_netns(&good, move || victim(peer_ip, stop))
    };
    let started = Instant::now();
    let mut rss_max = rss_before;
    while started.elapsed() < FLOOD {
        rss_max = rss_max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let run = measured.join().expect("victim thread");
    let sent = flood.join().expect("flood thread");
    let opened = loris.join().expect("slowloris thread");
    rss_max = rss_max.max(rss_kib(pid));

    let failures = run.results.iter().filter(|(ok, _)| !ok).count();
    eprintln!(
        "hostile: {sent} datagrams, {opened} TCP connections opened; upstream asked {} times; \
         victim: {} queries, {failures} failed, success {:.2}%, p99 {:.1} ms; \
         tetherd RSS {rss_before} KiB before, {rss_max} KiB at most",
        upstream.queries(),
        run.results.len(),
        run.success_rate() * 100.0,
        run.p99().as_secs_f64() * 1000.0,
    );
    assert!(
        run.results.len() >= 200,
        "the victim asked too little to judge"
    );
    assert!(
        run.success_rate() >= 0.99,
        "the victim lost {failures} of {} answers",
        run.results.len()
    );
    assert!(
        rss_max < RSS_BOUND_KIB,
        "tetherd grew to {rss_max} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    assert!(sent > 10_000, "the flood was too weak to prove anything");
    assert_eq!(tetherd_pid(&host.run_dir()), pid, "tetherd survived");
}
