//! IP addresses on links.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::AddressMessageBuilder;

use super::{deleted, index_object, LinkError, Netlink, CREATE, EXISTING};

impl Netlink {
    /// Adds `address` (address and prefix length) to link `index`.
    ///
    /// With `nodad`, an IPv6 address skips duplicate address detection (IFA_F_NODAD) and is usable
    /// at once; otherwise it stays "tentative" for one to two seconds and the container cannot
    /// bind it or send from it. Ignored for IPv4, which has no DAD.
    ///
    /// Adding the same address with the same prefix again is not an error.
    pub fn add_address(
        &self,
        index: u32,
        address: IpNetwork,
        nodad: bool,
    ) -> Result<(), LinkError> {
        if self.try_add_address(index, address, nodad)? {
            return Ok(());
        }
        // IPv6 refuses a second copy of an address whatever its prefix; only the same prefix is "already done".
        if self.addresses(index)?.contains(&address) {
            Ok(())
        } else {
            Err(LinkError::Exists {
                op: "adding address",
                object: format!("{address} on {}", index_object(index)),
            })
        }
    }

    /// Adds `address` like [`Netlink::add_address`] but answers the kernel's EEXIST with `Ok(false)` and
    /// no further question: listing addresses is a dump of the whole namespace (rtnetlink filters on
    /// our side), which grows with every container's host veth, so hot paths use this instead.
    pub fn try_add_address(
        &self,
        index: u32,
        address: IpNetwork,
        nodad: bool,
    ) -> Result<bool, LinkError> {
        let mut message = address_message(index, address);
        if nodad && address.is_ipv6() {
            // The header holds the first 8 flag bits and the IFA_FLAGS attribute all 32; the kernel
            // reads the attribute when present, iproute2 sets both.
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let object = format!("{address} on {}", index_object(index));
        match self.request(
            RouteNetlinkMessage::NewAddress(message),
            CREATE,
            "adding address",
            &object,
        ) {
            Ok(_) => Ok(true),
            Err(LinkError::Exists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The addresses of link `index` (IPv4 and IPv6, including link-local ones).
    pub fn addresses(&self, index: u32) -> Result<Vec<IpNetwork>, LinkError> {
        let answers = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "listing addresses of",
            index_object(index),
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => network_of(a),
                _ => None,
            })
            .collect())
    }

    /// Removes `address` from link `index`; `Ok(false)` when it was not there.
    pub fn del_address(&self, index: u32, address: IpNetwork) -> Result<bool, LinkError> {
        let object = format!("{address} on {}", index_object(index));
        deleted(self.request(
            RouteNetlinkMessage::DelAddress(address_message(index, address)),
            EXISTING,
            "deleting address",
            &object,
        ))
    }
}

fn address_message(index: u32, address: IpNetwork) -> AddressMessage {
    match address.ip() {
        IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, address.prefix())
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(ip, address.prefix())
            .build(),
    }
}

/// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links and
/// the same as IFA_LOCAL elsewhere. IPv6 sends only IFA_ADDRESS.
fn network_of(message: &AddressMessage) -> Option<IpNetwork> {
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNetwork::new(local.or(address)?, message.header.prefix_len).ok()
}
