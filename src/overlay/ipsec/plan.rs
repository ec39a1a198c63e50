//! What the kernel should hold for the encrypted networks of this host: for every peer on a port, one
//! outbound ESP state (this epoch, this host's generation for the pair) and inbound ones for the previous,
//! current and next epochs times the peer's previous, current and next generations, a policy each way
//! that requires ESP, and the catch-all that blocks the port's VXLAN to anyone else. Pure: `program`
//! writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::epoch::receiving;
use super::keys::{DataKey, Direction, GENERATION_SLOTS};
use crate::driver::overlay::encryption::{block_policy, reqid, PEER_PRIORITY};
use crate::link::xfrm::{
    EspState, Policy, PolicyAction, PolicyDir, Selector, StateId, ESP_AEAD, ESP_ICV_BITS,
};

pub const REPLAY_WINDOW: u32 = 128;

/// The generations of one host pair on a port as this host holds them (docs/encryption.md, "Early
/// rekey"): the one it sends with, and the peer's, around which it receives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Generations {
    pub send: u64,
    pub receive: u64,
}

/// Soft lifetimes of every state: past one the kernel reports an expiry and the sender rekeys the pair.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SoftLimits {
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
}

/// The generations a host receives in while its peer sends with `generation`: one either side, so the
/// sender may move on once the receiver has them, and packets of the last one still in flight arrive.
pub fn receiving_generations(generation: u64) -> BTreeSet<u64> {
    BTreeSet::from([generation.saturating_sub(1), generation, generation + 1])
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub states: BTreeMap<StateId, EspState>,
    pub policies: BTreeSet<Policy>,
    /// Which states each (port, peer) needs before its FDB entries may exist.
    pub needs: BTreeMap<(u16, IpAddr), Vec<StateId>>,
    /// The state each (port, peer) is sent with.
    pub sending: BTreeMap<(u16, IpAddr), StateId>,
    /// Every state each (port, peer) is received with: once all exist, this host may tell the peer it
    /// receives its generation.
    pub receiving: BTreeMap<(u16, IpAddr), Vec<StateId>>,
}

