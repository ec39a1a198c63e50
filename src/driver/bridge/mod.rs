//! tether-bridge: a Linux bridge per network, one veth per container, the gateway on the bridge, forwarding
//! and masquerade in nftables. Each step of an ADD registers its undo (see `Rollback`).

mod config;
#[cfg(test)]
mod rollback_tests;

use std::net::IpAddr;

use ipnetwork::IpNetwork;

pub use config::{BridgeConfig, DEFAULT_BRIDGE};

use crate::client::notify::attachment_removed;
use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::{CniResult, IpConfig, Route};
use crate::driver::attachment::{self, result_interface, sandbox_interface, Finish, Made};
use crate::driver::bridge_port::{self, BridgePort};
use crate::driver::call_config::CallConfig;
use crate::driver::check::{self, mismatch};
use crate::driver::container_iface::{
    self, container_link, DefaultRoute, IfaceConfig, Ipv6Quieting,
};
use crate::driver::container_inputs::open_netns;
use crate::driver::portmap;
use crate::driver::rollback::Rollback;
use crate::driver::teardown::{teardown_if_unused, Teardown};
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::firewall::{Firewall, NetworkRules};
use crate::link::LinkReaper;
use crate::link::{delete_bridge_in_background, delete_unused_bridge};
use crate::link::{LinkInfo, LinkOps, MacAddr, Netlink};
use crate::netns::NetNs;
use crate::state::NetworkLock;
use crate::state::{AttachmentRecord, DriverKind, RecordDir};

pub struct BridgePlugin;

/// The attachment an ADD/DEL/CHECK acts on; `Env` has already checked both are present for these commands.
struct Target<'a> {
    container_id: &'a str,
    ifname: &'a str,
}

fn target(call: &Call) -> Target<'_> {
    Target {
        container_id: call.container_id(),
        ifname: call.ifname(),
    }
}

/// The gateway of an IP config: IPAM's, else the subnet's first address (as the reference plugin computes it).
fn gateway_of(ip: &IpConfig) -> Option<IpAddr> {
    if let Some(gw) = ip.gateway {
        return Some(gw);
    }
    match ip.address {
        IpNetwork::V4(n) if n.prefix() < 31 => {
            Some(IpAddr::V4((u32::from(n.network()) + 1).into()))
        }
        IpNetwork::V6(n) if n.prefix() < 127 => {
            Some(IpAddr::V6((u128::from(n.network()) + 1).into()))
        }
        _ => None,
    }
}

/// Put the gateway address on the bridge. Another address of the same subnet already there is an error
/// unless `forceAddress`, which replaces it (reference bridge semantics). The common case, gateway already in
/// place, costs one request answered EEXIST; the address listing (a dump of the whole namespace) happens
/// only when the gateway was just added, i.e. once per network.
pub(crate) fn ensure_gateway(
    host: &impl LinkOps,
    bridge: u32,
    gw: IpNetwork,
    force: bool,
    name: &str,
) -> Result<(), Error> {
    if !host.try_add_address(bridge, gw, true)? {
        return Ok(());
    }
    let existing = host.addresses(bridge)?;
    let others: Vec<IpNetwork> = existing
        .into_iter()
        .filter(|a| {
            a.is_ipv4() == gw.is_ipv4()
                && a.ip() != gw.ip()
                && (a.contains(gw.ip()) || gw.contains(a.ip()))
        })
        .collect();
    if let Some(old) = others.first() {
        if !force {
            host.del_address(bridge, gw)?;
            return Err(Error::config(format!(
                "bridge {name} already has address {old} in the network of gateway {gw}; \
                     set \"forceAddress\": true to replace it, or use another bridge"
            )));
        }
        for old in &others {
            host.del_address(bridge, *old)?;
        }
    }
    Ok(())
}

