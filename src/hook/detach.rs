//! The poststop half: detach the container from the networks it was attached to. Poststop may run twice
//! (runc runs it on delete, podman on cleanup) or after a create that failed, so a network the container
//! is not attached to is a success; every network is tried even when one fails.

use super::endpoint_ops::{detach_stopped, EndpointOps};
use super::error::HookError;
use super::network_mode::NetworkMode;
use super::settings::HookSettings;

pub fn detach_container(
    ops: &impl EndpointOps,
    id: &str,
    settings: &HookSettings,
) -> Result<(), HookError> {
    let Some(NetworkMode::Networks(networks)) = &settings.networks else {
        tracing::debug!(container = %id, "no networks: nothing to detach");
        return Ok(());
    };
    let mut failures = Vec::new();
    for network in networks.iter().rev() {
        match detach_stopped(ops, network, id) {
            Ok(()) => tracing::info!(container = %id, network = %network, "detached"),
            Err(e) => failures.push((network.clone(), e)),
        }
    }
    match failures.len() {
        0 => Ok(()),
        _ => {
            let (network, source) = failures.remove(0);
            let others = failures
                .iter()
                .map(|(n, e)| format!("; detaching {n} failed too: {e}"))
                .collect::<String>();
            Err(HookError::Detach {
                id: id.to_string(),
                network,
                others,
                source: Box::new(source),
            })
        }
    }
}
