//! Names of other hosts' containers for tetherd's resolver: for every overlay network this host has, the
//! endpoints of up hosts that carry DNS names are written as attachment records (driver `overlay-remote`,
//! no namespace, so the resolver answers for them but serves nobody new) under
//! `<state>/overlay-remote/<network>/`, which the daemon reads with its own records.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;

use super::records::{RecordKey, RecordTable, RecordValue};
use crate::container_id::ContainerId;
use crate::ifname::IfName;
use crate::link::MacAddr;
use crate::state::overlay::NetworkFacts;
use crate::state::{AttachmentRecord, DriverKind, RemoteEndpoint};
use crate::state_file;

fn root(state_dir: &Path) -> PathBuf {
    state_dir.join("overlay-remote")
}

/// The file of another host's endpoint `ip` on `network`. The record's id must be a CNI identifier: a
/// host named by an IPv6 address has ':' in it.
fn file_of(state_dir: &Path, network: &str, host: IpAddr, ip: IpAddr) -> (String, PathBuf) {
    let id: String = format!("{host}_{ip}")
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                true => c,
                false => '-',
            },
        )
        .collect();
    let path = root(state_dir).join(network).join(format!("{id}.json"));
    (id, path)
}

/// The record the resolver should know for one record of the table, if any, with its file.
fn wanted_one(
    state_dir: &Path,
    facts: &NetworkFacts,
    key: &RecordKey,
    value: &RecordValue,
    me: IpAddr,
    is_up: impl Fn(IpAddr) -> bool,
) -> Option<(PathBuf, AttachmentRecord)> {
    let (
        RecordKey::Endpoint { host, network, ip },
        RecordValue::Endpoint {
            vni,
            mac,
            names,
            healthy_for,
            ..
        },
    ) = (key, value)
    else {
        return None;
    };
    if *host == me
        || names.is_empty()
        || *network != facts.network
        || *vni != facts.vni
        || !is_up(*host)
    {
        return None;
    }
    let (id, path) = file_of(state_dir, network, *host, *ip);
    let container_id = ContainerId::new(id).ok()?;
    let pool = facts.pool_of(*ip)?;
    let address = IpNetwork::new(*ip, pool.subnet.prefix()).expect("prefix of a valid subnet");
    let record = AttachmentRecord {
        network: network.clone(),
        container_id,
        ifname: IfName::new("remote").expect("a valid interface name"),
        driver: DriverKind::RemoteOverlay,
        netns: None,
        netns_id: None,
        host_ifname: None,
        bridge: None,
        mac: Some(MacAddr::new(*mac)),
        macspoofchk: false,
        ips: vec![address],
        name: names.first().cloned(),
        aliases: names.iter().skip(1).cloned().collect(),
        dns: true,
        internal: false,
        own_resolver: false,
        remote: Some(RemoteEndpoint {
            host: *host,
            healthy_for: healthy_for.clone(),
        }),
    };
    Some((path, record))
}

/// The records the resolver should know, by file path, each with its record's key.
fn wanted(
    state_dir: &Path,
    networks: &[NetworkFacts],
    table: &RecordTable,
    me: IpAddr,
    is_up: impl Fn(IpAddr) -> bool,
) -> BTreeMap<PathBuf, (RecordKey, AttachmentRecord)> {
    let local: BTreeMap<&str, &NetworkFacts> =
        networks.iter().map(|f| (f.network.as_str(), f)).collect();
    table
        .live()
        .filter_map(|(key, value)| {
            let facts = local.get(key.network())?;
            let (path, record) = wanted_one(state_dir, facts, key, value, me, &is_up)?;
            Some((path, (key.clone(), record)))
        })
        .collect()
}

/// The remote-name files this plane wrote, so a batch of changes touches only the files that differ
/// instead of reading every file back (with a thousand hosts that was every host's names per batch).
#[derive(Debug, Default)]
pub struct RemoteNames {
    /// What the directory holds since the last sync; `None` until the first, which reads the disk (files
    /// a previous tetherd left).
    written: Option<BTreeMap<PathBuf, AttachmentRecord>>,
    /// The records that have a file there: a changed record without one and without names (most of
    /// them) costs no path to look up.
    with_file: BTreeSet<RecordKey>,
}

