//! tether-macvlan: each container gets a macvlan child of a parent link (a NIC, a bond, an 802.1Q
//! sub-interface), so it has its own MAC and an address on the parent's network. The child is created
//! directly in the container's namespace under a temporary name and renamed there; each step of an ADD
//! registers its undo (see `Rollback`).
//!
//! No host-side interface, no firewall: the child's traffic never passes the host's IP stack. That is also
//! macvlan's one known limit: the host cannot reach its own macvlan children through the parent.

mod child;
mod config;
mod container_routes;
mod parent;
mod temp_name;

use ipnetwork::IpNetwork;

pub use crate::state::vlan_registry::{
    VlanPlan, VlanRecord, VlanRegistry, VlanRegistryError, VlanUser,
};
pub use config::{split_vlan_name, vlan_link_name, MacvlanConfig, MasterSpec};
pub use parent::{resolve, Parent};
pub use temp_name::temporary_name;

use crate::client::notify::{attachment_added, attachment_removed};
use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::{CniResult, Interface, IpConfig};
use crate::driver::call_config::CallConfig;
use crate::driver::check::{self, mismatch};
use crate::driver::container_inputs::open_netns;
use crate::driver::interface_sysctls::apply_lan_interface_sysctls;
use crate::driver::rollback::Rollback;
use crate::error::Error;
use crate::link::{IpFamily, LinkError, MacvlanSpec, Netlink};
use crate::netns::NetNs;
use crate::state::{AttachmentRecord, DriverKind, RecordDir};
use child::{creation_error, delete_child};
use container_routes::add_routes;

pub struct MacvlanPlugin;

fn family_of(dst: &IpNetwork) -> IpFamily {
    if dst.is_ipv4() {
        IpFamily::V4
    } else {
        IpFamily::V6
    }
}

/// Where the child's parent lives, and the socket for it.
struct ParentSide<'a> {
    nl: &'a Netlink,
    /// `None` with `linkInContainer`: the child is created where the socket is, no move needed.
    target: Option<&'a NetNs>,
    what: &'static str,
}

impl Plugin for MacvlanPlugin {
    type Error = Error;
    type Config = CallConfig<MacvlanConfig>;

    fn config(&self, call: &Call) -> Result<Self::Config, Error> {
        CallConfig::with_ipam(call, MacvlanConfig::from_call(call)?)
    }

