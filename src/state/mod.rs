//! What the plugins and tetherd share on disk: attachment records and their layout, per-network locks, the
//! overlay's claim and block model, and the VLAN sub-interface registry. Below the drivers and below
//! tetherd's services, so both read one model and neither imports the other.

pub mod attachment;
pub mod dir_scan;
pub mod driver_kind;
pub mod lock;
pub mod mesh;
pub mod mesh_counts;
pub mod overlay;
pub mod port_holder;
pub mod service;
pub mod vlan_registry;

pub use attachment::{AttachmentRecord, RecordDir, RemoteEndpoint};
pub use driver_kind::DriverKind;
pub use lock::{LockError, NetworkLock};
