//! Why an attach, detach or gc failed.

use std::path::PathBuf;

use crate::cni::runtime::RuntimeError;
use crate::link::LinkError;
use crate::netns::NetnsError;

use super::port_spec::PortSpecError;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    #[error("container {container}: {source}")]
    Netns {
        container: String,
        #[source]
        source: NetnsError,
    },

    #[error("container {container}: listing the links of {}: {source}", netns.display())]
    Links {
        container: String,
        netns: PathBuf,
        #[source]
        source: Box<LinkError>,
    },

    #[error(transparent)]
    PortSpec(#[from] PortSpecError),

    #[error(
        "no free host port for {what}; free one or publish an explicit HOSTPORT:CONTAINERPORT"
    )]
    NoFreePort { what: String },

    #[error("container {container} is already attached to network {network} as {ifname}; detach it first (`tether detach --network {network} {container}`)")]
    AlreadyAttached {
        container: String,
        network: String,
        ifname: String,
    },

    #[error("container {container}: interface name {ifname:?} is taken in its namespace; pass another with --ifname")]
    IfnameTaken { container: String, ifname: String },

    #[error("container {container}: no free interface name eth0..eth99; pass one with --ifname")]
    NoFreeIfname { container: String },

    #[error("invalid interface name {ifname:?}: {reason}")]
    BadIfname {
        ifname: String,
        reason: &'static str,
    },

    #[error("invalid container id {id:?}: it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'")]
    BadContainerId { id: String },
}
