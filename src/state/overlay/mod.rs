//! The overlay's claim and block model: what tether-overlay writes on each host and tetherd's control
//! plane reads and settles. Both sides import it from here, so neither imports the other.

mod blocks;
mod claims;
mod pool;
mod store_marker;

pub use blocks::{blocks, ipam_config, judge_proposal, next_free_block, wins, ProposalVerdict};
pub use claims::{
    local_networks, now_ms, Claim, ClaimState, HostClaims, NetworkFacts, OverlayDir, PeerClaim,
    LEASE_STORE,
};
pub use pool::{block_addresses, Pool};
pub use store_marker::{requires_agreement, write_store_kind};

/// The per-network lock that guards block claims, leases and the overlay state directory (the network's
/// own lock guards devices); the plugin and the control plane both take it.
pub fn claims_lock_name(network: &str) -> String {
    format!("overlay.{network}")
}
