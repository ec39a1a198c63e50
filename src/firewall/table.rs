//! Names of the objects shared by all networks in tether's one table.

pub const FAMILY: &str = "inet";
pub const NAME: &str = "tether";
pub const FORWARD_CHAIN: &str = "forward";
pub const POSTROUTING_CHAIN: &str = "postrouting";
/// `iifname` -> jump to the network's forward chain.
pub const FORWARD_IN_MAP: &str = "fwd_in";
/// `oifname` -> jump to the network's forward chain.
pub const FORWARD_OUT_MAP: &str = "fwd_out";
/// Container IPv4 address -> jump to its network's NAT chain.
pub const NAT_V4_MAP: &str = "nat4";
/// Container IPv6 address -> jump to its network's NAT chain.
pub const NAT_V6_MAP: &str = "nat6";
