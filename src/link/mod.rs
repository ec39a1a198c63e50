//! Netlink operations on links, addresses and routes: rtnetlink's message builders, sent over a
//! blocking socket of our own ([`route_socket`]).
//!
//! A [`Netlink`] holds one NETLINK_ROUTE socket. It belongs to the namespace it was opened in
//! ([`Netlink::in_netns`]) for its whole life, whatever thread later uses it, so no method here ever
//! calls `setns`. Methods block until the kernel answers (microseconds: no request here waits on the
//! network).

mod address;
mod bridge;
mod error;
mod info;
mod kernel_socket;
mod macvlan;
mod neighbour;
mod ops;
mod policy_route;
mod reaper;
mod route;
mod route_socket;
mod sysctl;
mod veth;
mod vlan;
mod vxlan;
pub mod xfrm;

use std::path::PathBuf;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use rtnetlink::packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;

use crate::netns::NetNs;

pub use crate::mac::{MacAddr, MacAddrError};
pub use bridge::TETHER_BRIDGE_GROUP;
pub use error::LinkError;
pub use info::LinkInfo;
pub use macvlan::{MacvlanInfo, MacvlanMode, MacvlanSpec, UnknownMacvlanMode};
pub use neighbour::{FdbEntry, FdbWrite, NeighbourEntry};
pub use ops::LinkOps;
pub use policy_route::MarkRule;
pub use reaper::{
    delete_bridge_in_background, delete_unused_bridge, serve_reaper_helper, LinkReaper, ReaperError,
};
pub use route::{IpFamily, RouteInfo};
pub use route_socket::RequestError;
use route_socket::RouteSocket;
pub use sysctl::{get_sysctl, set_sysctl};
pub use veth::{VethSpec, BRIDGE_MAX_PORTS};

/// The MTUs tether accepts for a link: IPv4's minimum datagram (RFC 791) up to what `ip link` takes.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// An MTU outside [`MTU_RANGE`]; its message says which values are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mtu {mtu} is out of range; use a value from {lo} to {hi}", lo = MTU_RANGE.start(), hi = MTU_RANGE.end())]
pub struct MtuOutOfRange {
    pub mtu: u32,
}

/// The one check of an MTU from a config, a `-o mtu=` option or Docker's options.
pub fn check_mtu(mtu: u32) -> Result<u32, MtuOutOfRange> {
    match MTU_RANGE.contains(&mtu) {
        true => Ok(mtu),
        false => Err(MtuOutOfRange { mtu }),
    }
}
pub use vlan::{VLAN_FEATURE, VLAN_ID_RANGE};
pub use vxlan::{vxlan_name, VxlanSpec, MAX_VNI, VXLAN_PORT};

pub use crate::ifname::MAX_IFNAME_LEN;

/// A netlink route socket bound to one network namespace, with blocking methods.
pub struct Netlink {
    socket: RouteSocket,
    /// The namespace the socket lives in, for messages; `None` for the caller's own.
    netns: Option<PathBuf>,
}

/// Flags of a request that creates an object and refuses one already there (`ip link add`).
pub(crate) const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// Flags of a request about one existing object: a change, a delete, or a get of it.
pub(crate) const EXISTING: u16 = 0;

impl Netlink {
    /// A socket in the calling thread's current namespace.
    pub fn new() -> Result<Netlink, LinkError> {
        let socket = RouteSocket::open().map_err(|source| LinkError::Socket {
            netns: None,
            source,
        })?;
        Ok(Netlink {
            socket,
            netns: None,
        })
    }

    /// A socket in `netns`: the thread enters the namespace only for the `socket(2)` call and comes
    /// straight back; the socket keeps talking to `netns` afterwards.
    pub fn in_netns(netns: &NetNs) -> Result<Netlink, LinkError> {
        let path = netns.path().to_path_buf();
        let socket = netns
            .run(RouteSocket::open)
            .map_err(|source| LinkError::Netns { source })?
            .map_err(|source| LinkError::Socket {
                netns: Some(path.clone()),
                source,
            })?;
        Ok(Netlink {
            socket,
            netns: Some(path),
        })
    }

    /// The namespace this socket works in, as given to [`Netlink::in_netns`].
    pub fn netns_path(&self) -> Option<&std::path::Path> {
        self.netns.as_deref()
    }