impl RemoteNames {
    /// Makes `<state>/overlay-remote` hold exactly the wanted records; returns the networks whose records
    /// changed (the daemon must reload them).
    pub fn sync(
        &mut self,
        state_dir: &Path,
        networks: &[NetworkFacts],
        table: &RecordTable,
        me: IpAddr,
        is_up: impl Fn(IpAddr) -> bool,
    ) -> BTreeSet<String> {
        let want = wanted(state_dir, networks, table, me, is_up);
        let have = self.written.take().unwrap_or_else(|| on_disk(state_dir));
        let mut changed = BTreeSet::new();
        let mut written = BTreeMap::new();
        self.with_file.clear();
        for (path, (key, record)) in want {
            if have.get(&path) != Some(&record) {
                if let Err(e) = state_file::write_json(&path, &record) {
                    // Not kept as written: the next sync tries again.
                    tracing::warn!(error = %e, "could not write a remote name record");
                    continue;
                }
                changed.insert(record.network.clone());
            }
            self.with_file.insert(key);
            written.insert(path, record);
        }
        for stale in have.keys().filter(|p| !written.contains_key(*p)) {
            if std::fs::remove_file(stale).is_ok() {
                if let Some(net) = stale.parent().and_then(|p| p.file_name()) {
                    changed.insert(net.to_string_lossy().to_string());
                }
            }
        }
        self.written = Some(written);
        changed
    }

    /// Like [`RemoteNames::sync`] for the `touched` records only (the rest are as the last sync left
    /// them); the first call, and one after a failed write, syncs everything.
    pub fn update(
        &mut self,
        state_dir: &Path,
        networks: &[NetworkFacts],
        table: &RecordTable,
        me: IpAddr,
        is_up: impl Fn(IpAddr) -> bool,
        touched: &BTreeSet<RecordKey>,
    ) -> BTreeSet<String> {
        let Some(written) = self.written.as_mut() else {
            return self.sync(state_dir, networks, table, me, is_up);
        };
        let mut changed = BTreeSet::new();
        for key in touched {
            let RecordKey::Endpoint { host, network, ip } = key else {
                continue;
            };
            let Some(facts) = networks.iter().find(|f| &f.network == network) else {
                continue;
            };
            let want = table
                .get(key)
                .and_then(|v| wanted_one(state_dir, facts, key, v, me, &is_up));
            match want {
                Some((path, record)) if written.get(&path) != Some(&record) => {
                    if let Err(e) = state_file::write_json(&path, &record) {
                        tracing::warn!(error = %e, "could not write a remote name record");
                        self.written = None;
                        return changed;
                    }
                    changed.insert(network.clone());
                    self.with_file.insert(key.clone());
                    written.insert(path, record);
                }
                Some(_) => {}
                None if self.with_file.remove(key) => {
                    let (_, path) = file_of(state_dir, network, *host, *ip);
                    if written.remove(&path).is_some() && std::fs::remove_file(&path).is_ok() {
                        changed.insert(network.clone());
                    }
                }
                None => {}
            }
        }
        changed
    }
}

/// Every remote-name file as the disk has it (an unreadable one is removed, and written again if wanted).
fn on_disk(state_dir: &Path) -> BTreeMap<PathBuf, AttachmentRecord> {
    let mut have = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(root(state_dir)) else {
        return have;
    };
    for dir in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for path in files.flatten().map(|f| f.path()) {
            match state_file::read_json::<AttachmentRecord>(&path) {
                Ok(Some(record)) => {
                    have.insert(path, record);
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    have
}

/// The remote records, for the daemon's snapshot.
pub fn load(state_dir: &Path) -> Vec<AttachmentRecord> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root(state_dir)) else {
        return out;
    };
    for dir in dirs.flatten() {
        match state_file::list_json::<AttachmentRecord>(&dir.path()) {
            Ok(records) => out.extend(records),
            Err(e) => tracing::warn!(error = %e, "skipping remote name records"),
        }
    }
    out
}
