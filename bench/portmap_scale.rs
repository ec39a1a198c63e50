//! The bridge + IPAM + portmap chain at scale: tether-bridge + tether-ipam + tether-portmap beside the
//! reference bridge + host-local + portmap (/usr/lib/cni), both at cniVersion 1.0.0, and beside netavark 1.4
//! (podman's backend, `setup`/`teardown` as podman runs it, each container given its address), with N
//! containers already on the network, each publishing one TCP port (`BENCH_SIZES`, default 0,250,1000).
//!
//! Measured at each N, `BENCH_RUNS` (20) times, median and p90:
//! - ADD of the whole chain: bridge ADD, then portmap ADD given the bridge's result as prevResult, each
//!   exec'd with CNI_* env and the conf on stdin, as a runtime runs a conflist;
//! - DEL of the chain: portmap DEL, then bridge DEL, each given the cached result as libcni does;
//! - one TCP connection through a published port (`CONNECT_SAMPLES`, 50 per N): a client in an "outside"
//!   namespace connects to the host's address, sends a byte and waits for the server in the container to
//!   answer one; connect + first byte round trip.
//!
//! Each timed ADD is followed by its DEL, so every timing sees exactly N + 1 other containers: the N fillers
//! and the probe, the container whose published port the connections go through, added first so that no
//! timed ADD or DEL is the network's first or last container (tether installs a network's chains with the
//! first container and removes them with the last). Each plugin is spawned straight into the host
//! namespace (by a thread that joined it, with vfork semantics as Go runtimes spawn; no nsenter), so a timing
//! is what a runtime pays. Hermetic: each (N, plugin set) gets
//! its own host namespace, deleted at the end.
//!
//! Before each (N, plugin set) the bench waits until the machine is under 10 % busy over half a second (at
//! most a minute): the previous set's namespaces are torn down by the kernel in the background.
//!
//! `BENCH_INTERLEAVE=1` makes each contender's networks of every size at once and times them in turns, one
//! ADD/DEL pair per size per round (each round starting at the next size), so that the machine's drift over
//! the minutes of a run falls on every size alike; it writes `portmap_scale_interleaved.csv` and `.svg`.
//!
//! `BENCH_SETTLE_MS=N` waits N ms before each timed ADD, so that the kernel's background teardown of the
//! previous container's veth and namespace is over (by default the ADD follows at once, as under churn).
//!
//! `link-floor` is the kernel's floor under them: tether-bridge's link requests for one container sent from
//! this process, with nothing else of an ADD or DEL (see `link_floor.rs`); no port, so no connections.
//!
//! `BENCH_PLUGINS=tether` (or `tether-one-plugin`, `reference`, `netavark`, `link-floor`; a comma-separated
//! list) runs those sets only. `BENCH_TETHER_BEFORE=DIR` adds the one-plugin
//! chain of an earlier build (`DIR/tether-bridge`, with its tetherd beside it), labelled
//! "tether-one-plugin before".
//!
//! Prints a table (and each plugin's own median) and writes `bench/results/portmap_scale.csv` and `bench/results/portmap_scale.svg`.
//! Run with `cargo bench --bench portmap_scale`.

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "cni_chain.rs"]
mod cni_chain;
#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "latency_stats.rs"]
mod latency_stats;
#[path = "line_plot.rs"]
mod line_plot;
#[path = "link_floor.rs"]
mod link_floor;
#[path = "netavark_bridge.rs"]
mod netavark_bridge;

use bench_settings::env_list;
use cni_chain::{Chain, PluginSet, PluginTimes, CONTAINER_PORT};
use harness::{binaries, HostNs, NetNs, Outside};
use latency_stats::{ms, stats, Stats};
use line_plot::{LinePlot, Series};
use link_floor::LinkFloor;
use netavark_bridge::Netavark;
use nix::sched::CloneFlags;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FILLER_HOST_PORT_BASE: u16 = 10000;
const TIMED_HOST_PORT_BASE: u16 = 30000;
const PROBE_HOST_PORT: u16 = 9000;
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// The one-plugin chain of the build in `BENCH_TETHER_BEFORE`.
const BEFORE_LABEL: &str = "tether-one-plugin before";
const NETAVARK_LABEL: &str = "netavark";
const LINK_FLOOR_LABEL: &str = "link-floor";
/// Before each cell, the machine must be under 10 % busy over one window, waiting at most this long.
const QUIESCE_WINDOW: Duration = Duration::from_millis(500);
const QUIESCE_MAX: Duration = Duration::from_secs(60);

