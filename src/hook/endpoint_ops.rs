//! The endpoint operations the hook uses, as a trait so the attach-all-or-nothing and detach logic is
//! tested without root or a kernel.

use std::path::Path;

use crate::endpoint::{AttachRequest, Attachment, EndpointError, Endpoints};

pub trait EndpointOps {
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError>;

    /// Detaches a container that is still there (rolling back a failed attach).
    fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError>;

    /// Detaches a container whose process is gone (poststop).
    fn detach_stopped(&self, network: &str, container_id: &str) -> Result<(), EndpointError>;
}

impl EndpointOps for Endpoints {
    /// A container id the cache still holds for this network from an earlier life (its poststop never
    /// ran: the runtime was killed, the host rebooted) would make the attach fail as "already attached"
    /// forever. An entry whose namespace was another, now dead, process's is that leftover: it is
    /// detached first.
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError> {
        let ours = request.netns.to_string_lossy();
        let stale = self.runtime.cache.list()?.into_iter().any(|entry| {
            entry.network_name == request.network
                && entry.container_id == request.container_id
                && entry.netns.as_deref().is_some_and(|path| {
                    path != ours && is_process_netns(path) && !Path::new(path).exists()
                })
        });
        if stale {
            tracing::info!(container = %request.container_id, network = %request.network,
                "detaching what an earlier container of this id left behind");
            self.detach_stopped(&request.network, &request.container_id)?;
        }
        Endpoints::attach(self, request)
    }

    fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError> {
        Endpoints::detach(self, network, container_id, ifname)
    }

    /// The hook attached `/proc/<pid>/ns/net`. Once the container's process is gone that path names
    /// nothing, or, after pid reuse, another process's namespace, where a plugin's DEL would delete
    /// that process's `eth0`. So the cached path is forgotten first and DEL runs without CNI_NETNS,
    /// which the spec allows: plugins then clean up from the host side.
    fn detach_stopped(&self, network: &str, container_id: &str) -> Result<(), EndpointError> {
        let cache = &self.runtime.cache;
        for mut entry in cache.list()? {
            let ours = entry.network_name == network && entry.container_id == container_id;
            if ours && entry.netns.as_deref().is_some_and(is_process_netns) {
                entry.netns = None;
                cache.write(&entry)?;
            }
        }
        Endpoints::detach(self, network, container_id, None)
    }
}

/// `/proc/<pid>/ns/net` (or `/proc/<pid>/task/<tid>/ns/net`): a path that lives as long as one process.
fn is_process_netns(path: &str) -> bool {
    path.strip_prefix("/proc/")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|first| !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_process_netns;

    #[test]
    fn only_per_process_paths_are_forgotten() {
        assert!(is_process_netns("/proc/4242/ns/net"));
        assert!(is_process_netns("/proc/4242/task/4243/ns/net"));
        assert!(!is_process_netns("/proc/self/ns/net"));
        assert!(!is_process_netns("/run/netns/cni-1234"));
        assert!(!is_process_netns("/var/run/netns/x"));
    }
}
