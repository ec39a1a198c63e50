//! The daemon's view of the world: every attachment record of every network, read from the state directory
//! (`<state>/attachments/<network>/*.json`, written by the plugins before they notify), plus the records
//! its services contribute ([`Service::extra_records`](super::Service::extra_records)).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::state::attachment::attachments_root;
use crate::state::{AttachmentRecord, RecordDir};
use crate::state_file;

#[derive(Debug, Clone, Default)]
pub struct RecordSnapshot {
    pub records: Vec<AttachmentRecord>,
}

impl RecordSnapshot {
    /// Reads every record. A corrupt or half-readable file is skipped with a warning: one bad record must
    /// not take DNS away from every other container.
    pub fn load(state_dir: &Path) -> RecordSnapshot {
        let root = attachments_root(state_dir);
        let mut records = Vec::new();
        for net_dir in sub_dirs(&root) {
            let Ok(entries) = fs::read_dir(&net_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match state_file::read_json::<AttachmentRecord>(&path) {
                    Ok(Some(rec)) => records.push(rec),
                    Ok(None) => {} // removed meanwhile
                    Err(e) => tracing::warn!(error = %e, "skipping attachment record"),
                }
            }
        }
        RecordSnapshot { records }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Re-reads one record: replaced when its file is there, dropped when it is gone. Costs one file read
    /// however many containers there are, which keeps a notified ADD flat.
    pub fn refresh_one(
        &mut self,
        state_dir: &Path,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) {
        let same = |r: &AttachmentRecord| {
            // The container id first: it tells records apart soonest.
            r.container_id == container_id && r.ifname == ifname && r.network == network
        };
        self.records.retain(|r| !same(r));
        match RecordDir::new(state_dir, network).read(container_id, ifname) {
            Ok(Some(rec)) => self.records.push(rec),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping attachment record"),
        }
    }
}

fn sub_dirs(root: &Path) -> Vec<PathBuf> {
    match fs::read_dir(root) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A cheap fingerprint of the records directory: the modification times of `attachments/` and of each
/// network's directory (a create, rename or unlink inside a directory changes its mtime). Polled so that
/// records changed without a notify (a plugin that could not reach the daemon, a removed state dir) are
/// still seen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordsFingerprint(Vec<(PathBuf, Option<SystemTime>)>);

impl RecordsFingerprint {
    pub fn read(state_dir: &Path) -> RecordsFingerprint {
        let root = attachments_root(state_dir);
        let mut stamps = vec![(root.clone(), mtime(&root))];
        let mut dirs = sub_dirs(&root);
        dirs.sort();
        stamps.extend(dirs.into_iter().map(|d| {
            let m = mtime(&d);
            (d, m)
        }));
        RecordsFingerprint(stamps)
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_every_network_and_skips_corrupt_files() {
        let tmp = std::env::temp_dir().join(format!("tether-snap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let before = RecordsFingerprint::read(&tmp);
        for net in ["a", "b"] {
            let rec: AttachmentRecord = serde_json::from_value(serde_json::json!({
                "network": net, "containerId": "c", "ifname": "eth0", "driver": "bridge",
                "ips": ["10.0.0.2/24"]
            }))
            .unwrap();
            RecordDir::new(&tmp, net).write(&rec).unwrap();
        }
        fs::write(tmp.join("attachments/a/bad.json"), b"{").unwrap();
        let mut snap = RecordSnapshot::load(&tmp);
        assert_eq!(snap.records.len(), 2);
        RecordDir::new(&tmp, "a").remove("c", "eth0").unwrap();
        snap.refresh_one(&tmp, "a", "c", "eth0");
        assert_eq!(snap.records.len(), 1);
        assert_ne!(before, RecordsFingerprint::read(&tmp));
        fs::remove_dir_all(tmp).unwrap();
    }
}
