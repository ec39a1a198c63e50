//! Services on networks that span hosts, carried by the cluster store. A service created here on an
//! overlay network (`ServiceSpec::is_own_cluster_service`) is one of this host's records (`Service`, the
//! service file's JSON); every other host's service records become copies among this host's service
//! files (`cluster.origin` names the creating host), so the balancer, the resolver and `tether service
//! ls/inspect` serve them like local ones, with the same VIP on every host.
//!
//! VIPs are agreed the way unconfirmed blocks are: the CLI picks one no known service holds, and when two
//! hosts picked one VIP at the same time every host ranks the two the same way (earlier creation, then
//! lower host address): the winner keeps it and the loser's host moves its own service to a free VIP.
//! Two hosts creating one name: every host copies the same winner; the loser's host keeps its own file
//! (and logs the clash).
//!
//! A service's routing-mesh publications (its mesh file, `state::mesh`) ride inside its record (`mesh`
//! beside the service's own fields) and become a copy of the mesh file beside the service's copy. A port
//! something on this host already holds is left out of the copy and listed as refused, so the other
//! ports and the other hosts go on.
//!
//! Every host also writes its mesh counters of each cluster service it publishes (`MeshCounts`, sampled
//! by tetherd into `state::mesh_counts`), and keeps the other hosts' as files for `service inspect`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::{RecordKey, RecordTable, RecordValue};
use crate::state::mesh::{MeshDir, MeshSpec, Publish, RefusedPublish};
use crate::state::mesh_counts::{CountsDir, HostCounts};
use crate::state::port_holder;
use crate::state::service::{ClusterScope, ServiceDir, ServiceRange, ServiceSpec};

/// A service record's value: the service file's JSON with its publications beside (a reader that
/// knows only services ignores `mesh`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ServiceRecord {
    #[serde(flatten)]
    spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mesh: Option<MeshSpec>,
}

/// This host's own cluster services as its records.
pub fn own_records(state_dir: &Path, me: IpAddr) -> BTreeMap<RecordKey, RecordValue> {
    let specs = match ServiceDir::new(state_dir).list() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "reading service files for the cluster store");
            return BTreeMap::new();
        }
    };
    let mesh = MeshDir::new(state_dir);
    let mut counts = CountsDir::new(state_dir).own().services;
    let mut out: BTreeMap<RecordKey, RecordValue> = specs
        .iter()
        .filter(|s| s.is_own_cluster_service() || s.origin().is_some())
        .filter_map(|spec| {
            let c = counts.remove(&spec.name)?;
            let key = RecordKey::MeshCounts {
                host: me,
                network: spec.network.clone(),
                name: spec.name.clone(),
            };
            let counts = serde_json::to_string(&c).ok()?;
            Some((key, RecordValue::MeshCounts { counts }))
        })
        .collect();
    let services = specs
        .into_iter()
        .filter(ServiceSpec::is_own_cluster_service)
        .filter_map(|spec| {
            let record = ServiceRecord {
                mesh: mesh.read(&spec.name).ok().flatten(),
                spec,
            };
            let value = serde_json::to_string(&record).ok()?;
            let spec = record.spec;
            let key = RecordKey::Service {
                host: me,
                network: spec.network.clone(),
                name: spec.name.clone(),
            };
            Some((key, RecordValue::Service { spec: value }))
        });
    out.extend(services);
    out
}

/// The other hosts' mesh counters from their records, as files; whether any changed.
fn sync_counts(state_dir: &Path, table: &RecordTable, me: IpAddr) -> bool {
    let mut hosts: BTreeMap<IpAddr, HostCounts> = BTreeMap::new();
    for (key, value) in table.live() {
        let (RecordKey::MeshCounts { host, name, .. }, RecordValue::MeshCounts { counts }) =
            (key, value)
        else {
            continue;
        };
        if *host == me {
            continue;
        }
        let Ok(c) = serde_json::from_str(counts) else {
            continue;
        };
        let entry = hosts.entry(*host).or_insert_with(|| HostCounts {
            host: Some(*host),
            ..HostCounts::default()
        });
        entry.services.insert(name.clone(), c);
    }
    let hosts: Vec<HostCounts> = hosts.into_values().collect();
    CountsDir::new(state_dir).set_others(&hosts)
}

