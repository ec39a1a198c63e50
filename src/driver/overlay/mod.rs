//! tether-overlay: one L2 network across hosts. On each host the network has a bridge (`tob<vni>`) and a
//! VXLAN device (`tvx<vni>`, learning off, UDP 4789) on it; each container gets a veth on that bridge with
//! an address from one of this host's blocks of the subnet, and a second veth on the gateway bridge for
//! egress. Remote containers' MACs and addresses are programmed into the VXLAN device by tetherd's control
//! plane (`crate::overlay`) from the attachment records this plugin writes. ADD waits for it only when it
//! takes a new address block (the members agree on it first, `block_agreement`), and at most
//! [`AGREEMENT_WAIT`]; DEL never waits. The host-side steps (`resolve_underlay`, `default_mtu`,
//! `ensure_network_devices`, `allocate_addresses`, `release_address`, `teardown`) are public: the Docker
//! driver `tether-overlay` (`crate::docker`) calls them one by one, in the order Docker asks.

mod block_agreement;
mod config;
pub mod encryption;
mod gateway_bridge;
pub use gateway_bridge::egress_address;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

pub use block_agreement::AGREEMENT_WAIT;
pub use config::{
    OverlayConfig, Underlay, DEFAULT_GATEWAY_BRIDGE, VXLAN_OVERHEAD, VXLAN_OVERHEAD_V6,
};
pub use gateway_bridge::{egress_host_veth, egress_ifname};

use block_agreement::{agreement_wait, no_agreement, start_key, wait_for_agreement, Agreement};

use crate::client::notify::{attachment_removed, endpoint_removed};
use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::{CniResult, Interface, IpConfig, Route};
use crate::driver::attachment::{self, result_interface, sandbox_interface, Finish, Made, Notify};
use crate::driver::bridge_port::{self, BridgePort};
use crate::driver::call_config::CallConfig;
use crate::driver::check::mismatch;
use crate::driver::container_iface::{
    self, container_link, DefaultRoute, IfaceConfig, Ipv6Quieting,
};
use crate::driver::container_inputs::open_netns;
use crate::driver::rollback::Rollback;
use crate::driver::teardown::teardown_if_unused;
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::ipam::{allocate, release, IpamError, Store};
use crate::link::{vxlan_name, LinkInfo, MacAddr, Netlink, VxlanSpec};
use crate::netns::NetNs;
use crate::state::overlay::{
    claims_lock_name, ipam_config, local_networks, next_free_block, now_ms, requires_agreement,
    Claim, ClaimState, NetworkFacts, OverlayDir, Pool, LEASE_STORE,
};
use crate::state::{DriverKind, NetworkLock, RecordDir};

pub struct OverlayPlugin;

/// The underlay link and this host's VTEP address on it.
pub fn resolve_underlay(host: &Netlink, underlay: &Underlay) -> Result<(LinkInfo, IpAddr), Error> {
    let first_v4 = |link: &LinkInfo| -> Result<Option<IpAddr>, Error> {
        Ok(host
            .addresses(link.index)?
            .into_iter()
            .map(|a| a.ip())
            .find(IpAddr::is_ipv4))
    };
    match underlay {
        Underlay::Interface(name) => {
            let link = host.link_by_name(name)?.ok_or_else(|| {
                Error::config(format!("underlay interface {name} not found; set `underlay` to an existing interface or address"),
                )
            })?;
            let vtep = first_v4(&link)?.ok_or_else(|| {
                Error::config(format!("underlay interface {name} has no IPv4 address to use as VTEP; add one or set `underlay` to an address"),
                )
            })?;
            Ok((link, vtep))
        }
        Underlay::Address(ip) => {
            for link in host.links()? {
                if host.addresses(link.index)?.iter().any(|a| a.ip() == *ip) {
                    return Ok((link, *ip));
                }
            }
            Err(Error::config(format!("no interface holds underlay address {ip}; set `underlay` to an address of this host"),
            ))
        }
        Underlay::DefaultRoute => {
            let link = host.default_route_interface()?.ok_or_else(|| {
                Error::config("this host has no default route to pick the overlay underlay from; set `underlay`",
                )
            })?;
            let vtep = first_v4(&link)?.ok_or_else(|| {
                Error::config(format!(
                    "default-route interface {} has no IPv4 address; set `underlay`",
                    link.name
                ))
            })?;
            Ok((link, vtep))
        }
    }
}

