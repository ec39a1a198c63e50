//! The macvlan child inside the container: why the kernel refused to make one, how its addresses are
//! announced, and how it goes away.

use std::path::Path;

use crate::cni::error::CniError;
use crate::cni::result::IpConfig;
use crate::link::{set_sysctl, LinkError, MacvlanMode, Netlink};
use crate::netns::NetNs;

use super::cni_err;

/// The kernel's refusals of a macvlan, told in terms of the config.
pub(super) fn creation_error(
    e: LinkError,
    mode: MacvlanMode,
    parent: &str,
    mtu: Option<u32>,
) -> CniError {
    let msg = match e.errno() {
        Some(libc::EINVAL) if mode == MacvlanMode::Passthru => format!(
            "parent {parent} refused a passthru macvlan: passthru needs a parent with no other macvlan \
             on it; remove the other macvlans (containers of any network) from {parent} or use another mode"
        ),
        Some(libc::EINVAL) => format!(
            "parent {parent} refused a {mode} macvlan: it already carries a passthru macvlan (which \
             takes the parent for itself){}",
            mtu.map(|m| format!(", or mtu {m} is beyond what {parent} allows"))
                .unwrap_or_default()
        ),
        Some(libc::EADDRINUSE) => format!(
            "the requested MAC address is already used by another macvlan on parent {parent}; \
             request another MAC"
        ),
        Some(libc::EBUSY) => format!(
            "parent {parent} cannot carry macvlans (it is a bridge port, a bond slave or a loopback); \
             pick another `master`"
        ),
        _ => return cni_err(e),
    };
    CniError {
        code: crate::error::CODE_NETLINK,
        msg,
        details: e.to_string(),
    }
}

/// Has the kernel announce the child's addresses when it comes up (a gratuitous ARP, an unsolicited
/// neighbour advertisement), so the segment's neighbours drop a stale entry for an address that a previous
/// container held with another MAC. Best effort: a missing sysctl costs only a slower first contact.
pub(super) fn announce_on_up(ns: &NetNs, ifname: &str, ips: &[IpConfig]) {
    let mut keys = Vec::new();
    if ips.iter().any(|i| i.address.is_ipv4()) {
        keys.push(format!("net/ipv4/conf/{ifname}/arp_notify"));
    }
    if ips.iter().any(|i| i.address.is_ipv6()) {
        keys.push(format!("net/ipv6/conf/{ifname}/ndisc_notify"));
    }
    if keys.is_empty() {
        return;
    }
    let set = ns.run(|| {
        keys.iter()
            .try_for_each(|k| set_sysctl(k, "1"))
            .map_err(|e| e.to_string())
    });
    match set {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "neighbour announcement not enabled"),
        Err(e) => tracing::debug!(error = %e, "neighbour announcement not enabled"),
    }
}

/// Deletes the macvlan `ifname` in the container namespace; nothing to do when the namespace or the link
/// is gone (a namespace takes its macvlans with it when it dies).
pub(super) fn delete_child(netns: Option<&Path>, ifname: &str) -> Result<(), CniError> {
    let Some(path) = netns else { return Ok(()) };
    let ns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(e) => {
            tracing::debug!(netns = %path.display(), error = %e, "container namespace gone; so is its macvlan");
            return Ok(());
        }
    };
    let inner = Netlink::in_netns(&ns).map_err(cni_err)?;
    match inner.link_by_name(ifname).map_err(cni_err)? {
        Some(link) if link.kind.as_deref() == Some("macvlan") => {
            inner.delete_link(link.index).map_err(cni_err)?;
        }
        Some(link) => tracing::warn!(
            ifname,
            kind = ?link.kind,
            "interface in the container is not a macvlan; not deleting it"
        ),
        None => {}
    }
    Ok(())
}