/// What is timed: a CNI chain, netavark as podman runs it, or the kernel's floor under them.
enum Contender {
    Chain(PluginSet),
    Netavark,
    /// tether-bridge's link requests alone, from this process (see `link_floor`).
    LinkFloor,
}

impl Contender {
    fn label(&self) -> &'static str {
        match self {
            Contender::Chain(set) => set.label,
            Contender::Netavark => NETAVARK_LABEL,
            Contender::LinkFloor => LINK_FLOOR_LABEL,
        }
    }
}

/// One contender on one host namespace.
enum Runner<'h> {
    Chain(Chain<'h>),
    Netavark(&'h HostNs, Netavark),
    LinkFloor(LinkFloor),
}

/// What an ADD leaves for its DEL: the chain's result (libcni's cache), the address netavark was given, or the
/// link floor's container number and address.
enum Added {
    Result(Value),
    Address(std::net::Ipv4Addr),
    Slot(u32, std::net::Ipv4Addr),
}

impl Added {
    /// The container's IPv4 address, without its prefix length.
    fn address(&self) -> Result<String, String> {
        match self {
            Added::Result(result) => first_ipv4(result),
            Added::Address(address) | Added::Slot(_, address) => Ok(address.to_string()),
        }
    }
}

impl<'h> Runner<'h> {
    fn new(host: &'h HostNs, contender: &'h Contender) -> Result<Self, String> {
        Ok(match contender {
            Contender::Chain(set) => Runner::Chain(Chain::new(host, set)),
            Contender::Netavark => Runner::Netavark(host, Netavark::on(host)),
            Contender::LinkFloor => Runner::LinkFloor(LinkFloor::on(host)?),
        })
    }

    /// Whether containers publish ports (the link floor has no firewall).
    fn publishes(&self) -> bool {
        !matches!(self, Runner::LinkFloor(_))
    }

    /// ADD of `c`, the network's container number `slot`, publishing `host_port`: what its DEL needs, and the
    /// wall time of each process (bridge then portmap; netavark's setup is one).
    fn add(&self, c: &NetNs, slot: u32, host_port: u16) -> Result<(Added, PluginTimes), String> {
        match self {
            Runner::Chain(chain) => {
                let (result, times) = chain.add(c, host_port)?;
                Ok((Added::Result(result), times))
            }
            Runner::Netavark(host, netavark) => {
                let address = Netavark::address(slot);
                let setup = netavark.run(host, "setup", c, address, host_port)?;
                Ok((Added::Address(address), [setup, Duration::ZERO]))
            }
            Runner::LinkFloor(floor) => {
                let started = Instant::now();
                let address = floor.add(c, slot)?;
                Ok((
                    Added::Slot(slot, address),
                    [started.elapsed(), Duration::ZERO],
                ))
            }
        }
    }

    /// DEL of what `add` made: the wall time of each process (portmap then bridge; netavark's teardown is one).
    fn del(&self, c: &NetNs, host_port: u16, added: &Added) -> Result<PluginTimes, String> {
        match (self, added) {
            (Runner::Chain(chain), Added::Result(result)) => chain.del(c, host_port, result),
            (Runner::Netavark(host, netavark), Added::Address(address)) => Ok([
                Duration::ZERO,
                netavark.run(host, "teardown", c, *address, host_port)?,
            ]),
            (Runner::LinkFloor(floor), Added::Slot(slot, _)) => {
                let started = Instant::now();
                floor.del(*slot)?;
                Ok([Duration::ZERO, started.elapsed()])
            }
            _ => Err("an ADD of one contender handed to another's DEL".into()),
        }
    }
}

struct Row {
    plugins: &'static str,
    existing: usize,
    outcome: Result<Measured, String>,
}

struct Measured {
    add: Stats,
    del: Stats,
    /// None for the link floor, which publishes no port.
    connect: Option<Stats>,
    /// Each plugin's own share, in chain order: bridge ADD, portmap ADD, portmap DEL, bridge DEL.
    parts: [Stats; 4],
}

fn main() {
    let sizes = env_list("BENCH_SIZES", &[0, 250, 1000]);
    let runs = env_list("BENCH_RUNS", &[20])[0].max(1);
    let settle = Duration::from_millis(env_list("BENCH_SETTLE_MS", &[0])[0] as u64);
    let connects = env_list("CONNECT_SAMPLES", &[50])[0].max(1);
    let mut contenders = vec![
        Contender::Chain(PluginSet {
            label: "tether",
            bridge: binaries::tether_bridge(),
            ipam_type: "tether-ipam",
            portmap: Some(binaries::tether_portmap()),
        }),
        // What `tether network create` writes: tether-bridge publishes the ports itself.
        Contender::Chain(PluginSet {
            label: "tether-one-plugin",
            bridge: binaries::tether_bridge(),
            ipam_type: "tether-ipam",
            portmap: None,
        }),
        Contender::Chain(PluginSet {
            label: "reference",
            bridge: binaries::reference("bridge"),
            ipam_type: "host-local",
            portmap: Some(binaries::reference("portmap")),
        }),
        Contender::Netavark,
        Contender::LinkFloor,
    ];
    // An earlier build's one-plugin chain, in the same run (a shared machine's load moves runs apart).
    let before = std::env::var_os("BENCH_TETHER_BEFORE").map(std::path::PathBuf::from);
    if let Some(dir) = &before {
        contenders.push(Contender::Chain(PluginSet {
            label: BEFORE_LABEL,
            bridge: dir.join("tether-bridge"),
            ipam_type: "tether-ipam",
            portmap: None,
        }));
    }
    let wanted = std::env::var("BENCH_PLUGINS").unwrap_or_else(|_| {
        let all = format!("tether,tether-one-plugin,reference,{NETAVARK_LABEL},{LINK_FLOOR_LABEL}");
        match before {
            Some(_) => format!("{all},{BEFORE_LABEL}"),
            None => all,
        }
    });
    let contenders: Vec<&Contender> = contenders
        .iter()
        .filter(|c| wanted.split(',').any(|w| w.trim() == c.label()))
        .collect();
    let interleave = env_list("BENCH_INTERLEAVE", &[0])[0] != 0;
    let mut rows = Vec::new();
    if interleave {
        for contender in &contenders {
            eprintln!(
                "bench: {} at {sizes:?} existing containers, interleaved, {runs} runs",
                contender.label()
            );
            rows.extend(measure_interleaved(
                contender, &sizes, runs, connects, settle,
            ));
        }
    }
    for &existing in sizes.iter().filter(|_| !interleave) {
        for contender in &contenders {
            let label = contender.label();
            eprintln!("bench: {label} with {existing} existing containers, {runs} runs");
            quiesce();
            let started = Instant::now();
            let outcome = measure(contender, existing, runs, connects, settle);
            eprintln!(
                "bench: {label} at {existing} done in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            rows.push(Row {
                plugins: label,
                existing,
                outcome,
            });
        }
    }
    print_table(&rows);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let name = match interleave {
        true => "portmap_scale_interleaved",
        false => "portmap_scale",
    };
    let csv = dir.join(format!("{name}.csv"));
    std::fs::write(&csv, to_csv(&rows))
        .unwrap_or_else(|e| panic!("writing {}: {e}", csv.display()));
    let svg = dir.join(format!("{name}.svg"));
    std::fs::write(&svg, plot(&rows).to_svg())
        .unwrap_or_else(|e| panic!("writing {}: {e}", svg.display()));
    eprintln!("bench: wrote {} and {}", csv.display(), svg.display());
}

