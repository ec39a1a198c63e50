//! The routing mesh's connection counters per host, on disk for `tether service inspect`:
//! `<state>/mesh-counts/local.json`, this host's, sampled by tetherd from its mesh table; and
//! `<state>/mesh-counts/<host>.json`, another host's, written by the overlay control plane from that
//! host's records in the cluster store (`overlay::cluster_services`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::mesh::Publish;
use crate::state_file::{JsonDir, StateFileError};

const OWN: &str = "local";

/// One published port's connections on one host since it was published there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortCount {
    pub publish: Publish,
    pub forwarded_local: u64,
    pub forwarded_remote: u64,
    pub refused: u64,
}

/// A host's counters of one service's ports, and when they were sampled (wall-clock milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCounts {
    pub sampled_at_ms: u64,
    pub ports: Vec<PortCount>,
}

/// One host's counters, per service; `host` is None in this host's own file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostCounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<IpAddr>,
    pub services: BTreeMap<String, ServiceCounts>,
}

pub struct CountsDir {
    files: JsonDir,
}

impl CountsDir {
    pub fn new(state_dir: &Path) -> CountsDir {
        CountsDir {
            files: JsonDir::new(state_dir.join("mesh-counts")),
        }
    }

    /// This host's counters (none yet: empty).
    pub fn own(&self) -> HostCounts {
        self.files.read(OWN).ok().flatten().unwrap_or_default()
    }

    pub fn write_own(&self, counts: &HostCounts) -> Result<(), StateFileError> {
        self.files.write(OWN, counts)
    }

    /// Every other host's counters.
    pub fn others(&self) -> Vec<HostCounts> {
        let all: Vec<HostCounts> = self.files.list().unwrap_or_default();
        all.into_iter().filter(|h| h.host.is_some()).collect()
    }

    /// Makes the other hosts' files hold `hosts` exactly; whether anything changed.
    pub fn set_others(&self, hosts: &[HostCounts]) -> bool {
        let held = self.others();
        let mut changed = false;
        for h in hosts {
            let Some(host) = h.host else { continue };
            if !held.contains(h) {
                changed |= self.files.write(&host.to_string(), h).is_ok();
            }
        }
        for gone in held
            .iter()
            .filter(|h| !hosts.iter().any(|w| w.host == h.host))
        {
            if let Some(host) = gone.host {
                changed |= self.files.remove(&host.to_string()).unwrap_or(false);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_hosts_files_follow_the_store_and_the_own_file_stays() {
        let state = std::env::temp_dir().join(format!("tether-mesh-counts-{}", std::process::id()));
        let dir = CountsDir::new(&state);
        let own = HostCounts::default();
        dir.write_own(&own).unwrap();
        let host = |h: &str, n: u64| HostCounts {
            host: Some(h.parse().unwrap()),
            services: BTreeMap::from([(
                "web".to_string(),
                ServiceCounts {
                    sampled_at_ms: n,
                    ports: Vec::new(),
                },
            )]),
        };
        assert!(dir.set_others(&[host("192.0.2.2", 1), host("192.0.2.3", 1)]));
        assert!(!dir.set_others(&[host("192.0.2.2", 1), host("192.0.2.3", 1)]));
        assert!(dir.set_others(&[host("192.0.2.3", 2)]));
        assert_eq!(dir.others(), vec![host("192.0.2.3", 2)]);
        assert_eq!(dir.own(), own);
        std::fs::remove_dir_all(&state).unwrap();
    }
}
