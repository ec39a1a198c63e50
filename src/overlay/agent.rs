//! The control plane's event loop, on one dedicated OS thread (it never enters another namespace, and the
//! netlink facade blocks, so it stays off any async runtime): the notify socket the plugins poke, the
//! cluster store's input and timers (`store`), and what is the same for every store: reading the state
//! directory, claiming blocks ahead of need where the store wants it, and the reconcile of kernel entries,
//! peer claims and remote names from the store's view.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use super::cluster_services;
use super::config::{EncryptionConfig, PeerConfig, StoreConfig};
use super::error::OverlayError;
use super::etcd::EtcdStore;
use super::gossip::GossipStore;
use super::ipsec::epoch::{self as esp_epoch, Schedule};
use super::ipsec::{generation, plan as esp_plan, program as esp_program};
use super::local::{
    claim_ahead, clashes, peer_claims, publish_peer_claims, read_local, settle_conflicts,
};
use super::reconcile;
use super::records::{RecordKey, RecordTable, RecordValue};
use super::remote_names::RemoteNames;
use super::store::{Changes, ClusterStore, Member, StoreKind, StoreStatus};
use crate::client::notify;
use crate::client::protocol::Request;
use crate::link::xfrm::{ExpiryListener, Policy, StateId, XfrmSocket};
use crate::link::{MacAddr, Netlink};
use crate::state::overlay::{write_store_kind, NetworkFacts};

/// What `tetherd status` and the benchmarks read.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub host: String,
    pub store: Option<StoreKind>,
    /// Whether the store took the last write (gossip: always).
    pub store_reachable: bool,
    pub members_up: Vec<String>,
    pub records: usize,
    /// Live endpoint records of every host (this one's included).
    pub endpoint_records: usize,
    pub networks: Vec<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub datagrams_rejected: u64,
    pub kernel_changes: u64,
    /// Kernel reconciles that failed (and were retried); a network without its devices yet is no failure.
    pub kernel_failures: u64,
    /// This host's block claims waiting for agreement (pending, or unconfirmed ones taken while tetherd
    /// could not ask).
    pub claims_awaiting_agreement: usize,
}

/// `tether cluster status`: the store, its members, every host's blocks and the records per network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub store: StoreKind,
    pub host: IpAddr,
    pub members: Vec<Member>,
    /// Host -> "network block" of every live claim.
    pub blocks: BTreeMap<String, Vec<String>>,
    /// Network -> endpoint records of all hosts.
    pub records: BTreeMap<String, usize>,
    pub sync: StoreStatus,
    /// The encrypted overlay's key rotation as this host counts it (absent without `encryption`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// The interval in force now.
    pub interval_s: f64,
    pub epoch: u64,
    /// The cluster's schedule (a change waits in `current` until its `anchorMs`).
    pub schedule: Schedule,
}

/// One overlay network as the store has it, for `tether inspect`: every host's endpoints, and the hosts that
/// take part in it (those holding a block of it), each with its liveness. A host keeps FDB and neighbour
/// entries for the endpoints of the other live hosts of the networks it takes part in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkView {
    pub network: String,
    pub host: IpAddr,
    pub endpoints: Vec<EndpointView>,
    pub hosts: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub host: IpAddr,
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub vtep: IpAddr,
}

/// Requests from the daemon's thread, answered by the plane's.
enum Command {
    Network {
        network: String,
        reply: Sender<NetworkView>,
    },
    Forget {
        host: IpAddr,
        reply: Sender<Result<usize, String>>,
    },
    Status {
        reply: Sender<ClusterStatus>,
    },
    Rotation {
        interval: Duration,
        reply: Sender<Result<Schedule, String>>,
    },
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
    commands: Mutex<Sender<Command>>,
}

