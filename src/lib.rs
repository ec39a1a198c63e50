//! tether: container networking for Linux. The library holds everything real; `bins/` are thin mains.
//! Dependencies point downward: `cni` and `netns` know nothing of drivers; drivers use `link`, `ipam`,
//! `firewall`, `state` and `client`; tetherd's services use `state` and `client`, never a driver. No two
//! top-level modules import each other, directly or around a circle: `import_graph`'s test fails if they do
//! (docs/design.md §2).

pub mod checked_name;
pub mod cli;
pub mod client;
pub mod cni;
pub mod container_id;
pub mod daemon;
pub mod dns;
pub mod docker;
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod firewall;
pub mod hook;
pub mod ifname;
pub mod ipam;
pub mod kernel_fd;
pub mod link;
pub mod mac;
pub mod netns;
pub mod network;
pub mod overlay;
pub mod paths;
pub mod process_arena;
pub mod resolv_conf;
pub mod resolver_sockets;
pub mod service;
pub mod spare_files;
pub mod state;
pub mod state_file;
mod text_form;
pub mod transport;
pub mod troubleshoot;

#[cfg(test)]
mod function_length;
#[cfg(test)]
mod import_graph;
#[cfg(test)]
mod source_text;
#[cfg(test)]
mod test_dir;
