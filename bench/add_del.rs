//! ADD and DEL latency, tether-bridge + tether-ipam beside the reference bridge + host-local, with
//! 0 and 250 containers already on the network (`BENCH_SIZES=0,250,1000`), `BENCH_RUNS` (30) timed
//! ADDs then DELs each; median and p90 printed as a table. Hermetic: every size of every plugin pair
//! gets its own host namespace, removed at the end. Run with `cargo bench --bench add_del` (release).
//!
//! Each plugin is spawned straight into the host namespace (by a thread that joined it, with vfork semantics
//! as Go runtimes spawn; no nsenter).

#[path = "bench_settings.rs"]
mod bench_settings;
#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "latency_stats.rs"]
mod latency_stats;

use bench_settings::env_list;
use harness::{binaries, network_conf, HostNs, NetNs};
use latency_stats::{ms, stats, Stats};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

struct Pair {
    label: &'static str,
    bridge: PathBuf,
    ipam_type: &'static str,
}

struct Row {
    pair: &'static str,
    existing: usize,
    outcome: Result<(Stats, Stats), String>,
}

fn main() {
    let sizes = env_list("BENCH_SIZES", &[0, 250]);
    let runs = env_list("BENCH_RUNS", &[30])[0].max(1);
    let pairs = [
        Pair {
            label: "tether-bridge+tether-ipam",
            bridge: binaries::tether_bridge(),
            ipam_type: "tether-ipam",
        },
        Pair {
            label: "bridge+host-local (ref)",
            bridge: binaries::reference("bridge"),
            ipam_type: "host-local",
        },
    ];
    let mut rows = Vec::new();
    for &existing in &sizes {
        for pair in &pairs {
            eprintln!(
                "bench: {} with {existing} existing containers, {runs} runs",
                pair.label
            );
            rows.push(Row {
                pair: pair.label,
                existing,
                outcome: measure(pair, existing, runs),
            });
        }
    }
    println!();
    println!(
        "{:<28} {:>8} {:>11} {:>11} {:>11} {:>11}",
        "plugins", "existing", "ADD median", "ADD p90", "DEL median", "DEL p90"
    );
    for row in &rows {
        match &row.outcome {
            Ok((add, del)) => println!(
                "{:<28} {:>8} {:>11} {:>11} {:>11} {:>11}",
                row.pair,
                row.existing,
                ms(add.median),
                ms(add.p90),
                ms(del.median),
                ms(del.p90)
            ),
            Err(why) => println!("{:<28} {:>8} failed: {why}", row.pair, row.existing),
        }
    }
}

/// Fills the network with `existing` containers, then times `runs` ADDs followed by their DELs.
fn measure(pair: &Pair, existing: usize, runs: usize) -> Result<(Stats, Stats), String> {
    let host = HostNs::new("bench");
    let conf = conf_for(&host, pair);
    let call = |cmd: &str, c: &NetNs| -> Result<Duration, String> {
        let out = host
            .plugin(&pair.bridge)
            .cmd(cmd)
            .container(c)
            .conf(&conf)
            .run();
        let valid = out.success() && (cmd != "ADD" || out.stdout_json["cniVersion"].is_string());
        if valid {
            Ok(out.elapsed)
        } else {
            Err(format!(
                "{cmd} {}: {} {}",
                c.label,
                out.stdout.trim(),
                out.stderr.trim()
            ))
        }
    };
    // Filling is not timed; a few threads keep 1000 reference ADDs bearable.
    let fillers: Vec<NetNs> = (0..existing)
        .map(|i| host.container(&format!("f{i}")))
        .collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = fillers
            .chunks(fillers.len().div_ceil(4).max(1))
            .map(|chunk| s.spawn(|| chunk.iter().try_for_each(|c| call("ADD", c).map(drop))))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("filler thread"))
    })?;
    let timed: Vec<NetNs> = (0..runs)
        .map(|i| host.container(&format!("t{i}")))
        .collect();
    let adds = timed
        .iter()
        .map(|c| call("ADD", c))
        .collect::<Result<Vec<_>, _>>()?;
    let dels = timed
        .iter()
        .map(|c| call("DEL", c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((stats(adds), stats(dels)))
}

/// The same network for both pairs: gateway, default route, masquerade, one /16.
fn conf_for(host: &HostNs, pair: &Pair) -> Value {
    let mut conf = network_conf::tether_bridge(host, "1.0.0", "10.90.0.0/16");
    conf["type"] = json!(pair.bridge.file_name().unwrap().to_string_lossy());
    conf["ipMasq"] = json!(true);
    conf["ipam"]["type"] = json!(pair.ipam_type);
    conf
}
