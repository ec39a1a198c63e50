//! The createRuntime half: bring `lo` up in the container's namespace and attach it to each network in
//! order (eth0, eth1, ...). All or nothing: when one network fails, the ones already attached (and the
//! failed one's partial state) are detached before the error goes back to the runtime, which then
//! refuses to start the container.

use std::path::PathBuf;

use crate::endpoint::{AttachRequest, Attachment, EndpointError};
use crate::netns::{loopback_up, NetNs};

use super::endpoint_ops::{attach_replacing_stale, EndpointOps};
use super::error::HookError;
use super::network_mode::NetworkMode;
use super::settings::HookSettings;

/// What attach needs to know about the container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub pid: Option<u32>,
}

/// Makes the container's network; returns the attachments made (empty for `none` and `host`).
pub fn attach_container(
    ops: &impl EndpointOps,
    container: &Container,
    settings: &HookSettings,
) -> Result<Vec<Attachment>, HookError> {
    let mode = settings.networks.clone().unwrap_or(NetworkMode::None);
    if mode == NetworkMode::Host {
        tracing::info!(container = %container.id, "network host: nothing to do");
        return Ok(Vec::new());
    }
    let pid = container.pid.ok_or_else(|| HookError::NoPid {
        id: container.id.clone(),
    })?;
    let netns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netns = NetNs::open(&netns_path).map_err(|source| HookError::Netns {
        id: container.id.clone(),
        source,
    })?;
    let own = NetNs::current().map_err(|source| HookError::Netns {
        id: container.id.clone(),
        source,
    })?;
    if netns.same_as(&own).unwrap_or(false) {
        if mode == NetworkMode::None {
            tracing::info!(container = %container.id, "shares the runtime's network namespace; nothing to do");
            return Ok(Vec::new());
        }
        return Err(HookError::SharedNetns {
            id: container.id.clone(),
        });
    }
    loopback_up(&netns).map_err(|source| HookError::Loopback {
        id: container.id.clone(),
        source: Box::new(source),
    })?;
    let NetworkMode::Networks(networks) = mode else {
        return Ok(Vec::new());
    };

    attach_networks(ops, &container.id, &netns_path, &networks, settings)
}

/// Attaches `networks` in order; on a failure detaches what it made and returns the error.
pub fn attach_networks(
    ops: &impl EndpointOps,
    id: &str,
    netns_path: &std::path::Path,
    networks: &[String],
    settings: &HookSettings,
) -> Result<Vec<Attachment>, HookError> {
    let ports = settings.ports.clone().unwrap_or_default();
    let mut made: Vec<Attachment> = Vec::new();
    for (index, network) in networks.iter().enumerate() {
        // Ports, addresses and the MAC belong to the first (primary) network, as with `docker run`.
        let primary = index == 0;
        let request = AttachRequest {
            network: network.clone(),
            container_id: id.to_string(),
            netns: netns_path.to_path_buf(),
            ifname: None,
            ips: if primary {
                settings.ips.clone().unwrap_or_default()
            } else {
                Vec::new()
            },
            mac: if primary { settings.mac } else { None },
            ports: if primary { ports.clone() } else { Vec::new() },
            name: settings.name.clone(),
            aliases: settings.aliases.clone().unwrap_or_default(),
        };
        match attach_replacing_stale(ops, &request) {
            Ok(attachment) => {
                tracing::info!(container = %id, network = %network, ifname = %attachment.ifname, "attached");
                made.push(attachment);
            }
            Err(source) => {
                // The failed chain may have left part of its work (libcni leaves cleanup to the
                // runtime): DEL it too, unless the failure was an earlier, unrelated attachment.
                let partial = (!matches!(source, EndpointError::AlreadyAttached { .. }))
                    .then(|| network.clone());
                let rollback = roll_back(ops, id, &made, partial.as_deref());
                return Err(HookError::Attach {
                    id: id.to_string(),
                    network: network.clone(),
                    rollback,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(made)
}

/// Detaches in reverse order; returns a sentence about what could not be undone, empty when all was.
fn roll_back(
    ops: &impl EndpointOps,
    id: &str,
    made: &[Attachment],
    partial: Option<&str>,
) -> String {
    let mut failures = Vec::new();
    let targets = partial
        .map(|network| (network.to_string(), None))
        .into_iter()
        .chain(
            made.iter()
                .rev()
                .map(|a| (a.network.clone(), Some(a.ifname.clone()))),
        );
    for (network, ifname) in targets {
        if let Err(e) = ops.detach(&network, id, ifname.as_deref()) {
            failures.push(format!("detaching {network} failed too: {e}"));
        }
    }
    if failures.is_empty() {
        String::new()
    } else {
        format!("; {}", failures.join("; "))
    }
}
