//! A network plan rendered as the conflist tether writes: cniVersion 1.0.0 (podman 4's libcni refuses
//! newer) with `cniVersions` also naming 1.1.0, which libcni 1.2+ and tether's own runtime pick so
//! that GC and STATUS run.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{json, Map, Value};

use super::options::{DriverKind, DriverOptions};

/// One subnet of a network and how addresses are handed out in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    pub subnet: IpNetwork,
    pub gateway: IpAddr,
    /// `--ip-range`: addresses are handed out from here only.
    pub range: Option<(IpAddr, IpAddr)>,
}

/// Everything a conflist is made from, resolved and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub name: String,
    pub options: DriverOptions,
    pub addressing: Vec<Addressing>,
    pub internal: bool,
    /// Overlay only: the VXLAN id.
    pub vni: Option<u32>,
}

impl NetworkPlan {
    pub fn driver(&self) -> DriverKind {
        match self.options {
            DriverOptions::Bridge(_) => DriverKind::Bridge,
            DriverOptions::Macvlan(_) => DriverKind::Macvlan,
            DriverOptions::Overlay(_) => DriverKind::Overlay,
        }
    }

    /// The macvlan parent link, for drivers that have one.
    pub fn parent(&self) -> Option<&str> {
        match &self.options {
            DriverOptions::Macvlan(o) => Some(&o.parent),
            _ => None,
        }
    }

    /// The `ipam` object: one range set per subnet (so a dual-stack container gets one address of
    /// each family); a default route per family unless the network is internal.
    pub fn ipam(&self) -> Value {
        let ranges: Vec<Value> = self
            .addressing
            .iter()
            .map(|a| {
                let mut range = Map::new();
                range.insert("subnet".into(), json!(a.subnet.to_string()));
                range.insert("gateway".into(), json!(a.gateway.to_string()));
                if let Some((start, end)) = a.range {
                    range.insert("rangeStart".into(), json!(start.to_string()));
                    range.insert("rangeEnd".into(), json!(end.to_string()));
                }
                json!([Value::Object(range)])
            })
            .collect();
        let mut ipam = json!({"type": "tether-ipam", "ranges": ranges});
        // The bridge's isDefaultGateway makes the default route there; other drivers need IPAM's.
        if !self.internal && self.driver() != DriverKind::Bridge {
            let routes: Vec<Value> = self
                .addressing
                .iter()
                .map(|a| json!({"dst": if a.subnet.is_ipv4() { "0.0.0.0/0" } else { "::/0" }}))
                .collect();
            ipam["routes"] = Value::Array(routes);
        }
        ipam
    }

