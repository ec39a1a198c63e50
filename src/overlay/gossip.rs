//! The embedded store (the default): SWIM membership among the hosts (seeded by static peers), records
//! spread with versions and tombstones, periodic push-pull full syncs, every datagram sealed with the
//! cluster's pre-shared key, and new address blocks agreed by the live members before use (`agreement`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, OwnedNotification, Timer};
use rand::seq::IndexedRandom;

use super::agreement::{self, ClaimRef, Proposals};
use super::config::PeerConfig;
use super::error::OverlayError;
use super::membership::{new_swim, PeerId, Swim};
use super::records::{Record, RecordKey, RecordTable, RecordValue};
use super::seal::{Sealer, KEY_LEN};
use super::store::{Changes, ClusterStore, Member, StoreKind, StoreStatus};
use super::wire::{self, Packet};
use crate::state::overlay::{now_ms, ClaimState};

#[derive(Debug)]
enum Due {
    Swim(Timer<PeerId>),
    Sync,
    Periodic,
}

pub struct GossipStore {
    cfg: PeerConfig,
    me: IpAddr,
    state_dir: PathBuf,
    udp: UdpSocket,
    sealer: Sealer,
    swim: Swim,
    runtime: AccumulatingRuntime<PeerId>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    due: HashMap<u64, Due>,
    next_timer: u64,
    table: RecordTable,
    /// Hosts SWIM says are up, by address.
    up: HashMap<IpAddr, PeerId>,
    down_since: HashMap<IpAddr, Instant>,
    bytes_sent: u64,
    bytes_received: u64,
    rejected: u64,
    /// This host's block claims waiting for the members' agreement.
    proposals: Proposals,
    /// What the calls since the plane last took them changed.
    changes: Changes,
}

impl GossipStore {
    /// Binds the sealed UDP socket (so a bad `bind` surfaces at start) and announces to the seeds.
    pub fn start(
        cfg: PeerConfig,
        key: &[u8; KEY_LEN],
        state_dir: PathBuf,
    ) -> Result<GossipStore, OverlayError> {
        let bind_err = |source| OverlayError::Bind {
            addr: cfg.bind,
            source,
        };
        let udp = UdpSocket::bind(cfg.bind).map_err(bind_err)?;
        udp.set_nonblocking(true).map_err(bind_err)?;
        let me = PeerId {
            addr: cfg.bind,
            incarnation: now_ms(),
        };
        let mut store = GossipStore {
            me: cfg.bind.ip(),
            sealer: Sealer::new(key),
            swim: new_swim(me, &cfg),
            state_dir,
            udp,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            due: HashMap::new(),
            next_timer: 0,
            table: RecordTable::new(),
            up: HashMap::new(),
            down_since: HashMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            rejected: 0,
            proposals: Proposals::default(),
            changes: Changes::default(),
            cfg,
        };
        tracing::info!(bind = %store.cfg.bind, peers = ?store.cfg.peers, "gossip store starting");
        store.announce_to_seeds();
        store.schedule(store.cfg.sync_interval, Due::Sync);
        store.schedule(store.cfg.reconcile_interval, Due::Periodic);
        Ok(store)
    }

    fn schedule(&mut self, after: Duration, due: Due) {
        let id = self.next_timer;
        self.next_timer += 1;
        self.due.insert(id, due);
        self.timers.push(Reverse((Instant::now() + after, id)));
    }

