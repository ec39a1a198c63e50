//! Egress for overlay containers, as Docker's `docker_gwbridge`: one bridge per host with a gateway
//! address, a second veth per container on it, a default route through it and masquerade on the way out.
//! Its ports are isolated, so containers never reach each other through it (only through their overlay).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::{IpNetwork, Ipv4Network};

use super::config::OverlayConfig;
use crate::driver::interface_sysctls::quiet_ipv6_on_bridge_port_peer;
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::firewall::{Firewall, NetworkRules};
use crate::ipam::{allocate, release, AddressRange, IpamConfig, RangeSet, Store};
use crate::link::{set_sysctl, MacAddr, Netlink, VethSpec};
use crate::netns::NetNs;
use crate::state::NetworkLock;

/// The container-side name of the egress interface for overlay interface `ifname`.
pub fn egress_ifname(ifname: &str) -> String {
    let mut name = format!("gw-{ifname}");
    name.truncate(crate::ifname::MAX_IFNAME_LEN);
    name
}

/// The host-side veth of the egress interface; distinct from the overlay veth of the same container.
pub fn egress_host_veth(container_id: &str, ifname: &str) -> String {
    host_veth_name(container_id, &egress_ifname(ifname))
}

/// The firewall network of the gateway bridge: its name doubles as the network name.
fn firewall_network(cfg: &OverlayConfig) -> String {
    cfg.gateway_bridge.clone()
}

fn store_dir() -> PathBuf {
    crate::paths::state_dir().join("overlay-gateway")
}

fn gateway_of(subnet: Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// What the egress attachment gave the container.
#[derive(Debug, Clone)]
pub struct Egress {
    pub ifname: String,
    pub host_ifname: String,
    pub address: IpNetwork,
    pub gateway: IpAddr,
    pub mac: Option<MacAddr>,
}

/// Attaches the container in `ns` to the gateway bridge: address, veth, default route, firewall elements.
/// Undone by [`detach`] (which the caller registers in its rollback before calling this).
pub fn attach(
    host: &Netlink,
    ns: &NetNs,
    cfg: &OverlayConfig,
    container_id: &str,
    ifname: &str,
) -> Result<Egress, Error> {
    let subnet = cfg.gateway_subnet;
    let gateway = gateway_of(subnet);
    let range = AddressRange::new(
        IpNetwork::V4(subnet),
        None,
        None,
        Some(IpAddr::V4(gateway)),
        "gatewaySubnet",
    )?;
    let conf = IpamConfig {
        range_sets: vec![RangeSet::new(vec![range], "gatewaySubnet")?],
        routes: Vec::new(),
        data_dir: store_dir(),
        resolv_conf: None,
    };
    let store = Store::open(&store_dir(), &cfg.gateway_bridge)?;
    let egress_if = egress_ifname(ifname);
    let address = allocate(&conf, &store, container_id, &egress_if, &[])?
        .first()
        .map(|a| a.address)
        .ok_or_else(|| Error::io("gateway bridge IPAM returned no address"))?;

    let br = host.ensure_bridge(
        &cfg.gateway_bridge,
        None,
        MacAddr::from_name(&cfg.gateway_bridge),
    )?;
    host.try_add_address(
        br.index,
        IpNetwork::new(IpAddr::V4(gateway), subnet.prefix()).expect("valid prefix"),
        true,
    )?;
    set_sysctl("net/ipv4/ip_forward", "1")?;

    let host_if = egress_host_veth(container_id, ifname);
    host.delete_link_by_name(&host_if)?;
    host.add_veth(&VethSpec {
        host_name: &host_if,
        peer_name: &egress_if,
        peer_ns: ns,
        mtu: None,
        peer_mac: None,
        host_mac: Some(MacAddr::from_name(&host_if)),
        host_master: Some(br.index),
    })?;
    let port = host
        .link_by_name(&host_if)?
        .ok_or_else(|| Error::io(format!("host veth {host_if} vanished")))?;
    // Isolated ports reach only the bridge (the gateway): no container-to-container path through egress.
    host.set_isolated(port.index, true)?;

    let inner = Netlink::in_netns(ns)?;
    let link = inner
        .link_by_name(&egress_if)?
        .ok_or_else(|| Error::io(format!("veth peer {egress_if} vanished from the container")))?;
    inner.add_address(link.index, address, true)?;
    quiet_ipv6_on_bridge_port_peer(&inner, link.index, &[address]);
    inner.set_up(link.index)?;
    inner.add_route(
        "0.0.0.0/0".parse().expect("literal"),
        Some(IpAddr::V4(gateway)),
        Some(link.index),
        None,
    )?;

    let net = firewall_network(cfg);
    let _lock = NetworkLock::shared(&net)?;
    let fw = Firewall::open()?;
    fw.ensure_network(&NetworkRules {
        name: net.clone(),
        bridge: cfg.gateway_bridge.clone(),
        masquerade: true,
        isolation: true,
    })?;
    fw.add_container(&net, &[address.ip()])?;
    Ok(Egress {
        ifname: egress_if,
        host_ifname: host_if,
        address,
        gateway: IpAddr::V4(gateway),
        mac: link.mac,
    })
}

/// Removes what [`attach`] made; everything already gone is fine. The bridge itself stays, as other overlay
/// networks of the host use it.
pub fn detach(
    host: &Netlink,
    cfg: &OverlayConfig,
    container_id: &str,
    ifname: &str,
) -> Result<(), Error> {
    host.delete_link_by_name(&egress_host_veth(container_id, ifname))?;
    let Some(store) = Store::existing(&store_dir(), &cfg.gateway_bridge)? else {
        return Ok(());
    };
    let freed = release(&store, container_id, &egress_ifname(ifname))?;
    if !freed.is_empty() {
        let net = firewall_network(cfg);
        let _lock = NetworkLock::shared(&net)?;
        Firewall::open().and_then(|fw| fw.remove_container(&net, &freed))?;
    }
    Ok(())
}
