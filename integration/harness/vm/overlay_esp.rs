//! The VM of the encrypted-overlay test and bench: the kernel modules ESP and the input guard need, and the
//! binaries the two simulated hosts run (the scenario starts with `vm_scenarios/overlay_esp_hosts.sh`).

use super::scenario_vm::ScenarioVm;
use std::path::Path;
use std::time::Duration;

/// ESP with rfc4106(gcm(aes)) needs gcm, ghash, ctr and an IV generator (seqiv/echainiv), which need the
/// default RNG (drbg seeded by jitterentropy_rng); modules.dep does not list that dependency.
pub const MODULES: &[&str] = &[
    "veth",
    "bridge",
    "vxlan",
    // libcrc32c (under nf_tables) and jitterentropy_rng need these; their softdeps are not in modules.dep.
    "crc32c_generic",
    "sha3_generic",
    "nf_tables",
    "xfrm_user",
    "esp4",
    "gcm",
    "ghash-generic",
    "ctr",
    "seqiv",
    "echainiv",
    "drbg",
    "jitterentropy_rng",
];

const BINARIES: &[(&str, &str)] = &[
    (
        env!("CARGO_BIN_EXE_tether-overlay"),
        "/opt/cni/bin/tether-overlay",
    ),
    (env!("CARGO_BIN_EXE_tetherd"), "/usr/bin/tetherd"),
    // The scenarios read the rules and count the wire with it; tether itself never runs nft.
    ("/usr/sbin/nft", "/usr/sbin/nft"),
    // iputils' ping sets DF (`-M do`), which busybox's cannot: the MTU check.
    ("/usr/bin/ping", "/usr/sbin/iputils-ping"),
];

/// Runs `scenario` (the hosts' part is prepended by the caller with `concat!`) and returns the console.
pub fn run(name: &str, scenario: &str, timeout: Duration) -> super::boot::Console {
    let binaries: Vec<(&Path, &str)> = BINARIES.iter().map(|(s, d)| (Path::new(*s), *d)).collect();
    ScenarioVm {
        name,
        modules: MODULES,
        binaries: &binaries,
        scenario,
        timeout,
        memory_mb: 1024,
    }
    .run()
}