    fn drain_udp(&mut self) {
        let mut buf = vec![0u8; 65536];
        loop {
            let (len, from) = match self.udp.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "overlay socket receive failed");
                    return;
                }
            };
            self.bytes_received += len as u64;
            let plain = match self.sealer.open(&buf[..len]) {
                Ok(p) => p,
                Err(e) => {
                    self.rejected += 1;
                    // Every drop is counted; the log thins out so a flood cannot fill the disk.
                    if self.rejected <= 10 || self.rejected.is_power_of_two() {
                        tracing::warn!(%from, error = %e, rejected = self.rejected,
                            "dropped an overlay control-plane datagram");
                    }
                    continue;
                }
            };
            match wire::decode(&plain) {
                Ok(Packet::Swim(data)) => {
                    if let Err(e) = self.swim.handle_data(&data, &mut self.runtime) {
                        tracing::debug!(%from, error = %e, "SWIM message not accepted");
                    }
                    self.flush_swim();
                }
                Ok(Packet::Records { records, reply }) => self.on_records(from, records, reply),
                Ok(Packet::Propose { claim, unconfirmed }) => {
                    let accepted =
                        agreement::judge(&self.state_dir, self.me, from.ip(), &claim, unconfirmed);
                    if !accepted {
                        tracing::info!(network = %claim.network, block = %claim.block, %from,
                            "rejected a peer's block proposal: this host's claim of it outranks it");
                    }
                    let reply = wire::encode(&Packet::Answer { claim, accepted });
                    let sealed = self.sealer.seal(&reply);
                    self.send_raw(from, &sealed);
                    // A pending claim given up here: the waiting plugin picks another block.
                    self.changes.local = true;
                }
                Ok(Packet::Answer { claim, accepted }) => {
                    if let Some(rejected) = self.proposals.on_answer(from.ip(), &claim, accepted) {
                        tracing::info!(network = %rejected.network, block = %rejected.block, %from,
                            "a peer holds a better claim of the proposed block; giving ours up");
                        agreement::give_up(&self.state_dir, &rejected);
                        self.changes.local = true;
                    }
                }
                Err(e) => {
                    self.rejected += 1;
                    tracing::warn!(%from, error = %e, "dropped an undecodable overlay message from a key holder");
                }
            }
        }
    }

    fn on_records(&mut self, from: SocketAddr, records: Vec<Record>, reply: bool) {
        let new_claims = records
            .iter()
            .any(|r| matches!(r.key, RecordKey::Claim { .. }));
        let services = records.iter().any(|r| {
            matches!(
                r.key,
                RecordKey::Service { .. } | RecordKey::MeshCounts { .. }
            )
        });
        let outcome = self.table.merge(self.me, records, now_ms());
        if outcome.rejected > 0 {
            self.rejected += outcome.rejected as u64;
            tracing::warn!(%from, count = outcome.rejected, "refused overlay records with a version past the ceiling");
        }
        if outcome.changed > 0 {
            self.changes.kernel = true;
            self.changes.claims = true;
            self.changes.services |= services;
        }
        if !outcome.disowned.is_empty() {
            self.push_to_all(outcome.disowned);
        }
        // A peer that asks, or that just claimed a block (it may have joined a network), gets our state.
        if reply || (new_claims && outcome.changed > 0) {
            self.send_state(from, false);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match self.due.remove(&id) {
                Some(Due::Swim(timer)) => {
                    if let Err(e) = self.swim.handle_timer(timer, &mut self.runtime) {
                        tracing::debug!(error = %e, "SWIM timer failed");
                    }
                    self.flush_swim();
                }
                Some(Due::Sync) => {
                    let peers: Vec<SocketAddr> = self.up.values().map(|p| p.addr).collect();
                    if let Some(peer) = peers.choose(&mut rand::rng()).copied() {
                        self.send_state(peer, true);
                    }
                    self.schedule(self.cfg.sync_interval, Due::Sync);
                }
                Some(Due::Periodic) => {
                    self.housekeeping();
                    self.announce_to_seeds();
                    self.schedule(self.cfg.reconcile_interval, Due::Periodic);
                }
                None => {}
            }
        }
    }

    /// Static seeds we do not hear from are asked again, so start order does not matter.
    fn announce_to_seeds(&mut self) {
        let missing: Vec<SocketAddr> = self
            .cfg
            .peers
            .iter()
            .copied()
            .filter(|p| !self.up.values().any(|id| id.addr == *p))
            .collect();
        for seed in missing {
            if let Err(e) = self.swim.announce(PeerId::seed(seed), &mut self.runtime) {
                tracing::debug!(%seed, error = %e, "announce failed");
            }
        }
        self.flush_swim();
    }

    /// Hosts down longer than the grace lose their records (and so their blocks); old tombstones go.
    fn housekeeping(&mut self) {
        let grace = self.cfg.claim_grace;
        let expired: Vec<IpAddr> = self
            .down_since
            .iter()
            .filter(|(_, since)| since.elapsed() >= grace)
            .map(|(ip, _)| *ip)
            .collect();
        for host in expired {
            self.down_since.remove(&host);
            let n = self.table.drop_host(host);
            tracing::info!(%host, records = n, "host gone longer than the grace period; its records and blocks are released");
            self.changes.claims = true;
            self.changes.services = true;
        }
        let ttl = (self.cfg.sync_interval * 20).max(Duration::from_secs(60));
        self.table
            .expire_tombstones(now_ms(), ttl.as_millis() as u64);
    }

    /// Sends what SWIM produced and applies its membership news.
    fn flush_swim(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            let sealed = self
                .sealer
                .seal(&wire::encode(&Packet::Swim(data.to_vec())));
            self.send_raw(to.addr, &sealed);
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.schedule(after, Due::Swim(timer));
        }
        while let Some(note) = self.runtime.to_notify() {
            match note {
                OwnedNotification::MemberUp(id) => {
                    tracing::info!(peer = %id.addr, "overlay peer up");
                    let ip = id.addr.ip();
                    self.down_since.remove(&ip);
                    let addr = id.addr;
                    self.up.insert(ip, id);
                    self.changes.merge(Changes::liveness());
                    self.send_state(addr, true);
                }
                OwnedNotification::MemberDown(id) => {
                    let ip = id.addr.ip();
                    if self.up.get(&ip) == Some(&id) {
                        tracing::warn!(peer = %id.addr, "overlay peer down; its endpoints leave the kernel tables");
                        self.up.remove(&ip);
                        self.down_since.insert(ip, Instant::now());
                        self.changes.merge(Changes::liveness());
                    }
                }
                OwnedNotification::Rename(old, new) => {
                    let ip = new.addr.ip();
                    if self.up.get(&ip) == Some(&old) {
                        self.up.insert(ip, new);
                    }
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("this host was declared down by its peers; rejoining");
                    let _ = self.swim.reuse_down_identity();
                    self.announce_to_seeds();
                }
                _ => {}
            }
        }
    }

    fn send_raw(&mut self, to: SocketAddr, bytes: &[u8]) {
        match self.udp.send_to(bytes, to) {
            Ok(n) => self.bytes_sent += n as u64,
            Err(e) => tracing::debug!(%to, error = %e, "overlay send failed"),
        }
    }

    /// The networks `host` takes part in: those it claims blocks of.
    fn networks_of(&self, host: IpAddr) -> BTreeSet<String> {
        self.table
            .live()
            .filter_map(|(k, _)| match k {
                RecordKey::Claim {
                    host: h, network, ..
                } if *h == host => Some(network.clone()),
                _ => None,
            })
            .collect()
    }

    /// Endpoint records go only to hosts that have their network; claims go everywhere (a host's first
    /// ADD on a network must avoid blocks others hold), and services too (every host lists them, and a
    /// host's first container on the network must find its services), and ESP generations and schedules.
    fn for_peer(&self, host: IpAddr, records: Vec<Record>) -> Vec<Record> {
        let nets = self.networks_of(host);
        records
            .into_iter()
            .filter(|r| match &r.key {
                // A generation names VTEPs, not hosts: every host gets it.
                RecordKey::Claim { .. }
                | RecordKey::Service { .. }
                | RecordKey::Generation { .. }
                | RecordKey::Rotation { .. }
                | RecordKey::MeshCounts { .. } => true,
                RecordKey::Endpoint {
                    network, host: h, ..
                } => *h == host || nets.contains(network),
            })
            .collect()
    }

    fn send_records(&mut self, to: SocketAddr, records: Vec<Record>, reply: bool) {
        for batch in wire::batches(self.for_peer(to.ip(), records), reply) {
            let sealed = self.sealer.seal(&batch);
            self.send_raw(to, &sealed);
        }
    }

    fn send_state(&mut self, to: SocketAddr, reply: bool) {
        let all = self.table.all();
        self.send_records(to, all, reply);
    }

    fn push_to_all(&mut self, records: Vec<Record>) {
        let peers: Vec<SocketAddr> = self.up.values().map(|p| p.addr).collect();
        for peer in peers {
            self.send_records(peer, records.clone(), false);
        }
    }

    /// Confirms the proposals every live member accepted, and (re)sends the ones still waiting.
    fn drive_proposals(&mut self) {
        let up: BTreeSet<IpAddr> = self.up.keys().copied().collect();
        let quorum = agreement::has_quorum(self.me, &self.cfg.peers, &up);
        for claim in self.proposals.agreed(&up, quorum) {
            if agreement::confirm(&self.state_dir, &claim) {
                // The rescan publishes the confirmed claim.
                self.changes.local = true;
            }
        }
        let members: Vec<(IpAddr, SocketAddr)> =
            self.up.iter().map(|(ip, id)| (*ip, id.addr)).collect();
        for out in self.proposals.due(&members, Instant::now()) {
            let packet = wire::encode(&Packet::Propose {
                claim: out.claim,
                unconfirmed: out.unconfirmed,
            });
            let sealed = self.sealer.seal(&packet);
            self.send_raw(out.to, &sealed);
        }
    }
}

