//! The balancer as a tetherd service: from the service files and the attachment records it keeps, in
//! every client namespace of a network with services, table `inet tether_svc` (firewall::service_balance)
//! in step with the healthy backends; probes backends; and hands the resolver the service names.
//!
//! Every change (a record, a service file, a probe verdict) ends in [`Balancer::reconcile`], which works
//! out per namespace the few element changes and sends them as one transaction. A backend that leaves has
//! its UDP flows' conntrack entries deleted in each client's namespace at the same time.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use ipnetwork::IpNetwork;
use serde_json::{json, Value};

use super::backends::{backends_of, Backend, BackendId};
use super::health::{self, Health, HealthState, Probe};
use crate::daemon::{RecordSnapshot, Service, ServiceContext};
use crate::dns::service_names::{ServiceEntry, SharedServiceNames};
use crate::firewall::netlink::ruleset::Change;
use crate::firewall::service_balance::{self, BalanceTable, ServiceKey};
use crate::netns::{NsId, NsWorker};
use crate::state::service::{
    backend_health_path, read_healthy_backends, HealthCheck, HealthyBackend, Mode, ProtocolName,
    ServiceDir, ServiceRange, ServiceSpec,
};
use crate::state::AttachmentRecord;

/// How often the probe loop wakes to see which backends are due.
const PROBE_TICK: Duration = Duration::from_millis(50);
/// A probe's budget (less when the service's interval is shorter).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    joins: u64,
    leaves: u64,
    probes: u64,
    probe_failures: u64,
    udp_flows_cleared: u64,
}

struct BackendHealth {
    state: HealthState,
    next_due: Instant,
}

/// A client namespace that needs service maps: its path, its networks with services, and (ifname, has
/// IPv6) of its interfaces on them.
type WantedClient = (String, Vec<String>, Vec<(String, bool)>);

/// What tetherd keeps of one client namespace.
struct ClientNs {
    path: String,
    /// Its networks that have services, as last synced.
    nets: Vec<String>,
    table: BalanceTable,
}

struct Balancer {
    state_dir: PathBuf,
    worker: Option<NsWorker>,
    range: ServiceRange,
    specs: Vec<ServiceSpec>,
    specs_stamp: Option<SystemTime>,
    /// The services changed since the last reconcile.
    specs_dirty: bool,
    records: Vec<AttachmentRecord>,
    health: HashMap<(String, BackendId), BackendHealth>,
    /// Per service, its backends (healthy or not) as the records say.
    backends: HashMap<String, Vec<Backend>>,
    /// Per service, the backend addresses in its maps now.
    active: HashMap<String, Vec<IpAddr>>,
    counters: HashMap<String, Counters>,
    clients: HashMap<NsId, ClientNs>,
    /// The identity behind each record's netns path, so a change stats only new paths.
    ns_ids: HashMap<PathBuf, NsId>,
    /// `<run>/balancer-health.json`: the healthy backends, kept so a restarted tetherd leaves in what the
    /// one before it had in (see `HealthState::assumed_healthy`).
    health_file: PathBuf,
    /// Read from that file at start, taken as each backend is seen again.
    assumed: HashSet<(String, BackendId)>,
    /// What the file holds now.
    saved: Vec<(String, BackendId)>,
    /// Backends being drained before their detach (`tether detach --drain`): out of every map and of the
    /// healthy list, whatever their probes say, until their record goes.
    draining: HashSet<BackendId>,
    names: SharedServiceNames,
    /// The routing mesh: published ports on this host, fed the healthy backends after each reconcile.
    mesh: super::mesh::MeshPorts,
}

pub struct BalancerService {
    inner: Rc<tokio::sync::Mutex<Balancer>>,
    prober: Option<tokio::task::JoinHandle<()>>,
    /// Wakes the probe loop, which sleeps while no service has a health check (an idle tetherd does not
    /// tick every [`PROBE_TICK`]).
    probes_changed: Rc<tokio::sync::Notify>,
    /// Wakes the status refresh, which sleeps while the balancer is idle (no service, nothing of the mesh):
    /// then nothing it shows can change before an update, and a host without services has two wake-ups a
    /// second less.
    updated: Rc<tokio::sync::Notify>,
    /// For `needed` and `status`, which cannot wait for the lock.
    summary: Rc<std::cell::RefCell<(bool, Value)>>,
}

