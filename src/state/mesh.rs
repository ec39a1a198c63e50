//! A service's published ports (the routing mesh) on disk: one JSON file per service that publishes,
//! `<state>/mesh/<name>.json`, written by `tether service create --publish` and `service update`, read by
//! tetherd (which answers on the ports) and by `tether-portmap` (which must not publish the same port).
//! Kept beside the service file rather than in it; on an overlay the service's cluster record carries
//! it too, and other hosts hold copies (`overlay::cluster_services`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::service::ProtocolName;
use crate::state_file::{DirLock, JsonDir};

pub use crate::state_file::StateFileError as MeshFileError;

/// `HOSTPORT:PORT[/tcp|udp|sctp]`: connections to HOSTPORT on the host go to PORT of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Publish {
    pub host_port: u16,
    pub port: u16,
    pub protocol: ProtocolName,
}

impl Publish {
    /// Two publications that claim the same host port.
    pub fn clashes(&self, other: &Publish) -> bool {
        self.host_port == other.host_port && self.protocol == other.protocol
    }
}

fn port_number(text: &str, whole: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("bad port {text:?} in {whole:?}; give 1-65535")),
    }
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(text: &str) -> Result<Publish, String> {
        let (ports, proto) = text.split_once('/').unwrap_or((text, "tcp"));
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => ProtocolName::Tcp,
            "udp" => ProtocolName::Udp,
            "sctp" => ProtocolName::Sctp,
            other => {
                return Err(format!(
                    "unknown protocol {other:?} in {text:?}; use tcp, udp or sctp"
                ))
            }
        };
        let (host, port) = ports
            .split_once(':')
            .ok_or_else(|| format!("bad publish {text:?}; give HOSTPORT:PORT[/tcp|udp|sctp]"))?;
        Ok(Publish {
            host_port: port_number(host, text)?,
            port: port_number(port, text)?,
            protocol,
        })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.protocol.protocol().name();
        write!(f, "{}:{}/{proto}", self.host_port, self.port)
    }
}

crate::text_form::serde_as_text!(Publish);

/// Which hosts answer on a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// Every host, whether or not it runs a replica.
    #[default]
    Mesh,
    /// Only hosts with a replica, straight to their own replicas (Docker's `mode=host`).
    Host,
}

impl FromStr for PublishMode {
    type Err = String;
    fn from_str(text: &str) -> Result<PublishMode, String> {
        match text {
            "mesh" => Ok(PublishMode::Mesh),
            "host" => Ok(PublishMode::Host),
            _ => Err(format!("unknown publish mode {text:?}; use mesh or host")),
        }
    }
}

/// Which replicas a host forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshPolicy {
    /// Local replicas first, else any host's.
    #[default]
    Cluster,
    /// Only this host's replicas; refused (reset) without one (Kubernetes' `externalTrafficPolicy: Local`).
    Local,
}

impl FromStr for MeshPolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<MeshPolicy, String> {
        match text {
            "cluster" => Ok(MeshPolicy::Cluster),
            "local" => Ok(MeshPolicy::Local),
            _ => Err(format!(
                "unknown mesh policy {text:?}; use cluster or local"
            )),
        }
    }
}

/// The published ports of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    pub service: String,
    pub publish: Vec<Publish>,
    #[serde(default)]
    pub mode: PublishMode,
    #[serde(default)]
    pub policy: MeshPolicy,
    /// Remote replicas see the client's address instead of this host's overlay address.
    #[serde(default)]
    pub preserve_client_ip: bool,
    /// On a copy of another host's publications (its service is a copy): the ports this host could not
    /// take because something here holds them. Never published; `service inspect` shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedPublish>,
}

/// A copied publication this host refused, and who holds its port here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedPublish {
    pub publish: Publish,
    pub held_by: String,
}

/// `<state>/mesh`: the one place that names the layout.
pub fn mesh_root(state_dir: &Path) -> PathBuf {
    state_dir.join("mesh")
}

/// The mesh files, with a lock so two publishers never both take one port.
pub struct MeshDir {
    files: JsonDir,
}

/// Held while publications change.
pub type MeshLock = DirLock;

impl MeshDir {
    pub fn new(state_dir: &Path) -> MeshDir {
        MeshDir {
            files: JsonDir::new(mesh_root(state_dir)),
        }
    }

    pub fn lock(&self) -> std::io::Result<MeshLock> {
        self.files.lock()
    }

    pub fn read(&self, service: &str) -> Result<Option<MeshSpec>, MeshFileError> {
        self.files.read(service)
    }

    /// Writes the spec, or removes the file when nothing is published (or refused) any more.
    pub fn write(&self, spec: &MeshSpec) -> Result<(), MeshFileError> {
        if spec.publish.is_empty() && spec.refused.is_empty() {
            return self.remove(&spec.service).map(drop);
        }
        self.files.write(&spec.service, spec)
    }

    pub fn remove(&self, service: &str) -> Result<bool, MeshFileError> {
        self.files.remove(service)
    }

    /// Every service that publishes, by name; a missing directory is none.
    pub fn list(&self) -> Result<Vec<MeshSpec>, MeshFileError> {
        let mut all: Vec<MeshSpec> = self.files.list()?;
        all.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(all)
    }

    /// The directory's modification time: tetherd re-reads the files only when it moved.
    pub fn stamp(&self) -> Option<std::time::SystemTime> {
        self.files.stamp()
    }

    /// The service publishing `protocol` host port `host_port`, if any.
    pub fn holder(&self, protocol: ProtocolName, host_port: u16) -> Option<(String, Publish)> {
        self.list().ok()?.into_iter().find_map(|spec| {
            spec.publish
                .iter()
                .find(|p| p.protocol == protocol && p.host_port == host_port)
                .map(|p| (spec.service.clone(), *p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_parse_with_tcp_by_default() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!(p.to_string(), "8080:80/tcp");
        let u: Publish = "5353:53/UDP".parse().unwrap();
        assert_eq!(u.protocol, ProtocolName::Udp);
        assert!("8080".parse::<Publish>().is_err());
        assert!("0:80".parse::<Publish>().is_err());
        assert!("80:80/icmp".parse::<Publish>().is_err());
        assert!(p.clashes(&"8080:81".parse().unwrap()));
        assert!(!p.clashes(&"8080:80/udp".parse().unwrap()));
    }

    #[test]
    fn the_file_round_trips_and_an_empty_one_goes() {
        let dir = std::env::temp_dir().join(format!("tether-mesh-{}", std::process::id()));
        let mesh = MeshDir::new(&dir);
        let spec = MeshSpec {
            service: "web".into(),
            publish: vec!["8080:80".parse().unwrap()],
            mode: PublishMode::Mesh,
            policy: MeshPolicy::Local,
            preserve_client_ip: false,
            refused: Vec::new(),
        };
        mesh.write(&spec).unwrap();
        assert_eq!(mesh.read("web").unwrap(), Some(spec.clone()));
        assert_eq!(
            mesh.holder(ProtocolName::Tcp, 8080).map(|h| h.0),
            Some("web".to_string())
        );
        assert_eq!(mesh.holder(ProtocolName::Udp, 8080), None);
        mesh.write(&MeshSpec {
            publish: vec![],
            ..spec
        })
        .unwrap();
        assert_eq!(mesh.read("web").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
