//! Egress for overlay containers, as Docker's `docker_gwbridge`: one bridge per host with a gateway
//! address, a second veth per container on it, a default route through it and masquerade on the way out.
//! Containers of an overlay with an IPv6 subnet also get an address of the bridge's IPv6 subnet and an IPv6
//! default route, masqueraded the same way (NAT66, as Docker and podman do for IPv6 networks).
//! Its ports are isolated, so containers never reach each other through it (only through their overlay).
//! The bridge is made by the host's first egress attachment and goes with its last.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use super::config::OverlayConfig;
use crate::driver::bridge::{ensure_network_bridge, NetworkBridge};
use crate::driver::bridge_port::{self, BridgePort};
use crate::driver::container_iface::{
    self, container_link, DefaultRoute, IfaceConfig, Ipv6Quieting,
};
use crate::driver::rollback::Rollback;
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::firewall::{Firewall, NetworkRules};
use crate::ipam::{allocate, release, AddressRange, IpamConfig, RangeSet, Store};
use crate::link::{delete_unused_bridge, MacAddr, Netlink};
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

/// The gateway bridge's subnets for this network's containers: IPv4 always, IPv6 when the overlay has
/// an IPv6 subnet. In this order they are the range sets of the bridge's store (each family keeps its own
/// round-robin position there).
fn subnets(cfg: &OverlayConfig) -> Vec<(IpNetwork, &'static str)> {
    let mut out = vec![(IpNetwork::V4(cfg.gateway_subnet), "gatewaySubnet")];
    if cfg.has_ipv6() {
        out.push((IpNetwork::V6(cfg.gateway_subnet_v6), "gatewaySubnetV6"));
    }
    out
}

/// The bridge's address in `subnet`: its first after the subnet's own, with the subnet's prefix.
fn gateway_of(subnet: IpNetwork) -> IpNetwork {
    let ip = match subnet {
        IpNetwork::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1)),
        IpNetwork::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) + 1)),
    };
    IpNetwork::new(ip, subnet.prefix()).expect("the subnet's prefix")
}

/// What the egress attachment gave the container.
#[derive(Debug, Clone)]
pub struct Egress {
    pub ifname: String,
    pub host_ifname: String,
    /// One address per family (IPv4 first), each with its gateway, the bridge.
    pub addresses: Vec<(IpNetwork, IpAddr)>,
    pub mac: Option<MacAddr>,
}

/// Attaches the container in `ns` to the gateway bridge: address(es), veth, default route(s), firewall
/// elements. Undone by [`detach`] (which the caller registers in its rollback before calling this). Holds
/// the bridge's lock shared throughout, so the last [`detach`] cannot remove the bridge under it.
pub fn attach<'a>(
    host: &'a Netlink,
    ns: &NetNs,
    cfg: &'a OverlayConfig,
    (container_id, ifname): (&str, &str),
    rollback: &mut Rollback<'a>,
) -> Result<Egress, Error> {
    let net = firewall_network(cfg);
    let _lock = NetworkLock::shared(&net)?;
    let subnets = subnets(cfg);
    let gateways: Vec<IpNetwork> = subnets.iter().map(|(s, _)| gateway_of(*s)).collect();
    let egress_if = egress_ifname(ifname);
    let addresses: Vec<(IpNetwork, IpAddr)> =
        lease(&subnets, &cfg.gateway_bridge, container_id, &egress_if)?
            .into_iter()
            .zip(gateways.iter().map(IpNetwork::ip))
            .collect();
    let (br, _) = ensure_network_bridge(
        host,
        &NetworkBridge {
            name: &cfg.gateway_bridge,
            mtu: None,
            promisc: false,
            gateways: &gateways,
            force_address: false,
            forward: &gateways,
        },
        rollback,
    )?;

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
    let with_gateways: Vec<(IpNetwork, Option<IpAddr>)> =
        addresses.iter().map(|(a, gw)| (*a, Some(*gw))).collect();
    container_iface::configure(
        &inner,
        link.index,
        &IfaceConfig {
            addresses: &with_gateways,
            skip_dad: true,
            ipv6: Ipv6Quieting::BridgePortPeer,
            default_route: DefaultRoute::ViaGateway,
            routes: &[],
            report_gateway: false,
        },
    )?;

    let fw = Firewall::open()?;
    // One network of the firewall for both families: its NAT chain masquerades IPv4 and IPv6 (NAT66).
    fw.ensure_network(&NetworkRules {
        name: net.clone(),
        bridge: cfg.gateway_bridge.clone(),
        masquerade: true,
        isolation: true,
    })?;
    let ips: Vec<IpAddr> = addresses.iter().map(|(a, _)| a.ip()).collect();
    fw.add_container(&net, &ips)?;
    Ok(Egress {
        ifname: egress_if,
        host_ifname: host_if,
        addresses,
        mac: link.mac,
    })
}

