//! What tether-overlay keeps on each host, under `<state>/overlay/<network>/`, for itself and for tetherd's
//! control plane (which reads it at start and on every notify, and writes `peer_claims.json`):
//!
//! - `network.json`: the network's VNI, subnets, VTEP and devices ([`NetworkFacts`]), written on first use;
//! - `claims.json`: the address blocks this host claimed ([`HostClaims`]);
//! - `peer_claims.json`: the blocks other hosts claimed, as the control plane last heard ([`PeerClaim`]);
//! - `leases/`: an `ipam` store handing out addresses of this host's blocks.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};

use super::pool::Pool;
use crate::state_file::{self, StateFileError};

/// The network's facts on this host. An IPv4 network's file is written exactly as before IPv6 existed
/// (`subnet`, `blockPrefix`); IPv6 adds `subnet6`/`blockPrefix6`, and an IPv6-only network has no `subnet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFacts {
    pub network: String,
    pub vni: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Network>,
    /// The IPv4 blocks' prefix (meaningless without `subnet`).
    #[serde(default)]
    pub block_prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_prefix6: Option<u8>,
    /// This host's VTEP address; also its name in the control plane.
    pub vtep: IpAddr,
    pub bridge: String,
    pub vxlan: String,
    /// The VXLAN device's UDP port (facts written before it was configurable read as 4789).
    #[serde(default = "default_vxlan_port")]
    pub port: u16,
    /// VXLAN between hosts travels in ESP (`"encrypted": true`); tetherd programs the IPsec states.
    #[serde(default)]
    pub encrypted: bool,
}

impl NetworkFacts {
    /// The network's address families, IPv4 first.
    pub fn pools(&self) -> Vec<Pool> {
        let v4 = self.subnet.map(|s| Pool {
            subnet: IpNetwork::V4(s),
            block_prefix: self.block_prefix,
        });
        let v6 = self.subnet6.zip(self.block_prefix6).map(|(s, p)| Pool {
            subnet: IpNetwork::V6(s),
            block_prefix: p,
        });
        v4.into_iter().chain(v6).collect()
    }

    /// The fields for `pools` (at most one per family).
    pub fn set_pools(&mut self, pools: &[Pool]) {
        (self.subnet, self.subnet6, self.block_prefix6) = (None, None, None);
        for pool in pools {
            match pool.subnet {
                IpNetwork::V4(s) => {
                    self.subnet = Some(s);
                    self.block_prefix = pool.block_prefix;
                }
                IpNetwork::V6(s) => {
                    self.subnet6 = Some(s);
                    self.block_prefix6 = Some(pool.block_prefix);
                }
            }
        }
    }

    /// The pool `ip` belongs to.
    pub fn pool_of(&self, ip: IpAddr) -> Option<Pool> {
        self.pools().into_iter().find(|p| p.contains(ip))
    }
}

fn default_vxlan_port() -> u16 {
    crate::link::VXLAN_PORT
}

/// Where a claim stands in tetherd's agreement (see `blocks::outranks` for who wins a conflict).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum ClaimState {
    /// Every live member acknowledged it, with a majority of the configured hosts up: no other host can
    /// hold it. Addresses come from it.
    Confirmed,
    /// Taken without agreement (tetherd down, no majority, or no answer within the plugin's bound).
    /// Addresses come from it; tetherd keeps proposing it and a conflict is settled when it is seen.
    /// Claims written before agreement existed read as this.
    #[default]
    Unconfirmed,
    /// Proposed and waiting for the members' answers: no address comes from it yet.
    Pending,
}

/// One block this host hands addresses out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// IPv4 or IPv6; written as text (`"10.0.0.0/26"`), as before IPv6 blocks existed.
    pub block: IpNetwork,
    /// Wall-clock milliseconds of the claim: the earlier claim of a block wins a conflict.
    pub claimed_at_ms: u64,
    /// Lost to another host's claim while addresses of it were in use here: no new address comes from
    /// it, it is not published, and it goes once its last address is released.
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub state: ClaimState,
}

impl Claim {
    /// Whether addresses may be handed out of this block now.
    pub fn usable(&self) -> bool {
        !self.lost && self.state != ClaimState::Pending
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostClaims {
    pub claims: Vec<Claim>,
}

/// A block another host claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerClaim {
    pub block: IpNetwork,
    pub host: IpAddr,
    pub claimed_at_ms: u64,
    /// Confirmed or unconfirmed (peers publish no pending claims).
    #[serde(default)]
    pub state: ClaimState,
}

/// The overlay state directory of one network.
#[derive(Debug, Clone)]
pub struct OverlayDir {
    dir: PathBuf,
}

impl OverlayDir {
    pub fn new(state_dir: &Path, network: &str) -> Self {
        OverlayDir {
            dir: Self::root(state_dir).join(network),
        }
    }

