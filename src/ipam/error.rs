//! The one error type of the IPAM module: every variant names the object that failed and hints at the fix.

use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Already a CNI error from the spec layer (prevResult).
    #[error(transparent)]
    Cni(#[from] crate::cni::error::CniError),

    /// A problem with the call's inputs, said as the person should read it, with what to do.
    #[error("{msg}")]
    Config { msg: String, details: String },

    #[error("network \"{network}\": no free address left in range set {range}")]
    NoFreeAddress { network: String, range: String },

    #[error("invalid IPAM config: `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },

    #[error("no free address left in range set {range}; widen the range or delete containers that no longer run")]
    RangeExhausted { range: String },

    #[error("address {ip} is already in use by {by}; request another address or delete that container first")]
    AddressInUse { ip: IpAddr, by: String },

    #[error("requested address {ip} is outside every configured range ({ranges}); request an address inside one of them")]
    NotInRange { ip: IpAddr, ranges: String },

    #[error("requested addresses {first} and {second} both fall in range set {range}; request at most one address per range set")]
    RequestConflict {
        first: IpAddr,
        second: IpAddr,
        range: String,
    },

    #[error("container {container_id} interface {ifname} already holds {held} in range set {range}, not the requested {requested}; delete the attachment before asking for another address")]
    AlreadyAllocated {
        container_id: String,
        ifname: String,
        held: IpAddr,
        requested: IpAddr,
        range: String,
    },

    #[error("container {container_id} interface {ifname} holds no address on this network; run ADD first")]
    NotAllocated {
        container_id: String,
        ifname: String,
    },

    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error(
        "could not {action} {path}; check that the IPAM dataDir is writable and not on a full disk"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl IpamError {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        IpamError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        IpamError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
