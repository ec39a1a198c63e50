//! The overlay control plane that tetherd runs (docs/design.md §1): SWIM membership among the hosts (seeded by
//! static peers), endpoint records and address-block claims spread with versions and tombstones, periodic
//! push-pull full syncs, every datagram sealed with the cluster's pre-shared key, and a reconcile loop that
//! keeps each VXLAN device's FDB and neighbour entries equal to the records; new address blocks are agreed
//! by the live members before use (`agreement`). The plugins write the state directory and poke
//! `<run>/overlay.sock`; the control plane rescans on every poke and every period. Only an ADD taking a new
//! block waits for it, bounded, and goes on unconfirmed without an answer.

mod agent;
mod agreement;
mod config;
mod error;
mod local;
mod membership;
mod reconcile;
mod records;
pub mod remote_names;
mod seal;
mod service;
mod wire;

/// What the fuzz targets in fuzz/ drive: the decoder of an opened (authenticated) datagram and the
/// record table its records are merged into.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::records::{Record, RecordTable, MAX_VERSION};
    pub use super::wire::{decode, encode, Packet};
}

pub use agent::{ControlPlane, Status};
pub use config::{PeerConfig, DEFAULT_PORT};
pub use error::OverlayError;
pub use membership::PeerId;
pub use reconcile::{desired, plan, Desired, Plan};
pub use records::{Record, RecordKey, RecordTable, RecordValue};
pub use seal::{SealError, Sealer, KEY_LEN};
pub use service::OverlayService;
pub use wire::{encode, Packet};
