//! `tether service create --publish` and `tether service update --publish-add/--publish-rm`: a service's
//! routing-mesh publications, checked against everything else that may hold the host port (another
//! service's publication, a container's published port, a socket bound on the host), written to the mesh
//! file, and tetherd told. `inspect` shows them with this host's counters.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::firewall::mesh_ports::{self, PortCounters};
use crate::state::mesh::{MeshDir, MeshPolicy, MeshSpec, Publish, PublishMode, RefusedPublish};
use crate::state::mesh_counts::{CountsDir, PortCount};
use crate::state::port_holder;
use crate::state::service::{ProtocolName, ServiceSpec};

/// Why a publication was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Refused(String),
    #[error("locking the mesh directory: {0}")]
    Lock(#[source] std::io::Error),
    #[error("mesh file: {0}")]
    File(#[from] crate::state::mesh::MeshFileError),
}

/// What a create or an update asks of a service's publications.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    pub add: Vec<Publish>,
    /// Host ports to stop publishing: `(protocol, host port)`.
    pub remove: Vec<(ProtocolName, u16)>,
    pub mode: Option<PublishMode>,
    pub policy: Option<MeshPolicy>,
    pub preserve_client_ip: Option<bool>,
}

impl PublishRequest {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.mode.is_none()
            && self.policy.is_none()
            && self.preserve_client_ip.is_none()
    }
}

/// Applies `req` to `service`'s publications: refused as a whole when an added host port is held.
/// Returns what the service publishes now.
pub fn update(
    state_dir: &Path,
    service: &ServiceSpec,
    req: &PublishRequest,
) -> Result<MeshSpec, PublishError> {
    let dir = MeshDir::new(state_dir);
    let _lock = dir.lock().map_err(PublishError::Lock)?;
    let mut spec = dir.read(&service.name)?.unwrap_or(MeshSpec {
        service: service.name.clone(),
        publish: Vec::new(),
        mode: PublishMode::default(),
        policy: MeshPolicy::default(),
        preserve_client_ip: false,
        refused: Vec::new(),
    });
    for (protocol, host_port) in &req.remove {
        let before = spec.publish.len();
        spec.publish
            .retain(|p| !(p.protocol == *protocol && p.host_port == *host_port));
        if spec.publish.len() == before {
            let proto = protocol.protocol().name();
            return Err(PublishError::Refused(format!(
                "service {} does not publish host port {host_port}/{proto}; `tether service inspect {}` lists its ports",
                service.name, service.name
            )));
        }
    }
    for (i, p) in req.add.iter().enumerate() {
        if req.add[..i].iter().any(|q| q.clashes(p)) || spec.publish.iter().any(|q| q.clashes(p)) {
            return Err(PublishError::Refused(format!(
                "host port {p} is published twice by service {}",
                service.name
            )));
        }
        if let Some(holder) = port_holder::holder_of(state_dir, &service.name, p) {
            return Err(PublishError::Refused(format!(
                "host port {}/{} is taken by {holder}; pick another host port or free it first",
                p.host_port,
                p.protocol.protocol().name()
            )));
        }
    }
    spec.publish.extend(req.add.iter().copied());
    spec.mode = req.mode.unwrap_or(spec.mode);
    spec.policy = req.policy.unwrap_or(spec.policy);
    spec.preserve_client_ip = req.preserve_client_ip.unwrap_or(spec.preserve_client_ip);
    dir.write(&spec)?;
    drop(_lock);
    crate::client::notify::endpoint_changed(&service.network);
    Ok(spec)
}

/// Forgets a removed service's publications.
pub fn forget(state_dir: &Path, service: &str) -> Result<(), PublishError> {
    let dir = MeshDir::new(state_dir);
    let _lock = dir.lock().map_err(PublishError::Lock)?;
    dir.remove(service).map(drop).map_err(PublishError::from)
}

/// One published port as `inspect` shows it, with this host's counters.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedPortView {
    pub publish: Publish,
    pub host: String,
    #[serde(flatten)]
    pub counters: PortCounters,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshView {
    pub mode: PublishMode,
    pub policy: MeshPolicy,
    pub preserve_client_ip: bool,
    pub ports: Vec<PublishedPortView>,
    /// Another host's publications this host did not take: their host port is held here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_here: Vec<RefusedPublish>,
    /// The other hosts' counters of this service (cluster services), from the cluster store.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPortsView>,
}

/// Another host's published ports and counters, and how old they are.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPortsView {
    pub host: std::net::IpAddr,
    pub age_ms: u64,
    pub ports: Vec<PortCount>,
}

/// What the other hosts last reported of `service`, by host address.
fn other_hosts(state_dir: &Path, service: &str) -> Vec<HostPortsView> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out: Vec<HostPortsView> = CountsDir::new(state_dir)
        .others()
        .into_iter()
        .filter_map(|h| {
            let c = h.services.get(service)?;
            Some(HostPortsView {
                host: h.host?,
                age_ms: now_ms.saturating_sub(c.sampled_at_ms),
                ports: c.ports.clone(),
            })
        })
        .collect();
    out.sort_by_key(|h| h.host);
    out
}

/// The service's publications with the counters of this host's mesh table; None when it publishes
/// nothing.
pub fn view(state_dir: &Path, service: &str, host: &str) -> Option<MeshView> {
    let spec = MeshDir::new(state_dir).read(service).ok()??;
    let counters: HashMap<_, _> = mesh_ports::counters().unwrap_or_default();
    let ports = spec
        .publish
        .iter()
        .map(|p| PublishedPortView {
            publish: *p,
            host: host.to_string(),
            counters: counters
                .get(&(p.protocol.protocol(), p.host_port))
                .copied()
                .unwrap_or_default(),
        })
        .collect();
    Some(MeshView {
        mode: spec.mode,
        policy: spec.policy,
        preserve_client_ip: spec.preserve_client_ip,
        ports,
        refused_here: spec.refused,
        hosts: other_hosts(state_dir, service),
    })
}
