pub mod cni;
pub mod ipam;