/// A service as another host's record has it, with its origin set, and its publications.
#[derive(Debug, Clone)]
struct Remote {
    spec: ServiceSpec,
    mesh: Option<MeshSpec>,
}

fn remote_services(table: &RecordTable, me: IpAddr) -> Vec<Remote> {
    let mut out = Vec::new();
    for (key, value) in table.live() {
        let (RecordKey::Service { host, name, .. }, RecordValue::Service { spec }) = (key, value)
        else {
            continue;
        };
        if *host == me {
            continue;
        }
        match serde_json::from_str::<ServiceRecord>(spec) {
            Ok(ServiceRecord { mut spec, mesh }) if &spec.name == name => {
                let created_at_ms = spec.cluster.map_or(0, |c| c.created_at_ms);
                spec.cluster = Some(ClusterScope {
                    created_at_ms,
                    origin: Some(*host),
                });
                let mesh = mesh.filter(|m| &m.service == name);
                out.push(Remote { spec, mesh });
            }
            Ok(_) => tracing::warn!(%host, name, "service record names another service; ignored"),
            Err(e) => tracing::warn!(%host, name, error = %e, "unreadable service record; ignored"),
        }
    }
    out
}

/// How every host ranks two services: the earlier creation first, then the lower host address.
fn rank(spec: &ServiceSpec, me: IpAddr) -> (u64, IpAddr) {
    let c = spec.cluster.unwrap_or(ClusterScope {
        created_at_ms: u64::MAX,
        origin: None,
    });
    (c.created_at_ms, c.origin.unwrap_or(me))
}

/// What one pass changed.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// Networks whose service files changed (tetherd must re-read them).
    pub networks: BTreeSet<String>,
    /// An own service moved to another VIP: its record is due again.
    pub own_moved: bool,
    /// A copy leaves out ports held here: the pass is due again soon, to take them once freed.
    pub ports_held_here: bool,
}

/// The copies wanted here: per name the best-ranked remote service.
fn winners(remote: &[Remote], me: IpAddr) -> BTreeMap<String, Remote> {
    let mut out: BTreeMap<String, Remote> = BTreeMap::new();
    for r in remote {
        let better = out
            .get(&r.spec.name)
            .is_none_or(|held| rank(&r.spec, me) < rank(&held.spec, me));
        if better {
            out.insert(r.spec.name.clone(), r.clone());
        }
    }
    out
}

