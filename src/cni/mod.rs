//! The CNI spec layer (spec 1.1.0, accepting 0.1.0 through 1.1.0): the
//! environment, configuration and conflists, results in every version,
//! error codes, the plugin entry point and the runtime side that executes
//! other plugins.

pub mod config;
pub mod conflist;
pub mod env;
pub mod error;
pub mod exec;
pub mod logging;
pub mod plugin;
pub mod result;
pub mod runtime;
pub mod runtime_config;
pub mod version;

pub use config::{Attachment, NetConf};
pub use conflist::ConfList;
pub use env::{Command, Env};
pub use error::{CniError, ErrorCode};
pub use exec::{delegate_ipam, exec_plugin, find_plugin, ExecRequest};
pub use plugin::{dispatch, run, Call, Plugin};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use runtime_config::{BandwidthSpec, PortMappingSpec, RuntimeConfig, RuntimeDns};
pub use version::{version_info_json, Version, SUPPORTED_VERSIONS};
