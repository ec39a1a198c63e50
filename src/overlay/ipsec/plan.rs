//! What the kernel should hold for the encrypted networks of this host: for every peer on a port, one
//! outbound ESP state (this epoch) and three inbound ones (previous, current, next), a policy each way
//! that requires ESP, and the catch-all that blocks the port's VXLAN to anyone else. Pure: `program`
//! writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::epoch::receiving;
use super::keys::{DataKey, Direction};
use crate::driver::overlay::encryption::{block_policy, reqid, PEER_PRIORITY};
use crate::link::xfrm::{
    EspState, Policy, PolicyAction, PolicyDir, Selector, StateId, ESP_AEAD, ESP_ICV_BITS,
};

pub const REPLAY_WINDOW: u32 = 128;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub states: BTreeMap<StateId, EspState>,
    pub policies: BTreeSet<Policy>,
    /// Which states each (port, peer) needs before its FDB entries may exist.
    pub needs: BTreeMap<(u16, IpAddr), Vec<StateId>>,
}

/// Everything for `me` with `peers` per VXLAN port, in `epoch`. The peers of a port with `me` are the hosts
/// both ends of a direction assign SPIs over.
pub fn wanted(
    key: &DataKey,
    me: IpAddr,
    peers: &BTreeMap<u16, BTreeSet<IpAddr>>,
    epoch: u64,
) -> Wanted {
    let mut out = Wanted::default();
    // Every direction into `dst` from the hosts we know of, over every port and epoch in play.
    let into = |dst: IpAddr| -> Vec<Direction> {
        let mut dirs = Vec::new();
        for (&port, members) in peers {
            let mut members = members.clone();
            members.insert(me);
            for &src in members.iter().filter(|&&s| s != dst) {
                for e in receiving(epoch) {
                    dirs.push(Direction {
                        src,
                        dst,
                        port,
                        epoch: e,
                    });
                }
            }
        }
        dirs
    };
    let spis_into_me = key.assign_spis(&into(me));
    for (&port, members) in peers {
        out.policies.insert(block_policy(me, port));
        for &peer in members.iter().filter(|&&p| p != me) {
            let spis_into_peer = key.assign_spis(&into(peer));
            let mut needs = Vec::new();
            let send = Direction {
                src: me,
                dst: peer,
                port,
                epoch,
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
                    soft_bytes: None,
                    soft_packets: None,
                };
                out.states.insert(state.id, state);
                StateId { dst: d.dst, spi }
            };
            needs.push(add(send, spis_into_peer[&send]));
            for e in receiving(epoch) {
                let recv = Direction {
                    src: peer,
                    dst: me,
                    port,
                    epoch: e,
                };
                let id = add(recv, spis_into_me[&recv]);
                if e == epoch {
                    needs.push(id);
                }
            }
            out.needs.insert((port, peer), needs);
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

    fn peers(port: u16, hosts: &[&str]) -> BTreeMap<u16, BTreeSet<IpAddr>> {
        BTreeMap::from([(port, hosts.iter().map(|h| ip(h)).collect())])
    }

    #[test]
    fn each_peer_gets_one_send_state_three_receive_states_and_two_policies() {
        let key = DataKey::new([1; SECRET_LEN]);
        let w = wanted(
            &key,
            ip("192.0.2.1"),
            &peers(4789, &["192.0.2.2", "192.0.2.3"]),
            10,
        );
        assert_eq!(w.states.len(), 2 * 4);
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
    }

    #[test]
    fn both_ends_derive_the_same_state_for_each_direction() {
        let key = DataKey::new([1; SECRET_LEN]);
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        let on_a = wanted(&key, a, &peers(4789, &["192.0.2.2", "192.0.2.3"]), 10);
        let on_b = wanted(&key, b, &peers(4789, &["192.0.2.1", "192.0.2.3"]), 10);
        let _ = c;
        // What A sends to B in epoch 10 is one of B's receive states, SPI and key alike.
        let a_to_b = on_a
            .states
            .values()
            .find(|s| s.src == a && s.id.dst == b)
            .unwrap();
        let at_b = &on_b.states[&a_to_b.id];
        assert_eq!(at_b.src, a);
        assert!(at_b.key == a_to_b.key);
        // And B's next-epoch sender is already received by A.
        let b_next = wanted(&key, b, &peers(4789, &["192.0.2.1", "192.0.2.3"]), 11);
        let b_to_a = b_next
            .states
            .values()
            .find(|s| s.src == b && s.id.dst == a)
            .unwrap();
        assert!(on_a
            .states
            .get(&b_to_a.id)
            .is_some_and(|s| s.key == b_to_a.key));
    }

    #[test]
    fn no_peer_means_only_the_block() {
        let key = DataKey::new([1; SECRET_LEN]);
        let w = wanted(&key, ip("192.0.2.1"), &peers(4790, &[]), 1);
        assert!(w.states.is_empty());
        assert_eq!(w.policies.len(), 1);
    }
}
