//! Link order of tetherd's functions. tetherd stays resident for as long as containers run, and the kernel
//! maps a binary's code 64 KB at a time around each page it runs, so code that runs (the resolver, the
//! runtime, start-up) scattered among code that never does in a DNS-only daemon (etcd's client, IPsec, the
//! Docker driver) keeps most of the binary resident. `bins/tetherd.order` names the functions tetherd ran
//! under `bench/dns`, then those its etcd control plane ran under `bench/cluster_store` (made by
//! `scripts/tetherd-order`); the linker places them first and together, in that order.
//!
//! Release builds for x86_64 Linux only, where rustc links with its own lld (the default since Rust 1.90):
//! `--symbol-ordering-file` is lld's. Names missing from a binary (the list gone stale) are skipped
//! silently: the binary is the same, only more of it is resident.

use std::path::Path;

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("bins/tetherd.order");
    println!("cargo:rerun-if-changed={}", order.display());
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !release
        || target != "x86_64-unknown-linux-gnu"
        || !order.exists()
        || !rustc_links_with_lld()
    {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=tetherd=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=tetherd=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc is 1.90 or later, whose x86_64 Linux target links with its bundled lld.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