/// `{"drain": [{"containerId", "ifname"}]}`: the backends `tether detach --drain` is about to detach.
#[derive(Debug, serde::Deserialize)]
struct DrainCommand {
    drain: Vec<BackendId>,
}

impl BalancerService {
    /// `names` is shared with the resolver (`DnsService::with_service_names`).
    pub fn new(names: SharedServiceNames) -> BalancerService {
        BalancerService {
            inner: Rc::new(tokio::sync::Mutex::new(Balancer {
                state_dir: PathBuf::new(),
                worker: None,
                range: ServiceRange::default(),
                specs: Vec::new(),
                specs_stamp: None,
                specs_dirty: false,
                records: Vec::new(),
                health: HashMap::new(),
                backends: HashMap::new(),
                active: HashMap::new(),
                counters: HashMap::new(),
                clients: HashMap::new(),
                ns_ids: HashMap::new(),
                health_file: PathBuf::new(),
                assumed: HashSet::new(),
                saved: Vec::new(),
                draining: HashSet::new(),
                names,
                mesh: Default::default(),
            })),
            prober: None,
            probes_changed: Rc::default(),
            updated: Rc::default(),
            summary: Rc::default(),
        }
    }
}

impl Balancer {
    /// Re-reads the service files when their directory changed; marks `specs_dirty` when they differ.
    fn reload_specs(&mut self) {
        let dir = ServiceDir::new(&self.state_dir);
        let stamp = dir.stamp();
        if stamp.is_some() && stamp == self.specs_stamp {
            return;
        }
        self.specs_stamp = stamp;
        match dir.list() {
            Ok(specs) if specs != self.specs => {
                self.specs = specs;
                self.specs_dirty = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading service files"),
        }
    }

    /// Whether the backend takes new connections. Another host's: while its host lists it in its record
    /// in the cluster store (that host probes it, and drains it). This host's: not while draining; then
    /// every one of a service without checks, else by its probes here.
    fn is_healthy(&self, spec: &ServiceSpec, backend: &Backend) -> bool {
        if let Some(remote) = &backend.remote {
            return remote.healthy_for.iter().any(|s| s == &spec.name);
        }
        if self.draining.contains(&backend.id) {
            return false;
        }
        spec.health == HealthCheck::None
            || self
                .health
                .get(&(spec.name.clone(), backend.id.clone()))
                .is_some_and(|h| h.state.health == Health::Healthy)
    }

    /// Brings names, maps and health bookkeeping in line with the specs, records and verdicts.
    async fn reconcile(&mut self) {
        self.reload_specs();
        let specs_changed = std::mem::take(&mut self.specs_dirty);
        let now = Instant::now();
        // The records by network and name, once: a service's backends are then one lookup, not a scan
        // of every record per service.
        let mut by_name: HashMap<(&str, String), Vec<&AttachmentRecord>> = HashMap::new();
        for r in &self.records {
            for n in r.name.iter().chain(r.aliases.iter()) {
                let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
                by_name.entry((r.network.as_str(), n)).or_default().push(r);
            }
        }
        let backends: HashMap<String, Vec<Backend>> = self
            .specs
            .iter()
            .map(|spec| {
                let key = (spec.network.as_str(), spec.name.to_ascii_lowercase());
                let candidates = by_name.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                (
                    spec.name.clone(),
                    backends_of(spec, candidates.iter().copied()),
                )
            })
            .collect();
        drop(by_name);
        let known: HashSet<(String, BackendId)> = backends
            .iter()
            .flat_map(|(name, list)| list.iter().map(|b| (name.clone(), b.id.clone())))
            .collect();
        for key in &known {
            if !self.health.contains_key(key) {
                let state = if self.assumed.remove(key) {
                    HealthState::assumed_healthy()
                } else {
                    HealthState::default()
                };
                self.health.insert(
                    key.clone(),
                    BackendHealth {
                        state,
                        next_due: now,
                    },
                );
            }
        }
        self.health.retain(|key, _| known.contains(key));
        self.draining
            .retain(|id| known.iter().any(|(_, known_id)| known_id == id));
        let mut entries = Vec::new();
        let mut active: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for spec in &self.specs {
            let addrs: Vec<IpAddr> = backends[&spec.name]
                .iter()
                .filter(|b| self.is_healthy(spec, b))
                .flat_map(|b| b.addresses.iter().copied())
                .collect();
            entries.push(ServiceEntry {
                network: spec.network.clone(),
                name: spec.name.clone(),
                vips: match spec.mode {
                    Mode::Vip => spec.vips.clone(),
                    Mode::Dnsrr => Vec::new(),
                },
                backends: addrs.clone(),
            });
            active.insert(spec.name.clone(), addrs);
        }
        let mut dirty = HashSet::new();
        for (name, addrs) in &active {
            let before = self.active.get(name).cloned().unwrap_or_default();
            if &before != addrs {
                dirty.insert(name.clone());
            }
            let c = self.counters.entry(name.clone()).or_default();
            c.joins += addrs.iter().filter(|a| !before.contains(a)).count() as u64;
            c.leaves += before.iter().filter(|a| !addrs.contains(a)).count() as u64;
        }
        self.counters.retain(|name, _| active.contains_key(name));
        self.active = active;
        self.backends = backends;
        self.save_health();
        self.names.borrow_mut().set(&entries);
        self.sync_clients(&dirty, specs_changed).await;
        let mesh_backends =
            super::mesh::backends_by_host(&self.active, &self.records, super::mesh::overlay_egress);
        let hosts = super::mesh::mesh_hosts(&self.records);
        self.mesh.sync(&mesh_backends, &hosts);
    }

    /// Each client namespace of a network with VIP services gets the maps of those services.
    /// A client already in step is only touched when a service of its networks is in `dirty` (its
    /// backends changed), when the services themselves changed, or when its own networks did.
    async fn sync_clients(&mut self, dirty: &HashSet<String>, specs_changed: bool) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let vip_specs: Vec<&ServiceSpec> = self
            .specs
            .iter()
            .filter(|s| s.mode == Mode::Vip && !s.vips.is_empty())
            .collect();
        let networks: HashSet<&str> = vip_specs.iter().map(|s| s.network.as_str()).collect();
        let wanted = wanted_clients(&self.records, &networks, &mut self.ns_ids);
        drop_departed(&mut self.clients, &wanted, &worker).await;
        for (id, (path, nets, ifaces)) in wanted {
            let fresh = !self.clients.contains_key(&id);
            let client = self.clients.entry(id).or_insert_with(|| ClientNs {
                path: path.clone(),
                nets: Vec::new(),
                table: BalanceTable::default(),
            });
            let mut nets = nets;
            nets.sort();
            nets.dedup();
            let touched = vip_specs
                .iter()
                .any(|s| dirty.contains(&s.name) && nets.contains(&s.network));
            if !fresh && !specs_changed && !touched && client.nets == nets {
                continue;
            }
            client.nets = nets.clone();
            let specs: Vec<&ServiceSpec> = vip_specs
                .iter()
                .filter(|s| nets.contains(&s.network))
                .copied()
                .collect();
            let (changes, forget) = client_changes(client, fresh, &specs, &self.active);
            if changes.is_empty() && forget.is_empty() {
                continue;
            }
            let range = self.range;
            let job = move || -> Result<u64, String> {
                if fresh {
                    add_routes(&range, &ifaces);
                }
                service_balance::apply(&changes, "updating service maps")
                    .map_err(|e| e.to_string())?;
                Ok(forget_departed_flows(forget))
            };
            match worker.run_in(Path::new(&path), job).await {
                Ok(Ok(cleared)) => {
                    if cleared > 0 {
                        tracing::debug!(netns = %path, cleared, "UDP flows of departed backends cleared");
                    }
                    for spec in &specs {
                        if let Some(c) = self.counters.get_mut(&spec.name) {
                            c.udp_flows_cleared += cleared;
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(netns = %path, error = %e, "service maps not updated");
                    // Start over in that namespace next time.
                    self.clients.remove(&id);
                }
                Err(e) => {
                    tracing::warn!(netns = %path, error = %e, "service maps not updated");
                    self.clients.remove(&id);
                }
            }
        }
    }

    /// Writes this host's backends that are in their services' maps (healthy, or of a service without
    /// checks; not draining) when they changed, and tells the overlay control plane: it publishes them
    /// with this host's endpoints, and other hosts balance over a backend of this one only while it is
    /// listed.
    fn save_health(&mut self) {
        let mut healthy: Vec<(String, BackendId)> = self
            .specs
            .iter()
            .flat_map(|spec| {
                self.backends
                    .get(&spec.name)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.remote.is_none() && self.is_healthy(spec, b))
                    .map(|b| (spec.name.clone(), b.id.clone()))
            })
            .collect();
        healthy.sort();
        if healthy == self.saved || self.health_file.as_os_str().is_empty() {
            return;
        }
        let doc: Vec<HealthyBackend> = healthy
            .iter()
            .map(|(service, id)| HealthyBackend {
                service: service.clone(),
                container_id: id.container_id.clone(),
                ifname: id.ifname.clone(),
            })
            .collect();
        match crate::state_file::write_json(&self.health_file, &doc) {
            Ok(()) => {
                self.saved = healthy;
                crate::client::poke::poke_control_plane();
            }
            Err(e) => tracing::warn!(error = %e, "saving backend health"),
        }
    }

    /// The healthy backends the tetherd before this one saved.
    fn load_health(&mut self, run_dir: &Path) {
        self.assumed = read_healthy_backends(run_dir)
            .into_iter()
            .map(|h| {
                let id = BackendId {
                    container_id: h.container_id,
                    ifname: h.ifname,
                };
                (h.service, id)
            })
            .collect();
    }

    /// Whether some backend has a health check to run.
    fn probing(&self) -> bool {
        !self.health.is_empty()
            && self
                .specs
                .iter()
                .any(|s| s.health != HealthCheck::None && s.probe_port().is_some())
    }

    /// The probes due now, each marked as run.
    fn due_probes(&mut self) -> Vec<((String, BackendId), Probe)> {
        let now = Instant::now();
        let mut due = Vec::new();
        for spec in &self.specs {
            let Some(port) = spec.probe_port() else {
                continue;
            };
            if spec.health == HealthCheck::None {
                continue;
            }
            let interval = spec.health_timing.interval();
            // A draining backend is on its way out: its probes would only hold connections the drain
            // waits for.
            for b in self
                .backends
                .get(&spec.name)
                .into_iter()
                .flatten()
                .filter(|b| !self.draining.contains(&b.id))
            {
                let key = (spec.name.clone(), b.id.clone());
                let Some(h) = self.health.get_mut(&key) else {
                    continue;
                };
                let (Some(netns), Some(addr)) = (b.netns.clone(), b.addresses.first().copied())
                else {
                    continue;
                };
                if h.next_due > now {
                    continue;
                }
                h.next_due = now + interval;
                due.push((
                    key,
                    Probe {
                        netns: PathBuf::from(netns),
                        addr,
                        port,
                        check: spec.health.clone(),
                        timeout: interval.min(PROBE_TIMEOUT),
                    },
                ));
            }
        }
        due
    }

    /// Counts probe results; true when some backend's verdict changed.
    fn record_results(&mut self, results: Vec<((String, BackendId), bool)>) -> bool {
        let mut changed = false;
        for ((service, id), passed) in results {
            let Some(spec) = self.specs.iter().find(|s| s.name == service) else {
                continue;
            };
            let timing = spec.health_timing;
            let c = self.counters.entry(service.clone()).or_default();
            c.probes += 1;
            c.probe_failures += u64::from(!passed);
            if let Some(h) = self.health.get_mut(&(service.clone(), id.clone())) {
                if h.state.record(passed, &timing) {
                    tracing::info!(service, backend = %id.container_id, health = h.state.health.name(), "backend health changed");
                    changed = true;
                }
            }
        }
        changed
    }

    fn status(&self) -> Value {
        let services: serde_json::Map<String, Value> = self
            .specs
            .iter()
            .map(|spec| {
                let backends: serde_json::Map<String, Value> = self
                    .backends
                    .get(&spec.name)
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        let health = if self.draining.contains(&b.id) {
                            "draining"
                        } else if self.is_healthy(spec, b) {
                            "healthy"
                        } else if b.remote.is_some() {
                            "unhealthy"
                        } else {
                            self.health
                                .get(&(spec.name.clone(), b.id.clone()))
                                .map(|h| h.state.health.name())
                                .unwrap_or("starting")
                        };
                        (
                            format!("{}/{}", b.id.container_id, b.id.ifname),
                            json!({"health": health}),
                        )
                    })
                    .collect();
                let c = self.counters.get(&spec.name).copied().unwrap_or_default();
                (
                    spec.name.clone(),
                    json!({
                        "backends": backends,
                        "counters": {
                            "activeBackends": self.active.get(&spec.name).map_or(0, Vec::len),
                            "joins": c.joins,
                            "leaves": c.leaves,
                            "probes": c.probes,
                            "probeFailures": c.probe_failures,
                            "udpFlowsCleared": c.udp_flows_cleared,
                        },
                    }),
                )
            })
            .collect();
        json!({"clientNamespaces": self.clients.len(), "services": services})
    }

    /// Whether any service has a network with containers (its names and probes need serving).
    /// No service, no client, no record on a service's network, nothing of the mesh published or installed.
    fn idle(&mut self) -> bool {
        self.specs.is_empty()
            && self.clients.is_empty()
            && self.records.is_empty()
            && self.mesh.idle()
    }

    fn needed(&mut self) -> bool {
        self.mesh.publishes()
            || self
                .specs
                .iter()
                .any(|s| self.records.iter().any(|r| r.network == s.network))
    }
}

