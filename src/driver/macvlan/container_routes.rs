//! The container's routes on its macvlan: a default route through each family's IPAM gateway, then IPAM's own.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::cni::result::{CniResult, Route};
use crate::error::Error;
use crate::link::{LinkError, Netlink};

fn default_route(ip: &IpNetwork) -> IpNetwork {
    match ip {
        IpNetwork::V4(_) => "0.0.0.0/0".parse().expect("literal"),
        IpNetwork::V6(_) => "::/0".parse().expect("literal"),
    }
}

/// Default route through each family's IPAM gateway, then IPAM's routes (through the gateway when they
/// name none). A default route already in the container (another network's) is left alone.
pub(super) fn add_routes(
    inner: &Netlink,
    index: u32,
    leased: &CniResult,
) -> Result<Vec<Route>, Error> {
    let mut routes: Vec<Route> = Vec::new();
    let gateway_for = |dst: &IpNetwork| -> Option<IpAddr> {
        leased
            .ips
            .iter()
            .find(|i| i.address.is_ipv4() == dst.is_ipv4())
            .and_then(|i| i.gateway)
    };
    for ip in &leased.ips {
        let Some(gw) = ip.gateway else { continue };
        let dst = default_route(&ip.address);
        if routes.iter().any(|r| r.dst == dst) {
            continue;
        }
        match inner.add_route(dst, Some(gw), Some(index), None) {
            Ok(()) => routes.push(Route::new(dst, Some(gw))),
            Err(LinkError::Exists { .. }) => {
                tracing::info!(%dst, "container already has a default route; keeping it")
            }
            Err(e) => return Err(Error::from(e)),
        }
    }
    for r in &leased.routes {
        if r.dst.prefix() == 0 && routes.iter().any(|have| have.dst == r.dst) {
            continue; // the default route through the gateway is in place
        }
        let gw = r.gw.or_else(|| gateway_for(&r.dst));
        inner.add_route(r.dst, gw, Some(index), r.mtu)?;
        routes.push(Route { gw, ..r.clone() });
    }
    Ok(routes)
}
