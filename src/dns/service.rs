//! The resolver as a tetherd service: on every record change, rebuild the name index and make the set of
//! listening namespaces match the records (open for new containers, close for departed ones, update the
//! networks each one may see).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::forwarder::Forwarder;
use super::index::{keys_of, network_key, NameIndex};
use super::listener::{self, Listener, Sockets};
use super::resolver::{Resolver, Scope};
use super::service_names::SharedServiceNames;
use super::settings::DnsSettings;
use super::upstreams::Upstreams;
use crate::client::protocol::AttachmentKey;
use crate::daemon::{RecordSnapshot, Service, ServiceContext};
use crate::state::AttachmentRecord;

/// A namespace, by the identity of its nsfs inode: two paths to one namespace are one container.
type NsId = (u64, u64);

struct Served {
    path: PathBuf,
    listener: Listener,
}

#[derive(Default)]
pub struct DnsService {
    settings: DnsSettings,
    resolver: Option<Rc<Resolver>>,
    /// Serves every namespace's sockets (started with the resolver).
    sockets: Option<Sockets>,
    served: HashMap<NsId, Served>,
    /// The identity behind each record's netns path, so a change stats only new paths (a thousand
    /// `stat`s per ADD would make ADD grow with the number of containers).
    ns_ids: HashMap<PathBuf, NsId>,
    /// Per record (network, container, interface): what it contributed to the index.
    indexed: HashMap<(String, String, String), Indexed>,
    /// Service names, shared with the balancer that writes them.
    service_names: Option<SharedServiceNames>,
}

impl DnsService {
    pub fn new() -> DnsService {
        DnsService::default()
    }

    /// Also answers the service names the balancer keeps in `names`.
    pub fn with_service_names(mut self, names: SharedServiceNames) -> DnsService {
        self.service_names = Some(names);
        self
    }

    async fn reconcile(&mut self, records: &RecordSnapshot, ctx: &ServiceContext) {
        let Some(resolver) = self.resolver.clone() else {
            return;
        };
        resolver.set_index(NameIndex::build(&records.records));
        self.indexed = records
            .records
            .iter()
            .filter(|r| r.dns)
            .filter_map(|r| {
                let key = (
                    r.network.clone(),
                    r.container_id.to_string(),
                    r.ifname.to_string(),
                );
                Indexed::of(r).map(|ix| (key, ix))
            })
            .collect();

        // What each attached namespace may see. Borrowed from the records: this runs on every notify, and
        // allocating per record would make an ADD cost grow with the number of containers.
        let mut keys: HashMap<&str, Option<String>> = HashMap::new();
        let mut wanted: HashMap<NsId, (&Path, Vec<String>, bool)> = HashMap::new();
        // Namespaces whose container holds 127.0.0.11:53 itself: the resolver stays out.
        let mut own_resolver: HashSet<NsId> = HashSet::new();
        for rec in records.records.iter().filter(|r| r.dns) {
            let Some(path) = rec.netns.as_deref() else {
                continue;
            };
            let Some(net) = keys
                .entry(rec.network.as_str())
                .or_insert_with(|| network_key(&rec.network))
            else {
                continue;
            };
            let id = match self.ns_ids.get(path) {
                Some(id) => *id,
                None => {
                    // A namespace that is already gone (container died before we saw it) is not
                    // served; its record stays until DEL or GC.
                    let Ok(meta) = std::fs::metadata(path) else {
                        continue;
                    };
                    let id = (meta.dev(), meta.ino());
                    self.ns_ids.insert(path.to_path_buf(), id);
                    id
                }
            };
            let entry = wanted
                .entry(id)
                .or_insert_with(|| (path, Vec::new(), false));
            if !entry.1.contains(net) {
                entry.1.push(net.clone());
            }
            entry.2 |= !rec.internal;
            if rec.own_resolver {
                own_resolver.insert(id);
            }
        }
        wanted.retain(|id, _| !own_resolver.contains(id));

        let live: HashSet<&Path> = records
            .records
            .iter()
            .filter_map(|r| r.netns.as_deref())
            .collect();
        self.ns_ids.retain(|path, _| live.contains(path.as_path()));
        let departed: Vec<NsId> = self
            .served
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in departed {
            self.close(id, ctx).await;
        }
        for (id, (path, mut networks, forward)) in wanted {
            networks.sort();
            if let Some(served) = self.served.get(&id) {
                let mut current = served.listener.scope.borrow_mut();
                if current.networks != networks || current.forward != forward {
                    *current = Scope { networks, forward };
                }
                continue;
            }
            let scope = Scope { networks, forward };
            self.open(path.to_path_buf(), id, scope, ctx).await;
        }
    }

