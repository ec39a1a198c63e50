//! The control plane's event loop, on one dedicated OS thread (it never enters another namespace, and the
//! netlink facade blocks, so it stays off any async runtime): the sealed UDP socket, SWIM's timers, the
//! notify socket the plugins poke, periodic full syncs, and the reconcile of kernel entries.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, OwnedNotification, Timer};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rand::seq::IndexedRandom;
use serde::Serialize;

use super::agreement::{self, Proposals};
use super::config::PeerConfig;
use super::error::OverlayError;
use super::local::{peer_claims, publish_peer_claims, read_local, settle_conflicts};
use super::membership::{new_swim, PeerId, Swim};
use super::reconcile;
use super::records::{Record, RecordKey, RecordTable};
use super::remote_names;
use super::seal::Sealer;
use super::wire::{self, Packet};
use crate::client::notify;
use crate::client::protocol::Request;
use crate::link::Netlink;
use crate::state::overlay::{now_ms, NetworkFacts};

/// What `tetherd status` and the benchmarks read.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub host: String,
    pub members_up: Vec<String>,
    pub records: usize,
    pub networks: Vec<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub datagrams_rejected: u64,
    pub kernel_changes: u64,
    /// This host's block claims waiting for the members' agreement (pending, or unconfirmed ones taken
    /// while tetherd could not ask).
    pub claims_awaiting_agreement: usize,
}

/// A running control plane; stopped (leaving the cluster politely) on [`ControlPlane::stop`] or drop.
pub struct ControlPlane {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<Status>>,
    notify_path: PathBuf,
    /// Numbers the refresh requests; the agent reports the last one whose rescan finished.
    next_request: AtomicU64,
    scanned: Arc<(Mutex<u64>, Condvar)>,
}

impl ControlPlane {
    /// Binds the sockets (so configuration errors surface here) and starts the loop.
    pub fn start(
        cfg: PeerConfig,
        state_dir: &Path,
        run_dir: &Path,
    ) -> Result<ControlPlane, OverlayError> {
        let udp = UdpSocket::bind(cfg.bind).map_err(|source| OverlayError::Bind {
            addr: cfg.bind,
            source,
        })?;
        udp.set_nonblocking(true)
            .map_err(|source| OverlayError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let notify_path = crate::client::poke::overlay_socket_path(run_dir);
        let notify_err = |source| OverlayError::NotifySocket {
            path: notify_path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(run_dir).map_err(notify_err)?;
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).map_err(notify_err)?;
        notify.set_nonblocking(true).map_err(notify_err)?;
        let nl = Netlink::new().map_err(|source| OverlayError::Netlink { source })?;

        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(Status {
            host: cfg.bind.ip().to_string(),
            ..Status::default()
        }));
        let scanned = Arc::new((Mutex::new(0), Condvar::new()));
        let mut agent = Agent::new(
            cfg,
            (state_dir.to_path_buf(), run_dir.to_path_buf()),
            udp,
            notify,
            nl,
            status.clone(),
            scanned.clone(),
        );
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("overlay-peers".into())
            .spawn(move || agent.run(&stop_flag))
            .map_err(|source| OverlayError::Thread { source })?;
        Ok(ControlPlane {
            stop,
            thread: Some(thread),
            status,
            notify_path,
            next_request: AtomicU64::new(0),
            scanned,
        })
    }

    /// The state directory changed: rescan it now, and wait (at most `timeout`) until the change has been
    /// read and pushed to the peers.
    pub fn refresh(&self, timeout: Duration) {
        let request = self.next_request.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(&request.to_be_bytes(), &self.notify_path);
        }
        let (done, cv) = &*self.scanned;
        let guard = done.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cv.wait_timeout_while(guard, timeout, |d| *d < request);
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Debug)]
enum Due {
    Swim(Timer<PeerId>),
    Sync,
    Periodic,
}

struct Agent {
    cfg: PeerConfig,
    me: IpAddr,
    state_dir: PathBuf,
    run_dir: PathBuf,
    udp: UdpSocket,
    notify: UnixDatagram,
    nl: Netlink,
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
    networks: Vec<NetworkFacts>,
    local_dirty: bool,
    kernel_dirty: bool,
    status: Arc<Mutex<Status>>,
    bytes_sent: u64,
    bytes_received: u64,
    rejected: u64,
    kernel_changes: u64,
    /// This host's block claims waiting for the members' agreement.
    proposals: Proposals,
    /// The highest refresh request received, and where finished rescans are reported.
    requested: u64,
    scanned: Arc<(Mutex<u64>, Condvar)>,
}

