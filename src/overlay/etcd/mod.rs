//! The etcd store: the cluster's state in an existing etcd (v3 API as etcd 3.4 serves it: KV, Txn,
//! Watch, Lease), under one prefix (`layout`). Membership is one liveness key per host on a short lease;
//! a block belongs to the host whose `version == 0` transaction created its key, and stays its own
//! through etcd outages and lease expiries (no lease on it); endpoint records are per host. The etcd
//! client runs on its own thread (`worker`); this side, on the control plane's thread, turns the
//! worker's mirror into the record table and liveness the plane reads.

mod config;
mod layout;
mod worker;

pub use config::{EtcdConfig, EtcdTls};
pub use layout::Layout;
pub use worker::LEASE_NOT_FOUND;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::agreement::{self, ClaimRef};
use super::error::OverlayError;
use super::local::{claim_records, yield_block};
use super::records::{Record, RecordKey, RecordTable, RecordValue};
use super::store::{Changes, ClusterStore, Member, StoreKind, StoreStatus};
use crate::state::overlay::{now_ms, ClaimState};
use layout::Key;
use worker::{Command, Event, Stored, WatchCounts, Worker};

pub struct EtcdStore {
    me: IpAddr,
    layout: Layout,
    state_dir: PathBuf,
    commands: UnboundedSender<Command>,
    events: Receiver<Event>,
    wake: UnixDatagram,
    table: RecordTable,
    /// The claim each block key stands for (its holder is in the value, and a delete event carries only
    /// the key). Other records are named by their key alone, so no second copy of them is kept.
    blocks: BTreeMap<String, RecordKey>,
    up: BTreeSet<IpAddr>,
    /// Hosts whose liveness key went within `hold` of this host reaching etcd again, and when they count
    /// as down if it does not come back: see [`EtcdStore::host_gone`]. Still in `up` meanwhile.
    leaving: BTreeMap<IpAddr, Instant>,
    /// When this host's worker last reached etcd again after losing it (`Event::Reachable`); not its
    /// first contact, which is no return from an outage.
    regained_at: Option<Instant>,
    reached_before: bool,
    /// This host's lease TTL: what another host needs to grant its lease again once etcd answers.
    hold: Duration,
    /// Hosts seen in the store (liveness, blocks or records), for `members`.
    seen: BTreeSet<IpAddr>,
    published: Option<BTreeMap<String, Vec<u8>>>,
    proposed: Vec<ClaimRef>,
    reachable: bool,
    revision: i64,
    last_sync_ms: u64,
    next_expiry: Instant,
    watch_counts: Arc<WatchCounts>,
}

/// The store's ends of its worker's channels.
struct WorkerEnds {
    commands: UnboundedSender<Command>,
    events: Receiver<Event>,
    wake: UnixDatagram,
}

impl EtcdStore {
    /// Starts the worker thread; it connects in the background (etcd down at start only delays). Other
    /// hosts' blocks are read at least every `view_every` (they are not watched).
    pub fn start(
        cfg: EtcdConfig,
        me: IpAddr,
        grace: Duration,
        view_every: Duration,
        state_dir: PathBuf,
    ) -> Result<EtcdStore, OverlayError> {
        let (wake, worker_wake) =
            UnixDatagram::pair().map_err(|source| OverlayError::Thread { source })?;
        wake.set_nonblocking(true)
            .map_err(|source| OverlayError::Thread { source })?;
        worker_wake
            .set_nonblocking(true)
            .map_err(|source| OverlayError::Thread { source })?;
        let (event_tx, events) = channel();
        let (commands, command_rx) = tokio::sync::mpsc::unbounded_channel();
        let layout = Layout::new(&cfg.prefix);
        let hold = cfg.lease_ttl;
        tracing::info!(endpoints = ?cfg.endpoints, prefix = %cfg.prefix, "etcd store starting");
        let watch_counts = Arc::new(WatchCounts::default());
        let worker = Worker::new(
            cfg,
            me,
            grace,
            view_every,
            watch_counts.clone(),
            event_tx,
            worker_wake,
            command_rx,
        );
        std::thread::Builder::new()
            .name("overlay-etcd".into())
            .spawn(move || worker.run())
            .map_err(|source| OverlayError::Thread { source })?;
        let ends = WorkerEnds {
            commands,
            events,
            wake,
        };
        Ok(EtcdStore::knowing_nothing(
            me,
            layout,
            state_dir,
            ends,
            hold,
            watch_counts,
        ))
    }

