//! The key layout under the prefix (`/tether` by default), readable with `etcdctl get --prefix /tether`:
//!
//! - `<prefix>/hosts/<host>`: `{"host", "startedAtMs"}` on the host's lease: the host is up while it exists.
//! - `<prefix>/blocks/<network>/<a.b.c.d>_<len>`: `{"host", "claimedAtMs"}`, persistent (no lease): who
//!   hands out the block's addresses. Created only by a `version == 0` transaction.
//! - `<prefix>/records/<host>/<network>/<kind>/<id>`: one record of `host`, persistent, written by that
//!   host alone (compare-and-swap on its mod revision). Kinds: `endpoint` (id: the container address,
//!   value `{"vni", "mac", "vtep", "names", "healthyFor"}`) and `service` (id: the service name, value
//!   the service file's JSON: name, network, vips, ports, mode, health, affinity, `cluster.createdAtMs`).

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::link::MacAddr;
use crate::overlay::records::{RecordKey, RecordValue};

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Host(IpAddr),
    Block {
        network: String,
        block: Ipv4Network,
    },
    Endpoint {
        host: IpAddr,
        network: String,
        ip: Ipv4Addr,
    },
    Service {
        host: IpAddr,
        network: String,
        name: String,
    },
    MeshCounts {
        host: IpAddr,
        network: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostValue {
    pub host: IpAddr,
    pub started_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockValue {
    pub host: IpAddr,
    pub claimed_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointValue {
    vni: u32,
    mac: String,
    vtep: IpAddr,
    names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    healthy_for: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.to_string(),
        }
    }

    /// Everything tether keeps, for the list and the watch.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// Every block claim.
    pub fn blocks_root(&self) -> String {
        format!("{}/blocks/", self.prefix)
    }

    pub fn host(&self, host: IpAddr) -> String {
        format!("{}/hosts/{host}", self.prefix)
    }

    pub fn block(&self, network: &str, block: Ipv4Network) -> String {
        format!(
            "{}/blocks/{network}/{}_{}",
            self.prefix,
            block.network(),
            block.prefix()
        )
    }

    /// Every record of `host`.
    pub fn records_of(&self, host: IpAddr) -> String {
        format!("{}/records/{host}/", self.prefix)
    }

    pub fn endpoint(&self, host: IpAddr, network: &str, ip: Ipv4Addr) -> String {
        format!("{}/records/{host}/{network}/endpoint/{ip}", self.prefix)
    }

    pub fn service(&self, host: IpAddr, network: &str, name: &str) -> String {
        format!("{}/records/{host}/{network}/service/{name}", self.prefix)
    }

    pub fn mesh_counts(&self, host: IpAddr, network: &str, name: &str) -> String {
        format!("{}/records/{host}/{network}/meshcounts/{name}", self.prefix)
    }

    /// Reads a key back; `None` for one this version does not know (left alone).
    pub fn parse(&self, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["hosts", host] => host.parse().ok().map(Key::Host),
            ["blocks", network, block] => {
                let (addr, len) = block.split_once('_')?;
                let block = Ipv4Network::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
                Some(Key::Block {
                    network: network.to_string(),
                    block,
                })
            }
            ["records", host, network, "endpoint", ip] => Some(Key::Endpoint {
                host: host.parse().ok()?,
                network: network.to_string(),
                ip: ip.parse().ok()?,
            }),
            ["records", host, network, "service", name] => Some(Key::Service {
                host: host.parse().ok()?,
                network: network.to_string(),
                name: name.to_string(),
            }),
            ["records", host, network, "meshcounts", name] => Some(Key::MeshCounts {
                host: host.parse().ok()?,
                network: network.to_string(),
                name: name.to_string(),
            }),
            _ => None,
        }
    }

    /// The etcd key and value of one of this host's records.
    pub fn encode(&self, key: &RecordKey, value: &RecordValue) -> Option<(String, Vec<u8>)> {
        match (key, value) {
            (
                RecordKey::Endpoint { host, network, ip },
                RecordValue::Endpoint {
                    vni,
                    mac,
                    vtep,
                    names,
                    healthy_for,
                },
            ) => {
                let v = EndpointValue {
                    vni: *vni,
                    mac: MacAddr::new(*mac).to_string(),
                    vtep: *vtep,
                    names: names.clone(),
                    healthy_for: healthy_for.clone(),
                };
                Some((
                    self.endpoint(*host, network, *ip),
                    serde_json::to_vec(&v).ok()?,
                ))
            }
            (
                RecordKey::Claim {
                    host,
                    network,
                    block,
                },
                RecordValue::Claim { claimed_at_ms, .. },
            ) => {
                let v = BlockValue {
                    host: *host,
                    claimed_at_ms: *claimed_at_ms,
                };
                Some((self.block(network, *block), serde_json::to_vec(&v).ok()?))
            }
            (
                RecordKey::Service {
                    host,
                    network,
                    name,
                },
                RecordValue::Service { spec },
            ) => Some((
                self.service(*host, network, name),
                spec.clone().into_bytes(),
            )),
            (
                RecordKey::MeshCounts {
                    host,
                    network,
                    name,
                },
                RecordValue::MeshCounts { counts },
            ) => Some((
                self.mesh_counts(*host, network, name),
                counts.clone().into_bytes(),
            )),
            _ => None,
        }
    }

    /// A stored key and value as a record; `None` for liveness keys and anything unreadable.
    pub fn decode(&self, key: &str, value: &[u8]) -> Option<(RecordKey, RecordValue)> {
        match self.parse(key)? {
            Key::Host(_) => None,
            Key::Block { network, block } => {
                let v: BlockValue = serde_json::from_slice(value).ok()?;
                Some((
                    RecordKey::Claim {
                        host: v.host,
                        network,
                        block,
                    },
                    RecordValue::Claim {
                        claimed_at_ms: v.claimed_at_ms,
                        confirmed: true,
                    },
                ))
            }
            Key::Endpoint { host, network, ip } => {
                let v: EndpointValue = serde_json::from_slice(value).ok()?;
                Some((
                    RecordKey::Endpoint { host, network, ip },
                    RecordValue::Endpoint {
                        vni: v.vni,
                        mac: v.mac.parse::<MacAddr>().ok()?.octets(),
                        vtep: v.vtep,
                        names: v.names,
                        healthy_for: v.healthy_for,
                    },
                ))
            }
            Key::Service {
                host,
                network,
                name,
            } => {
                let spec = String::from_utf8(value.to_vec()).ok()?;
                Some((
                    RecordKey::Service {
                        host,
                        network,
                        name,
                    },
                    RecordValue::Service { spec },
                ))
            }
            Key::MeshCounts {
                host,
                network,
                name,
            } => {
                let counts = String::from_utf8(value.to_vec()).ok()?;
                Some((
                    RecordKey::MeshCounts {
                        host,
                        network,
                        name,
                    },
                    RecordValue::MeshCounts { counts },
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_keys_and_values() {
        let l = Layout::new("/tether");
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let endpoint = (
            RecordKey::Endpoint {
                host,
                network: "ovl".into(),
                ip: "10.0.0.5".parse().unwrap(),
            },
            RecordValue::endpoint(
                7,
                MacAddr::new([2, 0, 0, 0, 0, 5]),
                host,
                vec!["web".into()],
            ),
        );
        let (k, v) = l.encode(&endpoint.0, &endpoint.1).unwrap();
        assert_eq!(k, "/tether/records/192.0.2.1/ovl/endpoint/10.0.0.5");
        assert_eq!(l.decode(&k, &v), Some(endpoint));
        let claim = (
            RecordKey::Claim {
                host,
                network: "ovl".into(),
                block: "10.0.0.64/26".parse().unwrap(),
            },
            RecordValue::Claim {
                claimed_at_ms: 9,
                confirmed: true,
            },
        );
        let (k, v) = l.encode(&claim.0, &claim.1).unwrap();
        assert_eq!(k, "/tether/blocks/ovl/10.0.0.64_26");
        assert_eq!(l.decode(&k, &v), Some(claim));
        let service = (
            RecordKey::Service {
                host,
                network: "ovl".into(),
                name: "web".into(),
            },
            RecordValue::Service {
                spec: r#"{"name":"web"}"#.into(),
            },
        );
        let (k, v) = l.encode(&service.0, &service.1).unwrap();
        assert_eq!(k, "/tether/records/192.0.2.1/ovl/service/web");
        assert_eq!(l.decode(&k, &v), Some(service));
        let counts = (
            RecordKey::MeshCounts {
                host,
                network: "ovl".into(),
                name: "web".into(),
            },
            RecordValue::MeshCounts {
                counts: r#"{"sampledAtMs":1,"ports":[]}"#.into(),
            },
        );
        let (k, v) = l.encode(&counts.0, &counts.1).unwrap();
        assert_eq!(k, "/tether/records/192.0.2.1/ovl/meshcounts/web");
        assert_eq!(l.decode(&k, &v), Some(counts));
        assert_eq!(l.parse("/tether/hosts/192.0.2.1"), Some(Key::Host(host)));
        assert_eq!(l.parse("/tether/later/kind"), None);
        assert_eq!(l.parse("/tetherx/hosts/192.0.2.1"), None);
    }
}
