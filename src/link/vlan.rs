//! 802.1Q VLAN sub-interfaces (`eth0.10`).

use rtnetlink::LinkVlan;

use super::{check_ifname, index_object, LinkError, LinkInfo, Netlink};

/// What a host without 802.1Q support is missing, in the words an operator looks for.
pub const VLAN_FEATURE: &str = "802.1Q VLAN support (kernel module 8021q)";

/// Lowest and highest usable VLAN ids (0 and 4095 are reserved by 802.1Q).
pub const VLAN_ID_RANGE: std::ops::RangeInclusive<u16> = 1..=4094;

impl Netlink {
    /// Creates VLAN `id` on parent `parent_index` under `name` and brings it up; returns it.
    ///
    /// A kernel without the 8021q module answers the IFLA_INFO_KIND "vlan" request with EOPNOTSUPP
    /// ("Unknown device type" in its extended ack, after a failed request_module): that becomes
    /// [`LinkError::KernelFeatureMissing`], so the caller can say what to install instead of an errno.
    pub fn add_vlan(&self, name: &str, parent_index: u32, id: u16) -> Result<LinkInfo, LinkError> {
        check_ifname(name)?;
        if !VLAN_ID_RANGE.contains(&id) {
            return Err(LinkError::InvalidArgument {
                what: "VLAN id",
                value: id.to_string(),
                reason: "802.1Q VLAN ids run from 1 to 4094",
            });
        }
        let object = format!(
            "VLAN sub-interface {name} (id {id}, on {})",
            index_object(parent_index)
        );
        let message = LinkVlan::new(name, parent_index, id).up().build();
        self.create_link("creating", &object, message)
            .map_err(|e| match e {
                LinkError::Netlink { source, .. }
                    if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                {
                    LinkError::KernelFeatureMissing {
                        feature: VLAN_FEATURE,
                        op: "creating",
                        object: object.clone(),
                    }
                }
                other => other,
            })?;
        tracing::debug!(
            name,
            parent = parent_index,
            id,
            "created VLAN sub-interface"
        );
        self.link_by_name(name)?.ok_or(LinkError::NotFound {
            op: "reading created VLAN sub-interface",
            object: name.to_string(),
        })
    }
}
