//! The link module's error type and the mapping from kernel answers to it.

use std::fmt::Display;
use std::io;
use std::path::PathBuf;

use super::route_socket::RequestError;
use crate::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The object (link, address, route) does not exist: ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL.
    #[error("{op} {object} failed: it does not exist")]
    NotFound { op: &'static str, object: String },

    /// EEXIST: a link with that name, or the same address or route, is already there.
    #[error("{op} {object} failed: it already exists; delete it first or pick another name")]
    Exists { op: &'static str, object: String },

    /// Any other error the kernel answered with.
    #[error("{op} {object} failed: {source}")]
    Netlink {
        op: &'static str,
        object: String,
        #[source]
        source: io::Error,
    },

    /// The request never got a kernel answer (socket closed, message not decodable).
    #[error("{op} {object} failed: {source}")]
    Protocol {
        op: &'static str,
        object: String,
        #[source]
        source: RequestError,
    },

    /// EXFULL for a port added to a bridge: the kernel's limit, not tether's.
    #[error("bridge {bridge} already has {ports} ports, the most the kernel allows a bridge (BR_MAX_PORTS); put further containers on another network")]
    BridgeFull { bridge: String, ports: usize },

    #[error("link {name} exists but is a {kind}, not a bridge; rename the bridge in the network config or remove that link")]
    NotABridge { name: String, kind: String },

    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid {what} {value}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("opening a netlink socket{} failed: {source}", netns.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Socket {
        netns: Option<PathBuf>,
        #[source]
        source: io::Error,
    },

    #[error("entering the network namespace for a netlink socket failed: {source}")]
    Netns {
        #[source]
        source: NetnsError,
    },

    #[error("{op} sysctl {path} failed: {source}")]
    Sysctl {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("kernel answer about {object} lacks {missing}")]
    IncompleteAnswer {
        object: String,
        missing: &'static str,
    },

    /// The kernel lacks a feature the request needs (EOPNOTSUPP for a link kind it does not know).
    #[error("{op} {object} failed: {feature} is not available on this host; load the module (modprobe) or use a kernel built with it")]
    KernelFeatureMissing {
        feature: &'static str,
        op: &'static str,
        object: String,
    },
}

impl LinkError {
    /// Returns a mapper for `map_err` that files a kernel answer under the right variant.
    pub(crate) fn from_request(
        op: &'static str,
        object: impl Display,
    ) -> impl FnOnce(RequestError) -> LinkError {
        move |error| {
            let object = object.to_string();
            match error {
                RequestError::Refused(source) => match source.raw_os_error() {
                    Some(libc::EEXIST) => LinkError::Exists { op, object },
                    Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL) => {
                        LinkError::NotFound { op, object }
                    }
                    _ => LinkError::Netlink { op, object, source },
                },
                other => LinkError::Protocol {
                    op,
                    object,
                    source: other,
                },
            }
        }
    }

    /// The errno of a kernel refusal, if this is one (EEXIST and ENODEV-like included).
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Exists { .. } => Some(libc::EEXIST),
            LinkError::NotFound { .. } => Some(libc::ENODEV),
            LinkError::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
