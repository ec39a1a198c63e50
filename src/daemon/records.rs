//! The daemon's view of the world: every attachment record of every network, read from the state directory
//! (`<state>/attachments/<network>/*.json`, written by the plugins before they notify), plus the records
//! its services contribute ([`Service::extra_records`](super::Service::extra_records)).

use std::ffi::OsStr;
use std::fs;
use std::hash::Hasher;
use std::os::unix::ffi::OsStrExt;
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
    by_container: KeyIndex,
    /// Positions in `records` by the namespace path the record names.
    by_netns: KeyIndex,
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
                    Ok(Some(rec)) => snapshot.append(rec),
                    Ok(None) => {} // removed meanwhile
                    Err(e) => tracing::warn!(error = %e, "skipping attachment record"),
                }
            }
        }
        snapshot.sort_indices();
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
            self.append(r);
        }
        self.sort_indices();
    }

    /// The record of one attachment.
    pub fn find(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Option<&AttachmentRecord> {
        self.position(network, container_id, ifname)
            .map(|i| &self.records[i])
    }

    /// The records that name the namespace path `netns`.
    pub fn in_netns<'a>(
        &'a self,
        netns: &'a OsStr,
    ) -> impl Iterator<Item = &'a AttachmentRecord> + 'a {
        self.by_netns
            .positions(netns.as_bytes())
            .map(|i| &self.records[i])
            .filter(move |r| r.netns.as_deref().map(Path::as_os_str) == Some(netns))
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
        while let Some(i) = self.position(network, container_id, ifname) {
            self.remove_at(i);
        }
        match RecordDir::new(state_dir, network).read(container_id, ifname) {
            Ok(Some(rec)) => self.insert(rec),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping attachment record"),
        }
    }

    fn position(&self, network: &str, container_id: &str, ifname: &str) -> Option<usize> {
        self.by_container
            .positions(container_id.as_bytes())
            .find(|&i| {
                let r = &self.records[i];
                r.container_id.as_str() == container_id
                    && r.ifname == ifname
                    && r.network == network
            })
    }

    /// Adds a record at the end, its index entries unsorted: loading many, [`Self::sort_indices`] follows.
    fn append(&mut self, rec: AttachmentRecord) {
        let i = self.records.len();
        for (index, key) in key_pairs(&mut self.by_container, &mut self.by_netns, &rec) {
            index.append(key, i);
        }
        self.records.push(rec);
    }

    fn sort_indices(&mut self) {
        self.by_container.sort();
        self.by_netns.sort();
    }

    /// Adds one record with its index entries in place.
    fn insert(&mut self, rec: AttachmentRecord) {
        let i = self.records.len();
        for (index, key) in key_pairs(&mut self.by_container, &mut self.by_netns, &rec) {
            index.insert(key, i);
        }
        self.records.push(rec);
    }

    /// Removes the record at `i`; the last one takes its place, and its positions are moved with it.
    fn remove_at(&mut self, i: usize) {
        let last = self.records.len() - 1;
        let [by_container, by_netns] = [&mut self.by_container, &mut self.by_netns];
        for (index, key) in key_pairs(by_container, by_netns, &self.records[i]) {
            index.remove(key, i);
        }
        if i != last {
            for (index, key) in key_pairs(by_container, by_netns, &self.records[last]) {
                index.remove(key, last);
                index.insert(key, i);
            }
        }
        self.records.swap_remove(i);
    }
}

/// Each index with the record's key in it (a record without a namespace path is in the first only).
fn key_pairs<'a>(
    by_container: &'a mut KeyIndex,
    by_netns: &'a mut KeyIndex,
    rec: &'a AttachmentRecord,
) -> impl Iterator<Item = (&'a mut KeyIndex, &'a [u8])> {
    let container = rec.container_id.as_str().as_bytes();
    let netns = rec.netns.as_deref().map(|p| p.as_os_str().as_bytes());
    [(by_container, Some(container)), (by_netns, netns)]
        .into_iter()
        .filter_map(|(index, key)| Some((index, key?)))
}

/// Positions in the records by a hash of a key, sorted: 16 bytes a record in one allocation, where a map from
/// owned keys to lists of positions made a copy of the key and a list per record (tetherd's resident memory
/// is one of its goals). Keys that share a hash share entries, so whoever looks one up compares the record's
/// key itself.
#[derive(Debug, Clone, Default)]
struct KeyIndex(Vec<(u64, u32)>);

impl KeyIndex {
    fn hash(key: &[u8]) -> u64 {
        // Fixed keys: the records are root's own files, nothing an attacker picks to collide.
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(key);
        hasher.finish()
    }

    fn entry(key: &[u8], i: usize) -> (u64, u32) {
        (
            Self::hash(key),
            u32::try_from(i).expect("fewer than 2^32 records"),
        )
    }

    fn positions(&self, key: &[u8]) -> impl Iterator<Item = usize> + '_ {
        let hash = Self::hash(key);
        let first = self.0.partition_point(|&(h, _)| h < hash);
        self.0[first..]
            .iter()
            .take_while(move |&&(h, _)| h == hash)
            .map(|&(_, i)| i as usize)
    }

    fn append(&mut self, key: &[u8], i: usize) {
        self.0.push(Self::entry(key, i));
    }

    fn sort(&mut self) {
        self.0.sort_unstable();
    }

    fn insert(&mut self, key: &[u8], i: usize) {
        let entry = Self::entry(key, i);
        let at = self.0.partition_point(|&e| e < entry);
        self.0.insert(at, entry);
    }

    fn remove(&mut self, key: &[u8], i: usize) {
        if let Ok(at) = self.0.binary_search(&Self::entry(key, i)) {
            self.0.remove(at);
        }
    }
}

pub(super) fn sub_dirs(root: &Path) -> Vec<PathBuf> {
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
        assert_eq!(
            snap.by_container.0.len(),
            snap.len(),
            "every record indexed once by container"
        );
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

    #[test]
    fn a_key_sharing_another_keys_hash_never_finds_the_other_keys_records() {
        let mut snap = RecordSnapshot::default();
        snap.extend([
            record("a", "c1", "eth0", "/run/netns/c1", 2),
            record("a", "c2", "eth0", "/run/netns/c2", 3),
        ]);
        // A collision, made by hand: c2's record listed under the hashes of c1's keys, first.
        let c2 = snap
            .iter()
            .position(|r| r.container_id.as_str() == "c2")
            .unwrap();
        for (index, key) in [
            (&mut snap.by_container, "c1"),
            (&mut snap.by_netns, "/run/netns/c1"),
        ] {
            let (hash, _) = KeyIndex::entry(key.as_bytes(), 0);
            index.0.insert(
                index.0.partition_point(|&(h, _)| h < hash),
                (hash, c2 as u32),
            );
        }
        let ip = |r: &AttachmentRecord| r.ips[0].ip().to_string();
        assert_eq!(
            snap.find("a", "c1", "eth0").map(ip).as_deref(),
            Some("10.0.0.2")
        );
        let in_c1: Vec<_> = snap.in_netns(OsStr::new("/run/netns/c1")).map(ip).collect();
        assert_eq!(in_c1, ["10.0.0.2"]);
    }
}
