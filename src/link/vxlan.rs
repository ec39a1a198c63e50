//! VXLAN devices for the overlay: one per network (VNI), named `tvx<vni>` (docs/design.md §3).

use std::net::IpAddr;

use rtnetlink::LinkVxlan;

use super::{check_ifname, LinkError, LinkInfo, Netlink};

/// IANA's VXLAN port (RFC 7348 §5); the kernel's own default is the pre-standard 8472.
pub const VXLAN_PORT: u16 = 4789;

/// The largest VNI: the field is 24 bits wide (RFC 7348 §5).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The VXLAN device of network `vni`.
pub fn vxlan_name(vni: u32) -> String {
    format!("tvx{vni}")
}

/// What the overlay's VXLAN device looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    /// This host's VTEP address: the source of every encapsulated packet.
    pub local: IpAddr,
    /// The underlay link the packets leave by.
    pub underlay: u32,
    pub port: u16,
    pub mtu: Option<u32>,
    /// The network's bridge, joined at creation.
    pub master: Option<u32>,
}

impl Netlink {
    /// Makes sure the VXLAN device of `spec` exists, is up and hangs on `spec.master`; returns it.
    ///
    /// Created with learning off (remote MACs come from the control plane, never from flooded traffic)
    /// and ARP proxy on: the device answers ARP requests from the bridge out of its own neighbour table
    /// (filled by the control plane), so no broadcast ever has to cross the underlay. A creator that
    /// loses a race with another ADD gets EEXIST and uses the winner's device.
    pub fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<LinkInfo, LinkError> {
        check_ifname(&spec.name)?;
        if spec.vni > MAX_VNI {
            return Err(LinkError::InvalidArgument {
                what: "VNI",
                value: spec.vni.to_string(),
                reason: "a VXLAN network identifier has 24 bits (at most 16777215)",
            });
        }
        let link = match self.link_by_name(&spec.name)? {
            Some(link) => link,
            None => match self.create_vxlan(spec) {
                Ok(()) | Err(LinkError::Exists { .. }) => self
                    .link_by_name(&spec.name)?
                    .ok_or_else(|| LinkError::NotFound {
                        op: "reading created vxlan device",
                        object: spec.name.clone(),
                    })?,
                Err(e) => return Err(e),
            },
        };
        if link.kind.as_deref() != Some("vxlan") {
            return Err(LinkError::InvalidArgument {
                what: "vxlan device",
                value: spec.name.clone(),
                reason: "a link of that name exists and is not a vxlan device; delete it",
            });
        }
        if spec.master.is_some() && link.master != spec.master {
            self.set_master(link.index, spec.master.unwrap_or_default())?;
        }
        if !link.up {
            self.set_up(link.index)?;
        }
        Ok(link)
    }

    fn create_vxlan(&self, spec: &VxlanSpec) -> Result<(), LinkError> {
        let mut builder = LinkVxlan::new(&spec.name, spec.vni)
            .dev(spec.underlay)
            .port(spec.port)
            .learning(false)
            .proxy(true)
            .up();
        builder = match spec.local {
            IpAddr::V4(a) => builder.local(a),
            IpAddr::V6(a) => builder.local6(a),
        };
        if let Some(mtu) = spec.mtu {
            builder = builder.mtu(mtu);
        }
        if let Some(master) = spec.master {
            builder = builder.controller(master);
        }
        self.create_link("creating vxlan device", &spec.name, builder.build())?;
        tracing::debug!(name = %spec.name, vni = spec.vni, local = %spec.local, "created vxlan device");
        Ok(())
    }
}
