//! What the Docker drivers remember, under `<state>/docker/`: Docker never replays its state to a restarted
//! plugin (no new CreateNetwork, no RequestPool), so every network, endpoint and pool is on disk before its
//! answer goes out, and every request reads what it needs from there. A restarted tetherd is at once the
//! tetherd it replaced.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::driver::portmap::SavedMapping;
use crate::error::Error;
use crate::firewall::PortMapping;
use crate::link::MacAddr;
use crate::state_file;

/// The Docker driver a network belongs to (each has its own socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerDriver {
    /// `tether`: a bridge per network.
    #[default]
    Bridge,
    /// `tether-macvlan`: macvlan children of a parent link.
    Macvlan,
    /// `tether-overlay`: tether-overlay's bridge and VXLAN device, across hosts.
    Overlay,
}

/// A network as CreateNetwork made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRecord {
    /// Docker's network id.
    pub id: String,
    #[serde(default)]
    pub driver: DockerDriver,
    /// The name tether's firewall and locks know it by (`docker-` + 12 digits of the id).
    pub name: String,
    pub bridge: String,
    /// Whether CreateNetwork made the bridge (a bridge named by `-o` may have been there before).
    pub bridge_created: bool,
    /// Gateways with their prefix (`172.18.0.1/16`), as Docker hands them over.
    pub gateways: Vec<IpNetwork>,
    pub masquerade: bool,
    pub icc: bool,
    pub mtu: Option<u32>,
    pub internal: bool,
    /// tether-macvlan: the parent link and the mode of its children.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub macvlan_mode: Option<String>,
    /// tether-overlay: its config, in tether-overlay's own fields (read with `OverlayConfig::from_json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<serde_json::Value>,
}

/// A container's end of a network: the veth pair and what the firewall holds for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    /// The bridge port.
    pub host_if: String,
    /// The end Docker moves into the container (Join's SrcName).
    pub peer_if: String,
    pub addresses: Vec<IpNetwork>,
    pub mac: MacAddr,
    /// Published ports, from ProgramExternalConnectivity until revoked.
    #[serde(default)]
    pub ports: Vec<SavedMapping>,
}

impl EndpointRecord {
    pub fn ips(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(IpNetwork::ip).collect()
    }

    pub fn port_mappings(&self) -> Vec<PortMapping> {
        self.ports
            .iter()
            .filter_map(SavedMapping::to_mapping)
            .collect()
    }
}

/// An address pool handed to Docker by RequestPool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRecord {
    pub id: String,
    pub pool: IpNetwork,
    /// `--ip-range`: addresses are handed out from here only.
    pub sub_pool: Option<IpNetwork>,
}

/// The directory tree of the Docker drivers' state.
#[derive(Debug, Clone)]
pub struct DockerState {
    root: PathBuf,
}

/// Docker ids are 64 hex digits; 12 of them name things, as `docker network ls` shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Docker's ids are hex; anything else could name a path outside the state directory.
fn checked(id: &str) -> Result<&str, Error> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::config(format!(
            "id {id:?} is not a Docker object id (letters and digits)"
        )));
    }
    Ok(id)
}

impl DockerState {
    pub fn new(state_dir: &Path) -> DockerState {
        DockerState {
            root: state_dir.join("docker"),
        }
    }

    /// `<TETHER_STATE_DIR>/docker`.
    pub fn from_env() -> DockerState {
        DockerState::new(&crate::paths::state_dir())
    }

    fn path(&self, kind: &str, id: &str) -> Result<PathBuf, Error> {
        Ok(self.root.join(kind).join(format!("{}.json", checked(id)?)))
    }

    /// The IPAM store directory of the pools (one store per pool id).
    pub fn ipam_dir(&self) -> PathBuf {
        self.root.join("ipam")
    }

    /// The network Docker names in a call; an error Docker shows when the record is gone.
    pub fn known_network(&self, id: &str) -> Result<NetworkRecord, Error> {
        self.network(id)?.ok_or_else(|| {
            Error::config(format!(
                "network {} is not known to tetherd (its record is gone); remove it with `docker network rm`",
                short(id)
            ))
        })
    }

    /// The endpoint Docker names in a call; an error Docker shows when the record is gone.
    pub fn known_endpoint(&self, id: &str) -> Result<EndpointRecord, Error> {
        self.endpoint(id)?.ok_or_else(|| {
            Error::config(format!(
                "endpoint {} is not known to tetherd (its record is gone); disconnect and connect the container again",
                short(id)
            ))
        })
    }

    pub fn network(&self, id: &str) -> Result<Option<NetworkRecord>, Error> {
        Ok(state_file::read_json(&self.path("networks", id)?)?)
    }

    pub fn write_network(&self, rec: &NetworkRecord) -> Result<(), Error> {
        Ok(state_file::write_json(
            &self.path("networks", &rec.id)?,
            rec,
        )?)
    }

    pub fn remove_network(&self, id: &str) -> Result<(), Error> {
        state_file::remove(&self.path("networks", id)?)?;
        Ok(())
    }

    pub fn networks(&self) -> Result<Vec<NetworkRecord>, Error> {
        Ok(state_file::list_json(&self.root.join("networks"))?)
    }

    pub fn endpoint(&self, id: &str) -> Result<Option<EndpointRecord>, Error> {
        Ok(state_file::read_json(&self.path("endpoints", id)?)?)
    }

    pub fn write_endpoint(&self, rec: &EndpointRecord) -> Result<(), Error> {
        Ok(state_file::write_json(
            &self.path("endpoints", &rec.id)?,
            rec,
        )?)
    }

    pub fn remove_endpoint(&self, id: &str) -> Result<(), Error> {
        state_file::remove(&self.path("endpoints", id)?)?;
        Ok(())
    }

    pub fn endpoints(&self) -> Result<Vec<EndpointRecord>, Error> {
        Ok(state_file::list_json(&self.root.join("endpoints"))?)
    }

    pub fn pool(&self, id: &str) -> Result<Option<PoolRecord>, Error> {
        Ok(state_file::read_json(&self.path("pools", id)?)?)
    }

    pub fn write_pool(&self, rec: &PoolRecord) -> Result<(), Error> {
        Ok(state_file::write_json(&self.path("pools", &rec.id)?, rec)?)
    }

    pub fn remove_pool(&self, id: &str) -> Result<(), Error> {
        state_file::remove(&self.path("pools", id)?)?;
        Ok(())
    }

    pub fn pools(&self) -> Result<Vec<PoolRecord>, Error> {
        Ok(state_file::list_json(&self.root.join("pools"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_docker_ids_name_no_file() {
        let state = DockerState::new(Path::new("/nonexistent"));
        assert!(state.network("../../etc/passwd").is_err());
        assert!(state.endpoint("").is_err());
        assert!(state.pool("a/b").is_err());
    }

    #[test]
    fn records_round_trip() {
        let dir = std::env::temp_dir().join(format!("tether-docker-rec-{}", std::process::id()));
        let state = DockerState::new(&dir);
        let pool = PoolRecord {
            id: "tp10x9x0x0x24".into(),
            pool: "10.9.0.0/24".parse().unwrap(),
            sub_pool: None,
        };
        state.write_pool(&pool).unwrap();
        assert_eq!(state.pool(&pool.id).unwrap(), Some(pool.clone()));
        assert_eq!(state.pools().unwrap(), vec![pool.clone()]);
        state.remove_pool(&pool.id).unwrap();
        assert_eq!(state.pool(&pool.id).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
