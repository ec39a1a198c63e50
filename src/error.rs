//! The one top-level error of the plugin path: every module's error rolls up here with `?`, and here alone
//! it is mapped to a CNI error code and message (docs/errors.md lists the codes; tether's own are
//! `cni::error::TetherCode`).

use crate::cni::error::{CniError, ErrorCode, TetherCode};
use crate::firewall::FirewallError;
use crate::ipam::IpamError;
use crate::link::{LinkError, ReaperError};
use crate::netns::NetnsError;
use crate::state::vlan_registry::VlanRegistryError;
use crate::state::LockError;
use crate::state_file::StateFileError;

/// What to tell a person when the inputs, not a subsystem, are the problem: what is wrong and, when there
/// is one, what to do about it (the CNI error's `details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub msg: String,
    pub details: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Already a CNI error: the spec layer's own (prevResult, a delegated plugin's answer).
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
    /// A netlink failure with the driver's own words for what it was doing.
    #[error("{msg}")]
    Netlink {
        msg: String,
        #[source]
        source: Box<LinkError>,
    },
    /// The network config or runtimeConfig asks for something invalid (code 7).
    #[error("{0}")]
    Config(Problem),
    /// A field tether does not implement (code 2).
    #[error("{0}")]
    Unsupported(Problem),
    /// The CNI_* environment is unusable, e.g. a namespace that is not one (code 4).
    #[error("{0}")]
    Env(Problem),
    /// State that should exist does not (code 5).
    #[error("{0}")]
    Io(Problem),
    /// The container is not known to this network (code 3).
    #[error("{0}")]
    UnknownContainer(Problem),
    /// STATUS: no ADD can succeed right now (code 50).
    #[error("{0}")]
    NotAvailable(Problem),
    /// CHECK: the kernel differs from prevResult (code 100).
    #[error("{0}")]
    CheckMismatch(Problem),
    /// Overlay: every address block of the network is claimed (code 110).
    #[error("{0}")]
    NoFreeBlock(Problem),
    /// Something this host waits on (the cluster store) did not answer in time; a retry can succeed
    /// (code 11).
    #[error("{0}")]
    TryLater(Problem),
}

fn problem(msg: impl Into<String>) -> Problem {
    Problem {
        msg: msg.into(),
        details: String::new(),
    }
}

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(problem(msg))
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(problem(msg))
    }
    pub fn env(msg: impl Into<String>) -> Self {
        Error::Env(problem(msg))
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Error::Io(problem(msg))
    }
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Error::UnknownContainer(problem(msg))
    }
    pub fn not_available(msg: impl Into<String>) -> Self {
        Error::NotAvailable(problem(msg))
    }
    pub fn check_mismatch(msg: impl Into<String>) -> Self {
        Error::CheckMismatch(problem(msg))
    }
    pub fn no_free_block(msg: impl Into<String>) -> Self {
        Error::NoFreeBlock(problem(msg))
    }
    pub fn try_later(msg: impl Into<String>) -> Self {
        Error::TryLater(problem(msg))
    }

    /// What to do about it; kept only by the variants that carry a [`Problem`].
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        if let Some(p) = self.problem_mut() {
            p.details = details.into();
        }
        self
    }

    /// The CNI code this error maps to (the same function the `From` uses).
    #[cfg(test)]
    pub(crate) fn code(&self) -> u32 {
        code(self)
    }

    fn problem_mut(&mut self) -> Option<&mut Problem> {
        match self {
            Error::Config(p)
            | Error::Unsupported(p)
            | Error::Env(p)
            | Error::Io(p)
            | Error::UnknownContainer(p)
            | Error::NotAvailable(p)
            | Error::CheckMismatch(p)
            | Error::NoFreeBlock(p)
            | Error::TryLater(p) => Some(p),
            _ => None,
        }
    }
}

