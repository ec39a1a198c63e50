//! Why creating, reading or removing a network failed. Every variant is a refusal that wrote nothing,
//! or names the step that failed half-way.

use std::io;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::cni::runtime::RuntimeError;
use crate::endpoint::EndpointError;
use crate::ipam::IpamError;
use crate::link::LinkError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network name {name:?}: {reason}")]
    BadName { name: String, reason: String },

    #[error("network {name:?} already exists ({}); pick another name or remove it first", path.display())]
    Exists { name: String, path: PathBuf },

    #[error("unknown driver {driver:?}; use bridge, macvlan or overlay")]
    UnknownDriver { driver: String },

    #[error("option {key:?} is not known to the {driver} driver; known: {known}")]
    UnknownOption {
        driver: &'static str,
        key: String,
        known: &'static str,
    },

    #[error("option {key}={value:?}: {reason}")]
    BadOption {
        key: String,
        value: String,
        reason: String,
    },

    #[error("{what}")]
    BadAddressing { what: String },

    #[error("subnet {subnet} overlaps {other}; pick a subnet that overlaps no other network or host route")]
    Overlap { subnet: IpNetwork, other: String },

    #[error("no free address pool left (172.17-31.0.0/16 and 192.168.0-240.0/20 all overlap host routes or networks); pass --subnet")]
    PoolsExhausted,

    #[error("no free VXLAN id from 4096 up; pass -o vni=N")]
    VniExhausted,

    #[error("VXLAN id {vni} is used by network {other}; pick another with -o vni=N")]
    VniTaken { vni: u32, other: String },

    #[error("network {name:?} has {count} attachment(s) ({containers}); detach them first or pass --force")]
    InUse {
        name: String,
        count: usize,
        containers: String,
    },

    #[error("the generated IPAM settings are invalid: {source}")]
    Ipam {
        #[source]
        source: IpamError,
    },

    #[error("reading the routes of this namespace: {source}")]
    Routes {
        #[source]
        source: Box<LinkError>,
    },

    #[error("looking up the macvlan parent {parent}: {source}")]
    Parent {
        parent: String,
        #[source]
        source: Box<LinkError>,
    },

    #[error("{0}; the network was not removed, run `network rm` again")]
    Lock(#[from] crate::state::LockError),

    #[error("removing what network {name} has on this host: {source}")]
    Teardown {
        name: String,
        #[source]
        source: Box<crate::error::Error>,
    },

    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}
