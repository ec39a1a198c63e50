//! What the runtime tells an interface plugin about the container, read the same way by every driver:
//! its network namespace (`CNI_NETNS`). The MAC it asked for is typed at the CNI edge (`Call::mac`).

use crate::cni::plugin::Call;
use crate::error::Error;
use crate::netns::NetNs;

/// The container's namespace; CNI_NETNS is required for ADD and CHECK (CNI spec §"Parameters").
pub fn open_netns(call: &Call) -> Result<NetNs, Error> {
    let path = call
        .env
        .netns
        .as_deref()
        .ok_or_else(|| Error::env("CNI_NETNS is required for this command"))?;
    NetNs::open(path).map_err(|e| {
        Error::env(format!(
            "cannot open container network namespace {}: {e}",
            path.display()
        ))
    })
}
