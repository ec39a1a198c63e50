//! tether-macvlan: each container gets a macvlan child of a parent link (a NIC, a bond, an 802.1Q
//! sub-interface), so it has its own MAC and an address on the parent's network. The child is created
//! directly in the container's namespace under a temporary name and renamed there; each step of an ADD
//! registers its undo (see `Rollback`).
//!
//! No host-side interface, no firewall: the child's traffic never passes the host's IP stack. That is also
//! macvlan's one known limit: the host cannot reach its own macvlan children through the parent.

mod child;
mod config;
mod parent;
mod temp_name;

use ipnetwork::IpNetwork;

pub use crate::state::vlan_registry::{
    VlanPlan, VlanRecord, VlanRegistry, VlanRegistryError, VlanUser,
};
pub use config::{split_vlan_name, vlan_link_name, MacvlanConfig, MasterSpec};
pub use parent::{resolve, Parent};
pub use temp_name::temporary_name;

use crate::client::notify::attachment_removed;
use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::{CniResult, IpConfig};
use crate::driver::attachment::{self, sandbox_interface, Finish, Made};
use crate::driver::call_config::CallConfig;
use crate::driver::check::{self, mismatch};
use crate::driver::container_iface::{self, DefaultRoute, IfaceConfig, Ipv6Quieting};
use crate::driver::container_inputs::open_netns;
use crate::driver::rollback::Rollback;
use crate::error::Error;
use crate::ifname::IfName;
use crate::link::{LinkError, LinkInfo, MacvlanSpec, Netlink};
use crate::netns::NetNs;
use crate::state::{DriverKind, RecordDir};
pub(crate) use child::creation_error;
use child::delete_child;

pub struct MacvlanPlugin;

/// Where the child's parent lives, and the socket for it.
struct ParentSide<'a> {
    nl: &'a Netlink,
    /// `None` with `linkInContainer`: the child is created where the socket is, no move needed.
    target: Option<&'a NetNs>,
    what: &'static str,
}

/// The socket on the parent's side: the host's, or with `linkInContainer` the container's (no move needed).
fn parent_side<'a>(host: Option<&'a Netlink>, inner: &'a Netlink, ns: &'a NetNs) -> ParentSide<'a> {
    match host {
        Some(h) => ParentSide {
            nl: h,
            target: Some(ns),
            what: "the host namespace",
        },
        None => ParentSide {
            nl: inner,
            target: None,
            what: "the container namespace (linkInContainer)",
        },
    }
}

/// The parent named by `master`, refused when missing or when `mtu` is above its MTU.
fn resolve_parent(side: &ParentSide<'_>, cfg: &MacvlanConfig) -> Result<Parent, Error> {
    let parent = resolve(side.nl, &cfg.master, side.what, !cfg.link_in_container)?;
    let parent_mtu = parent.mtu();
    if let Some(mtu) = cfg.mtu.filter(|m| *m > parent_mtu) {
        return Err(Error::config(format!(
            "mtu {mtu} is larger than the MTU {parent_mtu} of parent {}; a macvlan child \
                 cannot exceed its parent, lower `mtu` or leave it out",
            parent.name()
        )));
    }
    Ok(parent)
}

/// The link the child hangs on: the parent itself, or its 802.1Q sub-interface, made on first use and
/// counted per user (its release registered on `rollback`).
fn parent_link<'a>(
    side: &ParentSide<'a>,
    parent: &Parent,
    (registry, user): (&'a VlanRegistry, &'a VlanUser<'a>),
    rollback: &mut Rollback<'a>,
) -> Result<LinkInfo, Error> {
    match parent {
        Parent::Link(l) => Ok(l.clone()),
        Parent::Vlan {
            name, lower, id, ..
        } => {
            let plan = VlanPlan {
                name,
                lower_index: lower.index,
                id: *id,
            };
            let link = registry.acquire(side.nl, &plan, &lower.name, user)?;
            let nl = side.nl;
            rollback.push("VLAN sub-interface use", move || {
                registry.release(nl, user).map_err(|e| e.to_string())
            });
            Ok(link)
        }
    }
}