    /// Sends one request and waits for the kernel's answer: its messages (a dump's, or a get's one)
    /// or, for anything else, the acknowledgement. `flags` adds to NLM_F_REQUEST (and NLM_F_ACK).
    pub(crate) fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        object: impl std::fmt::Display,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.socket
            .request(message, flags)
            .map_err(LinkError::from_request(op, object))
    }

    /// A dump: every answer of the kernel to `message`.
    pub(crate) fn dump(
        &self,
        message: RouteNetlinkMessage,
        op: &'static str,
        object: impl std::fmt::Display,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.request(message, NLM_F_DUMP, op, object)
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, LinkError> {
        check_ifname(name)?;
        let mut message = link_query();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.first_link(message, "looking up link", name)
    }

    /// The link with `index`, or `None` when there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, LinkError> {
        let mut message = link_query();
        message.header.index = index;
        self.first_link(message, "looking up", &index_object(index))
    }

    /// All links of the namespace.
    pub fn links(&self) -> Result<Vec<LinkInfo>, LinkError> {
        let answers = self.dump(
            RouteNetlinkMessage::GetLink(link_query()),
            "listing links",
            "in namespace",
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link)),
                _ => None,
            })
            .collect())
    }

    /// The raw answer to a get of one link (by the index or name in `message`); `None` when there is none.
    pub(crate) fn link_message(
        &self,
        message: LinkMessage,
        op: &'static str,
        object: &str,
    ) -> Result<Option<LinkMessage>, LinkError> {
        match self.request(RouteNetlinkMessage::GetLink(message), EXISTING, op, object) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(LinkError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn first_link(
        &self,
        message: LinkMessage,
        op: &'static str,
        object: &str,
    ) -> Result<Option<LinkInfo>, LinkError> {
        Ok(self
            .link_message(message, op, object)?
            .map(|link| LinkInfo::from_message(&link)))
    }

    /// Deletes link `index`; `Ok(false)` when it was already gone. Deleting one end of a veth pair
    /// deletes both.
    pub fn delete_link(&self, index: u32) -> Result<bool, LinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let result = self.request(
            RouteNetlinkMessage::DelLink(message),
            EXISTING,
            "deleting",
            index_object(index),
        );
        deleted(result)
    }

    /// Deletes the link called `name`; `Ok(false)` when there is none.
    pub fn delete_link_by_name(&self, name: &str) -> Result<bool, LinkError> {
        match self.link_by_name(name)? {
            Some(link) => self.delete_link(link.index),
            None => Ok(false),
        }
    }

    /// Sets the link administratively up.
    pub fn set_up(&self, index: u32) -> Result<(), LinkError> {
        self.change_link(
            "setting up",
            index_object(index),
            LinkUnspec::new_with_index(index).up().build(),
        )
    }

    /// Sets the link called `name` up, found by the kernel from the name in the request: no lookup first.
    pub fn set_up_by_name(&self, name: &str) -> Result<(), LinkError> {
        check_ifname(name)?;
        self.change_link(
            "setting up",
            name.to_string(),
            LinkUnspec::new_with_name(name).up().build(),
        )
    }

    /// Has the kernel give the link no IPv6 link-local address when it comes up (`addr_gen_mode none`), so
    /// an interface meant for IPv4 only sends no DAD probes, MLD reports or router solicitations. Over
    /// netlink, not the `disable_ipv6` sysctl: every namespace's `/proc/sys/net/ipv6/conf/eth0` hangs off one
    /// dentry hash chain, so writing it costs a walk over all containers' `eth0` entries. Must come before
    /// the link is up; do_setlink applies IFLA_AF_SPEC after the flags, so it cannot share that request.
    pub fn skip_ipv6_link_local(&self, index: u32) -> Result<(), LinkError> {
        use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
        let inet6 = AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)]);
        self.change_link(
            "turning off IPv6 link-local addressing of",
            index_object(index),
            LinkUnspec::new_with_index(index)
                .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![inet6]))
                .build(),
        )
    }

    /// Sets the link administratively down.
    pub fn set_down(&self, index: u32) -> Result<(), LinkError> {
        self.change_link(
            "setting down",
            index_object(index),
            LinkUnspec::new_with_index(index).down().build(),
        )
    }

    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), LinkError> {
        self.change_link(
            "setting the MTU of",
            format!("{} to {mtu}", index_object(index)),
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
        )
    }

    pub fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), LinkError> {
        self.change_link(
            "setting the MAC address of",
            format!("{} to {mac}", index_object(index)),
            LinkUnspec::new_with_index(index)
                .address(mac.octets().to_vec())
                .build(),
        )
    }

    /// Enslaves link `index` to `master_index` (a bridge, for example).
    pub fn set_master(&self, index: u32, master_index: u32) -> Result<(), LinkError> {
        self.change_link(
            "attaching",
            format!("{} to {}", index_object(index), index_object(master_index)),
            LinkUnspec::new_with_index(index)
                .controller(master_index)
                .build(),
        )
    }

    /// Detaches link `index` from its master, if any.
    pub fn clear_master(&self, index: u32) -> Result<(), LinkError> {
        self.change_link(
            "detaching",
            format!("{} from its master", index_object(index)),
            LinkUnspec::new_with_index(index).nocontroller().build(),
        )
    }

    pub fn set_promisc(&self, index: u32, on: bool) -> Result<(), LinkError> {
        self.change_link(
            "setting promiscuous mode of",
            index_object(index),
            LinkUnspec::new_with_index(index).promiscuous(on).build(),
        )
    }

    /// The MAC address of link `index`; `None` for links without one (loopback-less tunnels).
    pub fn mac_of(&self, index: u32) -> Result<Option<MacAddr>, LinkError> {
        match self.link_by_index(index)? {
            Some(link) => Ok(link.mac),
            None => Err(LinkError::NotFound {
                op: "reading the MAC address of",
                object: index_object(index),
            }),
        }
    }

    /// RTM_NEWLINK with NLM_F_CREATE | NLM_F_EXCL: what `ip link add` sends.
    pub(crate) fn create_link(
        &self,
        op: &'static str,
        object: impl std::fmt::Display,
        message: LinkMessage,
    ) -> Result<(), LinkError> {
        self.request(RouteNetlinkMessage::NewLink(message), CREATE, op, object)
            .map(drop)
    }

    /// RTM_NEWLINK without NLM_F_CREATE on an existing index: what `ip link set` sends.
    pub(crate) fn change_link(
        &self,
        op: &'static str,
        object: String,
        message: LinkMessage,
    ) -> Result<(), LinkError> {
        self.request(RouteNetlinkMessage::NewLink(message), EXISTING, op, object)
            .map(drop)
    }
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

