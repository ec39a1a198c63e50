//! The daemon's view of the world: every attachment record of every network, read from the state directory
//! (`<state>/attachments/<network>/*.json`, written by the plugins before they notify), plus the records
//! its services contribute ([`Service::extra_records`](super::Service::extra_records)).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::state::attachment::attachments_root;
use crate::state::{AttachmentRecord, RecordDir};
use crate::state_file;

/// Every record, with two indices kept beside them so that a notify finds its record and the records of one
/// namespace without a scan of all of them (at a thousand containers, three scans per notify were about
/// 50 µs of every ADD's wait for tetherd).
#[derive(Debug, Clone, Default)]
pub struct RecordSnapshot {
    records: Vec<AttachmentRecord>,
    /// Positions in `records` by container id (a container's attachments: one per network and interface).
    by_container: Positions,
    /// Positions in `records` by the namespace path the record names.
    by_netns: Positions,
}

impl RecordSnapshot {
    /// Reads every record. A corrupt or half-readable file is skipped with a warning: one bad record must
    /// not take DNS away from every other container.
    pub fn load(state_dir: &Path) -> RecordSnapshot {
        let root = attachments_root(state_dir);
        let mut snapshot = RecordSnapshot::default();
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
                    Ok(Some(rec)) => snapshot.push(rec),
                    Ok(None) => {} // removed meanwhile
                    Err(e) => tracing::warn!(error = %e, "skipping attachment record"),
                }
            }
        }
        snapshot
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, AttachmentRecord> {
        self.records.iter()
    }

    /// Adds records (the services' own, e.g. other hosts' containers).
    pub fn extend(&mut self, records: impl IntoIterator<Item = AttachmentRecord>) {
        for r in records {
            self.push(r);
        }
    }

    /// The record of one attachment.
    pub fn find(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Option<&AttachmentRecord> {
        positions(&self.by_container, container_id)
            .iter()
            .map(|&i| &self.records[i])
            .find(|r| r.ifname == ifname && r.network == network)
    }

    /// The records that name the namespace path `netns`.
    pub fn in_netns<'a>(
        &'a self,
        netns: &OsStr,
    ) -> impl Iterator<Item = &'a AttachmentRecord> + 'a {
        positions(&self.by_netns, netns)
            .iter()
            .map(|&i| &self.records[i])
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
        while let Some(i) = positions(&self.by_container, container_id)
            .iter()
            .copied()
            .find(|&i| self.records[i].ifname == ifname && self.records[i].network == network)
        {
            self.remove_at(i);
        }
        match RecordDir::new(state_dir, network).read(container_id, ifname) {
            Ok(Some(rec)) => self.push(rec),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping attachment record"),
        }
    }

    fn push(&mut self, rec: AttachmentRecord) {
        let i = self.records.len();
        index_at(&mut self.by_container, &mut self.by_netns, &rec, i);
        self.records.push(rec);
    }

    /// Removes the record at `i`; the last one takes its place, and its positions are moved with it.
    fn remove_at(&mut self, i: usize) {
        let last = self.records.len() - 1;
        unindex_at(
            &mut self.by_container,
            &mut self.by_netns,
            &self.records[i],
            i,
        );
        if i != last {
            unindex_at(
                &mut self.by_container,
                &mut self.by_netns,
                &self.records[last],
                last,
            );
            index_at(
                &mut self.by_container,
                &mut self.by_netns,
                &self.records[last],
                i,
            );
        }
        self.records.swap_remove(i);
    }
}

type Positions = HashMap<OsString, Vec<usize>>;

fn positions<'a>(index: &'a Positions, key: &(impl AsRef<OsStr> + ?Sized)) -> &'a [usize] {
    index.get(key.as_ref()).map_or(&[], Vec::as_slice)
}

fn index_keys(rec: &AttachmentRecord) -> (&OsStr, Option<&OsStr>) {
    (
        OsStr::new(rec.container_id.as_str()),
        rec.netns.as_deref().map(Path::as_os_str),
    )
}

fn index_at(
    by_container: &mut Positions,
    by_netns: &mut Positions,
    rec: &AttachmentRecord,
    i: usize,
) {
    let (container, netns) = index_keys(rec);
    by_container
        .entry(container.to_os_string())
        .or_default()
        .push(i);
    if let Some(netns) = netns {
        by_netns.entry(netns.to_os_string()).or_default().push(i);
    }
}

