//! One address family of an overlay network: its subnet and the size of the blocks hosts claim in it.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// One address family of an overlay network: its subnet and the prefix of the blocks hosts claim in it.
/// A dual-stack network has two, claimed independently (an IPv4 block says nothing about IPv6 ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub subnet: IpNetwork,
    pub block_prefix: u8,
}

impl Pool {
    /// Whether `block` is of this pool's family.
    pub fn holds_block(&self, block: &IpNetwork) -> bool {
        block.is_ipv4() == self.subnet.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(ip)
    }

    /// Addresses in one block of this pool.
    pub fn block_addresses(&self) -> u128 {
        block_addresses(self.subnet, self.block_prefix)
    }
}

fn family_bits(net: IpNetwork) -> u8 {
    if net.is_ipv4() {
        32
    } else {
        128
    }
}

/// Addresses in a block of `prefix` of `net`'s family (saturating at /0 of IPv6).
pub fn block_addresses(net: IpNetwork, prefix: u8) -> u128 {
    1u128
        .checked_shl(u32::from(family_bits(net) - prefix))
        .unwrap_or(u128::MAX)
}

pub(super) fn to_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}
