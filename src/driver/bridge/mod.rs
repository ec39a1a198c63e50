//! tether-bridge: a Linux bridge per network, one veth per container, the gateway on the bridge, forwarding
//! and masquerade in nftables. Each step of an ADD registers its undo (see `Rollback`).

mod config;

use std::net::IpAddr;

use ipnetwork::IpNetwork;

pub use config::{BridgeConfig, DEFAULT_BRIDGE};

use crate::client::notify::{attachment_added, attachment_removed};
use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::{CniResult, Interface, IpConfig, Route};
use crate::driver::call_config::CallConfig;
use crate::driver::check::{self, mismatch};
use crate::driver::container_inputs::open_netns;
use crate::driver::interface_sysctls::quiet_ipv6_on_bridge_port_peer;
use crate::driver::rollback::Rollback;
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::firewall::{Firewall, NetworkRules};
use crate::link::delete_bridge_in_background;
use crate::link::LinkReaper;
use crate::link::{set_sysctl, IpFamily, LinkError, MacAddr, Netlink, VethSpec};
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

fn iface(name: &str, mac: Option<MacAddr>) -> Interface {
    Interface {
        name: name.to_string(),
        mac: mac.map(|m| m.to_string()),
        ..Interface::default()
    }
}

fn default_route(ip: &IpNetwork) -> IpNetwork {
    match ip {
        IpNetwork::V4(_) => "0.0.0.0/0".parse().unwrap(),
        IpNetwork::V6(_) => "::/0".parse().unwrap(),
    }
}

