//! How a container interface is set up before it comes up: these settings decide what the kernel sends the
//! moment the link is up, so setting them later is too late.
//!
//! An interface that gets no IPv6 address is kept off IPv6, as Docker does for IPv4-only networks since
//! 26.0: otherwise the kernel gives it a link-local address (and on a macvlan, SLAAC addresses from the
//! LAN's routers), and its DAD probes and MLD reports, which a Linux bridge floods to every port, made each
//! ADD cost CPU in every other container of the network (~1000 IPv6 receives per frame at 1000
//! containers). A chained `tuning` plugin can turn IPv6 back on.

use ipnetwork::IpNetwork;

use crate::link::{set_sysctl, LinkOps};
use crate::netns::NetNs;

fn has_ipv6(addresses: &[IpNetwork]) -> bool {
    addresses.iter().any(IpNetwork::is_ipv6)
}

/// A bridge port's peer (veth) without IPv6 addresses gets no link-local address. Best effort: a host
/// without IPv6 has nothing to turn off.
pub fn quiet_ipv6_on_bridge_port_peer(inner: &impl LinkOps, index: u32, addresses: &[IpNetwork]) {
    if has_ipv6(addresses) {
        return;
    }
    if let Err(e) = inner.skip_ipv6_link_local(index) {
        tracing::debug!(index, error = %e, "IPv6 link-local addressing left on");
    }
}

/// The sysctls (keys under /proc/sys, values) a macvlan child on a LAN needs before it comes up: IPv6 off
/// when it has no IPv6 address (also stops SLAAC from the LAN's routers, which no netlink switch does), and
/// announcements of its addresses (gratuitous ARP, unsolicited NA), so the segment's neighbours drop a stale
/// entry for an address a previous container held with another MAC.
pub fn lan_interface_sysctls(ifname: &str, addresses: &[IpNetwork]) -> Vec<(String, &'static str)> {
    let has_v4 = addresses.iter().any(IpNetwork::is_ipv4);
    let mut keys = Vec::new();
    if has_ipv6(addresses) {
        keys.push((format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1"));
    } else {
        keys.push((format!("net/ipv6/conf/{ifname}/disable_ipv6"), "1"));
    }
    if has_v4 {
        keys.push((format!("net/ipv4/conf/{ifname}/arp_notify"), "1"));
    }
    keys
}

/// Sets [`lan_interface_sysctls`] inside `ns`. Best effort: a host without IPv6 has nothing to turn off, and
/// a missing announcement only slows the first contact.
pub fn apply_lan_interface_sysctls(ns: &NetNs, ifname: &str, addresses: &[IpNetwork]) {
    let keys = lan_interface_sysctls(ifname, addresses);
    let set = ns.run(|| {
        for (key, value) in &keys {
            if let Err(e) = set_sysctl(key, value) {
                tracing::debug!(key, error = %e, "container interface sysctl not set");
            }
        }
    });
    if let Err(e) = set {
        tracing::debug!(ifname, error = %e, "container interface sysctls not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpNetwork> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn rendered(keys: Vec<(String, &'static str)>) -> Vec<String> {
        keys.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn ipv4_only_lan_interface_gets_ipv6_off_and_announces_arp() {
        let keys = lan_interface_sysctls("net1", &ips(&["10.1.0.2/24"]));
        assert_eq!(
            rendered(keys),
            [
                "net/ipv6/conf/net1/disable_ipv6=1",
                "net/ipv4/conf/net1/arp_notify=1"
            ]
        );
    }

    #[test]
    fn dual_stack_lan_interface_keeps_ipv6_and_announces_both() {
        let keys = lan_interface_sysctls("net1", &ips(&["10.1.0.2/24", "fd00::2/64"]));
        assert_eq!(
            rendered(keys),
            [
                "net/ipv6/conf/net1/ndisc_notify=1",
                "net/ipv4/conf/net1/arp_notify=1"
            ]
        );
    }

    #[test]
    fn ipv6_only_lan_interface_announces_neighbour_advertisements_only() {
        let keys = lan_interface_sysctls("net1", &ips(&["fd00::2/64"]));
        assert_eq!(rendered(keys), ["net/ipv6/conf/net1/ndisc_notify=1"]);
    }
}