fn unindex_at(
    by_container: &mut Positions,
    by_netns: &mut Positions,
    rec: &AttachmentRecord,
    i: usize,
) {
    let (container, netns) = index_keys(rec);
    for (index, key) in [(by_container, Some(container)), (by_netns, netns)] {
        let Some(key) = key else { continue };
        if let Some(positions) = index.get_mut(key) {
            positions.retain(|&p| p != i);
            if positions.is_empty() {
                index.remove(key);
            }
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
        assert_eq!(snap.len(), 2);
        RecordDir::new(&tmp, "a").remove("c", "eth0").unwrap();
        snap.refresh_one(&tmp, "a", "c", "eth0");
        assert_eq!(snap.len(), 1);
        assert_ne!(before, RecordsFingerprint::read(&tmp));
        fs::remove_dir_all(tmp).unwrap();
    }

    fn record(net: &str, container: &str, ifname: &str, netns: &str, ip: u8) -> AttachmentRecord {
        serde_json::from_value(serde_json::json!({
            "network": net, "containerId": container, "ifname": ifname, "driver": "bridge",
            "netns": netns, "ips": [format!("10.0.0.{ip}/24")]
        }))
        .unwrap()
    }

    /// What the indices must answer, by a scan of every record.
    fn check_indices(snap: &RecordSnapshot) {
        for r in snap.iter() {
            let found = snap.find(&r.network, &r.container_id, &r.ifname).unwrap();
            assert_eq!(found.ips, r.ips);
            let netns = r.netns.as_deref().unwrap().as_os_str();
            let mut by_index: Vec<_> = snap.in_netns(netns).map(|r| r.ips.clone()).collect();
            let mut by_scan: Vec<_> = snap
                .iter()
                .filter(|o| o.netns.as_deref().map(Path::as_os_str) == Some(netns))
                .map(|r| r.ips.clone())
                .collect();
            by_index.sort();
            by_scan.sort();
            assert_eq!(by_index, by_scan, "records in {netns:?}");
        }
        let listed: usize = snap.by_container.values().map(Vec::len).sum();
        assert_eq!(listed, snap.len(), "every record indexed once by container");
    }

    #[test]
    fn the_indices_find_what_a_scan_finds_through_replacements_and_removals_in_any_order() {
        let tmp = std::env::temp_dir().join(format!("tether-snap-ix-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        // Two networks, containers with one or two interfaces, and two containers sharing a namespace.
        let mut all = Vec::new();
        for (i, c) in ["c0", "c1", "c2", "c3", "c4", "c5"].iter().enumerate() {
            let netns = if *c == "c5" {
                "/run/netns/c4".to_string()
            } else {
                format!("/run/netns/{c}")
            };
            all.push(record("a", c, "eth0", &netns, i as u8 + 2));
            if i % 2 == 0 {
                all.push(record("b", c, "eth1", &netns, i as u8 + 20));
            }
        }
        for r in &all {
            RecordDir::new(&tmp, &r.network).write(r).unwrap();
        }
        let mut snap = RecordSnapshot::load(&tmp);
        assert_eq!(snap.len(), all.len());
        check_indices(&snap);

        // Removed from the first, the last and the middle, replaced, and one added again.
        let steps: [(&str, &str, &str, Option<u8>); 7] = [
            ("a", "c0", "eth0", None),
            ("b", "c4", "eth1", None),
            ("a", "c2", "eth0", Some(99)),
            ("a", "c5", "eth0", None),
            ("b", "c0", "eth1", None),
            ("a", "c0", "eth0", Some(50)),
            ("a", "nobody", "eth0", None),
        ];
        for (net, c, ifname, ip) in steps {
            let dir = RecordDir::new(&tmp, net);
            match ip {
                Some(ip) => dir
                    .write(&record(net, c, ifname, &format!("/run/netns/{c}"), ip))
                    .unwrap(),
                None => {
                    let _ = dir.remove(c, ifname);
                }
            }
            snap.refresh_one(&tmp, net, c, ifname);
            check_indices(&snap);
            let now = snap.find(net, c, ifname).map(|r| r.ips[0].ip().to_string());
            assert_eq!(
                now,
                ip.map(|ip| format!("10.0.0.{ip}")),
                "{net}/{c}/{ifname}"
            );
        }
        assert_eq!(RecordSnapshot::load(&tmp).len(), snap.len());
        let shared: Vec<_> = snap
            .in_netns(OsStr::new("/run/netns/c4"))
            .map(|r| r.container_id.to_string())
            .collect();
        assert_eq!(
            shared,
            ["c4"],
            "c5's record left the shared namespace's list"
        );
        fs::remove_dir_all(tmp).unwrap();
    }
}
