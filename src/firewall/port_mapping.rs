//! Published ports as the firewall sees them, and where each one lives in the port maps.

use std::fmt;
use std::net::IpAddr;

use super::error::FirewallError;
use super::netlink::requests::{address_bytes, concat_bytes};
use super::table;
use crate::transport::Protocol;

/// One published port: traffic to `host_ip:host_port` (any local address when `host_ip`
/// is None or unspecified) goes to `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// The reference portmap plugin's options; they apply to all published ports of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortmapOptions {
    /// Masquerade published-port traffic from 127.0.0.0/8 and hairpin traffic (a container
    /// reaching a published port of its own network through the host).
    pub snat: bool,
    /// Masquerade all published-port traffic.
    pub masq_all: bool,
}

impl Default for PortmapOptions {
    fn default() -> PortmapOptions {
        PortmapOptions {
            snat: true,
            masq_all: false,
        }
    }
}

impl PortmapOptions {
    /// The comment on the masquerade chain, to notice when the options change.
    pub(super) fn fingerprint(&self) -> String {
        format!(
            "tether portmap snat={} masqall={}",
            u8::from(self.snat),
            u8::from(self.masq_all)
        )
    }
}

impl PortMapping {
    /// The host address the mapping is bound to; None for any local address.
    pub fn bound_host_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    /// `hostIP:port/proto`, `*:port/proto` for any address.
    pub fn host_side(&self) -> String {
        let port = self.host_port;
        let proto = self.protocol.name();
        match self.bound_host_ip() {
            Some(IpAddr::V4(ip)) => format!("{ip}:{port}/{proto}"),
            Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}/{proto}"),
            None if self.container_ip.is_ipv4() => format!("*:{port}/{proto} (IPv4)"),
            None => format!("*:{port}/{proto} (IPv6)"),
        }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.container_ip {
            IpAddr::V4(ip) => format!("{ip}:{}", self.container_port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.container_port),
        };
        write!(f, "{} -> {target}", self.host_side())
    }
}

/// Where a mapping lives: which map, under which key, with which DNAT target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortEntry {
    pub map: &'static str,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// `l4proto . dport`: the part of the key shared by the any-address and bound maps.
    pub proto_port: Vec<u8>,
    /// The map holding the mappings that overlap this one under another key (bound
    /// mappings for an any-address one, and the other way round).
    pub overlapping_map: &'static str,
    pub bound: bool,
}

impl PortEntry {
    pub fn of(mapping: &PortMapping) -> Result<PortEntry, FirewallError> {
        let invalid = |reason| FirewallError::InvalidPortMapping {
            mapping: mapping.to_string(),
            reason,
        };
        if mapping.host_port == 0 || mapping.container_port == 0 {
            return Err(invalid("ports must be 1 to 65535"));
        }
        if mapping.container_ip.is_unspecified() || mapping.container_ip.is_multicast() {
            return Err(invalid("the container address must be a unicast address"));
        }
        let bound = mapping.bound_host_ip();
        if bound.is_some_and(|ip| ip.is_ipv4() != mapping.container_ip.is_ipv4()) {
            return Err(invalid(
                "the host address and the container address must be of one IP family",
            ));
        }
        let v4 = mapping.container_ip.is_ipv4();
        let (any_map, bound_map) = if v4 {
            (table::PORTS_ANY_V4_MAP, table::PORTS_BOUND_V4_MAP)
        } else {
            (table::PORTS_ANY_V6_MAP, table::PORTS_BOUND_V6_MAP)
        };
        let proto = [mapping.protocol.number()];
        let port = mapping.host_port.to_be_bytes();
        let proto_port = concat_bytes(&[&proto, &port]);
        let value = concat_bytes(&[
            &address_bytes(&mapping.container_ip),
            &mapping.container_port.to_be_bytes(),
        ]);
        Ok(match bound {
            Some(host) => PortEntry {
                map: bound_map,
                key: concat_bytes(&[&address_bytes(&host), &proto, &port]),
                value,
                proto_port,
                overlapping_map: any_map,
                bound: true,
            },
            None => PortEntry {
                map: any_map,
                key: proto_port.clone(),
                value,
                proto_port,
                overlapping_map: bound_map,
                bound: false,
            },
        })
    }