/// Everything for `me` with `peers` (and the pair's generations) per VXLAN port, in `epoch`. The peers of a
/// port with `me` are the hosts both ends of a direction assign SPIs over.
pub fn wanted(
    key: &DataKey,
    me: IpAddr,
    peers: &BTreeMap<u16, BTreeMap<IpAddr, Generations>>,
    epoch: u64,
    soft: SoftLimits,
) -> Wanted {
    let mut out = Wanted::default();
    // Every direction (in every generation slot) into `dst` from the hosts we know of, over every port
    // and epoch in play.
    let into = |dst: IpAddr| -> Vec<Direction> {
        let mut dirs = Vec::new();
        for (&port, members) in peers {
            let mut members: BTreeSet<IpAddr> = members.keys().copied().collect();
            members.insert(me);
            for &src in members.iter().filter(|&&s| s != dst) {
                for e in receiving(epoch) {
                    for generation in 0..GENERATION_SLOTS {
                        dirs.push(Direction {
                            src,
                            dst,
                            port,
                            epoch: e,
                            generation,
                        });
                    }
                }
            }
        }
        dirs
    };
    let spis_into_me = key.assign_spis(&into(me));
    for (&port, members) in peers {
        out.policies.insert(block_policy(me, port));
        for (&peer, gens) in members.iter().filter(|(&p, _)| p != me) {
            let spis_into_peer = key.assign_spis(&into(peer));
            let mut needs = Vec::new();
            let send = Direction {
                src: me,
                dst: peer,
                port,
                epoch,
                generation: gens.send,
            };
            let mut add = |d: Direction, spi: u32| {
                let state = EspState {
                    id: StateId { dst: d.dst, spi },
                    src: d.src,
                    port,
                    reqid: reqid(port),
                    algorithm: ESP_AEAD,
                    key: key.esp_key(&d),
                    icv_bits: ESP_ICV_BITS,
                    replay_window: REPLAY_WINDOW,
                    soft_bytes: soft.bytes,
                    soft_packets: soft.packets,
                };
                out.states.insert(state.id, state);
                StateId { dst: d.dst, spi }
            };
            let sending = add(send, spis_into_peer[&send.slot()]);
            needs.push(sending);
            let mut received = Vec::new();
            for e in receiving(epoch) {
                for generation in receiving_generations(gens.receive) {
                    let recv = Direction {
                        src: peer,
                        dst: me,
                        port,
                        epoch: e,
                        generation,
                    };
                    let id = add(recv, spis_into_me[&recv.slot()]);
                    if e == epoch && generation == gens.receive {
                        needs.push(id);
                    }
                    received.push(id);
                }
            }
            out.needs.insert((port, peer), needs);
            out.sending.insert((port, peer), sending);
            out.receiving.insert((port, peer), received);
            for (dir, src, dst) in [(PolicyDir::Out, me, peer), (PolicyDir::In, peer, me)] {
                out.policies.insert(Policy {
                    dir,
                    selector: Selector::udp(Some(src), Some(dst), port),
                    priority: PEER_PRIORITY,
                    action: PolicyAction::Protect { reqid: reqid(port) },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::overlay::encryption::is_ours;
    use crate::overlay::ipsec::keys::SECRET_LEN;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peers(port: u16, hosts: &[&str]) -> BTreeMap<u16, BTreeMap<IpAddr, Generations>> {
        let gens = Generations::default();
        BTreeMap::from([(port, hosts.iter().map(|h| (ip(h), gens)).collect())])
    }

    fn plan(me: &str, peers: &BTreeMap<u16, BTreeMap<IpAddr, Generations>>, epoch: u64) -> Wanted {
        let key = DataKey::new([1; SECRET_LEN]);
        wanted(&key, ip(me), peers, epoch, SoftLimits::default())
    }

    /// The state `from` sends to `to` with.
    fn sent<'a>(w: &'a Wanted, from: &str, to: &str) -> &'a EspState {
        w.states
            .values()
            .find(|s| s.src == ip(from) && s.id.dst == ip(to))
            .unwrap()
    }

    #[test]
    fn each_peer_gets_one_send_state_receive_states_per_epoch_and_generation_and_two_policies() {
        let w = plan("192.0.2.1", &peers(4789, &["192.0.2.2", "192.0.2.3"]), 10);
        // Generation 0: the peer's 0 and 1 in three epochs.
        assert_eq!(w.states.len(), 2 * (1 + 3 * 2));
        assert_eq!(w.policies.len(), 1 + 2 * 2);
        assert!(w.policies.contains(&block_policy(ip("192.0.2.1"), 4789)));
        let sending: Vec<_> = w
            .states
            .values()
            .filter(|s| s.src == ip("192.0.2.1"))
            .collect();
        assert_eq!(sending.len(), 2);
        assert!(w
            .states
            .values()
            .all(|s| s.reqid == reqid(4789) && is_ours(s.reqid)));
        assert_eq!(w.needs[&(4789, ip("192.0.2.2"))].len(), 2);
        let mut later = peers(4789, &["192.0.2.2"]);
        later
            .get_mut(&4789)
            .unwrap()
            .get_mut(&ip("192.0.2.2"))
            .unwrap()
            .receive = 7;
        let w = plan("192.0.2.1", &later, 10);
        assert_eq!(w.states.len(), 1 + 3 * 3, "generations 6, 7 and 8");
        assert_eq!(w.receiving[&(4789, ip("192.0.2.2"))].len(), 9);
    }

    #[test]
    fn both_ends_derive_the_same_state_for_each_direction() {
        let (a, b) = ("192.0.2.1", "192.0.2.2");
        let on_a = plan(a, &peers(4789, &[b, "192.0.2.3"]), 10);
        let on_b = plan(b, &peers(4789, &[a, "192.0.2.3"]), 10);
        // What A sends to B in epoch 10 is one of B's receive states, SPI and key alike.
        let a_to_b = sent(&on_a, a, b);
        let at_b = &on_b.states[&a_to_b.id];
        assert_eq!(at_b.src, ip(a));
        assert!(at_b.key == a_to_b.key);
        // And B's next-epoch sender is already received by A.
        let b_next = plan(b, &peers(4789, &[a, "192.0.2.3"]), 11);
        let b_to_a = sent(&b_next, b, a);
        assert!(on_a
            .states
            .get(&b_to_a.id)
            .is_some_and(|s| s.key == b_to_a.key));
    }

    #[test]
    fn a_rekeyed_sender_is_received_before_it_moves_and_its_last_generation_after() {
        let (a, b) = ("192.0.2.1", "192.0.2.2");
        let with = |me: &str, peer: &str, send, receive| {
            let mut p = peers(4789, &[peer, "192.0.2.3"]);
            *p.get_mut(&4789).unwrap().get_mut(&ip(peer)).unwrap() = Generations { send, receive };
            plan(me, &p, 10)
        };
        // B receives A's generation 4 (so also 3 and 5); A moves from 4 to 5 before B hears of it.
        let on_b = with(b, a, 0, 4);
        for send in [3, 4, 5] {
            let a_sends = with(a, b, send, 0);
            let s = sent(&a_sends, a, b);
            assert!(
                on_b.states.get(&s.id).is_some_and(|r| r.key == s.key),
                "generation {send}"
            );
        }
        // Generation 6 is not received yet: A may not move to it before B has heard of 5.
        let a6 = with(a, b, 6, 0);
        let s6 = sent(&a6, a, b);
        assert!(on_b.states.get(&s6.id).is_none_or(|r| r.key != s6.key));
        // Once B has, 6 is there under the SPI 3 had, with a key of its own.
        let on_b_later = with(b, a, 0, 5);
        assert!(on_b_later
            .states
            .get(&s6.id)
            .is_some_and(|r| r.key == s6.key));
        let s3 = sent(&with(a, b, 3, 0), a, b).clone();
        assert_eq!(s3.id, s6.id);
        assert!(s3.key != s6.key);
        assert!(on_b_later
            .states
            .get(&s3.id)
            .is_some_and(|r| r.key != s3.key));
    }

    #[test]
    fn soft_limits_go_on_every_state() {
        let key = DataKey::new([1; SECRET_LEN]);
        let soft = SoftLimits {
            bytes: None,
            packets: Some(64),
        };
        let w = wanted(&key, ip("192.0.2.1"), &peers(4789, &["192.0.2.2"]), 3, soft);
        assert!(w
            .states
            .values()
            .all(|s| s.soft_packets == Some(64) && s.soft_bytes.is_none()));
    }

    #[test]
    fn no_peer_means_only_the_block() {
        let w = plan("192.0.2.1", &peers(4790, &[]), 1);
        assert!(w.states.is_empty());
        assert_eq!(w.policies.len(), 1);
    }
}
