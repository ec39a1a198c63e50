//! Names of the objects shared by all networks in tether's one table.

use super::netlink::uapi::{NFPROTO_BRIDGE, NFPROTO_INET};

/// Both of tether's tables, `inet tether` and `bridge tether`, carry this name.
pub const NAME: &str = "tether";

/// The address family of one of tether's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `inet tether`: forwarding, NAT, published ports.
    Inet,
    /// `bridge tether`: L2 checks (macspoofchk); only the bridge family sees frames
    /// crossing a bridge.
    Bridge,
}

impl Family {
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }

    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => NFPROTO_INET,
            Family::Bridge => NFPROTO_BRIDGE,
        }
    }
}
pub const FORWARD_CHAIN: &str = "forward";
pub const POSTROUTING_CHAIN: &str = "postrouting";
/// `iifname` -> jump to the network's forward chain.
pub const FORWARD_IN_MAP: &str = "fwd_in";
/// `oifname` -> jump to the network's forward chain.
pub const FORWARD_OUT_MAP: &str = "fwd_out";
/// `iifname` (the network's bridge) -> jump to the network's NAT chain. One element per network: a
/// container's ADD adds no jump, so its commit does not make the kernel validate the whole table.
pub const NAT_IN_MAP: &str = "nat_in";
/// Container IPv4 address -> jump to its network's NAT chain: the dispatch of tethers before `nat_in`,
/// kept (and still emptied by DEL) for the containers they added.
pub const NAT_V4_MAP: &str = "nat4";
/// Container IPv6 address -> jump to its network's NAT chain (as `nat4`).
pub const NAT_V6_MAP: &str = "nat6";
/// The bridges of all tether networks (isolation between networks).
pub const BRIDGES_SET: &str = "tether_bridges";
/// `"br" . "br"` for each bridge: DNATed traffic that leaves through the interface it came
/// in on is hairpin traffic and gets masqueraded (published ports).
pub const HAIRPIN_SET: &str = "hairpin_ifs";
/// The mark bit carrying "hairpin" from forward to postrouting: bit 13, the reference
/// portmap plugin's default `markMasqBit`, which means the same thing there.
pub const HAIRPIN_MARK: u32 = 0x2000;
/// Published ports on any local address, by `l4proto . dport`.
pub const PORTS_ANY_V4_MAP: &str = "ports4_any";
pub const PORTS_ANY_V6_MAP: &str = "ports6_any";
/// Published ports bound to one host address, by `daddr . l4proto . dport`.
pub const PORTS_BOUND_V4_MAP: &str = "ports4_bound";
pub const PORTS_BOUND_V6_MAP: &str = "ports6_bound";
pub const PORTS_DNAT_CHAIN: &str = "ports_dnat";
pub const PORTS_PREROUTING_CHAIN: &str = "ports_prerouting";
pub const PORTS_OUTPUT_CHAIN: &str = "ports_output";
pub const PORTS_POSTROUTING_CHAIN: &str = "ports_postrouting";
/// Regular chain holding the published-port masquerade rules; its comment records the
/// portmap options they were made for.
pub const PORTS_MASQUERADE_CHAIN: &str = "ports_masq";
/// `bridge tether`: bridge ports under macspoofchk.
pub const SPOOFCHK_PORTS_SET: &str = "spoofchk_ports";
/// `bridge tether`: `port . mac` pairs allowed through watched ports.
pub const SPOOFCHK_ALLOWED_SET: &str = "spoofchk_ok";
pub const SPOOFCHK_CHAIN: &str = "prerouting";