/// Waits until the machine is idle again (at most `QUIESCE_MAX`): the previous cell's namespaces, up to a
/// thousand, are torn down by the kernel's workers after they are deleted, and a cell timed meanwhile shares
/// the CPUs with that teardown.
fn quiesce() {
    let started = Instant::now();
    let mut before = cpu_times();
    while started.elapsed() < QUIESCE_MAX {
        std::thread::sleep(QUIESCE_WINDOW);
        let now = cpu_times();
        let (busy, total) = (now.0 - before.0, now.1 - before.1);
        before = now;
        if total > 0 && busy * 10 <= total {
            break;
        }
    }
    eprintln!(
        "bench: waited {:.1} s for the machine to be idle",
        started.elapsed().as_secs_f64()
    );
}

/// Busy and total jiffies of all CPUs since boot (`/proc/stat`'s first line; idle and iowait are not busy).
fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// One contender at one size: fill, time ADD/DEL pairs, then time connections through a published port.
fn measure(
    contender: &Contender,
    existing: usize,
    runs: usize,
    connects: usize,
    settle: Duration,
) -> Result<Measured, String> {
    let host = HostNs::new("pms");
    let network = Network::fill(&host, contender, existing)?;
    let mut samples = Samples::default();
    for i in 0..runs {
        samples.push(network.time_pair(i, settle)?);
    }
    network.finish(samples, connects)
}

