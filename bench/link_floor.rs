//! The kernel's floor under a bridge plugin: the link requests tether-bridge sends for one container, made by
//! its own functions from the bench's own process over sockets opened once, with no plugin process, IPAM, firewall, DNS notify
//! or state file. ADD: the veth with its peer born in the container and its host end on the bridge (down),
//! IPv6 off on the port, the port up; in the container the link read back, its address, no IPv6 link-local,
//! up, the default route. DEL: the host end deleted (the kernel takes the peer with it), waited for until
//! the link is unlisted. What grows here with
//! the network's size grows under every plugin that puts containers on a Linux bridge through veths.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use ipnetwork::IpNetwork;
use tether::driver::bridge_port::{self, BridgePort};
use tether::driver::container_iface::{
    self, container_link, DefaultRoute, IfaceConfig, Ipv6Quieting,
};
use tether::driver::rollback::Rollback;
use tether::link::{LinkReaper, MacAddr, Netlink};
use tether::netns::NetNs as KernelNs;

use crate::harness::{HostNs, NetNs};

const BRIDGE: &str = "tfloor0";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 124, 0, 1);

/// One network's bridge in a host namespace, and the sockets the requests go through.
pub struct LinkFloor {
    host: KernelNs,
    /// The host namespace's socket; one request at a time, as one plugin process sends them.
    netlink: Mutex<Netlink>,
    bridge: u32,
}

impl LinkFloor {
    /// The bridge, up, with the gateway's address (untimed: a network's setup).
    pub fn on(host: &HostNs) -> Result<Self, String> {
        let host = KernelNs::open(host.path()).map_err(|e| e.to_string())?;
        let netlink = Netlink::in_netns(&host).map_err(|e| e.to_string())?;
        let bridge = netlink
            .ensure_bridge(BRIDGE, None, MacAddr::from_name(BRIDGE))
            .map_err(|e| e.to_string())?;
        netlink
            .add_address(bridge.index, net(IpAddr::V4(GATEWAY), 16), false)
            .map_err(|e| e.to_string())?;
        Ok(LinkFloor {
            host,
            netlink: Mutex::new(netlink),
            bridge: bridge.index,
        })
    }

    /// The address container number `slot` is given.
    pub fn address(slot: u32) -> Ipv4Addr {
        let n = slot + 2;
        Ipv4Addr::new(10, 124, (n >> 8) as u8, (n & 0xff) as u8)
    }

    /// The host end's name of container number `slot`.
    fn port(slot: u32) -> String {
        format!("tf{slot}")
    }

    /// Plugs container `c`, number `slot`, into the bridge: tether-bridge's own link steps
    /// (`bridge_port::attach`, then `container_iface::configure`), so the floor follows them as they change.
    pub fn add(&self, c: &NetNs, slot: u32) -> Result<Ipv4Addr, String> {
        let port = Self::port(slot);
        let container = KernelNs::open(c.path()).map_err(|e| e.to_string())?;
        let address = Self::address(slot);
        {
            let host = self.netlink.lock().unwrap();
            let spec = BridgePort {
                bridge: self.bridge,
                host_ifname: &port,
                ifname: "eth0",
                netns: &container,
                mtu: None,
                mac: None,
                hairpin: false,
                isolated: false,
            };
            // In the host namespace: the port's IPv6 sysctl is a file of the calling thread's namespace.
            self.host
                .run(|| {
                    let mut rollback = Rollback::new();
                    bridge_port::attach(&*host, &spec, &mut rollback)?;
                    rollback.commit();
                    Ok::<_, tether::error::Error>(())
                })
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        let inner = Netlink::in_netns(&container).map_err(|e| e.to_string())?;
        let eth0 = container_link(&inner, "eth0").map_err(|e| e.to_string())?;
        container_iface::configure(
            &inner,
            eth0.index,
            &IfaceConfig {
                addresses: &[(net(IpAddr::V4(address), 16), Some(IpAddr::V4(GATEWAY)))],
                skip_dad: true,
                ipv6: Ipv6Quieting::BridgePortPeer,
                default_route: DefaultRoute::ViaGateway,
                routes: &[],
                report_gateway: false,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(address)
    }

    /// Unplugs container number `slot` as tether-bridge does: the delete sent from a forked child, waited for
    /// only until the link is unlisted (the kernel's RCU waits after that are nobody's time).
    pub fn del(&self, slot: u32) -> Result<(), String> {
        let port = Self::port(slot);
        self.host
            .run(|| LinkReaper::start(&port, None).and_then(LinkReaper::wait_unlisted))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

fn net(ip: IpAddr, prefix: u8) -> IpNetwork {
    IpNetwork::new(ip, prefix).expect("a prefix that fits the family")
}
