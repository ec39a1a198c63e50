//! IPAM: a file-locked address store with host-local compatible configuration.
//!
//! The pure API ([`allocate`], [`release`], [`check`], [`gc`], [`free_counts`]) knows nothing of CNI;
//! `plugin` adapts it to the CNI plugin interface.

pub mod allocator;
pub mod attachment;
pub mod config;
pub mod error;
pub mod gc;
pub mod plugin;
pub mod range;
pub mod requested;
pub mod resolv_conf;
pub mod store;

pub use allocator::{allocate, check, free_counts, release, Allocation};
pub use attachment::AttachmentId;
pub use config::{IpamConfig, RouteSpec};
pub use error::IpamError;
pub use gc::gc;
pub use plugin::{add_in_process, check_in_process, del_in_process, TetherIpam};
pub use range::{AddressRange, RangeSet};
pub use store::Store;
