//! Letting go of containers that died without a DEL: deciding which attachments' namespaces are gone
//! (the libcni cache entry's path, else tether's own attachment record, which also holds the namespace's
//! identity) and running a DEL for them. `tether gc` and tetherd's periodic check both come here.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{Attachment, EndpointError, Endpoints};
use crate::cni::config::Attachment as ValidAttachment;
use crate::cni::runtime::{load_network, CachedAttachment, RuntimeConf, RuntimeError};
use crate::netns::liveness::{is_gone, OccupiedOnDemand};
use crate::netns::NsId;
use crate::state::{AttachmentRecord, RecordDir};

/// Which attachment tether holds something for, and where its container's namespace was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    pub netns_id: Option<NsId>,
}

impl Held {
    pub fn of_record(rec: &AttachmentRecord) -> Option<Held> {
        Some(Held {
            network: rec.network.clone(),
            container_id: rec.container_id.to_string(),
            ifname: rec.ifname.to_string(),
            netns: rec.netns.clone()?,
            netns_id: rec.netns_id,
        })
    }

    pub fn is_gone(&self, occupied: &mut OccupiedOnDemand) -> bool {
        is_gone(&self.netns, self.netns_id, occupied)
    }

    /// The one line an operator sees for each release (README: "A container that dies without DEL").
    pub fn log_release(&self, by: &str) {
        tracing::info!(
            network = %self.network,
            container = %self.container_id,
            ifname = %self.ifname,
            netns = %self.netns.display(),
            "container's network namespace is gone; releasing its attachment ({by})"
        );
    }
}