/// Put the gateway address on the bridge. Another address of the same subnet already there is an error
/// unless `forceAddress`, which replaces it (reference bridge semantics). The common case, gateway already in
/// place, costs one request answered EEXIST; the address listing (a dump of the whole namespace) happens
/// only when the gateway was just added, i.e. once per network.
fn ensure_gateway(
    host: &Netlink,
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

/// Creates the container's veth pair, host end down. A host veth of that name already there is a leftover of an
/// earlier ADD of the same container that crashed half-way: it is removed and the create tried once more. It is
/// looked for only after EEXIST, so the common case pays no lookup.
fn create_port_veth(host: &Netlink, spec: &VethSpec<'_>, ifname: &str) -> Result<(), Error> {
    let explain = |e: LinkError| match e {
        LinkError::Exists { .. } => Error::config(format!(
            "interface {ifname} already exists in the container namespace; pick another CNI_IFNAME"
        )),
        other => Error::from(other),
    };
    match host.add_veth_down(spec) {
        Err(LinkError::Exists { op, object }) => {
            if host.delete_link_by_name(spec.host_name)? {
                host.add_veth_down(spec).map_err(explain)
            } else {
                Err(explain(LinkError::Exists { op, object }))
            }
        }
        other => other.map_err(explain),
    }
}

/// Turns IPv6 off on a bridge port before it comes up. The port only carries frames for the bridge (bridged IPv6
/// is untouched), but with IPv6 on, each port adds a link-local address and three routes to the host's IPv6
/// table, and the kernel walks that whole table whenever a port goes down: with 1000 containers, every DEL paid
/// ~2 ms for it. Best effort: on a host without IPv6 there is nothing to turn off.
fn disable_ipv6_on_port(port: &str) {
    if let Err(e) = set_sysctl(&format!("net/ipv6/conf/{port}/disable_ipv6"), "1") {
        tracing::debug!(port, error = %e, "could not turn IPv6 off on the bridge port");
    }
}

fn enable_forwarding(ips: &[IpConfig]) -> Result<(), Error> {
    if ips.iter().any(|i| i.address.is_ipv4()) {
        set_sysctl("net/ipv4/ip_forward", "1")?;
    }
    if ips.iter().any(|i| i.address.is_ipv6()) {
        set_sysctl("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

impl Plugin for BridgePlugin {
    type Error = Error;
    type Config = CallConfig<BridgeConfig>;

    fn config(&self, call: &Call) -> Result<Self::Config, Error> {
        CallConfig::with_ipam(call, BridgeConfig::from_json(&call.conf.raw)?)
    }

    fn add(&self, call: &Call, c: &Self::Config) -> Result<CniResult, Error> {
        let (cfg, dns, ipam) = (&c.net, &c.dns, &c.ipam);
        let names = c.names.clone();
        let t = target(call);
        let mac = call.mac;
        let ns = open_netns(call)?;
        let net = call.conf.name.as_str();
        let host = Netlink::new()?;

        // IPAM first: a config it refuses must leave nothing behind, not even a bridge.
        let mut rollback = Rollback::new();
        let leased = ipam.add(call)?;
        rollback.push("ipam lease", || ipam.del(call).map_err(|e| e.to_string()));
        if leased.ips.is_empty() {
            return Err(Error::config(format!(
                "IPAM plugin of network {net} returned no address; check its ranges"
            )));
        }

        // Shared from before the bridge is ensured until the record is written: a last DEL's teardown (exclusive)
        // never removes the bridge or chains this ADD is joining, and waits for it.
        let fw = Firewall::open()?;
        let lock = NetworkLock::shared(net)?;
        let (br, bridge_created) = host.ensure_bridge_noting_creation(
            &cfg.bridge,
            cfg.mtu,
            MacAddr::from_name(&cfg.bridge),
        )?;
        if bridge_created {
            let (host_ref, name, index) = (&host, cfg.bridge.as_str(), br.index);
            rollback.push("bridge", move || {
                remove_bridge_if_unused(host_ref, name, index)
            });
        }
        if cfg.promisc_mode {
            host.set_promisc(br.index, true)?;
        }

        if cfg.is_gateway {
            for ip in &leased.ips {
                if let Some(gw) = gateway_of(ip) {
                    let gw_net = IpNetwork::new(gw, ip.address.prefix())
                        .expect("prefix from a valid network");
                    if gw.is_ipv6() {
                        // A bridge created while IPv6 was off on the host has no IPv6 config until enabled.
                        let _ =
                            set_sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", cfg.bridge), "0");
                    }
                    ensure_gateway(&host, br.index, gw_net, cfg.force_address, &cfg.bridge)?;
                }
            }
            enable_forwarding(&leased.ips)?;
        } else if cfg.ip_masq {
            enable_forwarding(&leased.ips)?;
        }

        let host_if = host_veth_name(t.container_id, t.ifname);
        // Derived from the (unique) veth name: known without reading the link back, stable across a re-ADD.
        let host_mac = MacAddr::from_name(&host_if);
        let spec = VethSpec {
            host_name: &host_if,
            peer_name: t.ifname,
            peer_ns: &ns,
            mtu: cfg.mtu,
            peer_mac: mac,
            host_mac: Some(host_mac),
            host_master: Some(br.index),
        };
        // The host end is created down: IPv6 goes off before it comes up (see disable_ipv6_on_port).
        create_port_veth(&host, &spec, t.ifname)?;
        let host_ref = &host;
        let doomed = host_if.clone();
        rollback.push("veth pair", move || {
            host_ref
                .delete_link_by_name(&doomed)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        disable_ipv6_on_port(&host_if);
        host.set_up_by_name(&host_if)?;
        if cfg.hairpin_mode || !cfg.icc {
            // Port options need the index; only these configs pay for reading the link back.
            let port = host
                .link_by_name(&host_if)?
                .ok_or_else(|| Error::io(format!("host veth {host_if} vanished")))?;
            if cfg.hairpin_mode {
                host.set_hairpin(port.index, true)?;
            }
            if !cfg.icc {
                // An isolated bridge port forwards only to non-isolated ports (the bridge itself, i.e. the
                // gateway), so neighbours cannot talk while egress and published ports keep working.
                host.set_isolated(port.index, true)?;
            }
        }

        // Container side: a netlink socket opened inside the namespace (docs/design.md §5).
        let inner = Netlink::in_netns(&ns)?;
        let link = inner.link_by_name(t.ifname)?.ok_or_else(|| {
            Error::io(format!(
                "veth peer {} vanished from the container",
                t.ifname
            ))
        })?;
        for ip in &leased.ips {
            inner.add_address(link.index, ip.address, !cfg.enable_dad)?;
        }
        let addresses: Vec<IpNetwork> = leased.ips.iter().map(|i| i.address).collect();
        quiet_ipv6_on_bridge_port_peer(&inner, link.index, &addresses);
        inner.set_up(link.index)?;

        let mut routes: Vec<Route> = Vec::new();
        if cfg.is_default_gateway {
            for ip in &leased.ips {
                if let Some(gw) = gateway_of(ip) {
                    let dst = default_route(&ip.address);
                    if routes.iter().any(|r| r.dst == dst) {
                        continue;
                    }
                    inner.add_route(dst, Some(gw), Some(link.index), None)?;
                    routes.push(Route::new(dst, Some(gw)));
                }
            }
        }
        for r in &leased.routes {
            if cfg.is_default_gateway && r.dst.prefix() == 0 {
                continue; // already routed through the bridge gateway above
            }
            let gw = r.gw.or_else(|| {
                leased
                    .ips
                    .iter()
                    .find(|i| i.address.is_ipv4() == r.dst.is_ipv4())
                    .and_then(gateway_of)
            });
            inner.add_route(r.dst, gw, Some(link.index), r.mtu)?;
            routes.push(r.clone());
        }

        let addrs: Vec<IpAddr> = leased.ips.iter().map(|i| i.address.ip()).collect();
        let own_resolver = dns.container_holds_resolver(&ns);
        {
            fw.ensure_network(&NetworkRules {
                name: net.to_string(),
                bridge: cfg.bridge.clone(),
                masquerade: cfg.ip_masq,
                isolation: true,
            })?;
            fw.add_container(net, &addrs)?;
            let added = addrs.clone();
            rollback.push("firewall elements", move || {
                Firewall::open()
                    .and_then(|fw| fw.remove_container(net, &added))
                    .map_err(|e| e.to_string())
            });
            if let (true, Some(mac)) = (cfg.macspoofchk, link.mac) {
                fw.add_spoofchk(&host_if, mac.octets())?;
                let port = host_if.clone();
                rollback.push("macspoofchk elements", move || {
                    Firewall::open()
                        .and_then(|fw| fw.remove_spoofchk(&port, mac.octets()))
                        .map_err(|e| e.to_string())
                });
            }

            let records = RecordDir::for_network(net);
            records.write(&AttachmentRecord {
                network: net.to_string(),
                container_id: t.container_id.to_string(),
                ifname: t.ifname.to_string(),
                driver: DriverKind::Bridge,
                netns: call.env.netns.as_ref().map(|p| p.display().to_string()),
                netns_id: ns.id().ok(),
                host_ifname: Some(host_if.clone()),
                bridge: Some(cfg.bridge.clone()),
                mac: link.mac,
                macspoofchk: cfg.macspoofchk,
                ips: leased.ips.iter().map(|i| i.address).collect(),
                name: names.name,
                aliases: names.aliases,
                dns: dns.enabled,
                internal: dns.internal,
                own_resolver,
            })?;
        }
        drop(lock);
        rollback.commit();
        fw.close();
        // After the record is on disk and the network lock is released (tetherd reads the records). Without
        // a tetherd, the container keeps the runtime's resolvers rather than a resolver that never answers.
        let resolver_up = dns.enabled && attachment_added(net, t.container_id, t.ifname);

        let sandbox = call.env.netns.as_ref().map(|p| p.display().to_string());
        let result = CniResult {
            interfaces: vec![
                iface(&cfg.bridge, br.mac),
                iface(&host_if, Some(host_mac)),
                Interface {
                    sandbox,
                    mtu: Some(link.mtu),
                    ..iface(t.ifname, link.mac)
                },
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
            dns: dns.result_dns(
                resolver_up && !own_resolver,
                call.conf.dns.clone().unwrap_or(leased.dns),
            ),
        };
        Ok(result)
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
        // The firewall socket is opened before the fork so the child holds a copy: our close is then not the
        // last release, which would wait for an RCU grace period (see Firewall::release_in_background).
        let fw = Firewall::open()?;
        let reaper = LinkReaper::start(&host_if)?;
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
        if record.as_ref().is_some_and(|r| r.dns) {
            attachment_removed(net, t.container_id, t.ifname);
        }
        reaper.wait_unlisted()?;
        teardown_if_unused(net, &cfg.bridge, &records)
    }

    fn check(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        let t = target(call);
        let prev = check::prev_result(call)?;
        let ns = open_netns(call)?;
        let host = Netlink::new()?;
        let br = host
            .link_by_name(&cfg.bridge)?
            .ok_or_else(|| mismatch(format!("bridge {} is missing", cfg.bridge)))?;
        let host_if = host_veth_name(t.container_id, t.ifname);
        let veth = host
            .link_by_name(&host_if)?
            .ok_or_else(|| mismatch(format!("host veth {host_if} is missing")))?;
        if veth.master != Some(br.index) {
            return Err(mismatch(format!(
                "host veth {host_if} is not attached to bridge {}",
                cfg.bridge
            )));
        }

        let inner = Netlink::in_netns(&ns)?;
        let link = inner.link_by_name(t.ifname)?.ok_or_else(|| {
            mismatch(format!(
                "interface {} is missing in the container",
                t.ifname
            ))
        })?;
        let have = inner.addresses(link.index)?;
        for ip in &prev.ips {
            if !have
                .iter()
                .any(|a| a.ip() == ip.address.ip() && a.prefix() == ip.address.prefix())
            {
                return Err(mismatch(format!(
                    "address {} is missing on {} in the container",
                    ip.address, t.ifname
                )));
            }
        }
        for r in &prev.routes {
            let family_routes = inner.routes(if r.dst.is_ipv4() {
                IpFamily::V4
            } else {
                IpFamily::V6
            })?;
            let found = family_routes
                .iter()
                .any(|have| have.dst == r.dst && (r.gw.is_none() || have.gw == r.gw));
            if !found {
                return Err(mismatch(format!(
                    "route to {} is missing in the container",
                    r.dst
                )));
            }
        }
        let addrs: Vec<IpAddr> = prev.ips.iter().map(|i| i.address.ip()).collect();
        let fw = Firewall::open()?;
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
        c.ipam.check(call)
    }

    fn gc(&self, call: &Call, c: &Self::Config, valid: &[Attachment]) -> Result<(), Error> {
        let cfg = &c.net;
        let net = call.conf.name.as_str();
        c.ipam.gc(call, valid)?;
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
                attachment_removed(net, &rec.container_id, &rec.ifname);
            }
        }
        teardown_if_unused(net, &cfg.bridge, &records)
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
fn remove_bridge_if_unused(host: &Netlink, name: &str, index: u32) -> Result<(), String> {
    let links = host.links().map_err(|e| e.to_string())?;
    if links.iter().any(|l| l.master == Some(index)) {
        return Ok(());
    }
    host.delete_link_by_name(name)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// After the last container of a network leaves, its chains and sets go, then its bridge when tether made it.
/// Re-checked under the exclusive lock, which an ADD holds shared from before it ensures the bridge until its
/// record is written. The chains go at once (one netlink transaction); the bridge delete (~20 ms of kernel
/// time, mostly RCU grace periods) goes on in a child that inherits the lock and the firewall socket, so DEL
/// returns while the next first ADD of the network still waits for it.
fn teardown_if_unused(net: &str, bridge: &str, records: &RecordDir) -> Result<(), Error> {
    if !records.is_empty() {
        return Ok(());
    }
    let lock = NetworkLock::exclusive(net)?;
    if !records.is_empty() {
        return Ok(());
    }
    let fw = Firewall::open()?;
    fw.remove_network(net)?;
    delete_bridge_in_background(bridge, (lock, fw));
    Ok(())
}