/// One contender at every size at once, a network each, the sizes taking turns call by call (each run
/// starting at another size): what the machine does meanwhile (this VM's speed moves by a third over
/// minutes) falls on every size alike, so the medians differ by the network's size alone.
fn measure_interleaved(
    contender: &Contender,
    sizes: &[usize],
    runs: usize,
    connects: usize,
    settle: Duration,
) -> Vec<Row> {
    let hosts: Vec<HostNs> = sizes.iter().map(|_| HostNs::new("pms")).collect();
    let networks: Vec<Result<Network, String>> = sizes
        .iter()
        .zip(&hosts)
        .map(|(&existing, host)| Network::fill(host, contender, existing))
        .collect();
    quiesce();
    let mut samples: Vec<Result<Samples, String>> = networks
        .iter()
        .map(|n| n.as_ref().map(|_| Samples::default()).map_err(Clone::clone))
        .collect();
    for i in 0..runs {
        for k in (0..sizes.len()).map(|k| (k + i) % sizes.len()) {
            let (Ok(network), Ok(taken)) = (&networks[k], &mut samples[k]) else {
                continue;
            };
            match network.time_pair(i, settle) {
                Ok(pair) => taken.push(pair),
                Err(e) => samples[k] = Err(e),
            }
        }
    }
    networks
        .into_iter()
        .zip(samples)
        .zip(sizes)
        .map(|((network, taken), &existing)| Row {
            plugins: contender.label(),
            existing,
            outcome: network.and_then(|n| n.finish(taken?, connects)),
        })
        .collect()
}

/// A contender's network on a host namespace of its own: the probe and `existing` fillers on it.
struct Network<'h> {
    runner: Runner<'h>,
    existing: usize,
    host: &'h HostNs,
    outside: Outside,
    probe: NetNs,
    probe_ip: String,
    /// Kept for their namespaces: the fillers stay on the network until the host namespace goes.
    _fillers: Vec<NetNs>,
}

/// What the timed pairs gave: ADDs, DELs, and each plugin's own share.
#[derive(Default)]
struct Samples {
    adds: Vec<Duration>,
    dels: Vec<Duration>,
    parts: [Vec<Duration>; 4],
}

/// One timed ADD and its DEL, with each plugin's share (bridge ADD, portmap ADD, portmap DEL, bridge DEL).
struct Pair {
    add: Duration,
    del: Duration,
    parts: [Duration; 4],
}

impl Samples {
    fn push(&mut self, pair: Pair) {
        self.adds.push(pair.add);
        self.dels.push(pair.del);
        for (samples, d) in self.parts.iter_mut().zip(pair.parts) {
            samples.push(d);
        }
    }
}

