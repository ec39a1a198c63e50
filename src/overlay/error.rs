//! The control plane's error type.

use std::io;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("invalid overlay section of the tetherd config: {reason}")]
    Config { reason: String },

    #[error("reading the overlay key file {path} failed: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: io::Error,
    },

    #[error("binding the overlay control-plane socket {addr} failed: {source}; check `overlay.bind` is an address of this host and the port is free")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("binding the overlay notify socket {path} failed: {source}")]
    NotifySocket {
        path: String,
        #[source]
        source: io::Error,
    },

    #[error("starting the overlay control-plane thread failed: {source}")]
    Thread {
        #[source]
        source: io::Error,
    },

    #[error("opening a netlink socket for the overlay reconcile loop failed: {source}")]
    Netlink {
        #[source]
        source: crate::link::LinkError,
    },
}
