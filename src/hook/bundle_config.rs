//! The parts of a bundle's `config.json` (runtime-spec `config.md`) the hook needs: annotations when the
//! state lacks them, the root filesystem for resolv.conf/hosts, the hostname, the mounts (a runtime that
//! bind-mounts its own /etc/resolv.conf owns that file) and whether the container gets its own network
//! namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::HookError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BundleConfig {
    pub annotations: BTreeMap<String, String>,
    pub root: Option<Root>,
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    pub linux: Option<Linux>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Root {
    pub path: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub destination: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<PathBuf>,
}

impl BundleConfig {
    /// Reads `<bundle>/config.json`; `Ok(None)` when the bundle has none (a state made by hand, or a
    /// bundle already removed before poststop).
    pub fn load(bundle: &Path) -> Result<Option<BundleConfig>, HookError> {
        let path = bundle.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(HookError::ReadBundle { path, source }),
        };
        BundleConfig::parse(&text)
            .map(Some)
            .map_err(|source| HookError::DecodeBundle { path, source })
    }

    pub fn parse(text: &str) -> Result<BundleConfig, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The root filesystem as an absolute path (`root.path` is relative to the bundle when not absolute),
    /// or `None` without a `root` or when it is read-only.
    pub fn writable_rootfs(&self, bundle: &Path) -> Option<PathBuf> {
        let root = self.root.as_ref()?;
        if root.readonly || root.path.as_os_str().is_empty() {
            return None;
        }
        Some(bundle.join(&root.path))
    }

    /// True when the runtime mounts something onto `destination` in the container (podman bind-mounts
    /// its own /etc/resolv.conf and /etc/hosts): the file under the rootfs is then not the one seen.
    pub fn mounts_over(&self, destination: &Path) -> bool {
        self.mounts.iter().any(|m| m.destination == destination)
    }

    /// `Some(false)` when the spec lists no `network` namespace: the container shares the runtime's.
    /// `None` without a `linux` section.
    pub fn has_network_namespace(&self) -> Option<bool> {
        let linux = self.linux.as_ref()?;
        Some(linux.namespaces.iter().any(|ns| ns.kind == "network"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNC_SPEC: &str = r#"{
        "ociVersion": "1.0.2-dev",
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "web",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "annotations": {"tether.network": "front", "tether.ports": "8080:80"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]},
        "process": {"args": ["sh"]}
    }"#;

    #[test]
    fn a_runc_spec_yields_annotations_rootfs_and_hostname() {
        let config = BundleConfig::parse(RUNC_SPEC).unwrap();
        assert_eq!(config.annotations["tether.network"], "front");
        assert_eq!(config.hostname.as_deref(), Some("web"));
        assert_eq!(
            config.writable_rootfs(Path::new("/b")),
            Some(PathBuf::from("/b/rootfs"))
        );
        assert_eq!(config.has_network_namespace(), Some(true));
        assert!(config.mounts_over(Path::new("/proc")));
        assert!(!config.mounts_over(Path::new("/etc/resolv.conf")));
    }

    #[test]
    fn absolute_and_read_only_roots() {
        let absolute = BundleConfig::parse(r#"{"root":{"path":"/var/lib/c/rootfs"}}"#).unwrap();
        assert_eq!(
            absolute.writable_rootfs(Path::new("/b")),
            Some(PathBuf::from("/var/lib/c/rootfs"))
        );
        let read_only =
            BundleConfig::parse(r#"{"root":{"path":"rootfs","readonly":true}}"#).unwrap();
        assert_eq!(read_only.writable_rootfs(Path::new("/b")), None);
        assert_eq!(
            BundleConfig::parse("{}")
                .unwrap()
                .writable_rootfs(Path::new("/b")),
            None
        );
    }

    #[test]
    fn a_spec_without_a_network_namespace_shares_the_runtimes() {
        let config =
            BundleConfig::parse(r#"{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#)
                .unwrap();
        assert_eq!(config.has_network_namespace(), Some(false));
        assert_eq!(
            BundleConfig::parse("{}").unwrap().has_network_namespace(),
            None
        );
    }
}
