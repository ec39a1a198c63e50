//! A container's veth whose host end is a port of a bridge: the one way tether-bridge, tether-overlay and
//! the overlay's egress bridge plug a container in. The veth is created with its peer directly in the
//! container namespace and the host end down, so IPv6 goes off on the port before it comes up.

use crate::driver::rollback::Rollback;
use crate::error::Error;
use crate::link::{LinkError, LinkOps, MacAddr, VethSpec};
use crate::netns::NetNs;

/// One port to make.
pub struct BridgePort<'a> {
    /// The bridge's link index.
    pub bridge: u32,
    pub host_ifname: &'a str,
    /// The container-side name (CNI_IFNAME, or the egress interface's).
    pub ifname: &'a str,
    pub netns: &'a NetNs,
    pub mtu: Option<u32>,
    /// The container side's MAC when the runtime asked for one.
    pub mac: Option<MacAddr>,
    pub hairpin: bool,
    /// An isolated port forwards only to non-isolated ports (the bridge itself, i.e. the gateway).
    pub isolated: bool,
}

/// Makes the port and registers its undo; returns the host end's MAC, derived from its (unique) name: known
/// without reading the link back, stable across a re-ADD, and pinned so the bridge's MAC never follows it.
pub fn attach<'a, L: LinkOps>(
    host: &'a L,
    port: &BridgePort<'_>,
    rollback: &mut Rollback<'a>,
) -> Result<MacAddr, Error> {
    let host_mac = MacAddr::from_name(port.host_ifname);
    create_veth(
        host,
        &VethSpec {
            host_name: port.host_ifname,
            peer_name: port.ifname,
            peer_ns: port.netns,
            mtu: port.mtu,
            peer_mac: port.mac,
            host_mac: Some(host_mac),
            host_master: Some(port.bridge),
        },
    )?;
    let doomed = port.host_ifname.to_string();
    rollback.push("veth pair", move || {
        host.delete_link_by_name(&doomed)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    disable_ipv6_on_port(host, port.host_ifname);
    host.set_up_by_name(port.host_ifname)?;
    if port.hairpin || port.isolated {
        // Port options need the index; only these ports pay for reading the link back.
        let link = host
            .link_by_name(port.host_ifname)?
            .ok_or_else(|| Error::io(format!("host veth {} vanished", port.host_ifname)))?;
        if port.hairpin {
            host.set_hairpin(link.index, true)?;
        }
        if port.isolated {
            host.set_isolated(link.index, true)?;
        }
    }
    Ok(host_mac)
}

/// Creates the veth pair, host end down. A host veth of that name already there is a leftover of an earlier
/// ADD of the same container that crashed half-way: it is removed and the create tried once more. It is
/// looked for only after EEXIST, so the common case pays no lookup.
fn create_veth(host: &impl LinkOps, spec: &VethSpec<'_>) -> Result<(), Error> {
    let explain = |e: LinkError| match e {
        LinkError::Exists { .. } => Error::config(format!(
            "interface {} already exists in the container namespace; pick another CNI_IFNAME",
            spec.peer_name
        )),
        other => Error::from(other),
    };
    match host.add_veth_down(spec) {
        Err(LinkError::Exists { op, object }) => {
            if host.delete_link_by_name(spec.host_name)? {
                host.add_veth_down(spec).map_err(explain)
            } else {
                Err(explain(LinkError::Exists { op, object }))
            }
        }
        other => other.map_err(explain),
    }
}

/// Turns IPv6 off on a bridge port before it comes up. The port only carries frames for the bridge (bridged IPv6
/// is untouched), but with IPv6 on, each port adds a link-local address and three routes to the host's IPv6
/// table, and the kernel walks that whole table whenever a port goes down: with 1000 containers, every DEL paid
/// ~2 ms for it. Best effort: on a host without IPv6 there is nothing to turn off.
fn disable_ipv6_on_port(host: &impl LinkOps, port: &str) {
    if let Err(e) = host.set_sysctl(&format!("net/ipv6/conf/{port}/disable_ipv6"), "1") {
        tracing::debug!(port, error = %e, "could not turn IPv6 off on the bridge port");
    }
}
