//! Address blocks: the overlay subnet cut into blocks of `blockSize`; each host hands out addresses only
//! from blocks it claimed, so two hosts never give out the same address as long as their claims differ.
//! A new block is proposed to every live member through tetherd and used once all agreed (its claim is
//! then confirmed); without tetherd or a majority it is used unconfirmed. A conflict goes to the confirmed
//! claim, then the unconfirmed one (its addresses may be in use), then the pending proposal; within a kind
//! to the earlier claim, ties to the lower host address, on every host alike.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

use super::claims::{Claim, ClaimState, PeerClaim};
use crate::ipam::{AddressRange, IpamConfig, IpamError, RangeSet};

/// Every block of `subnet` of prefix `block_prefix`, in address order.
pub fn blocks(subnet: Ipv4Network, block_prefix: u8) -> impl Iterator<Item = Ipv4Network> {
    let size = 1u64 << (32 - block_prefix);
    let count = 1u64 << (block_prefix - subnet.prefix());
    let base = u64::from(u32::from(subnet.network()));
    (0..count).map(move |i| {
        Ipv4Network::new(Ipv4Addr::from((base + i * size) as u32), block_prefix)
            .expect("prefix checked by the config")
    })
}

/// FNV-1a, written out so every host and every release computes the same start block.
fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The block a host claims next: the first one not `taken`, searching from a start derived from the host's
/// name so that hosts joining at once rarely pick the same block. `None` when every block is taken.
pub fn next_free_block(
    subnet: Ipv4Network,
    block_prefix: u8,
    host: &str,
    taken: &BTreeSet<Ipv4Network>,
) -> Option<Ipv4Network> {
    let all: Vec<Ipv4Network> = blocks(subnet, block_prefix).collect();
    let start = (stable_hash(host) % all.len() as u64) as usize;
    (0..all.len())
        .map(|i| all[(start + i) % all.len()])
        .find(|b| !taken.contains(b))
}

/// The order of claims of one block: lower keeps it. The same on every host, whatever order the claims
/// arrived in.
fn rank(state: ClaimState, claimed_at_ms: u64, host: IpAddr) -> (ClaimState, u64, IpAddr) {
    (state, claimed_at_ms, host)
}

/// Whether this host's claim keeps a block a peer claimed too.
pub fn wins(mine: &Claim, my_host: IpAddr, theirs: &PeerClaim) -> bool {
    rank(mine.state, mine.claimed_at_ms, my_host)
        < rank(theirs.state, theirs.claimed_at_ms, theirs.host)
}

/// The answer to a peer's proposal of a block this host may claim too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalVerdict {
    /// No claim here stands in the way.
    Accept,
    /// This host's pending claim loses: it is given up, then the proposal is accepted.
    AcceptDroppingMine,
    /// This host's claim of the block outranks the proposal; the proposer must pick another block.
    Reject,
}

/// The settle rule for a proposal (a pending or unconfirmed claim asking to be confirmed) against this
/// host's own claim of the same block, if any. Both proposers of one block apply it to the other's
/// proposal, so at most one of them accepts: the one whose claim ranks lower.
pub fn judge_proposal(
    mine: Option<&Claim>,
    my_host: IpAddr,
    proposal: &PeerClaim,
) -> ProposalVerdict {
    match mine {
        None => ProposalVerdict::Accept,
        // A lost claim no longer hands out addresses and is not published.
        Some(c) if c.lost => ProposalVerdict::Accept,
        Some(c) if wins(c, my_host, proposal) => ProposalVerdict::Reject,
        Some(c) if c.state == ClaimState::Pending => ProposalVerdict::AcceptDroppingMine,
        // An unconfirmed block in use here that loses: the gossip settle marks it lost once the
        // proposer's confirmed claim arrives.
        Some(_) => ProposalVerdict::Accept,
    }
}

