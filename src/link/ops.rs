//! The link operations the drivers' shared steps use, as a trait: `Netlink` is the one real implementation,
//! and a recording fake in the drivers' unit tests proves the order of steps and undos (a failure at the
//! route undoes the veth, the bridge and the lease, in reverse) without root. Narrow on purpose: only what
//! those steps call.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{IpFamily, LinkError, LinkInfo, MacAddr, Netlink, RouteInfo, VethSpec};

pub trait LinkOps {
    fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, LinkError>;
    fn links(&self) -> Result<Vec<LinkInfo>, LinkError>;
    /// `Ok(false)` when there was nothing to delete.
    fn delete_link_by_name(&self, name: &str) -> Result<bool, LinkError>;
    fn set_up(&self, index: u32) -> Result<(), LinkError>;
    fn set_up_by_name(&self, name: &str) -> Result<(), LinkError>;
    fn ensure_bridge_noting_creation(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: MacAddr,
    ) -> Result<(LinkInfo, bool), LinkError>;
    fn set_promisc(&self, index: u32, on: bool) -> Result<(), LinkError>;
    fn set_hairpin(&self, index: u32, on: bool) -> Result<(), LinkError>;
    fn set_isolated(&self, index: u32, on: bool) -> Result<(), LinkError>;
    fn add_veth_down(&self, spec: &VethSpec<'_>) -> Result<(), LinkError>;
    fn skip_ipv6_link_local(&self, index: u32) -> Result<(), LinkError>;
    fn add_address(&self, index: u32, address: IpNetwork, nodad: bool) -> Result<(), LinkError>;
    /// `Ok(true)` when the address was added, `Ok(false)` when it was there.
    fn try_add_address(
        &self,
        index: u32,
        address: IpNetwork,
        nodad: bool,
    ) -> Result<bool, LinkError>;
    fn addresses(&self, index: u32) -> Result<Vec<IpNetwork>, LinkError>;
    fn del_address(&self, index: u32, address: IpNetwork) -> Result<bool, LinkError>;
    fn add_route(
        &self,
        dst: IpNetwork,
        gw: Option<IpAddr>,
        oif: Option<u32>,
        mtu: Option<u32>,
    ) -> Result<(), LinkError>;
    fn routes(&self, family: IpFamily) -> Result<Vec<RouteInfo>, LinkError>;
    /// A sysctl of the namespace the caller runs in (`key` under /proc/sys, '/'-separated).
    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), LinkError>;
}

impl LinkOps for Netlink {
    fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, LinkError> {
        Netlink::link_by_name(self, name)
    }
    fn links(&self) -> Result<Vec<LinkInfo>, LinkError> {
        Netlink::links(self)
    }
    fn delete_link_by_name(&self, name: &str) -> Result<bool, LinkError> {
        Netlink::delete_link_by_name(self, name)
    }
    fn set_up(&self, index: u32) -> Result<(), LinkError> {
        Netlink::set_up(self, index)
    }
    fn set_up_by_name(&self, name: &str) -> Result<(), LinkError> {
        Netlink::set_up_by_name(self, name)
    }
    fn ensure_bridge_noting_creation(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: MacAddr,
    ) -> Result<(LinkInfo, bool), LinkError> {
        Netlink::ensure_bridge_noting_creation(self, name, mtu, mac)
    }
    fn set_promisc(&self, index: u32, on: bool) -> Result<(), LinkError> {
        Netlink::set_promisc(self, index, on)
    }
    fn set_hairpin(&self, index: u32, on: bool) -> Result<(), LinkError> {
        Netlink::set_hairpin(self, index, on)
    }
    fn set_isolated(&self, index: u32, on: bool) -> Result<(), LinkError> {
        Netlink::set_isolated(self, index, on)
    }
    fn add_veth_down(&self, spec: &VethSpec<'_>) -> Result<(), LinkError> {
        Netlink::add_veth_down(self, spec)
    }
    fn skip_ipv6_link_local(&self, index: u32) -> Result<(), LinkError> {
        Netlink::skip_ipv6_link_local(self, index)
    }
    fn add_address(&self, index: u32, address: IpNetwork, nodad: bool) -> Result<(), LinkError> {
        Netlink::add_address(self, index, address, nodad)
    }
    fn try_add_address(
        &self,
        index: u32,
        address: IpNetwork,
        nodad: bool,
    ) -> Result<bool, LinkError> {
        Netlink::try_add_address(self, index, address, nodad)
    }
    fn addresses(&self, index: u32) -> Result<Vec<IpNetwork>, LinkError> {
        Netlink::addresses(self, index)
    }
    fn del_address(&self, index: u32, address: IpNetwork) -> Result<bool, LinkError> {
        Netlink::del_address(self, index, address)
    }
    fn add_route(
        &self,
        dst: IpNetwork,
        gw: Option<IpAddr>,
        oif: Option<u32>,
        mtu: Option<u32>,
    ) -> Result<(), LinkError> {
        Netlink::add_route(self, dst, gw, oif, mtu)
    }
    fn routes(&self, family: IpFamily) -> Result<Vec<RouteInfo>, LinkError> {
        Netlink::routes(self, family)
    }
    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), LinkError> {
        super::set_sysctl(key, value)
    }
}