/// Makes this host's service files hold every other host's cluster services, removes copies whose
/// record is gone, and moves an own service off a VIP a better-ranked service holds. A copy goes when its
/// record is known deleted (a tombstone), or, once `view_complete` (the store listed everything since this
/// tetherd started), when its record is missing: a restarted tetherd whose table is still empty keeps the
/// copies (and so the clients' maps) it had.
pub fn sync(state_dir: &Path, table: &RecordTable, me: IpAddr, view_complete: bool) -> SyncOutcome {
    let mut outcome = SyncOutcome::default();
    sync_counts(state_dir, table, me);
    let remote = remote_services(table, me);
    let dir = ServiceDir::new(state_dir);
    let Ok(_lock) = dir.lock() else {
        return outcome;
    };
    let local = match dir.list() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "reading service files");
            return outcome;
        }
    };
    let wanted = winners(&remote, me);
    // The copies this host holds after the pass, with the publications their records carry.
    let mut copies: Vec<&Remote> = Vec::new();
    for (name, r) in &wanted {
        let spec = &r.spec;
        match local.iter().find(|s| &s.name == name) {
            Some(held) if held.origin().is_none() => {
                tracing::debug!(name, other = ?spec.origin(), "a service of this name exists here; not copied");
                continue;
            }
            Some(held) if held == spec => {
                copies.push(r);
                continue;
            }
            _ => {}
        }
        match dir.write(spec) {
            Ok(()) => {
                outcome.networks.insert(spec.network.clone());
                copies.push(r);
            }
            Err(e) => tracing::warn!(name, error = %e, "writing a cluster service's copy"),
        }
    }
    let gone = |s: &ServiceSpec| {
        let Some(origin) = s.origin() else {
            return false;
        };
        let key = RecordKey::Service {
            host: origin,
            network: s.network.clone(),
            name: s.name.clone(),
        };
        !wanted.contains_key(&s.name) && (view_complete || table.is_deleted(&key))
    };
    let stale: Vec<&ServiceSpec> = local.iter().filter(|s| gone(s)).collect();
    for s in &stale {
        if dir.remove(&s.name).is_ok() {
            outcome.networks.insert(s.network.clone());
        }
    }
    let (networks, ports_held_here) = sync_mesh(state_dir, &copies, &stale);
    outcome.networks.extend(networks);
    outcome.ports_held_here = ports_held_here;
    for own in local.iter().filter(|s| s.is_own_cluster_service()) {
        let beaten = own.vips.iter().any(|vip| {
            remote
                .iter()
                .any(|r| r.spec.vips.contains(vip) && rank(&r.spec, me) < rank(own, me))
        });
        if !beaten {
            continue;
        }
        let mut taken: Vec<IpAddr> = local.iter().flat_map(|s| s.vips.clone()).collect();
        taken.extend(remote.iter().flat_map(|r| r.spec.vips.clone()));
        let Some(moved) = move_vips(own, &taken) else {
            tracing::error!(
                name = own.name,
                "the service's VIP is held by an earlier service and no VIP is free"
            );
            continue;
        };
        tracing::warn!(name = own.name, from = ?own.vips, to = ?moved.vips,
            "an earlier service on another host holds this service's VIP; moving");
        if dir.write(&moved).is_ok() {
            outcome.networks.insert(moved.network.clone());
            outcome.own_moved = true;
        }
    }
    outcome
}

/// Makes the mesh files of `copies` the copies of their records' publications (less the ports held
/// here), and removes those of `stale` copies. Returns the networks whose mesh files changed, and
/// whether a copy leaves out ports held here (or the files could not be locked: try again).
fn sync_mesh(
    state_dir: &Path,
    copies: &[&Remote],
    stale: &[&ServiceSpec],
) -> (BTreeSet<String>, bool) {
    let mut networks = BTreeSet::new();
    let mut ports_held_here = false;
    let dir = MeshDir::new(state_dir);
    let Ok(_lock) = dir.lock() else {
        return (networks, true);
    };
    for r in copies {
        let name = &r.spec.name;
        let held = dir.read(name).ok().flatten();
        let wanted = r.mesh.as_ref().map(|m| {
            copy_of(m, held.as_ref(), |p| {
                port_holder::holder_of(state_dir, name, p)
            })
        });
        ports_held_here |= wanted.as_ref().is_some_and(|w| !w.refused.is_empty());
        if wanted == held {
            continue;
        }
        if let Some(w) = &wanted {
            for refused in w
                .refused
                .iter()
                .filter(|f| held.as_ref().is_none_or(|h| !h.refused.contains(f)))
            {
                tracing::warn!(service = name, publish = %refused.publish, held_by = refused.held_by,
                    "another host's publication not taken here: its host port is held");
            }
        }
        let written = match &wanted {
            Some(w) => dir.write(w),
            None => dir.remove(name).map(drop),
        };
        match written {
            Ok(()) => {
                networks.insert(r.spec.network.clone());
            }
            Err(e) => tracing::warn!(service = name, error = %e, "writing a publication's copy"),
        }
    }
    for s in stale {
        if dir.remove(&s.name).unwrap_or(false) {
            networks.insert(s.network.clone());
        }
    }
    (networks, ports_held_here)
}

