//! Finding a container's attachments by id or name: tether's attachment records and libcni's result
//! cache entries, merged per (network, container, interface).

use std::collections::BTreeMap;
use std::path::Path;

use crate::cni::runtime::{CachedAttachment, ResultCache};
use crate::endpoint::{all_records, Attachment};
use crate::state::AttachmentRecord;

/// One attachment as tether and the runtime cache know it; at least one of the two is there.
#[derive(Debug, Clone)]
pub struct KnownAttachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub record: Option<AttachmentRecord>,
    pub cached: Option<CachedAttachment>,
}

impl KnownAttachment {
    pub fn name(&self) -> Option<String> {
        self.record
            .as_ref()
            .and_then(|r| r.name.clone())
            .or_else(|| {
                self.cached
                    .as_ref()
                    .and_then(|c| Attachment::from_cache(c).name)
            })
    }

    pub fn netns(&self) -> Option<String> {
        self.record
            .as_ref()
            .and_then(|r| r.netns.as_ref().map(|p| p.display().to_string()))
            .or_else(|| self.cached.as_ref().and_then(|c| c.netns.clone()))
    }

    pub fn view(&self) -> Option<Attachment> {
        self.cached.as_ref().map(Attachment::from_cache)
    }
}

type Key = (String, String, String);

fn slot<'m>(
    merged: &'m mut BTreeMap<Key, KnownAttachment>,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> &'m mut KnownAttachment {
    let key = (
        network.to_string(),
        container_id.to_string(),
        ifname.to_string(),
    );
    merged.entry(key).or_insert_with(|| KnownAttachment {
        network: network.to_string(),
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        record: None,
        cached: None,
    })
}

/// Every attachment on this host, records and cache entries merged.
pub fn all(state_dir: &Path, cni_cache_dir: &Path) -> Vec<KnownAttachment> {
    let mut merged = BTreeMap::new();
    for rec in all_records(state_dir) {
        let (n, c, i) = (
            rec.network.clone(),
            rec.container_id.clone(),
            rec.ifname.clone(),
        );
        slot(&mut merged, &n, &c, &i).record = Some(rec);
    }
    for entry in ResultCache::new(cni_cache_dir).list().unwrap_or_default() {
        let (n, c, i) = (
            entry.network_name.clone(),
            entry.container_id.clone(),
            entry.ifname.clone(),
        );
        slot(&mut merged, &n, &c, &i).cached = Some(entry);
    }
    merged.into_values().collect()
}

/// The attachments of the container with this id, or else this name.
pub fn find(query: &str, state_dir: &Path, cni_cache_dir: &Path) -> Vec<KnownAttachment> {
    let everything = all(state_dir, cni_cache_dir);
    let by_id: Vec<KnownAttachment> = everything
        .iter()
        .filter(|a| a.container_id == query)
        .cloned()
        .collect();
    if !by_id.is_empty() {
        return by_id;
    }
    everything
        .into_iter()
        .filter(|a| a.name().as_deref() == Some(query))
        .collect()
}