/// The client namespaces the records name on `networks`, by identity (a path is stat'ed once, and forgotten
/// when no record names it any more).
fn wanted_clients(
    records: &[AttachmentRecord],
    networks: &HashSet<&str>,
    ns_ids: &mut HashMap<PathBuf, NsId>,
) -> HashMap<NsId, WantedClient> {
    let mut wanted: HashMap<NsId, WantedClient> = HashMap::new();
    for rec in records {
        if !networks.contains(rec.network.as_str()) {
            continue;
        }
        let Some(path) = rec.netns.as_deref() else {
            continue;
        };
        let id = match ns_ids.get(path) {
            Some(id) => *id,
            None => {
                let Some(id) = NsId::of_path(path) else {
                    continue; // gone already
                };
                ns_ids.insert(path.to_path_buf(), id);
                id
            }
        };
        let entry = wanted
            .entry(id)
            .or_insert_with(|| (path.display().to_string(), Vec::new(), Vec::new()));
        entry.1.push(rec.network.clone());
        entry
            .2
            .push((rec.ifname.to_string(), rec.ips.iter().any(|n| n.is_ipv6())));
    }
    let live: HashSet<&Path> = records.iter().filter_map(|r| r.netns.as_deref()).collect();
    ns_ids.retain(|path, _| live.contains(path.as_path()));
    wanted
}

