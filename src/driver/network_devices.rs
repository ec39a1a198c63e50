//! A network's devices on this host, read from its conflist through the driver's own config type, and torn
//! down by the driver's own teardown: what `tether network rm` runs, the same teardown as the network's last
//! DEL.

use serde_json::Value;

use crate::driver::bridge::{self, BridgeConfig};
use crate::driver::overlay::{self, OverlayConfig};
use crate::driver::teardown::Teardown;
use crate::error::Error;
use crate::state::NetworkLock;

/// What a tether driver made for a network on this host, from the network's config.
pub enum NetworkDevices {
    Bridge(BridgeConfig),
    /// Nothing per network: a VLAN sub-interface goes with the last container using it.
    Macvlan,
    Overlay(OverlayConfig),
}

impl NetworkDevices {
    /// The devices of a conflist's interface plugin (its first); `None` for a plugin that is not tether's.
    pub fn of_plugin(conf: &Value) -> Result<Option<NetworkDevices>, Error> {
        Ok(match conf.get("type").and_then(Value::as_str) {
            Some("tether-bridge") => Some(NetworkDevices::Bridge(BridgeConfig::from_json(conf)?)),
            Some("tether-macvlan") => Some(NetworkDevices::Macvlan),
            Some("tether-overlay") => {
                Some(NetworkDevices::Overlay(OverlayConfig::from_json(conf)?))
            }
            _ => None,
        })
    }

    /// The bridge the network's containers hang on, if the driver has one.
    pub fn bridge(&self) -> Option<&str> {
        match self {
            NetworkDevices::Bridge(cfg) => Some(&cfg.bridge),
            NetworkDevices::Overlay(cfg) => Some(&cfg.bridge),
            NetworkDevices::Macvlan => None,
        }
    }

    /// Removes the network's devices, rules and driver state under its exclusive `lock`.
    pub fn teardown(&self, net: &str, lock: NetworkLock, how: Teardown) -> Result<(), Error> {
        match self {
            NetworkDevices::Bridge(cfg) => bridge::teardown(net, cfg, lock, how),
            NetworkDevices::Overlay(cfg) => overlay::teardown(net, cfg, lock),
            NetworkDevices::Macvlan => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn network_rm_reads_each_drivers_devices_through_its_config_type() {
        let bridge =
            json!({"type": "tether-bridge", "bridge": "tb-web", "ipam": {"type": "tether-ipam"}});
        let devices = NetworkDevices::of_plugin(&bridge).unwrap().unwrap();
        assert_eq!(devices.bridge(), Some("tb-web"));
        let overlay = json!({"type": "tether-overlay", "vni": 4096, "subnet": "10.90.0.0/16"});
        let devices = NetworkDevices::of_plugin(&overlay).unwrap().unwrap();
        assert_eq!(devices.bridge(), Some("tob4096"));
        let macvlan = json!({"type": "tether-macvlan", "master": "eth0"});
        assert!(NetworkDevices::of_plugin(&macvlan)
            .unwrap()
            .unwrap()
            .bridge()
            .is_none());
        assert!(NetworkDevices::of_plugin(&json!({"type": "bridge"}))
            .unwrap()
            .is_none());
        let bad = json!({"type": "tether-bridge", "mtu": 10});
        assert_eq!(
            NetworkDevices::of_plugin(&bad).err().map(|e| e.code()),
            Some(7)
        );
    }
}
