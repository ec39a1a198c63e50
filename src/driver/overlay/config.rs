//! tether-overlay's fields, parsed once into validated types.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Deserialize;

use crate::error::Error;
use crate::ifname::IfName;
use crate::link::MAX_VNI;
use crate::state::overlay::Pool;

/// VXLAN adds 50 bytes over IPv4 (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;
/// ... and 70 over IPv6 (its header is 40 bytes).
pub const VXLAN_OVERHEAD_V6: u32 = 70;
/// Each host hands out addresses from blocks of this prefix length unless told otherwise.
pub const DEFAULT_BLOCK_PREFIX: u8 = 26;
/// ... and of this one in an IPv6 subnet: 64 addresses, like an IPv4 /26.
pub const DEFAULT_BLOCK_PREFIX_V6: u8 = 122;
/// Docker calls it docker_gwbridge; ours follows the `tether` prefix and fits IFNAMSIZ.
pub const DEFAULT_GATEWAY_BRIDGE: &str = "tether_gwbridge";
pub const DEFAULT_GATEWAY_SUBNET: &str = "172.30.0.0/16";
/// The gateway bridge's IPv6 subnet (egress of IPv6 and dual-stack overlays): a unique local one, so the
/// containers' egress addresses never leave the host unmasqueraded.
pub const DEFAULT_GATEWAY_SUBNET_V6: &str = "fd74:6574:6877::/64";

/// Where this host's VTEP address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Underlay {
    /// The interface holding the default route (IPv4 first).
    DefaultRoute,
    Interface(String),
    Address(IpAddr),
}

/// `subnet`: one CIDR, or a list of at most one IPv4 and one IPv6 CIDR (dual stack).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSubnets {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOverlayConfig {
    vni: Option<u32>,
    subnet: Option<RawSubnets>,
    mtu: Option<u32>,
    underlay: Option<String>,
    block_size: Option<u8>,
    /// The IPv6 subnet's block prefix (`blockSize` is IPv4's).
    block_size_v6: Option<u8>,
    bridge: Option<String>,
    gateway_bridge: Option<String>,
    gateway_subnet: Option<String>,
    gateway_subnet_v6: Option<String>,
    /// Egress through the gateway bridge (masqueraded); `false` leaves the network isolated from the host.
    egress: Option<bool>,
    start_block_key: Option<String>,
    /// VXLAN between hosts in IPsec ESP (docs/encryption.md).
    encrypted: Option<bool>,
    vxlan_port: Option<u16>,
}

/// Validated overlay settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    pub vni: u32,
    /// The subnets with their block prefixes (`blockSize`, `blockSizeV6`): IPv4, IPv6 or both, IPv4
    /// first. A container gets one address of each.
    pub pools: Vec<Pool>,
    /// `None`: underlay MTU - 50, decided when the underlay is known.
    pub mtu: Option<u32>,
    pub underlay: Underlay,
    /// The network's bridge on each host (`tob<vni>` unless set).
    pub bridge: IfName,
    pub egress: bool,
    pub gateway_bridge: String,
    pub gateway_subnet: Ipv4Network,
    /// `gatewaySubnetV6`: the gateway bridge's IPv6 subnet, used when the overlay has an IPv6 one.
    pub gateway_subnet_v6: Ipv6Network,
    /// `startBlockKey`: what the first block a host tries is derived from (default: its VTEP address).
    /// Hosts given one key all want the same block first; the tests use it to make them race for it.
    pub start_block_key: Option<String>,
    /// `encrypted`: VXLAN between hosts only in ESP, never in clear.
    pub encrypted: bool,
    /// `vxlanPort`: the UDP port of the network's VXLAN (4789 unless set).
    pub vxlan_port: u16,
}

fn invalid(msg: String) -> Error {
    Error::config(msg)
}

fn check_ifname(field: &str, name: &str) -> Result<(), Error> {
    typed_ifname(field, name.to_string()).map(drop)
}

fn typed_ifname(field: &str, name: String) -> Result<IfName, Error> {
    IfName::new(name).map_err(|e| {
        invalid(format!(
            "{field} {:?} is not a valid interface name: {}",
            e.text, e.why
        ))
    })
}