/// The copy of `record`'s publications for this host: a port the copy `held` already has stays;
/// another one goes to `refused` when `taken` names its holder here.
fn copy_of(
    record: &MeshSpec,
    held: Option<&MeshSpec>,
    taken: impl Fn(&Publish) -> Option<String>,
) -> MeshSpec {
    let mut copy = MeshSpec {
        publish: Vec::new(),
        refused: Vec::new(),
        ..record.clone()
    };
    for p in &record.publish {
        let ours = held.is_some_and(|h| h.publish.contains(p));
        match (!ours).then(|| taken(p)).flatten() {
            Some(held_by) => copy.refused.push(RefusedPublish {
                publish: *p,
                held_by,
            }),
            None => copy.publish.push(*p),
        }
    }
    copy
}

/// `host` is forgotten for good (`tether cluster forget`): the copies of its services (and their
/// publications) go.
pub fn forget_host(state_dir: &Path, host: IpAddr) -> BTreeSet<String> {
    let dir = ServiceDir::new(state_dir);
    let mut networks = BTreeSet::new();
    let Ok(_lock) = dir.lock() else {
        return networks;
    };
    let mut gone = Vec::new();
    for copy in dir.list().unwrap_or_default() {
        if copy.origin() == Some(host) && dir.remove(&copy.name).is_ok() {
            networks.insert(copy.network.clone());
            gone.push(copy);
        }
    }
    let gone: Vec<&ServiceSpec> = gone.iter().collect();
    networks.extend(sync_mesh(state_dir, &[], &gone).0);
    networks
}