/// One address of each of the network's families (IPv4 first), each from its own blocks.
pub fn allocate_addresses(
    dir: &OverlayDir,
    cfg: &OverlayConfig,
    net: &str,
    vtep: IpAddr,
    (container_id, ifname): (&str, &str),
) -> Result<Vec<IpNetwork>, Error> {
    cfg.pools
        .iter()
        .enumerate()
        .map(|(slot, &pool)| {
            allocate_address(dir, cfg, (pool, slot), (net, vtep), (container_id, ifname))
        })
        .collect()
}

/// An address of `pool` for `container_id`/`ifname` from this host's usable blocks of it, taking a new
/// block when they are full (or there is none yet): agreed through tetherd when it answers within
/// [`AGREEMENT_WAIT`], unconfirmed otherwise (see `block_agreement`). Takes the network's claims lock for
/// each step, never while waiting for the members. `slot`: the pool's index (its round-robin position).
fn allocate_address(
    dir: &OverlayDir,
    cfg: &OverlayConfig,
    (pool, slot): (Pool, usize),
    (net, vtep): (&str, IpAddr),
    (container_id, ifname): (&str, &str),
) -> Result<IpNetwork, Error> {
    let deadline = std::time::Instant::now() + agreement_wait();
    // Blocks a peer's better claim took from us during this ADD: its claim may not have reached us yet.
    let mut given_up = BTreeSet::new();
    let mut without_agreement = false;
    loop {
        let step = {
            let _lock = NetworkLock::exclusive(&claims_lock_name(net))?;
            allocate_or_claim(
                dir,
                cfg,
                (pool, slot, vtep),
                (container_id, ifname),
                &given_up,
                without_agreement,
            )?
        };
        let block = match step {
            Step::Allocated(address) => return Ok(address),
            Step::Pending(block) => block,
        };
        match wait_for_agreement(dir, net, block, deadline) {
            Agreement::Usable => {}
            Agreement::GivenUp => {
                given_up.insert(block);
            }
            // The store (etcd) decides every block: no guess, the runtime retries later. The pending
            // claim stays, so tetherd confirms it once the store answers and the retry finds it usable.
            Agreement::NoAnswer if requires_agreement(&crate::paths::state_dir()) => {
                return Err(no_agreement(net, block))
            }
            Agreement::NoAnswer => without_agreement = true,
        }
    }
}

enum Step {
    Allocated(IpNetwork),
    /// This host's claim of the block waits for the members.
    Pending(IpNetwork),
}