/// Every attachment record of every network in `state_dir`.
pub fn all_records(state_dir: &Path) -> Vec<AttachmentRecord> {
    let Ok(dirs) = std::fs::read_dir(state_dir.join("attachments")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in dirs.flatten() {
        let network = dir.file_name().to_string_lossy().into_owned();
        match RecordDir::new(state_dir, &network).list() {
            Ok(list) => out.extend(list),
            Err(e) => tracing::warn!(network, error = %e, "skipping unreadable attachment records"),
        }
    }
    out
}

/// What [`Endpoints::release_gone`] did.
pub(super) struct Collected {
    /// The attachments it released.
    pub freed: Vec<Attachment>,
    /// The attachments still valid, by network (what CNI GC is told to keep).
    pub valid: Vec<(String, ValidAttachment)>,
}

impl Endpoints {
    /// Releases one attachment as a DEL would: with what the libcni cache kept of its ADD (config, CNI_ARGS,
    /// capability args) when there is an entry, else with the network's conflist as defined now. A DEL
    /// that ran meanwhile leaves nothing to do, and this succeeds.
    pub fn release(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), EndpointError> {
        if self.runtime.del_cached(network, container_id, ifname)? {
            return Ok(());
        }
        if RecordDir::new(&self.state_dir, network)
            .read(container_id, ifname)
            .ok()
            .flatten()
            .is_none()
        {
            return Ok(());
        }
        let net = load_network(&self.conf_dir, network)?;
        let rt = RuntimeConf {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            ..RuntimeConf::default()
        };
        self.runtime.del(&net, &rt)?;
        Ok(())
    }

    /// What [`Endpoints::gc`] detaches: cache entries and records whose namespace is gone.
    pub(super) fn release_gone(&self) -> Result<Collected, EndpointError> {
        let mut occupied = OccupiedOnDemand::of_proc();
        let records = all_records(&self.state_dir);
        // Looked up by attachment, not searched per cache entry: a thousand containers made that a
        // million comparisons each way.
        let by_attachment: HashMap<(&str, &str, &str), &AttachmentRecord> = records
            .iter()
            .map(|r| ((&*r.network, &*r.container_id, &*r.ifname), r))
            .collect();
        let mut freed = Vec::new();
        let mut valid = Vec::new();
        let cached = self.runtime.cache.list()?;
        let cached_keys: HashSet<(&str, &str, &str)> = cached
            .iter()
            .map(|e| (&*e.network_name, &*e.container_id, &*e.ifname))
            .collect();
        for entry in &cached {
            let rec = by_attachment
                .get(&(&*entry.network_name, &*entry.container_id, &*entry.ifname))
                .copied();
            let held = held_of(entry, rec);
            if !held.as_ref().is_some_and(|h| h.is_gone(&mut occupied)) {
                valid.push(key(&entry.network_name, &entry.container_id, &entry.ifname));
                continue;
            }
            if let Some(h) = &held {
                h.log_release("tether gc");
            }
            self.runtime
                .del_cached(&entry.network_name, &entry.container_id, &entry.ifname)?;
            freed.push(Attachment::from_cache(entry));
        }
        // tether's records that no cache entry here knows (a runtime keeping its cache elsewhere, plugins
        // run by a script): released through the network's conflist, when this host defines it.
        for rec in &records {
            let known = cached_keys.contains(&(&*rec.network, &*rec.container_id, &*rec.ifname));
            let Some(held) = Held::of_record(rec).filter(|_| !known) else {
                continue;
            };
            if !held.is_gone(&mut occupied) {
                valid.push(key(&rec.network, &rec.container_id, &rec.ifname));
                continue;
            }
            held.log_release("tether gc");
            match self.release(&rec.network, &rec.container_id, &rec.ifname) {
                Ok(()) => freed.push(Attachment::from_record(rec)),
                Err(EndpointError::Runtime(RuntimeError::NetworkNotFound { .. })) => {
                    tracing::warn!(network = %rec.network, container = %rec.container_id, "cannot release: the network's conflist is not in the config dir and no cache entry holds it");
                    valid.push(key(&rec.network, &rec.container_id, &rec.ifname));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Collected { freed, valid })
    }
}

fn key(network: &str, container_id: &str, ifname: &str) -> (String, ValidAttachment) {
    (
        network.to_string(),
        ValidAttachment {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        },
    )
}

/// Where the entry's namespace was: the cache's path (containerd 1.6 writes none) else the record's, and
/// the identity the record kept when it names the same path.
fn held_of(entry: &CachedAttachment, rec: Option<&AttachmentRecord>) -> Option<Held> {
    let from_record = rec.and_then(Held::of_record);
    match (&entry.netns, from_record) {
        (Some(path), Some(h)) if Path::new(path) == h.netns => Some(h),
        (Some(path), _) => Some(Held {
            network: entry.network_name.clone(),
            container_id: entry.container_id.clone(),
            ifname: entry.ifname.clone(),
            netns: PathBuf::from(path),
            netns_id: None,
        }),
        (None, from_record) => from_record,
    }
}

impl Attachment {
    /// An attachment known only from tether's record (no libcni cache entry).
    pub fn from_record(rec: &AttachmentRecord) -> Attachment {
        Attachment {
            network: rec.network.clone(),
            container_id: rec.container_id.to_string(),
            ifname: rec.ifname.to_string(),
            name: rec.name.clone(),
            netns: rec.netns.as_ref().map(|p| p.display().to_string()),
            ips: rec.ips.clone(),
            mac: rec.mac.map(|m| m.to_string()),
            ports: Vec::new(),
            aliases: rec.aliases.clone(),
            result: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::runtime::CACHE_KIND;

    fn entry(netns: Option<&str>) -> CachedAttachment {
        CachedAttachment {
            kind: CACHE_KIND.into(),
            container_id: "c1".into(),
            config: Vec::new(),
            ifname: "eth0".into(),
            network_name: "n1".into(),
            netns: netns.map(str::to_string),
            cni_args: Vec::new(),
            capability_args: Default::default(),
            result: None,
        }
    }

    fn record(netns: &str) -> AttachmentRecord {
        serde_json::from_value(serde_json::json!({
            "network": "n1", "containerId": "c1", "ifname": "eth0", "driver": "bridge",
            "netns": netns, "netnsId": {"dev": 4, "ino": 99}, "ips": []
        }))
        .unwrap()
    }

    #[test]
    fn an_entry_without_a_path_takes_the_records_path_and_identity() {
        let held = held_of(&entry(None), Some(&record("/proc/7/ns/net"))).unwrap();
        assert_eq!(held.netns, Path::new("/proc/7/ns/net"));
        assert_eq!(held.netns_id, Some(NsId { dev: 4, ino: 99 }));
        assert_eq!(held_of(&entry(None), None), None);
    }

    #[test]
    fn the_records_identity_is_used_only_for_the_same_path() {
        let same = held_of(&entry(Some("/run/netns/a")), Some(&record("/run/netns/a"))).unwrap();
        assert_eq!(same.netns_id, Some(NsId { dev: 4, ino: 99 }));
        let other = held_of(&entry(Some("/run/netns/b")), Some(&record("/run/netns/a"))).unwrap();
        assert_eq!(
            (other.netns.as_path(), other.netns_id),
            (Path::new("/run/netns/b"), None)
        );
    }
}