fn parse_v4_subnet(field: &str, text: &str) -> Result<Ipv4Network, Error> {
    let net: Ipv4Network = text.parse().map_err(|_| {
        invalid(format!(
            "{field} {text:?} is not an IPv4 CIDR; write it like \"10.200.0.0/16\""
        ))
    })?;
    if net.prefix() > 30 {
        return Err(invalid(format!(
            "{field} {net} is too small for containers; use /30 or shorter"
        )));
    }
    // Normalise 10.1.2.3/16 to 10.1.0.0/16.
    Ipv4Network::new(net.network(), net.prefix()).map_err(|e| invalid(format!("{field}: {e}")))
}

fn parse_v6_subnet(field: &str, text: &str) -> Result<Ipv6Network, Error> {
    let net: Ipv6Network = text.parse().map_err(|_| {
        invalid(format!(
            "{field} {text:?} is not an IPv6 CIDR; write it like \"fd00:200::/64\""
        ))
    })?;
    if net.prefix() > 126 {
        return Err(invalid(format!(
            "{field} {net} is too small for containers; use /126 or shorter"
        )));
    }
    Ipv6Network::new(net.network(), net.prefix()).map_err(|e| invalid(format!("{field}: {e}")))
}

/// The `subnet` field: one or two CIDRs, never two of one family.
fn parse_subnets(raw: Option<RawSubnets>) -> Result<Vec<IpNetwork>, Error> {
    let texts = match raw {
        None => Vec::new(),
        Some(RawSubnets::One(text)) => vec![text],
        Some(RawSubnets::List(texts)) => texts,
    };
    if texts.is_empty() {
        return Err(invalid(
            "tether-overlay needs `subnet`, e.g. \"10.200.0.0/16\", or [\"10.200.0.0/16\", \"fd00:200::/64\"] for dual stack".into(),
        ));
    }
    let mut out: Vec<IpNetwork> = Vec::new();
    for text in &texts {
        let net = if text.contains(':') {
            IpNetwork::V6(parse_v6_subnet("subnet", text)?)
        } else {
            IpNetwork::V4(parse_v4_subnet("subnet", text)?)
        };
        if out.iter().any(|n| n.is_ipv4() == net.is_ipv4()) {
            return Err(invalid(format!(
                "subnet lists two {} subnets ({texts:?}); give at most one IPv4 and one IPv6 subnet",
                if net.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        out.push(net);
    }
    out.sort_by_key(|n| n.is_ipv6());
    Ok(out)
}

/// The block prefix of `subnet`: `configured` (from `field`) or the family's default, checked to fit.
fn block_prefix(field: &str, configured: Option<u8>, subnet: IpNetwork) -> Result<Pool, Error> {
    let (default, longest) = match subnet {
        IpNetwork::V4(_) => (DEFAULT_BLOCK_PREFIX, 30),
        IpNetwork::V6(_) => (DEFAULT_BLOCK_PREFIX_V6, 126),
    };
    let prefix = configured.unwrap_or(default.max(subnet.prefix()));
    if prefix < subnet.prefix() || prefix > longest {
        return Err(invalid(format!(
            "{field} /{prefix} does not fit subnet {subnet}; use a prefix length from {} to {longest}",
            subnet.prefix()
        )));
    }
    Ok(Pool {
        subnet,
        block_prefix: prefix,
    })
}

impl OverlayConfig {
    /// The IPv4 subnet, if the network has one.
    pub fn subnet_v4(&self) -> Option<Ipv4Network> {
        self.pools.iter().find_map(|p| match p.subnet {
            IpNetwork::V4(s) => Some(s),
            IpNetwork::V6(_) => None,
        })
    }

    /// Whether the network has an IPv6 subnet (and so IPv6 egress, when `egress` is on).
    pub fn has_ipv6(&self) -> bool {
        self.pools.iter().any(|p| p.subnet.is_ipv6())
    }

    /// Whether `ip` is one of the network's overlay addresses (not an egress one).
    pub fn holds(&self, ip: std::net::IpAddr) -> bool {
        self.pools.iter().any(|p| p.contains(ip))
    }

    pub fn from_json(raw: &serde_json::Value) -> Result<Self, Error> {
        let r: RawOverlayConfig = serde_json::from_value(raw.clone())
            .map_err(|e| invalid(format!("invalid tether-overlay config: {e}")))?;
        let vni = r.vni.ok_or_else(|| {
            invalid("tether-overlay needs `vni` (1..16777215), the network's VXLAN id".into())
        })?;
        if vni == 0 || vni > MAX_VNI {
            return Err(invalid(format!(
                "vni {vni} is out of range; use 1..{MAX_VNI}"
            )));
        }
        let pools = parse_subnets(r.subnet)?
            .into_iter()
            .map(|subnet| match subnet {
                IpNetwork::V4(_) => block_prefix("blockSize", r.block_size, subnet),
                IpNetwork::V6(_) => block_prefix("blockSizeV6", r.block_size_v6, subnet),
            })
            .collect::<Result<Vec<Pool>, Error>>()?;
        if let Some(mtu) = r.mtu {
            crate::link::check_mtu(mtu).map_err(|e| invalid(e.to_string()))?;
        }
        let underlay = match r.underlay.as_deref().map(str::trim) {
            None | Some("") => Underlay::DefaultRoute,
            Some(text) => match text.parse::<IpAddr>() {
                Ok(ip) => Underlay::Address(ip),
                Err(_) => {
                    check_ifname("underlay", text)?;
                    Underlay::Interface(text.to_string())
                }
            },
        };
        let bridge = typed_ifname("bridge", r.bridge.unwrap_or_else(|| format!("tob{vni}")))?;
        let gateway_bridge = r
            .gateway_bridge
            .unwrap_or_else(|| DEFAULT_GATEWAY_BRIDGE.to_string());
        check_ifname("gatewayBridge", &gateway_bridge)?;
        let gateway_subnet = parse_v4_subnet(
            "gatewaySubnet",
            r.gateway_subnet
                .as_deref()
                .unwrap_or(DEFAULT_GATEWAY_SUBNET),
        )?;
        let gateway_subnet_v6 = parse_v6_subnet(
            "gatewaySubnetV6",
            r.gateway_subnet_v6
                .as_deref()
                .unwrap_or(DEFAULT_GATEWAY_SUBNET_V6),
        )?;
        for pool in &pools {
            let (field, gateway) = match pool.subnet {
                IpNetwork::V4(_) => ("gatewaySubnet", IpNetwork::V4(gateway_subnet)),
                IpNetwork::V6(_) => ("gatewaySubnetV6", IpNetwork::V6(gateway_subnet_v6)),
            };
            if gateway.contains(pool.subnet.network()) || pool.subnet.contains(gateway.network()) {
                return Err(invalid(format!(
                    "{field} {gateway} overlaps the overlay subnet {}; pick disjoint ones",
                    pool.subnet
                )));
            }
        }
        Ok(OverlayConfig {
            vni,
            pools,
            mtu: r.mtu,
            underlay,
            bridge,
            egress: r.egress.unwrap_or(true),
            gateway_bridge,
            gateway_subnet,
            gateway_subnet_v6,
            start_block_key: r.start_block_key,
            encrypted: r.encrypted.unwrap_or(false),
            vxlan_port: match r.vxlan_port {
                Some(0) => {
                    return Err(invalid(
                        "vxlanPort 0 is not a port; use 1..65535 (4789 is VXLAN's)".into(),
                    ))
                }
                Some(port) => port,
                None => crate::link::VXLAN_PORT,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let c = OverlayConfig::from_json(&json!({"vni": 42, "subnet": "10.200.1.7/16"})).unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.pools[0].subnet.to_string(), "10.200.0.0/16");
        assert_eq!(c.bridge, "tob42");
        assert_eq!(c.pools[0].block_prefix, 26);
        assert_eq!(c.underlay, Underlay::DefaultRoute);
        assert_eq!(c.gateway_bridge, "tether_gwbridge");
        assert!(c.egress && c.mtu.is_none());
        assert!(!c.encrypted);
        assert_eq!(c.vxlan_port, 4789);
    }

    #[test]
    fn subnet_is_one_cidr_or_one_of_each_family() {
        let c = OverlayConfig::from_json(&json!({"vni": 6, "subnet": "fd00:6::5/64"})).unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.pools[0].subnet.to_string(), "fd00:6::/64");
        assert_eq!(c.pools[0].block_prefix, 122);
        assert_eq!(c.subnet_v4(), None);
        let c = OverlayConfig::from_json(&json!({
            "vni": 6, "subnet": ["fd00:6::/64", "10.6.0.0/16"], "blockSize": 24, "blockSizeV6": 120
        }))
        .unwrap();
        let got: Vec<(String, u8)> = c
            .pools
            .iter()
            .map(|p| (p.subnet.to_string(), p.block_prefix))
            .collect();
        assert_eq!(
            got,
            vec![("10.6.0.0/16".into(), 24), ("fd00:6::/64".into(), 120)],
            "IPv4 first, each family with its own block size"
        );
        assert!(c.holds("fd00:6::9".parse().unwrap()) && !c.holds("10.7.0.1".parse().unwrap()));
    }

    #[test]
    fn the_ipv6_gateway_subnet_is_a_unique_local_one_unless_set() {
        let c = OverlayConfig::from_json(&json!({"vni": 6, "subnet": "fd00:6::/64"})).unwrap();
        assert!(c.has_ipv6());
        assert_eq!(c.gateway_subnet_v6.to_string(), "fd74:6574:6877::/64");
        assert_eq!(c.gateway_subnet_v6.network().segments()[0] & 0xfe00, 0xfc00);
        let c = OverlayConfig::from_json(
            &json!({"vni": 6, "subnet": "10.6.0.0/16", "gatewaySubnetV6": "fd00:99::7/112"}),
        )
        .unwrap();
        assert!(!c.has_ipv6());
        assert_eq!(c.gateway_subnet_v6.to_string(), "fd00:99::/112");
    }

    #[test]
    fn encryption_and_the_vxlan_port_are_read() {
        let c = OverlayConfig::from_json(
            &json!({"vni": 9, "subnet": "10.9.0.0/24", "encrypted": true, "vxlanPort": 4790}),
        )
        .unwrap();
        assert!(c.encrypted);
        assert_eq!(c.vxlan_port, 4790);
    }

    #[test]
    fn underlay_is_an_address_or_an_interface() {
        let c = OverlayConfig::from_json(
            &json!({"vni": 1, "subnet": "10.0.0.0/24", "underlay": "192.0.2.1"}),
        )
        .unwrap();
        assert_eq!(c.underlay, Underlay::Address("192.0.2.1".parse().unwrap()));
        assert_eq!(c.pools[0].block_prefix, 26);
        let c = OverlayConfig::from_json(
            &json!({"vni": 1, "subnet": "10.0.0.0/28", "underlay": "eth1"}),
        )
        .unwrap();
        assert_eq!(c.underlay, Underlay::Interface("eth1".into()));
        assert_eq!(c.pools[0].block_prefix, 28, "a small subnet is one block");
    }

    #[test]
    fn the_example_conflist_parses() {
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../../conf/tether-overlay.conflist")).unwrap();
        let c = OverlayConfig::from_json(&list["plugins"][0]).unwrap();
        assert_eq!((c.vni, c.pools[0].block_prefix), (4097, 26));
    }

    #[test]
    fn bad_values_are_config_errors() {
        for bad in [
            json!({"subnet": "10.0.0.0/16"}),
            json!({"vni": 0, "subnet": "10.0.0.0/16"}),
            json!({"vni": 16777216, "subnet": "10.0.0.0/16"}),
            json!({"vni": 1}),
            json!({"vni": 1, "subnet": "fd00::/127"}),
            json!({"vni": 1, "subnet": []}),
            json!({"vni": 1, "subnet": ["10.0.0.0/16", "10.1.0.0/16"]}),
            json!({"vni": 1, "subnet": ["fd00::/64", "fd01::/64"]}),
            json!({"vni": 1, "subnet": ["10.0.0.0/16", "fd00::/64"], "blockSizeV6": 60}),
            json!({"vni": 1, "subnet": "fd00::/64", "blockSizeV6": 127}),
            json!({"vni": 1, "subnet": "nonsense"}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "blockSize": 8}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "mtu": 20}),
            json!({"vni": 1, "subnet": "172.30.0.0/24"}),
            json!({"vni": 1, "subnet": "fd74:6574:6877::/80"}),
            json!({"vni": 1, "subnet": "fd00::/64", "gatewaySubnetV6": "fd00::/48"}),
            json!({"vni": 1, "subnet": "fd00::/64", "gatewaySubnetV6": "10.9.0.0/16"}),
            json!({"vni": 1, "subnet": "fd00::/64", "gatewaySubnetV6": "fd01::/127"}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "underlay": "a/b"}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "encrypted": "yes"}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "vxlanPort": 0}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "vxlanPort": 70000}),
        ] {
            let e = OverlayConfig::from_json(&bad).unwrap_err();
            assert_eq!(e.code(), 7, "{bad}: {}", e);
        }
    }
}
