//! tether-bridge's own fields, named as the reference `bridge` plugin names them so a conflist can switch
//! `"type": "bridge"` to `"tether-bridge"` and keep the rest (docs/design.md §3).

use serde::Deserialize;

use crate::error::Error;
use crate::firewall::PortmapOptions;
use crate::ifname::IfName;
pub use crate::ifname::DEFAULT_BRIDGE;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawBridgeConfig {
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    macspoofchk: bool,
    // The reference spells this one in lower case.
    #[serde(default, rename = "enabledad")]
    enable_dad: bool,
    /// tether's own: `false` stops containers of this network from reaching each other (Docker's
    /// `com.docker.network.bridge.enable_icc=false`); they still reach the gateway and the outside.
    icc: Option<bool>,
    #[serde(default)]
    vlan: u16,
    #[serde(default)]
    vlan_trunk: Option<serde_json::Value>,
    #[serde(default)]
    capabilities: Capabilities,
}

/// The capabilities the conflist declares for this plugin; the runtime then sends their runtimeConfig.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Capabilities {
    #[serde(default)]
    port_mappings: bool,
}

/// Validated bridge settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub bridge: IfName,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    pub mtu: Option<u32>,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
    pub macspoofchk: bool,
    pub enable_dad: bool,
    pub icc: bool,
    /// With the `portMappings` capability declared on tether-bridge itself (what `tether network create`
    /// writes), it publishes the runtime's ports in the same process, with tether-portmap's options
    /// (`snat`, `masqAll`) read from its own config: one plugin process for the whole chain.
    pub ports: Option<PortmapOptions>,
}

impl BridgeConfig {
    pub fn from_json(raw: &serde_json::Value) -> Result<Self, Error> {
        let r: RawBridgeConfig = serde_json::from_value(raw.clone())
            .map_err(|e| Error::config(format!("invalid tether-bridge config: {e}")))?;
        let bridge =
            IfName::new(r.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string())).map_err(|e| {
                Error::config(format!(
                    "bridge name {:?} is not a valid interface name: {}",
                    e.text, e.why
                ))
            })?;
        if r.vlan != 0 || r.vlan_trunk.is_some() {
            return Err(Error::unsupported("tether-bridge does not support `vlan`/`vlanTrunk`; remove them or use tether-macvlan with a VLAN parent",
            ));
        }
        if let Some(mtu) = r.mtu {
            crate::link::check_mtu(mtu).map_err(|e| Error::config(e.to_string()))?;
        }
        Ok(Self {
            bridge,
            // isDefaultGateway implies isGateway, as in the reference plugin.
            is_gateway: r.is_gateway || r.is_default_gateway,
            is_default_gateway: r.is_default_gateway,
            force_address: r.force_address,
            ip_masq: r.ip_masq,
            mtu: r.mtu,
            hairpin_mode: r.hairpin_mode,
            promisc_mode: r.promisc_mode,
            macspoofchk: r.macspoofchk,
            enable_dad: r.enable_dad,
            icc: r.icc.unwrap_or(true),
            ports: match r.capabilities.port_mappings {
                true => Some(crate::driver::portmap::options(raw)?),
                false => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_reference_plugin() {
        let c = BridgeConfig::from_json(&json!({"name":"n","type":"tether-bridge"})).unwrap();
        assert_eq!(c.bridge, "tether0");
        assert!(!c.is_gateway && !c.ip_masq && !c.enable_dad);
        assert!(
            c.icc,
            "containers of a network talk to each other unless told otherwise"
        );
        let c = BridgeConfig::from_json(&json!({"icc": false})).unwrap();
        assert!(!c.icc);
    }

    #[test]
    fn default_gateway_implies_gateway() {
        let c =
            BridgeConfig::from_json(&json!({"isDefaultGateway": true, "enabledad": true})).unwrap();
        assert!(c.is_gateway && c.is_default_gateway && c.enable_dad);
    }

    #[test]
    fn bad_values_are_config_errors() {
        let e = BridgeConfig::from_json(&json!({"bridge": "a-very-long-bridge-name"})).unwrap_err();
        assert_eq!(e.code(), 7);
        let e = BridgeConfig::from_json(&json!({"mtu": 20})).unwrap_err();
        assert_eq!(e.code(), 7);
        let e = BridgeConfig::from_json(&json!({"ipMasq": "yes"})).unwrap_err();
        assert_eq!(e.code(), 7);
        let e = BridgeConfig::from_json(&json!({"vlan": 10})).unwrap_err();
        assert_eq!(e.code(), 2);
    }
}
