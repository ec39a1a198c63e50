//! Everything that makes `tether hook` fail. The runtime shows the message to the user and refuses to
//! start the container, so each one says what failed, for which container or file, and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `--help`: the caller prints [`USAGE`](super::usage::USAGE) and exits 0.
    #[error("{}", super::usage::USAGE)]
    HelpRequested,

    #[error("tether hook: {reason}\n{}", super::usage::USAGE)]
    Usage { reason: String },

    #[error("reading the OCI state from stdin failed: {source}")]
    ReadState {
        #[source]
        source: std::io::Error,
    },

    #[error("no OCI state on stdin; tether hook is run by an OCI runtime (createRuntime/poststop hook), which writes the container state to it")]
    EmptyState,

    #[error("the OCI state on stdin is not valid JSON with an \"id\": {source}")]
    DecodeState {
        #[source]
        source: serde_json::Error,
    },

    #[error("the OCI state on stdin is invalid: {reason}")]
    InvalidState { reason: String },

    #[error("container status {status:?} is not a stage tether hook knows; install it as a createRuntime and a poststop hook, or pass `attach` or `detach`")]
    UnknownStage { status: String },

    #[error("reading the bundle config {} failed: {source}", path.display())]
    ReadBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the bundle config {} is not valid JSON: {source}", path.display())]
    DecodeBundle {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid network list {networks:?}: {reason}")]
    InvalidNetworks { networks: String, reason: String },

    #[error("invalid {source_name} value {value:?}: {reason}")]
    InvalidSetting {
        source_name: String,
        value: String,
        reason: String,
    },

    #[error("container {id} has no running process in the OCI state; attach runs as a createRuntime hook, while the container's process exists")]
    NoPid { id: String },

    #[error("container {id}: opening its network namespace failed: {source}")]
    Netns {
        id: String,
        #[source]
        source: crate::netns::NetnsError,
    },

    #[error("container {id} shares the runtime's network namespace, so attaching would change the host's; give it its own (`{{\"type\": \"network\"}}` in linux.namespaces) or use the `host` network")]
    SharedNetns { id: String },

    #[error("container {id}: {source}")]
    Loopback {
        id: String,
        #[source]
        source: Box<crate::netns::NetnsError>,
    },

    #[error("writing {} failed: {reason}", path.display())]
    RootfsFile { path: PathBuf, reason: String },

    #[error("container {id}: attaching it to network {network} failed: {source}{rollback}")]
    Attach {
        id: String,
        network: String,
        /// What the rollback could not undo; empty when everything was detached again.
        rollback: String,
        #[source]
        source: Box<crate::endpoint::EndpointError>,
    },

    #[error("container {id}: detaching it from network {network} failed: {source}{others}")]
    Detach {
        id: String,
        network: String,
        others: String,
        #[source]
        source: Box<crate::endpoint::EndpointError>,
    },
}
