//! Address blocks: the overlay subnet cut into blocks of `blockSize`; each host hands out addresses only
//! from blocks it claimed, so two hosts never give out the same address as long as their claims differ.
//! A new block is proposed to every live member through tetherd and used once all agreed (its claim is
//! then confirmed); without tetherd or a majority it is used unconfirmed. A conflict goes to the confirmed
//! claim, then the unconfirmed one (its addresses may be in use), then the pending proposal; within a kind
//! to the earlier claim, ties to the lower host address, on every host alike.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::claims::{Claim, ClaimState, PeerClaim};
use super::pool::{block_addresses, to_number, Pool};
use crate::ipam::{AddressRange, IpamConfig, IpamError, RangeSet};

/// The `index`th block of `pool` (in address order).
fn nth_block(pool: Pool, index: u128) -> IpNetwork {
    let base = to_number(pool.subnet.network());
    let at = base + index * pool.block_addresses();
    match pool.subnet {
        IpNetwork::V4(_) => IpNetwork::V4(
            Ipv4Network::new(Ipv4Addr::from(at as u32), pool.block_prefix)
                .expect("prefix checked by the config"),
        ),
        IpNetwork::V6(_) => IpNetwork::V6(
            Ipv6Network::new(Ipv6Addr::from(at), pool.block_prefix)
                .expect("prefix checked by the config"),
        ),
    }
}

/// How many blocks `pool` has (an IPv6 /64 has 2^58 of /122: never listed, only counted).
fn block_count(pool: Pool) -> u128 {
    1u128
        .checked_shl(u32::from(pool.block_prefix - pool.subnet.prefix()))
        .unwrap_or(u128::MAX)
}