    /// A store that has heard nothing from its worker yet.
    fn knowing_nothing(
        me: IpAddr,
        layout: Layout,
        state_dir: PathBuf,
        ends: WorkerEnds,
        hold: Duration,
        watch_counts: Arc<WatchCounts>,
    ) -> EtcdStore {
        EtcdStore {
            me,
            layout,
            state_dir,
            commands: ends.commands,
            events: ends.events,
            wake: ends.wake,
            table: RecordTable::new(),
            blocks: BTreeMap::new(),
            up: BTreeSet::new(),
            leaving: BTreeMap::new(),
            regained_at: None,
            reached_before: false,
            hold,
            seen: BTreeSet::new(),
            published: None,
            proposed: Vec::new(),
            reachable: false,
            revision: 0,
            last_sync_ms: 0,
            next_expiry: Instant::now(),
            watch_counts,
        }
    }

    /// Applies one stored key; returns what changed.
    fn put(&mut self, key: String, stored: Stored) -> Changes {
        let parsed = self.layout.parse(&key);
        self.put_parsed(key, parsed, stored)
    }

    /// [`EtcdStore::put`] of a key already parsed.
    fn put_parsed(&mut self, key: String, parsed: Option<Key>, stored: Stored) -> Changes {
        self.revision = self.revision.max(stored.mod_revision);
        match parsed {
            Some(Key::Host(host)) => {
                self.seen.insert(host);
                self.leaving.remove(&host);
                match self.up.insert(host) {
                    true => self.liveness_of(host),
                    false => Changes::default(),
                }
            }
            Some(parsed) => {
                let Some((rk, value)) = self.layout.decode_parsed(parsed, &stored.value) else {
                    return Changes::default();
                };
                self.seen.insert(rk.host());
                // This host's own records come from its state directory, never back from the store.
                if rk.host() == self.me {
                    return Changes::default();
                }
                let mut changes = Changes::default();
                if matches!(rk, RecordKey::Claim { .. }) {
                    if let Some(old) = self.blocks.insert(key, rk.clone()) {
                        if old != rk {
                            changes.merge(self.tombstone(old, stored.mod_revision));
                        }
                    }
                }
                let touches = Changes::touched_by(&rk);
                let merged = self.table.merge(
                    self.me,
                    vec![Record {
                        key: rk,
                        version: stored.mod_revision as u64,
                        value: Some(value),
                    }],
                    now_ms(),
                );
                if merged.changed > 0 {
                    changes.merge(touches);
                }
                changes
            }
            None => Changes::default(),
        }
    }

