//! macvlan children of a parent link, born directly in the namespace they serve.

use std::fmt;
use std::str::FromStr;

use rtnetlink::packet_route::link::{
    self as rt, InfoData, InfoMacVlan, LinkAttribute, LinkMessage, MacVlanMacAddressMode,
    MacVlanMode,
};
use rtnetlink::{LinkMacVlan, LinkUnspec};

use super::{check_ifname, index_object, LinkError, MacAddr, Netlink};
use crate::netns::NetNs;

/// How a macvlan child treats traffic between itself and its siblings on the same parent
/// (linux/if_link.h MACVLAN_MODE_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacvlanMode {
    /// Siblings reach each other inside the kernel, without the frame leaving the parent.
    #[default]
    Bridge,
    /// Siblings never reach each other, not even when the switch sends the frame back.
    Private,
    /// Every frame goes out to the switch; siblings meet only if the switch reflects it (hairpin).
    Vepa,
    /// The one child takes the parent over (its MAC, promiscuous mode); no sibling may exist.
    Passthru,
    /// The child receives frames by *source* MAC from a list (MAC-based VLANs).
    Source,
}

impl MacvlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
            MacvlanMode::Source => "source",
        }
    }

    fn to_kernel(self) -> MacVlanMode {
        match self {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
            MacvlanMode::Source => MacVlanMode::Source,
        }
    }

    fn from_kernel(mode: MacVlanMode) -> Option<MacvlanMode> {
        match mode {
            MacVlanMode::Bridge => Some(MacvlanMode::Bridge),
            MacVlanMode::Private => Some(MacvlanMode::Private),
            MacVlanMode::Vepa => Some(MacvlanMode::Vepa),
            MacVlanMode::Passthrough => Some(MacvlanMode::Passthru),
            MacVlanMode::Source => Some(MacvlanMode::Source),
            _ => None,
        }
    }
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown macvlan mode {0:?}; use bridge, private, vepa, passthru or source")]
pub struct UnknownMacvlanMode(pub String);

impl FromStr for MacvlanMode {
    type Err = UnknownMacvlanMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bridge" => Ok(MacvlanMode::Bridge),
            "private" => Ok(MacvlanMode::Private),
            "vepa" => Ok(MacvlanMode::Vepa),
            // iproute2 and Docker both say "passthru".
            "passthru" => Ok(MacvlanMode::Passthru),
            "source" => Ok(MacvlanMode::Source),
            other => Err(UnknownMacvlanMode(other.to_string())),
        }
    }
}

/// One macvlan-creating request.
#[derive(Debug)]
pub struct MacvlanSpec<'a> {
    /// Name the child is created under; unique, since several ADDs may run at once.
    pub name: &'a str,
    /// Index of the parent in this socket's namespace.
    pub parent_index: u32,
    pub mode: MacvlanMode,
    /// Namespace to create the child in; `None` for this socket's own.
    pub netns: Option<&'a NetNs>,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    /// Source mode only: the source MACs whose frames the child receives.
    pub source_macs: &'a [MacAddr],
}

/// What the kernel reports about an existing macvlan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanInfo {
    pub mode: Option<MacvlanMode>,
    /// IFLA_LINK: the parent's index, in the namespace named by `parent_netns_id` when that is set.
    pub parent_index: Option<u32>,
    pub parent_netns_id: Option<i32>,
}