/// IP forwarding on for the families of `addresses`.
fn enable_forwarding(host: &impl LinkOps, addresses: &[IpNetwork]) -> Result<(), Error> {
    if addresses.iter().any(IpNetwork::is_ipv4) {
        host.set_sysctl("net/ipv4/ip_forward", "1")?;
    }
    if addresses.iter().any(IpNetwork::is_ipv6) {
        host.set_sysctl("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

/// What the link steps of an ADD made.
struct Connected {
    bridge: LinkInfo,
    host_mac: MacAddr,
    /// The container's interface.
    link: LinkInfo,
    routes: Vec<Route>,
}

/// The link steps of an ADD: the network's bridge, the container's port on it, its interface inside (through
/// `inner`, a socket in the container's namespace). Each registers its undo on `rollback`.
fn connect<'a, L: LinkOps>(
    (host, inner): (&'a L, &L),
    call: &'a Call,
    cfg: &'a BridgeConfig,
    (ns, host_if): (&'a NetNs, &'a str),
    leased: &CniResult,
    rollback: &mut Rollback<'a>,
) -> Result<Connected, Error> {
    let bridge = bridge_of_config(host, cfg, &leased.ips, rollback)?;
    let host_mac =
        bridge_port::attach(host, &port(call, cfg, ns, bridge.index, host_if), rollback)?;
    let link = container_link(inner, call.ifname())?;
    let addresses: Vec<_> = leased
        .ips
        .iter()
        .map(|i| (i.address, gateway_of(i)))
        .collect();
    let routes = container_iface::configure(
        inner,
        link.index,
        &iface_config(cfg, &addresses, &leased.routes),
    )?;
    Ok(Connected {
        bridge,
        host_mac,
        link,
        routes,
    })
}

/// A network's bridge as tether-bridge's ADD and Docker's CreateNetwork want it.
/// `'a`: the name, which the bridge's undo keeps; `'s`: the rest, read during the call only.
pub(crate) struct NetworkBridge<'a, 's> {
    pub name: &'a str,
    pub mtu: Option<u32>,
    pub promisc: bool,
    /// The gateway addresses (with the subnet's prefix) the bridge holds.
    pub gateways: &'s [IpNetwork],
    pub force_address: bool,
    /// Addresses whose families need IP forwarding.
    pub forward: &'s [IpNetwork],
}

/// The network's bridge, made on first use (undone only while no port hangs on it), with its gateway
/// addresses and forwarding; returns it and whether this call made it.
pub(crate) fn ensure_network_bridge<'a, L: LinkOps>(
    host: &'a L,
    spec: &NetworkBridge<'a, '_>,
    rollback: &mut Rollback<'a>,
) -> Result<(LinkInfo, bool), Error> {
    let name = spec.name;
    let (br, created) =
        host.ensure_bridge_noting_creation(name, spec.mtu, MacAddr::from_name(name))?;
    if created {
        let index = br.index;
        rollback.push("bridge", move || remove_bridge_if_unused(host, name, index));
    }
    if spec.promisc {
        host.set_promisc(br.index, true)?;
    }
    for gw in spec.gateways {
        if gw.is_ipv6() {
            // A bridge created while IPv6 was off on the host has no IPv6 config until enabled.
            let _ = host.set_sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "0");
        }
        ensure_gateway(host, br.index, *gw, spec.force_address, name)?;
    }
    enable_forwarding(host, spec.forward)?;
    Ok((br, created))
}

/// tether-bridge's bridge: the gateways with `isGateway`, forwarding with `isGateway` or `ipMasq`.
fn bridge_of_config<'a, L: LinkOps>(
    host: &'a L,
    cfg: &'a BridgeConfig,
    ips: &[IpConfig],
    rollback: &mut Rollback<'a>,
) -> Result<LinkInfo, Error> {
    let gateways: Vec<IpNetwork> = ips
        .iter()
        .filter(|_| cfg.is_gateway)
        .filter_map(|ip| {
            let gw = gateway_of(ip)?;
            Some(IpNetwork::new(gw, ip.address.prefix()).expect("prefix from a valid network"))
        })
        .collect();
    let forward: Vec<IpNetwork> = if cfg.is_gateway || cfg.ip_masq {
        ips.iter().map(|i| i.address).collect()
    } else {
        Vec::new()
    };
    let spec = NetworkBridge {
        name: &cfg.bridge,
        mtu: cfg.mtu,
        promisc: cfg.promisc_mode,
        gateways: &gateways,
        force_address: cfg.force_address,
        forward: &forward,
    };
    Ok(ensure_network_bridge(host, &spec, rollback)?.0)
}

/// CHECK of the host side: the bridge and the container's veth on it.
fn verify_port(host: &Netlink, bridge: &str, host_if: &str) -> Result<(), Error> {
    let br = host
        .link_by_name(bridge)?
        .ok_or_else(|| mismatch(format!("bridge {bridge} is missing")))?;
    let veth = host
        .link_by_name(host_if)?
        .ok_or_else(|| mismatch(format!("host veth {host_if} is missing")))?;
    if veth.master != Some(br.index) {
        return Err(mismatch(format!(
            "host veth {host_if} is not attached to bridge {bridge}"
        )));
    }
    Ok(())
}