    /// `host`'s liveness key went. Right after an outage (this host reached etcd again less than a lease
    /// TTL ago) that says nothing about `host`: etcd expired every lease it could not renew meanwhile, at
    /// once, and each host grants its lease again as soon as it reaches etcd. Taking them all for down
    /// would drop every other host's FDB and neighbour entries and names until then, so such a host is
    /// held up for a lease TTL and goes down only if its key does not come back (`step`). At other
    /// times a host whose key goes is down at once.
    fn host_gone(&mut self, host: IpAddr) -> Changes {
        if !self.up.contains(&host) {
            return Changes::default();
        }
        let now = Instant::now();
        if self
            .regained_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.hold)
        {
            self.leaving.entry(host).or_insert(now + self.hold);
            return Changes::default();
        }
        self.up.remove(&host);
        self.liveness_of(host)
    }

    /// Hosts held up after an outage whose liveness key did not come back in time: down now.
    fn expire_leaving(&mut self, now: Instant) -> Changes {
        let due: Vec<IpAddr> = self
            .leaving
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(h, _)| *h)
            .collect();
        let mut changes = Changes::default();
        for host in due {
            self.leaving.remove(&host);
            if self.up.remove(&host) {
                changes.merge(self.liveness_of(host));
            }
        }
        changes
    }

    /// `host` came up or went down: only its records count again, not every host's.
    fn liveness_of(&mut self, host: IpAddr) -> Changes {
        self.table.touch_endpoints_of(host);
        Changes::liveness_touched()
    }

    fn tombstone(&mut self, key: RecordKey, revision: i64) -> Changes {
        let touches = Changes::touched_by(&key);
        let merged = self.table.merge(
            self.me,
            vec![Record {
                key,
                version: revision as u64,
                value: None,
            }],
            now_ms(),
        );
        if merged.changed > 0 {
            touches
        } else {
            Changes::default()
        }
    }

    fn delete(&mut self, key: &str, revision: i64) -> Changes {
        self.revision = self.revision.max(revision);
        let rk = match self.layout.parse(key) {
            Some(Key::Host(host)) => return self.host_gone(host),
            Some(Key::Block { .. }) => self.blocks.remove(key),
            Some(k) => k.record_key().filter(|rk| rk.host() != self.me),
            None => None,
        };
        match rk {
            Some(rk) => self.tombstone(rk, revision),
            None => Changes::default(),
        }
    }

    /// A full list: keys the plane had and the list lacks are deleted, the rest applied.
    fn snapshot(&mut self, revision: i64, keys: BTreeMap<String, Stored>) -> Changes {
        let mut changes = Changes::default();
        // Keys the table has and the list lacks: blocks by their key, other records by their own key.
        let listed: BTreeSet<RecordKey> = keys
            .keys()
            .filter_map(|k| self.layout.parse(k)?.record_key())
            .collect();
        let gone_records: Vec<RecordKey> = self
            .table
            .live()
            .map(|(k, _)| k)
            .filter(|k| {
                k.host() != self.me && !matches!(k, RecordKey::Claim { .. }) && !listed.contains(*k)
            })
            .cloned()
            .collect();
        for rk in gone_records {
            changes.merge(self.tombstone(rk, revision));
        }
        let gone: Vec<String> = self
            .blocks
            .keys()
            .filter(|k| !keys.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            changes.merge(self.delete(&key, revision));
        }
        let live: BTreeSet<IpAddr> = keys
            .keys()
            .filter_map(|k| match self.layout.parse(k) {
                Some(Key::Host(h)) => Some(h),
                _ => None,
            })
            .collect();
        let gone: Vec<IpAddr> = self.up.difference(&live).copied().collect();
        for host in gone {
            changes.merge(self.host_gone(host));
        }
        // Hosts listed come up (and stop leaving) by their keys' puts below.
        for (key, stored) in keys {
            changes.merge(self.put(key, stored));
        }
        self.revision = self.revision.max(revision);
        changes
    }

    /// A read of the blocks under `scope`: the view's blocks there become the read's (others' blocks
    /// missing from it are gone; this host's own come from its claims file, not from here).
    fn blocks_read(
        &mut self,
        scope: &str,
        revision: i64,
        keys: BTreeMap<String, Stored>,
    ) -> Changes {
        let mut changes = Changes::default();
        let gone: Vec<String> = self
            .blocks
            .range(scope.to_string()..)
            .take_while(|(k, _)| k.starts_with(scope))
            .filter(|(k, _)| !keys.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            changes.merge(self.delete(&key, revision));
        }
        for (key, stored) in keys {
            changes.merge(self.put(key, stored));
        }
        changes
    }

    fn apply(&mut self, event: Event) -> Changes {
        match event {
            Event::Blocks {
                scope,
                revision,
                keys,
            } => self.blocks_read(&scope, revision, keys),
            Event::Snapshot { revision, keys } => {
                self.last_sync_ms = now_ms();
                self.snapshot(revision, keys)
            }
            Event::Put {
                key,
                parsed,
                stored,
            } => {
                self.last_sync_ms = now_ms();
                self.put_parsed(key, parsed, stored)
            }
            Event::Delete { key, revision } => {
                self.last_sync_ms = now_ms();
                self.delete(&key, revision)
            }
            Event::Confirmed(claim) => Changes {
                local: agreement::confirm(&self.state_dir, &claim),
                ..Changes::default()
            },
            Event::Taken { claim, holder } => {
                tracing::info!(network = %claim.network, block = %claim.block, %holder,
                    "the block is another host's in etcd; picking another");
                // A pending claim simply goes (its ADD picks another block); one in use is settled.
                let changed = agreement::give_up(&self.state_dir, &claim)
                    || yield_block(&self.state_dir, &claim.network, claim.block, holder);
                Changes {
                    local: changed,
                    ..Changes::default()
                }
            }
            Event::Reachable(up) => {
                if up && !self.reachable && self.reached_before {
                    self.regained_at = Some(Instant::now());
                }
                self.reached_before |= up;
                self.reachable = up;
                if up {
                    self.last_sync_ms = now_ms();
                }
                Changes::default()
            }
        }
    }
}