impl ClusterStore for GossipStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Gossip
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.udp.as_fd())
    }

    fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn step(&mut self) -> Changes {
        self.drain_udp();
        self.fire_timers();
        if !self.proposals.is_empty() {
            self.drive_proposals();
        }
        std::mem::take(&mut self.changes)
    }

    fn publish(&mut self, own: &BTreeMap<RecordKey, RecordValue>) -> Changes {
        let changed = self.table.set_own(self.me, own, now_ms());
        if changed.is_empty() {
            return Changes::default();
        }
        tracing::debug!(records = changed.len(), "publishing local overlay changes");
        self.push_to_all(changed);
        Changes {
            claims: true,
            ..Changes::default()
        }
    }

    fn propose(&mut self, claims: Vec<(ClaimRef, ClaimState)>) {
        self.proposals.sync(claims);
    }

    fn table(&self) -> &RecordTable {
        &self.table
    }

    fn take_touched(&mut self) -> BTreeSet<RecordKey> {
        self.table.take_touched()
    }

    fn is_up(&self, host: IpAddr) -> bool {
        self.up.contains_key(&host)
    }

    fn members(&self) -> Vec<Member> {
        let mut hosts: BTreeSet<IpAddr> = self.up.keys().copied().collect();
        hosts.extend(self.down_since.keys().copied());
        hosts
            .into_iter()
            .map(|host| Member {
                host,
                up: self.up.contains_key(&host),
            })
            .collect()
    }

    fn forget(&mut self, host: IpAddr) -> Result<usize, String> {
        if self.up.contains_key(&host) {
            return Err(format!("{host} is up; stop its tetherd first"));
        }
        self.down_since.remove(&host);
        let n = self.table.drop_host(host);
        self.changes.claims = true;
        self.changes.merge(Changes::liveness());
        Ok(n)
    }

    fn claims_ahead(&self) -> bool {
        false
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            reachable: true,
            last_sync_ms: 0,
            revision: None,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            datagrams_rejected: self.rejected,
            watch_events: None,
        }
    }

    fn leave(&mut self) {
        let _ = self.swim.leave_cluster(&mut self.runtime);
        self.flush_swim();
    }
}