    /// Whether a key of `overlapping_map` stands for the same protocol and port.
    pub fn overlaps_key(&self, other_key: &[u8]) -> bool {
        if self.bound {
            other_key == self.proto_port.as_slice()
        } else {
            // A bound key is `address . l4proto . dport`: the address is 4 or 16 bytes.
            other_key.len() > self.proto_port.len() && other_key.ends_with(&self.proto_port)
        }
    }
}

/// A DNAT target as the maps hold it, for messages.
pub(super) fn describe_target(value: &[u8]) -> String {
    let port = |at: usize| {
        value
            .get(at..at + 2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
    };
    match value.len() {
        8 => match port(4) {
            Some(port) => format!("{}.{}.{}.{}:{port}", value[0], value[1], value[2], value[3]),
            None => String::new(),
        },
        20 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&value[..16]);
            match port(16) {
                Some(port) => format!("[{}]:{port}", std::net::Ipv6Addr::from(octets)),
                None => String::new(),
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: Option<&str>, host_port: u16, container: &str) -> PortMapping {
        PortMapping {
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port,
            container_ip: container.parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn any_address_ipv4_key_and_value_match_nft_layout() {
        let entry = PortEntry::of(&mapping(None, 8080, "10.0.0.2")).unwrap();
        assert_eq!(entry.map, "ports4_any");
        // `nft --debug=netlink`: element 00000006 0000901f : 0200000a 00005000
        assert_eq!(entry.key, vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(entry.value, vec![10, 0, 0, 2, 0, 80, 0, 0]);
        assert_eq!(entry.overlapping_map, "ports4_bound");
    }

    #[test]
    fn bound_ipv6_key_holds_address_protocol_and_port() {
        let entry = PortEntry::of(&mapping(Some("::1"), 80, "fd00::2")).unwrap();
        assert_eq!(entry.map, "ports6_bound");
        let mut key = vec![0u8; 15];
        key.push(1);
        key.extend([6, 0, 0, 0, 0, 80, 0, 0]);
        assert_eq!(entry.key, key);
        assert_eq!(entry.value.len(), 20);
        assert_eq!(describe_target(&entry.value), "[fd00::2]:80");
    }

    #[test]
    fn unspecified_host_address_means_any() {
        let entry = PortEntry::of(&mapping(Some("0.0.0.0"), 8080, "10.0.0.2")).unwrap();
        assert_eq!(entry.map, "ports4_any");
    }

    #[test]
    fn overlap_between_any_and_bound_is_seen_both_ways() {
        let any = PortEntry::of(&mapping(None, 8080, "10.0.0.2")).unwrap();
        let bound = PortEntry::of(&mapping(Some("127.0.0.1"), 8080, "10.0.0.3")).unwrap();
        let other_port = PortEntry::of(&mapping(Some("127.0.0.1"), 8081, "10.0.0.3")).unwrap();
        assert!(any.overlaps_key(&bound.key));
        assert!(bound.overlaps_key(&any.key));
        assert!(!any.overlaps_key(&other_port.key));
        assert!(!other_port.overlaps_key(&any.key));
    }

    #[test]
    fn bad_mappings_are_refused() {
        assert!(PortEntry::of(&mapping(None, 0, "10.0.0.2")).is_err());
        assert!(PortEntry::of(&mapping(Some("::1"), 80, "10.0.0.2")).is_err());
        assert!(PortEntry::of(&mapping(None, 80, "0.0.0.0")).is_err());
    }

    #[test]
    fn protocol_names_are_case_insensitive() {
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("sctp".parse::<Protocol>().unwrap().number(), 132);
        assert!("icmp".parse::<Protocol>().is_err());
    }

    #[test]
    fn mapping_reads_like_a_docker_publish() {
        let m = mapping(Some("127.0.0.1"), 8080, "10.0.0.2");
        assert_eq!(m.to_string(), "127.0.0.1:8080/tcp -> 10.0.0.2:80");
    }
}
