//! The replicated state: endpoint records (a container address on a network: its MAC and VTEP) and block
//! claims, each owned by the host that wrote it. A record carries a version; a higher version replaces a
//! lower one, and a deletion is a tombstone (no value) with a higher version, so a delete that meets an
//! older copy of the record wins wherever the two meet. Only the owner writes its records; versions are
//! wall-clock milliseconds bumped past anything seen, so a restarted host still writes newer versions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::ipsec::epoch::Schedule;
use crate::link::MacAddr;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "WireKey", into = "WireKey")]
pub enum RecordKey {
    /// One container address (IPv4 or IPv6) of `network` on `host`.
    Endpoint {
        host: IpAddr,
        network: String,
        ip: IpAddr,
    },
    /// `host` hands out the addresses of `block` (IPv4 or IPv6) of `network`.
    Claim {
        host: IpAddr,
        network: String,
        block: IpNetwork,
    },
    /// A service `host` created on `network` (it exists on every host; `host` owns its record).
    Service {
        host: IpAddr,
        network: String,
        name: String,
    },
    /// The ESP generations of the host pair from VTEP `from` (on `host`) to VTEP `to` on VXLAN `port`
    /// (docs/encryption.md, "Early rekey"). Belongs to no network.
    Generation {
        host: IpAddr,
        from: IpAddr,
        to: IpAddr,
        port: u16,
    },
    /// `host`'s copy of the cluster's key rotation schedule (docs/encryption.md). Belongs to no network.
    Rotation { host: IpAddr },
    /// `host`'s routing-mesh counters of service `name` on `network` (every host writes its own).
    MeshCounts {
        host: IpAddr,
        network: String,
        name: String,
    },
}

impl RecordKey {
    pub fn host(&self) -> IpAddr {
        match self {
            RecordKey::Endpoint { host, .. }
            | RecordKey::Claim { host, .. }
            | RecordKey::Service { host, .. }
            | RecordKey::Generation { host, .. }
            | RecordKey::Rotation { host }
            | RecordKey::MeshCounts { host, .. } => *host,
        }
    }

    pub fn network(&self) -> &str {
        match self {
            RecordKey::Endpoint { network, .. }
            | RecordKey::Claim { network, .. }
            | RecordKey::Service { network, .. }
            | RecordKey::MeshCounts { network, .. } => network,
            RecordKey::Generation { .. } | RecordKey::Rotation { .. } => "",
        }
    }
}

/// A [`RecordKey`] as it travels in gossip (postcard, where a variant is its index and an `Ipv4Addr` four
/// bytes): the variants and fields of the IPv4-only releases unchanged, so IPv4 records read the same
/// in both directions; an IPv6 endpoint is a variant of its own, after them, and so are the kinds newer than
/// those releases. A block is text either way.
#[derive(Serialize, Deserialize)]
enum WireKey {
    Endpoint {
        host: IpAddr,
        network: String,
        ip: Ipv4Addr,
    },
    Claim {
        host: IpAddr,
        network: String,
        block: IpNetwork,
    },
    Service {
        host: IpAddr,
        network: String,
        name: String,
    },
    Endpoint6 {
        host: IpAddr,
        network: String,
        ip: Ipv6Addr,
    },
    Generation {
        host: IpAddr,
        from: IpAddr,
        to: IpAddr,
        port: u16,
    },
    Rotation {
        host: IpAddr,
    },
    MeshCounts {
        host: IpAddr,
        network: String,
        name: String,
    },
}

impl From<WireKey> for RecordKey {
    fn from(key: WireKey) -> RecordKey {
        match key {
            WireKey::Endpoint { host, network, ip } => RecordKey::Endpoint {
                host,
                network,
                ip: IpAddr::V4(ip),
            },
            WireKey::Endpoint6 { host, network, ip } => RecordKey::Endpoint {
                host,
                network,
                ip: IpAddr::V6(ip),
            },
            WireKey::Claim {
                host,
                network,
                block,
            } => RecordKey::Claim {
                host,
                network,
                block,
            },
            WireKey::Service {
                host,
                network,
                name,
            } => RecordKey::Service {
                host,
                network,
                name,
            },
            WireKey::Generation {
                host,
                from,
                to,
                port,
            } => RecordKey::Generation {
                host,
                from,
                to,
                port,
            },
            WireKey::Rotation { host } => RecordKey::Rotation { host },
            WireKey::MeshCounts {
                host,
                network,
                name,
            } => RecordKey::MeshCounts {
                host,
                network,
                name,
            },
        }
    }
}

