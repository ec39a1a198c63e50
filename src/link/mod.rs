//! Netlink operations on links, addresses and routes, as a synchronous facade over rtnetlink.
//!
//! A [`Netlink`] holds a tokio current-thread runtime (its own, or shared with the [`Netlink`] it was made
//! beside: [`Netlink::beside_in`]) and one rtnetlink socket. The socket belongs to
//! the namespace it was opened in ([`Netlink::in_netns`]) for its whole life, whatever thread later
//! uses it, so no method here ever calls `setns`. Methods block; do not call them from inside an
//! async runtime.

mod address;
mod bridge;
mod error;
mod info;
mod macvlan;
mod neighbour;
mod ops;
mod policy_route;
mod reaper;
mod route;
mod sysctl;
mod veth;
mod vlan;
mod vxlan;
pub mod xfrm;

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkUnspec};

use crate::netns::NetNs;

pub use crate::mac::{MacAddr, MacAddrError};
pub use bridge::TETHER_BRIDGE_GROUP;
pub use error::LinkError;
pub use info::LinkInfo;
pub use macvlan::{MacvlanInfo, MacvlanMode, MacvlanSpec, UnknownMacvlanMode};
pub use neighbour::{FdbEntry, FdbWrite, NeighbourEntry};
pub use ops::LinkOps;
pub use policy_route::MarkRule;
pub use reaper::{delete_bridge_in_background, delete_unused_bridge, LinkReaper, ReaperError};
pub use route::{IpFamily, RouteInfo};
pub use sysctl::{get_sysctl, set_sysctl};
pub use veth::VethSpec;

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
    runtime: Arc<tokio::runtime::Runtime>,
    handle: Handle,
    /// The namespace the socket lives in, for messages; `None` for the caller's own.
    netns: Option<PathBuf>,
}

impl Netlink {
    /// A socket in the calling thread's current namespace.
    pub fn new() -> Result<Netlink, LinkError> {
        let runtime = Arc::new(new_runtime()?);
        let handle = open_socket(&runtime, None)?;
        Ok(Netlink {
            runtime,
            handle,
            netns: None,
        })
    }

    /// A socket in `netns`: the thread enters the namespace only for the `socket(2)` call and comes
    /// straight back; the socket keeps talking to `netns` afterwards.
    pub fn in_netns(netns: &NetNs) -> Result<Netlink, LinkError> {
        Netlink::on_runtime(Arc::new(new_runtime()?), netns)
    }

    /// A socket in `netns` on this one's runtime: a plugin's host and container sockets then cost one
    /// runtime (its epoll, waker and drivers: about 40 of a bridge ADD's 440 page faults, measured).
    /// Use both from one thread at a time, as a plugin does; long-lived users take [`Netlink::in_netns`].
    pub fn beside_in(&self, netns: &NetNs) -> Result<Netlink, LinkError> {
        Netlink::on_runtime(self.runtime.clone(), netns)
    }

    fn on_runtime(
        runtime: Arc<tokio::runtime::Runtime>,
        netns: &NetNs,
    ) -> Result<Netlink, LinkError> {
        let path = netns.path().to_path_buf();
        let handle = netns
            .run(|| open_socket(&runtime, Some(&path)))
            .map_err(|source| LinkError::Netns { source })??;
        Ok(Netlink {
            runtime,
            handle,
            netns: Some(path),
        })
    }

    /// The namespace this socket works in, as given to [`Netlink::in_netns`].
    pub fn netns_path(&self) -> Option<&std::path::Path> {
        self.netns.as_deref()
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, LinkError> {
        check_ifname(name)?;
        let request = self.handle.link().get().match_name(name).execute();
        self.first_link(request, "looking up link", name)
    }

    /// The link with `index`, or `None` when there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, LinkError> {
        let request = self.handle.link().get().match_index(index).execute();
        self.first_link(request, "looking up", &index_object(index))
    }

    /// All links of the namespace.
    pub fn links(&self) -> Result<Vec<LinkInfo>, LinkError> {
        let request = self.handle.link().get().execute();
        let messages: Vec<LinkMessage> = self
            .block_on(request.try_collect())
            .map_err(LinkError::from_rtnetlink("listing links", "in namespace"))?;
        Ok(messages.iter().map(LinkInfo::from_message).collect())
    }

    fn first_link(
        &self,
        request: impl futures::Stream<Item = Result<LinkMessage, rtnetlink::Error>>,
        op: &'static str,
        object: &str,
    ) -> Result<Option<LinkInfo>, LinkError> {
        let first = self.block_on(async {
            futures::pin_mut!(request);
            request.try_next().await
        });
        match first.map_err(LinkError::from_rtnetlink(op, object)) {
            Ok(Some(message)) => Ok(Some(LinkInfo::from_message(&message))),
            Ok(None) | Err(LinkError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes link `index`; `Ok(false)` when it was already gone. Deleting one end of a veth pair
    /// deletes both.
    pub fn delete_link(&self, index: u32) -> Result<bool, LinkError> {
        let result = self.block_on(self.handle.link().del(index).execute());
        match result.map_err(LinkError::from_rtnetlink("deleting", index_object(index))) {
            Ok(()) => Ok(true),
            Err(LinkError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
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
        use rtnetlink::packet_route::link::{
            AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute,
        };
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

    /// RTM_NEWLINK without NLM_F_CREATE on an existing index: what `ip link set` sends.
    pub(crate) fn change_link(
        &self,
        op: &'static str,
        object: String,
        message: LinkMessage,
    ) -> Result<(), LinkError> {
        self.block_on(self.handle.link().change(message).execute())
            .map_err(LinkError::from_rtnetlink(op, object))
    }
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

fn new_runtime() -> Result<tokio::runtime::Runtime, LinkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| LinkError::Runtime { source })
}

fn open_socket(
    runtime: &tokio::runtime::Runtime,
    netns: Option<&PathBuf>,
) -> Result<Handle, LinkError> {
    // The tokio socket registers with the runtime's reactor on creation, so enter its context.
    let _context = runtime.enter();
    let (connection, handle, _unsolicited) =
        rtnetlink::new_connection().map_err(|source| LinkError::Socket {
            netns: netns.cloned(),
            source,
        })?;
    runtime.spawn(connection);
    Ok(handle)
}

/// How error messages name a link known only by its index.
pub(crate) fn index_object(index: u32) -> String {
    format!("link #{index}")
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
}