/// The container's port on the network's bridge.
fn port<'a>(
    call: &'a Call,
    cfg: &BridgeConfig,
    ns: &'a NetNs,
    bridge: u32,
    host_ifname: &'a str,
) -> BridgePort<'a> {
    BridgePort {
        bridge,
        host_ifname,
        ifname: call.ifname(),
        netns: ns,
        mtu: cfg.mtu,
        mac: call.mac,
        hairpin: cfg.hairpin_mode,
        // An isolated port cannot reach its neighbours, while egress and published ports keep working.
        isolated: !cfg.icc,
    }
}

fn iface_config<'a>(
    cfg: &BridgeConfig,
    addresses: &'a [(IpNetwork, Option<IpAddr>)],
    routes: &'a [Route],
) -> IfaceConfig<'a> {
    IfaceConfig {
        addresses,
        skip_dad: !cfg.enable_dad,
        ipv6: Ipv6Quieting::BridgePortPeer,
        default_route: if cfg.is_default_gateway {
            DefaultRoute::ViaGateway
        } else {
            DefaultRoute::None
        },
        routes,
        report_gateway: false,
    }
}

/// The network's chains (once per network) and this container's elements, in the network's sets and, with
/// macspoofchk, the bridge table's.
fn add_firewall_elements<'a>(
    fw: &Firewall,
    net: &'a str,
    cfg: &BridgeConfig,
    ips: &[IpConfig],
    (host_if, spoofchk_mac): (&str, Option<MacAddr>),
    rollback: &mut Rollback<'a>,
) -> Result<(), Error> {
    let addrs: Vec<IpAddr> = ips.iter().map(|i| i.address.ip()).collect();
    fw.ensure_network(&NetworkRules {
        name: net.to_string(),
        bridge: cfg.bridge.to_string(),
        masquerade: cfg.ip_masq,
        isolation: true,
    })?;
    fw.add_container(net, &addrs)?;
    rollback.push("firewall elements", move || {
        Firewall::open()
            .and_then(|fw| fw.remove_container(net, &addrs))
            .map_err(|e| e.to_string())
    });
    if let Some(mac) = spoofchk_mac {
        fw.add_spoofchk(host_if, mac.octets())?;
        let port = host_if.to_string();
        rollback.push("macspoofchk elements", move || {
            Firewall::open()
                .and_then(|fw| fw.remove_spoofchk(&port, mac.octets()))
                .map_err(|e| e.to_string())
        });
    }
    Ok(())
}