    pub fn render(&self) -> Value {
        let mut main = Map::new();
        main.insert("type".into(), json!(self.driver().plugin()));
        let mut capabilities = json!({"ips": true, "mac": true, "aliases": true});
        match &self.options {
            DriverOptions::Bridge(o) => {
                let bridge = o
                    .bridge
                    .clone()
                    .unwrap_or_else(|| super::name::bridge_name(&self.name));
                main.insert("bridge".into(), json!(bridge));
                main.insert("isGateway".into(), json!(true));
                main.insert("isDefaultGateway".into(), json!(!self.internal));
                main.insert(
                    "ipMasq".into(),
                    json!(!self.internal && o.ip_masquerade.unwrap_or(true)),
                );
                main.insert("hairpinMode".into(), json!(true));
                if let Some(mtu) = o.mtu {
                    main.insert("mtu".into(), json!(mtu));
                }
                if let Some(icc) = o.icc {
                    main.insert("icc".into(), json!(icc));
                }
                // tether-bridge publishes the runtime's ports itself (tether-portmap's options on its own
                // config): the whole chain is one plugin process.
                capabilities["portMappings"] = json!(true);
                main.insert("snat".into(), json!(true));
            }
            DriverOptions::Macvlan(o) => {
                main.insert("master".into(), json!(o.parent));
                main.insert("mode".into(), json!(o.mode.as_str()));
                if let Some(mtu) = o.mtu {
                    main.insert("mtu".into(), json!(mtu));
                }
            }
            DriverOptions::Overlay(o) => {
                main.insert("vni".into(), json!(self.vni));
                // One subnet as text, as before dual stack; two (an IPv4 and an IPv6) as a list.
                let subnets: Vec<String> = self
                    .addressing
                    .iter()
                    .map(|a| a.subnet.to_string())
                    .collect();
                match subnets.as_slice() {
                    [] => {}
                    [one] => {
                        main.insert("subnet".into(), json!(one));
                    }
                    _ => {
                        main.insert("subnet".into(), json!(subnets));
                    }
                }
                if let Some(mtu) = o.mtu {
                    main.insert("mtu".into(), json!(mtu));
                }
                if o.encrypted {
                    main.insert("encrypted".into(), json!(true));
                }
                if let Some(port) = o.vxlan_port {
                    main.insert("vxlanPort".into(), json!(port));
                }
                if let Some(net) = o.gateway_subnet {
                    main.insert("gatewaySubnet".into(), json!(net.to_string()));
                }
                if let Some(net) = o.gateway_subnet_v6 {
                    main.insert("gatewaySubnetV6".into(), json!(net.to_string()));
                }
            }
        }
        if self.internal {
            // tether's own: no egress, so tetherd does not forward this network's DNS queries.
            main.insert("internal".into(), json!(true));
        }
        main.insert("capabilities".into(), capabilities);
        main.insert("ipam".into(), self.ipam());

        let plugins = vec![Value::Object(main)];
        json!({
            "cniVersion": "1.0.0",
            "cniVersions": ["1.0.0", "1.1.0"],
            "name": self.name,
            "plugins": plugins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::MacvlanMode;
    use crate::network::options::{BridgeOptions, MacvlanOptions, OverlayOptions};

    fn addressing(subnet: &str, gateway: &str) -> Addressing {
        Addressing {
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            range: None,
        }
    }

    #[test]
    fn bridge_network() {
        let plan = NetworkPlan {
            name: "web".into(),
            options: DriverOptions::Bridge(BridgeOptions::default()),
            addressing: vec![
                addressing("172.17.0.0/16", "172.17.0.1"),
                Addressing {
                    range: Some(("fd00::10".parse().unwrap(), "fd00::20".parse().unwrap())),
                    ..addressing("fd00::/64", "fd00::1")
                },
            ],
            internal: false,
            vni: None,
        };
        assert_eq!(
            plan.render(),
            json!({
                "cniVersion": "1.0.0",
                "cniVersions": ["1.0.0", "1.1.0"],
                "name": "web",
                "plugins": [
                    {
                        "type": "tether-bridge",
                        "bridge": "tb-web",
                        "isGateway": true,
                        "isDefaultGateway": true,
                        "ipMasq": true,
                        "hairpinMode": true,
                        "snat": true,
                        "capabilities": {"ips": true, "mac": true, "aliases": true, "portMappings": true},
                        "ipam": {
                            "type": "tether-ipam",
                            "ranges": [
                                [{"subnet": "172.17.0.0/16", "gateway": "172.17.0.1"}],
                                [{"subnet": "fd00::/64", "gateway": "fd00::1",
                                  "rangeStart": "fd00::10", "rangeEnd": "fd00::20"}]
                            ]
                        }
                    }
                ]
            })
        );
    }

    #[test]
    fn internal_bridge_has_no_masquerade_and_no_default_route() {
        let plan = NetworkPlan {
            name: "back".into(),
            options: DriverOptions::Bridge(BridgeOptions {
                icc: Some(false),
                mtu: Some(1400),
                ..BridgeOptions::default()
            }),
            addressing: vec![addressing("10.9.0.0/24", "10.9.0.1")],
            internal: true,
            vni: None,
        };
        let main = &plan.render()["plugins"][0];
        assert_eq!(main["ipMasq"], false);
        assert_eq!(main["isDefaultGateway"], false);
        assert_eq!(main["internal"], true);
        assert_eq!(main["icc"], false);
        assert_eq!(main["mtu"], 1400);
        assert!(main["ipam"].get("routes").is_none());
    }

    #[test]
    fn macvlan_and_overlay_networks() {
        let plan = NetworkPlan {
            name: "lan".into(),
            options: DriverOptions::Macvlan(MacvlanOptions {
                parent: "eth0".into(),
                mode: MacvlanMode::Bridge,
                mtu: None,
            }),
            addressing: vec![addressing("192.168.1.0/24", "192.168.1.1")],
            internal: false,
            vni: None,
        };
        let out = plan.render();
        assert_eq!(out["plugins"].as_array().unwrap().len(), 1);
        let main = &out["plugins"][0];
        assert_eq!(main["type"], "tether-macvlan");
        assert_eq!(main["master"], "eth0");
        assert_eq!(main["mode"], "bridge");
        assert_eq!(main["ipam"]["routes"], json!([{"dst": "0.0.0.0/0"}]));

        let plan = NetworkPlan {
            name: "ov".into(),
            options: DriverOptions::Overlay(OverlayOptions::default()),
            addressing: vec![addressing("10.200.0.0/24", "10.200.0.1")],
            internal: false,
            vni: Some(4096),
        };
        let main = &plan.render()["plugins"][0];
        assert_eq!(main["type"], "tether-overlay");
        assert_eq!(main["vni"], 4096);
        assert_eq!(main["subnet"], "10.200.0.0/24");
        assert!(main.get("encrypted").is_none());

        let plan = NetworkPlan {
            options: DriverOptions::Overlay(OverlayOptions {
                encrypted: true,
                vxlan_port: Some(4790),
                gateway_subnet: Some("172.31.0.0/16".parse().unwrap()),
                gateway_subnet_v6: Some("fd00:31::/64".parse().unwrap()),
                ..OverlayOptions::default()
            }),
            ..plan
        };
        let main = &plan.render()["plugins"][0];
        assert_eq!(main["encrypted"], true);
        assert_eq!(main["vxlanPort"], 4790);
        // What tether-overlay reads back from it.
        let cfg = crate::driver::overlay::OverlayConfig::from_json(main).unwrap();
        assert!(cfg.encrypted);
        assert_eq!(cfg.vxlan_port, 4790);
        assert_eq!(cfg.gateway_subnet.to_string(), "172.31.0.0/16");
        assert_eq!(cfg.gateway_subnet_v6.to_string(), "fd00:31::/64");

        // `--subnet A --subnet B`: dual stack, one block pool per family.
        let plan = NetworkPlan {
            addressing: vec![
                addressing("10.200.0.0/24", "10.200.0.1"),
                addressing("fd00:200::/64", "fd00:200::1"),
            ],
            ..plan
        };
        let main = &plan.render()["plugins"][0];
        assert_eq!(main["subnet"], json!(["10.200.0.0/24", "fd00:200::/64"]));
        let cfg = crate::driver::overlay::OverlayConfig::from_json(main).unwrap();
        assert_eq!(cfg.pools.len(), 2);
        assert_eq!(cfg.pools[1].block_prefix, 122);
    }
}
