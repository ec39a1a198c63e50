//! Early rekey of one host pair without a leader (docs/encryption.md, "Early rekey"). Each direction has a
//! generation, owned by its sender, that goes into the key with the epoch. The sender's record in the
//! store says which generation it sends with (`send`) and which of the peer's it holds receive states
//! around (`ack`). A receiver holds the sender's previous, current and next generations; a sender whose
//! state passed its soft lifetime moves one generation on only once the peer's `ack` says it holds the
//! next one, so no packet meets a receiver without its state.

use super::plan::Generations;

/// What a peer's record says of one pair.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    pub send: Option<u64>,
    pub ack: Option<u64>,
}

/// One pair's generations as this host holds them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// The generation this host sends with; `None` until the peer's record is known: a host that starts
    /// again takes up the generation the peer acknowledges, which the peer receives.
    pub send: Option<u64>,
    /// The peer's sending generation, as last heard.
    pub heard: Option<u64>,
    /// The peer generation this host holds every receive state around.
    pub ack: Option<u64>,
}

impl Pair {
    /// Takes in the peer's record of the pair.
    pub fn hear(&mut self, peer: Option<Heard>) {
        let Some(peer) = peer else { return };
        if self.send.is_none() {
            self.send = Some(peer.ack.unwrap_or(0));
        }
        if peer.send.is_some() {
            self.heard = peer.send;
        }
    }

    pub fn generations(&self) -> Generations {
        Generations {
            send: self.send.unwrap_or(0),
            receive: self.heard.unwrap_or(0),
        }
    }

    /// Traffic may flow once this host knows what it sends with.
    pub fn ready(&self) -> bool {
        self.send.is_some()
    }

    /// The sending state passed its soft lifetime: moves one generation on if the peer (whose record says
    /// `peer_ack`) already receives it. Returns whether it moved.
    pub fn rekey(&mut self, peer_ack: Option<u64>) -> bool {
        match (self.send, peer_ack) {
            (Some(g), Some(ack)) if ack >= g => {
                self.send = Some(g + 1);
                true
            }
            _ => false,
        }
    }

    /// Every receive state around the heard generation exists now.
    pub fn received(&mut self) {
        self.ack = Some(self.generations().receive);
    }

    /// What this host publishes of the pair (the peer hears it).
    pub fn published(&self) -> Heard {
        Heard {
            send: self.send,
            ack: self.ack,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hosts exchanging records (each installing what it heard) until nothing changes.
    fn settle(a: &mut Pair, b: &mut Pair) {
        for _ in 0..3 {
            let (ra, rb) = (a.published(), b.published());
            a.hear(Some(rb));
            b.hear(Some(ra));
            a.received();
            b.received();
        }
    }

    #[test]
    fn a_new_pair_starts_at_zero_once_each_has_heard_the_other() {
        let (mut a, mut b) = (Pair::default(), Pair::default());
        assert!(!a.ready());
        a.hear(None);
        assert!(!a.ready(), "no record of the peer yet");
        settle(&mut a, &mut b);
        assert_eq!((a.send, a.heard, a.ack), (Some(0), Some(0), Some(0)));
        assert!(a.ready() && b.ready());
    }

    #[test]
    fn a_sender_moves_on_only_once_the_peer_receives_the_next_generation() {
        let (mut a, mut b) = (Pair::default(), Pair::default());
        settle(&mut a, &mut b);
        // b holds 0's neighbours: a may move to 1 at once.
        assert!(a.rekey(b.ack));
        assert_eq!(a.send, Some(1));
        // b has not heard of 1 yet: 2 would meet no state there.
        assert!(!a.rekey(b.ack));
        b.hear(Some(a.published()));
        assert!(!a.rekey(b.ack), "heard, but its states not in yet");
        b.received();
        assert_eq!(b.generations().receive, 1);
        assert!(a.rekey(b.ack));
        assert_eq!(a.send, Some(2));
    }

    #[test]
    fn a_restarted_host_takes_up_the_generation_its_peer_receives() {
        let (mut a, mut b) = (Pair::default(), Pair::default());
        settle(&mut a, &mut b);
        for _ in 0..4 {
            assert!(a.rekey(b.ack));
            settle(&mut a, &mut b);
        }
        assert_eq!(a.send, Some(4));
        let mut restarted = Pair::default();
        // Its own record is gone; b still holds 3, 4 and 5.
        restarted.hear(Some(b.published()));
        assert_eq!(restarted.send, Some(4));
        assert_eq!(restarted.heard, b.send);
        // b, hearing a record without a sending generation, keeps receiving around the last one heard.
        b.hear(Some(Heard {
            send: None,
            ack: None,
        }));
        assert_eq!(b.generations().receive, 4);
    }
}
