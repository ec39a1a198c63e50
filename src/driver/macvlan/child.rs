//! The macvlan child inside the container: why the kernel refused to make one, and how it goes away.

use std::path::Path;

use crate::error::Error;
use crate::link::{LinkError, MacvlanMode, Netlink};
use crate::netns::NetNs;

/// The kernel's refusals of a macvlan, told in terms of the config.
pub(crate) fn creation_error(
    e: LinkError,
    mode: MacvlanMode,
    parent: &str,
    mtu: Option<u32>,
) -> Error {
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
        _ => return Error::from(e),
    };
    Error::Netlink {
        msg,
        source: Box::new(e),
    }
}

/// Deletes the macvlan `ifname` in the container namespace; nothing to do when the namespace or the link
/// is gone (a namespace takes its macvlans with it when it dies).
pub(super) fn delete_child(netns: Option<&Path>, ifname: &str) -> Result<(), Error> {
    let Some(path) = netns else { return Ok(()) };
    let ns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(e) => {
            tracing::debug!(netns = %path.display(), error = %e, "container namespace gone; so is its macvlan");
            return Ok(());
        }
    };
    let inner = Netlink::in_netns(&ns)?;
    match inner.link_by_name(ifname)? {
        Some(link) if link.kind.as_deref() == Some("macvlan") => {
            inner.delete_link(link.index)?;
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