impl ControlPlane {
    /// Opens the store and the notify socket (so configuration errors surface here) and starts the loop.
    pub fn start(
        cfg: PeerConfig,
        state_dir: &Path,
        run_dir: &Path,
    ) -> Result<ControlPlane, OverlayError> {
        let notify_path = crate::client::poke::overlay_socket_path(run_dir);
        let notify_err = |source| OverlayError::NotifySocket {
            path: notify_path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(run_dir).map_err(notify_err)?;
        let store: Box<dyn ClusterStore> = match &cfg.store {
            StoreConfig::Gossip { key } => Box::new(GossipStore::start(
                cfg.clone(),
                key,
                state_dir.to_path_buf(),
            )?),
            StoreConfig::Etcd(etcd) => Box::new(EtcdStore::start(
                etcd.clone(),
                cfg.bind.ip(),
                cfg.claim_grace,
                cfg.repair_interval,
                state_dir.to_path_buf(),
            )?),
        };
        // The plugins read it: with a store that agrees on every block, none is used unconfirmed.
        write_store_kind(state_dir, store.claims_ahead()).map_err(|e| OverlayError::Config {
            reason: format!("writing the store marker in {}: {e}", state_dir.display()),
        })?;
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
        let (commands, command_rx) = channel();
        let mut agent = Agent {
            me: cfg.bind.ip(),
            next_periodic: Instant::now(),
            next_repair: Instant::now(),
            next_claims_pass: Instant::now(),
            liveness_due: false,
            liveness_full: false,
            next_liveness_pass: Instant::now(),
            own_blocks: BTreeMap::new(),
            peer_claims_written: BTreeMap::new(),
            settle_all: true,
            cfg,
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            notify,
            nl,
            store,
            networks: Vec::new(),
            local_dirty: true,
            kernel_dirty: true,
            claims_dirty: false,
            services_dirty: true,
            services_retry: None,
            members_stale: true,
            status: status.clone(),
            kernel_changes: 0,
            kernel_failures: 0,
            proposing: 0,
            requested: 0,
            scanned: scanned.clone(),
            commands: command_rx,
            esp: EspProgrammer::default(),
            remote_names: RemoteNames::default(),
            wanted: BTreeMap::new(),
            full_due: true,
        };
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
            commands: Mutex::new(commands),
        })
    }

    /// Sends `command` to the plane's thread and waits (bounded) for its answer.
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = channel();
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(make(tx));
        sent.ok()?;
        // Wake the loop at once instead of at its next tick.
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(&0u64.to_be_bytes(), &self.notify_path);
        }
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// `tether cluster forget HOST`.
    pub fn forget(&self, host: IpAddr) -> Result<usize, String> {
        self.ask(|reply| Command::Forget { host, reply })
            .unwrap_or_else(|| Err("the overlay control plane did not answer".into()))
    }

    /// `tether cluster rotation SECONDS`: the cluster's new schedule.
    pub fn set_rotation(&self, interval: Duration) -> Result<Schedule, String> {
        self.ask(|reply| Command::Rotation { interval, reply })
            .unwrap_or_else(|| Err("the overlay control plane did not answer".into()))
    }

    /// The store's view of one network (`tether inspect`).
    pub fn network_view(&self, network: &str) -> Option<NetworkView> {
        let network = network.to_string();
        self.ask(|reply| Command::Network { network, reply })
    }

    /// `tether cluster status`.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.ask(|reply| Command::Status { reply })
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

    /// How many records the plane's table holds: [`ControlPlane::status`] without copying the rest
    /// (its member list is one name per host).
    pub fn records(&self) -> usize {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
    }

    /// How many live endpoint records (every host's) the plane's table holds, like [`Self::records`].
    pub fn endpoint_records(&self) -> usize {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .endpoint_records
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
        // The loop sleeps until something is due; this wakes it to see `stop`.
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(&0u64.to_be_bytes(), &self.notify_path);
        }
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

/// The plane's own state around the store.
struct Agent {
    cfg: PeerConfig,
    me: IpAddr,
    state_dir: PathBuf,
    run_dir: PathBuf,
    notify: UnixDatagram,
    nl: Netlink,
    store: Box<dyn ClusterStore>,
    /// Encrypted networks' next time-driven kernel pass (`reconcile_interval`).
    next_periodic: Instant,
    /// The next safety pass (`repair_interval`).
    next_repair: Instant,
    /// The peers' claims are written out at most once per [`CLAIMS_PASS_EVERY`]: not before this.
    next_claims_pass: Instant,
    /// A host's liveness changed and the pass over everything it makes due has not run yet; it runs
    /// at most once per [`LIVENESS_PASS_EVERY`], not before `next_liveness_pass`.
    liveness_due: bool,
    /// The liveness change came from a store that did not mark the host's records touched: the pass
    /// goes over every record.
    liveness_full: bool,
    next_liveness_pass: Instant,
    /// This host's claimed and proposed blocks per network (as of the last rescan).
    own_blocks: BTreeMap<String, BTreeSet<ipnetwork::IpNetwork>>,
    /// What the peer-claims files were last written with, per network.
    peer_claims_written: BTreeMap<String, Vec<crate::state::overlay::PeerClaim>>,
    /// The next claims pass settles every own claim, clash or not (the repair pass).
    settle_all: bool,
    networks: Vec<NetworkFacts>,
    local_dirty: bool,
    kernel_dirty: bool,
    claims_dirty: bool,
    /// Service records changed (or the repair pass): the service files' copies are due.
    services_dirty: bool,
    /// When the service copies are due again without a change (a copy left out a port held here).
    services_retry: Option<Instant>,
    /// Liveness may have changed since `membersUp` was last listed: listing and naming every member on
    /// each wake-up cost O(hosts) ten times a second.
    members_stale: bool,
    status: Arc<Mutex<Status>>,
    kernel_changes: u64,
    kernel_failures: u64,
    proposing: usize,
    /// The highest refresh request received, and where finished rescans are reported.
    requested: u64,
    scanned: Arc<(Mutex<u64>, Condvar)>,
    commands: std::sync::mpsc::Receiver<Command>,
    esp: EspProgrammer,
    remote_names: RemoteNames,
    /// Each network's wanted kernel entries, kept per record between full passes.
    wanted: BTreeMap<String, reconcile::Wanted>,
    /// The next reconcile goes over the whole table (liveness or the networks changed, a write failed,
    /// the periodic pass); otherwise it takes in only the records changed since the last one.
    full_due: bool,
}

