//! The one top-level error: every module's error rolls up here, and here alone it is mapped to a CNI error
//! code (docs/design.md §3 lists the codes; 100 and up are tether's own, documented in docs/errors.md).

use crate::cni::error::{CniError, ErrorCode};
use crate::firewall::FirewallError;
use crate::ipam::IpamError;
use crate::link::{LinkError, ReaperError};
use crate::netns::NetnsError;
use crate::state::vlan_registry::VlanRegistryError;
use crate::state::LockError;
use crate::state_file::StateFileError;

/// A netlink operation on a link, address or route failed.
pub const CODE_NETLINK: u32 = 101;
/// Installing or updating nftables state failed.
pub const CODE_FIREWALL: u32 = 102;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Reaper(#[from] ReaperError),
    #[error(transparent)]
    Vlan(#[from] VlanRegistryError),
}

impl From<Error> for CniError {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::Cni(c) => return c,
            Error::Ipam(i) => return CniError::from(i),
            Error::Netns(_) => ErrorCode::InvalidEnv as u32,
            Error::Link(_) | Error::Reaper(_) => CODE_NETLINK,
            Error::Firewall(_) => CODE_FIREWALL,
            Error::State(_) | Error::Lock(_) => ErrorCode::Io as u32,
            Error::Vlan(VlanRegistryError::Link { .. }) => CODE_NETLINK,
            Error::Vlan(_) => ErrorCode::Io as u32,
        };
        CniError {
            code,
            msg: e.to_string(),
            details: String::new(),
        }
    }
}
