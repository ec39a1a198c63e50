//! Where the binaries under test and the reference plugins live.

use std::path::{Path, PathBuf};

/// Debian's containernetworking-plugins (bridge, host-local, ...), CNI up to 1.0.0.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// `ITEST_TETHER_BRIDGE` / `ITEST_TETHER_IPAM` / `ITEST_TETHER_PORTMAP` swap in another binary (the
/// reference plugins, to check the tests themselves; the builds of `scripts/build-release`, to bench what
/// is installed); `ITEST_TETHER_DIR` swaps in every binary of a directory, the CLI and CNI_PATH too (the
/// installed build through the suites). Unset, the binaries cargo built are used.
pub fn tether_bridge() -> PathBuf {
    override_or("ITEST_TETHER_BRIDGE", env!("CARGO_BIN_EXE_tether-bridge"))
}

pub fn tether_portmap() -> PathBuf {
    override_or("ITEST_TETHER_PORTMAP", env!("CARGO_BIN_EXE_tether-portmap"))
}

pub fn tether_ipam() -> PathBuf {
    override_or("ITEST_TETHER_IPAM", env!("CARGO_BIN_EXE_tether-ipam"))
}

fn override_or(var: &str, built: &str) -> PathBuf {
    if let Some(binary) = std::env::var_os(var) {
        return PathBuf::from(binary);
    }
    installed_dir().map_or_else(
        || PathBuf::from(built),
        |dir| {
            dir.join(
                Path::new(built)
                    .file_name()
                    .expect("cargo names its binaries"),
            )
        },
    )
}

fn installed_dir() -> Option<PathBuf> {
    std::env::var_os("ITEST_TETHER_DIR").map(PathBuf::from)
}

pub fn reference(name: &str) -> PathBuf {
    Path::new(REFERENCE_PLUGIN_DIR).join(name)
}

/// CNI_PATH as a runtime would set it: our binaries first, then the reference plugins, so
/// `"type": "host-local"` and `"type": "tether-ipam"` both resolve.
pub fn cni_path() -> String {
    let ours = installed_dir().unwrap_or_else(|| {
        Path::new(env!("CARGO_BIN_EXE_tether-bridge"))
            .parent()
            .expect("cargo puts binaries in a directory")
            .to_path_buf()
    });
    format!("{}:{REFERENCE_PLUGIN_DIR}", ours.display())
}

/// The `tether` CLI (also the OCI hook, `tether hook`).
pub fn tether() -> PathBuf {
    override_or("ITEST_TETHER_CLI", env!("CARGO_BIN_EXE_tether"))
}
