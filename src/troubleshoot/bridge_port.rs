//! A bridge port's state and flags as `ip -d link` reports them (`info_slave_data`), in the namespace
//! this runs in; rtnetlink's facade does not carry the bridge-port attributes.

use std::process::Command;

use serde_json::Value;

pub struct BridgePort(Value);

impl BridgePort {
    pub fn of(port: &str) -> Option<BridgePort> {
        let out = Command::new("ip")
            .args(["-j", "-d", "link", "show", "dev", port])
            .output()
            .ok()?;
        let value: Value = serde_json::from_slice(&out.stdout).ok()?;
        value
            .pointer("/0/linkinfo/info_slave_data")
            .cloned()
            .map(BridgePort)
    }

    /// The STP state: only `forwarding` passes frames.
    pub fn state(&self) -> Option<String> {
        self.0["state"].as_str().map(str::to_string)
    }

    /// Port isolation (a network with icc=false): isolated ports do not talk to each other.
    pub fn isolated(&self) -> bool {
        self.0["isolated"].as_bool().unwrap_or(false)
    }
}
