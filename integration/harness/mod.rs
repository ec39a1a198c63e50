//! Hermetic harness for the integration tests and the bench: every test makes its own "host" network
//! namespace, container namespaces owned by it and a scratch directory for state, run and IPAM data,
//! runs the plugin binaries inside the host namespace exactly as a runtime would (env + stdin JSON),
//! reads kernel state back through `ip -j` and `nft -j`, and tears everything down on drop, panic or not.
//!
//! Included by each test file with `#[path = "harness/mod.rs"] mod harness;`; each file uses a subset,
//! hence the dead_code allowance.
#![allow(dead_code, unused_imports)]

pub mod binaries;
pub mod busybox_rootfs;
pub mod cni_result;
pub mod container_dns_server;
pub mod containerd;
pub mod dns_upstream;
pub mod docker_forward_drop;
pub mod dockerd;
pub mod drain;
pub mod etcd;
pub mod hook_host;
pub mod host;
pub mod netns;
pub mod network_conf;
pub mod nft;
pub mod nft_trap;
pub mod oci_bundle;
pub mod oci_runtime;
pub mod overlay_cluster;
pub mod plugin;
pub mod podman;
pub mod replica;
pub mod scratch_dir;
pub mod spec_versions;
pub mod store;
pub mod switch_segment;
pub mod tcp;
pub mod tether_cli;

pub use host::{HostNs, Outside};
pub use netns::NetNs;
pub use plugin::{PluginCall, PluginOutput};
