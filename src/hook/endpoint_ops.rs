//! The endpoint operations the hook uses, as a narrow trait over the CNI runtime (attach, detach, and the
//! result cache's record of which namespace each attachment was made in), so the hook's own logic above
//! it, all-or-nothing attach, detach of a stopped container, and replacing a stale cache entry, is tested
//! without root or a kernel.

use std::path::Path;

use crate::endpoint::{AttachRequest, Attachment, EndpointError, Endpoints};

pub trait EndpointOps {
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError>;

    /// Detaches through the plugins' DEL (`ifname`: one interface; `None`: every attachment of the container
    /// on the network).
    fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError>;

    /// The namespace paths the result cache holds for `container_id` on `network`, one per attachment.
    fn cached_netns(
        &self,
        network: &str,
        container_id: &str,
    ) -> Result<Vec<Option<String>>, EndpointError>;

    /// Forgets the per-process namespace paths (`/proc/<pid>/ns/net`) of those cache entries.
    fn forget_process_netns(&self, network: &str, container_id: &str) -> Result<(), EndpointError>;
}

impl EndpointOps for Endpoints {
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError> {
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

    fn cached_netns(
        &self,
        network: &str,
        container_id: &str,
    ) -> Result<Vec<Option<String>>, EndpointError> {
        Ok(self
            .runtime
            .cache
            .list()?
            .into_iter()
            .filter(|e| e.network_name == network && e.container_id == container_id)
            .map(|e| e.netns)
            .collect())
    }

    fn forget_process_netns(&self, network: &str, container_id: &str) -> Result<(), EndpointError> {
        let cache = &self.runtime.cache;
        for mut entry in cache.list()? {
            let ours = entry.network_name == network && entry.container_id == container_id;
            if ours && entry.netns.as_deref().is_some_and(is_process_netns) {
                entry.netns = None;
                cache.write(&entry)?;
            }
        }
        Ok(())
    }
}

/// Attaches, first detaching what an earlier life of this container id left in the cache. Such an entry (its
/// poststop never ran: the runtime was killed, the host rebooted) would make the attach fail as "already
/// attached" forever; it is recognised by a namespace that was another, now dead, process's.
pub fn attach_replacing_stale(
    ops: &impl EndpointOps,
    request: &AttachRequest,
) -> Result<Attachment, EndpointError> {
    let ours = request.netns.to_string_lossy();
    let stale = ops
        .cached_netns(&request.network, &request.container_id)?
        .iter()
        .flatten()
        .any(|path| *path != ours && is_process_netns(path) && !Path::new(path).exists());
    if stale {
        tracing::info!(container = %request.container_id, network = %request.network,
            "detaching what an earlier container of this id left behind");
        detach_stopped(ops, &request.network, &request.container_id)?;
    }
    ops.attach(request)
}

/// Detaches a container whose process is gone (poststop). The hook attached `/proc/<pid>/ns/net`; once the
/// process is gone that path names nothing, or, after pid reuse, another process's namespace, where a
/// plugin's DEL would delete that process's `eth0`. So the cached path is forgotten first and DEL runs
/// without CNI_NETNS, which the spec allows: plugins then clean up from the host side.
pub fn detach_stopped(
    ops: &impl EndpointOps,
    network: &str,
    container_id: &str,
) -> Result<(), EndpointError> {
    ops.forget_process_netns(network, container_id)?;
    ops.detach(network, container_id, None)
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