/// Clients no longer wanted lose their table (a namespace that is gone took its table with it).
async fn drop_departed(
    clients: &mut HashMap<NsId, ClientNs>,
    wanted: &HashMap<NsId, WantedClient>,
    worker: &NsWorker,
) {
    let departed: Vec<NsId> = clients
        .keys()
        .filter(|id| !wanted.contains_key(id))
        .copied()
        .collect();
    for id in departed {
        if let Some(client) = clients.remove(&id) {
            if NsId::of_path(Path::new(&client.path)) == Some(id) {
                let _ = worker
                    .run_in(Path::new(&client.path), service_balance::remove)
                    .await;
            }
        }
    }
}

/// UDP backends that left, with the VIPs whose flows to them go.
type DepartedUdp = Vec<(Vec<IpAddr>, IpAddr)>;

/// One client's element changes for `specs` (the services of its networks), and its departed UDP backends.
fn client_changes(
    client: &mut ClientNs,
    fresh: bool,
    specs: &[&ServiceSpec],
    active: &HashMap<String, Vec<IpAddr>>,
) -> (Vec<Change>, DepartedUdp) {
    let mut changes = if fresh {
        client.table.install()
    } else {
        Vec::new()
    };
    let mut wanted_keys = HashSet::new();
    let mut vips = HashSet::new();
    let mut forget = DepartedUdp::new();
    for spec in specs {
        let backends = active.get(&spec.name).cloned().unwrap_or_default();
        let affinity = spec.affinity == crate::state::service::Affinity::Client;
        for vip in &spec.vips {
            vips.insert(*vip);
            for port in &spec.ports {
                let key = ServiceKey {
                    vip: *vip,
                    protocol: port.protocol.protocol(),
                    port: port.port,
                };
                wanted_keys.insert(key);
                let (c, gone) = client.table.set_backends(key, affinity, &backends);
                changes.extend(c);
                if port.protocol == ProtocolName::Udp {
                    forget.extend(gone.into_iter().map(|b| (spec.vips.clone(), b)));
                }
            }
        }
    }
    let stale: Vec<ServiceKey> = client
        .table
        .keys()
        .filter(|k| !wanted_keys.contains(k))
        .copied()
        .collect();
    for key in stale {
        changes.extend(client.table.remove_service(&key));
    }
    changes.extend(client.table.set_vips(&vips));
    (changes, forget)
}