/// One step of [`allocate_address`], under the claims lock.
fn allocate_or_claim(
    dir: &OverlayDir,
    cfg: &OverlayConfig,
    (pool, slot, vtep): (Pool, usize, IpAddr),
    (container_id, ifname): (&str, &str),
    given_up: &BTreeSet<IpNetwork>,
    without_agreement: bool,
) -> Result<Step, Error> {
    let store = Store::open(dir.lease_data_dir(), LEASE_STORE)?;
    let mut claims = dir.claims()?;
    loop {
        if let Some(conf) = ipam_config((pool, slot), &claims.claims, dir.lease_data_dir())? {
            match allocate(&conf, &store, container_id, ifname, &[]) {
                Ok(mut got) if !got.is_empty() => {
                    return Ok(Step::Allocated(got.remove(0).address))
                }
                Ok(_) => {}
                Err(IpamError::RangeExhausted { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let pending = claims
            .claims
            .iter_mut()
            .find(|c| c.state == ClaimState::Pending && !c.lost && pool.holds_block(&c.block));
        match (pending, without_agreement) {
            // Another ADD (or this one) already proposed a block: wait for that one.
            (Some(c), false) => return Ok(Step::Pending(c.block)),
            (Some(c), true) => {
                tracing::error!(block = %c.block, host = %vtep,
                    "no agreement on this overlay address block from tetherd in time (tetherd down or \
                     slow, or no majority of the configured hosts up); using it UNCONFIRMED: another \
                     host may hand out the same addresses until tetherd settles the claims");
                c.state = ClaimState::Unconfirmed;
                dir.write_claims(&claims)?;
                continue;
            }
            (None, _) => {}
        }
        // Every block we hold is full: claim one that neither we nor any peer we heard of holds.
        let mut taken: BTreeSet<_> = claims.claims.iter().map(|c| c.block).collect();
        taken.extend(given_up.iter().copied());
        taken.extend(dir.peer_claims()?.into_iter().map(|c| c.block));
        let block = next_free_block(pool, &start_key(cfg.start_block_key.as_deref(), vtep), &taken).ok_or_else(|| {
            Error::no_free_block(format!(
                "overlay subnet {} has no free /{} block left for this host; widen `subnet` or shrink `{}`",
                pool.subnet, pool.block_prefix, if pool.subnet.is_ipv4() { "blockSize" } else { "blockSizeV6" }
            ))
        })?;
        let state = if without_agreement {
            tracing::error!(%block, host = %vtep,
                "claiming overlay address block UNCONFIRMED (no agreement from tetherd in time)");
            ClaimState::Unconfirmed
        } else {
            tracing::info!(%block, host = %vtep, "proposing overlay address block");
            ClaimState::Pending
        };
        claims.claims.push(Claim {
            block,
            claimed_at_ms: now_ms(),
            lost: false,
            state,
        });
        dir.write_claims(&claims)?;
        if state == ClaimState::Pending {
            return Ok(Step::Pending(block));
        }
    }
}

pub fn release_address(
    dir: &OverlayDir,
    container_id: &str,
    ifname: &str,
) -> Result<Vec<IpAddr>, Error> {
    match Store::existing(dir.lease_data_dir(), LEASE_STORE)? {
        Some(store) => release(&store, container_id, ifname).map_err(Error::from),
        None => Ok(Vec::new()),
    }
}

/// The container MTU from the underlay device's: VXLAN's 50 bytes (70 over an IPv6 underlay), and ESP's
/// worst case when encrypted.
pub fn default_mtu(underlay_mtu: u32, vtep: IpAddr, encrypted: bool) -> u32 {
    let vxlan = if vtep.is_ipv6() {
        VXLAN_OVERHEAD_V6
    } else {
        VXLAN_OVERHEAD
    };
    let esp = if encrypted {
        encryption::ESP_OVERHEAD
    } else {
        0
    };
    underlay_mtu.saturating_sub(vxlan + esp).max(68)
}

/// The network's bridge and VXLAN device on this host (made by its first ADD, shared by the next), and the
/// facts tetherd's control plane reads about them.
pub fn ensure_network_devices(
    host: &Netlink,
    cfg: &OverlayConfig,
    (net, dir): (&str, &OverlayDir),
    (underlay, vtep): (&LinkInfo, IpAddr),
    mtu: u32,
) -> Result<LinkInfo, Error> {
    if cfg.encrypted {
        // Closed before the VXLAN device can send or receive anything, so even the first ADD is protected.
        encryption::close_port(vtep, cfg.vxlan_port)?;
    }
    let br = host.ensure_bridge(&cfg.bridge, Some(mtu), MacAddr::from_name(&cfg.bridge))?;
    let vxlan = host.ensure_vxlan(&VxlanSpec {
        name: vxlan_name(cfg.vni),
        vni: cfg.vni,
        local: vtep,
        underlay: underlay.index,
        port: cfg.vxlan_port,
        mtu: Some(mtu),
        master: Some(br.index),
    })?;
    let mut facts = NetworkFacts {
        network: net.to_string(),
        vni: cfg.vni,
        subnet: None,
        block_prefix: 0,
        subnet6: None,
        block_prefix6: None,
        vtep,
        bridge: cfg.bridge.to_string(),
        vxlan: vxlan.name.clone(),
        port: cfg.vxlan_port,
        encrypted: cfg.encrypted,
    };
    facts.set_pools(&cfg.pools);
    dir.write_facts(&facts)?;
    Ok(br)
}

/// The container's overlay interface: its address of each family, no default route (egress, when on,
/// brings that).
fn configure_container_side(
    ns: &NetNs,
    ifname: &str,
    addresses: &[IpNetwork],
) -> Result<(), Error> {
    let inner = Netlink::in_netns(ns)?;
    let link = container_link(&inner, ifname)?;
    let addresses: Vec<(IpNetwork, Option<IpAddr>)> =
        addresses.iter().map(|a| (*a, None)).collect();
    container_iface::configure(
        &inner,
        link.index,
        &IfaceConfig {
            addresses: &addresses,
            skip_dad: true,
            ipv6: Ipv6Quieting::BridgePortPeer,
            default_route: DefaultRoute::None,
            routes: &[],
            report_gateway: false,
        },
    )
    .map(drop)
}

/// With `egress`, the container's second veth on the gateway bridge; its whole undo is registered first, so a
/// failure half-way through is undone too.
fn attach_egress<'a>(
    host: &'a Netlink,
    ns: &NetNs,
    cfg: &'a OverlayConfig,
    call: &'a Call,
    rollback: &mut Rollback<'a>,
) -> Result<Option<gateway_bridge::Egress>, Error> {
    if !cfg.egress {
        return Ok(None);
    }
    let (container_id, ifname) = (call.container_id(), call.ifname());
    rollback.push("egress attachment", move || {
        gateway_bridge::detach(host, cfg, container_id, ifname).map_err(|e| e.to_string())
    });
    gateway_bridge::attach(host, ns, cfg, (container_id, ifname), rollback).map(Some)
}

/// The egress interfaces, addresses and default routes (one per family) in the ADD's result.
fn add_egress_to_result(
    result: &mut CniResult,
    call: &Call,
    cfg: &OverlayConfig,
    e: &gateway_bridge::Egress,
) {
    result
        .interfaces
        .push(result_interface(&cfg.gateway_bridge, None));
    result
        .interfaces
        .push(result_interface(&e.host_ifname, None));
    result.interfaces.push(Interface {
        mtu: None,
        ..sandbox_interface(call, &e.ifname, e.mac, 0)
    });
    for &(address, gateway) in &e.addresses {
        result.ips.push(IpConfig {
            address,
            gateway: Some(gateway),
            interface: Some(5),
        });
        let default: IpNetwork = if gateway.is_ipv4() {
            "0.0.0.0/0".parse().expect("literal")
        } else {
            "::/0".parse().expect("literal")
        };
        result.routes.push(Route::new(default, Some(gateway)));
    }
}

impl Plugin for OverlayPlugin {
    type Error = Error;
    /// No IPAM section: the overlay leases from its own blocks.
    type Config = CallConfig<OverlayConfig, ()>;

    fn config(&self, call: &Call) -> Result<Self::Config, Error> {
        CallConfig::with(call, OverlayConfig::from_json(&call.conf.raw)?, ())
    }

    fn add(&self, call: &Call, c: &Self::Config) -> Result<CniResult, Error> {
        let cfg = &c.net;
        let (container_id, ifname, net) =
            (call.container_id(), call.ifname(), call.conf.name.as_str());
        let ns = open_netns(call)?;
        let host = Netlink::new()?;
        let (underlay, vtep) = resolve_underlay(&host, &cfg.underlay)?;
        let mtu = cfg
            .mtu
            .unwrap_or_else(|| default_mtu(underlay.mtu, vtep, cfg.encrypted));
        let dir = OverlayDir::for_network(net);
        let mac = match call.mac {
            Some(mac) => mac,
            None => MacAddr::random().map_err(|e| Error::io(e.to_string()))?,
        };
        // Held for the whole ADD: the last DEL's teardown (exclusive) must not remove the devices or the
        // lease store between this ADD's allocation and its record.
        let net_lock = NetworkLock::shared(net)?;
        let mut rollback = Rollback::new();
        let dir_ref = &dir;
        // Pushed first: a dual-stack ADD whose second family fails gives the first family's address back.
        rollback.push("overlay lease", move || {
            let _claims =
                NetworkLock::exclusive(&claims_lock_name(net)).map_err(|e| e.to_string())?;
            release_address(dir_ref, container_id, ifname)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        let addresses = allocate_addresses(&dir, cfg, net, vtep, (container_id, ifname))?;
        let br = ensure_network_devices(&host, cfg, (net, &dir), (&underlay, vtep), mtu)?;
        let host_if = host_veth_name(container_id, ifname);
        let port = BridgePort {
            bridge: br.index,
            host_ifname: &host_if,
            ifname,
            netns: &ns,
            mtu: Some(mtu),
            mac: Some(mac),
            hairpin: false,
            isolated: false,
        };
        let host_mac = bridge_port::attach(&host, &port, &mut rollback)?;
        configure_container_side(&ns, ifname, &addresses)?;
        let egress = attach_egress(&host, &ns, cfg, call, &mut rollback)?;
        let kept = attachment::keep(
            Finish::new(call, &ns, c, rollback)
                .holding(net_lock)
                .notifying(Notify::Always),
            Made {
                driver: DriverKind::Overlay,
                host_ifname: Some(host_if.clone()),
                bridge: Some(cfg.bridge.clone()),
                mac: Some(mac),
                macspoofchk: false,
                // The overlay addresses only: what the control plane publishes and DNS answers.
                ips: addresses.clone(),
            },
        )?;
        // Without a tetherd the container keeps the runtime's resolvers (and the overlay converges when
        // tetherd starts); with one, it asks the embedded resolver, which knows every host's containers.
        let dns = kept.announce(call.conf.dns.clone().unwrap_or_default());
        let mut result = CniResult {
            interfaces: vec![
                result_interface(&cfg.bridge, br.mac),
                result_interface(&host_if, Some(host_mac)),
                sandbox_interface(call, ifname, Some(mac), mtu),
            ],
            ips: addresses
                .iter()
                .map(|&address| IpConfig {
                    address,
                    gateway: None,
                    interface: Some(2),
                })
                .collect(),
            routes: Vec::new(),
            dns,
        };
        if let Some(e) = &egress {
            add_egress_to_result(&mut result, call, cfg, e);
        }
        Ok(result)
    }

    fn del(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        let (container_id, ifname) = (call.container_id(), call.ifname());
        let net = call.conf.name.as_str();
        let dir = OverlayDir::for_network(net);
        let records = RecordDir::for_network(net);
        let host = Netlink::new()?;

        // Deleting the host end removes the pair; the container namespace may be gone already.
        host.delete_link_by_name(&host_veth_name(container_id, ifname))?;
        gateway_bridge::detach(&host, cfg, container_id, ifname)?;
        {
            let _lock = NetworkLock::exclusive(&claims_lock_name(net))?;
            release_address(&dir, container_id, ifname)?;
        }
        records.remove(container_id, ifname)?;
        teardown_if_unused(net, &records, |lock| teardown(net, cfg, lock))?;
        attachment_removed(net, container_id, ifname, None);
        Ok(())
    }

    fn check(&self, call: &Call, c: &Self::Config) -> Result<(), Error> {
        let cfg = &c.net;
        let host = Netlink::new()?;
        for name in [
            cfg.bridge.to_string(),
            vxlan_name(cfg.vni),
            host_veth_name(call.container_id(), call.ifname()).into_string(),
        ] {
            if host.link_by_name(&name)?.is_none() {
                return Err(mismatch(format!("{name} is missing on the host")));
            }
        }
        let inner = Netlink::in_netns(&open_netns(call)?)?;
        // The overlay address of prevResult (the egress one is the gateway bridge's).
        let addresses: Vec<IpNetwork> = call
            .prev_result()?
            .map(|prev| prev.ips.iter().map(|i| i.address).collect())
            .unwrap_or_default();
        let addresses: Vec<IpNetwork> = addresses
            .into_iter()
            .filter(|a| cfg.holds(a.ip()))
            .collect();
        container_iface::verify(&inner, call.ifname(), &addresses, &[])?;
        let dir = OverlayDir::for_network(&call.conf.name);
        for address in &addresses {
            check_block_of(&dir, address.ip()).map_err(mismatch)?;
        }
        Ok(())
    }

    fn gc(&self, call: &Call, c: &Self::Config, valid: &[Attachment]) -> Result<(), Error> {
        let cfg = &c.net;
        let net = call.conf.name.as_str();
        let dir = OverlayDir::for_network(net);
        let records = RecordDir::for_network(net);
        let host = Netlink::new()?;
        for rec in records.list()? {
            if valid
                .iter()
                .any(|a| a.container_id == rec.container_id && a.ifname == rec.ifname)
            {
                continue;
            }
            tracing::info!(container = %rec.container_id, ifname = %rec.ifname, "gc: removing stale overlay attachment");
            host.delete_link_by_name(&host_veth_name(&rec.container_id, &rec.ifname))?;
            gateway_bridge::detach(&host, cfg, &rec.container_id, &rec.ifname)?;
            {
                let _lock = NetworkLock::exclusive(&claims_lock_name(net))?;
                release_address(&dir, &rec.container_id, &rec.ifname)?;
            }
            records.remove(&rec.container_id, &rec.ifname)?;
        }
        teardown_if_unused(net, &records, |lock| teardown(net, cfg, lock))?;
        endpoint_removed(net);
        Ok(())
    }
}

/// Whether the block `address` came from is sound: a block lost to another host's claim fails CHECK (a
/// container of that host may have the same address); one still unconfirmed is logged.
fn check_block_of(dir: &OverlayDir, address: IpAddr) -> Result<(), String> {
    let claims = dir.claims().unwrap_or_default();
    let Some(claim) = claims.claims.iter().find(|c| c.block.contains(address)) else {
        return Ok(());
    };
    if claim.lost {
        return Err(format!(
            "address {address} comes from block {} that another host's claim won; a container there may \
             have the same address: remove this container and add it again",
            claim.block
        ));
    }
    if claim.state == ClaimState::Unconfirmed {
        tracing::warn!(%address, block = %claim.block,
            "address comes from a block not yet agreed by the other hosts (taken while tetherd could not \
             ask them); tetherd confirms it when it can");
    }
    Ok(())
}

/// The network's teardown (see `driver::teardown`): the VXLAN device, the bridge and the network's overlay
/// state go (its blocks are then released by the control plane), under the claims lock too.
pub fn teardown(net: &str, cfg: &OverlayConfig, _lock: NetworkLock) -> Result<(), Error> {
    let _claims = NetworkLock::exclusive(&claims_lock_name(net))?;
    let host = Netlink::new()?;
    host.delete_link_by_name(&vxlan_name(cfg.vni))?;
    host.delete_link_by_name(&cfg.bridge)?;
    let dir = OverlayDir::for_network(net);
    let facts = dir.facts().ok().flatten();
    dir.remove().map_err(|e| {
        Error::io(format!(
            "removing overlay state {} failed: {e}",
            dir.path().display()
        ))
    })?;
    if let Some(facts) = facts.filter(|f| f.encrypted) {
        let state_dir = crate::paths::state_dir();
        let port_still_encrypted = local_networks(&state_dir)
            .iter()
            .any(|other| other.encrypted && other.port == facts.port);
        if !port_still_encrypted {
            encryption::reopen_port(facts.vtep, facts.port)?;
        }
    }
    tracing::info!(
        network = net,
        "last overlay container left; removed its devices"
    );
    Ok(())
}

#[cfg(test)]
mod mtu_tests {
    use super::default_mtu;

    #[test]
    fn an_encrypted_network_leaves_room_for_esp_below_vxlan() {
        let (v4, v6) = ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        assert_eq!(default_mtu(1500, v4, false), 1450);
        assert_eq!(default_mtu(1500, v4, true), 1410);
        assert_eq!(default_mtu(1450, v4, true), 1360);
        assert_eq!(default_mtu(1500, v6, false), 1430);
        assert_eq!(default_mtu(1500, v6, true), 1390);
        assert_eq!(default_mtu(100, v4, true), 68, "never below IPv4's minimum");
    }
}
