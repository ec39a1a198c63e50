//! Agreement on new address blocks: this host's pending and unconfirmed claims are proposed to
//! every live member; a member answers after settling the proposal against its own claim of the block
//! under the claims lock (`judge_proposal`: a losing pending claim is given up first, so two proposers of
//! one block never both accept each other); a claim becomes confirmed once every member SWIM says is up
//! accepted it and a majority of the configured hosts is up. A rejected pending claim is given up, and the
//! waiting plugin picks another block.
//!
//! Guarantee: two hosts never both confirm a block as long as each sees the other as up while proposing.
//! A host SWIM declared down (crashed, or on the other side of a partition from a majority) is not asked.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::state::overlay::{
    claims_lock_name, judge_proposal, ClaimState, OverlayDir, PeerClaim, ProposalVerdict,
};
use crate::state::NetworkLock;

/// A pending proposal is sent again to members that did not answer after this long (UDP may drop it).
const RESEND_PENDING: Duration = Duration::from_millis(150);
/// An unconfirmed claim (already handing out addresses) is proposed again this often until confirmed.
const RESEND_UNCONFIRMED: Duration = Duration::from_secs(1);

/// Which claim a proposal or an answer is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ClaimRef {
    pub network: String,
    pub block: IpNetwork,
    pub claimed_at_ms: u64,
}

#[derive(Debug)]
struct Proposal {
    state: ClaimState,
    accepted_by: BTreeSet<IpAddr>,
    last_sent: Option<Instant>,
}

/// This host's proposals in flight.
#[derive(Debug, Default)]
pub struct Proposals {
    inflight: BTreeMap<ClaimRef, Proposal>,
}

/// What to send: a proposal of `claim` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: SocketAddr,
    pub claim: ClaimRef,
    pub unconfirmed: bool,
}

