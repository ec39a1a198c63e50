//! Routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;

use super::{deleted, LinkError, LinkInfo, Netlink, CREATE, EXISTING};

/// Main routing table (RT_TABLE_MAIN).
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

/// One unicast route as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    /// RTA_PRIORITY, the metric: lower wins among routes to the same destination.
    pub metric: u32,
    pub mtu: Option<u32>,
}

impl RouteInfo {
    pub fn is_default(&self) -> bool {
        self.dst.prefix() == 0
    }
}

impl Netlink {
    /// Adds a route to `dst` in the main table (a default route when its prefix is 0), through
    /// `gw` and/or out of link `oif`, with an optional path MTU. An IPv6 gateway for an IPv4
    /// destination is sent as RTA_VIA (RFC 5549). A route that is already there gives
    /// [`LinkError::Exists`].
    pub fn add_route(
        &self,
        dst: IpNetwork,
        gw: Option<IpAddr>,
        oif: Option<u32>,
        mtu: Option<u32>,
    ) -> Result<(), LinkError> {
        let message = route_message(dst, gw, oif, mtu)?;
        let object = route_object(dst, gw, oif);
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            CREATE,
            "adding route",
            object,
        )
        .map(drop)
    }

    /// Deletes the route to `dst` (matching `gw` and `oif` when given); `Ok(false)` when there is none.
    pub fn del_route(
        &self,
        dst: IpNetwork,
        gw: Option<IpAddr>,
        oif: Option<u32>,
    ) -> Result<bool, LinkError> {
        let mut message = route_message(dst, gw, oif, None)?;
        // A delete matches on what is set; scope must not narrow it (RT_SCOPE_NOWHERE = match any).
        message.header.scope = RouteScope::NoWhere;
        // Nor the protocol: routes the kernel made (proto kernel) must be deletable too.
        message.header.protocol = RouteProtocol::Unspec;
        let object = route_object(dst, gw, oif);
        deleted(self.request(
            RouteNetlinkMessage::DelRoute(message),
            EXISTING,
            "deleting route",
            object,
        ))
    }

    /// Unicast routes of one family, from every table (see [`RouteInfo::table`]).
    pub fn routes(&self, family: IpFamily) -> Result<Vec<RouteInfo>, LinkError> {
        let filter = match family {
            IpFamily::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpFamily::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let answers = self.dump(
            RouteNetlinkMessage::GetRoute(filter),
            "listing routes",
            "in namespace",
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(route) => route_info(route),
                _ => None,
            })
            .collect())
    }

    /// The link holding the best default route of the main table, IPv4 first, then IPv6.
    /// `None` when there is no default route.
    pub fn default_route_interface(&self) -> Result<Option<LinkInfo>, LinkError> {
        for family in [IpFamily::V4, IpFamily::V6] {
            let best = self
                .routes(family)?
                .into_iter()
                .filter(|r| r.is_default() && r.table == MAIN_TABLE && r.oif.is_some())
                .min_by_key(|r| r.metric);
            if let Some(oif) = best.and_then(|r| r.oif) {
                return self.link_by_index(oif);
            }
        }
        Ok(None)
    }
}

fn route_object(dst: IpNetwork, gw: Option<IpAddr>, oif: Option<u32>) -> String {
    let mut object = dst.to_string();
    if let Some(gw) = gw {
        object.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = oif {
        object.push_str(&format!(" dev #{oif}"));
    }
    object
}

fn route_message(
    dst: IpNetwork,
    gw: Option<IpAddr>,
    oif: Option<u32>,
    mtu: Option<u32>,
) -> Result<RouteMessage, LinkError> {
    let invalid = |reason: &'static str| LinkError::InvalidArgument {
        what: "route",
        value: route_object(dst, gw, oif),
        reason,
    };
    if gw.is_none() && oif.is_none() {
        return Err(invalid("give a gateway, an output link or both"));
    }
    // The kernel refuses host bits below the prefix ("Invalid prefix for given prefix length").
    let network = dst.network();
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(network, dst.prefix())
        .map_err(|_| invalid("the prefix length does not fit the address family"))?;
    if let Some(gw) = gw {
        if gw.is_ipv4() && dst.is_ipv6() {
            return Err(invalid("an IPv6 route cannot use an IPv4 gateway"));
        }
        builder = builder
            .gateway(gw)
            .map_err(|_| invalid("the gateway does not fit the address family"))?;
    }
    if let Some(oif) = oif {
        builder = builder.output_interface(oif);
    }
    // Like `ip route add`: an IPv4 route without a gateway reaches its destination directly on the
    // link. IPv6 ignores the scope.
    if gw.is_none() && dst.is_ipv4() {
        builder = builder.scope(RouteScope::Link);
    }
    let mut message = builder.build();
    if let Some(mtu) = mtu {
        message
            .attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    Ok(message)
}

fn route_info(message: &RouteMessage) -> Option<RouteInfo> {
    if message.header.kind != RouteType::Unicast {
        return None;
    }
    let mut dst = None;
    let mut gw = None;
    let mut oif = None;
    let mut table = u32::from(message.header.table);
    let mut metric = 0;
    let mut mtu = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => dst = ip_of(address),
            RouteAttribute::Gateway(address) => gw = ip_of(address),
            RouteAttribute::Via(RouteVia::Inet(ip)) => gw = Some(IpAddr::V4(*ip)),
            RouteAttribute::Via(RouteVia::Inet6(ip)) => gw = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(index) => oif = Some(*index),
            RouteAttribute::Table(id) => table = *id,
            RouteAttribute::Priority(priority) => metric = *priority,
            RouteAttribute::Metrics(metrics) => {
                for m in metrics {
                    if let RouteMetric::Mtu(value) = m {
                        mtu = Some(*value);
                    }
                }
            }
            _ => {}
        }
    }
    // A default route carries no RTA_DST at all.
    let dst = match (dst, message.header.address_family) {
        (Some(ip), _) => ip,
        (None, AddressFamily::Inet) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, AddressFamily::Inet6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (None, _) => return None,
    };
    let dst = IpNetwork::new(dst, message.header.destination_prefix_length).ok()?;
    Some(RouteInfo {
        dst,
        gw,
        oif,
        table,
        metric,
        mtu,
    })
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}
