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
use super::config::{PeerConfig, StoreConfig};
use super::error::OverlayError;
use super::etcd::EtcdStore;
use super::gossip::GossipStore;
use super::ipsec::{plan as esp_plan, program as esp_program};
use super::local::{claim_ahead, peer_claims, publish_peer_claims, read_local, settle_conflicts};
use super::reconcile;
use super::records::{RecordKey, RecordValue};
use super::remote_names;
use super::store::{Changes, ClusterStore, Member, StoreKind, StoreStatus};
use crate::client::notify;
use crate::client::protocol::Request;
use crate::link::xfrm::{Policy, XfrmSocket};
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
    pub ip: std::net::Ipv4Addr,
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
            members_stale: true,
            status: status.clone(),
            kernel_changes: 0,
            kernel_failures: 0,
            proposing: 0,
            requested: 0,
            scanned: scanned.clone(),
            commands: command_rx,
            esp: EspProgrammer::default(),
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

/// The plane's own state around the store.
struct Agent {
    cfg: PeerConfig,
    me: IpAddr,
    state_dir: PathBuf,
    run_dir: PathBuf,
    notify: UnixDatagram,
    nl: Netlink,
    store: Box<dyn ClusterStore>,
    next_periodic: Instant,
    networks: Vec<NetworkFacts>,
    local_dirty: bool,
    kernel_dirty: bool,
    claims_dirty: bool,
    /// Service records changed (or the periodic pass): the service files' copies are due.
    services_dirty: bool,
    /// Liveness may have changed since `membersUp` was last listed (every liveness change marks the
    /// kernel dirty too): listing and naming every member on each wake-up cost O(hosts) ten times a second.
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
}

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
}

impl Agent {
    fn run(&mut self, stop: &AtomicBool) {
        tracing::info!(store = ?self.store.kind(), host = %self.me, "overlay control plane starting");
        while !stop.load(Ordering::SeqCst) {
            self.wait_for_input();
            self.drain_notify();
            self.drain_commands();
            let changes = self.store.step();
            self.apply(changes);
            if Instant::now() >= self.next_periodic {
                self.local_dirty = true;
                self.kernel_dirty = true;
                self.services_dirty = true;
                self.members_stale = true;
                self.next_periodic = Instant::now() + self.cfg.reconcile_interval;
            }
            if self.local_dirty {
                self.rescan();
            }
            if self.claims_dirty {
                self.after_claims_changed();
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
        self.members_stale |= changes.kernel;
        self.claims_dirty |= changes.claims;
        self.local_dirty |= changes.local;
        self.services_dirty |= changes.services;
    }

    /// Sleeps until a socket is readable or the next timer is due (at most 100 ms, to see `stop`).
    fn wait_for_input(&mut self) {
        let next = self
            .store
            .next_due()
            .map_or(self.next_periodic, |at| at.min(self.next_periodic));
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        let mut fds = vec![PollFd::new(self.notify.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = self.store.wait_fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
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
                    let _ = reply.send(self.cluster_status());
                }
                Command::Network { network, reply } => {
                    let _ = reply.send(self.network_view(network));
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
                RecordKey::Service { .. } | RecordKey::MeshCounts { .. } => {}
            }
        }
        ClusterStatus {
            store: self.store.kind(),
            host: self.me,
            members: self.store.members(),
            blocks,
            records,
            sync: self.store.status(),
        }
    }

    fn after_claims_changed(&mut self) {
        self.claims_dirty = false;
        let claims = peer_claims(self.store.table(), self.me);
        publish_peer_claims(&self.state_dir, &claims);
        if settle_conflicts(&self.state_dir, self.me, &claims) {
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
        }
        self.networks = local.networks;
        let changes = self.store.publish(&local.wanted);
        self.apply(changes);
        let mut proposing = local.proposing;
        if self.store.claims_ahead() {
            proposing.extend(claim_ahead(&self.state_dir, self.me, &self.networks));
        }
        self.proposing = proposing.len();
        self.store.propose(proposing);
        let (done, cv) = &*self.scanned;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = answering;
        cv.notify_all();
    }

    fn reconcile(&mut self) {
        self.kernel_dirty = false;
        let store = &*self.store;
        let wants: Vec<(NetworkFacts, reconcile::Desired)> = self
            .networks
            .iter()
            .map(|facts| {
                let want = reconcile::desired(facts, store.table(), self.me, |h| store.is_up(h));
                (facts.clone(), want)
            })
            .collect();
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
                }
            }
        }
        let store = &*self.store;
        let changed = remote_names::sync(
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
        let Some(enc) = &self.cfg.encryption else {
            if !encrypted.is_empty() && !std::mem::replace(&mut self.esp.warned, true) {
                tracing::error!("encrypted overlay networks here but tetherd's config has no `overlay.encryption` section: their peers stay unreachable (never in clear)");
            }
            return ready;
        };
        let epoch = enc.rotation.epoch_at(std::time::SystemTime::now());
        let stale = self
            .esp
            .policies_set_at
            .is_none_or(|at| at.elapsed() >= POLICY_REFRESH);
        if self.esp.epoch != Some(epoch) || stale {
            self.esp.epoch = Some(epoch);
            self.esp.policies.clear();
            self.esp.policies_set_at = Some(Instant::now());
        }
        // Per VTEP, per port: the peers' VTEPs (an empty set still wants the port's block policy).
        let mut peers: BTreeMap<IpAddr, BTreeMap<u16, BTreeSet<IpAddr>>> = BTreeMap::new();
        for (facts, want) in &encrypted {
            peers
                .entry(facts.vtep)
                .or_default()
                .entry(facts.port)
                .or_default()
                .extend(want.fdb.iter().map(|e| e.dst));
        }
        let mut wanted = esp_plan::Wanted::default();
        for (vtep, ports) in &peers {
            let w = esp_plan::wanted(&enc.key, *vtep, ports, epoch);
            wanted.states.extend(w.states);
            wanted.policies.extend(w.policies);
            wanted.needs.extend(w.needs);
        }
        if self.esp.socket.is_none() {
            match XfrmSocket::open() {
                Ok(s) => self.esp.socket = Some(s),
                Err(e) => {
                    self.kernel_failures += 1;
                    self.kernel_dirty = true;
                    tracing::warn!(error = %e, "encrypted overlay: no NETLINK_XFRM socket; retrying");
                    return ready;
                }
            }
        }
        let Some(sock) = &self.esp.socket else {
            return ready;
        };
        let done = esp_program::apply(sock, &wanted, &self.esp.policies);
        if !done.errors.is_empty() {
            self.kernel_failures += 1;
            self.kernel_dirty = true;
            for e in &done.errors {
                tracing::warn!(error = %e, "encrypted overlay: IPsec programming failed; retrying");
            }
        }
        self.kernel_changes += done.changes as u64;
        for (port, peer) in wanted.needs.keys() {
            if done.ready(&wanted, *port, *peer) {
                ready.insert((*port, *peer));
            }
        }
        self.esp.policies = done.policies;
        ready
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
