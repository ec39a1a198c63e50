//! A network's teardown on this host once no container of it is left: one per driver, run by the network's
//! last DEL (`teardown_if_unused`) and by `tether network rm` (`NetworkDevices::of_plugin`), always under the
//! network's exclusive lock, which every ADD holds shared from before it joins the network's devices until
//! its record is written.

use serde_json::Value;

use crate::driver::bridge::{self, BridgeConfig};
use crate::driver::overlay::{self, OverlayConfig};
use crate::error::Error;
use crate::state::{NetworkLock, RecordDir};

/// Who tears the network down, which decides how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// The network's last DEL, in a single-threaded plugin: slow kernel work (a bridge's delete) goes on in
    /// a forked child that keeps the lock, so DEL returns at once.
    LastDel,
    /// `tether network rm`: done before it returns (the CLI may run threads: no fork). `bridge_in_use`: another
    /// network's config names the same bridge, so it stays.
    NetworkRm { bridge_in_use: bool },
}

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

/// The last DEL's check: with no record left, the teardown runs under the exclusive lock, after checking
/// again (an ADD may have joined while this DEL waited for the lock).
pub fn teardown_if_unused(
    net: &str,
    records: &RecordDir,
    teardown: impl FnOnce(NetworkLock) -> Result<(), Error>,
) -> Result<(), Error> {
    if !records.is_empty() {
        return Ok(());
    }
    let lock = NetworkLock::exclusive(net)?;
    if !records.is_empty() {
        return Ok(());
    }
    teardown(lock)
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
