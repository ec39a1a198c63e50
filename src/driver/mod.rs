//! Drivers turn a parsed network config into kernel state. Shared pieces: the config parsed once per call,
//! how IPAM is reached, the interface steps every ADD is made of (a port on a bridge, the container's
//! interface, the finished attachment), the DNS endpoint, and the rollback list every ADD uses.
//! What drivers share with tetherd (records, locks, the overlay claims) lives below, in `state`.

pub mod attachment;
pub mod bridge;
pub mod bridge_port;
pub mod call_config;
pub mod check;
pub mod container_iface;
pub mod container_inputs;
pub mod dns_endpoint;
pub mod interface_sysctls;
pub mod ipam_backend;
pub mod macvlan;
pub mod network_devices;
pub mod network_summary;
pub mod overlay;
pub mod portmap;
pub mod rollback;
pub mod teardown;
pub mod veth_name;