impl<'h> Network<'h> {
    fn fill(host: &'h HostNs, contender: &'h Contender, existing: usize) -> Result<Self, String> {
        let outside = host.outside();
        let runner = Runner::new(host, contender)?;
        let label = contender.label();

        // The probe serves the published port that connections are timed through. It comes first and
        // stays: the network is never empty, so no timed ADD or DEL sets up or tears down the network.
        let probe = host.container("probe");
        let probe_ip = runner.add(&probe, 0, PROBE_HOST_PORT)?.0.address()?;

        // Filling is not timed. The probe has created the shared chains and tables (the reference portmap
        // races on creating them), so a few threads can now keep 1000 reference ADDs bearable.
        let fillers: Vec<NetNs> = (0..existing)
            .map(|i| host.container(&format!("f{i}")))
            .collect();
        let done = AtomicUsize::new(0);
        let fill = |i: usize, c: &NetNs| -> Result<(), String> {
            runner.add(c, 1 + i as u32, FILLER_HOST_PORT_BASE + i as u16)?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(50) || n == existing {
                eprintln!("bench: {label}: {n}/{existing} containers added");
            }
            Ok(())
        };
        let numbered: Vec<(usize, &NetNs)> = fillers.iter().enumerate().collect();
        std::thread::scope(|s| {
            let workers: Vec<_> = numbered
                .chunks(numbered.len().div_ceil(4).max(1))
                .map(|chunk| s.spawn(|| chunk.iter().try_for_each(|&(i, c)| fill(i, c))))
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().expect("filler thread"))
        })?;
        Ok(Network {
            runner,
            existing,
            host,
            outside,
            probe,
            probe_ip,
            _fillers: fillers,
        })
    }

    /// ADD of timed container number `i`, then its DEL.
    fn time_pair(&self, i: usize, settle: Duration) -> Result<Pair, String> {
        let c = self.host.container(&format!("t{i}"));
        // The previous container's veth and namespace are torn down by the kernel in the background.
        std::thread::sleep(settle);
        let host_port = TIMED_HOST_PORT_BASE + i as u16;
        let started = Instant::now();
        let slot = (1 + self.existing + i) as u32;
        let (added, add_parts) = self.runner.add(&c, slot, host_port)?;
        let add = started.elapsed();
        let started = Instant::now();
        let del_parts = self.runner.del(&c, host_port, &added)?;
        let del = started.elapsed();
        let [bridge_add, portmap_add] = add_parts;
        let [portmap_del, bridge_del] = del_parts;
        Ok(Pair {
            add,
            del,
            parts: [bridge_add, portmap_add, portmap_del, bridge_del],
        })
    }

    /// The connections through the probe's published port, and every figure.
    fn finish(self, samples: Samples, connects: usize) -> Result<Measured, String> {
        let connect = match self.runner.publishes() {
            true => Some(stats(connect_latencies(
                &self.probe,
                SocketAddr::new(self.probe_ip.parse().unwrap(), CONTAINER_PORT),
                &self.outside.ns,
                SocketAddr::new(self.outside.host_addr.parse().unwrap(), PROBE_HOST_PORT),
                connects,
            )?)),
            false => None,
        };
        Ok(Measured {
            add: stats(samples.adds),
            del: stats(samples.dels),
            connect,
            parts: samples.parts.map(stats),
        })
    }
}

/// `count` TCP connections from `client` to `connect`, answered by a server on `listen` in `server`: each
/// sample is connect + one byte out + one byte back. One untimed connection first warms ARP and routes.
fn connect_latencies(
    server: &NetNs,
    listen: SocketAddr,
    client: &NetNs,
    connect: SocketAddr,
    count: usize,
) -> Result<Vec<Duration>, String> {
    let total = count + 1;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        // Each thread setns()es itself and ends with its task: setns changes only the calling thread.
        let server_thread = s.spawn(move || -> Result<(), String> {
            enter(server)?;
            let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            // Linux honours SO_RCVTIMEO on accept(): a client that never comes cannot hang the bench.
            setsockopt(
                &listener,
                sockopt::ReceiveTimeout,
                &TimeVal::new(SOCKET_TIMEOUT.as_secs() as _, 0),
            )
            .map_err(|e| format!("SO_RCVTIMEO on the listener: {e}"))?;
            let _ = ready_tx.send(());
            for _ in 0..total {
                let (mut conn, _) = listener
                    .accept()
                    .map_err(|e| format!("accept on {listen}: {e}"))?;
                conn.set_read_timeout(Some(SOCKET_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                let mut byte = [0u8; 1];
                conn.read_exact(&mut byte)
                    .and_then(|_| conn.write_all(&byte))
                    .map_err(|e| format!("server exchange on {listen}: {e}"))?;
            }
            Ok(())
        });
        ready_rx
            .recv_timeout(SOCKET_TIMEOUT)
            .map_err(|_| "the server in the container never listened".to_owned())?;
        let client_thread = s.spawn(move || -> Result<Vec<Duration>, String> {
            enter(client)?;
            let mut samples = Vec::with_capacity(count);
            for i in 0..total {
                let started = Instant::now();
                let mut conn = TcpStream::connect_timeout(&connect, SOCKET_TIMEOUT)
                    .map_err(|e| format!("connect to {connect}: {e}"))?;
                conn.set_read_timeout(Some(SOCKET_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                let mut byte = [0u8; 1];
                conn.write_all(b"x")
                    .and_then(|_| conn.read_exact(&mut byte))
                    .map_err(|e| format!("exchange through {connect}: {e}"))?;
                if i > 0 {
                    samples.push(started.elapsed());
                }
            }
            Ok(samples)
        });
        let samples = client_thread
            .join()
            .unwrap_or_else(|_| Err("client thread panicked".into()));
        let served = server_thread
            .join()
            .unwrap_or_else(|_| Err("server thread panicked".into()));
        let samples = samples?;
        served?;
        Ok(samples)
    })
}

fn enter(ns: &NetNs) -> Result<(), String> {
    let path = ns.path();
    let file = std::fs::File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns {}: {e}", path.display()))
}

/// The first IPv4 address of a CNI result, without its prefix length.
fn first_ipv4(result: &Value) -> Result<String, String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .find(|a| !a.contains(':'))
        .and_then(|a| a.split('/').next())
        .map(str::to_owned)
        .ok_or_else(|| format!("no IPv4 address in the chain's result {result}"))
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<10} {:>8} {:>11} {:>11} {:>11} {:>11} {:>12} {:>12}",
        "plugins",
        "existing",
        "ADD median",
        "ADD p90",
        "DEL median",
        "DEL p90",
        "conn median",
        "conn p90"
    );
    for row in rows {
        match &row.outcome {
            Ok(m) => println!(
                "{:<10} {:>8} {:>11} {:>11} {:>11} {:>11} {:>12} {:>12}",
                row.plugins,
                row.existing,
                ms(m.add.median),
                ms(m.add.p90),
                ms(m.del.median),
                ms(m.del.p90),
                m.connect.map_or("-".into(), |c| ms(c.median)),
                m.connect.map_or("-".into(), |c| ms(c.p90))
            ),
            Err(why) => println!("{:<10} {:>8} failed: {why}", row.plugins, row.existing),
        }
    }
    println!();
    println!(
        "{:<10} {:>8} {:>14} {:>14} {:>14} {:>14}   (medians per plugin)",
        "plugins", "existing", "bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL"
    );
    for row in rows {
        if let Ok(m) = &row.outcome {
            let [a, b, c, d] = m.parts.map(|s| ms(s.median));
            println!(
                "{:<10} {:>8} {a:>14} {b:>14} {c:>14} {d:>14}",
                row.plugins, row.existing
            );
        }
    }
}

