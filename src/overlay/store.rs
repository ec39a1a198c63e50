//! The seam between the control plane and the cluster store. The plane (`agent`) does what is the same
//! whatever keeps the cluster's state: it reads this host's state directory, hands the store this host's
//! own records and the claims that want agreement, and turns the store's view (who is up, every host's
//! records) into FDB/neighbour entries, peer claims and remote names. A store keeps membership and
//! liveness, the table of every host's records, and the agreement on address blocks:
//! `gossip` (SWIM among the hosts, the default) or `etcd` (an existing etcd cluster).
//!
//! Records are typed keys and values (`records`), so a later kind (service VIPs, encryption keys) is one
//! more variant that both stores carry without a change to the seam.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::agreement::ClaimRef;
use super::records::{RecordKey, RecordTable, RecordValue};
use crate::state::overlay::ClaimState;

/// What a store call changed, for the plane to act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Changes {
    /// Records or liveness changed: the kernel entries and remote names are due.
    pub kernel: bool,
    /// Claims of any host changed: peer claims are written again and conflicts settled.
    pub claims: bool,
    /// The claims files changed under the plane (a claim confirmed or given up): read them again.
    pub local: bool,
    /// Service records changed: the service files' copies are due.
    pub services: bool,
    /// A host's liveness changed: every record counts again (a full pass, not one per changed key).
    pub members: bool,
    /// A host's liveness changed and the store marked that host's records touched: only they count
    /// again (a full pass over every host's records per liveness change was O(records) per host, at
    /// every host); the member list and the services are due.
    pub liveness_touched: bool,
}

impl Changes {
    /// What a change of one other host's record makes due: an endpoint only the kernel entries and
    /// remote names, a claim only the peer claims (with a thousand hosts, doing both for every record
    /// rewrote every peer-claims file once per endpoint).
    pub fn touched_by(key: &RecordKey) -> Changes {
        match key {
            RecordKey::Endpoint { .. }
            | RecordKey::Generation { .. }
            | RecordKey::Rotation { .. } => Changes {
                kernel: true,
                ..Changes::default()
            },
            RecordKey::Claim { .. } => Changes {
                claims: true,
                ..Changes::default()
            },
            RecordKey::Service { .. } | RecordKey::MeshCounts { .. } => Changes {
                services: true,
                ..Changes::default()
            },
        }
    }

    pub fn merge(&mut self, other: Changes) {
        self.kernel |= other.kernel;
        self.claims |= other.claims;
        self.local |= other.local;
        self.services |= other.services;
        self.members |= other.members;
        self.liveness_touched |= other.liveness_touched;
    }

    /// A host came up or went down: its records enter or leave the kernel.
    pub fn liveness() -> Changes {
        Changes {
            kernel: true,
            members: true,
            ..Changes::default()
        }
    }

    /// Like [`Changes::liveness`] from a store that marked the host's records touched in its table.
    pub fn liveness_touched() -> Changes {
        Changes {
            kernel: true,
            liveness_touched: true,
            ..Changes::default()
        }
    }
}

/// Which store runs; also what the plugins read to know whether a block may be used unconfirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Gossip,
    Etcd,
}

/// One host the store knows, for `tether cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub host: IpAddr,
    pub up: bool,
}

/// The store's part of the control plane's status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// Whether the store can be written right now (gossip: always; etcd: the last call got through).
    pub reachable: bool,
    /// Wall-clock milliseconds of the last time this host's view was complete and current.
    pub last_sync_ms: u64,
    /// etcd: the revision the watch has seen up to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub datagrams_rejected: u64,
    /// etcd: the watch's events since tetherd started, by kind of key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_events: Option<WatchEvents>,
}

/// Watch events received, by kind of key (`<prefix>/hosts/`, `blocks/`, `records/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchEvents {
    pub hosts: u64,
    pub blocks: u64,
    pub records: u64,
}

/// A cluster store as the control plane drives it, all on the plane's thread.
pub trait ClusterStore: Send {
    fn kind(&self) -> StoreKind;

    /// A descriptor that becomes readable when the store has input for [`ClusterStore::step`].
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;

    /// When the store next needs a [`ClusterStore::step`] without input.
    fn next_due(&self) -> Option<Instant>;

    /// Takes in what arrived and does what is due (timers, proposals in flight).
    fn step(&mut self) -> Changes;

    /// This host's own records as the state directory has them now (endpoints, usable block claims).
    fn publish(&mut self, own: &BTreeMap<RecordKey, RecordValue>) -> Changes;

    /// This host's claims that want agreement (pending ones, and unconfirmed ones taken without it).
    fn propose(&mut self, claims: Vec<(ClaimRef, ClaimState)>);

    /// Every host's records, this host's own included.
    fn table(&self) -> &RecordTable;

    /// The table's keys changed since the last call (`RecordTable::take_touched`).
    fn take_touched(&mut self) -> BTreeSet<RecordKey>;

    /// Whether `host` is alive now; records of a host that is not are left out of the kernel.
    fn is_up(&self, host: IpAddr) -> bool;

    /// The other hosts the store knows, with their liveness.
    fn members(&self) -> Vec<Member>;

    /// Brings the view of every host's blocks up to date before it is shown (`cluster status`), waiting
    /// for the store if it must: a store that does not follow others' claims as they happen reads them.
    fn refresh_blocks(&mut self) -> Changes {
        Changes::default()
    }

    /// Drops `host`'s blocks and records from the store (it is gone for good). Refused while it is up.
    fn forget(&mut self, host: IpAddr) -> Result<usize, String>;

    /// Whether the control plane claims blocks ahead of need; a store that agrees on every block through
    /// an authority (etcd) never lets a block be used unconfirmed.
    fn claims_ahead(&self) -> bool;

    fn status(&self) -> StoreStatus;

    /// The plane is stopping: leave the cluster politely.
    fn leave(&mut self);
}
