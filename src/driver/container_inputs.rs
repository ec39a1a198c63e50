//! What the runtime tells an interface plugin about the container, read the same way by every driver:
//! its network namespace (`CNI_NETNS`) and the MAC it asked for.

use crate::cni::plugin::Call;
use crate::error::Error;
use crate::link::MacAddr;
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

/// The MAC the runtime asked for: the `mac` capability, else `CNI_ARGS MAC=` (as the reference plugins).
pub fn requested_mac(call: &Call) -> Result<Option<MacAddr>, Error> {
    let text = call
        .conf
        .runtime_config
        .mac
        .clone()
        .or_else(|| call.env.arg("MAC").map(str::to_string));
    text.map(|t| {
        t.parse::<MacAddr>().map_err(|_| {
            Error::config(format!(
                "requested MAC address {t:?} is not a valid unicast MAC (aa:bb:cc:dd:ee:ff)"
            ))
        })
    })
    .transpose()
}