impl Agent {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: PeerConfig,
        (state_dir, run_dir): (PathBuf, PathBuf),
        udp: UdpSocket,
        notify: UnixDatagram,
        nl: Netlink,
        status: Arc<Mutex<Status>>,
        scanned: Arc<(Mutex<u64>, Condvar)>,
    ) -> Agent {
        let me = PeerId {
            addr: cfg.bind,
            incarnation: now_ms(),
        };
        Agent {
            me: cfg.bind.ip(),
            sealer: Sealer::new(&cfg.key),
            swim: new_swim(me, &cfg),
            cfg,
            state_dir,
            run_dir,
            udp,
            notify,
            nl,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            due: HashMap::new(),
            next_timer: 0,
            table: RecordTable::new(),
            up: HashMap::new(),
            down_since: HashMap::new(),
            networks: Vec::new(),
            local_dirty: true,
            kernel_dirty: true,
            status,
            bytes_sent: 0,
            bytes_received: 0,
            rejected: 0,
            kernel_changes: 0,
            proposals: Proposals::default(),
            requested: 0,
            scanned,
        }
    }

    fn schedule(&mut self, after: Duration, due: Due) {
        let id = self.next_timer;
        self.next_timer += 1;
        self.due.insert(id, due);
        self.timers.push(Reverse((Instant::now() + after, id)));
    }

    fn run(&mut self, stop: &AtomicBool) {
        tracing::info!(bind = %self.cfg.bind, peers = ?self.cfg.peers, "overlay control plane starting");
        self.announce_to_seeds();
        self.schedule(self.cfg.sync_interval, Due::Sync);
        self.schedule(self.cfg.reconcile_interval, Due::Periodic);
        while !stop.load(Ordering::SeqCst) {
            self.wait_for_input();
            self.drain_notify();
            self.drain_udp();
            self.fire_timers();
            if self.local_dirty {
                self.rescan();
            }
            if !self.proposals.is_empty() {
                self.drive_proposals();
            }
            if self.kernel_dirty {
                self.reconcile();
            }
            self.publish_status();
        }
        let _ = self.swim.leave_cluster(&mut self.runtime);
        self.flush_swim();
        tracing::info!("overlay control plane stopped");
    }

    /// Sleeps until a socket is readable or the next timer is due (at most 100 ms, to see `stop`).
    fn wait_for_input(&mut self) {
        let next = self.timers.peek().map(|Reverse((at, _))| *at);
        let wait = next
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        let mut fds = [
            PollFd::new(self.udp.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.notify.as_fd(), PollFlags::POLLIN),
        ];
        // An error (EINTR) only ends this wait early; the loop looks at everything again.
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
        );
    }

    fn drain_notify(&mut self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = self.notify.recv(&mut buf) {
            self.local_dirty = true;
            if let Ok(seq) = <[u8; 8]>::try_from(&buf[..n]) {
                self.requested = self.requested.max(u64::from_be_bytes(seq));
            }
        }
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
                    self.local_dirty = true;
                }
                Ok(Packet::Answer { claim, accepted }) => {
                    if let Some(rejected) = self.proposals.on_answer(from.ip(), &claim, accepted) {
                        tracing::info!(network = %rejected.network, block = %rejected.block, %from,
                            "a peer holds a better claim of the proposed block; giving ours up");
                        agreement::give_up(&self.state_dir, &rejected);
                        self.local_dirty = true;
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
        let outcome = self.table.merge(self.me, records, now_ms());
        if outcome.rejected > 0 {
            self.rejected += outcome.rejected as u64;
            tracing::warn!(%from, count = outcome.rejected, "refused overlay records with a version past the ceiling");
        }
        if outcome.changed > 0 {
            self.kernel_dirty = true;
            self.after_claims_changed();
        }
        if !outcome.disowned.is_empty() {
            self.push_to_all(outcome.disowned);
        }
        // A peer that asks, or that just claimed a block (it may have joined a network), gets our state.
        if reply || (new_claims && outcome.changed > 0) {
            self.send_state(from, false);
        }
    }

    fn after_claims_changed(&mut self) {
        let claims = peer_claims(&self.table, self.me);
        publish_peer_claims(&self.state_dir, &claims);
        if settle_conflicts(&self.state_dir, self.me, &claims) {
            self.local_dirty = true;
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
                    self.local_dirty = true;
                    self.kernel_dirty = true;
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
            self.after_claims_changed();
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
                    self.kernel_dirty = true;
                    self.send_state(addr, true);
                }
                OwnedNotification::MemberDown(id) => {
                    let ip = id.addr.ip();
                    if self.up.get(&ip) == Some(&id) {
                        tracing::warn!(peer = %id.addr, "overlay peer down; its endpoints leave the kernel tables");
                        self.up.remove(&ip);
                        self.down_since.insert(ip, Instant::now());
                        self.kernel_dirty = true;
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
    /// ADD on a network must avoid blocks others hold).
    fn for_peer(&self, host: IpAddr, records: Vec<Record>) -> Vec<Record> {
        let nets = self.networks_of(host);
        records
            .into_iter()
            .filter(|r| match &r.key {
                RecordKey::Claim { .. } => true,
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

    fn rescan(&mut self) {
        self.local_dirty = false;
        let answering = self.requested;
        let local = read_local(&self.state_dir, self.me);
        let changed = self.table.set_own(self.me, &local.wanted, now_ms());
        let names = |n: &[NetworkFacts]| n.iter().map(|f| f.network.clone()).collect::<Vec<_>>();
        if names(&local.networks) != names(&self.networks) {
            self.kernel_dirty = true;
        }
        self.networks = local.networks;
        self.proposals.sync(local.proposing);
        if !changed.is_empty() {
            tracing::debug!(records = changed.len(), "publishing local overlay changes");
            self.push_to_all(changed);
            self.after_claims_changed();
        }
        let (done, cv) = &*self.scanned;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = answering;
        cv.notify_all();
    }

    /// Confirms the proposals every live member accepted, and (re)sends the ones still waiting.
    fn drive_proposals(&mut self) {
        let up: BTreeSet<IpAddr> = self.up.keys().copied().collect();
        let quorum = agreement::has_quorum(self.me, &self.cfg.peers, &up);
        for claim in self.proposals.agreed(&up, quorum) {
            if agreement::confirm(&self.state_dir, &claim) {
                // The rescan publishes the confirmed claim.
                self.local_dirty = true;
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

    fn reconcile(&mut self) {
        self.kernel_dirty = false;
        let up: BTreeMap<IpAddr, ()> = self.up.keys().map(|k| (*k, ())).collect();
        for facts in self.networks.clone() {
            let want = reconcile::desired(&facts, &self.table, self.me, |h| up.contains_key(&h));
            match reconcile::apply(&self.nl, &facts, &want) {
                Ok(n) => self.kernel_changes += n as u64,
                Err(e) => {
                    tracing::warn!(network = %facts.network, error = %e, "overlay reconcile failed; retrying");
                    self.kernel_dirty = true;
                }
            }
        }
        let changed =
            remote_names::sync(&self.state_dir, &self.networks, &self.table, self.me, |h| {
                up.contains_key(&h)
            });
        if !changed.is_empty() {
            // From another thread: the daemon may be waiting on this one (a plugin's notify) right now.
            let run_dir = self.run_dir.clone();
            std::thread::spawn(move || {
                for network in changed {
                    let request = Request::Changed {
                        network: Some(network),
                        attachment: None,
                    };
                    if let Err(e) = notify::request(&run_dir, &request, Duration::from_secs(2)) {
                        tracing::debug!(error = %e, "telling tetherd about remote names failed");
                    }
                }
            });
        }
    }

    fn publish_status(&self) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.members_up = self.up.values().map(|p| p.addr.to_string()).collect();
        s.members_up.sort();
        s.records = self.table.len();
        s.networks = self.networks.iter().map(|f| f.network.clone()).collect();
        s.bytes_sent = self.bytes_sent;
        s.bytes_received = self.bytes_received;
        s.datagrams_rejected = self.rejected;
        s.kernel_changes = self.kernel_changes;
        s.claims_awaiting_agreement = self.proposals.len();
    }
}
