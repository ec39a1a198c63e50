//! Which 802.1Q sub-interfaces tether made, and who uses them: `<state>/vlan/<link>.json` holds, per
//! network, the attachments (container/ifname) hanging on the sub-interface. The file exists only for a
//! sub-interface tether created, so one the user made is used but never recorded and never deleted.
//!
//! Lifetime: the sub-interface is created by the first ADD that needs it and deleted when its last user
//! leaves, i.e. by the DEL (or GC) of the last container of the last tether network on it. Each attachment
//! registers itself *before* its macvlan is created, so a concurrent last DEL can never pull the
//! sub-interface from under an ADD in progress. Every change happens under one exclusive flock
//! (`<run>/locks/vlan.lock`); these are rare, short operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cni::config::Attachment;
use crate::link::{LinkError, LinkInfo, Netlink};
use crate::state_file::{self, StateFileError};

#[derive(Debug, thiserror::Error)]
pub enum VlanRegistryError {
    #[error("locking the VLAN registry ({path}): {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("VLAN registry: {source}")]
    State {
        #[from]
        source: StateFileError,
    },
    #[error(transparent)]
    Link {
        #[from]
        source: LinkError,
    },
}

/// One attachment hanging on a sub-interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanUser<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

impl VlanUser<'_> {
    fn key(&self) -> String {
        format!("{}/{}", self.container_id, self.ifname)
    }
}

/// The sub-interface an ADD needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanPlan<'a> {
    pub name: &'a str,
    pub lower_index: u32,
    pub id: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VlanRecord {
    pub link: String,
    pub lower: String,
    pub vlan: u16,
    /// network -> attachments ("container/ifname") using the sub-interface.
    pub networks: BTreeMap<String, BTreeSet<String>>,
}

impl VlanRecord {
    fn remove_user(&mut self, network: &str, key: &str) -> bool {
        let Some(users) = self.networks.get_mut(network) else {
            return false;
        };
        let removed = users.remove(key);
        if users.is_empty() {
            self.networks.remove(network);
        }
        removed
    }
}

pub struct VlanRegistry {
    dir: PathBuf,
    lock_path: PathBuf,
}

/// Held while the registry and the links it describes change.
struct RegistryLock {
    _file: File,
}

impl VlanRegistry {
    pub fn new() -> Self {
        Self {
            dir: crate::paths::state_dir().join("vlan"),
            lock_path: crate::paths::run_dir().join("locks").join("vlan.lock"),
        }
    }

    fn path(&self, link: &str) -> PathBuf {
        self.dir.join(format!("{link}.json"))
    }

    fn lock(&self) -> Result<RegistryLock, VlanRegistryError> {
        let err = |source| VlanRegistryError::Lock {
            path: self.lock_path.clone(),
            source,
        };
        if let Some(dir) = self.lock_path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(err)?;
        file.lock().map_err(err)?;
        Ok(RegistryLock { _file: file })
    }

    /// The record of sub-interface `link`, when tether made it.
    pub fn record(&self, link: &str) -> Result<Option<VlanRecord>, VlanRegistryError> {
        Ok(state_file::read_json(&self.path(link))?)
    }

    /// Registers `user` on the sub-interface and returns it, creating it (and its record) when it is
    /// missing. A sub-interface that exists without a record is the user's: returned, never recorded.
    pub fn acquire(
        &self,
        host: &Netlink,
        plan: &VlanPlan<'_>,
        lower_name: &str,
        user: &VlanUser<'_>,
    ) -> Result<LinkInfo, VlanRegistryError> {
        let _lock = self.lock()?;
        let path = self.path(plan.name);
        let record: Option<VlanRecord> = state_file::read_json(&path)?;
        let existing = host.link_by_name(plan.name)?;
        let created = existing.is_none();
        let (link, mut record) = match (existing, record) {
            (Some(link), None) => {
                tracing::debug!(
                    link = plan.name,
                    "using VLAN sub-interface made outside tether"
                );
                return Ok(link);
            }
            (Some(link), Some(record)) => (link, record),
            // Ours but deleted behind our back: make it again under the same record.
            (None, Some(record)) => (host.add_vlan(plan.name, plan.lower_index, plan.id)?, record),
            (None, None) => {
                let link = host.add_vlan(plan.name, plan.lower_index, plan.id)?;
                let record = VlanRecord {
                    link: plan.name.to_string(),
                    lower: lower_name.to_string(),
                    vlan: plan.id,
                    networks: BTreeMap::new(),
                };
                (link, record)
            }
        };
        record
            .networks
            .entry(user.network.to_string())
            .or_default()
            .insert(user.key());
        if let Err(e) = state_file::write_json(&path, &record) {
            let users: usize = record.networks.values().map(BTreeSet::len).sum();
            if created && users == 1 {
                // Nobody else knows about a sub-interface we just made and could not record.
                let _ = host.delete_link(link.index);
            }
            return Err(e.into());
        }
        Ok(link)
    }