/// The code of every error; tether's own codes come from [`TetherCode`], never a bare number.
fn code(e: &Error) -> u32 {
    match e {
        Error::Cni(c) | Error::Ipam(IpamError::Cni(c)) => c.code,
        Error::Ipam(i) => ipam_code(i).as_u32(),
        Error::Netns(_) | Error::Env(_) => ErrorCode::InvalidEnv.as_u32(),
        Error::Link(_) | Error::Reaper(_) | Error::Netlink { .. } => TetherCode::Netlink.as_u32(),
        Error::Vlan(VlanRegistryError::Link { .. }) => TetherCode::Netlink.as_u32(),
        Error::Firewall(FirewallError::PortInUse { .. }) => TetherCode::PortInUse.as_u32(),
        Error::Firewall(_) => TetherCode::Firewall.as_u32(),
        Error::State(_) | Error::Lock(_) | Error::Vlan(_) | Error::Io(_) => ErrorCode::Io.as_u32(),
        Error::Config(_) => ErrorCode::InvalidConfig.as_u32(),
        Error::Unsupported(_) => ErrorCode::UnsupportedField.as_u32(),
        Error::UnknownContainer(_) => ErrorCode::UnknownContainer.as_u32(),
        Error::NotAvailable(_) => ErrorCode::PluginNotAvailable.as_u32(),
        Error::CheckMismatch(_) => TetherCode::CheckMismatch.as_u32(),
        Error::NoFreeBlock(_) => TetherCode::NoFreeBlock.as_u32(),
        Error::TryLater(_) => ErrorCode::TryLater.as_u32(),
    }
}

fn ipam_code(err: &IpamError) -> ErrorCode {
    match err {
        IpamError::Io { .. } => ErrorCode::Io,
        // The container id and interface name come from CNI_CONTAINERID / CNI_IFNAME.
        IpamError::InvalidName { what, .. } if *what != "network name" => ErrorCode::InvalidEnv,
        IpamError::NotAllocated { .. } => ErrorCode::UnknownContainer,
        IpamError::NoFreeAddress { .. } => ErrorCode::PluginNotAvailable,
        // Exhaustion is not 11 ("try again later"): a retry only helps after someone else's DEL, and a
        // runtime that retries on 11 would spin. Like a bad config it needs a person (a wider range or
        // fewer containers), so it shares code 7 and the message says which range is full.
        IpamError::RangeExhausted { .. }
        | IpamError::InvalidConfig { .. }
        | IpamError::Config { .. }
        | IpamError::InvalidName { .. }
        | IpamError::AddressInUse { .. }
        | IpamError::NotInRange { .. }
        | IpamError::RequestConflict { .. }
        | IpamError::AlreadyAllocated { .. }
        | IpamError::Cni(_) => ErrorCode::InvalidConfig,
    }
}

/// What to do about it: the problem's own hint, or the OS error under an IPAM failure.
fn details(e: &Error) -> String {
    match e {
        Error::Cni(c) | Error::Ipam(IpamError::Cni(c)) => c.details.clone(),
        Error::Ipam(IpamError::Config { details, .. }) => details.clone(),
        Error::Ipam(IpamError::NoFreeAddress { .. }) => {
            "widen the range or delete containers that no longer run".into()
        }
        Error::Ipam(i) => std::error::Error::source(i)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        Error::Firewall(FirewallError::PortInUse { .. }) => {
            "unpublish it from the other container first, or choose another host port".into()
        }
        Error::Config(p)
        | Error::Unsupported(p)
        | Error::Env(p)
        | Error::Io(p)
        | Error::UnknownContainer(p)
        | Error::NotAvailable(p)
        | Error::CheckMismatch(p)
        | Error::NoFreeBlock(p)
        | Error::TryLater(p) => p.details.clone(),
        Error::Netlink { source, .. } => source.to_string(),
        _ => String::new(),
    }
}

/// The only place an error becomes a CNI error: code, message and details.
impl From<Error> for CniError {
    fn from(e: Error) -> Self {
        match e {
            Error::Cni(c) | Error::Ipam(IpamError::Cni(c)) => c,
            e => CniError {
                code: code(&e),
                msg: e.to_string(),
                details: details(&e),
            },
        }
    }
}

