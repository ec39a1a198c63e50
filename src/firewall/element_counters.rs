//! The container's own firewall elements as the kernel has them now, each with its packet and byte counter:
//! its addresses in its network's set and NAT map (isolation and masquerade key on them) and its published
//! ports. `tether inspect` shows them; the counters tell whether traffic reaches the element at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

pub use super::netlink::replies::Counter;
use super::netlink::requests::ElementOp;
use super::network_spec::validate_network_name;
use super::port_mapping::{PortEntry, PortMapping};
use super::table::Family;
use super::{container_changes, Firewall, FirewallError, NetworkId};

/// One element of table `inet tether`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementState {
    /// The set or map holding it.
    pub set: String,
    /// Its key, as nft prints it.
    pub key: String,
    /// In the set (for a published port: with this container as its target).
    pub present: bool,
    /// None when absent, or added before elements carried counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<Counter>,
}

impl Firewall {
    /// The container's addresses in its network's address set and NAT map.
    pub fn container_elements(
        &self,
        network: &str,
        addrs: &[IpAddr],
    ) -> Result<Vec<ElementState>, FirewallError> {
        validate_network_name(network)?;
        let mut out = Vec::new();
        for change in container_changes(NetworkId::of(network), addrs, ElementOp::Add) {
            for element in &change.elements {
                let found = self.lookup_elements(
                    change.family,
                    &change.set,
                    std::slice::from_ref(&element.key),
                )?;
                let entry = found.as_ref().and_then(|entries| entries.first());
                out.push(ElementState {
                    set: change.set.clone(),
                    key: address_text(&element.key),
                    present: entry.is_some(),
                    counter: entry.and_then(|e| e.counter),
                });
            }
        }
        Ok(out)
    }

    /// A published port's element in its port map.
    pub fn port_element(&self, mapping: &PortMapping) -> Result<ElementState, FirewallError> {
        let entry = PortEntry::of(mapping)?;
        let found =
            self.lookup_elements(Family::Inet, entry.map, std::slice::from_ref(&entry.key))?;
        let current = found.as_ref().and_then(|entries| entries.first());
        let ours = current.filter(|e| e.value.as_ref() == Some(&entry.value));
        Ok(ElementState {
            set: entry.map.to_string(),
            key: mapping.to_string(),
            present: ours.is_some(),
            counter: ours.and_then(|e| e.counter),
        })
    }
}

fn address_text(key: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(key) {
        Ipv4Addr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(key) {
        Ipv6Addr::from(v6).to_string()
    } else {
        format!("{key:02x?}")
    }
}
