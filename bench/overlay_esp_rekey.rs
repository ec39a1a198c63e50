//! `cargo bench --bench overlay_esp_rekey`: what early rekeys cost the traffic. Two runs of the qemu VM of
//! `integration/overlay_esp_vm.rs` with two hosts: one with tetherd's default soft lifetimes (no rekey in
//! the run) and one with a soft lifetime of 50 packets (a rekey of each busy direction every 50 packets);
//! each measures pings every 0.1 s under a paced TCP transfer, three rounds. TCG emulates the CPU and the
//! two runs are separate VMs: read the comparison, not the absolute numbers.

#[path = "../integration/harness/vm/mod.rs"]
mod vm;

use std::time::Duration;

fn run(series: &str, extra: &str) -> std::collections::BTreeMap<(String, String), Vec<f64>> {
    let scenario = format!("ROTATION=3600\nSERIES={series}\nESP_EXTRA='{extra}'\n")
        + include_str!("../integration/vm_scenarios/overlay_esp_hosts.sh")
        + include_str!("../integration/vm_scenarios/overlay_esp_rekey_bench.sh");
    let console = vm::overlay_esp::run(
        &format!("overlay_esp_rekey_bench_{series}"),
        &scenario,
        Duration::from_secs(600),
    );
    vm::results::assert_all_passed(&console, &["bench_encrypted_path_up"]);
    vm::results::bench_samples(&console)
}

fn main() {
    let mut samples = run("steady", "");
    samples.extend(run("rekeying", ", \"softLimitPackets\": 50"));
    println!("metric        series      round 1   round 2   round 3");
    for ((metric, series), v) in &samples {
        let rounds: String = v.iter().map(|x| format!("{x:>10.2}")).collect();
        println!("{metric:<13} {series:<10}{rounds}");
    }
    let rekeys = |s: &str| samples[&("rekeys".to_string(), s.to_string())][0];
    assert!(
        rekeys("steady") == 0.0 && rekeys("rekeying") > 0.0,
        "the steady run must not rekey and the other must"
    );
}
