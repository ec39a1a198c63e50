//! The resolver as a tetherd service: on every record change, rebuild the name index and make the set of
//! listening namespaces match the records (open for new containers, close for departed ones, update the
//! networks each one may see).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::forwarder::Forwarder;
use super::index::{network_key, Contribution, NameIndex, RecordId};
use super::listener::{self, Listener, Sockets};
use super::resolver::{Resolver, Scope};
use super::service_names::SharedServiceNames;
use super::settings::DnsSettings;
use super::upstreams::Upstreams;
use crate::daemon::{RecordChange, RecordSnapshot, Service, ServiceContext};
use crate::resolver_sockets::ResolverSockets;
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
    ns_ids: NsPaths,
    /// Per record (network, container, interface): what it contributed to the index.
    indexed: HashMap<(String, String, String), Indexed>,
    /// The id the next contribution to the index gets.
    next_id: RecordId,
    /// Service names, shared with the balancer that writes them.
    service_names: Option<SharedServiceNames>,
    /// During one refresh: the sockets plugins made in their containers' namespaces, by netns path.
    handed: HashMap<PathBuf, ResolverSockets>,
    /// Namespaces opened with a plugin's sockets, and with sockets of tetherd's own (for `status`).
    opened_handed: u64,
    opened_own: u64,
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
        let mut index = NameIndex::default();
        self.indexed.clear();
        for r in records.iter() {
            if let Some(ix) = self.index_record(&mut index, r) {
                self.indexed.insert(record_key(r), ix);
            }
        }
        resolver.set_index(index);

        // What each attached namespace may see. Borrowed from the records: this runs on every notify, and
        // allocating per record would make an ADD cost grow with the number of containers.
        let mut keys: HashMap<&str, Option<String>> = HashMap::new();
        let mut wanted: HashMap<NsId, (&Path, Vec<String>, bool)> = HashMap::new();
        // Namespaces whose container holds 127.0.0.11:53 itself: the resolver stays out.
        let mut own_resolver: HashSet<NsId> = HashSet::new();
        for rec in records.iter().filter(|r| r.dns) {
            let Some(path) = rec.netns.as_deref() else {
                continue;
            };
            let Some(net) = keys
                .entry(rec.network.as_str())
                .or_insert_with(|| network_key(&rec.network))
            else {
                continue;
            };
            // A namespace that is already gone (container died before we saw it) is not served; its
            // record stays until DEL or GC.
            let Some(id) = self.ns_id(path) else {
                continue;
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

        let live: HashSet<&OsStr> = records
            .iter()
            .filter_map(|r| r.netns.as_deref().map(Path::as_os_str))
            .collect();
        self.ns_ids.retain(|path| live.contains(path));
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

    /// Opens the resolver in the namespace at `path` (identity `id`) and starts serving it: on the sockets
    /// the plugin handed over, which the namespace's redirect already points at, else on sockets of its
    /// own, made there by the namespace thread.
    async fn open(&mut self, path: PathBuf, id: NsId, scope: Scope, ctx: &ServiceContext) {
        let sockets = match self.handed.remove(&path) {
            Some(handed) => {
                self.opened_handed += 1;
                handed
            }
            None => match listener::open_sockets(&ctx.ns_worker, &path).await {
                Ok(s) => {
                    self.opened_own += 1;
                    s
                }
                Err(e) => {
                    tracing::warn!(error = %e, "container gets no resolver");
                    return;
                }
            },
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

    /// The identity of the namespace at `path`, stat'ed once per path; `None` when it is gone.
    fn ns_id(&mut self, path: &Path) -> Option<NsId> {
        if let Some(id) = self.ns_ids.id(path.as_os_str()) {
            return Some(id);
        }
        let meta = std::fs::metadata(path).ok()?;
        let id = (meta.dev(), meta.ino());
        self.ns_ids.insert(path.as_os_str(), id);
        Some(id)
    }

    /// Puts the record's names into `index` under a fresh id.
    fn index_record(&mut self, index: &mut NameIndex, r: &AttachmentRecord) -> Option<Indexed> {
        let id = self.next_id;
        self.next_id += 1;
        let contribution = index.insert(id, r)?;
        Some(Indexed {
            contribution,
            netns: r.netns.clone(),
        })
    }

    /// Only the named records changed: take out what each one put in the index and put in what its new
    /// version holds, then look again at the namespaces they are in. A notify costs the same with a
    /// thousand containers as with ten.
    async fn refresh(
        &mut self,
        records: &RecordSnapshot,
        changed: &[RecordChange],
        ctx: &ServiceContext,
    ) {
        let Some(resolver) = self.resolver.clone() else {
            return;
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for change in changed {
            let (network, a) = (&change.network, &change.attachment);
            let key = (network.clone(), a.container_id.clone(), a.ifname.clone());
            let new = records.find(network, &a.container_id, &a.ifname);
            if let (Some(sockets), Some(path)) = (
                change.resolver_sockets.take(),
                new.and_then(|r| r.netns.as_ref()),
            ) {
                self.handed.insert(path.clone(), sockets);
            }
            let old = self.indexed.remove(&key);
            let mut new_ix = None;
            resolver.update_index(|index| {
                if let Some(old) = &old {
                    index.remove(&old.contribution);
                }
                new_ix = new.and_then(|r| self.index_record(index, r));
            });
            for p in [&old, &new_ix]
                .into_iter()
                .flatten()
                .filter_map(|ix| ix.netns.as_ref())
            {
                if !paths.contains(p) {
                    paths.push(p.clone());
                }
            }
            if let Some(new) = new_ix {
                self.indexed.insert(key, new);
            }
        }
        for path in paths {
            self.refresh_namespace(&path, records, ctx).await;
        }
        // Sockets left over close here: for a namespace not to be served, or one served already. The latter
        // happens when tetherd (re)started between the plugin's redirect and its notify: the full reload
        // replaced that redirect with one to sockets of tetherd's own, which stay.
        self.handed.clear();
    }

    /// Re-derives what the namespace at `path` may see, and opens or closes its resolver accordingly.
    async fn refresh_namespace(
        &mut self,
        path: &Path,
        records: &RecordSnapshot,
        ctx: &ServiceContext,
    ) {
        let Some(id) = self.ns_id(path) else {
            return; // gone before we could serve it
        };
        // Every record in that namespace, whatever path it was given by (one container, two runtimes).
        let mut networks: Vec<String> = Vec::new();
        let mut forward = false;
        let mut path_used = false;
        let mut own_resolver = false;
        // By the namespace's few known paths, each looked up in the records' index.
        let known = self.ns_ids.paths_of(id);
        let others = known.iter().filter(|p| p.as_os_str() != path.as_os_str());
        let by_path = records.in_netns(path.as_os_str()).map(|r| (true, r));
        let by_others = others.flat_map(|p| records.in_netns(p).map(|r| (false, r)));
        for (this_path, r) in by_path.chain(by_others) {
            path_used |= this_path;
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
            self.ns_ids.remove(path.as_os_str());
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

/// Record netns paths and the namespace each stands for, both ways: two paths (two runtimes) may name
/// one namespace. Keyed by the path's bytes: `Path` compares and hashes component by component.
#[derive(Default)]
struct NsPaths {
    by_path: HashMap<OsString, NsId>,
    by_id: HashMap<NsId, Vec<OsString>>,
}

impl NsPaths {
    fn id(&self, path: &OsStr) -> Option<NsId> {
        self.by_path.get(path).copied()
    }

    fn paths_of(&self, id: NsId) -> &[OsString] {
        self.by_id.get(&id).map_or(&[], Vec::as_slice)
    }

    fn insert(&mut self, path: &OsStr, id: NsId) {
        self.remove(path);
        self.by_path.insert(path.to_os_string(), id);
        let paths = self.by_id.entry(id).or_default();
        // Nearly every namespace has one path: room for one, not the four a first push reserves.
        paths.reserve_exact(1);
        paths.push(path.to_os_string());
    }

    fn remove(&mut self, path: &OsStr) {
        let Some(id) = self.by_path.remove(path) else {
            return;
        };
        if let Some(paths) = self.by_id.get_mut(&id) {
            paths.retain(|p| p != path);
            if paths.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(&OsStr) -> bool) {
        let gone: Vec<OsString> = self.by_path.keys().filter(|p| !keep(p)).cloned().collect();
        for p in gone {
            self.remove(&p);
        }
    }
}

/// A record's identity: (network, container, interface).
fn record_key(r: &AttachmentRecord) -> (String, String, String) {
    (
        r.network.clone(),
        r.container_id.to_string(),
        r.ifname.to_string(),
    )
}

/// What one record put in the index, kept so its change or removal takes exactly that out.
struct Indexed {
    contribution: Contribution,
    netns: Option<PathBuf>,
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
        changed: &'a [RecordChange],
        ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        self.refresh(records, changed, ctx).boxed_local()
    }

    fn needed(&self, records: &RecordSnapshot) -> bool {
        records.iter().any(|r| r.dns)
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
            "opened": {"withPluginSockets": self.opened_handed, "withOwnSockets": self.opened_own},
            "networks": networks,
            "names": names,
            "localAnswers": r.local_answers.get(),
            "forwarded": r.forwarded.get(),
            "cache": {"hits": hits, "misses": misses, "entries": cached},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_paths_to_one_namespace_are_known_both_ways_until_each_goes() {
        let mut ns = NsPaths::default();
        let (a, b, c) = (
            OsStr::new("/run/netns/a"),
            OsStr::new("/proc/7/ns/net"),
            OsStr::new("/run/netns/c"),
        );
        ns.insert(a, (1, 10));
        ns.insert(b, (1, 10));
        ns.insert(c, (1, 11));
        assert_eq!(ns.id(b), Some((1, 10)));
        assert_eq!(
            ns.paths_of((1, 10)),
            vec![a.to_os_string(), b.to_os_string()]
        );
        ns.remove(a);
        assert_eq!(ns.paths_of((1, 10)), [b.to_os_string()]);
        // A path reused for another namespace leaves the old one's list.
        ns.insert(b, (1, 12));
        assert!(ns.paths_of((1, 10)).is_empty());
        ns.retain(|p| p != c);
        assert_eq!(ns.id(c), None);
        assert!(ns.paths_of((1, 11)).is_empty());
        assert_eq!(ns.id(b), Some((1, 12)));
    }
}
