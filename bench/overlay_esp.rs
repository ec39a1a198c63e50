//! `cargo bench --bench overlay_esp`: an encrypted overlay against a plain one between the same two simulated
//! hosts, in the qemu VM of `integration/overlay_esp_vm.rs` (this machine's kernel refuses ESP): ping RTT
//! and one TCP stream, three alternating rounds. The VM emulates its CPU (TCG): the numbers are relative
//! only, the ratio encrypted/plain is what to read.

#[path = "../integration/harness/vm/mod.rs"]
mod vm;

use std::time::Duration;

fn main() {
    let console = vm::overlay_esp::run(
        "overlay_esp_bench",
        concat!(
            include_str!("../integration/vm_scenarios/overlay_esp_hosts.sh"),
            include_str!("../integration/vm_scenarios/overlay_esp_bench.sh")
        ),
        Duration::from_secs(900),
    );
    vm::results::assert_all_passed(
        &console,
        &["bench_encrypted_path_up", "bench_plain_path_up"],
    );
    let samples = vm::results::bench_samples(&console);
    assert!(
        samples.values().all(|v| v.len() == 3) && samples.len() == 4,
        "expected 3 samples of 4 series, got {samples:?}; see {}",
        console.log.display()
    );
    println!("metric      path        round 1   round 2   round 3   median");
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for ((metric, path), v) in &samples {
        println!(
            "{metric:<11} {path:<10} {:>9.2} {:>9.2} {:>9.2} {:>8.2}",
            v[0],
            v[1],
            v[2],
            median(v)
        );
    }
    for metric in ["rtt_ms", "tcp_mib_s"] {
        let m = |p: &str| median(&samples[&(metric.to_string(), p.to_string())]);
        println!(
            "{metric}: encrypted/plain = {:.2}",
            m("encrypted") / m("plain")
        );
    }
}
