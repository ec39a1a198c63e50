//! `-o key=value` options, parsed per driver into typed settings at the edge. Docker's long option
//! names are accepted beside the short ones, so `docker network create` lines carry over.

use std::str::FromStr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::error::NetworkError;
use crate::link::MacvlanMode;
pub use crate::state::DriverKind;

impl FromStr for DriverKind {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<DriverKind, NetworkError> {
        match text {
            "bridge" => Ok(DriverKind::Bridge),
            "macvlan" => Ok(DriverKind::Macvlan),
            "overlay" => Ok(DriverKind::Overlay),
            other => Err(NetworkError::UnknownDriver {
                driver: other.to_string(),
            }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeOptions {
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub icc: Option<bool>,
    pub ip_masquerade: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanOptions {
    pub parent: String,
    pub mode: MacvlanMode,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    pub vni: Option<u32>,
    pub mtu: Option<u32>,
    /// `encrypted` (Docker's `--opt encrypted`): VXLAN between hosts in IPsec ESP.
    pub encrypted: bool,
    pub vxlan_port: Option<u16>,
    /// `gateway_subnet`: the IPv4 subnet of the host's gateway bridge, for egress (`gatewaySubnet`).
    pub gateway_subnet: Option<Ipv4Network>,
    /// `gateway_subnet_v6`: its IPv6 subnet, for an IPv6 or dual-stack overlay's egress (`gatewaySubnetV6`).
    pub gateway_subnet_v6: Option<Ipv6Network>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverOptions {
    Bridge(BridgeOptions),
    Macvlan(MacvlanOptions),
    Overlay(OverlayOptions),
}

const BRIDGE_KEYS: &str = "bridge (com.docker.network.bridge.name), mtu (com.docker.network.driver.mtu), icc (com.docker.network.bridge.enable_icc), com.docker.network.bridge.enable_ip_masquerade";
const MACVLAN_KEYS: &str = "parent, macvlan_mode, mtu";
const OVERLAY_KEYS: &str = "vni, mtu, encrypted, vxlan_port, gateway_subnet, gateway_subnet_v6";

fn bad(key: &str, value: &str, reason: impl Into<String>) -> NetworkError {
    NetworkError::BadOption {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, NetworkError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(key, value, "expected true or false")),
    }
}

fn parse_mtu(key: &str, value: &str) -> Result<u32, NetworkError> {
    let mtu = value.parse::<u32>().map_err(|_| {
        bad(
            key,
            value,
            "expected a number, the MTU in bytes".to_string(),
        )
    })?;
    crate::link::check_mtu(mtu).map_err(|e| bad(key, value, e.to_string()))
}

fn parse_ifname(key: &str, value: &str) -> Result<String, NetworkError> {
    match crate::ifname::ifname_problem(value) {
        None => Ok(value.to_string()),
        Some(why) => Err(bad(key, value, format!("not an interface name: {why}"))),
    }
}

/// Splits `key=value`.
pub fn split_option(text: &str) -> Result<(String, String), NetworkError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(bad(text, "", "expected key=value")),
    }
}

pub fn parse(
    driver: DriverKind,
    options: &[(String, String)],
) -> Result<DriverOptions, NetworkError> {
    let unknown = |key: &str, known: &'static str| NetworkError::UnknownOption {
        driver: driver.name(),
        key: key.to_string(),
        known,
    };
    match driver {
        // Only tetherd writes it (another host's container); `FromStr` never yields it.
        DriverKind::RemoteOverlay => Err(NetworkError::UnknownDriver {
            driver: driver.name().to_string(),
        }),
        DriverKind::Bridge => {
            let mut out = BridgeOptions::default();
            for (key, value) in options {
                match key.as_str() {
                    "bridge" | "com.docker.network.bridge.name" => {
                        out.bridge = Some(parse_ifname(key, value)?)
                    }
                    "mtu" | "com.docker.network.driver.mtu" => {
                        out.mtu = Some(parse_mtu(key, value)?)
                    }
                    "icc" | "com.docker.network.bridge.enable_icc" => {
                        out.icc = Some(parse_bool(key, value)?)
                    }
                    "ip_masquerade" | "com.docker.network.bridge.enable_ip_masquerade" => {
                        out.ip_masquerade = Some(parse_bool(key, value)?)
                    }
                    other => return Err(unknown(other, BRIDGE_KEYS)),
                }
            }
            Ok(DriverOptions::Bridge(out))
        }
        DriverKind::Macvlan => {
            let mut parent = None;
            let mut mode = MacvlanMode::Bridge;
            let mut mtu = None;
            for (key, value) in options {
                match key.as_str() {
                    "parent" => parent = Some(parse_ifname(key, value)?),
                    "macvlan_mode" | "mode" => {
                        mode = value.parse().map_err(|_| {
                            bad(
                                key,
                                value,
                                "expected bridge, private, vepa, passthru or source",
                            )
                        })?;
                    }
                    "mtu" => mtu = Some(parse_mtu(key, value)?),
                    other => return Err(unknown(other, MACVLAN_KEYS)),
                }
            }
            let parent = parent.ok_or_else(|| {
                bad(
                    "parent",
                    "",
                    "the macvlan driver needs -o parent=IF (the host link the containers share)",
                )
            })?;
            Ok(DriverOptions::Macvlan(MacvlanOptions { parent, mode, mtu }))
        }
        DriverKind::Overlay => overlay_options(options, unknown).map(DriverOptions::Overlay),
    }
}

/// `-o` options of an overlay network.
fn overlay_options(
    options: &[(String, String)],
    unknown: impl Fn(&str, &'static str) -> NetworkError,
) -> Result<OverlayOptions, NetworkError> {
    let mut out = OverlayOptions::default();
    for (key, value) in options {
        match key.as_str() {
            // 24-bit VXLAN network identifier (RFC 7348).
            "vni" => match value.parse::<u32>() {
                Ok(vni) if (1..(1 << 24)).contains(&vni) => out.vni = Some(vni),
                _ => return Err(bad(key, value, "expected a VXLAN id from 1 to 16777215")),
            },
            "mtu" => out.mtu = Some(parse_mtu(key, value)?),
            // Docker takes `--opt encrypted` with no value, and `encrypted=` as true.
            "encrypted" => {
                out.encrypted = value.is_empty() || parse_bool(key, value)?;
            }
            "vxlan_port" => match value.parse::<u16>() {
                Ok(port) if port > 0 => out.vxlan_port = Some(port),
                _ => return Err(bad(key, value, "expected a UDP port from 1 to 65535")),
            },
            // Every overlay on a host shares one gateway bridge, so every overlay should name
            // the same subnets (docs/plugins/overlay.md).
            "gateway_subnet" | "gateway_subnet_v6" => {
                let v6 = key == "gateway_subnet_v6";
                match (value.parse::<IpNetwork>(), v6) {
                    (Ok(IpNetwork::V4(net)), false) if net.prefix() <= 30 => {
                        out.gateway_subnet = Some(net)
                    }
                    (Ok(IpNetwork::V6(net)), true) if net.prefix() <= 126 => {
                        out.gateway_subnet_v6 = Some(net)
                    }
                    _ => {
                        let expected = if v6 {
                            "expected an IPv6 subnet such as fd00:1::/64 (at most /126)"
                        } else {
                            "expected an IPv4 subnet such as 172.31.0.0/16 (at most /30)"
                        };
                        return Err(bad(key, value, expected));
                    }
                }
            }
            other => return Err(unknown(other, OVERLAY_KEYS)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<(String, String)> {
        list.iter().map(|o| split_option(o).unwrap()).collect()
    }

    #[test]
    fn bridge_options_take_docker_names() {
        let parsed = parse(
            DriverKind::Bridge,
            &opts(&[
                "com.docker.network.bridge.name=br-x",
                "mtu=1400",
                "com.docker.network.bridge.enable_icc=false",
                "com.docker.network.bridge.enable_ip_masquerade=false",
            ]),
        )
        .unwrap();
        assert_eq!(
            parsed,
            DriverOptions::Bridge(BridgeOptions {
                bridge: Some("br-x".into()),
                mtu: Some(1400),
                icc: Some(false),
                ip_masquerade: Some(false),
            })
        );
    }

    #[test]
    fn macvlan_needs_a_parent() {
        let err = parse(DriverKind::Macvlan, &[]).unwrap_err();
        assert!(err.to_string().contains("parent"), "{err}");
        let parsed = parse(
            DriverKind::Macvlan,
            &opts(&["parent=eth0", "macvlan_mode=vepa"]),
        )
        .unwrap();
        assert_eq!(
            parsed,
            DriverOptions::Macvlan(MacvlanOptions {
                parent: "eth0".into(),
                mode: MacvlanMode::Vepa,
                mtu: None
            })
        );
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(matches!(
            parse(DriverKind::Bridge, &opts(&["parent=eth0"])),
            Err(NetworkError::UnknownOption { .. })
        ));
        assert!(parse(DriverKind::Bridge, &opts(&["mtu=20"])).is_err());
        assert!(parse(DriverKind::Bridge, &opts(&["icc=maybe"])).is_err());
        assert!(parse(DriverKind::Bridge, &opts(&["bridge=much-too-long-name"])).is_err());
        assert!(parse(DriverKind::Overlay, &opts(&["vni=16777216"])).is_err());
        let DriverOptions::Overlay(o) = parse(
            DriverKind::Overlay,
            &opts(&["encrypted=true", "vxlan_port=4790"]),
        )
        .unwrap() else {
            panic!("not overlay options")
        };
        assert!(o.encrypted);
        assert_eq!(o.vxlan_port, Some(4790));
        let DriverOptions::Overlay(o) = parse(
            DriverKind::Overlay,
            &opts(&[
                "gateway_subnet=172.31.0.0/16",
                "gateway_subnet_v6=fd00:31::/64",
            ]),
        )
        .unwrap() else {
            panic!("not overlay options")
        };
        assert_eq!(o.gateway_subnet.unwrap().to_string(), "172.31.0.0/16");
        assert_eq!(o.gateway_subnet_v6.unwrap().to_string(), "fd00:31::/64");
        assert!(parse(DriverKind::Overlay, &opts(&["encrypted=maybe"])).is_err());
        assert!(parse(DriverKind::Overlay, &opts(&["vxlan_port=0"])).is_err());
        assert!(parse(DriverKind::Overlay, &opts(&["gateway_subnet=fd00::/64"])).is_err());
        assert!(parse(DriverKind::Overlay, &opts(&["gateway_subnet=10.1.0.0/31"])).is_err());
        assert!(parse(
            DriverKind::Overlay,
            &opts(&["gateway_subnet_v6=10.1.0.0/16"])
        )
        .is_err());
        assert!(split_option("novalue").is_err());
        assert!("ipvlan".parse::<DriverKind>().is_err());
    }
}
