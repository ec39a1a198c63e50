//! Drivers turn a parsed network config into kernel state. Shared pieces: how IPAM is reached, what the
//! runtime tells a plugin about the container, the DNS endpoint, and the rollback list every ADD uses.
//! What drivers share with tetherd (records, locks, the overlay claims) lives below, in `state`.

pub mod bridge;
pub mod call_config;
pub mod check;
pub mod container_inputs;
pub mod dns_endpoint;
pub mod interface_sysctls;
pub mod ipam_backend;
pub mod macvlan;
pub mod overlay;
pub mod portmap;
pub mod rollback;
pub mod veth_name;