/// The egress addresses, one of each of `subnets`, from the gateway bridge's own store.
fn lease(
    subnets: &[(IpNetwork, &'static str)],
    bridge: &str,
    container_id: &str,
    egress_if: &str,
) -> Result<Vec<IpNetwork>, Error> {
    let range_sets = subnets
        .iter()
        .map(|&(subnet, field)| {
            let gateway = gateway_of(subnet).ip();
            let range = AddressRange::new(subnet, None, None, Some(gateway), field)?;
            RangeSet::new(vec![range], field)
        })
        .collect::<Result<Vec<RangeSet>, _>>()?;
    let conf = IpamConfig {
        range_sets,
        routes: Vec::new(),
        data_dir: store_dir(),
        resolv_conf: None,
    };
    let store = Store::open(&store_dir(), bridge)?;
    let got: Vec<IpNetwork> = allocate(&conf, &store, container_id, egress_if, &[])?
        .into_iter()
        .map(|a| a.address)
        .collect();
    if got.len() != subnets.len() {
        return Err(Error::io("gateway bridge IPAM returned no address"));
    }
    Ok(got)
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

/// Removes what [`attach`] made; everything already gone is fine. The last attachment of the host (over
/// all its overlay networks) takes the bridge, its firewall network and its store along: nothing stays.
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
    let net = firewall_network(cfg);
    let last = {
        // Shared: never while the last detach of another container removes the store (exclusive).
        let _lock = NetworkLock::shared(&net)?;
        if !freed.is_empty() {
            Firewall::open().and_then(|fw| fw.remove_container(&net, &freed))?;
        }
        unused(cfg)?
    };
    if last {
        remove_if_unused(cfg)?;
    }
    Ok(())
}

/// Whether the gateway bridge's store holds no lease (or is gone). Call it under the bridge's lock.
fn unused(cfg: &OverlayConfig) -> Result<bool, Error> {
    match Store::existing(&store_dir(), &cfg.gateway_bridge)? {
        Some(store) => Ok(store.lock()?.leases()?.is_empty()),
        None => Ok(true),
    }
}

/// The bridge, its firewall network and its store, when no egress lease is left: checked again under the
/// bridge's exclusive lock, which every [`attach`] holds shared from before it leases.
fn remove_if_unused(cfg: &OverlayConfig) -> Result<(), Error> {
    let net = firewall_network(cfg);
    let _lock = NetworkLock::exclusive(&net)?;
    if !unused(cfg)? {
        return Ok(());
    }
    let fw = Firewall::open()?;
    fw.remove_network(&net)?;
    delete_unused_bridge(&cfg.gateway_bridge)?;
    let dir = store_dir().join(&cfg.gateway_bridge);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // A reader (the routing mesh's egress_address) may have opened the lock file meanwhile: an empty
        // store is harmless, the next last detach removes it.
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the gateway bridge's empty store")
        }
    }
    tracing::info!(bridge = %cfg.gateway_bridge, "last egress attachment left; removed the gateway bridge");
    Ok(())
}