impl Netlink {
    /// Creates a macvlan child of `spec.parent_index` with one RTM_NEWLINK. With `spec.netns` the
    /// request carries IFLA_NET_NS_FD: the kernel looks the parent up in *this* socket's namespace and
    /// registers the child directly in the target one, so it is never visible on the host. The child
    /// stays down; rename it and bring it up from a socket inside its namespace.
    pub fn add_macvlan(&self, spec: &MacvlanSpec<'_>) -> Result<(), LinkError> {
        check_ifname(spec.name)?;
        let mut builder =
            LinkMacVlan::new(spec.name, spec.parent_index, spec.mode.to_kernel()).down();
        if spec.mode == MacvlanMode::Source && !spec.source_macs.is_empty() {
            let list = spec
                .source_macs
                .iter()
                .map(|m| InfoMacVlan::MacAddr(m.octets()))
                .collect();
            builder = builder
                .append_info_data(InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set))
                .append_info_data(InfoMacVlan::MacAddrData(list));
        }
        if let Some(ns) = spec.netns {
            builder = builder.setns_by_fd(ns.fd());
        }
        if let Some(mtu) = spec.mtu {
            builder = builder.mtu(mtu);
        }
        if let Some(mac) = spec.mac {
            builder = builder.address(mac.octets().to_vec());
        }
        let object = format!(
            "macvlan {} (mode {}, parent {}{})",
            spec.name,
            spec.mode,
            index_object(spec.parent_index),
            spec.netns
                .map(|ns| format!(", in {}", ns.path().display()))
                .unwrap_or_default()
        );
        self.create_link("creating", &object, builder.build())?;
        tracing::debug!(name = spec.name, mode = %spec.mode, parent = spec.parent_index, "created macvlan");
        Ok(())
    }

    /// Renames link `index` (it must be down, or the kernel answers EBUSY).
    pub fn rename_link(&self, index: u32, name: &str) -> Result<(), LinkError> {
        check_ifname(name)?;
        self.change_link(
            "renaming",
            format!("{} to {name}", index_object(index)),
            LinkUnspec::new_with_index(index).name(name).build(),
        )
    }

    /// The macvlan facts of link `index`; `None` when it does not exist or is not a macvlan.
    pub fn macvlan_info(&self, index: u32) -> Result<Option<MacvlanInfo>, LinkError> {
        let mut message = super::link_query();
        message.header.index = index;
        Ok(self
            .link_message(message, "looking up", &index_object(index))?
            .and_then(|m| macvlan_info_of(&m)))
    }
}

fn macvlan_info_of(message: &LinkMessage) -> Option<MacvlanInfo> {
    let mut is_macvlan = false;
    let mut info = MacvlanInfo {
        mode: None,
        parent_index: None,
        parent_netns_id: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Link(index) => info.parent_index = Some(*index),
            LinkAttribute::LinkNetNsId(id) => info.parent_netns_id = Some(*id),
            LinkAttribute::LinkInfo(items) => {
                for item in items {
                    match item {
                        rt::LinkInfo::Kind(rt::InfoKind::MacVlan) => is_macvlan = true,
                        rt::LinkInfo::Data(InfoData::MacVlan(data)) => {
                            for d in data {
                                if let InfoMacVlan::Mode(mode) = d {
                                    info.mode = MacvlanMode::from_kernel(*mode);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    is_macvlan.then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::LinkMessageBuilder;

    #[test]
    fn modes_round_trip_through_their_names_and_the_kernel_values() {
        for mode in [
            MacvlanMode::Bridge,
            MacvlanMode::Private,
            MacvlanMode::Vepa,
            MacvlanMode::Passthru,
            MacvlanMode::Source,
        ] {
            assert_eq!(mode.as_str().parse::<MacvlanMode>().unwrap(), mode);
            assert_eq!(MacvlanMode::from_kernel(mode.to_kernel()), Some(mode));
        }
        assert!("passthrough".parse::<MacvlanMode>().is_err());
        assert_eq!(MacvlanMode::default(), MacvlanMode::Bridge);
    }

    #[test]
    fn a_macvlan_message_yields_its_mode_and_parent() {
        let message = LinkMessageBuilder::<LinkMacVlan>::new("m0")
            .link(7)
            .mode(MacVlanMode::Private)
            .build();
        let info = macvlan_info_of(&message).expect("a macvlan");
        assert_eq!(info.mode, Some(MacvlanMode::Private));
        assert_eq!(info.parent_index, Some(7));
        let veth = LinkUnspec::new_with_name("v0").build();
        assert_eq!(macvlan_info_of(&veth), None);
    }
}