/// Every block of `pool`, in address order.
pub fn blocks(pool: Pool) -> impl Iterator<Item = IpNetwork> {
    (0..block_count(pool)).map(move |i| nth_block(pool, i))
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
/// name so that hosts joining at once rarely pick the same block. `None` when every block is taken. Walks
/// at most `taken.len() + 1` blocks, so a huge IPv6 subnet costs no more than a small one.
pub fn next_free_block(pool: Pool, host: &str, taken: &BTreeSet<IpNetwork>) -> Option<IpNetwork> {
    let count = block_count(pool);
    let start = u128::from(stable_hash(host)) % count;
    let tries = (taken.len() as u128 + 1).min(count);
    (0..tries)
        .map(|i| nth_block(pool, (start + i) % count))
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

/// An IPAM config handing out the addresses of `claims` of `pool`'s family with the prefix of the whole
/// subnet (every container of the network is on-link). The subnet's own address and the first one after it
/// stay out (as a gateway's would, in both families), and IPv4's broadcast address. `slot`: the pool's
/// index in the network's pools, where its round-robin position is kept in the network's one lease store
/// (each family keeps its own, as host-local's range sets do).
pub fn ipam_config(
    (pool, slot): (Pool, usize),
    claims: &[Claim],
    data_dir: &std::path::Path,
) -> Result<Option<IpamConfig>, IpamError> {
    let first = to_number(pool.subnet.network());
    let first_usable = first + 1;
    let last = first + (block_addresses(pool.subnet, pool.subnet.prefix()) - 1);
    let last_usable = if pool.subnet.is_ipv4() {
        last - 1
    } else {
        last
    };
    let address = |n: u128| match pool.subnet {
        IpNetwork::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpNetwork::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    };
    let mut ranges = Vec::new();
    for claim in claims
        .iter()
        .filter(|c| c.usable() && pool.holds_block(&c.block))
    {
        let block_start = to_number(claim.block.network());
        let start = block_start.max(first_usable);
        let end = (block_start + (pool.block_addresses() - 1)).min(last_usable);
        // A block holding only the reserved first address has nothing to hand out.
        if end <= first_usable {
            continue;
        }
        ranges.push(AddressRange::new(
            pool.subnet,
            Some(address(start)),
            Some(address(end)),
            Some(address(first_usable)),
            "overlay block",
        )?);
    }
    if ranges.is_empty() {
        return Ok(None);
    }
    Ok(Some(IpamConfig {
        range_sets: vec![RangeSet::new(ranges, "overlay blocks")?.in_round_robin_slot(slot)],
        routes: Vec::new(),
        data_dir: data_dir.to_path_buf(),
        resolv_conf: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn pool(s: &str, block_prefix: u8) -> Pool {
        Pool {
            subnet: net(s),
            block_prefix,
        }
    }

    #[test]
    fn a_subnet_is_cut_into_blocks_in_order() {
        let all: Vec<_> = blocks(pool("10.0.0.0/24", 26)).collect();
        assert_eq!(
            all,
            vec![
                net("10.0.0.0/26"),
                net("10.0.0.64/26"),
                net("10.0.0.128/26"),
                net("10.0.0.192/26")
            ]
        );
        assert_eq!(blocks(pool("10.0.0.0/24", 24)).count(), 1);
    }

    #[test]
    fn a_host_skips_taken_blocks_and_stops_when_all_are_taken() {
        let subnet = pool("10.0.0.0/24", 26);
        let mut taken = BTreeSet::new();
        for _ in 0..4 {
            let b = next_free_block(subnet, "192.0.2.1", &taken).unwrap();
            assert!(taken.insert(b), "{b} handed out twice");
        }
        assert_eq!(next_free_block(subnet, "192.0.2.1", &taken), None);
        // The same host starts at the same block every time.
        let empty = BTreeSet::new();
        assert_eq!(
            next_free_block(subnet, "192.0.2.1", &empty),
            next_free_block(subnet, "192.0.2.1", &empty)
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
        let subnet = pool("10.0.0.0/24", 26);
        let claims = [Claim {
            block: net("10.0.0.0/26"),
            claimed_at_ms: 1,
            lost: false,
            state: ClaimState::Confirmed,
        }];
        let conf = ipam_config((subnet, 0), &claims, std::path::Path::new("/tmp"))
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
            ipam_config((subnet, 0), &lost, std::path::Path::new("/tmp"))
                .unwrap()
                .is_none(),
            "no address comes from a lost block"
        );
        let pending = [Claim {
            state: ClaimState::Pending,
            ..claims[0]
        }];
        assert!(
            ipam_config((subnet, 0), &pending, std::path::Path::new("/tmp"))
                .unwrap()
                .is_none(),
            "no address comes from a block still being agreed"
        );
        assert!(ipam_config((subnet, 0), &[], std::path::Path::new("/tmp"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn ipv6_blocks_are_found_without_listing_a_huge_subnet_and_hand_out_only_their_family() {
        let v6 = pool("fd00:10::/64", 122);
        assert_eq!(v6.block_addresses(), 64);
        let mut taken = BTreeSet::new();
        for _ in 0..3 {
            let b = next_free_block(v6, "192.0.2.1", &taken).unwrap();
            assert_eq!(b.prefix(), 122);
            assert!(v6.contains(b.network()), "{b} outside the subnet");
            assert!(taken.insert(b), "{b} handed out twice");
        }
        let small = pool("fd00:10::/120", 122);
        assert_eq!(blocks(small).count(), 4);
        let claims = [
            Claim {
                block: net("fd00:10::/122"),
                claimed_at_ms: 1,
                lost: false,
                state: ClaimState::Confirmed,
            },
            Claim {
                block: net("10.0.0.0/26"),
                claimed_at_ms: 1,
                lost: false,
                state: ClaimState::Confirmed,
            },
        ];
        let conf = ipam_config((small, 0), &claims, std::path::Path::new("/tmp"))
            .unwrap()
            .unwrap();
        let ranges = conf.range_sets[0].ranges();
        assert_eq!(
            ranges.len(),
            1,
            "the IPv4 block stays out of the IPv6 config"
        );
        assert_eq!(ranges[0].subnet().prefix(), 120);
        assert_eq!(ranges[0].start().to_string(), "fd00:10::1");
        assert_eq!(ranges[0].end().to_string(), "fd00:10::3f");
        let v4 = ipam_config(
            (pool("10.0.0.0/24", 26), 0),
            &claims,
            std::path::Path::new("/tmp"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(v4.range_sets[0].ranges()[0].end().to_string(), "10.0.0.63");
    }

    #[test]
    fn each_family_of_a_dual_stack_network_goes_round_robin_on_its_own() {
        use crate::ipam::{allocate, release, Store};
        let dir = crate::test_dir::TestDir::new("overlay-round-robin");
        let store = Store::open(&dir, "leases").unwrap();
        let claim = |block: &str| Claim {
            block: net(block),
            claimed_at_ms: 1,
            lost: false,
            state: ClaimState::Confirmed,
        };
        let claims = [claim("10.0.0.0/26"), claim("fd00:10::/122")];
        let pools = [pool("10.0.0.0/24", 26), pool("fd00:10::/64", 122)];
        // Each family through its own one-set config against the one store, as the plugin's ADD does.
        let add = |id: &str| -> Vec<String> {
            pools
                .iter()
                .enumerate()
                .map(|(slot, &p)| {
                    let conf = ipam_config((p, slot), &claims, dir.as_ref())
                        .unwrap()
                        .unwrap();
                    allocate(&conf, &store, id, "eth0", &[]).unwrap()[0]
                        .address
                        .ip()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(add("keep"), ["10.0.0.2", "fd00:10::2"]);
        assert_eq!(add("gone"), ["10.0.0.3", "fd00:10::3"]);
        release(&store, "gone", "eth0").unwrap();
        assert_eq!(
            add("next"),
            ["10.0.0.4", "fd00:10::4"],
            "a family started again from its lowest free address: the other family's position overwrote its own"
        );
    }
}
