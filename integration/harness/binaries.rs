//! Where the binaries under test and the reference plugins live.

use std::path::{Path, PathBuf};

/// Debian's containernetworking-plugins (bridge, host-local, ...), CNI up to 1.0.0.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

pub fn tether_bridge() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tether-bridge"))
}

pub fn tether_ipam() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tether-ipam"))
}

pub fn reference(name: &str) -> PathBuf {
    Path::new(REFERENCE_PLUGIN_DIR).join(name)
}

/// CNI_PATH as a runtime would set it: our binaries first, then the reference plugins, so
/// `"type": "host-local"` and `"type": "tether-ipam"` both resolve.
pub fn cni_path() -> String {
    let ours = tether_bridge()
        .parent()
        .expect("cargo puts binaries in a directory")
        .display()
        .to_string();
    format!("{ours}:{REFERENCE_PLUGIN_DIR}")
}