    /// Removes `user` from every sub-interface it is registered on; a sub-interface left without users is
    /// deleted with its record. Nothing to do (and no lock taken) when tether made no sub-interface.
    pub fn release(&self, host: &Netlink, user: &VlanUser<'_>) -> Result<(), VlanRegistryError> {
        let key = user.key();
        self.release_where(host, |network, k| network == user.network && k == key)
    }

    /// GC: drops the users of `network` that are not in `valid`.
    pub fn release_stale(
        &self,
        host: &Netlink,
        network: &str,
        valid: &[Attachment],
    ) -> Result<(), VlanRegistryError> {
        let valid: BTreeSet<String> = valid
            .iter()
            .map(|a| format!("{}/{}", a.container_id, a.ifname))
            .collect();
        self.release_where(host, |net, k| net == network && !valid.contains(k))
    }

    fn release_where(
        &self,
        host: &Netlink,
        stale: impl Fn(&str, &str) -> bool,
    ) -> Result<(), VlanRegistryError> {
        if self.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let records: Vec<VlanRecord> = state_file::list_json(&self.dir)?;
        for mut record in records {
            let doomed: Vec<(String, String)> = record
                .networks
                .iter()
                .flat_map(|(net, users)| {
                    users
                        .iter()
                        .filter(|k| stale(net, k))
                        .map(|k| (net.clone(), k.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            if doomed.is_empty() {
                continue;
            }
            for (net, key) in &doomed {
                record.remove_user(net, key);
            }
            let path = self.path(&record.link);
            if !record.networks.is_empty() {
                state_file::write_json(&path, &record)?;
                continue;
            }
            // Only a VLAN link is deleted: a link of another kind under that name is not the one we made.
            match host.link_by_name(&record.link)? {
                Some(link) if link.kind.as_deref() == Some("vlan") => {
                    host.delete_link(link.index)?;
                    tracing::info!(link = %record.link, "deleted VLAN sub-interface after its last user left");
                }
                Some(link) => tracing::warn!(
                    link = %record.link,
                    kind = ?link.kind,
                    "VLAN sub-interface tether made was replaced by another kind of link; leaving it"
                ),
                None => {}
            }
            state_file::remove(&path)?;
        }
        Ok(())
    }

    /// No sub-interface recorded (reads at most one directory entry).
    fn is_empty(&self) -> bool {
        match fs::read_dir(&self.dir) {
            Ok(mut entries) => !entries.any(|e| {
                e.map(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .unwrap_or(false)
            }),
            Err(_) => true,
        }
    }
}

impl Default for VlanRegistry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_disappears_from_the_record_with_its_last_user() {
        let mut r = VlanRecord {
            link: "eth0.10".into(),
            lower: "eth0".into(),
            vlan: 10,
            networks: BTreeMap::new(),
        };
        r.networks
            .entry("a".into())
            .or_default()
            .extend(["c1/eth0".to_string(), "c2/eth0".to_string()]);
        r.networks
            .entry("b".into())
            .or_default()
            .insert("c3/eth1".into());
        assert!(r.remove_user("a", "c1/eth0"));
        assert!(!r.remove_user("a", "c1/eth0"));
        assert_eq!(r.networks.len(), 2);
        assert!(r.remove_user("a", "c2/eth0"));
        assert_eq!(r.networks.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(r.remove_user("b", "c3/eth1"));
        assert!(r.networks.is_empty());
    }

    #[test]
    fn user_keys_name_container_and_interface() {
        let u = VlanUser {
            network: "n",
            container_id: "abc",
            ifname: "eth0",
        };
        assert_eq!(u.key(), "abc/eth0");
    }
}
