pub mod cni;
pub mod firewall;