/// Run in the client's namespace: deletes the UDP flows to departed backends; returns how many went.
fn forget_departed_flows(forget: DepartedUdp) -> u64 {
    let mut cleared = 0;
    for (vips, backend) in forget {
        match crate::firewall::conntrack::forget_udp_flows(&vips, backend) {
            Ok(n) => cleared += n as u64,
            Err(e) => tracing::warn!(error = %e, %backend, "clearing UDP flows"),
        }
    }
    cleared
}

/// Routes the service ranges out of the client's interface on a service network, so a connect to a VIP
/// finds a route (an `--internal` network or a macvlan without gateway has no default route); the
/// output hook then DNATs it to a backend before it leaves. Runs inside the client's namespace.
fn add_routes(range: &ServiceRange, ifaces: &[(String, bool)]) {
    let Ok(netlink) = crate::link::Netlink::new() else {
        return;
    };
    let Some((ifname, has_v6)) = ifaces.first() else {
        return;
    };
    let Ok(Some(link)) = netlink.link_by_name(ifname) else {
        return;
    };
    let mut dsts = vec![IpNetwork::V4(range.v4)];
    if *has_v6 || ifaces.iter().any(|(_, v6)| *v6) {
        dsts.push(IpNetwork::V6(range.v6));
    }
    for dst in dsts {
        match netlink.add_route(dst, None, Some(link.index), None) {
            Ok(()) | Err(crate::link::LinkError::Exists { .. }) => {}
            Err(e) => tracing::warn!(error = %e, %dst, "adding the service route"),
        }
    }
}