    /// Opens the resolver in the namespace at `path` (identity `id`) and starts serving it.
    async fn open(&mut self, path: PathBuf, id: NsId, scope: Scope, ctx: &ServiceContext) {
        let sockets = match listener::open_sockets(&ctx.ns_worker, &path).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "container gets no resolver");
                return;
            }
        };
        let Some(set) = &self.sockets else {
            return;
        };
        match set.serve(sockets, scope) {
            Ok(listener) => {
                tracing::debug!(netns = %path.display(), "resolver listening");
                self.served.insert(id, Served { path, listener });
            }
            Err(e) => {
                tracing::warn!(netns = %path.display(), error = %e, "registering resolver sockets failed")
            }
        }
    }

    /// Stops serving the namespace with identity `id` and takes its redirect away, so a container that
    /// lives on after its last DEL keeps nothing of tether (its own server may take 127.0.0.11:53 then).
    async fn close(&mut self, id: NsId, ctx: &ServiceContext) {
        let Some(served) = self.served.remove(&id) else {
            return;
        };
        drop(served.listener);
        match listener::remove_redirect(&ctx.ns_worker, &served.path, id).await {
            Ok(()) => tracing::debug!(netns = %served.path.display(), "resolver closed"),
            Err(e) => tracing::warn!(error = %e, "resolver closed, but its redirect stays"),
        }
    }

    /// Only the named records changed: recompute the index entries they touched and the namespaces they
    /// are in, scanning the records without allocating per record (a notify must not cost more with a
    /// thousand containers than with ten).
    async fn refresh(
        &mut self,
        records: &RecordSnapshot,
        changed: &[(String, AttachmentKey)],
        ctx: &ServiceContext,
    ) {
        let Some(resolver) = self.resolver.clone() else {
            return;
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for (network, a) in changed {
            let key = (network.clone(), a.container_id.clone(), a.ifname.clone());
            let old = self.indexed.remove(&key);
            let new = records
                .records
                .iter()
                .find(|r| {
                    r.dns
                        && r.network == *network
                        && r.container_id == a.container_id
                        && r.ifname == a.ifname
                })
                .and_then(Indexed::of);
            for ix in [&old, &new].into_iter().flatten() {
                resolver.update_index(|index| {
                    index.refresh(&records.records, &ix.network, &ix.keys, &ix.ips)
                });
                if let Some(p) = &ix.netns {
                    if !paths.contains(p) {
                        paths.push(p.clone());
                    }
                }
            }
            if let Some(new) = new {
                self.indexed.insert(key, new);
            }
        }
        for path in paths {
            self.refresh_namespace(&path, records, ctx).await;
        }
    }

    /// Re-derives what the namespace at `path` may see, and opens or closes its resolver accordingly.
    async fn refresh_namespace(
        &mut self,
        path: &Path,
        records: &RecordSnapshot,
        ctx: &ServiceContext,
    ) {
        let id = match self.ns_ids.get(path) {
            Some(id) => *id,
            None => match std::fs::metadata(path) {
                Ok(meta) => {
                    let id = (meta.dev(), meta.ino());
                    self.ns_ids.insert(path.to_path_buf(), id);
                    id
                }
                Err(_) => return, // gone before we could serve it
            },
        };
        // Every record in that namespace, whatever path it was given by (one container, two runtimes).
        let mut networks: Vec<String> = Vec::new();
        let mut forward = false;
        let mut path_used = false;
        let mut own_resolver = false;
        for r in &records.records {
            let Some(p) = r.netns.as_deref() else {
                continue;
            };
            let same = p == path || self.ns_ids.get(p) == Some(&id);
            if !same {
                continue;
            }
            path_used |= p == path;
            if !r.dns {
                continue;
            }
            if let Some(k) = network_key(&r.network) {
                if !networks.contains(&k) {
                    networks.push(k);
                }
            }
            forward |= !r.internal;
            own_resolver |= r.own_resolver;
        }
        if !path_used {
            self.ns_ids.remove(path);
        }
        if networks.is_empty() || own_resolver {
            self.close(id, ctx).await;
            return;
        }
        networks.sort();
        if let Some(served) = self.served.get(&id) {
            let mut current = served.listener.scope.borrow_mut();
            if current.networks != networks || current.forward != forward {
                *current = Scope { networks, forward };
            }
            return;
        }
        self.open(PathBuf::from(path), id, Scope { networks, forward }, ctx)
            .await;
    }
}