/// The IPAM plugin's errors take the same road.
impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        CniError::from(Error::Ipam(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::path::PathBuf;

    fn cni(e: impl Into<Error>) -> CniError {
        CniError::from(e.into())
    }

    fn exists() -> LinkError {
        LinkError::Exists {
            op: "create veth",
            object: "tv1".into(),
        }
    }

    #[test]
    fn tether_codes_are_the_documented_numbers() {
        let codes = [
            (TetherCode::CheckMismatch, 100),
            (TetherCode::Netlink, 101),
            (TetherCode::Firewall, 102),
            (TetherCode::PortInUse, 103),
            (TetherCode::NoFreeBlock, 110),
        ];
        for (code, number) in codes {
            assert_eq!(code.as_u32(), number, "{code:?}");
        }
    }

    #[test]
    fn problems_map_to_their_code_with_message_and_details() {
        let cases = [
            (Error::config("bad mtu"), 7),
            (Error::unsupported("no such field"), 2),
            (Error::env("not a namespace"), 4),
            (Error::io("veth vanished"), 5),
            (Error::unknown_container("who"), 3),
            (Error::not_available("parent gone"), 50),
            (Error::check_mismatch("mac differs"), 100),
            (Error::no_free_block("subnet full"), 110),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            let c = cni(err.with_details("do this"));
            assert_eq!(
                (c.code, c.msg.as_str(), c.details.as_str()),
                (code, msg.as_str(), "do this")
            );
        }
    }

    #[test]
    fn errors_already_in_cni_form_pass_through_unchanged() {
        let own = CniError::new(ErrorCode::TryLater, "locked").with_details("retry");
        assert_eq!(cni(own.clone()), own);
        assert_eq!(cni(IpamError::Cni(own.clone())), own);
        assert_eq!(CniError::from(IpamError::Cni(own.clone())), own);
    }

    #[test]
    fn link_errors_are_netlink_failures() {
        let c = cni(exists());
        assert_eq!((c.code, c.msg), (101, exists().to_string()));
        let c = cni(Error::Netlink {
            msg: "parent eth9 refused a passthru macvlan".into(),
            source: Box::new(exists()),
        });
        assert_eq!(c.code, 101);
        assert_eq!(c.msg, "parent eth9 refused a passthru macvlan");
        assert_eq!(c.details, exists().to_string());
    }

    #[test]
    fn a_taken_port_is_103_and_says_what_to_do() {
        let c = cni(FirewallError::PortInUse {
            host: "*:8080/tcp".into(),
            existing: String::new(),
        });
        assert_eq!(c.code, 103);
        assert!(c.details.contains("choose another host port"), "{c:?}");
        let c = cni(FirewallError::PortmapNotInstalled);
        assert_eq!((c.code, c.details.as_str()), (102, ""));
    }

    #[test]
    fn namespace_and_state_errors_use_spec_codes() {
        let gone = NetnsError::NotFound {
            path: PathBuf::from("/run/netns/x"),
        };
        assert_eq!(cni(gone).code, 4);
        let write = StateFileError::Write {
            path: PathBuf::from("/var/lib/tether/x"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(cni(write).code, 5);
    }

    #[test]
    fn ipam_errors_keep_their_codes_and_details() {
        let full = IpamError::RangeExhausted {
            range: "10.1.0.0/30".into(),
        };
        assert_eq!(cni(full).code, 7);
        let missing = IpamError::NotAllocated {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        assert_eq!(cni(missing).code, 3);
        let bad_ifname = IpamError::InvalidName {
            what: "interface name",
            value: "a/b".into(),
            reason: "has a slash",
        };
        assert_eq!(cni(bad_ifname).code, 4);
        let bad_net = IpamError::InvalidName {
            what: "network name",
            value: "a/b".into(),
            reason: "has a slash",
        };
        assert_eq!(cni(bad_net).code, 7);
        let io = cni(IpamError::io(
            "lock",
            "/var/lib/tether/ipam",
            io::Error::from(io::ErrorKind::PermissionDenied),
        ));
        assert_eq!(io.code, 5);
        assert_eq!(
            io.details,
            io::Error::from(io::ErrorKind::PermissionDenied).to_string()
        );
        let cfg = cni(IpamError::Config {
            msg: "no ipam".into(),
            details: "add one".into(),
        });
        assert_eq!(
            (cfg.code, cfg.msg.as_str(), cfg.details.as_str()),
            (7, "no ipam", "add one")
        );
        let none_free = cni(IpamError::NoFreeAddress {
            network: "n".into(),
            range: "10.1.0.0/30".into(),
        });
        assert_eq!(none_free.code, 50);
        assert_eq!(
            none_free.msg,
            "network \"n\": no free address left in range set 10.1.0.0/30"
        );
        assert!(none_free.details.contains("widen the range"));
    }
}
