//! Services: a VIP per service on a network, balanced over the backends (the network's containers
//! answering to the service's name) inside each client's namespace, with health probes and DNS names.
//! `registry` is what the CLI calls; `balancer` is the tetherd service that keeps the kernel in step.
//! The definitions live in `state::service`.

pub mod backends;
pub mod balancer;
pub mod drain;
pub mod health;
pub mod mesh;
pub mod mesh_return;
pub mod publish;
pub mod registry;

pub use balancer::BalancerService;
pub use registry::{CreateService, ServiceError, ServiceView, Services};
