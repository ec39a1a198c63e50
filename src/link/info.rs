//! What callers learn about a link.

use rtnetlink::packet_route::link::{self as rt, LinkAttribute, LinkFlags, LinkMessage};

use crate::mac::MacAddr;

/// One network interface as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// `None` for links without an Ethernet address (loopback has an all-zero one, tunnels none).
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (IFF_UP), not "has carrier".
    pub up: bool,
    /// Index of the bridge (or other master) this link is attached to.
    pub master: Option<u32>,
    /// IFLA_INFO_KIND: "bridge", "veth", "macvlan", ...; `None` for physical devices and loopback.
    pub kind: Option<String>,
    /// Device group (IFLA_GROUP); tether's bridges are in TETHER_BRIDGE_GROUP.
    pub group: u32,
}

impl LinkInfo {
    pub(crate) fn from_message(message: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            up: message.header.flags.contains(LinkFlags::Up),
            master: None,
            kind: None,
            group: 0,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => info.name = name.clone(),
                LinkAttribute::Address(bytes) => info.mac = MacAddr::from_slice(bytes).ok(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::Group(group) => info.group = *group,
                LinkAttribute::Controller(master) if *master != 0 => info.master = Some(*master),
                LinkAttribute::LinkInfo(infos) => {
                    for item in infos {
                        if let rt::LinkInfo::Kind(kind) = item {
                            info.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }

    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}
