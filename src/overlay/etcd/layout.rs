//! The key layout under the prefix (`/tether` by default), readable with `etcdctl get --prefix /tether`:
//!
//! - `<prefix>/hosts/<host>`: `{"host", "startedAtMs"}` on the host's lease: the host is up while it exists.
//! - `<prefix>/blocks/<network>/<a.b.c.d>_<len>` (IPv6: `<fd00::40>_<len>`): `{"host", "claimedAtMs"}`,
//!   persistent (no lease): who hands out the block's addresses. Created only by a `version == 0`
//!   transaction.
//! - `<prefix>/records/<host>/<network>/<kind>/<id>`: one record of `host`, persistent, written by that
//!   host alone (compare-and-swap on its mod revision). Kinds: `endpoint` (id: the container address,
//!   value `{"vni", "mac", "vtep", "names", "healthyFor"}`) and `service` (id: the service name, value
//!   the service file's JSON: name, network, vips, ports, mode, health, affinity, `cluster.createdAtMs`).
//! - `<prefix>/records/<host>/ipsec/generation/<from>_<to>_<port>`: the ESP generations of one VTEP pair
//!   (`{"send", "ack"}`, each a number or null), written by `host` alone like the records above.
//! - `<prefix>/records/<host>/ipsec/rotation/schedule`: `host`'s copy of the key rotation schedule
//!   (`{"setAtMs", "current", "previous"}`, each numbering `{"intervalMs", "anchorMs", "anchorEpoch"}`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::link::MacAddr;
use crate::overlay::records::{RecordKey, RecordValue};

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Host(IpAddr),
    Block {
        network: String,
        block: IpNetwork,
    },
    Endpoint {
        host: IpAddr,
        network: String,
        ip: IpAddr,
    },
    Service {
        host: IpAddr,
        network: String,
        name: String,
    },
    Generation {
        host: IpAddr,
        from: IpAddr,
        to: IpAddr,
        port: u16,
    },
    Rotation(IpAddr),
    MeshCounts {
        host: IpAddr,
        network: String,
        name: String,
    },
}