/// The macvlan child: born in the container under a unique temporary name and renamed there, so it is never
/// visible on the host and concurrent ADDs cannot collide on the name.
fn make_child<'a>(
    side: &ParentSide<'_>,
    inner: &'a Netlink,
    cfg: &MacvlanConfig,
    call: &Call,
    parent: &LinkInfo,
    rollback: &mut Rollback<'a>,
) -> Result<LinkInfo, Error> {
    let ifname = call.ifname();
    let temp = temporary_name(call.container_id(), ifname);
    side.nl
        .add_macvlan(&MacvlanSpec {
            name: &temp,
            parent_index: parent.index,
            mode: cfg.mode,
            netns: side.target,
            mtu: cfg.mtu,
            mac: call.mac,
            source_macs: &cfg.source_macs,
        })
        .map_err(|e| creation_error(e, cfg.mode, &parent.name, cfg.mtu))?;
    let child = inner.link_by_name(&temp)?.ok_or_else(|| {
        Error::io(format!(
            "macvlan {temp} vanished from the container namespace after creation"
        ))
    })?;
    let index = child.index;
    rollback.push("macvlan child", move || {
        inner
            .delete_link(index)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    inner
        .rename_link(child.index, ifname)
        .map_err(|e| match e {
            LinkError::Exists { .. } => Error::config(format!(
            "interface {ifname} already exists in the container namespace; pick another CNI_IFNAME"
        )),
            other => Error::from(other),
        })?;
    Ok(child)
}

impl Plugin for MacvlanPlugin {
    type Error = Error;
    type Config = CallConfig<MacvlanConfig>;

    fn config(&self, call: &Call) -> Result<Self::Config, Error> {
        CallConfig::with_ipam(call, MacvlanConfig::from_call(call)?)
    }

    fn add(&self, call: &Call, c: &Self::Config) -> Result<CniResult, Error> {
        let cfg = &c.net;
        let (cid, ifname, net) = (call.container_id(), call.ifname(), call.conf.name.as_str());
        let ns = open_netns(call)?;
        let host = (!cfg.link_in_container).then(Netlink::new).transpose()?;
        let inner = Netlink::in_netns(&ns)?;
        let side = parent_side(host.as_ref(), &inner, &ns);
        // Read-only checks first: a missing parent or a too-large MTU leaves nothing behind.
        let parent = resolve_parent(&side, cfg)?;
        let (registry, user) = (
            VlanRegistry::new(),
            VlanUser {
                network: net,
                container_id: cid,
                ifname,
            },
        );
        let mut rollback = Rollback::new();
        let leased = c.ipam.lease(call, &mut rollback)?;
        let parent_link = parent_link(&side, &parent, (&registry, &user), &mut rollback)?;
        let child = make_child(&side, &inner, cfg, call, &parent_link, &mut rollback)?;
        let addresses: Vec<_> = leased.ips.iter().map(|i| (i.address, i.gateway)).collect();
        let routes = container_iface::configure(
            &inner,
            child.index,
            &IfaceConfig {
                addresses: &addresses,
                skip_dad: false,
                ipv6: Ipv6Quieting::Lan { netns: &ns, ifname },
                default_route: DefaultRoute::ViaGatewayUnlessPresent,
                routes: &leased.routes,
                report_gateway: true,
            },
        )?;
        let kept = attachment::keep(
            Finish::new(call, &ns, c, rollback),
            Made {
                driver: DriverKind::Macvlan,
                // The parent: the record's "host-side interface" for a driver without one of its own.
                host_ifname: (!cfg.link_in_container)
                    .then(|| IfName::new(parent_link.name.clone()).ok())
                    .flatten(),
                bridge: None,
                mac: child.mac,
                macspoofchk: false,
                ips: leased.ips.iter().map(|i| i.address).collect(),
            },
        )?;
        let dns = kept.announce(call.conf.dns.clone().unwrap_or(leased.dns));
        let mtu = cfg.mtu.unwrap_or(parent_link.mtu);
        Ok(CniResult {
            interfaces: vec![sandbox_interface(call, ifname, child.mac, mtu)],
            ips: leased
                .ips
                .iter()
                .map(|i| IpConfig {
                    address: i.address,
                    gateway: i.gateway,
                    interface: Some(0),
                })
                .collect(),
            routes,
            dns,
        })
    }

    fn del(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let (cid, ifname) = (call.container_id(), call.ifname());
        let net = call.conf.name.as_str();
        let records = RecordDir::for_network(net);
        let record = records.read(cid, ifname)?;
        // CNI_NETNS is optional for DEL; the record remembers where the child was made.
        let recorded_netns = match call.env.netns {
            Some(_) => None,
            None => record.as_ref().and_then(|r| r.netns.clone()),
        };
        delete_child(
            call.env.netns.as_deref().or(recorded_netns.as_deref()),
            ifname,
        )?;
        c.ipam.del(call)?;
        records.remove(cid, ifname)?;
        if record.as_ref().is_some_and(|r| r.dns) {
            attachment_removed(net, cid, ifname, None);
        }
        release_vlan(&VlanUser {
            network: net,
            container_id: cid,
            ifname,
        })
    }

    fn check(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        let ifname = call.ifname();
        let prev = check::prev_result(call)?;
        let inner = Netlink::in_netns(&open_netns(call)?)?;
        let addresses: Vec<IpNetwork> = prev.ips.iter().map(|i| i.address).collect();
        let link = container_iface::verify(&inner, ifname, &addresses, &prev.routes)?;
        let info = inner.macvlan_info(link.index)?.ok_or_else(|| {
            mismatch(format!(
                "interface {ifname} in the container is a {}, not a macvlan",
                link.kind.as_deref().unwrap_or("device without a kind")
            ))
        })?;
        if info.mode != Some(cfg.mode) {
            return Err(mismatch(format!(
                "macvlan {ifname} is in mode {}, the network asks for {}",
                info.mode.map_or("unknown".to_string(), |m| m.to_string()),
                cfg.mode
            )));
        }
        c.ipam.check(call)
    }

    fn gc(&self, call: &Call, c: &Self::Config, valid: &[Attachment]) -> Result<(), Error> {
        let net = call.conf.name.as_str();
        c.ipam.gc(call, valid)?;
        let records = RecordDir::for_network(net);
        for rec in records.list()? {
            let keep = valid
                .iter()
                .any(|a| a.container_id == rec.container_id && a.ifname == rec.ifname);
            if keep {
                continue;
            }
            tracing::info!(container = %rec.container_id, ifname = %rec.ifname, "gc: removing stale attachment");
            delete_child(rec.netns.as_deref().map(std::path::Path::new), &rec.ifname)?;
            records.remove(&rec.container_id, &rec.ifname)?;
            if rec.dns {
                attachment_removed(net, &rec.container_id, &rec.ifname, None);
            }
        }
        if let Some(host) = vlan_host_socket()? {
            VlanRegistry::new().release_stale(&host, net, valid)?;
        }
        Ok(())
    }

    /// Code 50 when the parent (or the lower link of a VLAN parent) is missing: no ADD could succeed.
    fn status(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        // With linkInContainer the parent lives in namespaces STATUS is not told about.
        if !cfg.link_in_container {
            let host = Netlink::new()?;
            resolve(&host, &cfg.master, "the host namespace", true)
                .map_err(|e| Error::not_available(e.to_string()))?;
        }
        c.ipam.status(call)
    }
}

/// A host socket for VLAN registry work, or `None` when tether made no sub-interface (the common case
/// costs no socket).
fn vlan_host_socket() -> Result<Option<Netlink>, Error> {
    let dir = crate::paths::state_dir().join("vlan");
    let any = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !any {
        return Ok(None);
    }
    Netlink::new().map(Some).map_err(Error::from)
}

fn release_vlan(user: &VlanUser<'_>) -> Result<(), Error> {
    match vlan_host_socket()? {
        Some(host) => VlanRegistry::new()
            .release(&host, user)
            .map_err(Error::from),
        None => Ok(()),
    }
}
