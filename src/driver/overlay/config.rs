//! tether-overlay's fields, parsed once into validated types.

use std::net::IpAddr;

use ipnetwork::Ipv4Network;
use serde::Deserialize;

use crate::error::Error;
use crate::ifname::IfName;
use crate::link::MAX_VNI;

/// VXLAN adds 50 bytes over IPv4 (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Each host hands out addresses from blocks of this prefix length unless told otherwise.
pub const DEFAULT_BLOCK_PREFIX: u8 = 26;
/// Docker calls it docker_gwbridge; ours follows the `tether` prefix and fits IFNAMSIZ.
pub const DEFAULT_GATEWAY_BRIDGE: &str = "tether_gwbridge";
pub const DEFAULT_GATEWAY_SUBNET: &str = "172.30.0.0/16";

/// Where this host's VTEP address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Underlay {
    /// The interface holding the default route (IPv4 first).
    DefaultRoute,
    Interface(String),
    Address(IpAddr),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOverlayConfig {
    vni: Option<u32>,
    subnet: Option<String>,
    mtu: Option<u32>,
    underlay: Option<String>,
    block_size: Option<u8>,
    bridge: Option<String>,
    gateway_bridge: Option<String>,
    gateway_subnet: Option<String>,
    /// Egress through the gateway bridge (masqueraded); `false` leaves the network isolated from the host.
    egress: Option<bool>,
    start_block_key: Option<String>,
}

/// Validated overlay settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    pub vni: u32,
    pub subnet: Ipv4Network,
    /// `None`: underlay MTU - 50, decided when the underlay is known.
    pub mtu: Option<u32>,
    pub underlay: Underlay,
    /// Prefix length of the blocks hosts claim (`blockSize`).
    pub block_prefix: u8,
    /// The network's bridge on each host (`tob<vni>` unless set).
    pub bridge: IfName,
    pub egress: bool,
    pub gateway_bridge: String,
    pub gateway_subnet: Ipv4Network,
    /// `startBlockKey`: what the first block a host tries is derived from (default: its VTEP address).
    /// Hosts given one key all want the same block first; the tests use it to make them race for it.
    pub start_block_key: Option<String>,
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
            "{field} {text:?} is not an IPv4 CIDR; write it like \"10.200.0.0/16\" (the overlay is IPv4 only)"
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

impl OverlayConfig {
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
        let subnet = parse_v4_subnet(
            "subnet",
            r.subnet.as_deref().ok_or_else(|| {
                invalid("tether-overlay needs `subnet`, e.g. \"10.200.0.0/16\"".into())
            })?,
        )?;
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
        let block_prefix = r
            .block_size
            .unwrap_or(DEFAULT_BLOCK_PREFIX.max(subnet.prefix()));
        if block_prefix < subnet.prefix() || block_prefix > 30 {
            return Err(invalid(format!(
                "blockSize /{block_prefix} does not fit subnet {subnet}; use a prefix length from {} to 30",
                subnet.prefix()
            )));
        }
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
        if gateway_subnet.overlaps(subnet) {
            return Err(invalid(format!(
                "gatewaySubnet {gateway_subnet} overlaps the overlay subnet {subnet}; pick disjoint ones"
            )));
        }
        Ok(OverlayConfig {
            vni,
            subnet,
            mtu: r.mtu,
            underlay,
            block_prefix,
            bridge,
            egress: r.egress.unwrap_or(true),
            gateway_bridge,
            gateway_subnet,
            start_block_key: r.start_block_key,
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
        assert_eq!(c.subnet.to_string(), "10.200.0.0/16");
        assert_eq!(c.bridge, "tob42");
        assert_eq!(c.block_prefix, 26);
        assert_eq!(c.underlay, Underlay::DefaultRoute);
        assert_eq!(c.gateway_bridge, "tether_gwbridge");
        assert!(c.egress && c.mtu.is_none());
    }

    #[test]
    fn underlay_is_an_address_or_an_interface() {
        let c = OverlayConfig::from_json(
            &json!({"vni": 1, "subnet": "10.0.0.0/24", "underlay": "192.0.2.1"}),
        )
        .unwrap();
        assert_eq!(c.underlay, Underlay::Address("192.0.2.1".parse().unwrap()));
        assert_eq!(c.block_prefix, 26);
        let c = OverlayConfig::from_json(
            &json!({"vni": 1, "subnet": "10.0.0.0/28", "underlay": "eth1"}),
        )
        .unwrap();
        assert_eq!(c.underlay, Underlay::Interface("eth1".into()));
        assert_eq!(c.block_prefix, 28, "a small subnet is one block");
    }

    #[test]
    fn the_example_conflist_parses() {
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../../conf/tether-overlay.conflist")).unwrap();
        let c = OverlayConfig::from_json(&list["plugins"][0]).unwrap();
        assert_eq!((c.vni, c.block_prefix), (4097, 26));
    }

    #[test]
    fn bad_values_are_config_errors() {
        for bad in [
            json!({"subnet": "10.0.0.0/16"}),
            json!({"vni": 0, "subnet": "10.0.0.0/16"}),
            json!({"vni": 16777216, "subnet": "10.0.0.0/16"}),
            json!({"vni": 1}),
            json!({"vni": 1, "subnet": "fd00::/64"}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "blockSize": 8}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "mtu": 20}),
            json!({"vni": 1, "subnet": "172.30.0.0/24"}),
            json!({"vni": 1, "subnet": "10.0.0.0/16", "underlay": "a/b"}),
        ] {
            let e = OverlayConfig::from_json(&bad).unwrap_err();
            assert_eq!(e.code(), 7, "{bad}: {}", e);
        }
    }
}