impl From<RecordKey> for WireKey {
    fn from(key: RecordKey) -> WireKey {
        match key {
            RecordKey::Endpoint {
                host,
                network,
                ip: IpAddr::V4(ip),
            } => WireKey::Endpoint { host, network, ip },
            RecordKey::Endpoint {
                host,
                network,
                ip: IpAddr::V6(ip),
            } => WireKey::Endpoint6 { host, network, ip },
            RecordKey::Claim {
                host,
                network,
                block,
            } => WireKey::Claim {
                host,
                network,
                block,
            },
            RecordKey::Service {
                host,
                network,
                name,
            } => WireKey::Service {
                host,
                network,
                name,
            },
            RecordKey::Generation {
                host,
                from,
                to,
                port,
            } => WireKey::Generation {
                host,
                from,
                to,
                port,
            },
            RecordKey::Rotation { host } => WireKey::Rotation { host },
            RecordKey::MeshCounts {
                host,
                network,
                name,
            } => WireKey::MeshCounts {
                host,
                network,
                name,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordValue {
    Endpoint {
        vni: u32,
        mac: [u8; 6],
        vtep: IpAddr,
        /// The container's DNS names on the network (name first, then aliases); empty without DNS.
        names: Vec<String>,
        /// The services this host balances the container in as a backend (healthy, or without checks;
        /// not draining).
        healthy_for: Vec<String>,
    },
    Claim {
        claimed_at_ms: u64,
        /// Agreed by every live member (a majority of the configured hosts up); otherwise taken while
        /// tetherd could not ask. A confirmed claim outranks an unconfirmed one in a conflict.
        confirmed: bool,
    },
    /// The service's definition, the service file's JSON (`state::service::ServiceSpec`, without the
    /// origin, which is the record's host).
    Service {
        spec: String,
    },
    /// `send`: the generation `from` sends to `to` with; `ack`: the generation of `to`'s sending that
    /// `from` holds receive states around (so `to` may move one on). `None`: not known yet.
    Generation {
        send: Option<u64>,
        ack: Option<u64>,
    },
    Rotation(Schedule),
    /// `state::mesh::ServiceCounts` as JSON.
    MeshCounts {
        counts: String,
    },
}

impl RecordValue {
    pub fn endpoint(vni: u32, mac: MacAddr, vtep: IpAddr, names: Vec<String>) -> RecordValue {
        RecordValue::Endpoint {
            vni,
            mac: mac.octets(),
            vtep,
            names,
            healthy_for: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: RecordKey,
    pub version: u64,
    /// `None`: deleted (a tombstone).
    pub value: Option<RecordValue>,
}

/// A stored record and when it was last changed here (for dropping old tombstones).
#[derive(Debug, Clone)]
struct Entry {
    version: u64,
    value: Option<RecordValue>,
    changed_ms: u64,
}

/// Every record this host knows, its own included.
#[derive(Debug, Default)]
pub struct RecordTable {
    entries: BTreeMap<RecordKey, Entry>,
    /// Live endpoint records, kept as entries change: how much of the cluster a host has, without a walk
    /// of the table (the cluster-store bench asks every plane ten times a second).
    live_endpoints: usize,
    /// The highest version this host has written or seen for its own records.
    clock: u64,
    /// Keys changed since the plane last took them: it updates what it derives from the table (kernel
    /// entries, remote names) per changed key instead of from the whole table.
    touched: BTreeSet<RecordKey>,
}

/// The highest version any host accepts or writes. Versions are wall-clock milliseconds bumped by one
/// per write, so an honest one stays near 2^41 for millennia; one above this comes from a corrupt record
/// or a forger holding the key. Every host refuses such a record the same way, whatever its own state,
/// so the cluster stays consistent (a record refused by one is refused by all). The ceiling is half the
/// range so the owner of a record at the ceiling still has a version to answer with: it answers with a
/// tombstone at the ceiling, and at equal versions a tombstone beats a live copy (see [`replaces`]), so
/// the forged live copy dies everywhere instead of living forever. A host whose clock reached the
/// ceiling keeps writing at it: changes then lose ties, but nothing wraps to make an old copy win.
pub const MAX_VERSION: u64 = u64::MAX / 2;

/// Whether `incoming` replaces what we hold: a higher version; at the same version a tombstone beats a
/// live copy (deletions win ties), and of two live copies the one whose encoding sorts higher wins. An
/// owner never writes two values at one version, but a forged or corrupt record can: without a rule
/// that is the same on every host, hosts would keep whichever copy reached them first.
fn replaces(incoming: &Record, held: &Entry) -> bool {
    if incoming.version != held.version {
        return incoming.version > held.version;
    }
    match (&incoming.value, &held.value) {
        (None, Some(_)) => true,
        (Some(new), Some(old)) => postcard::to_allocvec(new).ok() > postcard::to_allocvec(old).ok(),
        _ => false,
    }
}

/// What applying remote records did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Records that replaced what we had.
    pub changed: usize,
    /// Records of our own that a peer holds but we no longer have: answered with tombstones.
    pub disowned: Vec<Record>,
    /// Records refused for a version above [`MAX_VERSION`].
    pub rejected: usize,
}

impl RecordTable {
    pub fn new() -> RecordTable {
        RecordTable::default()
    }

    fn next_version(&mut self, now_ms: u64) -> u64 {
        // Saturates at the ceiling: a version never wraps back below the copies it must replace.
        self.clock = self.clock.saturating_add(1).max(now_ms).min(MAX_VERSION);
        self.clock
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Live endpoint records, every host's (this host's own included).
    pub fn live_endpoints(&self) -> usize {
        self.live_endpoints
    }

    fn insert(&mut self, key: RecordKey, entry: Entry) {
        let endpoint = matches!(key, RecordKey::Endpoint { .. });
        let live = entry.value.is_some();
        let was_live = self
            .entries
            .insert(key, entry)
            .is_some_and(|old| old.value.is_some());
        if endpoint {
            self.live_endpoints = self.live_endpoints + usize::from(live) - usize::from(was_live);
        }
    }

    /// Marks every endpoint record of `host` changed (its liveness changed, so its entries enter or leave
    /// what the plane derives from the table): a range of the sorted table, not a walk of it.
    pub fn touch_endpoints_of(&mut self, host: IpAddr) {
        let from = RecordKey::Endpoint {
            host,
            network: String::new(),
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let keys: Vec<RecordKey> = self
            .entries
            .range(from..)
            .map(|(k, _)| k)
            .take_while(|k| matches!(k, RecordKey::Endpoint { host: h, .. } if *h == host))
            .cloned()
            .collect();
        self.touched.extend(keys);
    }

    /// The keys changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<RecordKey> {
        std::mem::take(&mut self.touched)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Live records (tombstones left out).
    pub fn live(&self) -> impl Iterator<Item = (&RecordKey, &RecordValue)> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
    }

    /// Every record, tombstones included, as sent in a full sync.
    pub fn all(&self) -> Vec<Record> {
        self.entries
            .iter()
            .map(|(key, e)| Record {
                key: key.clone(),
                version: e.version,
                value: e.value.clone(),
            })
            .collect()
    }

    /// Whether `key` is known as deleted (a tombstone), as opposed to live or never seen.
    pub fn is_deleted(&self, key: &RecordKey) -> bool {
        self.entries.get(key).is_some_and(|e| e.value.is_none())
    }

    pub fn get(&self, key: &RecordKey) -> Option<&RecordValue> {
        self.entries.get(key).and_then(|e| e.value.as_ref())
    }

    /// Makes this host's own records equal to `wanted`: new or changed ones get a new version, missing
    /// ones become tombstones. Returns the records that changed, to push to peers.
    pub fn set_own(
        &mut self,
        me: IpAddr,
        wanted: &BTreeMap<RecordKey, RecordValue>,
        now_ms: u64,
    ) -> Vec<Record> {
        let mut changed = Vec::new();
        for (key, value) in wanted {
            if self.get(key) == Some(value) {
                continue;
            }
            let version = self.next_version(now_ms);
            self.insert(
                key.clone(),
                Entry {
                    version,
                    value: Some(value.clone()),
                    changed_ms: now_ms,
                },
            );
            self.touched.insert(key.clone());
            changed.push(Record {
                key: key.clone(),
                version,
                value: Some(value.clone()),
            });
        }
        let gone: Vec<RecordKey> = self
            .entries
            .iter()
            .filter(|(k, e)| k.host() == me && e.value.is_some() && !wanted.contains_key(k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.touched.insert(key.clone());
            let version = self.next_version(now_ms);
            self.insert(
                key.clone(),
                Entry {
                    version,
                    value: None,
                    changed_ms: now_ms,
                },
            );
            changed.push(Record {
                key,
                version,
                value: None,
            });
        }
        changed
    }

    /// Applies records from a peer. Our own records are never taken from others: a live copy of one we
    /// do not have (left from before a restart) is answered with a newer tombstone.
    pub fn merge(&mut self, me: IpAddr, records: Vec<Record>, now_ms: u64) -> MergeOutcome {
        let mut outcome = MergeOutcome::default();
        for record in records {
            if record.version > MAX_VERSION {
                outcome.rejected += 1;
                continue;
            }
            if record.key.host() == me {
                self.clock = self.clock.max(record.version);
                let ours = self.entries.get(&record.key);
                let stale_live_copy = record.value.is_some()
                    && ours.is_none_or(|e| e.value.is_none() || e.version < record.version);
                if stale_live_copy {
                    self.touched.insert(record.key.clone());
                    let version = self.next_version(now_ms);
                    self.insert(
                        record.key.clone(),
                        Entry {
                            version,
                            value: None,
                            changed_ms: now_ms,
                        },
                    );
                    outcome.disowned.push(Record {
                        key: record.key,
                        version,
                        value: None,
                    });
                }
                continue;
            }
            let newer = self
                .entries
                .get(&record.key)
                .is_none_or(|e| replaces(&record, e));
            if newer {
                self.touched.insert(record.key.clone());
                self.insert(
                    record.key,
                    Entry {
                        version: record.version,
                        value: record.value,
                        changed_ms: now_ms,
                    },
                );
                outcome.changed += 1;
            }
        }
        outcome
    }

    /// Forgets every record of `host` (it has been gone longer than the grace period).
    pub fn drop_host(&mut self, host: IpAddr) -> usize {
        let before = self.entries.len();
        let touched = &mut self.touched;
        let live_endpoints = &mut self.live_endpoints;
        self.entries.retain(|k, e| {
            let keep = k.host() != host;
            if !keep {
                touched.insert(k.clone());
                if matches!(k, RecordKey::Endpoint { .. }) && e.value.is_some() {
                    *live_endpoints -= 1;
                }
            }
            keep
        });
        before - self.entries.len()
    }

    /// Drops tombstones older than `ttl_ms`: by then every peer has had many syncs to learn them.
    pub fn expire_tombstones(&mut self, now_ms: u64, ttl_ms: u64) {
        self.entries
            .retain(|_, e| e.value.is_some() || now_ms.saturating_sub(e.changed_ms) < ttl_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    fn endpoint(h: u8, last: u8) -> RecordKey {
        RecordKey::Endpoint {
            host: host(h),
            network: "ovl".into(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
        }
    }

    fn value(m: u8) -> RecordValue {
        RecordValue::endpoint(1, MacAddr::new([2, 0, 0, 0, 0, m]), host(1), Vec::new())
    }

    #[test]
    fn touching_a_hosts_endpoints_marks_exactly_its_endpoint_records_of_every_network_and_family() {
        let me = host(9);
        let mut table = RecordTable::new();
        let v6 = |h: u8| RecordKey::Endpoint {
            host: host(h),
            network: "a6".into(),
            ip: "fd00::5".parse().unwrap(),
        };
        let claim = |h: u8| RecordKey::Claim {
            host: host(h),
            network: "ovl".into(),
            block: "10.0.0.0/26".parse().unwrap(),
        };
        let mut records = Vec::new();
        for h in [1, 2, 3] {
            for key in [endpoint(h, 2), endpoint(h, 3), v6(h)] {
                records.push(Record {
                    key,
                    version: 1,
                    value: Some(value(h)),
                });
            }
            records.push(Record {
                key: claim(h),
                version: 1,
                value: Some(RecordValue::Claim {
                    claimed_at_ms: 1,
                    confirmed: true,
                }),
            });
        }
        let _ = table.merge(me, records, 10);
        table.take_touched();
        table.touch_endpoints_of(host(2));
        assert_eq!(
            table.take_touched(),
            BTreeSet::from([endpoint(2, 2), endpoint(2, 3), v6(2)])
        );
        // A host without records touches nothing.
        table.touch_endpoints_of(host(7));
        assert!(table.take_touched().is_empty());
    }

    /// Issue 21: a record for our own name at `u64::MAX` overflowed `next_version` (a panic in debug,
    /// a wrap in release).
    #[test]
    fn versions_at_the_top_of_the_range_never_wrap_and_stay_consistent() {
        let me = host(1);
        let mut owner = RecordTable::new();
        owner.set_own(me, &BTreeMap::from([(endpoint(1, 2), value(2))]), 100);
        let forged = |version| Record {
            key: endpoint(1, 9),
            version,
            value: Some(value(9)),
        };
        // Above the ceiling: refused, the clock untouched.
        let out = owner.merge(me, vec![forged(u64::MAX)], 200);
        assert_eq!((out.rejected, out.disowned.len()), (1, 0));
        let mut peer = RecordTable::new();
        assert_eq!(peer.merge(me, vec![forged(u64::MAX)], 200).rejected, 1);
        assert!(peer.is_empty(), "every host refuses it alike");
        // At the ceiling: the owner answers with a tombstone at the ceiling, which beats the live copy.
        let out = owner.merge(me, vec![forged(MAX_VERSION)], 200);
        assert_eq!(out.disowned.len(), 1);
        let tombstone = out.disowned[0].clone();
        assert_eq!((tombstone.version, &tombstone.value), (MAX_VERSION, &None));
        let mut early = RecordTable::new();
        early.merge(host(3), vec![forged(MAX_VERSION)], 200);
        early.merge(host(3), vec![tombstone.clone()], 200);
        let mut late = RecordTable::new();
        late.merge(host(3), vec![tombstone.clone()], 200);
        late.merge(host(3), vec![forged(MAX_VERSION)], 200);
        assert_eq!(early.all(), late.all(), "order does not matter");
        assert_eq!(early.live().count(), 0);
        // The owner keeps writing, at the ceiling and never past it.
        let changed = owner.set_own(me, &BTreeMap::from([(endpoint(1, 3), value(3))]), 300);
        assert!(changed.iter().all(|r| r.version == MAX_VERSION));
    }

    #[test]
    fn two_live_copies_at_one_version_end_the_same_in_any_order() {
        let copy = |m| Record {
            key: endpoint(2, 5),
            version: 7,
            value: Some(value(m)),
        };
        let mut one = RecordTable::new();
        one.merge(host(1), vec![copy(1), copy(2)], 0);
        let mut other = RecordTable::new();
        other.merge(host(1), vec![copy(2), copy(1)], 0);
        assert_eq!(one.all(), other.all());
    }

    #[test]
    fn own_changes_get_versions_and_deletions_become_tombstones() {
        let mut t = RecordTable::new();
        let mut wanted = BTreeMap::from([(endpoint(1, 2), value(2))]);
        let first = t.set_own(host(1), &wanted, 100);
        assert_eq!(first.len(), 1);
        assert!(
            t.set_own(host(1), &wanted, 101).is_empty(),
            "nothing changed"
        );
        wanted.clear();
        let gone = t.set_own(host(1), &wanted, 100);
        assert_eq!(gone[0].value, None);
        assert!(
            gone[0].version > first[0].version,
            "versions never go back, even if the clock does"
        );
        assert_eq!(t.live().count(), 0);
    }

    #[test]
    fn newer_versions_win_in_any_order_and_tombstones_beat_older_copies() {
        let live = Record {
            key: endpoint(2, 3),
            version: 5,
            value: Some(value(3)),
        };
        let dead = Record {
            key: endpoint(2, 3),
            version: 6,
            value: None,
        };
        let mut a = RecordTable::new();
        a.merge(host(1), vec![live.clone(), dead.clone()], 0);
        let mut b = RecordTable::new();
        b.merge(host(1), vec![dead, live], 0);
        assert_eq!(a.live().count(), 0);
        assert_eq!(b.live().count(), 0);
        assert_eq!(a.all(), b.all());
    }

    #[test]
    fn a_restarted_host_disowns_live_copies_of_records_it_no_longer_has() {
        let mut t = RecordTable::new();
        let old = Record {
            key: endpoint(1, 9),
            version: 50,
            value: Some(value(9)),
        };
        let outcome = t.merge(host(1), vec![old], 10);
        assert_eq!(outcome.disowned.len(), 1);
        assert!(outcome.disowned[0].version > 50);
        assert_eq!(outcome.disowned[0].value, None);
        assert_eq!(t.live().count(), 0);
    }

    #[test]
    fn departed_hosts_and_old_tombstones_are_forgotten() {
        let mut t = RecordTable::new();
        t.merge(
            host(1),
            vec![
                Record {
                    key: endpoint(2, 3),
                    version: 5,
                    value: Some(value(3)),
                },
                Record {
                    key: endpoint(3, 4),
                    version: 5,
                    value: None,
                },
            ],
            1000,
        );
        assert_eq!(t.drop_host(host(2)), 1);
        t.expire_tombstones(1500, 1000);
        assert_eq!(t.len(), 1);
        t.expire_tombstones(2500, 1000);
        assert!(t.is_empty());
    }

    #[test]
    fn the_live_endpoint_count_follows_puts_tombstones_own_records_and_departed_hosts() {
        let mut t = RecordTable::new();
        let rec = |key, version, value| Record {
            key,
            version,
            value,
        };
        t.merge(
            host(1),
            vec![
                rec(endpoint(2, 3), 5, Some(value(3))),
                rec(endpoint(2, 4), 5, Some(value(4))),
                rec(endpoint(3, 5), 5, None),
            ],
            1000,
        );
        assert_eq!(t.live_endpoints(), 2);
        // A newer copy of a live one: still one; a tombstone over a live one: one less.
        t.merge(host(1), vec![rec(endpoint(2, 3), 6, Some(value(9)))], 1000);
        t.merge(host(1), vec![rec(endpoint(2, 4), 6, None)], 1000);
        assert_eq!(t.live_endpoints(), 1);
        // Own records count, and leave with `set_own`.
        let own = BTreeMap::from([(endpoint(1, 7), value(7))]);
        t.set_own(host(1), &own, 2000);
        assert_eq!(t.live_endpoints(), 2);
        t.set_own(host(1), &BTreeMap::new(), 3000);
        assert_eq!(t.live_endpoints(), 1);
        assert_eq!(t.drop_host(host(2)), 2);
        assert_eq!(t.live_endpoints(), 0);
        assert_eq!(
            t.live_endpoints(),
            t.live()
                .filter(|(k, _)| matches!(k, RecordKey::Endpoint { .. }))
                .count()
        );
    }

    /// The key as the IPv4-only releases declared it.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum KeyBeforeIpv6 {
        Endpoint {
            host: IpAddr,
            network: String,
            ip: Ipv4Addr,
        },
        Claim {
            host: IpAddr,
            network: String,
            block: ipnetwork::Ipv4Network,
        },
        Service {
            host: IpAddr,
            network: String,
            name: String,
        },
    }

    #[test]
    fn ipv4_keys_travel_as_before_ipv6_and_ipv6_ones_round_trip() {
        let old = KeyBeforeIpv6::Endpoint {
            host: host(1),
            network: "ovl".into(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
        };
        let old_bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(postcard::to_allocvec(&endpoint(1, 5)).unwrap(), old_bytes);
        assert_eq!(
            postcard::from_bytes::<RecordKey>(&old_bytes).unwrap(),
            endpoint(1, 5)
        );
        let old_claim = KeyBeforeIpv6::Claim {
            host: host(1),
            network: "ovl".into(),
            block: "10.0.0.64/26".parse().unwrap(),
        };
        let claim = RecordKey::Claim {
            host: host(1),
            network: "ovl".into(),
            block: "10.0.0.64/26".parse().unwrap(),
        };
        assert_eq!(
            postcard::to_allocvec(&claim).unwrap(),
            postcard::to_allocvec(&old_claim).unwrap()
        );
        for key in [
            RecordKey::Endpoint {
                host: host(1),
                network: "ovl".into(),
                ip: "fd00::5".parse().unwrap(),
            },
            RecordKey::Claim {
                host: host(1),
                network: "ovl".into(),
                block: "fd00::40/122".parse().unwrap(),
            },
        ] {
            let bytes = postcard::to_allocvec(&key).unwrap();
            assert_eq!(postcard::from_bytes::<RecordKey>(&bytes).unwrap(), key);
        }
    }
}