    pub fn for_network(network: &str) -> Self {
        Self::new(&crate::paths::state_dir(), network)
    }

    /// `<state>/overlay`: one directory per overlay network used on this host.
    pub fn root(state_dir: &Path) -> PathBuf {
        state_dir.join("overlay")
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn facts(&self) -> Result<Option<NetworkFacts>, StateFileError> {
        state_file::read_json(&self.dir.join("network.json"))
    }

    pub fn write_facts(&self, facts: &NetworkFacts) -> Result<(), StateFileError> {
        state_file::write_json(&self.dir.join("network.json"), facts)
    }

    pub fn claims(&self) -> Result<HostClaims, StateFileError> {
        Ok(state_file::read_json(&self.dir.join("claims.json"))?.unwrap_or_default())
    }

    pub fn write_claims(&self, claims: &HostClaims) -> Result<(), StateFileError> {
        state_file::write_json(&self.dir.join("claims.json"), claims)
    }

    pub fn peer_claims(&self) -> Result<Vec<PeerClaim>, StateFileError> {
        Ok(state_file::read_json(&self.dir.join("peer_claims.json"))?.unwrap_or_default())
    }

    pub fn write_peer_claims(&self, claims: &[PeerClaim]) -> Result<(), StateFileError> {
        state_file::write_json(&self.dir.join("peer_claims.json"), &claims)
    }

    /// Parent of the lease store (`ipam::Store::open(this, LEASE_STORE)`).
    pub fn lease_data_dir(&self) -> &Path {
        &self.dir
    }

    /// Forgets the network on this host (its last container left).
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Name of the lease store inside the network's overlay directory.
pub const LEASE_STORE: &str = "leases";

/// Every overlay network this host has facts for.
pub fn local_networks(state_dir: &Path) -> Vec<NetworkFacts> {
    let Ok(entries) = std::fs::read_dir(OverlayDir::root(state_dir)) else {
        return Vec::new();
    };
    let mut facts: Vec<NetworkFacts> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            match OverlayDir::new(state_dir, &name).facts() {
                Ok(f) => f,
                Err(err) => {
                    tracing::warn!(network = %name, error = %err, "skipping unreadable overlay network facts");
                    None
                }
            }
        })
        .collect();
    facts.sort_by(|a, b| a.network.cmp(&b.network));
    facts
}

/// Milliseconds since the epoch, for claim times and record versions.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_written_before_ipv6_read_the_same_and_an_ipv4_network_is_written_as_before() {
        let old_facts = r#"{"network":"ovl","vni":100,"subnet":"10.210.0.0/16","blockPrefix":26,"vtep":"192.168.77.1","bridge":"tob100","vxlan":"tvx100","port":4789,"encrypted":false}"#;
        let facts: NetworkFacts = serde_json::from_str(old_facts).unwrap();
        assert_eq!(
            facts.pools(),
            vec![Pool {
                subnet: "10.210.0.0/16".parse().unwrap(),
                block_prefix: 26
            }]
        );
        assert_eq!(serde_json::to_string(&facts).unwrap(), old_facts);
        let old_claims = r#"{"claims":[{"block":"10.210.0.0/26","claimedAtMs":5,"lost":false,"state":"confirmed"}]}"#;
        let claims: HostClaims = serde_json::from_str(old_claims).unwrap();
        assert_eq!(claims.claims[0].block.to_string(), "10.210.0.0/26");
        assert_eq!(serde_json::to_string(&claims).unwrap(), old_claims);

        let mut dual = facts.clone();
        let v6 = Pool {
            subnet: "fd00:210::/64".parse().unwrap(),
            block_prefix: 122,
        };
        dual.set_pools(&[facts.pools()[0], v6]);
        let text = serde_json::to_string(&dual).unwrap();
        let back: NetworkFacts = serde_json::from_str(&text).unwrap();
        assert_eq!(back.pools(), vec![facts.pools()[0], v6]);
        assert_eq!(back.pool_of("fd00:210::5".parse().unwrap()), Some(v6));
        let mut only6 = facts;
        only6.set_pools(&[v6]);
        assert!(!serde_json::to_string(&only6)
            .unwrap()
            .contains("\"subnet\""));
    }
}
