//! `tether service create/ls/inspect/rm`: the service files under the state directory, checked against
//! the networks, and tetherd told (it balances, probes and answers the names).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::Serialize;
use serde_json::Value;

use super::backends::{backends_of, BackendId};
use crate::firewall::service_balance::{self, ServiceKey};
use crate::netns::NetNs;
use crate::network::{NetworkError, Networks};
use crate::state::service::{
    Affinity, ClusterScope, HealthCheck, HealthTiming, Mode, ServiceDir, ServiceFileError,
    ServicePort, ServiceRange, ServiceSpec,
};
use crate::state::{AttachmentRecord, DriverKind, RecordDir};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid service name {name:?}: use 1-63 of a-z, 0-9 and '-', not starting or ending with '-' (it is a DNS name)")]
    BadName { name: String },
    #[error("service {name:?} already exists; remove it first")]
    Exists { name: String },
    #[error("no service {name:?}; `tether service ls` lists them")]
    NotFound { name: String },
    #[error("network {network:?}: {source}")]
    Network {
        network: String,
        #[source]
        source: Box<NetworkError>,
    },
    #[error("{0}")]
    Bad(String),
    #[error("service range: {0}")]
    Range(String),
    #[error("service file: {0}")]
    File(#[from] ServiceFileError),
    #[error("locking the services directory: {0}")]
    Lock(#[source] std::io::Error),
    #[error("{0}")]
    Publish(#[from] super::publish::PublishError),
}

/// What `tether service create` asks for.
#[derive(Debug, Clone)]
pub struct CreateService {
    pub name: String,
    pub network: String,
    pub ports: Vec<ServicePort>,
    pub vip: Option<IpAddr>,
    pub mode: Mode,
    /// None: tcp when a TCP port is given, else none.
    pub health: Option<HealthCheck>,
    pub timing: HealthTiming,
    pub affinity: Affinity,
}

/// VIPs exist only inside container namespaces, but one inside a network's subnet would shadow a container
/// there: the range may overlap no network.
fn range_is_free(
    range: &ServiceRange,
    all_subnets: &[(String, IpNetwork)],
) -> Result<(), ServiceError> {
    for (net, subnet) in all_subnets {
        for r in range.networks() {
            if r.contains(subnet.network()) || subnet.contains(r.network()) {
                return Err(ServiceError::Range(format!(
                    "{r} overlaps network {net} ({subnet}); set TETHER_SERVICE_RANGE to a free range"
                )));
            }
        }
    }
    Ok(())
}

/// The health check asked for, or the default for the ports; refused when it has nothing to probe.
fn health_of(req: &CreateService) -> Result<HealthCheck, ServiceError> {
    let tcp_port = req
        .ports
        .iter()
        .any(|p| p.protocol == crate::state::service::ProtocolName::Tcp);
    let health = match &req.health {
        Some(h) => h.clone(),
        None if tcp_port => HealthCheck::Tcp,
        None => HealthCheck::None,
    };
    if health != HealthCheck::None && !tcp_port {
        return Err(ServiceError::Bad(
            "a tcp or http health check needs a TCP --port to probe; add one or use --health none"
                .into(),
        ));
    }
    if req.mode == Mode::Vip && req.ports.is_empty() {
        return Err(ServiceError::Bad(
            "a VIP balances ports: give at least one --port, or use --mode dnsrr".into(),
        ));
    }
    Ok(health)
}

/// The service's VIPs: one per family of the network's subnets, the one asked for or the range's first free.
fn choose_vips(
    req: &CreateService,
    range: &ServiceRange,
    taken: &[IpAddr],
    all_subnets: &[(String, IpNetwork)],
    network_subnets: &[IpNetwork],
) -> Result<Vec<IpAddr>, ServiceError> {
    let mut vips = Vec::new();
    if let Some(vip) = req.vip {
        // Clients route only the service range to their network (an internal network has no default route
        // to carry anything else).
        if !range.contains(vip) {
            return Err(ServiceError::Bad(format!(
                "VIP {vip} is outside the service range ({}, {}); pick one inside it or set TETHER_SERVICE_RANGE",
                range.v4, range.v6
            )));
        }
        if taken.contains(&vip) {
            return Err(ServiceError::Bad(format!(
                "VIP {vip} is taken by another service"
            )));
        }
        if let Some((net, subnet)) = all_subnets.iter().find(|(_, s)| s.contains(vip)) {
            return Err(ServiceError::Bad(format!(
                "VIP {vip} is inside network {net} ({subnet}); pick an address outside every network"
            )));
        }
    }
    let (v4, v6) = range.first_free(taken).ok_or_else(|| {
        ServiceError::Range("no free VIP left; widen TETHER_SERVICE_RANGE".into())
    })?;
    for family_v4 in [true, false] {
        if !network_subnets.iter().any(|s| s.is_ipv4() == family_v4) {
            continue;
        }
        let vip = match req.vip {
            Some(v) if v.is_ipv4() == family_v4 => v,
            _ if family_v4 => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        };
        vips.push(vip);
    }
    if let Some(v) = req.vip {
        if !vips.contains(&v) {
            return Err(ServiceError::Bad(format!(
                "VIP {v} is of a family network {} has no subnet of",
                req.network
            )));
        }
    }
    Ok(vips)
}

fn validate_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadName {
            name: name.to_string(),
        })
    }
}

