//! Static forwarding (FDB) entries of a VXLAN device and neighbour (ARP/NDP) entries, as the overlay's
//! control plane programs them: remote MAC -> remote VTEP, remote IP -> remote MAC.
//!
//! Every request here spells its flags out: `bridge fdb append` (NLM_F_APPEND, several destinations
//! for one MAC, the way all-zero flood entries are built) has no builder of its own.

use std::net::IpAddr;

use rtnetlink::packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{deleted, index_object, LinkError, MacAddr, Netlink, EXISTING};

/// A static FDB entry of a VXLAN device: frames for `mac` go to the VTEP `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub dst: IpAddr,
}

/// A permanent neighbour entry: `ip` is at `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighbourEntry {
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// How an FDB add treats an entry already there for the same MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdbWrite {
    /// Replace its destination (one VTEP per MAC: container MACs).
    Replace,
    /// Add one more destination (several VTEPs per MAC: head-end replication of flood entries).
    Append,
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

fn ip_of(address: &NeighbourAddress) -> Option<IpAddr> {
    match address {
        NeighbourAddress::Inet(a) => Some(IpAddr::V4(*a)),
        NeighbourAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        // netlink-packet-route parses the NDA_DST of AF_BRIDGE answers as raw bytes.
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn fdb_message(dev: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = dev;
    message.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry belongs to the VXLAN device's own table, not to a bridge it hangs on.
    message.header.flags = NeighbourFlags::Own;
    message.header.kind = RouteType::Unspec;
    message.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(entry.mac.octets().to_vec()),
        NeighbourAttribute::Destination(neighbour_address(entry.dst)),
    ];
    message
}

fn neighbour_message(dev: u32, ip: IpAddr, mac: Option<MacAddr>) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.ifindex = dev;
    message.header.state = NeighbourState::Permanent;
    message.header.kind = RouteType::Unspec;
    message
        .attributes
        .push(NeighbourAttribute::Destination(neighbour_address(ip)));
    if let Some(mac) = mac {
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    }
    message
}

impl Netlink {
    /// Sends one neighbour-table request and waits for its acknowledgement (or, for a dump, collects
    /// the answers).
    fn neighbour_request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        object: String,
    ) -> Result<Vec<NeighbourMessage>, LinkError> {
        let answers = self.request(message, flags, op, object)?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(m) => Some(m),
                _ => None,
            })
            .collect())
    }

    /// Adds a static FDB entry to VXLAN device `dev` (`bridge fdb replace|append MAC dev DEV dst VTEP
    /// self permanent`).
    pub fn fdb_add(&self, dev: u32, entry: &FdbEntry, write: FdbWrite) -> Result<(), LinkError> {
        let mode = match write {
            FdbWrite::Replace => NLM_F_REPLACE,
            FdbWrite::Append => NLM_F_APPEND,
        };
        self.neighbour_request(
            RouteNetlinkMessage::NewNeighbour(fdb_message(dev, entry)),
            NLM_F_CREATE | mode,
            "adding fdb entry",
            format!("{} dst {} on {}", entry.mac, entry.dst, index_object(dev)),
        )
        .map(drop)
    }

    /// Removes one FDB entry (one destination of a MAC); `Ok(false)` when it was not there.
    pub fn fdb_del(&self, dev: u32, entry: &FdbEntry) -> Result<bool, LinkError> {
        let result = self.neighbour_request(
            RouteNetlinkMessage::DelNeighbour(fdb_message(dev, entry)),
            EXISTING,
            "deleting fdb entry",
            format!("{} dst {} on {}", entry.mac, entry.dst, index_object(dev)),
        );
        deleted(result)
    }

    /// The FDB entries of device `dev` that have a remote destination (the VXLAN device's own table;
    /// the entries a bridge learned are left out).
    pub fn fdb_entries(&self, dev: u32) -> Result<Vec<FdbEntry>, LinkError> {
        let mut filter = NeighbourMessage::default();
        filter.header.family = AddressFamily::Bridge;
        let answers = self.neighbour_request(
            RouteNetlinkMessage::GetNeighbour(filter),
            NLM_F_DUMP,
            "listing fdb entries of",
            index_object(dev),
        )?;
        Ok(answers
            .iter()
            .filter(|m| m.header.ifindex == dev && m.header.flags.contains(NeighbourFlags::Own))
            .filter_map(|m| {
                let mut mac = None;
                let mut dst = None;
                for attribute in &m.attributes {
                    match attribute {
                        NeighbourAttribute::LinkLayerAddress(bytes) => {
                            mac = MacAddr::from_slice(bytes).ok()
                        }
                        NeighbourAttribute::Destination(address) => dst = ip_of(address),
                        _ => {}
                    }
                }
                Some(FdbEntry {
                    mac: mac?,
                    dst: dst?,
                })
            })
            .collect())
    }

    /// Sets a permanent neighbour entry `ip lladdr mac` on `dev`, replacing what was there.
    pub fn neighbour_replace(&self, dev: u32, entry: &NeighbourEntry) -> Result<(), LinkError> {
        self.neighbour_request(
            RouteNetlinkMessage::NewNeighbour(neighbour_message(dev, entry.ip, Some(entry.mac))),
            NLM_F_CREATE | NLM_F_REPLACE,
            "setting neighbour",
            format!("{} lladdr {} on {}", entry.ip, entry.mac, index_object(dev)),
        )
        .map(drop)
    }

    /// Removes the neighbour entry of `ip` on `dev`; `Ok(false)` when there was none.
    pub fn neighbour_del(&self, dev: u32, ip: IpAddr) -> Result<bool, LinkError> {
        let result = self.neighbour_request(
            RouteNetlinkMessage::DelNeighbour(neighbour_message(dev, ip, None)),
            EXISTING,
            "deleting neighbour",
            format!("{ip} on {}", index_object(dev)),
        );
        deleted(result)
    }

    /// The permanent neighbour entries of `dev` (IPv4 and IPv6); learned ones are the kernel's business.
    pub fn permanent_neighbours(&self, dev: u32) -> Result<Vec<NeighbourEntry>, LinkError> {
        let mut entries = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = NeighbourMessage::default();
            filter.header.family = family;
            let answers = self.neighbour_request(
                RouteNetlinkMessage::GetNeighbour(filter),
                NLM_F_DUMP,
                "listing neighbours of",
                index_object(dev),
            )?;
            for m in answers
                .iter()
                .filter(|m| m.header.ifindex == dev && m.header.state == NeighbourState::Permanent)
            {
                let mut ip = None;
                let mut mac = None;
                for attribute in &m.attributes {
                    match attribute {
                        NeighbourAttribute::Destination(address) => ip = ip_of(address),
                        NeighbourAttribute::LinkLayerAddress(bytes) => {
                            mac = MacAddr::from_slice(bytes).ok()
                        }
                        _ => {}
                    }
                }
                if let (Some(ip), Some(mac)) = (ip, mac) {
                    entries.push(NeighbourEntry { ip, mac });
                }
            }
        }
        Ok(entries)
    }
}
