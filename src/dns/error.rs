//! What can go wrong serving DNS to one namespace.

use std::path::PathBuf;

use crate::netns::NsWorkerError;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid `dns` section in the tetherd config: {source}")]
    Settings {
        #[source]
        source: serde_json::Error,
    },
    #[error("opening the resolver sockets (127.0.0.11, private ports) in namespace {}: {source}", netns.display())]
    Bind {
        netns: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("redirecting 127.0.0.11:53 to the resolver in namespace {}: {source}", netns.display())]
    Redirect {
        netns: PathBuf,
        #[source]
        source: crate::firewall::FirewallError,
    },
    #[error("entering namespace {} for the resolver: {source}", netns.display())]
    Enter {
        netns: PathBuf,
        #[source]
        source: NsWorkerError,
    },
    #[error("opening the upstream socket: {source}")]
    UpstreamSocket {
        #[source]
        source: std::io::Error,
    },
}
