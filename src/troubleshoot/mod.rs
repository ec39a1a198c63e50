//! Troubleshooting built in: `tether doctor` (is this host ready and healthy?), `tether inspect` (what tether
//! made for a container against what the kernel has now) and `tether trace` (where a flow between two
//! endpoints is decided). Everything here only reads: it changes no link, route, rule or file of the
//! namespace it runs in (kernel features are tried in a scratch namespace of its own).

mod bridge_port;
mod cluster;
mod container;
pub mod doctor;
mod finding;
mod host_firewall;
pub mod inspect;
mod kernel_features;
mod resolver_socket;
mod services;
pub mod trace;

pub use doctor::{Doctor, DoctorReport};
pub use finding::{Finding, Severity};
pub use inspect::{InspectError, InspectReport, Inspector};
pub use trace::{Target, TraceError, TraceReport, Tracer};