/// What one record put in the index, kept so its change or removal knows which entries to recompute.
struct Indexed {
    network: String,
    keys: Vec<String>,
    ips: Vec<IpAddr>,
    netns: Option<PathBuf>,
}

impl Indexed {
    fn of(rec: &AttachmentRecord) -> Option<Indexed> {
        let network = network_key(&rec.network)?;
        Some(Indexed {
            keys: keys_of(rec, &network),
            ips: rec.ips.iter().map(|i| i.ip()).collect(),
            netns: rec.netns.clone(),
            network,
        })
    }
}

impl Service for DnsService {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn start<'a>(&'a mut self, ctx: &'a ServiceContext) -> LocalBoxFuture<'a, Result<(), String>> {
        async move {
            self.settings =
                DnsSettings::from_section(&ctx.section("dns")).map_err(|e| e.to_string())?;
            let forwarder = Forwarder::new(
                Upstreams::new(crate::paths::resolv_conf()),
                self.settings.upstream_timeout(),
            );
            let mut resolver = Resolver::new(
                forwarder,
                self.settings.cache_entries,
                self.settings.local_ttl,
            );
            if let Some(names) = &self.service_names {
                resolver = resolver.with_service_names(names.clone());
            }
            let resolver = Rc::new(resolver);
            self.sockets = Some(
                Sockets::start(resolver.clone(), self.settings.max_tcp_connections)
                    .map_err(|e| format!("starting the resolver's socket set: {e}"))?,
            );
            self.resolver = Some(resolver);
            Ok(())
        }
        .boxed_local()
    }

    fn on_records_changed<'a>(
        &'a mut self,
        records: &'a RecordSnapshot,
        ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        self.reconcile(records, ctx).boxed_local()
    }

    fn on_records_refreshed<'a>(
        &'a mut self,
        records: &'a RecordSnapshot,
        changed: &'a [(String, AttachmentKey)],
        ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        self.refresh(records, changed, ctx).boxed_local()
    }

    fn needed(&self, records: &RecordSnapshot) -> bool {
        records.records.iter().any(|r| r.dns)
    }

    fn on_namespaces_gone(&mut self, gone: &[crate::netns::NsId]) {
        for id in gone {
            if let Some(served) = self.served.remove(&(id.dev, id.ino)) {
                tracing::info!(netns = %served.path.display(), "resolver closed: the namespace is gone");
            }
        }
    }

    fn stop<'a>(&'a mut self) -> LocalBoxFuture<'a, ()> {
        async move {
            self.served.clear();
        }
        .boxed_local()
    }

    fn status(&self) -> serde_json::Value {
        let Some(r) = &self.resolver else {
            return serde_json::Value::Null;
        };
        let (hits, misses, cached) = r.cache_stats();
        let (networks, names) = r.index_counts();
        serde_json::json!({
            "namespaces": self.served.len(),
            "networks": networks,
            "names": names,
            "localAnswers": r.local_answers.get(),
            "forwarded": r.forwarded.get(),
            "cache": {"hits": hits, "misses": misses, "entries": cached},
        })
    }
}