/// Every encrypted pair's generations by (port, this host's VTEP, the peer's).
type EspPairs = BTreeMap<(u16, IpAddr, IpAddr), generation::Pair>;

/// Every peer's generation record by (from, to, port).
fn heard_generations(table: &RecordTable) -> BTreeMap<(IpAddr, IpAddr, u16), generation::Heard> {
    table
        .live()
        .filter_map(|(key, value)| match (key, value) {
            (
                RecordKey::Generation { from, to, port, .. },
                RecordValue::Generation { send, ack },
            ) => {
                let heard = generation::Heard {
                    send: *send,
                    ack: *ack,
                };
                Some(((*from, *to, *port), heard))
            }
            _ => None,
        })
        .collect()
}

/// The states and policies of every encrypted port of this host in `epoch`. A sending state past its
/// soft lifetime moves its pair one generation on first, if the peer already receives the next one
/// (otherwise the state keeps sending until the peer's record says so: a soft limit never stops traffic).
fn esp_wanted(
    enc: &EncryptionConfig,
    epoch: u64,
    ports: &BTreeSet<(IpAddr, u16)>,
    pairs: &mut EspPairs,
    heard: &BTreeMap<(IpAddr, IpAddr, u16), generation::Heard>,
    expired: &BTreeSet<StateId>,
) -> esp_plan::Wanted {
    type Peers = BTreeMap<u16, BTreeMap<IpAddr, esp_plan::Generations>>;
    let mut by_vtep: BTreeMap<IpAddr, Peers> = BTreeMap::new();
    for &(vtep, port) in ports {
        by_vtep.entry(vtep).or_default().entry(port).or_default();
    }
    for (&(port, vtep, peer), pair) in pairs.iter() {
        let members = by_vtep.entry(vtep).or_default().entry(port).or_default();
        members.insert(peer, pair.generations());
    }
    let mut wanted = esp_plan::Wanted::default();
    for (vtep, peers) in &mut by_vtep {
        let mut w = esp_plan::wanted(&enc.key, *vtep, peers, epoch, enc.soft);
        let mut moved = false;
        for (&(port, peer), id) in &w.sending {
            let Some(pair) = pairs.get_mut(&(port, *vtep, peer)) else {
                continue;
            };
            let peer_ack = heard.get(&(peer, *vtep, port)).and_then(|h| h.ack);
            if expired.contains(id) && pair.rekey(peer_ack) {
                tracing::info!(%peer, port, generation = pair.send, "encrypted overlay: early rekey of the pair (soft lifetime reached)");
                if let Some(gens) = peers.get_mut(&port).and_then(|m| m.get_mut(&peer)) {
                    *gens = pair.generations();
                }
                moved = true;
            }
        }
        if moved {
            w = esp_plan::wanted(&enc.key, *vtep, peers, epoch, enc.soft);
        }
        wanted.states.extend(w.states);
        wanted.policies.extend(w.policies);
        wanted.needs.extend(w.needs);
        wanted.sending.extend(w.sending);
        wanted.receiving.extend(w.receiving);
    }
    wanted
}

/// The peers' claims file is rewritten (and conflicts settled) at most this often: a fleet starting claims
/// many blocks a second, and each pass writes every peer's claims, so one per claim cost O(hosts²) for
/// the cluster. The file only guides the plugin's choice of a block (the store decides who gets it).
const CLAIMS_PASS_EVERY: Duration = Duration::from_secs(1);

/// Liveness changes are taken in (a pass over the whole table) at most this often.
const LIVENESS_PASS_EVERY: Duration = Duration::from_secs(1);

/// How often every IPsec policy is set again, whatever the last pass left.
const POLICY_REFRESH: Duration = Duration::from_secs(10);