/// Probes what is due, forever; a changed verdict reconciles at once. Sleeps until `changed` while there
/// is nothing to probe.
async fn probe_loop(
    inner: Rc<tokio::sync::Mutex<Balancer>>,
    worker: NsWorker,
    changed: Rc<tokio::sync::Notify>,
) {
    let mut tick = tokio::time::interval(PROBE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !inner.lock().await.probing() {
            // A permit stored by a notify meanwhile wakes this at once: no change is missed.
            changed.notified().await;
            tick.reset_immediately();
            continue;
        }
        tick.tick().await;
        let due = inner.lock().await.due_probes();
        if due.is_empty() {
            continue;
        }
        let results = futures::future::join_all(due.into_iter().map(|(key, probe)| {
            let worker = worker.clone();
            async move { (key, health::run(&worker, probe).await) }
        }))
        .await;
        let mut b = inner.lock().await;
        if b.record_results(results) {
            b.reconcile().await;
        }
    }
}

impl BalancerService {
    async fn update(&mut self, records: &RecordSnapshot) {
        let mut b = self.inner.lock().await;
        b.reload_specs();
        if b.idle() {
            // No services: a notify costs nothing here, however many containers there are.
            *self.summary.borrow_mut() = (false, b.status());
            return;
        }
        let networks: HashSet<&str> = b.specs.iter().map(|s| s.network.as_str()).collect();
        let kept: Vec<AttachmentRecord> = records
            .iter()
            .filter(|r| networks.contains(r.network.as_str()))
            .cloned()
            .collect();
        b.records = kept;
        b.reconcile().await;
        *self.summary.borrow_mut() = (b.needed(), b.status());
        self.probes_changed.notify_one();
        self.updated.notify_one();
    }
}

