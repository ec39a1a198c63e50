//! The embedded DNS resolver (docs/design.md §1, §6): 127.0.0.11:53 inside every attached container's
//! namespace, answering the names of the networks that container is attached to and forwarding the rest
//! to the host's resolvers.

pub mod cache;
pub mod datagram_batch;
pub mod error;
pub mod forwarder;
pub mod index;
pub mod listener;
pub mod quota;
pub mod resolver;
pub mod service;
pub mod service_names;
pub mod settings;
pub mod upstreams;
pub mod wire;

pub use error::DnsError;
pub use service::DnsService;