fn to_csv(rows: &[Row]) -> String {
    let mut csv = String::from(
        "plugins,existing,add_median_ms,add_p90_ms,del_median_ms,del_p90_ms,connect_median_ms,connect_p90_ms\n",
    );
    for row in rows {
        if let Ok(m) = &row.outcome {
            // An empty column where a set has no connections (the link floor).
            let cols: Vec<String> = [Some(m.add), Some(m.del), m.connect]
                .iter()
                .flat_map(|s| [s.map(|s| s.median), s.map(|s| s.p90)])
                .map(|d| {
                    d.map_or(String::new(), |d| {
                        format!("{:.3}", d.as_secs_f64() * 1000.0)
                    })
                })
                .collect();
            csv.push_str(&format!(
                "{},{},{}\n",
                row.plugins,
                row.existing,
                cols.join(",")
            ));
        }
    }
    csv
}

/// ADD and DEL medians against existing containers, one colour per plugin set, DEL dashed.
fn plot(rows: &[Row]) -> LinePlot {
    let line = |plugins: &str, color: &'static str, op: &str, pick: fn(&Measured) -> Stats| {
        let points = rows
            .iter()
            .filter(|r| r.plugins == plugins)
            .filter_map(|r| {
                let m = r.outcome.as_ref().ok()?;
                Some((r.existing as f64, pick(m).median.as_secs_f64() * 1000.0))
            })
            .collect();
        Series {
            label: format!("{plugins} {op}"),
            color,
            dashed: op == "DEL",
            points,
        }
    };
    LinePlot {
        title: "bridge + IPAM + portmap chain, one published port per container".into(),
        x_label: "existing containers on the network".into(),
        y_label: "median latency (ms, log scale)".into(),
        series: vec![
            line("tether", "#1f77b4", "ADD", |m| m.add),
            line("tether", "#1f77b4", "DEL", |m| m.del),
            line("tether-one-plugin", "#2ca02c", "ADD", |m| m.add),
            line("tether-one-plugin", "#2ca02c", "DEL", |m| m.del),
            line("reference", "#d62728", "ADD", |m| m.add),
            line("reference", "#d62728", "DEL", |m| m.del),
            line(NETAVARK_LABEL, "#9467bd", "ADD", |m| m.add),
            line(NETAVARK_LABEL, "#9467bd", "DEL", |m| m.del),
            line(LINK_FLOOR_LABEL, "#7f7f7f", "ADD", |m| m.add),
            line(LINK_FLOOR_LABEL, "#7f7f7f", "DEL", |m| m.del),
        ],
    }
}
