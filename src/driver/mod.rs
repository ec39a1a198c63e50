//! Drivers turn a parsed network config into kernel state. Shared pieces: how IPAM is reached, the
//! attachment record, the per-network lock, and the rollback list every ADD uses.

pub mod bridge;
pub mod check;
pub mod container_inputs;
pub mod dns_endpoint;
pub mod interface_sysctls;
pub mod ipam_backend;
pub mod link_reaper;
pub mod macvlan;
pub mod network_lock;
pub mod overlay;
pub mod portmap;
pub mod record;
pub mod rollback;
pub mod veth_name;
