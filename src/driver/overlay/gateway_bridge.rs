//! Egress for overlay containers, as Docker's `docker_gwbridge`: one bridge per host with a gateway
//! address, a second veth per container on it, a default route through it and masquerade on the way out.
//! Its ports are isolated, so containers never reach each other through it (only through their overlay).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::{IpNetwork, Ipv4Network};

use super::config::OverlayConfig;
use crate::driver::bridge_port::{self, BridgePort};
use crate::driver::container_iface::{
    self, container_link, DefaultRoute, IfaceConfig, Ipv6Quieting,
};
use crate::driver::rollback::Rollback;
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::firewall::{Firewall, NetworkRules};
use crate::ipam::{allocate, release, AddressRange, IpamConfig, RangeSet, Store};
use crate::link::{set_sysctl, MacAddr, Netlink};
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
    host_veth_name(container_id, &egress_ifname(ifname)).into_string()
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
pub fn attach<'a>(
    host: &'a Netlink,
    ns: &NetNs,
    cfg: &OverlayConfig,
    (container_id, ifname): (&str, &str),
    rollback: &mut Rollback<'a>,
) -> Result<Egress, Error> {
    let gateway = gateway_of(cfg.gateway_subnet);
    let egress_if = egress_ifname(ifname);
    let address = lease(cfg, container_id, &egress_if)?;
    let br = host.ensure_bridge(
        &cfg.gateway_bridge,
        None,
        MacAddr::from_name(&cfg.gateway_bridge),
    )?;
    host.try_add_address(
        br.index,
        IpNetwork::new(IpAddr::V4(gateway), cfg.gateway_subnet.prefix()).expect("valid prefix"),
        true,
    )?;
    set_sysctl("net/ipv4/ip_forward", "1")?;

    let host_if = egress_host_veth(container_id, ifname);
    let port = BridgePort {
        bridge: br.index,
        host_ifname: &host_if,
        ifname: &egress_if,
        netns: ns,
        mtu: None,
        mac: None,
        hairpin: false,
        // Isolated ports reach only the bridge (the gateway): no container-to-container path through egress.
        isolated: true,
    };
    bridge_port::attach(host, &port, rollback)?;
    let inner = Netlink::in_netns(ns)?;
    let link = container_link(&inner, &egress_if)?;
    container_iface::configure(
        &inner,
        link.index,
        &IfaceConfig {
            addresses: &[(address, Some(IpAddr::V4(gateway)))],
            skip_dad: true,
            ipv6: Ipv6Quieting::BridgePortPeer,
            default_route: DefaultRoute::ViaGateway,
            routes: &[],
            report_gateway: false,
        },
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

/// The egress address, from the gateway bridge's own store.
fn lease(cfg: &OverlayConfig, container_id: &str, egress_if: &str) -> Result<IpNetwork, Error> {
    let subnet = cfg.gateway_subnet;
    let range = AddressRange::new(
        IpNetwork::V4(subnet),
        None,
        None,
        Some(IpAddr::V4(gateway_of(subnet))),
        "gatewaySubnet",
    )?;
    let conf = IpamConfig {
        range_sets: vec![RangeSet::new(vec![range], "gatewaySubnet")?],
        routes: Vec::new(),
        data_dir: store_dir(),
        resolv_conf: None,
    };
    let store = Store::open(&store_dir(), &cfg.gateway_bridge)?;
    allocate(&conf, &store, container_id, egress_if, &[])?
        .first()
        .map(|a| a.address)
        .ok_or_else(|| Error::io("gateway bridge IPAM returned no address"))
}

/// The address a container's overlay interface `ifname` has on this host's gateway bridge (any of them):
/// how the host itself reaches a local overlay container (the routing mesh forwards there).
pub fn egress_address(container_id: &str, ifname: &str) -> Option<IpAddr> {
    let id = crate::ipam::AttachmentId::new(container_id, &egress_ifname(ifname)).ok()?;
    std::fs::read_dir(store_dir())
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|bridge| Store::existing(&store_dir(), &bridge).ok().flatten())
        .find_map(|store| {
            let ips = store.lock().ok()?.attachment_ips(&id).ok().flatten()?;
            ips.into_iter().next()
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
