//! What every driver's network teardown shares: who runs it (the network's last DEL, `tether network rm`)
//! and the last DEL's check, under the network's exclusive lock, which every ADD holds shared from before it
//! joins the network's devices until its record is written. The teardowns themselves are the drivers'
//! (`bridge::teardown`, `overlay::teardown`); `network_devices` picks one from a network's config.

use crate::error::Error;
use crate::state::{NetworkLock, RecordDir};

/// Who tears the network down, which decides how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// The network's last DEL, in a single-threaded plugin: slow kernel work (a bridge's delete) goes on in
    /// a forked child that keeps the lock, so DEL returns at once.
    LastDel,
    /// `tether network rm`: done before it returns (the CLI may run threads: no fork). `bridge_in_use`: another
    /// network's config names the same bridge, so it stays.
    NetworkRm { bridge_in_use: bool },
}

/// The last DEL's check: with no record left, the teardown runs under the exclusive lock, after checking
/// again (an ADD may have joined while this DEL waited for the lock).
pub fn teardown_if_unused(
    net: &str,
    records: &RecordDir,
    teardown: impl FnOnce(NetworkLock) -> Result<(), Error>,
) -> Result<(), Error> {
    if !records.is_empty() {
        return Ok(());
    }
    let lock = NetworkLock::exclusive(net)?;
    if !records.is_empty() {
        return Ok(());
    }
    teardown(lock)
}
