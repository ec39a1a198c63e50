//! Debian's netavark (podman's network backend, 1.4) on a bridge network, run as podman runs it: `setup` and
//! `teardown` of one container given its NetworkOptions on stdin, with one published TCP port. podman does
//! netavark's IPAM, so each container is handed a static address. Shared by the benches that put netavark
//! beside the CNI chains.

use crate::cni_chain::CONTAINER_PORT;
use crate::harness::{HostNs, NetNs};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

pub const NETAVARK: &str = "/usr/lib/podman/netavark";
/// The network's subnet and gateway: the same /16 the CNI chains use.
const SUBNET: &str = "10.90.0.0/16";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 1);

/// One netavark binary and the config directory it keeps its state in (one per host namespace).
pub struct Netavark {
    pub binary: PathBuf,
    pub config: PathBuf,
}

impl Netavark {
    /// Debian's netavark, its state under `host`'s directory.
    pub fn on(host: &HostNs) -> Netavark {
        Netavark {
            binary: PathBuf::from(NETAVARK),
            config: host.dir().join("netavark"),
        }
    }

    /// The address podman would give the container in slot `slot` (0, 1, ...): the gateway's successors.
    pub fn address(slot: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(GATEWAY) + 1 + slot)
    }

    /// `netavark COMMAND` (`setup`, `teardown`) of `c` at `address`, publishing `host_port`; its wall time,
    /// spawn to exit.
    pub fn run(
        &self,
        host: &HostNs,
        command: &str,
        c: &NetNs,
        address: Ipv4Addr,
        host_port: u16,
    ) -> Result<Duration, String> {
        let options = options(c, address, host_port);
        let out = host
            .plugin(&self.binary)
            .argv(&[
                "--config",
                &self.config.display().to_string(),
                command,
                &c.path_str(),
            ])
            .conf(&options)
            .run();
        if out.success() {
            Ok(out.elapsed)
        } else {
            Err(format!(
                "netavark {command} for container {}: {} {}",
                c.label,
                out.stdout.trim(),
                out.stderr.trim()
            ))
        }
    }
}

/// What podman hands netavark for one container on a bridge network with one published port (netavark 1.4's
/// NetworkOptions).
fn options(c: &NetNs, address: Ipv4Addr, host_port: u16) -> Value {
    json!({
        // A container ID is 64 hex digits: the label's bytes in hex, padded.
        "container_id": format!("{:0>64}", c.label.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
        "container_name": c.label,
        "port_mappings": [{
            "host_ip": "", "container_port": CONTAINER_PORT, "host_port": host_port,
            "range": 1, "protocol": "tcp"
        }],
        "networks": {"bench": {"interface_name": "eth0", "static_ips": [address.to_string()]}},
        "network_info": {"bench": {
            "name": "bench",
            "id": "b".repeat(64),
            "driver": "bridge",
            "network_interface": "nv0",
            "subnets": [{"subnet": SUBNET, "gateway": GATEWAY.to_string()}],
            "ipv6_enabled": false,
            "internal": false,
            "dns_enabled": false,
        }},
    })
}