    fn add(&self, call: &Call, c: &Self::Config) -> Result<CniResult, Error> {
        let (cfg, dns, ipam) = (&c.net, &c.dns, &c.ipam);
        let names = c.names.clone();
        let (cid, ifname) = (call.container_id(), call.ifname());
        let net = call.conf.name.as_str();
        let mac = call.mac;
        let ns = open_netns(call)?;
        let inner = Netlink::in_netns(&ns)?;
        let host = if cfg.link_in_container {
            None
        } else {
            Some(Netlink::new()?)
        };
        let side = match &host {
            Some(h) => ParentSide {
                nl: h,
                target: Some(&ns),
                what: "the host namespace",
            },
            None => ParentSide {
                nl: &inner,
                target: None,
                what: "the container namespace (linkInContainer)",
            },
        };

        // Read-only checks first: a missing parent or a too-large MTU leaves nothing behind.
        let parent = resolve(side.nl, &cfg.master, side.what, !cfg.link_in_container)?;
        let parent_mtu = parent.mtu();
        if let Some(mtu) = cfg.mtu.filter(|m| *m > parent_mtu) {
            return Err(Error::config(format!(
                "mtu {mtu} is larger than the MTU {parent_mtu} of parent {}; a macvlan child \
                     cannot exceed its parent, lower `mtu` or leave it out",
                parent.name()
            )));
        }

        let user = VlanUser {
            network: net,
            container_id: cid,
            ifname,
        };
        let registry = VlanRegistry::new();
        let mut rollback = Rollback::new();
        let leased = ipam.add(call)?;
        rollback.push("ipam lease", || ipam.del(call).map_err(|e| e.to_string()));
        if leased.ips.is_empty() {
            return Err(Error::config(format!(
                "IPAM plugin of network {net} returned no address; check its ranges"
            )));
        }

        let parent_link = match &parent {
            Parent::Link(l) => l.clone(),
            Parent::Vlan {
                name, lower, id, ..
            } => {
                let plan = VlanPlan {
                    name,
                    lower_index: lower.index,
                    id: *id,
                };
                let link = registry.acquire(side.nl, &plan, &lower.name, &user)?;
                let (reg, nl, u) = (&registry, side.nl, user.clone());
                rollback.push("VLAN sub-interface use", move || {
                    reg.release(nl, &u).map_err(|e| e.to_string())
                });
                link
            }
        };

        // Born in the container under a unique temporary name, renamed there: never visible on the host,
        // and concurrent ADDs cannot collide on the name.
        let temp = temporary_name(cid, ifname);
        side.nl
            .add_macvlan(&MacvlanSpec {
                name: &temp,
                parent_index: parent_link.index,
                mode: cfg.mode,
                netns: side.target,
                mtu: cfg.mtu,
                mac,
                source_macs: &cfg.source_macs,
            })
            .map_err(|e| creation_error(e, cfg.mode, &parent_link.name, cfg.mtu))?;
        let child = inner.link_by_name(&temp)?.ok_or_else(|| {
            Error::io(format!(
                "macvlan {temp} vanished from the container namespace after creation"
            ))
        })?;
        let inner_ref = &inner;
        let index = child.index;
        rollback.push("macvlan child", move || {
            inner_ref
                .delete_link(index)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        inner
            .rename_link(child.index, ifname)
            .map_err(|e| match e {
                LinkError::Exists { .. } => Error::config(format!(
                        "interface {ifname} already exists in the container namespace; pick another CNI_IFNAME"
                    ),
                ),
                other => Error::from(other),
            })?;

        for ip in &leased.ips {
            inner.add_address(child.index, ip.address, false)?;
        }
        let addresses: Vec<IpNetwork> = leased.ips.iter().map(|i| i.address).collect();
        apply_lan_interface_sysctls(&ns, ifname, &addresses);
        inner.set_up(child.index)?;

        let routes = add_routes(&inner, child.index, &leased)?;

        let records = RecordDir::for_network(net);
        let own_resolver = dns.container_holds_resolver(&ns);
        records.write(&AttachmentRecord {
            network: net.to_string(),
            container_id: cid.to_string(),
            ifname: ifname.to_string(),
            driver: DriverKind::Macvlan,
            netns: call.env.netns.as_ref().map(|p| p.display().to_string()),
            netns_id: ns.id().ok(),
            // The parent: the record's "host-side interface" for a driver without one of its own.
            host_ifname: (!cfg.link_in_container).then(|| parent_link.name.clone()),
            bridge: None,
            mac: child.mac,
            macspoofchk: false,
            ips: leased.ips.iter().map(|i| i.address).collect(),
            name: names.name,
            aliases: names.aliases,
            dns: dns.enabled,
            internal: dns.internal,
            own_resolver,
        })?;
        rollback.commit();
        // After the record is on disk (tetherd reads the records). Without a tetherd, the container keeps
        // the runtime's resolvers rather than a resolver that never answers.
        let resolver_up = dns.enabled && attachment_added(net, cid, ifname);

        let mtu = cfg.mtu.unwrap_or(parent_link.mtu);
        Ok(CniResult {
            interfaces: vec![Interface {
                name: ifname.to_string(),
                mac: child.mac.map(|m| m.to_string()),
                mtu: Some(mtu),
                sandbox: call.env.netns.as_ref().map(|p| p.display().to_string()),
                ..Interface::default()
            }],
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
            dns: dns.result_dns(
                resolver_up && !own_resolver,
                call.conf.dns.clone().unwrap_or(leased.dns),
            ),
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
            None => record
                .as_ref()
                .and_then(|r| r.netns.clone())
                .map(std::path::PathBuf::from),
        };
        delete_child(
            call.env.netns.as_deref().or(recorded_netns.as_deref()),
            ifname,
        )?;
        c.ipam.del(call)?;
        records.remove(cid, ifname)?;
        if record.as_ref().is_some_and(|r| r.dns) {
            attachment_removed(net, cid, ifname);
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
        let ns = open_netns(call)?;
        let inner = Netlink::in_netns(&ns)?;
        let link = inner
            .link_by_name(ifname)?
            .ok_or_else(|| mismatch(format!("interface {ifname} is missing in the container")))?;
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
        let have = inner.addresses(link.index)?;
        for ip in &prev.ips {
            if !have.contains(&ip.address) {
                return Err(mismatch(format!(
                    "address {} is missing on {ifname} in the container",
                    ip.address
                )));
            }
        }
        for r in &prev.routes {
            let routes = inner.routes(family_of(&r.dst))?;
            if !routes
                .iter()
                .any(|have| have.dst == r.dst && (r.gw.is_none() || have.gw == r.gw))
            {
                return Err(mismatch(format!(
                    "route to {} is missing in the container",
                    r.dst
                )));
            }
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
                attachment_removed(net, &rec.container_id, &rec.ifname);
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
