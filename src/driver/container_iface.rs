//! The container's interface once it exists: configuring it for ADD (addresses, IPv6 quieting, up, routes
//! under the network's default-route policy) and verifying it for CHECK against prevResult. One place for
//! bridge, macvlan, overlay and the overlay's egress interface.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::cni::result::Route;
use crate::driver::check::mismatch;
use crate::driver::interface_sysctls::{
    apply_lan_interface_sysctls, quiet_ipv6_on_bridge_port_peer,
};
use crate::error::Error;
use crate::link::{IpFamily, LinkError, LinkInfo, LinkOps};
use crate::netns::NetNs;

/// Whether the interface gets a default route through each family's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRoute {
    None,
    /// A default route already in the container is an error (the network wants to be the way out).
    ViaGateway,
    /// A default route already in the container (another network's) is kept.
    ViaGatewayUnlessPresent,
}

/// How an interface without IPv6 addresses is kept quiet on IPv6 (see `interface_sysctls`).
pub enum Ipv6Quieting<'a> {
    /// A veth peer on a bridge: no link-local address.
    BridgePortPeer,
    /// A macvlan child on a LAN: IPv6 off (no SLAAC either) and address announcements on.
    Lan { netns: &'a NetNs, ifname: &'a str },
}

pub struct IfaceConfig<'a> {
    /// Each address with the gateway of its network, if it has one.
    pub addresses: &'a [(IpNetwork, Option<IpAddr>)],
    pub skip_dad: bool,
    pub ipv6: Ipv6Quieting<'a>,
    pub default_route: DefaultRoute,
    /// IPAM's routes, installed through the family's gateway when they name none.
    pub routes: &'a [Route],
    /// Whether the result names that gateway for them; tether-bridge reports IPAM's routes as IPAM gave them,
    /// as the reference bridge does.
    pub report_gateway: bool,
}

/// The interface inside the container, which the step before just made.
pub fn container_link(inner: &impl LinkOps, ifname: &str) -> Result<LinkInfo, Error> {
    inner
        .link_by_name(ifname)?
        .ok_or_else(|| Error::io(format!("interface {ifname} vanished from the container")))
}

/// Addresses, IPv6 quieting (before up: the kernel sends its first IPv6 frames the moment the link is up),
/// up, then routes. Returns the routes for the result.
pub fn configure(
    inner: &impl LinkOps,
    index: u32,
    cfg: &IfaceConfig<'_>,
) -> Result<Vec<Route>, Error> {
    for (address, _) in cfg.addresses {
        inner.add_address(index, *address, cfg.skip_dad)?;
    }
    let addresses: Vec<IpNetwork> = cfg.addresses.iter().map(|(a, _)| *a).collect();
    match cfg.ipv6 {
        Ipv6Quieting::BridgePortPeer => quiet_ipv6_on_bridge_port_peer(inner, index, &addresses),
        Ipv6Quieting::Lan { netns, ifname } => {
            apply_lan_interface_sysctls(netns, ifname, &addresses)
        }
    }
    inner.set_up(index)?;
    add_routes(inner, index, cfg)
}

fn default_route_of(address: &IpNetwork) -> IpNetwork {
    let any: IpAddr = match address {
        IpNetwork::V4(_) => IpAddr::from([0u8; 4]),
        IpNetwork::V6(_) => IpAddr::from([0u16; 8]),
    };
    IpNetwork::new(any, 0).expect("prefix 0 fits every family")
}

fn add_routes(
    inner: &impl LinkOps,
    index: u32,
    cfg: &IfaceConfig<'_>,
) -> Result<Vec<Route>, Error> {
    let mut routes: Vec<Route> = Vec::new();
    if cfg.default_route != DefaultRoute::None {
        for (address, gateway) in cfg.addresses {
            let Some(gw) = *gateway else { continue };
            let dst = default_route_of(address);
            if routes.iter().any(|r| r.dst == dst) {
                continue;
            }
            match inner.add_route(dst, Some(gw), Some(index), None) {
                Ok(()) => routes.push(Route::new(dst, Some(gw))),
                Err(LinkError::Exists { .. })
                    if cfg.default_route == DefaultRoute::ViaGatewayUnlessPresent =>
                {
                    tracing::info!(%dst, "container already has a default route; keeping it")
                }
                Err(e) => return Err(Error::from(e)),
            }
        }
    }
    let gateway_for = |dst: &IpNetwork| {
        cfg.addresses
            .iter()
            .find(|(a, _)| a.is_ipv4() == dst.is_ipv4())
            .and_then(|(_, gw)| *gw)
    };
    for r in cfg.routes {
        if r.dst.prefix() == 0 && routes.iter().any(|have| have.dst == r.dst) {
            continue; // the default route through the gateway is in place
        }
        let gw = r.gw.or_else(|| gateway_for(&r.dst));
        inner.add_route(r.dst, gw, Some(index), r.mtu)?;
        routes.push(if cfg.report_gateway {
            Route { gw, ..r.clone() }
        } else {
            r.clone()
        });
    }
    Ok(routes)
}

/// CHECK: the interface is there with every address and route of prevResult. Returns it for the driver's
/// own checks.
pub fn verify(
    inner: &impl LinkOps,
    ifname: &str,
    addresses: &[IpNetwork],
    routes: &[Route],
) -> Result<LinkInfo, Error> {
    let link = inner
        .link_by_name(ifname)?
        .ok_or_else(|| mismatch(format!("interface {ifname} is missing in the container")))?;
    let have = inner.addresses(link.index)?;
    if let Some(missing) = addresses.iter().find(|a| !have.contains(a)) {
        return Err(mismatch(format!(
            "address {missing} is missing on {ifname} in the container"
        )));
    }
    for r in routes {
        let family = if r.dst.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        let found = inner
            .routes(family)?
            .iter()
            .any(|have| have.dst == r.dst && (r.gw.is_none() || have.gw == r.gw));
        if !found {
            return Err(mismatch(format!(
                "route to {} is missing in the container",
                r.dst
            )));
        }
    }
    Ok(link)
}
