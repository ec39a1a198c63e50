//! `tether service create --publish` and `tether service update --publish-add/--publish-rm`: a service's
//! routing-mesh publications, checked against everything else that may hold the host port (another
//! service's publication, a container's published port, a socket bound on the host), written to the mesh
//! file, and tetherd told. `inspect` shows them with this host's counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::firewall::mesh_ports::{self, PortCounters};
use crate::state::mesh::{MeshDir, MeshPolicy, MeshSpec, Publish, PublishMode};
use crate::state::service::{ProtocolName, ServiceSpec};
use crate::state::RecordDir;

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
        if let Some(holder) = holder_of(state_dir, &service.name, p) {
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

/// Who holds `p`'s host port now, besides `service`: another service, a container's published port, or
/// a socket on the host.
fn holder_of(state_dir: &Path, service: &str, p: &Publish) -> Option<String> {
    if let Some((other, publication)) = MeshDir::new(state_dir).holder(p.protocol, p.host_port) {
        if other != service {
            return Some(format!("service {other} (--publish {publication})"));
        }
    }
    let fw = crate::firewall::Firewall::open().ok()?;
    if let Ok(Some((addr, port))) = fw.published_port_target(p.protocol.protocol(), p.host_port) {
        let who = container_with(state_dir, addr)
            .map(|c| format!("container {c}"))
            .unwrap_or_else(|| "a container".into());
        return Some(format!("{who}'s published port (to {addr}:{port})"));
    }
    drop(fw);
    socket_holders::holder(p.protocol, p.host_port)
}

/// The container holding `addr` on any network of this host.
fn container_with(state_dir: &Path, addr: IpAddr) -> Option<String> {
    let root = crate::state::attachment::attachments_root(state_dir);
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .flat_map(|net| RecordDir::new(state_dir, &net).list().unwrap_or_default())
        .find(|r| r.ips.iter().any(|n| n.ip() == addr))
        .map(|r| r.name.unwrap_or_else(|| r.container_id.to_string()))
}

/// Sockets bound on the host (this namespace), from /proc/net: a TCP listener or any bound UDP/SCTP
/// socket on the port, named by the process holding it.
mod socket_holders {
    use crate::state::service::ProtocolName;

    /// tetherd holds published ports itself; which service a port is for is in the mesh files.
    const TETHERD: &str = "tetherd";
    const TCP_LISTEN: &str = "0A";

    pub fn holder(protocol: ProtocolName, port: u16) -> Option<String> {
        let files: &[&str] = match protocol {
            ProtocolName::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
            ProtocolName::Udp => &["/proc/net/udp", "/proc/net/udp6"],
            ProtocolName::Sctp => &["/proc/net/sctp/eps"],
        };
        let mut inodes = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            inodes.extend(bound_inodes(&text, protocol, port));
        }
        if inodes.is_empty() {
            return None;
        }
        let owners: Vec<(u32, String)> = inodes.iter().filter_map(|i| owner_of(*i)).collect();
        if owners.iter().any(|(_, comm)| comm == TETHERD) {
            return None;
        }
        let proto = protocol.protocol().name();
        Some(match owners.first() {
            Some((pid, comm)) => {
                format!("a socket on port {port}/{proto} of process {pid} ({comm})")
            }
            None => format!("a socket on port {port}/{proto} (its process is not visible here)"),
        })
    }

    /// The inodes of sockets bound to `port` in one /proc/net table.
    pub(super) fn bound_inodes(text: &str, protocol: ProtocolName, port: u16) -> Vec<u64> {
        let mut out = Vec::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local_port, inode) = if protocol == ProtocolName::Sctp {
                // ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS
                match (fields.get(5), fields.get(7)) {
                    (Some(p), Some(i)) => (p.parse::<u16>().ok(), i.parse::<u64>().ok()),
                    _ => continue,
                }
            } else {
                // sl local_address rem_address st ... inode (the 10th field)
                let Some(local) = fields.get(1) else { continue };
                if protocol == ProtocolName::Tcp && fields.get(3) != Some(&TCP_LISTEN) {
                    continue;
                }
                let port = local
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                (port, fields.get(9).and_then(|i| i.parse::<u64>().ok()))
            };
            if let (Some(p), Some(inode)) = (local_port, inode) {
                if p == port && inode != 0 {
                    out.push(inode);
                }
            }
        }
        out
    }

    /// The process with an fd on socket `inode`: its pid and name.
    fn owner_of(inode: u64) -> Option<(u32, String)> {
        let target = format!("socket:[{inode}]");
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .map(|l| l.as_os_str() == target.as_str())
                    .unwrap_or(false)
            });
            if holds {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, comm.trim().to_string()));
            }
        }
        None
    }
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
    })
}

#[cfg(test)]
mod tests {
    use super::socket_holders::bound_inodes;
    use crate::state::service::ProtocolName;

    #[test]
    fn listeners_are_read_from_proc_net() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(bound_inodes(tcp, ProtocolName::Tcp, 8080), vec![4242]);
        assert!(bound_inodes(tcp, ProtocolName::Tcp, 8081).is_empty());
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  700: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 5151 2 0000000000000000 0
";
        assert_eq!(bound_inodes(udp, ProtocolName::Udp, 5353), vec![5151]);
    }
}