/// The runtime's `portMappings`, when tether-bridge declares the capability itself: published on the same
/// firewall socket as the container's elements, undone with the rest of a failed ADD.
fn publish_ports<'a>(
    fw: &Firewall,
    call: &'a Call,
    cfg: &BridgeConfig,
    ips: &[IpConfig],
    rollback: &mut Rollback<'a>,
) -> Result<(), Error> {
    let Some(opts) = &cfg.ports else {
        return Ok(());
    };
    if call.conf.runtime_config.port_mappings.is_empty() {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = ips.iter().map(|i| i.address.ip()).collect();
    // The network's own chains already masquerade hairpin traffic on this bridge.
    let published = portmap::publish(fw, call, opts, &addrs, Some(&cfg.bridge), false)?;
    rollback.push("published ports", move || {
        portmap::withdraw(call, &published).map_err(|e| e.to_string())
    });
    Ok(())
}

impl Plugin for BridgePlugin {
    type Error = Error;
    type Config = CallConfig<BridgeConfig>;

    fn config(&self, call: &Call) -> Result<Self::Config, Error> {
        CallConfig::with_ipam(call, BridgeConfig::from_json(&call.conf.raw)?)
    }

    fn add(&self, call: &Call, c: &Self::Config) -> Result<CniResult, Error> {
        let cfg = &c.net;
        let (net, ifname) = (call.conf.name.as_str(), call.ifname());
        let ns = open_netns(call)?;
        let host = Netlink::new()?;
        let host_if = host_veth_name(call.container_id(), ifname);
        let mut rollback = Rollback::new();
        // IPAM first: a config it refuses must leave nothing behind, not even a bridge.
        let leased = c.ipam.lease(call, &mut rollback)?;
        // Shared from before the bridge is ensured until the record is written: a last DEL's teardown (exclusive)
        // never removes the bridge or chains this ADD is joining, and waits for it.
        let fw = Firewall::open()?;
        let lock = NetworkLock::shared(net)?;
        // Container side: a netlink socket opened inside the namespace (docs/design.md §5).
        let inner = Netlink::in_netns(&ns)?;
        let Connected {
            bridge: br,
            host_mac,
            link,
            routes,
        } = connect(
            (&host, &inner),
            call,
            cfg,
            (&ns, &host_if),
            &leased,
            &mut rollback,
        )?;
        tracing::trace!("container side configured");
        let spoofchk_mac = link.mac.filter(|_| cfg.macspoofchk);
        add_firewall_elements(
            &fw,
            net,
            cfg,
            &leased.ips,
            (&host_if, spoofchk_mac),
            &mut rollback,
        )?;
        tracing::trace!("container's firewall elements added");
        publish_ports(&fw, call, cfg, &leased.ips, &mut rollback)?;
        let kept = attachment::keep(
            Finish::new(call, &ns, c, rollback).holding(lock),
            Made {
                driver: DriverKind::Bridge,
                host_ifname: Some(host_if.clone()),
                bridge: Some(cfg.bridge.clone()),
                mac: link.mac,
                macspoofchk: cfg.macspoofchk,
                ips: leased.ips.iter().map(|i| i.address).collect(),
            },
        )?;
        let (dns, parked) = kept.announce_carrying(
            call.conf.dns.clone().unwrap_or(leased.dns),
            Some(fw.socket_fd()),
        );
        // tetherd keeps a reference to the socket: dropping ours flushes nothing (see Firewall).
        if !parked {
            fw.release_in_background();
        }
        Ok(CniResult {
            interfaces: vec![
                result_interface(&cfg.bridge, br.mac),
                result_interface(&host_if, Some(host_mac)),
                sandbox_interface(call, ifname, link.mac, link.mtu),
            ],
            ips: leased
                .ips
                .iter()
                .map(|i| IpConfig {
                    address: i.address,
                    gateway: if cfg.is_gateway {
                        gateway_of(i)
                    } else {
                        i.gateway
                    },
                    interface: Some(2),
                })
                .collect(),
            routes,
            dns,
        })
    }

    fn del(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        let t = target(call);
        let net = call.conf.name.as_str();
        let records = RecordDir::for_network(net);
        let record = records.read(t.container_id, t.ifname)?;

        // Deleting the host end removes the pair; no need to enter the (maybe gone) container namespace.
        let host_if = record
            .as_ref()
            .and_then(|r| r.host_ifname.clone())
            .unwrap_or_else(|| host_veth_name(t.container_id, t.ifname));

        // Addresses to drop from the firewall: the record's, else prevResult's.
        let mut addrs: Vec<IpAddr> = record
            .as_ref()
            .map(|r| r.ips.iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        if addrs.is_empty() {
            if let Ok(Some(prev)) = call.prev_result() {
                addrs = prev.ips.iter().map(|i| i.address.ip()).collect();
            }
        }

        // The veth delete goes first, from a child process (see LinkReaper), before any lock or thread exists;
        // IPAM and firewall work then run while the kernel deletes it.
        // The firewall socket is opened first and handed to the reaper's child, which holds a copy: our close is
        // then not the last release, which would wait for an RCU grace period (see Firewall::release_in_background).
        let fw = Firewall::open()?;
        let reaper = LinkReaper::start(&host_if, Some(fw.socket_fd()))?;
        tracing::trace!("veth reaper started");
        if cfg.ports.is_some() {
            portmap::unpublish(&fw, call)?;
            tracing::trace!("ports unpublished");
        }
        c.ipam.del(call)?;
        {
            let _lock = NetworkLock::shared(net)?;
            if !addrs.is_empty() {
                fw.remove_container(net, &addrs)?;
            }
            if let Some(rec) = record.as_ref().filter(|r| r.macspoofchk) {
                remove_spoofchk_of(&fw, rec)?;
            }
            records.remove(t.container_id, t.ifname)?;
        }
        tracing::trace!("firewall elements and record removed");
        if record.as_ref().is_some_and(|r| r.dns) {
            // With our nf_tables socket: held by tetherd, neither our release nor the reaper's is the last.
            attachment_removed(net, t.container_id, t.ifname, Some(fw.socket_fd()));
            tracing::trace!("tetherd notified");
        }
        reaper.wait_unlisted()?;
        tracing::trace!("veth unlisted");
        teardown_if_unused(net, &records, |lock| {
            teardown(net, cfg, lock, Teardown::LastDel)
        })
    }

    fn check(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        let prev = check::prev_result(call)?;
        let ns = open_netns(call)?;
        let host_if = host_veth_name(call.container_id(), call.ifname());
        let host = Netlink::new()?;
        verify_port(&host, &cfg.bridge, &host_if)?;
        let inner = Netlink::in_netns(&ns)?;
        let addresses: Vec<IpNetwork> = prev.ips.iter().map(|i| i.address).collect();
        let link = container_iface::verify(&inner, call.ifname(), &addresses, &prev.routes)?;
        let fw = Firewall::open()?;
        let addrs: Vec<IpAddr> = addresses.iter().map(IpNetwork::ip).collect();
        if !fw.container_present(&call.conf.name, &addrs)? {
            return Err(mismatch(format!(
                "firewall state for the container's addresses is missing from table inet tether (network {})",
                call.conf.name
            )));
        }
        if let (true, Some(mac)) = (cfg.macspoofchk, link.mac) {
            if !fw.spoofchk_present(&host_if, mac.octets())? {
                return Err(mismatch(format!(
                    "macspoofchk entry for {host_if} ({mac}) is missing from table bridge tether"
                )));
            }
        }
        if cfg.ports.is_some() {
            portmap::verify(call, &prev)?;
        }
        c.ipam.check(call)
    }

    fn gc(&self, call: &Call, c: &Self::Config, valid: &[Attachment]) -> Result<(), Error> {
        let cfg = &c.net;
        let net = call.conf.name.as_str();
        c.ipam.gc(call, valid)?;
        if cfg.ports.is_some() {
            portmap::collect(call, valid)?;
        }
        let records = RecordDir::for_network(net);
        let host = Netlink::new()?;
        for rec in records.list()? {
            let keep = valid
                .iter()
                .any(|a| a.container_id == rec.container_id && a.ifname == rec.ifname);
            if keep {
                continue;
            }
            tracing::info!(container = %rec.container_id, ifname = %rec.ifname, "gc: removing stale attachment");
            let host_if = rec
                .host_ifname
                .clone()
                .unwrap_or_else(|| host_veth_name(&rec.container_id, &rec.ifname));
            host.delete_link_by_name(&host_if)?;
            let addrs: Vec<IpAddr> = rec.ips.iter().map(|i| i.ip()).collect();
            let _lock = NetworkLock::shared(net)?;
            let fw = Firewall::open()?;
            fw.remove_container(net, &addrs)?;
            if rec.macspoofchk {
                remove_spoofchk_of(&fw, &rec)?;
            }
            records.remove(&rec.container_id, &rec.ifname)?;
            if rec.dns {
                attachment_removed(net, &rec.container_id, &rec.ifname, None);
            }
        }
        teardown_if_unused(net, &records, |lock| {
            teardown(net, cfg, lock, Teardown::LastDel)
        })
    }

    fn status(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        c.ipam.status(call)
    }
}

fn remove_spoofchk_of(fw: &Firewall, rec: &AttachmentRecord) -> Result<(), Error> {
    let (Some(port), Some(mac)) = (rec.host_ifname.as_deref(), rec.mac) else {
        return Ok(());
    };
    fw.remove_spoofchk(port, mac.octets()).map_err(Error::from)
}

/// Undo of a bridge this ADD created: removed only while no port hangs on it, since a concurrent ADD of
/// the same network may have joined it in the meantime.
pub(crate) fn remove_bridge_if_unused(
    host: &impl LinkOps,
    name: &str,
    index: u32,
) -> Result<(), String> {
    let links = host.links().map_err(|e| e.to_string())?;
    if links.iter().any(|l| l.master == Some(index)) {
        return Ok(());
    }
    host.delete_link_by_name(name)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The network's teardown (see `driver::teardown`): its chains and sets go at once (one netlink transaction),
/// then its bridge when tether made it. After the last DEL the bridge delete (~20 ms of kernel time, mostly RCU
/// grace periods) goes on in a child that inherits the lock and the firewall socket, so DEL returns while the
/// next first ADD of the network still waits for it.
pub fn teardown(
    net: &str,
    cfg: &BridgeConfig,
    lock: NetworkLock,
    how: Teardown,
) -> Result<(), Error> {
    let fw = Firewall::open()?;
    fw.remove_network(net)?;
    match how {
        Teardown::LastDel => delete_bridge_in_background(&cfg.bridge, (lock, fw)),
        Teardown::NetworkRm {
            bridge_in_use: false,
        } => delete_unused_bridge(&cfg.bridge)?,
        Teardown::NetworkRm {
            bridge_in_use: true,
        } => {}
    }
    Ok(())
}