pub struct Services {
    state_dir: PathBuf,
    networks: Networks,
}

impl Services {
    pub fn from_env() -> Services {
        Services {
            state_dir: crate::paths::state_dir(),
            networks: Networks::from_env(),
        }
    }

    fn dir(&self) -> ServiceDir {
        ServiceDir::new(&self.state_dir)
    }

    pub fn create(&self, req: &CreateService) -> Result<ServiceSpec, ServiceError> {
        validate_name(&req.name)?;
        let net_err = |source| ServiceError::Network {
            network: req.network.clone(),
            source: Box::new(source),
        };
        let network = self.networks.inspect(&req.network).map_err(net_err)?;
        let range = ServiceRange::from_env().map_err(ServiceError::Range)?;
        let all_subnets: Vec<(String, IpNetwork)> = self
            .networks
            .list()
            .map_err(net_err)?
            .into_iter()
            .flat_map(|n| {
                let name = n.name.clone();
                n.subnets.into_iter().map(move |s| (name.clone(), s))
            })
            .collect();
        range_is_free(&range, &all_subnets)?;
        let health = health_of(req)?;
        let dir = self.dir();
        let _lock = dir.lock().map_err(ServiceError::Lock)?;
        if dir.read(&req.name)?.is_some() {
            return Err(ServiceError::Exists {
                name: req.name.clone(),
            });
        }
        let taken: Vec<IpAddr> = dir.list()?.into_iter().flat_map(|s| s.vips).collect();
        let vips = if req.mode == Mode::Vip {
            choose_vips(req, &range, &taken, &all_subnets, &network.subnets)?
        } else {
            Vec::new()
        };
        let spec = ServiceSpec {
            name: req.name.clone(),
            network: req.network.clone(),
            vips,
            ports: req.ports.clone(),
            mode: req.mode,
            health,
            health_timing: req.timing,
            affinity: req.affinity,
            // An overlay spans hosts: the service goes to the cluster store and exists on every host.
            cluster: (network.driver == DriverKind::Overlay.name()).then(|| ClusterScope {
                created_at_ms: crate::state::overlay::now_ms(),
                origin: None,
            }),
        };
        dir.write(&spec)?;
        drop(_lock);
        // tetherd balances and answers for it; start one if none runs.
        crate::client::notify::endpoint_changed(&spec.network);
        Ok(spec)
    }

    /// Changes the service's routing-mesh publications (`service::publish`).
    pub fn publish(
        &self,
        name: &str,
        req: &super::publish::PublishRequest,
    ) -> Result<crate::state::mesh::MeshSpec, ServiceError> {
        let spec = existing(&self.dir(), name)?;
        own_copy_only(&spec, "change its publications there")?;
        Ok(super::publish::update(&self.state_dir, &spec, req)?)
    }

    pub fn list(&self) -> Result<Vec<ServiceSpec>, ServiceError> {
        Ok(self.dir().list()?)
    }

    pub fn remove(&self, name: &str) -> Result<ServiceSpec, ServiceError> {
        let dir = self.dir();
        let _lock = dir.lock().map_err(ServiceError::Lock)?;
        let spec = existing(&dir, name)?;
        own_copy_only(&spec, "remove it there")?;
        dir.remove(name)?;
        drop(_lock);
        super::publish::forget(&self.state_dir, name)?;
        crate::client::notify::endpoint_removed(&spec.network);
        Ok(spec)
    }

