//! A simulated physical network for macvlan tests: a parent link (a veth end) in the host namespace,
//! cabled to a bridge in a "switch" namespace that holds the gateway address and a port to a "machine".
//!
//! ```text
//!  containers (macvlan children of the parent)
//!        host ns: <parent> ──veth── sw0 ┐
//!                          switch ns: br0 (192.0.2.1, the gateway)
//!          machine ns: eth0 ──veth── swm0 ┘   (192.0.2.200)
//! ```

use super::host::HostNs;
use super::netns::NetNs;

pub const SEGMENT_GATEWAY: &str = "192.0.2.1";
pub const SEGMENT_MACHINE: &str = "192.0.2.200";
pub const SEGMENT_SUBNET: &str = "192.0.2.0/24";

pub struct SwitchSegment {
    pub host: HostNs,
    pub switch: NetNs,
    pub machine: NetNs,
}

impl SwitchSegment {
    /// A new host namespace (`label`) whose link `parent` leads to the switch.
    pub fn new(label: &str, parent: &str) -> SwitchSegment {
        let host = HostNs::new(label);
        let switch = host.container("sw");
        let machine = host.container("m1");
        host.ip(&[
            "link",
            "add",
            parent,
            "type",
            "veth",
            "peer",
            "name",
            "sw0",
            "netns",
            &switch.name,
        ]);
        host.ip(&["link", "set", parent, "up"]);
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&[
            "link",
            "add",
            "swm0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &machine.name,
        ]);
        for port in ["sw0", "swm0"] {
            switch.ip(&["link", "set", port, "master", "br0"]);
            switch.ip(&["link", "set", port, "up"]);
        }
        switch.ip(&[
            "addr",
            "add",
            &format!("{SEGMENT_GATEWAY}/24"),
            "dev",
            "br0",
        ]);
        switch.ip(&["link", "set", "br0", "up"]);
        machine.ip(&[
            "addr",
            "add",
            &format!("{SEGMENT_MACHINE}/24"),
            "dev",
            "eth0",
        ]);
        machine.ip(&["link", "set", "eth0", "up"]);
        SwitchSegment {
            host,
            switch,
            machine,
        }
    }
}