/// `spec` on the first VIPs (per family it has) that nobody holds.
fn move_vips(spec: &ServiceSpec, taken: &[IpAddr]) -> Option<ServiceSpec> {
    let range = ServiceRange::from_env().ok()?;
    let (v4, v6) = range.first_free(taken)?;
    let mut moved = spec.clone();
    moved.vips = spec
        .vips
        .iter()
        .map(|vip| match vip {
            IpAddr::V4(_) => IpAddr::V4(v4),
            IpAddr::V6(_) => IpAddr::V6(v6),
        })
        .collect();
    Some(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::service::{HealthCheck, HealthTiming};

    fn spec(name: &str, vip: &str, created: u64, origin: Option<&str>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            network: "ovl".into(),
            vips: vec![vip.parse().unwrap()],
            ports: vec!["80".parse().unwrap()],
            mode: Default::default(),
            health: HealthCheck::None,
            health_timing: HealthTiming::default(),
            affinity: Default::default(),
            cluster: Some(ClusterScope {
                created_at_ms: created,
                origin: origin.map(|o| o.parse().unwrap()),
            }),
        }
    }

    #[test]
    fn every_host_copies_the_same_winner_of_one_name() {
        let me: IpAddr = "192.0.2.9".parse().unwrap();
        let a = spec("web", "10.96.0.1", 5, Some("192.0.2.2"));
        let b = spec("web", "10.96.0.2", 3, Some("192.0.2.3"));
        let c = spec("web", "10.96.0.3", 3, Some("192.0.2.1"));
        for order in [
            vec![a.clone(), b.clone(), c.clone()],
            vec![c.clone(), b.clone(), a.clone()],
        ] {
            let order: Vec<Remote> = order
                .into_iter()
                .map(|spec| Remote { spec, mesh: None })
                .collect();
            assert_eq!(
                winners(&order, me)["web"].spec,
                c,
                "earliest, then lowest host"
            );
        }
    }

    /// Host B's earlier service arrives with the VIP this host's own took meanwhile: B's is copied here
    /// with its origin, this host's own moves off the VIP; B's record deleted, the copy goes.
    #[test]
    fn remote_services_become_copies_and_a_later_own_service_yields_their_vip() {
        let dir = std::env::temp_dir().join(format!("tether-cluster-svc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let services = ServiceDir::new(&dir);
        services.write(&spec("own", "10.96.0.1", 20, None)).unwrap();
        let theirs = spec("web", "10.96.0.1", 10, None);
        let key = RecordKey::Service {
            host: b,
            network: "ovl".into(),
            name: "web".into(),
        };
        let mut table = RecordTable::new();
        let record = |version, value| super::super::records::Record {
            key: key.clone(),
            version,
            value,
        };
        let value = RecordValue::Service {
            spec: serde_json::to_string(&theirs).unwrap(),
        };
        table.merge(me, vec![record(1, Some(value))], 0);

        let outcome = sync(&dir, &table, me, false);
        assert!(outcome.own_moved);
        assert_eq!(outcome.networks, BTreeSet::from(["ovl".to_string()]));
        let copy = services.read("web").unwrap().unwrap();
        assert_eq!(copy.origin(), Some(b));
        assert_eq!(copy.vips, theirs.vips, "the earlier service keeps its VIP");
        let own = services.read("own").unwrap().unwrap();
        assert_eq!(own.vips, vec!["10.96.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            own_records(&dir, me).len(),
            1,
            "only the own service is published"
        );

        let again = sync(&dir, &table, me, false);
        assert!(
            !again.own_moved && again.networks.is_empty(),
            "nothing to do twice"
        );

        // A table that lost the record without a tombstone (a restarted tetherd, not synced yet) keeps
        // the copy; a tombstone (or a complete view) removes it.
        sync(&dir, &RecordTable::new(), me, false);
        assert!(
            services.read("web").unwrap().is_some(),
            "kept while the view is partial"
        );
        table.merge(me, vec![record(2, None)], 0);
        sync(&dir, &table, me, false);
        assert_eq!(
            services.read("web").unwrap(),
            None,
            "the copy follows the record"
        );
        assert!(services.read("own").unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn publishes(ports: &[&str]) -> MeshSpec {
        MeshSpec {
            service: "web".into(),
            publish: ports.iter().map(|p| p.parse().unwrap()).collect(),
            mode: Default::default(),
            policy: Default::default(),
            preserve_client_ip: false,
            refused: Vec::new(),
        }
    }

    /// The publications ride in the service record; a reader of the service alone still reads it.
    #[test]
    fn a_service_record_carries_its_publications() {
        let record = ServiceRecord {
            spec: spec("web", "10.96.0.1", 5, None),
            mesh: Some(publishes(&["8080:80", "8053:53/udp"])),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<ServiceRecord>(&text).unwrap(),
            record
        );
        assert_eq!(
            serde_json::from_str::<ServiceSpec>(&text).unwrap(),
            record.spec
        );
        let bare = serde_json::to_string(&record.spec).unwrap();
        assert_eq!(
            serde_json::from_str::<ServiceRecord>(&bare).unwrap().mesh,
            None
        );
    }

    /// A port held here is refused (and asked again next time); a port the copy has stays without asking.
    #[test]
    fn a_copy_leaves_out_a_port_held_here() {
        let record = publishes(&["8080:80", "9090:90"]);
        let holder = |p: &Publish| (p.host_port == 9090).then(|| "service api".to_string());
        let copy = copy_of(&record, None, holder);
        assert_eq!(copy.publish, vec!["8080:80".parse().unwrap()]);
        assert_eq!(
            copy.refused,
            vec![RefusedPublish {
                publish: "9090:90".parse().unwrap(),
                held_by: "service api".into()
            }]
        );
        let asked = std::cell::Cell::new(0);
        let again = copy_of(&record, Some(&copy), |p| {
            asked.set(asked.get() + 1);
            holder(p)
        });
        assert_eq!(again, copy);
        assert_eq!(asked.get(), 1, "only the refused port is asked about again");
        let freed = copy_of(&record, Some(&copy), |_| None);
        assert_eq!(freed.publish, record.publish);
        assert!(freed.refused.is_empty());
    }

    #[test]
    fn a_moved_service_keeps_its_family_and_takes_a_free_vip() {
        let own = spec("web", "10.96.0.1", 9, None);
        let taken: Vec<IpAddr> = vec!["10.96.0.1".parse().unwrap(), "10.96.0.2".parse().unwrap()];
        let moved = move_vips(&own, &taken).unwrap();
        assert_eq!(moved.vips, vec!["10.96.0.3".parse::<IpAddr>().unwrap()]);
        let earlier = spec("db", "10.96.0.1", 1, Some("192.0.2.5"));
        assert!(
            rank(&earlier, "192.0.2.1".parse().unwrap()) < rank(&own, "192.0.2.1".parse().unwrap())
        );
    }
}
