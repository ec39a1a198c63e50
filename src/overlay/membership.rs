//! Who is up: SWIM membership through `foca`. A host is known by its control-plane address plus an
//! incarnation (its start time), so a restarted host is a newer identity of the same address and replaces
//! the old one everywhere (foca's address-conflict rule), and a host declared down by mistake renews itself.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};

use foca::{Identity, PostcardCodec};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::PeerConfig;

/// Largest SWIM payload; with the seal's 32 bytes and the packet tag it stays under a 1400-byte datagram.
pub const MAX_SWIM_PACKET: usize = 1300;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerId {
    pub addr: SocketAddr,
    pub incarnation: u64,
}

impl PeerId {
    /// How a static seed is addressed before we know its incarnation; any real identity wins over it.
    pub fn seed(addr: SocketAddr) -> PeerId {
        PeerId {
            addr,
            incarnation: 0,
        }
    }
}

impl Identity for PeerId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(PeerId {
            addr: self.addr,
            incarnation: self.incarnation + 1,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

pub type Swim = foca::Foca<PeerId, PostcardCodec, StdRng, foca::NoCustomBroadcast>;

/// SWIM tuned from the config: probe every `probe_period`, go indirect after a third of it, declare a
/// suspect down after `failure_timeout`.
pub fn swim_config(cfg: &PeerConfig) -> foca::Config {
    let size = NonZeroU32::new(cfg.expected_hosts.max(3)).expect("at least 3");
    let mut c = foca::Config::new_lan(size);
    c.probe_period = cfg.probe_period;
    c.probe_rtt = cfg.probe_period / 3;
    c.suspect_to_down_after = cfg.failure_timeout;
    c.max_packet_size = NonZeroUsize::new(MAX_SWIM_PACKET).expect("non-zero");
    c.notify_down_members = true;
    // foca's LAN default asks one member for its member list every 30 s; at 50 hosts that left hosts
    // unaware of each other for about a minute. Every 5 probe periods converges in seconds, for a
    // feed of one datagram.
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: cfg.probe_period * 5,
        num_members: NonZeroUsize::new(1).expect("non-zero"),
    });
    c
}

pub fn new_swim(me: PeerId, cfg: &PeerConfig) -> Swim {
    foca::Foca::new(
        me,
        swim_config(cfg),
        rand::make_rng::<StdRng>(),
        PostcardCodec,
    )
}
