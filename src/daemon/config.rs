//! tetherd's config file: a few daemon settings and one opaque section per service (`"dns": {...}`,
//! `"overlay": {...}`), each parsed by its service, so a new service needs no change here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::DaemonError;

/// Idle grace when the config names none: long enough that a DEL followed by an ADD (a container restart)
/// does not stop and start the daemon.
const DEFAULT_IDLE_GRACE_MS: u64 = 2000;
/// How often tetherd looks for containers whose namespace is gone (one `/proc` scan for all of them): well
/// within the 30 s a dead container may hold its address, ports and names.
const DEFAULT_GONE_CHECK_MS: u64 = 5000;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonConfig {
    /// How long tetherd waits, with nothing to serve, before it exits.
    #[serde(default = "default_idle_grace_ms")]
    pub idle_grace_ms: u64,
    /// How often the namespaces of attached containers are checked for being gone.
    #[serde(default = "default_gone_check_ms")]
    pub gone_check_ms: u64,
    /// Stay up when idle (under systemd).
    #[serde(default)]
    pub stay: bool,
    /// Every other key: a service's section, handed to it as is.
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

fn default_idle_grace_ms() -> u64 {
    DEFAULT_IDLE_GRACE_MS
}

fn default_gone_check_ms() -> u64 {
    DEFAULT_GONE_CHECK_MS
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            idle_grace_ms: DEFAULT_IDLE_GRACE_MS,
            gone_check_ms: DEFAULT_GONE_CHECK_MS,
            stay: false,
            sections: BTreeMap::new(),
        }
    }
}

impl DaemonConfig {
    /// Reads the file; a missing file means every default.
    pub fn load(path: &Path) -> Result<DaemonConfig, DaemonError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| DaemonError::ConfigParse {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DaemonConfig::default()),
            Err(source) => Err(DaemonError::ConfigRead {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn idle_grace(&self) -> Duration {
        Duration::from_millis(self.idle_grace_ms)
    }

    /// At least 100 ms: a smaller value would spend the daemon on scanning `/proc`.
    pub fn gone_check(&self) -> Duration {
        Duration::from_millis(self.gone_check_ms.max(100))
    }

    /// A service's section; `Null` when the file has none.
    pub fn section(&self, service: &str) -> serde_json::Value {
        self.sections
            .get(service)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_sections_pass_through_untouched() {
        let c: DaemonConfig =
            serde_json::from_str(r#"{"idleGraceMs": 10, "overlay": {"psk": "x"}}"#).unwrap();
        assert_eq!(c.idle_grace(), Duration::from_millis(10));
        assert_eq!(c.section("overlay")["psk"], "x");
        assert!(c.section("dns").is_null());
    }

    #[test]
    fn a_missing_file_means_defaults() {
        let c = DaemonConfig::load(Path::new("/nonexistent/tetherd.json")).unwrap();
        assert_eq!(c.idle_grace_ms, DEFAULT_IDLE_GRACE_MS);
        assert!(!c.stay);
        assert_eq!(c.gone_check(), Duration::from_secs(5));
    }

    #[test]
    fn the_gone_check_period_is_read_and_kept_from_spinning() {
        let c: DaemonConfig = serde_json::from_str(r#"{"goneCheckMs": 2000}"#).unwrap();
        assert_eq!(c.gone_check(), Duration::from_secs(2));
        assert!(
            c.section("goneCheckMs").is_null(),
            "a daemon setting, not a section"
        );
        let c: DaemonConfig = serde_json::from_str(r#"{"goneCheckMs": 0}"#).unwrap();
        assert_eq!(c.gone_check(), Duration::from_millis(100));
    }
}