impl ClusterStore for EtcdStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Etcd
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.wake.as_fd())
    }

    fn next_due(&self) -> Option<Instant> {
        let leaving = self.leaving.values().min().copied();
        Some(leaving.map_or(self.next_expiry, |at| at.min(self.next_expiry)))
    }

    fn step(&mut self) -> Changes {
        let mut buf = [0u8; 64];
        while self.wake.recv(&mut buf).is_ok() {}
        let mut changes = Changes::default();
        while let Ok(event) = self.events.try_recv() {
            changes.merge(self.apply(event));
        }
        changes.merge(self.expire_leaving(Instant::now()));
        if Instant::now() >= self.next_expiry {
            // Tombstones only bridge a delete and a re-put in the table; an hour is plenty.
            self.table.expire_tombstones(now_ms(), 3_600_000);
            self.next_expiry = Instant::now() + Duration::from_secs(60);
        }
        changes
    }

    fn publish(&mut self, own: &BTreeMap<RecordKey, RecordValue>) -> Changes {
        let mut own = own.clone();
        own.extend(claim_records(&self.state_dir, self.me));
        let changed = self.table.set_own(self.me, &own, now_ms());
        let wanted: BTreeMap<String, Vec<u8>> = own
            .iter()
            .filter_map(|(k, v)| self.layout.encode(k, v))
            .collect();
        if self.published.as_ref() != Some(&wanted) {
            self.published = Some(wanted.clone());
            let _ = self.commands.send(Command::Publish(wanted));
        }
        Changes {
            claims: !changed.is_empty(),
            ..Changes::default()
        }
    }

    fn propose(&mut self, claims: Vec<(ClaimRef, ClaimState)>) {
        let claims: Vec<ClaimRef> = claims.into_iter().map(|(c, _)| c).collect();
        if claims != self.proposed {
            self.proposed = claims.clone();
            let _ = self.commands.send(Command::Propose(claims));
        }
    }

    fn table(&self) -> &RecordTable {
        &self.table
    }

    fn take_touched(&mut self) -> BTreeSet<RecordKey> {
        self.table.take_touched()
    }

    fn is_up(&self, host: IpAddr) -> bool {
        self.up.contains(&host)
    }

    fn members(&self) -> Vec<Member> {
        self.seen
            .iter()
            .chain(self.up.iter())
            .filter(|h| **h != self.me)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|h| Member {
                host: *h,
                up: self.up.contains(h),
            })
            .collect()
    }

    fn refresh_blocks(&mut self) -> Changes {
        let (reply, answer) = channel();
        if self.commands.send(Command::ReadBlocks { reply }).is_err() {
            return Changes::default();
        }
        // The worker queues the read's event before it answers; etcd failing only leaves the view as is.
        let _ = answer.recv_timeout(Duration::from_secs(5));
        let mut changes = Changes::default();
        while let Ok(event) = self.events.try_recv() {
            changes.merge(self.apply(event));
        }
        changes
    }

    fn forget(&mut self, host: IpAddr) -> Result<usize, String> {
        let (reply, answer) = channel();
        self.commands
            .send(Command::Forget { host, reply })
            .map_err(|_| "the etcd store stopped".to_string())?;
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "etcd did not answer in time".to_string())?
    }

    fn claims_ahead(&self) -> bool {
        true
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            reachable: self.reachable,
            last_sync_ms: self.last_sync_ms,
            revision: Some(self.revision),
            watch_events: Some(self.watch_counts.get()),
            ..StoreStatus::default()
        }
    }

    fn leave(&mut self) {
        // Dropping the sender ends the worker, which revokes this host's lease.
        let (closed, _) = tokio::sync::mpsc::unbounded_channel();
        self.commands = closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store without a worker: events are applied by hand.
    fn store(me: IpAddr, hold: Duration) -> EtcdStore {
        let (commands, _) = tokio::sync::mpsc::unbounded_channel();
        let (_, events) = channel();
        let (wake, _) = UnixDatagram::pair().unwrap();
        let ends = WorkerEnds {
            commands,
            events,
            wake,
        };
        let mut store = EtcdStore::knowing_nothing(
            me,
            Layout::new("/tether"),
            PathBuf::from("/nonexistent"),
            ends,
            hold,
            Arc::new(WatchCounts::default()),
        );
        store.next_expiry = Instant::now() + Duration::from_secs(60);
        store
    }

    fn host_put(s: &mut EtcdStore, host: IpAddr, revision: i64) -> Changes {
        let key = s.layout.host(host);
        let stored = Stored {
            value: b"{}".to_vec(),
            mod_revision: revision,
            holder: None,
        };
        s.apply(Event::Put {
            parsed: s.layout.parse(&key),
            key,
            stored,
        })
    }

    fn host_delete(s: &mut EtcdStore, host: IpAddr, revision: i64) -> Changes {
        let key = s.layout.host(host);
        s.apply(Event::Delete { key, revision })
    }

    #[test]
    fn liveness_keys_etcd_expires_right_after_an_outage_keep_their_hosts_up_for_a_lease_ttl_and_others_go_at_once(
    ) {
        let hold = Duration::from_secs(30);
        let mut s = store("192.0.2.1".parse().unwrap(), hold);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
            "192.0.2.4".parse().unwrap(),
        );
        // The first contact is no return from an outage: a host whose key goes is down at once.
        let _ = s.apply(Event::Reachable(true));
        for (i, h) in [a, b, c].into_iter().enumerate() {
            let _ = host_put(&mut s, h, 10 + i as i64);
        }
        let gone = host_delete(&mut s, a, 20);
        assert!(!s.is_up(a) && gone.liveness_touched);
        // An outage: the worker lost etcd and reached it again; etcd expired every lease it could not
        // renew, and their deletes come now.
        let _ = s.apply(Event::Reachable(false));
        let _ = s.apply(Event::Reachable(true));
        let held = host_delete(&mut s, b, 30);
        let _ = host_delete(&mut s, c, 31);
        assert!(
            s.is_up(b) && s.is_up(c),
            "hosts taken for down by the outage"
        );
        assert_eq!(held, Changes::default(), "their entries were due to go");
        assert!(s.next_due().unwrap() <= Instant::now() + hold);
        // b grants its lease again: it stays up and nothing is due for it.
        assert_eq!(host_put(&mut s, b, 40), Changes::default());
        // c's key never comes back: down a lease TTL later, not before.
        assert_eq!(s.expire_leaving(Instant::now()), Changes::default());
        assert!(s.is_up(c));
        let down = s.expire_leaving(Instant::now() + hold + Duration::from_secs(1));
        assert!(down.liveness_touched && !s.is_up(c) && s.is_up(b));
        assert!(s.leaving.is_empty());
        // A list (after a compaction) missing a host right after the outage holds it the same way.
        let listed = BTreeMap::from([(
            s.layout.host(b),
            Stored {
                value: b"{}".to_vec(),
                mod_revision: 50,
                holder: None,
            },
        )]);
        let _ = host_put(&mut s, c, 45);
        let _ = s.apply(Event::Snapshot {
            revision: 50,
            keys: listed,
        });
        assert!(s.is_up(c) && s.leaving.contains_key(&c));
    }
}