    /// The service with its backends (from the attachment records) and, when tetherd runs, their health
    /// and the service's counters.
    pub fn inspect(&self, name: &str) -> Result<ServiceView, ServiceError> {
        let spec = existing(&self.dir(), name)?;
        let mut records = RecordDir::new(&self.state_dir, &spec.network)
            .list()
            .unwrap_or_default();
        // Other hosts' containers on an overlay, as the cluster store has them.
        records.extend(
            crate::overlay::remote_names::load(&self.state_dir)
                .into_iter()
                .filter(|r| r.network == spec.network),
        );
        let status = tetherd_status();
        let live = status
            .as_ref()
            .and_then(|s| s.pointer(&format!("/services/balancer/services/{name}")));
        let this_host = this_host_name(status.as_ref(), &spec);
        let connections = slot_counters(&spec, &records);
        let backends = backends_of(&spec, &records)
            .into_iter()
            .map(|b| {
                let key = format!("{}/{}", b.id.container_id, b.id.ifname);
                let health = live
                    .and_then(|v| v.pointer(&format!("/backends/{}", key.replace('/', "~1"))))
                    .and_then(|v| v.get("health"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                let connections = connections
                    .as_ref()
                    .map(|c| b.addresses.iter().filter_map(|a| c.get(a)).sum());
                BackendView {
                    connections,
                    id: b.id,
                    name: b.name,
                    addresses: b.addresses,
                    host: b
                        .remote
                        .map_or_else(|| this_host.clone(), |r| r.host.to_string()),
                    health,
                }
            })
            .collect();
        Ok(ServiceView {
            mesh: super::publish::view(&self.state_dir, &spec.name, &this_host),
            counters: live
                .and_then(|v| v.get("counters").cloned())
                .unwrap_or(Value::Null),
            spec,
            backends,
        })
    }
}

/// Per backend address, the connections the slots of `spec` sent to it in this host's clients (every
/// record of the network with a namespace). None when a client's namespace cannot be entered (not root).
fn slot_counters(spec: &ServiceSpec, records: &[AttachmentRecord]) -> Option<HashMap<IpAddr, u64>> {
    let keys: Vec<ServiceKey> = spec
        .vips
        .iter()
        .flat_map(|vip| {
            spec.ports.iter().map(|p| ServiceKey {
                vip: *vip,
                protocol: p.protocol.protocol(),
                port: p.port,
            })
        })
        .collect();
    let clients: BTreeSet<&Path> = records.iter().filter_map(|r| r.netns.as_deref()).collect();
    let mut out: HashMap<IpAddr, u64> = HashMap::new();
    for path in clients {
        // A client gone since its record was read has nothing left to count.
        let Ok(ns) = NetNs::open(path) else {
            continue;
        };
        let counted = ns
            .run(|| {
                keys.iter()
                    .filter_map(|k| service_balance::slot_counters(k).ok())
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .ok()?;
        for (addr, packets) in counted {
            *out.entry(addr).or_default() += packets;
        }
    }
    Some(out)
}

/// tetherd's status; None when tetherd does not run.
fn tetherd_status() -> Option<Value> {
    let reply = crate::client::notify::request(
        &crate::paths::run_dir(),
        &crate::client::protocol::Request::Status,
        std::time::Duration::from_secs(2),
    )
    .ok()?;
    reply.status
}

/// How a backend of this host is named: on a cluster service, this host's control-plane address (the
/// name other hosts' backends carry); else the host name.
fn this_host_name(status: Option<&Value>, spec: &ServiceSpec) -> String {
    let overlay_host = status
        .and_then(|s| s.pointer("/services/overlay/host"))
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty());
    match overlay_host {
        Some(h) if spec.cluster.is_some() => h.to_string(),
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    #[serde(flatten)]
    pub id: BackendId,
    pub name: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub host: String,
    /// healthy, unhealthy, starting (not yet `rise` passes), draining, or unknown (tetherd does not run).
    pub health: String,
    /// New connections this host's clients were balanced to it, from its slots' counters (a slot counts
    /// from when the backend took it). None when the client namespaces could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub backends: Vec<BackendView>,
    pub counters: Value,
    /// Published ports (the routing mesh) with this host's counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<super::publish::MeshView>,
}

/// The service named `name`, or `NotFound`.
fn existing(dir: &ServiceDir, name: &str) -> Result<ServiceSpec, ServiceError> {
    dir.read(name)?.ok_or_else(|| ServiceError::NotFound {
        name: name.to_string(),
    })
}

/// Refuses to change a copy of another host's service: it is changed on the host that created it (`there`
/// says how).
fn own_copy_only(spec: &ServiceSpec, there: &str) -> Result<(), ServiceError> {
    match spec.origin() {
        Some(origin) => Err(ServiceError::Bad(format!(
            "service {:?} was created on host {origin} and comes from the cluster store; {there}",
            spec.name
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert!(validate_name("web-1").is_ok());
        assert!(validate_name("Web").is_err());
        assert!(validate_name("-web").is_err());
        assert!(validate_name("a.b").is_err());
    }
}