/// An IPAM config handing out the addresses of `claims` with the prefix of the whole `subnet` (every
/// container of the network is on-link). The subnet's first address stays out, as a gateway would.
pub fn ipam_config(
    subnet: Ipv4Network,
    claims: &[Claim],
    data_dir: &std::path::Path,
) -> Result<Option<IpamConfig>, IpamError> {
    let first_usable = u32::from(subnet.network()) + 1;
    let last_usable = u32::from(subnet.broadcast()) - 1;
    let mut ranges = Vec::new();
    for claim in claims.iter().filter(|c| c.usable()) {
        let start = u32::from(claim.block.network()).max(first_usable);
        let end = u32::from(claim.block.broadcast()).min(last_usable);
        // A block holding only the reserved first address has nothing to hand out.
        if end <= first_usable {
            continue;
        }
        ranges.push(AddressRange::new(
            IpNetwork::V4(subnet),
            Some(IpAddr::V4(start.into())),
            Some(IpAddr::V4(end.into())),
            Some(IpAddr::V4(first_usable.into())),
            "overlay block",
        )?);
    }
    if ranges.is_empty() {
        return Ok(None);
    }
    Ok(Some(IpamConfig {
        range_sets: vec![RangeSet::new(ranges, "overlay blocks")?],
        routes: Vec::new(),
        data_dir: data_dir.to_path_buf(),
        resolv_conf: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn a_subnet_is_cut_into_blocks_in_order() {
        let all: Vec<_> = blocks(net("10.0.0.0/24"), 26).collect();
        assert_eq!(
            all,
            vec![
                net("10.0.0.0/26"),
                net("10.0.0.64/26"),
                net("10.0.0.128/26"),
                net("10.0.0.192/26")
            ]
        );
        assert_eq!(blocks(net("10.0.0.0/24"), 24).count(), 1);
    }

    #[test]
    fn a_host_skips_taken_blocks_and_stops_when_all_are_taken() {
        let subnet = net("10.0.0.0/24");
        let mut taken = BTreeSet::new();
        for _ in 0..4 {
            let b = next_free_block(subnet, 26, "192.0.2.1", &taken).unwrap();
            assert!(taken.insert(b), "{b} handed out twice");
        }
        assert_eq!(next_free_block(subnet, 26, "192.0.2.1", &taken), None);
        // The same host starts at the same block every time.
        let empty = BTreeSet::new();
        assert_eq!(
            next_free_block(subnet, 26, "192.0.2.1", &empty),
            next_free_block(subnet, 26, "192.0.2.1", &empty)
        );
    }

    #[test]
    fn conflicts_go_to_the_earlier_claim_then_the_lower_host_on_both_sides() {
        let block = net("10.0.0.0/26");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let claim = |t| Claim {
            block,
            claimed_at_ms: t,
            lost: false,
            state: ClaimState::Unconfirmed,
        };
        let peer = |host, t| PeerClaim {
            block,
            host,
            claimed_at_ms: t,
            state: ClaimState::Unconfirmed,
        };
        assert!(wins(&claim(10), b, &peer(a, 20)));
        assert!(!wins(&claim(20), a, &peer(b, 10)));
        // A tie: both hosts agree that the lower address keeps it.
        assert!(wins(&claim(10), a, &peer(b, 10)));
        assert!(!wins(&claim(10), b, &peer(a, 10)));
    }

    #[test]
    fn a_confirmed_claim_outranks_an_unconfirmed_one_which_outranks_a_pending_one() {
        let block = net("10.0.0.0/26");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mine = |state, t| Claim {
            block,
            claimed_at_ms: t,
            lost: false,
            state,
        };
        let theirs = |state, t| PeerClaim {
            block,
            host: a,
            claimed_at_ms: t,
            state,
        };
        // A later confirmed claim beats an earlier unconfirmed one, from either side.
        assert!(wins(
            &mine(ClaimState::Confirmed, 20),
            b,
            &theirs(ClaimState::Unconfirmed, 10)
        ));
        assert!(!wins(
            &mine(ClaimState::Unconfirmed, 10),
            b,
            &theirs(ClaimState::Confirmed, 20)
        ));
        assert!(!wins(
            &mine(ClaimState::Pending, 1),
            b,
            &theirs(ClaimState::Unconfirmed, 20)
        ));
    }

    #[test]
    fn two_hosts_proposing_one_block_settle_it_the_same_way_on_both_sides() {
        let block = net("10.0.0.0/26");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let pending = |t| Claim {
            block,
            claimed_at_ms: t,
            lost: false,
            state: ClaimState::Pending,
        };
        let proposal = |host, t| PeerClaim {
            block,
            host,
            claimed_at_ms: t,
            state: ClaimState::Pending,
        };
        // Every order of claim times, ties included: exactly one side accepts the other's proposal.
        for (ta, tb) in [(10, 20), (20, 10), (10, 10)] {
            let at_a = judge_proposal(Some(&pending(ta)), a, &proposal(b, tb));
            let at_b = judge_proposal(Some(&pending(tb)), b, &proposal(a, ta));
            let accepts = |v| v != ProposalVerdict::Reject;
            assert!(
                accepts(at_a) != accepts(at_b),
                "times {ta}/{tb}: a says {at_a:?}, b says {at_b:?}"
            );
            // The side that accepts gives its own pending claim up first.
            for v in [at_a, at_b] {
                assert_ne!(v, ProposalVerdict::Accept);
            }
        }
        // The winner: earlier claim, then the lower address.
        assert_eq!(
            judge_proposal(Some(&pending(10)), a, &proposal(b, 10)),
            ProposalVerdict::Reject
        );
        assert_eq!(
            judge_proposal(Some(&pending(20)), a, &proposal(b, 10)),
            ProposalVerdict::AcceptDroppingMine
        );
        // A confirmed claim or an unconfirmed one in use is never given up to a proposal.
        for state in [ClaimState::Confirmed, ClaimState::Unconfirmed] {
            let held = Claim {
                state,
                ..pending(99)
            };
            assert_eq!(
                judge_proposal(Some(&held), b, &proposal(a, 1)),
                ProposalVerdict::Reject
            );
        }
        // No claim here, or a lost one: nothing stands in the way.
        assert_eq!(
            judge_proposal(None, b, &proposal(a, 1)),
            ProposalVerdict::Accept
        );
        let lost = Claim {
            lost: true,
            state: ClaimState::Unconfirmed,
            ..pending(1)
        };
        assert_eq!(
            judge_proposal(Some(&lost), b, &proposal(a, 5)),
            ProposalVerdict::Accept
        );
        // An unconfirmed proposal beats a pending claim here even when the pending one is older.
        let unconfirmed = PeerClaim {
            state: ClaimState::Unconfirmed,
            ..proposal(a, 50)
        };
        assert_eq!(
            judge_proposal(Some(&pending(1)), b, &unconfirmed),
            ProposalVerdict::AcceptDroppingMine
        );
    }

    #[test]
    fn the_ipam_config_hands_out_block_addresses_with_the_subnet_prefix() {
        let subnet = net("10.0.0.0/24");
        let claims = [Claim {
            block: net("10.0.0.0/26"),
            claimed_at_ms: 1,
            lost: false,
            state: ClaimState::Confirmed,
        }];
        let conf = ipam_config(subnet, &claims, std::path::Path::new("/tmp"))
            .unwrap()
            .unwrap();
        let range = &conf.range_sets[0].ranges()[0];
        assert_eq!(range.subnet().prefix(), 24);
        assert_eq!(range.start().to_string(), "10.0.0.1");
        assert_eq!(range.end().to_string(), "10.0.0.63");
        let lost = [Claim {
            lost: true,
            ..claims[0]
        }];
        assert!(
            ipam_config(subnet, &lost, std::path::Path::new("/tmp"))
                .unwrap()
                .is_none(),
            "no address comes from a lost block"
        );
        let pending = [Claim {
            state: ClaimState::Pending,
            ..claims[0]
        }];
        assert!(
            ipam_config(subnet, &pending, std::path::Path::new("/tmp"))
                .unwrap()
                .is_none(),
            "no address comes from a block still being agreed"
        );
        assert!(ipam_config(subnet, &[], std::path::Path::new("/tmp"))
            .unwrap()
            .is_none());
    }
}
