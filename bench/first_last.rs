//! The network's first container and its last: ADD of a container onto a network nothing else is on (the
//! network's bridge and firewall rules are made with it) and DEL of that container (they go with it), each
//! publishing one TCP port, as every `podman run --rm`, compose project and CI job pays. Side by side in one
//! run, interleaved run by run so drift hits all alike (`BENCH_RUNS`, default 20; median and p90):
//! - tether: tether-bridge (tether-ipam in-process) then tether-portmap, as libcni runs the conflist;
//! - tether before, tether-one-plugin before: both tether chains from the binaries in `BENCH_TETHER_BEFORE`
//!   (a directory holding an earlier build's tether-bridge and tether-portmap), when set;
//! - reference: /usr/lib/cni bridge + host-local then portmap (iptables);
//! - netavark: Debian's netavark (podman's network backend, /usr/lib/podman/netavark), `setup` and
//!   `teardown` of one container with the same port mapping; podman does its IPAM, so it gets a static
//!   address.
//!
//! Each contender has its own host namespace for the whole bench, where one untimed first ADD and last DEL go
//! first (tetherd, started by tether's first ADD on a host, then keeps running, as on a real host; the
//! reference plugins keep their bridge and iptables chains, netavark its chains). Every timed ADD is the network's
//! first container and every DEL its last; `SETTLE` passes between runs, so a timing never includes the
//! previous run's background work. A plugin chain's time is the sum of its plugins' wall times, spawn to exit
//! (one exec per plugin). Prints a table and writes `bench/results/first_last.csv`. Run with
//! `cargo bench --bench first_last`.

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "cni_chain.rs"]
mod cni_chain;
#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "latency_stats.rs"]
mod latency_stats;
#[path = "netavark_bridge.rs"]
mod netavark_bridge;

use bench_settings::env_list;
use cni_chain::{Chain, PluginSet};
use harness::{binaries, HostNs};
use latency_stats::{ms, stats};
use netavark_bridge::Netavark;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HOST_PORT: u16 = 8080;
/// Pause between two runs: longer than any teardown left to the background (tether's bridge delete).
const SETTLE: Duration = Duration::from_millis(200);

/// ADD and DEL wall times of one contender, run by run.
type Samples = (Vec<Duration>, Vec<Duration>);

enum Contender {
    Chain(PluginSet),
    Netavark,
}

impl Contender {
    fn label(&self) -> &str {
        match self {
            Contender::Chain(set) => set.label,
            Contender::Netavark => "netavark",
        }
    }

    /// One first ADD and one last DEL of the network on `host`: (ADD, DEL) wall times.
    fn first_and_last(&self, host: &HostNs, run: usize) -> Result<(Duration, Duration), String> {
        let c = host.container(&format!("c{run}"));
        match self {
            Contender::Chain(set) => {
                let chain = Chain::new(host, set);
                let (result, add) = chain.add(&c, HOST_PORT)?;
                let del = chain.del(&c, HOST_PORT, &result)?;
                Ok((add.iter().sum(), del.iter().sum()))
            }
            Contender::Netavark => {
                let netavark = Netavark::on(host);
                let address = Netavark::address(0);
                let add = netavark.run(host, "setup", &c, address, HOST_PORT)?;
                let del = netavark.run(host, "teardown", &c, address, HOST_PORT)?;
                Ok((add, del))
            }
        }
    }
}

fn main() {
    let runs = env_list("BENCH_RUNS", &[20])[0].max(1);
    let mut contenders = vec![Contender::Chain(PluginSet {
        label: "tether",
        bridge: binaries::tether_bridge(),
        ipam_type: "tether-ipam",
        portmap: Some(binaries::tether_portmap()),
    })];
    // What `tether network create` writes: tether-bridge publishes the ports itself.
    contenders.push(Contender::Chain(PluginSet {
        label: "tether-one-plugin",
        bridge: binaries::tether_bridge(),
        ipam_type: "tether-ipam",
        portmap: None,
    }));
    if let Some(dir) = std::env::var_os("BENCH_TETHER_BEFORE") {
        let dir = PathBuf::from(dir);
        contenders.push(Contender::Chain(PluginSet {
            label: "tether before",
            bridge: dir.join("tether-bridge"),
            ipam_type: "tether-ipam",
            portmap: Some(dir.join("tether-portmap")),
        }));
        contenders.push(Contender::Chain(PluginSet {
            label: "tether-one-plugin before",
            bridge: dir.join("tether-bridge"),
            ipam_type: "tether-ipam",
            portmap: None,
        }));
    }
    contenders.push(Contender::Chain(PluginSet {
        label: "reference",
        bridge: binaries::reference("bridge"),
        ipam_type: "host-local",
        portmap: Some(binaries::reference("portmap")),
    }));
    contenders.push(Contender::Netavark);

    let hosts: Vec<HostNs> = contenders.iter().map(|_| HostNs::new("fl")).collect();
    let mut samples: Vec<Result<Samples, String>> = contenders
        .iter()
        .zip(&hosts)
        .map(|(contender, host)| {
            // The untimed warm-up: what the host keeps from a network's first container.
            contender.first_and_last(host, runs)?;
            Ok((Vec::new(), Vec::new()))
        })
        .collect();
    for run in 0..runs {
        eprintln!("bench: run {} of {runs}", run + 1);
        std::thread::sleep(SETTLE);
        for ((contender, sample), host) in contenders.iter().zip(samples.iter_mut()).zip(&hosts) {
            let Ok((adds, dels)) = sample else { continue };
            match contender.first_and_last(host, run) {
                Ok((add, del)) => {
                    adds.push(add);
                    dels.push(del);
                }
                Err(why) => *sample = Err(why),
            }
        }
    }

    let mut csv = String::from("plugins,add_median_ms,add_p90_ms,del_median_ms,del_p90_ms\n");
    println!();
    println!(
        "{:<14} {:>11} {:>11} {:>11} {:>11}",
        "plugins", "ADD median", "ADD p90", "DEL median", "DEL p90"
    );
    for (contender, sample) in contenders.iter().zip(samples) {
        match sample {
            Ok((adds, dels)) => {
                let (add, del) = (stats(adds), stats(dels));
                println!(
                    "{:<14} {:>11} {:>11} {:>11} {:>11}",
                    contender.label(),
                    ms(add.median),
                    ms(add.p90),
                    ms(del.median),
                    ms(del.p90)
                );
                let f = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
                csv += &format!(
                    "{},{},{},{},{}\n",
                    contender.label(),
                    f(add.median),
                    f(add.p90),
                    f(del.median),
                    f(del.p90)
                );
            }
            Err(why) => println!("{:<14} failed: {why}", contender.label()),
        }
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/first_last.csv");
    if let Err(e) = std::fs::write(&out, csv) {
        eprintln!("writing {}: {e}", out.display());
    }
}
