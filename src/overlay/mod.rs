//! The overlay control plane that tetherd runs (docs/design.md §1): a loop (`agent`) that reads the
//! plugins' state directory and keeps each VXLAN device's FDB and neighbour entries equal to the records of
//! a cluster store (`store`, the seam): the embedded `gossip` store (SWIM membership seeded by static
//! peers, records spread with versions and tombstones, sealed datagrams, blocks agreed by the live
//! members, `agreement`) or the `etcd` store (liveness leases, blocks created by compare-and-swap,
//! watches). The plugins write the state directory and poke `<run>/overlay.sock`; the control plane
//! rescans on every poke and every period. Only an ADD taking a new block waits for the store, bounded:
//! with gossip it goes on unconfirmed without an answer, with etcd it fails with "try again later" (and
//! the control plane claims blocks ahead of need so that ADDs rarely wait).

mod agent;
mod agreement;
mod cluster_services;
mod config;
mod error;
pub mod etcd;
mod gossip;
mod local;
mod membership;
mod reconcile;
mod records;
pub mod remote_names;
mod seal;
mod service;
mod store;
mod wire;

/// What the fuzz targets in fuzz/ drive: the decoder of an opened (authenticated) datagram and the
/// record table its records are merged into.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::records::{Record, RecordTable, MAX_VERSION};
    pub use super::wire::{decode, encode, Packet};
}

pub use agent::{ClusterStatus, ControlPlane, EndpointView, NetworkView, Status};
pub use config::{PeerConfig, StoreConfig, DEFAULT_PORT};
pub use error::OverlayError;
pub use membership::PeerId;
pub use reconcile::{desired, plan, Desired, Plan};
pub use records::{Record, RecordKey, RecordTable, RecordValue};
pub use seal::{SealError, Sealer, KEY_LEN};
pub use service::OverlayService;
pub use store::{ClusterStore, Member, StoreKind, StoreStatus};
pub use wire::{encode, Packet};
