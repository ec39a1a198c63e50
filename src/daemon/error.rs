//! What can stop tetherd from starting or running.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("reading tetherd config {path}: {source}; fix or remove the file")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tetherd config {path} is invalid: {source}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("creating run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("locking pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("binding control socket {path}: {source}; check that the run directory is writable")]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting a tetherd thread (namespace worker or namespace watch): {source}")]
    Worker {
        #[source]
        source: io::Error,
    },
    #[error("starting the async runtime: {source}")]
    Runtime {
        #[source]
        source: io::Error,
    },
    #[error("service {service} failed to start: {message}")]
    Service { service: String, message: String },
}