/// An RTM_GETLINK that asks for no statistics (RTEXT_FILTER_SKIP_STATS): nothing here reads them, and
/// they are most of a veth's answer (IFLA_STATS64, IFLA_STATS, IPv6 and ICMPv6 counters), which the
/// kernel sums over every CPU and the parser walks attribute by attribute. Name or index go in after.
pub(crate) fn link_query() -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    message
}

/// How error messages name a link known only by its index.
pub(crate) fn index_object(index: u32) -> String {
    format!("link #{index}")
}

/// What a delete request came to: `Ok(true)` when it deleted, `Ok(false)` when the object was already
/// gone (a CNI DEL must succeed for anything already gone), any other error as it was.
pub(crate) fn deleted<T>(result: Result<T, LinkError>) -> Result<bool, LinkError> {
    match result {
        Ok(_) => Ok(true),
        Err(LinkError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Rejects names the kernel would refuse, with a message that says why (the kernel says only EINVAL).
pub(crate) fn check_ifname(name: &str) -> Result<(), LinkError> {
    let problem = crate::ifname::ifname_problem(name);
    match problem {
        Some(reason) => Err(LinkError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn interface_names_the_kernel_refuses_are_rejected_early() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
            assert!(check_ifname(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_ifname("0123456789abcdef").is_err());
        assert!(check_ifname("0123456789abcde").is_ok());
        assert!(check_ifname("tv1a2b3c4d").is_ok());
        assert!(check_ifname("eth0.100").is_ok());
    }

    #[test]
    fn a_delete_of_something_already_gone_is_false_and_other_errors_stay_errors() {
        assert!(deleted(Ok::<(), LinkError>(())).unwrap());
        let gone = LinkError::NotFound {
            op: "deleting",
            object: "link #7".into(),
        };
        assert!(!deleted(Err::<(), _>(gone)).unwrap());
        let refused = LinkError::InvalidName {
            name: "a b".into(),
            reason: "spaces",
        };
        assert!(matches!(
            deleted(Err::<(), _>(refused)),
            Err(LinkError::InvalidName { .. })
        ));
    }

    #[test]
    fn link_lookups_ask_for_no_statistics() {
        let query = link_query();
        assert!(query
            .attributes
            .contains(&LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])));
    }
}