/// The encrypted networks' IPsec side of the reconcile: the NETLINK_XFRM socket (opened on first need),
/// the policies the last pass set, when they were all last set, and the epoch. Policies are not read back
/// from the kernel: all are set again every [`POLICY_REFRESH`] and in every new epoch, which restores any
/// deleted by hand (states are read back on every pass).
#[derive(Default)]
struct EspProgrammer {
    socket: Option<XfrmSocket>,
    policies: std::collections::BTreeSet<Policy>,
    policies_set_at: Option<Instant>,
    epoch: Option<u64>,
    /// Whether "no encryption section" was already logged.
    warned: bool,
    /// The kernel's expiry reports, which wake the loop for an early rekey.
    expiry: Option<ExpiryListener>,
    /// Every pair's generations by (port, this host's VTEP, the peer's), and their records for the store.
    pairs: EspPairs,
    records: BTreeMap<RecordKey, RecordValue>,
    /// This host's copy of the cluster's rotation schedule (`None`: not read from the state dir yet).
    schedule: Option<Schedule>,
}

impl Agent {
    fn run(&mut self, stop: &AtomicBool) {
        tracing::info!(store = ?self.store.kind(), host = %self.me, "overlay control plane starting");
        while !stop.load(Ordering::SeqCst) {
            self.wait_for_input();
            self.drain_notify();
            if self.esp.expiry.as_ref().is_some_and(|l| l.drain() > 0) {
                self.kernel_dirty = true;
            }
            self.drain_commands();
            let changes = self.store.step();
            self.apply(changes);
            let now = Instant::now();
            if now >= self.next_repair {
                // The safety pass: everything is read and compared again, which repairs what was changed
                // by hand (kernel entries, remote-name files, service copies, the state directory without
                // a poke). Between passes, work follows the changes only.
                self.local_dirty = true;
                self.kernel_dirty = true;
                self.claims_dirty = true;
                self.services_dirty = true;
                self.members_stale = true;
                self.remote_names = RemoteNames::default();
                self.peer_claims_written.clear();
                self.settle_all = true;
                self.full_due = true;
                self.next_repair = now + self.cfg.repair_interval;
            }
            if self.liveness_due && now >= self.next_liveness_pass {
                self.after_liveness_changed(now);
            }
            if self.services_retry.is_some_and(|at| now >= at) {
                self.services_dirty = true;
            }
            if self.encrypting() && now >= self.next_periodic {
                // Key epochs and rekeys are due by the clock, not by a change.
                self.local_dirty = true;
                self.kernel_dirty = true;
                self.next_periodic = now + self.cfg.reconcile_interval;
            }
            if self.local_dirty {
                self.rescan();
            }
            if self.claims_dirty && Instant::now() >= self.next_claims_pass {
                self.after_claims_changed();
                self.next_claims_pass = Instant::now() + CLAIMS_PASS_EVERY;
            }
            if self.kernel_dirty {
                self.reconcile();
            }
            if self.services_dirty {
                self.sync_services();
            }
            self.publish_status();
        }
        self.store.leave();
        tracing::info!("overlay control plane stopped");
    }

    fn apply(&mut self, changes: Changes) {
        self.kernel_dirty |= changes.kernel;
        self.claims_dirty |= changes.claims;
        self.local_dirty |= changes.local;
        self.services_dirty |= changes.services;
        self.liveness_due |= changes.members || changes.liveness_touched;
        self.liveness_full |= changes.members;
    }

    /// A host came or went: its records count again (they enter or leave the kernel; service VIPs and
    /// mesh replicas move): every record, unless the store marked that host's records touched. At most
    /// once per [`LIVENESS_PASS_EVERY`]: a fleet starting or stopping changes liveness hundreds of times
    /// a second, and a full pass goes over the whole table.
    fn after_liveness_changed(&mut self, now: Instant) {
        self.liveness_due = false;
        self.next_liveness_pass = now + LIVENESS_PASS_EVERY;
        self.full_due |= std::mem::take(&mut self.liveness_full);
        self.kernel_dirty = true;
        self.services_dirty = true;
        self.members_stale = true;
    }

    /// Whether a time-driven kernel pass runs every `reconcile_interval` (encrypted networks' epochs).
    fn encrypting(&self) -> bool {
        self.cfg.encryption.is_some() || self.networks.iter().any(|f| f.encrypted)
    }

