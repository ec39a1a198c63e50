//! What `tether network ls/inspect` and `network create`'s overlap check know of a network, read from its
//! conflist through the same config types the drivers and the IPAM plugin parse at ADD: the bridge from
//! `BridgeConfig`/`OverlayConfig`, `internal` from `EmbeddedDns`, the subnets and gateways from `IpamConfig`
//! (or the overlay's `subnet`). A plugin that is not tether's is read through the same types where its fields
//! are the reference plugins' (`bridge` + `host-local`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::driver::bridge::BridgeConfig;
use crate::driver::dns_endpoint::EmbeddedDns;
use crate::driver::overlay::OverlayConfig;
use crate::ipam::IpamConfig;
use crate::state::DriverKind;

/// The reference bridge plugin's default bridge (tether-bridge's is `crate::ifname::DEFAULT_BRIDGE`).
const REFERENCE_DEFAULT_BRIDGE: &str = "cni0";

/// A network's driver, bridge, addressing and isolation, as its conflist configures them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSummary {
    /// bridge, macvlan, overlay, or the first plugin's type for networks tether did not write.
    pub driver: String,
    pub bridge: Option<String>,
    pub subnets: Vec<IpNetwork>,
    pub gateways: Vec<IpAddr>,
    pub internal: bool,
    /// The overlay's VXLAN id.
    pub vni: Option<u32>,
    /// Why a part of the config could not be read (the rest is still shown).
    pub problems: Vec<String>,
}

impl NetworkSummary {
    /// Reads a conflist's plugins: the first is the network's interface plugin; the `ipam` section of any
    /// plugin contributes addressing.
    pub fn of_plugins(plugins: &[Value]) -> NetworkSummary {
        let mut summary = NetworkSummary::default();
        let Some(main) = plugins.first() else {
            return summary;
        };
        let plugin = main.get("type").and_then(Value::as_str).unwrap_or("");
        summary.driver = DriverKind::of_plugin(plugin)
            .map(|d| d.name().to_string())
            .unwrap_or_else(|| plugin.to_string());
        summary.read_interface_plugin(plugin, main);
        match EmbeddedDns::from_conf(main) {
            Ok(dns) => summary.internal = dns.internal,
            Err(error) => summary.problems.push(error.to_string()),
        }
        for ipam in plugins.iter().filter_map(|p| p.get("ipam")) {
            summary.read_ipam(ipam);
        }
        summary
    }

    fn read_interface_plugin(&mut self, plugin: &str, main: &Value) {
        match plugin {
            "tether-bridge" | "bridge" => match BridgeConfig::from_json(main) {
                Ok(cfg) => {
                    let defaulted = plugin == "bridge" && main.get("bridge").is_none();
                    self.bridge = Some(match defaulted {
                        true => REFERENCE_DEFAULT_BRIDGE.to_string(),
                        false => cfg.bridge.into_string(),
                    });
                }
                Err(error) => self.problems.push(error.to_string()),
            },
            "tether-overlay" => match OverlayConfig::from_json(main) {
                Ok(cfg) => {
                    self.bridge = Some(cfg.bridge.into_string());
                    self.vni = Some(cfg.vni);
                    for pool in &cfg.pools {
                        self.add_subnet(pool.subnet);
                    }
                }
                Err(error) => self.problems.push(error.to_string()),
            },
            _ => {}
        }
    }

    fn read_ipam(&mut self, ipam: &Value) {
        // The data dir does not matter for reading the ranges.
        match IpamConfig::parse(ipam, std::path::Path::new("/")) {
            Ok(conf) => {
                for range in conf.range_sets.iter().flat_map(|set| set.ranges()) {
                    self.add_subnet(range.subnet());
                    if !self.gateways.contains(&range.gateway()) {
                        self.gateways.push(range.gateway());
                    }
                }
            }
            // An IPAM plugin with fields of its own (dhcp, static) has nothing for this summary.
            Err(error) if is_tether_ipam(ipam) => self.problems.push(error.to_string()),
            Err(_) => {}
        }
    }

    fn add_subnet(&mut self, subnet: IpNetwork) {
        let subnet = IpNetwork::new(subnet.network(), subnet.prefix()).expect("same prefix");
        if !self.subnets.contains(&subnet) {
            self.subnets.push(subnet);
        }
    }
}

fn is_tether_ipam(ipam: &Value) -> bool {
    matches!(
        ipam.get("type").and_then(Value::as_str),
        Some("tether-ipam" | "host-local")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bridge_network_is_read_through_the_bridge_and_ipam_types() {
        let plugins = [
            json!({"type": "tether-bridge", "bridge": "tb-web", "internal": true, "ipam": {
                "type": "tether-ipam",
                "ranges": [[{"subnet": "10.5.0.0/24", "gateway": "10.5.0.1"}],
                           [{"subnet": "fd00:5::/64"}]]}}),
            json!({"type": "tether-portmap", "capabilities": {"portMappings": true}}),
        ];
        let s = NetworkSummary::of_plugins(&plugins);
        assert_eq!(s.driver, "bridge");
        assert_eq!(s.bridge.as_deref(), Some("tb-web"));
        assert!(s.internal);
        assert_eq!(
            s.subnets,
            vec![
                "10.5.0.0/24".parse::<IpNetwork>().unwrap(),
                "fd00:5::/64".parse().unwrap()
            ]
        );
        assert_eq!(
            s.gateways,
            vec![
                "10.5.0.1".parse::<IpAddr>().unwrap(),
                "fd00:5::1".parse().unwrap()
            ]
        );
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }

    #[test]
    fn overlay_macvlan_and_foreign_plugins() {
        let overlay = NetworkSummary::of_plugins(&[
            json!({"type": "tether-overlay", "vni": 4097, "subnet": "10.91.3.0/16"}),
        ]);
        assert_eq!(
            (
                overlay.driver.as_str(),
                overlay.vni,
                overlay.bridge.as_deref()
            ),
            ("overlay", Some(4097), Some("tob4097"))
        );
        assert_eq!(overlay.subnets, vec!["10.91.0.0/16".parse().unwrap()]);

        let macvlan = NetworkSummary::of_plugins(&[json!({"type": "tether-macvlan",
            "master": "eth0", "ipam": {"type": "tether-ipam", "subnet": "192.168.7.0/24"}})]);
        assert_eq!((macvlan.driver.as_str(), macvlan.bridge), ("macvlan", None));
        assert_eq!(
            macvlan.gateways,
            vec!["192.168.7.1".parse::<IpAddr>().unwrap()]
        );

        let reference = NetworkSummary::of_plugins(&[json!({"type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}})]);
        assert_eq!(reference.driver, "bridge");
        assert_eq!(reference.bridge.as_deref(), Some("cni0"));
        assert_eq!(reference.subnets, vec!["10.88.0.0/16".parse().unwrap()]);

        let dhcp =
            NetworkSummary::of_plugins(&[json!({"type": "macvlan", "ipam": {"type": "dhcp"}})]);
        assert!(dhcp.subnets.is_empty() && dhcp.problems.is_empty());
    }

    #[test]
    fn a_config_its_driver_refuses_is_still_summarised_with_the_reason() {
        let s = NetworkSummary::of_plugins(&[json!({"type": "tether-bridge", "mtu": 10,
            "ipam": {"type": "tether-ipam", "subnet": "10.6.0.0/24"}})]);
        assert_eq!(s.bridge, None);
        assert_eq!(s.subnets, vec!["10.6.0.0/24".parse().unwrap()]);
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].contains("mtu 10"), "{:?}", s.problems);
    }
}
