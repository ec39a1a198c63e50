//! veth pairs whose peer is born in another namespace.

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::{check_ifname, index_object, LinkError, LinkInfo, MacAddr, Netlink};
use crate::netns::NetNs;

/// How many ports the kernel lets a bridge have (BR_MAX_PORTS is 1024; port number 0 is never used).
pub const BRIDGE_MAX_PORTS: usize = 1023;

/// Everything one veth-creating request can say. The host end comes up at once; the peer stays
/// down (see [`Netlink::create_veth_with`]).
#[derive(Debug)]
pub struct VethSpec<'a> {
    /// Name of the end that stays in this socket's namespace.
    pub host_name: &'a str,
    /// Final name of the other end (e.g. "eth0"), in `peer_ns`.
    pub peer_name: &'a str,
    pub peer_ns: &'a NetNs,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    pub peer_mac: Option<MacAddr>,
    /// MAC of the host end; given, the caller knows it without reading the link back.
    pub host_mac: Option<MacAddr>,
    /// Attach the host end to this master (bridge) in the same request.
    pub host_master: Option<u32>,
}

impl Netlink {
    /// Creates a veth pair with one RTM_NEWLINK: the host end here, the peer directly in `peer_ns`
    /// under its final name (IFLA_NET_NS_FD in the peer's message), so no rename or move follows
    /// and nothing else ever sees a half-built pair. Returns the host end, which is up; the peer is
    /// down until the caller sets it up from inside `peer_ns` (`Netlink::in_netns(ns)?.set_up(i)`).
    ///
    /// A name already taken on either side gives [`LinkError::Exists`].
    pub fn create_veth(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_ns: &NetNs,
        mtu: Option<u32>,
        peer_mac: Option<MacAddr>,
    ) -> Result<LinkInfo, LinkError> {
        self.create_veth_with(&VethSpec {
            host_name,
            peer_name,
            peer_ns,
            mtu,
            peer_mac,
            host_mac: None,
            host_master: None,
        })
    }

    /// [`Netlink::create_veth`] with every option, including enslaving the host end at creation.
    pub fn create_veth_with(&self, spec: &VethSpec<'_>) -> Result<LinkInfo, LinkError> {
        self.add_veth(spec)?;
        self.link_by_name(spec.host_name)?
            .ok_or(LinkError::NotFound {
                op: "reading created veth",
                object: spec.host_name.to_string(),
            })
    }

    /// Creates the pair without reading the host end back. Reading a veth costs time that grows with the
    /// number of namespaces (the kernel looks up the peer's namespace id in a list of every namespace it
    /// has an id for), so a caller that knows the host end's MAC (`host_mac`) and needs no index skips it.
    pub fn add_veth(&self, spec: &VethSpec<'_>) -> Result<(), LinkError> {
        self.send_veth(spec, true)
    }

    /// [`Netlink::add_veth`] with the host end left down, so the caller can change settings that must be in
    /// place before the link comes up (IPv6 off on a bridge port, for one), then bring it up
    /// with [`Netlink::set_up_by_name`].
    pub fn add_veth_down(&self, spec: &VethSpec<'_>) -> Result<(), LinkError> {
        self.send_veth(spec, false)
    }

    fn send_veth(&self, spec: &VethSpec<'_>, host_up: bool) -> Result<(), LinkError> {
        check_ifname(spec.host_name)?;
        check_ifname(spec.peer_name)?;

        // No IFF_UP for the peer: the kernel configures the peer before it links the pair, so
        // opening it fails with ENOTCONN (seen on 6.18; `ip link add ... peer name X up` fails too).
        // Bring it up afterwards through a socket in the peer's namespace.
        // One queue each way on both ends, said in the request. Left out, the kernel allocates one per possible
        // CPU, registers both ends, and then cuts each down to the one queue a veth uses: a cut of a registered
        // device waits for an expedited RCU grace period under the RTNL lock, twice per pair.
        let mut peer = LinkUnspec::new_with_name(spec.peer_name)
            .setns_by_fd(spec.peer_ns.fd())
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        if let Some(mtu) = spec.mtu {
            peer = peer.mtu(mtu);
        }
        if let Some(mac) = spec.peer_mac {
            peer = peer.address(mac.octets().to_vec());
        }

        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        if host_up {
            host = host.up();
        }
        if let Some(mtu) = spec.mtu {
            host = host.mtu(mtu);
        }
        if let Some(master) = spec.host_master {
            host = host.controller(master);
        }
        if let Some(mac) = spec.host_mac {
            host = host.address(mac.octets().to_vec());
        }

        let object = format!(
            "{} (peer {} in {})",
            spec.host_name,
            spec.peer_name,
            spec.peer_ns.path().display()
        );
        self.create_link("creating veth", &object, host.build())
            .map_err(|e| match (e.errno(), spec.host_master) {
                // BR_MAX_PORTS: the kernel's port numbers are 10 bits, so a bridge takes 1023 ports.
                (Some(libc::EXFULL), Some(bridge)) => LinkError::BridgeFull {
                    bridge: index_object(bridge),
                    ports: BRIDGE_MAX_PORTS,
                },
                _ => e,
            })?;
        tracing::debug!(host = spec.host_name, peer = spec.peer_name, netns = %spec.peer_ns.path().display(), "created veth pair");
        Ok(())
    }
}
