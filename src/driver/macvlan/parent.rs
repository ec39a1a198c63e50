//! Which link a macvlan child hangs on: `master` (or the default-route interface) met with the links of the
//! namespace, and, for `vlan` or a `master` like `eth0.10`, the 802.1Q sub-interface to use or create.

use crate::error::Error;
use crate::link::{LinkInfo, Netlink};

use super::config::{split_vlan_name, vlan_link_name, MasterSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// An existing link used as is; tether never changes or deletes it.
    Link(LinkInfo),
    /// The 802.1Q sub-interface `name` (VLAN `id` on `lower`); `existing` when it is already there.
    Vlan {
        name: String,
        lower: LinkInfo,
        id: u16,
        existing: Option<LinkInfo>,
    },
}

impl Parent {
    /// The name of the link the child hangs on.
    pub fn name(&self) -> &str {
        match self {
            Parent::Link(l) => &l.name,
            Parent::Vlan { name, .. } => name,
        }
    }

    /// The MTU the parent has (or will have: a new VLAN sub-interface inherits its lower link's).
    pub fn mtu(&self) -> u32 {
        match self {
            Parent::Link(l) => l.mtu,
            Parent::Vlan {
                existing: Some(l), ..
            } => l.mtu,
            Parent::Vlan { lower, .. } => lower.mtu,
        }
    }
}

fn missing(msg: String) -> Error {
    Error::config(msg)
}

/// Looks the parent up through `nl` (the host's socket, or the container's with `linkInContainer`).
/// Read-only: a VLAN sub-interface that is missing is reported, not created. Without `vlan_parents` (the
/// parent lives in the container) a dotted name is just a link name.
pub fn resolve(
    nl: &Netlink,
    spec: &MasterSpec,
    where_: &str,
    vlan_parents: bool,
) -> Result<Parent, Error> {
    let base = match &spec.name {
        Some(name) => name.clone(),
        None => nl
            .default_route_interface()?
            .map(|l| l.name)
            .ok_or_else(|| {
                missing(format!(
                    "no `master` given and {where_} has no default route to take the parent from; \
                     set `master` to the interface on the network the containers should join"
                ))
            })?,
    };
    if let Some(id) = spec.vlan {
        let lower = nl.link_by_name(&base)?.ok_or_else(|| {
            missing(format!(
                "parent interface {base} of VLAN {id} not found in {where_}; set `master` to an existing link"
            ))
        })?;
        let name = vlan_link_name(&base, id)?;
        let existing = nl.link_by_name(&name)?;
        return Ok(Parent::Vlan {
            name,
            lower,
            id,
            existing,
        });
    }
    let found = nl.link_by_name(&base)?;
    if let Some((lower_name, id)) = split_vlan_name(&base).filter(|_| vlan_parents) {
        if let Some(lower) = nl.link_by_name(lower_name)? {
            return Ok(Parent::Vlan {
                name: base.clone(),
                lower,
                id,
                existing: found,
            });
        }
    }
    found.map(Parent::Link).ok_or_else(|| {
        missing(format!(
            "parent interface {base} not found in {where_}; set `master` to an existing link"
        ))
    })
}
