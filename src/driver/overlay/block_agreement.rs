//! The plugin's side of taking a new address block: the claim is written `pending`, tetherd's control
//! plane proposes it to every live member and marks it `confirmed` once they all agreed (or gives it up
//! when a better claim of the block exists), and the plugin waits for that, bounded. Without an answer in
//! time (tetherd down or slow, no majority of the configured hosts up) the block is used `unconfirmed`,
//! so ADD never depends on tetherd; tetherd keeps proposing it and settles a conflict when one appears.
//! With a store that decides every block (etcd, see `state::overlay::requires_agreement`), no answer in
//! time fails the ADD with "try again later" (code 11) instead; tetherd claims blocks ahead of need there,
//! so only an ADD that outran it (or a network's first ADD on the host) waits at all.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::client::notify::endpoint_changed;
use crate::client::poke::poke_control_plane;
use crate::error::Error;
use crate::state::overlay::{requires_agreement, ClaimState, OverlayDir};

/// How long an ADD waits for the members to agree on a new block before using it unconfirmed.
pub const AGREEMENT_WAIT: Duration = Duration::from_millis(2000);

/// With etcd the alternative to waiting is failing the ADD: long enough to ride out a member's failover
/// (a new session on the next member and, when the leader died, an election).
pub const STORE_AGREEMENT_WAIT: Duration = Duration::from_millis(5000);

/// How long this ADD waits for a new block's agreement.
pub fn agreement_wait() -> Duration {
    if requires_agreement(&crate::paths::state_dir()) {
        STORE_AGREEMENT_WAIT
    } else {
        AGREEMENT_WAIT
    }
}

/// How often the claims file is re-read while waiting.
const POLL: Duration = Duration::from_millis(10);

/// A poke is repeated this often, in case the control plane was busy settling another network.
const REPOKE: Duration = Duration::from_millis(250);

/// What became of a pending claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// Addresses may come from it (confirmed, or made unconfirmed by a concurrent ADD).
    Usable,
    /// Given up to a better claim of the block: pick another one.
    GivenUp,
    /// No control plane to ask, or no answer before the deadline.
    NoAnswer,
}

/// Waits (without the claims lock, which the control plane needs) until the pending claim of `block`
/// is settled, or `deadline`.
pub fn wait_for_agreement(
    dir: &OverlayDir,
    network: &str,
    block: IpNetwork,
    deadline: Instant,
) -> Agreement {
    // With a store that decides every block, a tetherd that exited idle is started to ask it.
    let reached = poke_control_plane()
        || (requires_agreement(&crate::paths::state_dir())
            && endpoint_changed(network)
            && poke_control_plane());
    if !reached {
        return Agreement::NoAnswer;
    }
    let mut last_poke = Instant::now();
    while Instant::now() < deadline {
        // The claims file is replaced by rename, so an unlocked read sees one whole version.
        let claim = dir
            .claims()
            .ok()
            .and_then(|c| c.claims.into_iter().find(|c| c.block == block));
        match claim {
            None => return Agreement::GivenUp,
            Some(c) if c.lost => return Agreement::GivenUp,
            Some(c) if c.state != ClaimState::Pending => return Agreement::Usable,
            Some(_) => {}
        }
        if last_poke.elapsed() >= REPOKE {
            poke_control_plane();
            last_poke = Instant::now();
        }
        std::thread::sleep(POLL);
    }
    Agreement::NoAnswer
}

/// The ADD's answer when the store could not confirm a new block in time.
pub fn no_agreement(network: &str, block: IpNetwork) -> Error {
    Error::try_later(format!(
        "overlay network {network} needs a new address block ({block}) on this host and the \
         cluster store did not confirm it in time"
    ))
    .with_details(
        "the store (etcd) is unreachable or tetherd is not running; containers in blocks this host \
         owns are unaffected. Retry the ADD once `tether cluster status` shows the store reachable",
    )
}

/// The key the start block is derived from: the config's `startBlockKey`, else the host's address.
pub fn start_key(configured: Option<&str>, vtep: IpAddr) -> String {
    configured.map_or_else(|| vtep.to_string(), str::to_string)
}