impl Proposals {
    /// Follows the claims files: claims wanting agreement start a proposal, ones that left the files (or
    /// got confirmed) end theirs.
    pub fn sync(&mut self, wanting: Vec<(ClaimRef, ClaimState)>) {
        let wanted: BTreeMap<ClaimRef, ClaimState> = wanting.into_iter().collect();
        self.inflight.retain(|k, _| wanted.contains_key(k));
        for (claim, state) in wanted {
            let p = self.inflight.entry(claim).or_insert(Proposal {
                state,
                accepted_by: BTreeSet::new(),
                last_sent: None,
            });
            p.state = state;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// The proposals due now, to the members (`up`: address and control-plane socket) that have not
    /// accepted yet.
    pub fn due(&mut self, up: &[(IpAddr, SocketAddr)], now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for (claim, p) in &mut self.inflight {
            let every = match p.state {
                ClaimState::Pending => RESEND_PENDING,
                _ => RESEND_UNCONFIRMED,
            };
            if p.last_sent.is_some_and(|at| now.duration_since(at) < every) {
                continue;
            }
            p.last_sent = Some(now);
            for (_, addr) in up.iter().filter(|(ip, _)| !p.accepted_by.contains(ip)) {
                out.push(Outgoing {
                    to: *addr,
                    claim: claim.clone(),
                    unconfirmed: p.state == ClaimState::Unconfirmed,
                });
            }
        }
        out
    }

    /// A member's answer. Returns the claim when it was a rejected pending one (to be given up).
    pub fn on_answer(
        &mut self,
        from: IpAddr,
        claim: &ClaimRef,
        accepted: bool,
    ) -> Option<ClaimRef> {
        let p = self.inflight.get_mut(claim)?;
        if accepted {
            p.accepted_by.insert(from);
            return None;
        }
        if p.state == ClaimState::Pending {
            self.inflight.remove(claim);
            return Some(claim.clone());
        }
        // An unconfirmed claim in use stays: the gossiped claims settle it (it is marked lost if the
        // other claim outranks it).
        None
    }

    /// The proposals every member in `up` accepted, while `quorum` holds; they leave the flight.
    pub fn agreed(&mut self, up: &BTreeSet<IpAddr>, quorum: bool) -> Vec<ClaimRef> {
        if !quorum {
            return Vec::new();
        }
        let done: Vec<ClaimRef> = self
            .inflight
            .iter()
            .filter(|(_, p)| up.is_subset(&p.accepted_by))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &done {
            self.inflight.remove(k);
        }
        done
    }
}

/// Whether a majority of the configured hosts (the static peers and this host) is up.
pub fn has_quorum(me: IpAddr, configured: &[SocketAddr], up: &BTreeSet<IpAddr>) -> bool {
    let others: BTreeSet<IpAddr> = configured
        .iter()
        .map(|a| a.ip())
        .filter(|ip| *ip != me)
        .collect();
    let seen = others.iter().filter(|ip| up.contains(ip)).count();
    (seen + 1) * 2 > others.len() + 1
}

/// Settles a peer's proposal against this host's claim of the block, under the claims lock, giving a
/// losing pending claim up first. Returns whether the proposal is accepted.
pub fn judge(
    state_dir: &Path,
    me: IpAddr,
    from: IpAddr,
    claim: &ClaimRef,
    unconfirmed: bool,
) -> bool {
    let dir = OverlayDir::new(state_dir, &claim.network);
    let Ok(_lock) = NetworkLock::exclusive(&claims_lock_name(&claim.network)) else {
        return false;
    };
    if !dir.path().exists() {
        // No claims of this network here: nothing stands in the way (a pending claim this host makes
        // later is settled when it is proposed to the proposer).
        return true;
    }
    let Ok(mut mine) = dir.claims() else {
        tracing::warn!(network = %claim.network, "unreadable overlay claims; rejecting a peer's proposal");
        return false;
    };
    let proposal = PeerClaim {
        block: claim.block,
        host: from,
        claimed_at_ms: claim.claimed_at_ms,
        state: if unconfirmed {
            ClaimState::Unconfirmed
        } else {
            ClaimState::Pending
        },
    };
    let held = mine.claims.iter().find(|c| c.block == claim.block).copied();
    match judge_proposal(held.as_ref(), me, &proposal) {
        ProposalVerdict::Accept => true,
        ProposalVerdict::Reject => false,
        ProposalVerdict::AcceptDroppingMine => {
            mine.claims.retain(|c| c.block != claim.block);
            if let Err(e) = dir.write_claims(&mine) {
                tracing::warn!(network = %claim.network, error = %e, "could not give up a pending claim; rejecting the peer's proposal");
                return false;
            }
            tracing::info!(network = %claim.network, block = %claim.block, other = %from,
                "a peer's proposal of the block outranks ours; ours is given up");
            true
        }
    }
}

/// Marks an agreed claim confirmed, if the claims file still holds it.
pub fn confirm(state_dir: &Path, claim: &ClaimRef) -> bool {
    rewrite(state_dir, claim, |claims| {
        for c in claims.iter_mut() {
            if c.block == claim.block
                && c.claimed_at_ms == claim.claimed_at_ms
                && !c.lost
                && c.state != ClaimState::Confirmed
            {
                c.state = ClaimState::Confirmed;
                tracing::info!(network = %claim.network, block = %c.block, "overlay address block confirmed by every live member");
                return true;
            }
        }
        false
    })
}

/// Gives up a pending claim a member rejected (a better claim of the block exists).
pub fn give_up(state_dir: &Path, claim: &ClaimRef) -> bool {
    rewrite(state_dir, claim, |claims| {
        let before = claims.len();
        claims.retain(|c| {
            !(c.block == claim.block
                && c.claimed_at_ms == claim.claimed_at_ms
                && c.state == ClaimState::Pending)
        });
        before != claims.len()
    })
}

fn rewrite(
    state_dir: &Path,
    claim: &ClaimRef,
    change: impl FnOnce(&mut Vec<crate::state::overlay::Claim>) -> bool,
) -> bool {
    let dir = OverlayDir::new(state_dir, &claim.network);
    let Ok(_lock) = NetworkLock::exclusive(&claims_lock_name(&claim.network)) else {
        return false;
    };
    if !dir.path().exists() {
        return false;
    }
    let Ok(mut claims) = dir.claims() else {
        return false;
    };
    if !change(&mut claims.claims) {
        return false;
    }
    match dir.write_claims(&claims) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(network = %claim.network, error = %e, "could not rewrite overlay claims");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> ClaimRef {
        ClaimRef {
            network: "n".into(),
            block: "10.0.0.0/26".parse().unwrap(),
            claimed_at_ms: 5,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn sock(last: u8) -> SocketAddr {
        SocketAddr::new(ip(last), 7946)
    }

    #[test]
    fn a_proposal_is_agreed_once_every_live_member_accepted_it_with_a_majority_up() {
        let mut p = Proposals::default();
        p.sync(vec![(claim(), ClaimState::Pending)]);
        let up = [(ip(2), sock(2)), (ip(3), sock(3))];
        let now = Instant::now();
        assert_eq!(p.due(&up, now).len(), 2);
        assert!(p.due(&up, now).is_empty(), "not resent at once");
        let live: BTreeSet<IpAddr> = [ip(2), ip(3)].into();
        p.on_answer(ip(2), &claim(), true);
        assert!(p.agreed(&live, true).is_empty(), "host 3 has not answered");
        let again = p.due(&up, now + RESEND_PENDING);
        assert_eq!(again.len(), 1, "only the silent member is asked again");
        assert_eq!(again[0].to, sock(3));
        p.on_answer(ip(3), &claim(), true);
        assert!(
            p.agreed(&live, false).is_empty(),
            "no majority, no agreement"
        );
        assert_eq!(p.agreed(&live, true), vec![claim()]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_member_declared_down_is_not_waited_for_and_a_rejection_ends_a_pending_proposal() {
        let mut p = Proposals::default();
        p.sync(vec![(claim(), ClaimState::Pending)]);
        p.on_answer(ip(2), &claim(), true);
        let only_2: BTreeSet<IpAddr> = [ip(2)].into();
        assert_eq!(p.agreed(&only_2, true), vec![claim()]);

        p.sync(vec![(claim(), ClaimState::Pending)]);
        assert_eq!(p.on_answer(ip(3), &claim(), false), Some(claim()));
        assert!(p.is_empty());

        p.sync(vec![(claim(), ClaimState::Unconfirmed)]);
        assert_eq!(
            p.on_answer(ip(3), &claim(), false),
            None,
            "an unconfirmed claim in use is left to the gossip settle"
        );
        p.sync(Vec::new());
        assert!(
            p.is_empty(),
            "a claim gone from the files ends its proposal"
        );
    }

    #[test]
    fn a_majority_of_the_configured_hosts_counts_this_host() {
        let me = ip(1);
        let peers = [sock(1), sock(2), sock(3)];
        assert!(has_quorum(me, &peers, &[ip(2)].into()));
        assert!(!has_quorum(me, &peers, &BTreeSet::new()));
        assert!(has_quorum(me, &[], &BTreeSet::new()), "a lone host");
        assert!(
            !has_quorum(me, &[sock(2)], &BTreeSet::new()),
            "two hosts need both"
        );
    }
}