impl Key {
    /// The record a key stands for when the key alone names it: every record kind but a block claim
    /// (whose holder is in the value). A delete event carries only the key.
    pub fn record_key(self) -> Option<RecordKey> {
        match self {
            Key::Host(_) | Key::Block { .. } => None,
            Key::Endpoint { host, network, ip } => Some(RecordKey::Endpoint { host, network, ip }),
            Key::Service {
                host,
                network,
                name,
            } => Some(RecordKey::Service {
                host,
                network,
                name,
            }),
            Key::Generation {
                host,
                from,
                to,
                port,
            } => Some(RecordKey::Generation {
                host,
                from,
                to,
                port,
            }),
            Key::Rotation(host) => Some(RecordKey::Rotation { host }),
            Key::MeshCounts {
                host,
                network,
                name,
            } => Some(RecordKey::MeshCounts {
                host,
                network,
                name,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GenerationValue {
    send: Option<u64>,
    ack: Option<u64>,
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

    /// Whether `key` is a block claim's (under [`Layout::blocks_root`]), without building that prefix:
    /// asked of every delivered key.
    pub fn is_block(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with("/blocks/"))
    }

    /// Whether `key` is a record's (any host's: under `records/`), without building that prefix.
    pub fn is_record(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with("/records/"))
    }

    /// The block claims of one network.
    pub fn blocks_of(&self, network: &str) -> String {
        format!("{}/blocks/{network}/", self.prefix)
    }

    /// What the watch covers, `[start, end)`: everything under the prefix but the block claims, i.e.
    /// `hosts/` and `records/` (keys sort `blocks/` < `hosts/` < `records/`). A claim is made unique by
    /// its `version == 0` transaction, so no host needs every other host's claims as they happen; with
    /// them in the watch every claim was delivered to every host (N² deliveries for a fleet).
    pub fn watched(&self) -> (String, String) {
        (range_end(&self.blocks_root()), range_end(&self.root()))
    }

    pub fn host(&self, host: IpAddr) -> String {
        format!("{}/hosts/{host}", self.prefix)
    }

    pub fn block(&self, network: &str, block: IpNetwork) -> String {
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

    pub fn endpoint(&self, host: IpAddr, network: &str, ip: IpAddr) -> String {
        format!("{}/records/{host}/{network}/endpoint/{ip}", self.prefix)
    }

    pub fn service(&self, host: IpAddr, network: &str, name: &str) -> String {
        format!("{}/records/{host}/{network}/service/{name}", self.prefix)
    }

    pub fn generation(&self, host: IpAddr, from: IpAddr, to: IpAddr, port: u16) -> String {
        format!(
            "{}/records/{host}/ipsec/generation/{from}_{to}_{port}",
            self.prefix
        )
    }

    pub fn rotation(&self, host: IpAddr) -> String {
        format!("{}/records/{host}/ipsec/rotation/schedule", self.prefix)
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
                let block = IpNetwork::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
                // One spelling per block: a key not in it (`10.0.0.1_26`) is not one of ours.
                if block.network() != block.ip() {
                    return None;
                }
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
            ["records", host, "ipsec", "generation", id] => {
                let mut parts = id.split('_');
                let key = Key::Generation {
                    host: host.parse().ok()?,
                    from: parts.next()?.parse().ok()?,
                    to: parts.next()?.parse().ok()?,
                    port: parts.next()?.parse().ok()?,
                };
                parts.next().is_none().then_some(key)
            }
            ["records", host, "ipsec", "rotation", "schedule"] => {
                host.parse().ok().map(Key::Rotation)
            }
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
                RecordKey::Generation {
                    host,
                    from,
                    to,
                    port,
                },
                RecordValue::Generation { send, ack },
            ) => {
                let v = GenerationValue {
                    send: *send,
                    ack: *ack,
                };
                Some((
                    self.generation(*host, *from, *to, *port),
                    serde_json::to_vec(&v).ok()?,
                ))
            }
            (RecordKey::Rotation { host }, RecordValue::Rotation(schedule)) => {
                Some((self.rotation(*host), serde_json::to_vec(schedule).ok()?))
            }
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
        self.decode_parsed(self.parse(key)?, value)
    }

    /// [`Layout::decode`] of a key already parsed (every delivered key is parsed once, not per use).
    pub fn decode_parsed(&self, key: Key, value: &[u8]) -> Option<(RecordKey, RecordValue)> {
        match key {
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
            Key::Generation {
                host,
                from,
                to,
                port,
            } => {
                let v: GenerationValue = serde_json::from_slice(value).ok()?;
                Some((
                    RecordKey::Generation {
                        host,
                        from,
                        to,
                        port,
                    },
                    RecordValue::Generation {
                        send: v.send,
                        ack: v.ack,
                    },
                ))
            }
            Key::Rotation(host) => Some((
                RecordKey::Rotation { host },
                RecordValue::Rotation(serde_json::from_slice(value).ok()?),
            )),
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

/// The first key past every key starting with `prefix` (etcd's prefix range end): its last byte plus
/// one. The prefixes here end in `/`, so the result is ASCII.
fn range_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watched_range_holds_hosts_and_records_and_no_block() {
        let l = Layout::new("/tether");
        let (start, end) = l.watched();
        let inside = |k: &str| start.as_str() <= k && k < end.as_str();
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let block: IpNetwork = "10.0.0.64/26".parse().unwrap();
        assert!(inside(&l.host(host)));
        assert!(inside(&l.endpoint(
            host,
            "ovl",
            "10.0.0.65".parse().unwrap()
        )));
        assert!(inside(&l.rotation(host)));
        assert!(!inside(&l.block("ovl", block)));
        assert!(!inside(&l.block("~", block)), "any network name");
        // Nothing outside the prefix: another tenant's keys next to it.
        assert!(!inside("/tether0"));
        assert!(!inside("/tetherx/hosts/192.0.2.1"));
        assert!(!inside("/tethe/hosts/192.0.2.1"));
        assert_eq!(
            (start.as_str(), end.as_str()),
            ("/tether/blocks0", "/tether0")
        );
        // Blocks are told from the rest without the prefix built per key.
        assert!(l.is_block(&l.block("ovl", block)));
        assert!(l.block("ovl", block).starts_with(&l.blocks_root()));
        assert!(!l.is_block(&l.host(host)));
        assert!(!l.is_block("/tetherx/blocks/ovl/10.0.0.64_26"));
        assert!(!l.is_block("/tether/blocksx/ovl"));
    }

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
        assert_eq!(l.decode(&k, &v), Some(endpoint.clone()));
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
        assert_eq!(l.decode(&k, &v), Some(claim.clone()));
        // IPv6 endpoints and blocks: the address's own text in the key.
        let v6 = (
            RecordKey::Endpoint {
                host,
                network: "ovl".into(),
                ip: "fd00::5".parse().unwrap(),
            },
            endpoint.1.clone(),
        );
        let (k, v) = l.encode(&v6.0, &v6.1).unwrap();
        assert_eq!(k, "/tether/records/192.0.2.1/ovl/endpoint/fd00::5");
        assert_eq!(l.decode(&k, &v), Some(v6));
        let block6 = (
            RecordKey::Claim {
                host,
                network: "ovl".into(),
                block: "fd00::40/122".parse().unwrap(),
            },
            claim.1.clone(),
        );
        let (k, v) = l.encode(&block6.0, &block6.1).unwrap();
        assert_eq!(k, "/tether/blocks/ovl/fd00::40_122");
        assert_eq!(l.decode(&k, &v), Some(block6));
        assert_eq!(l.parse("/tether/blocks/ovl/fd00::41_122"), None);
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
        let generation = (
            RecordKey::Generation {
                host,
                from: host,
                to: "2001:db8::2".parse().unwrap(),
                port: 4789,
            },
            RecordValue::Generation {
                send: Some(3),
                ack: None,
            },
        );
        let (k, v) = l.encode(&generation.0, &generation.1).unwrap();
        assert_eq!(
            k,
            "/tether/records/192.0.2.1/ipsec/generation/192.0.2.1_2001:db8::2_4789"
        );
        assert_eq!(v, br#"{"send":3,"ack":null}"#);
        assert_eq!(l.decode(&k, &v), Some(generation));
        let schedule = crate::overlay::ipsec::epoch::Schedule::configured(
            crate::overlay::ipsec::Rotation::every(std::time::Duration::from_secs(30)),
        );
        let rotation = (
            RecordKey::Rotation { host },
            RecordValue::Rotation(schedule),
        );
        let (k, v) = l.encode(&rotation.0, &rotation.1).unwrap();
        assert_eq!(k, "/tether/records/192.0.2.1/ipsec/rotation/schedule");
        assert_eq!(l.decode(&k, &v), Some(rotation));
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
