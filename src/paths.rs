//! Where tether keeps its files (docs/design.md §3 "Paths"); every one is overridable so tests stay hermetic.

use std::path::{Path, PathBuf};

fn from_env(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

/// Persistent state: IPAM stores, attachment records (`TETHER_STATE_DIR`, default `/var/lib/tether`).
pub fn state_dir() -> PathBuf {
    from_env("TETHER_STATE_DIR", "/var/lib/tether")
}

/// Volatile state: locks, sockets (`TETHER_RUN_DIR`, default `/run/tether`).
pub fn run_dir() -> PathBuf {
    from_env("TETHER_RUN_DIR", "/run/tether")
}

/// Network configuration lists (`TETHER_CONF_DIR`, default `/etc/cni/net.d`).
pub fn conf_dir() -> PathBuf {
    from_env("TETHER_CONF_DIR", "/etc/cni/net.d")
}

/// Default IPAM data directory when a config names none.
pub fn ipam_dir() -> PathBuf {
    state_dir().join("ipam")
}

/// libcni's cache of ADD results, shared with podman and other libcni users (`TETHER_CNI_CACHE_DIR`,
/// default `/var/lib/cni`); results live in its `results/` subdirectory.
pub fn cni_cache_dir() -> PathBuf {
    from_env("TETHER_CNI_CACHE_DIR", "/var/lib/cni")
}

/// Where plugins are looked up when `CNI_PATH` is unset (docs/design.md §3).
pub const DEFAULT_CNI_PATH: &str = "/opt/cni/bin:/usr/lib/cni";

/// The plugin directories: `CNI_PATH`, else [`DEFAULT_CNI_PATH`].
pub fn cni_path() -> Vec<PathBuf> {
    let raw = std::env::var("CNI_PATH")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_CNI_PATH.to_string());
    split_path_list(&raw)
}

/// A `:`-separated directory list, empty entries dropped.
/// A regular file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `program` on `PATH`, as a shell would find it.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    split_path_list(&path)
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

pub fn split_path_list(raw: &str) -> Vec<PathBuf> {
    raw.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// tetherd's config file (`TETHER_DAEMON_CONFIG`, default `/etc/tether/tetherd.json`); absent means defaults.
pub fn daemon_config() -> PathBuf {
    from_env("TETHER_DAEMON_CONFIG", "/etc/tether/tetherd.json")
}

/// The host resolver configuration tetherd forwards to (`TETHER_RESOLV_CONF`, default `/etc/resolv.conf`).
pub fn resolv_conf() -> PathBuf {
    from_env("TETHER_RESOLV_CONF", "/etc/resolv.conf")
}
