//! What can go wrong on the runtime side: finding a network's configuration, running its plugins, and
//! the result cache.

use std::io;
use std::path::PathBuf;

use crate::cni::env::Command;
use crate::cni::error::CniError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("network {name:?} not found in {}; create it with `tether network create {name}` or check TETHER_CONF_DIR", dir.display())]
    NetworkNotFound { name: String, dir: PathBuf },

    #[error("reading network configuration {}: {source}", path.display())]
    ReadConf {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("network configuration {} is invalid: {source}", path.display())]
    BadConf {
        path: PathBuf,
        #[source]
        source: Box<CniError>,
    },

    #[error("network {network:?}: plugin {plugin:?} failed on {command} for container {container}: {source}")]
    Plugin {
        network: String,
        plugin: String,
        command: Command,
        container: String,
        #[source]
        source: Box<CniError>,
    },

    #[error("network {network:?}: the chain's last plugin returned no result for ADD of container {container}; check the conflist's last plugin")]
    NoResult { network: String, container: String },

    #[error("network {network:?}: no cached result for container {container} interface {ifname}; it was never attached here (or the cache in {} was cleared)", dir.display())]
    NotCached {
        network: String,
        container: String,
        ifname: String,
        dir: PathBuf,
    },

    #[error("result cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("result cache entry {} is corrupt: {source}; delete it", path.display())]
    CacheCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl RuntimeError {
    /// The CNI error a plugin returned, when that is what failed.
    pub fn plugin_error(&self) -> Option<&CniError> {
        match self {
            RuntimeError::Plugin { source, .. } => Some(source),
            _ => None,
        }
    }
}