    /// Sleeps until a socket is readable (the notify socket also carries `stop`'s wake-up) or the next
    /// timer is due: an idle plane does not wake at all between its timers.
    fn wait_for_input(&mut self) {
        let mut next = self.next_repair;
        if let Some(at) = self.store.next_due() {
            next = next.min(at);
        }
        if self.encrypting() {
            next = next.min(self.next_periodic);
        }
        if self.claims_dirty {
            next = next.min(self.next_claims_pass);
        }
        if let Some(at) = self.services_retry {
            next = next.min(at);
        }
        if self.liveness_due {
            next = next.min(self.next_liveness_pass);
        }
        let mut wait = next.saturating_duration_since(Instant::now());
        if self.kernel_dirty {
            // Still dirty after a pass: a kernel write failed; retried after the reconcile interval.
            wait = wait.min(self.cfg.reconcile_interval);
        }
        if self.local_dirty {
            // Own records changed in the last pass (an ESP generation): publish them without a nap.
            wait = Duration::ZERO;
        }
        let mut fds = vec![PollFd::new(self.notify.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = self.store.wait_fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if let Some(l) = &self.esp.expiry {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
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

    fn drain_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Forget { host, reply } => {
                    let result = self.store.forget(host);
                    if let Ok(n) = &result {
                        tracing::warn!(%host, records = n, "host forgotten on request: its blocks are free");
                        self.claims_dirty = true;
                        self.kernel_dirty = true;
                        self.tell_daemon(cluster_services::forget_host(&self.state_dir, host));
                    }
                    let _ = reply.send(result);
                }
                Command::Status { reply } => {
                    let changes = self.store.refresh_blocks();
                    self.apply(changes);
                    let _ = reply.send(self.cluster_status());
                }
                Command::Network { network, reply } => {
                    let changes = self.store.refresh_blocks();
                    self.apply(changes);
                    let _ = reply.send(self.network_view(network));
                }
                Command::Rotation { interval, reply } => {
                    let _ = reply.send(self.set_rotation(interval));
                }
            }
        }
    }

    fn network_view(&self, network: String) -> NetworkView {
        let store = &*self.store;
        let mut endpoints = Vec::new();
        let mut hosts = BTreeSet::new();
        for (key, value) in store.table().live().filter(|(k, _)| k.network() == network) {
            match (key, value) {
                (RecordKey::Endpoint { host, ip, .. }, RecordValue::Endpoint { mac, vtep, .. }) => {
                    endpoints.push(EndpointView {
                        host: *host,
                        ip: *ip,
                        mac: MacAddr::new(*mac),
                        vtep: *vtep,
                    })
                }
                (RecordKey::Claim { host, .. }, _) => {
                    hosts.insert(*host);
                }
                _ => {}
            }
        }
        let hosts = hosts
            .into_iter()
            .map(|host| Member {
                host,
                up: host == self.me || store.is_up(host),
            })
            .collect();
        NetworkView {
            network,
            host: self.me,
            endpoints,
            hosts,
        }
    }

    /// The whole cluster as this host sees it, for `tether cluster status`.
    fn cluster_status(&self) -> ClusterStatus {
        let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut records: BTreeMap<String, usize> = BTreeMap::new();
        for (key, _) in self.store.table().live() {
            match key {
                RecordKey::Claim {
                    host,
                    network,
                    block,
                } => blocks
                    .entry(host.to_string())
                    .or_default()
                    .push(format!("{network} {block}")),
                RecordKey::Endpoint { network, .. } => {
                    *records.entry(network.clone()).or_default() += 1
                }
                RecordKey::Service { .. }
                | RecordKey::Generation { .. }
                | RecordKey::Rotation { .. }
                | RecordKey::MeshCounts { .. } => {}
            }
        }
        let rotation = self.schedule().map(|schedule| {
            let now = std::time::SystemTime::now();
            let ms = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            RotationStatus {
                interval_s: schedule.in_force(ms).interval().as_secs_f64(),
                epoch: schedule.epoch_at(now),
                schedule,
            }
        });
        ClusterStatus {
            store: self.store.kind(),
            host: self.me,
            members: self.store.members(),
            blocks,
            records,
            sync: self.store.status(),
            rotation,
        }
    }

    /// The cluster's rotation schedule as this host counts it: its copy, or its config's before any.
    fn schedule(&self) -> Option<Schedule> {
        let enc = self.cfg.encryption.as_ref()?;
        Some(
            self.esp
                .schedule
                .unwrap_or_else(|| Schedule::configured(enc.rotation)),
        )
    }

    /// Keeps this host's copy of the rotation schedule equal to the greatest (latest set) copy any host
    /// holds; with none anywhere, this host's config enters the store (its first start).
    fn sync_rotation(&mut self) {
        let Some(enc) = &self.cfg.encryption else {
            return;
        };
        let mine = match self.esp.schedule {
            Some(s) => Some(s),
            None => esp_epoch::read_copy(&self.state_dir),
        };
        let best = self
            .store
            .table()
            .live()
            .filter_map(|(_, v)| match v {
                RecordValue::Rotation(s) => Some(*s),
                _ => None,
            })
            .chain(mine)
            .max()
            .unwrap_or_else(|| Schedule::configured(enc.rotation));
        if self.esp.schedule == Some(best) {
            return;
        }
        if best.current.interval_ms != enc.rotation.interval_ms {
            tracing::info!(cluster_ms = best.current.interval_ms, configured_ms = enc.rotation.interval_ms,
                "encrypted overlay: the cluster's rotation interval counts (the config's only enters an empty store)");
        }
        self.keep_schedule(best);
    }

    fn keep_schedule(&mut self, schedule: Schedule) {
        if let Err(e) = esp_epoch::write_copy(&self.state_dir, &schedule) {
            tracing::warn!(error = %e, "encrypted overlay: could not keep the rotation schedule's copy");
        }
        self.esp.schedule = Some(schedule);
        self.local_dirty = true;
        self.kernel_dirty = true;
    }

    /// `tether cluster rotation`: a new interval for the whole cluster, from the epoch after next.
    fn set_rotation(&mut self, interval: Duration) -> Result<Schedule, String> {
        let current = self.schedule().ok_or_else(|| {
            "this tetherd's config has no `overlay.encryption` section: it keeps no rotation"
                .to_string()
        })?;
        let schedule = current.with_interval(interval, std::time::SystemTime::now());
        tracing::info!(
            interval_ms = schedule.current.interval_ms,
            from_ms = schedule.current.anchor_ms,
            epoch = schedule.current.anchor_epoch,
            "encrypted overlay: rotation interval set for the cluster"
        );
        self.keep_schedule(schedule);
        Ok(schedule)
    }

    fn after_claims_changed(&mut self) {
        self.claims_dirty = false;
        let claims = peer_claims(self.store.table(), self.me);
        publish_peer_claims(&self.state_dir, &claims, &mut self.peer_claims_written);
        // Only a peer's claim of a block this host claims can clash (the repair pass looks anyway, for
        // lost claims whose block was emptied since): a fleet's claims are no work for the others.
        let look = std::mem::take(&mut self.settle_all) || clashes(&self.own_blocks, &claims);
        if look && settle_conflicts(&self.state_dir, self.me, &claims) {
            self.local_dirty = true;
        }
    }

    fn rescan(&mut self) {
        self.local_dirty = false;
        let answering = self.requested;
        let local = read_local(&self.state_dir, &self.run_dir, self.me);
        let names = |n: &[NetworkFacts]| n.iter().map(|f| f.network.clone()).collect::<Vec<_>>();
        if names(&local.networks) != names(&self.networks) {
            self.kernel_dirty = true;
            self.full_due = true;
        }
        self.networks = local.networks;
        let mut own = local.wanted;
        own.extend(self.esp.records.clone());
        if let Some(schedule) = self.esp.schedule {
            own.insert(
                RecordKey::Rotation { host: self.me },
                RecordValue::Rotation(schedule),
            );
        }
        let changes = self.store.publish(&own);
        self.apply(changes);
        let mut proposing = local.proposing;
        if self.store.claims_ahead() {
            proposing.extend(claim_ahead(&self.state_dir, self.me, &self.networks));
        }
        self.own_blocks.clear();
        let claimed = own.keys().filter_map(|k| match k {
            RecordKey::Claim { network, block, .. } => Some((network, *block)),
            _ => None,
        });
        let proposed = proposing.iter().map(|(c, _)| (&c.network, c.block));
        for (network, block) in claimed.chain(proposed) {
            self.own_blocks
                .entry(network.clone())
                .or_default()
                .insert(block);
        }
        self.proposing = proposing.len();
        self.store.propose(proposing);
        let (done, cv) = &*self.scanned;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = answering;
        cv.notify_all();
    }

    fn reconcile(&mut self) {
        self.kernel_dirty = false;
        let touched = self.store.take_touched();
        // Encryption keeps the whole pass: its states, policies and rotation are derived from all peers.
        let full = std::mem::take(&mut self.full_due)
            || self.cfg.encryption.is_some()
            || self.networks.iter().any(|f| f.encrypted)
            || self.networks.len() != self.wanted.len()
            || self
                .networks
                .iter()
                .any(|f| !self.wanted.contains_key(&f.network));
        if full {
            self.reconcile_all();
        } else {
            self.reconcile_changed(&touched);
        }
    }

    /// Takes in the records changed since the last pass: their kernel entries and remote names only.
    fn reconcile_changed(&mut self, touched: &BTreeSet<RecordKey>) {
        let store = &*self.store;
        for facts in &self.networks {
            let Some(wanted) = self.wanted.get_mut(&facts.network) else {
                continue;
            };
            let mut plan = reconcile::Plan::default();
            for key in touched
                .iter()
                .filter(|k| matches!(k, RecordKey::Endpoint { .. }) && k.network() == facts.network)
            {
                let value = store.table().get(key);
                wanted.update(facts, key, value, self.me, |h| store.is_up(h), &mut plan);
            }
            wanted.finish(&mut plan);
            match reconcile::apply_plan(&self.nl, facts, &plan) {
                Ok(n) => self.kernel_changes += n as u64,
                Err(e) => {
                    self.kernel_failures += 1;
                    tracing::warn!(network = %facts.network, error = %e, "overlay reconcile failed; retrying over every record");
                    self.kernel_dirty = true;
                    self.full_due = true;
                }
            }
        }
        let changed = self.remote_names.update(
            &self.state_dir,
            &self.networks,
            store.table(),
            self.me,
            |h| store.is_up(h),
            touched,
        );
        self.tell_daemon(changed);
    }

    fn reconcile_all(&mut self) {
        let store = &*self.store;
        self.wanted = self
            .networks
            .iter()
            .map(|facts| {
                let wanted = reconcile::Wanted::from_table(facts, store.table(), self.me, |h| {
                    store.is_up(h)
                });
                (facts.network.clone(), wanted)
            })
            .collect();
        let wants: Vec<(NetworkFacts, reconcile::Desired)> = self
            .networks
            .iter()
            .map(|facts| (facts.clone(), self.wanted[&facts.network].desired()))
            .collect();
        self.sync_rotation();
        let ready = self.program_esp(&wants);
        for (facts, mut want) in wants {
            if facts.encrypted {
                // Fail closed: a peer's FDB entries exist only once its states and policies do.
                reconcile::keep_only_peers(&mut want, |vtep| ready.contains(&(facts.port, vtep)));
            }
            match reconcile::apply(&self.nl, &facts, &want) {
                Ok(n) => self.kernel_changes += n as u64,
                Err(e) => {
                    self.kernel_failures += 1;
                    tracing::warn!(network = %facts.network, error = %e, "overlay reconcile failed; retrying");
                    self.kernel_dirty = true;
                    self.full_due = true;
                }
            }
        }
        let store = &*self.store;
        let changed = self.remote_names.sync(
            &self.state_dir,
            &self.networks,
            store.table(),
            self.me,
            |h| store.is_up(h),
        );
        self.tell_daemon(changed);
    }

    /// Other hosts' services into this host's service files, and own services off VIPs they lost.
    fn sync_services(&mut self) {
        self.services_dirty = false;
        // Gossip never knows its view complete (a missing record there is only one not heard of yet);
        // etcd does once it listed the prefix.
        let complete = self.store.status().last_sync_ms > 0;
        let outcome =
            cluster_services::sync(&self.state_dir, self.store.table(), self.me, complete);
        self.local_dirty |= outcome.own_moved;
        // A port held here is taken once freed: asked again every reconcile interval meanwhile.
        self.services_retry = outcome
            .ports_held_here
            .then(|| Instant::now() + self.cfg.reconcile_interval);
        self.tell_daemon(outcome.networks);
    }

    /// Tells tetherd that what it reads of `changed` networks (remote names, service files) changed.
    fn tell_daemon(&self, changed: BTreeSet<String>) {
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

    /// States and policies for every encrypted network's peers in this epoch; returns the (port, peer VTEP)
    /// pairs that are ready for traffic.
    fn program_esp(
        &mut self,
        wants: &[(NetworkFacts, reconcile::Desired)],
    ) -> BTreeSet<(u16, IpAddr)> {
        let mut ready = BTreeSet::new();
        let encrypted: Vec<_> = wants.iter().filter(|(f, _)| f.encrypted).collect();
        if encrypted.is_empty() && self.esp.policies.is_empty() && self.esp.epoch.is_some() {
            // Nothing encrypted here, and an earlier pass (the first one also clears what a previous
            // tetherd left) removed everything of ours.
            return ready;
        }
        let Some(enc) = self.cfg.encryption.clone() else {
            if !encrypted.is_empty() && !std::mem::replace(&mut self.esp.warned, true) {
                tracing::error!("encrypted overlay networks here but tetherd's config has no `overlay.encryption` section: their peers stay unreachable (never in clear)");
            }
            return ready;
        };
        let epoch = self
            .esp
            .schedule
            .unwrap_or_else(|| Schedule::configured(enc.rotation))
            .epoch_at(std::time::SystemTime::now());
        let stale = self
            .esp
            .policies_set_at
            .is_none_or(|at| at.elapsed() >= POLICY_REFRESH);
        if self.esp.epoch != Some(epoch) || stale {
            self.esp.epoch = Some(epoch);
            self.esp.policies.clear();
            self.esp.policies_set_at = Some(Instant::now());
        }
        let heard = heard_generations(self.store.table());
        let (ports, mut pairs) = self.esp_pairs(&encrypted, &heard);
        if !self.open_xfrm() {
            return ready;
        }
        let Some(sock) = &self.esp.socket else {
            return ready;
        };
        let listed = match sock.states() {
            Ok(listed) => listed,
            Err(e) => {
                self.kernel_failures += 1;
                self.kernel_dirty = true;
                tracing::warn!(error = %e, "encrypted overlay: listing IPsec states failed; retrying");
                return ready;
            }
        };
        let expired = esp_program::soft_expired(&listed);
        let wanted = esp_wanted(&enc, epoch, &ports, &mut pairs, &heard, &expired);
        let done = esp_program::apply(sock, &listed, &wanted, &self.esp.policies);
        if !done.errors.is_empty() {
            self.kernel_failures += 1;
            self.kernel_dirty = true;
            for e in &done.errors {
                tracing::warn!(error = %e, "encrypted overlay: IPsec programming failed; retrying");
            }
        }
        self.kernel_changes += done.changes as u64;
        // A pair acknowledges the peer's generation once every state receiving around it is in.
        for (&(port, _, peer), pair) in &mut pairs {
            let received = wanted
                .receiving
                .get(&(port, peer))
                .is_some_and(|ids| ids.iter().all(|id| done.states.contains(id)));
            if received {
                pair.received();
            }
            if pair.ready() && done.ready(&wanted, port, peer) {
                ready.insert((port, peer));
            }
        }
        self.esp.policies = done.policies;
        self.keep_pairs(pairs);
        ready
    }

    /// Every encrypted network's (VTEP, port), and its peers by (port, this host's VTEP, the peer's) with
    /// what the peer's record says of the pair taken in.
    fn esp_pairs(
        &self,
        encrypted: &[&(NetworkFacts, reconcile::Desired)],
        heard: &BTreeMap<(IpAddr, IpAddr, u16), generation::Heard>,
    ) -> (BTreeSet<(IpAddr, u16)>, EspPairs) {
        let mut ports = BTreeSet::new();
        let mut pairs = EspPairs::new();
        for (facts, want) in encrypted {
            ports.insert((facts.vtep, facts.port));
            for peer in want.fdb.iter().map(|e| e.dst) {
                let at = (facts.port, facts.vtep, peer);
                let mut pair = self.esp.pairs.get(&at).copied().unwrap_or_default();
                pair.hear(heard.get(&(peer, facts.vtep, facts.port)).copied());
                pairs.insert(at, pair);
            }
        }
        (ports, pairs)
    }

    /// Opens the NETLINK_XFRM socket (and the expiry listener) on first need; false when it cannot.
    fn open_xfrm(&mut self) -> bool {
        if self.esp.socket.is_some() {
            return true;
        }
        match XfrmSocket::open() {
            Ok(s) => self.esp.socket = Some(s),
            Err(e) => {
                self.kernel_failures += 1;
                self.kernel_dirty = true;
                tracing::warn!(error = %e, "encrypted overlay: no NETLINK_XFRM socket; retrying");
                return false;
            }
        }
        // Without it a rekey waits for the next reconcile: the state dump still shows the expiry.
        self.esp.expiry = ExpiryListener::open()
            .inspect_err(|e| tracing::warn!(error = %e, "encrypted overlay: no expiry reports"))
            .ok();
        true
    }

    /// Keeps the pairs for the next pass and publishes their generations if they changed.
    fn keep_pairs(&mut self, pairs: EspPairs) {
        let records: BTreeMap<RecordKey, RecordValue> = pairs
            .iter()
            .map(|(&(port, from, to), pair)| {
                let key = RecordKey::Generation {
                    host: self.me,
                    from,
                    to,
                    port,
                };
                let published = pair.published();
                let value = RecordValue::Generation {
                    send: published.send,
                    ack: published.ack,
                };
                (key, value)
            })
            .collect();
        self.esp.pairs = pairs;
        if records != self.esp.records {
            self.esp.records = records;
            self.local_dirty = true;
        }
    }

    fn publish_status(&mut self) {
        let sync = self.store.status();
        let members_up = std::mem::take(&mut self.members_stale).then(|| {
            let mut up: Vec<String> = self
                .store
                .members()
                .into_iter()
                .filter(|m| m.up)
                .map(|m| self.member_name(m.host))
                .collect();
            up.sort();
            up
        });
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.store = Some(self.store.kind());
        if let Some(up) = members_up {
            s.members_up = up;
        }
        s.records = self.store.table().len();
        s.endpoint_records = self.store.table().live_endpoints();
        s.networks = self.networks.iter().map(|f| f.network.clone()).collect();
        s.bytes_sent = sync.bytes_sent;
        s.bytes_received = sync.bytes_received;
        s.datagrams_rejected = sync.datagrams_rejected;
        s.kernel_changes = self.kernel_changes;
        s.kernel_failures = self.kernel_failures;
        s.claims_awaiting_agreement = self.proposing;
        s.store_reachable = sync.reachable;
    }

    /// How `membersUp` names a host: its control-plane address (the port is the same on every host).
    fn member_name(&self, host: IpAddr) -> String {
        SocketAddr::new(host, self.cfg.bind.port()).to_string()
    }
}