impl Service for BalancerService {
    fn name(&self) -> &'static str {
        "balancer"
    }

    fn start<'a>(&'a mut self, ctx: &'a ServiceContext) -> LocalBoxFuture<'a, Result<(), String>> {
        async move {
            let range = ServiceRange::from_env()?;
            {
                let mut b = self.inner.lock().await;
                b.state_dir = ctx.state_dir.clone();
                b.worker = Some(ctx.ns_worker.clone());
                b.range = range;
                b.health_file = backend_health_path(&ctx.run_dir);
                b.mesh = super::mesh::MeshPorts::new(&ctx.state_dir);
                b.load_health(&ctx.run_dir);
            }
            let inner = self.inner.clone();
            let summary = self.summary.clone();
            let worker = ctx.ns_worker.clone();
            let probes_changed = self.probes_changed.clone();
            let updated = self.updated.clone();
            self.prober = Some(tokio::task::spawn_local(async move {
                let refresh = async {
                    // Keeps `status` current while probes change verdicts between record changes.
                    let mut tick = tokio::time::interval(Duration::from_millis(500));
                    loop {
                        tick.tick().await;
                        let idle = {
                            let mut b = inner.lock().await;
                            b.mesh.tick();
                            *summary.borrow_mut() = (b.needed(), b.status());
                            b.idle()
                        };
                        if idle {
                            // A permit stored by an update meanwhile wakes this at once.
                            updated.notified().await;
                            tick.reset_immediately();
                        }
                    }
                };
                futures::future::join(probe_loop(inner.clone(), worker, probes_changed), refresh)
                    .await;
            }));
            Ok(())
        }
        .boxed_local()
    }

    fn on_records_changed<'a>(
        &'a mut self,
        records: &'a RecordSnapshot,
        _ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        self.update(records).boxed_local()
    }

    fn needed(&self, _records: &RecordSnapshot) -> bool {
        self.summary.borrow().0
    }

    fn on_namespaces_gone(&mut self, gone: &[NsId]) {
        if let Ok(mut b) = self.inner.try_lock() {
            for id in gone {
                b.clients.remove(id);
            }
        }
    }

    fn stop<'a>(&'a mut self) -> LocalBoxFuture<'a, ()> {
        async move {
            if let Some(task) = self.prober.take() {
                task.abort();
            }
        }
        .boxed_local()
    }

    fn status(&self) -> Value {
        self.summary.borrow().1.clone()
    }

    /// `{"drain": [...]}`: the backends leave every map now (their existing flows stay: conntrack keeps
    /// them); `tether detach --drain` waits for `draining` in the status before it waits for the flows.
    fn command(&mut self, command: &Value) -> Result<Value, String> {
        let DrainCommand { drain } = serde_json::from_value(command.clone()).map_err(|e| {
            format!("balancer: {e}; expected {{\"drain\": [{{\"containerId\", \"ifname\"}}]}}")
        })?;
        let (inner, summary) = (self.inner.clone(), self.summary.clone());
        let count = drain.len();
        tokio::task::spawn_local(async move {
            let mut b = inner.lock().await;
            b.draining.extend(drain);
            b.reconcile().await;
            *summary.borrow_mut() = (b.needed(), b.status());
        });
        Ok(json!({"draining": count}))
    }
}
