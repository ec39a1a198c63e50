//! The network driver `tether-overlay`: tether-overlay's network across hosts for standalone dockerds, each
//! with its tetherd control plane on one cluster store. The steps are tether-overlay's own
//! (`driver::overlay`), split the way Docker asks: CreateNetwork makes the network's bridge and VXLAN device
//! (and the facts the control plane reads), the IPAM driver `tether` leases each endpoint's address from this
//! host's blocks of the subnet (so two hosts never hand out one address), CreateEndpoint makes the veth on
//! the bridge and writes the attachment record the control plane publishes, DeleteNetwork tears it all down.
//!
//! Egress: Join names no gateway, so Docker connects the container to its own gateway network
//! (`docker_gwbridge`, Docker's bridge driver, masqueraded) as it does for its own overlay. The same
//! `-o vni=N` on every host names the network across them (Docker's network ids differ per host).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{json, Value};

use super::bridge_driver::{attach_endpoint_veth, mac_reply, veth_names};
use super::docker_user;
use super::options::overlay_config;
use super::protocol::{CreateEndpointRequest, CreateNetworkRequest};
use super::records::{short, DockerDriver, DockerState, EndpointRecord, NetworkRecord};
use crate::client::notify::{attachment_added, attachment_removed};
use crate::driver::overlay::{
    allocate_addresses, default_mtu, ensure_network_devices, release_address, resolve_underlay,
    teardown, OverlayConfig,
};
use crate::driver::rollback::Rollback;
use crate::error::Error;
use crate::ipam::store::{LeaseHolder, Store};
use crate::link::{MacAddr, Netlink};
use crate::state::attachment::AttachmentRecord;
use crate::state::overlay::{claims_lock_name, local_networks, OverlayDir, LEASE_STORE};
use crate::state::{DriverKind, NetworkLock, RecordDir};

/// The endpoint's interface name in tether's records (Docker names it `ethN` in the container itself).
const IFNAME: &str = "eth0";

/// tether's name of the network, the same on every host: `docker-vni<N>`.
fn network_name(cfg: &OverlayConfig) -> String {
    format!("docker-vni{}", cfg.vni)
}

fn config_of(net: &NetworkRecord) -> Result<OverlayConfig, Error> {
    let conf = net.overlay.as_ref().ok_or_else(|| {
        Error::io(format!(
            "network {} has no overlay config in its record",
            short(&net.id)
        ))
    })?;
    OverlayConfig::from_json(conf)
}

pub fn create_network(state: &DockerState, req: &CreateNetworkRequest) -> Result<Value, Error> {
    if state.network(&req.network_id)?.is_some() {
        return Ok(json!({}));
    }
    let pool = req
        .ipv4_data
        .iter()
        .flatten()
        .map(|d| d.pool.as_str())
        .find(|p| !p.is_empty() && *p != "0.0.0.0/0")
        .ok_or_else(|| {
            Error::config(
                "tether-overlay needs an IPv4 subnet: docker network create -d tether-overlay \
                 --ipam-driver tether --subnet 10.40.0.0/16 -o vni=N NAME",
            )
        })?;
    if req.ipv6_data.iter().flatten().any(|d| !d.pool.is_empty()) {
        return Err(Error::config(
            "tether-overlay is IPv4 only; create the network without --ipv6",
        ));
    }
    let (conf, internal) = overlay_config(&req.options, pool)?;
    let cfg = OverlayConfig::from_json(&conf)?;
    let name = network_name(&cfg);
    // One VNI, one bridge and VXLAN device per host: a second network on them (Docker's or a CNI
    // network's) would lose them with the first one's teardown.
    if let Some(other) = local_networks(&crate::paths::state_dir())
        .into_iter()
        .find(|f| f.vni == cfg.vni)
    {
        return Err(Error::config(format!(
            "vni {} is taken on this host by overlay network {}; pick another -o vni",
            cfg.vni, other.network
        )));
    }
    let host = Netlink::new()?;
    let (underlay, vtep) = resolve_underlay(&host, &cfg.underlay)?;
    let mtu = cfg
        .mtu
        .unwrap_or_else(|| default_mtu(underlay.mtu, vtep, cfg.encrypted));
    let made = NetworkLock::shared(&name)
        .map_err(Error::from)
        .and_then(|_lock| {
            let dir = OverlayDir::for_network(&name);
            ensure_network_devices(&host, &cfg, (&name, &dir), (&underlay, vtep), mtu)
        });
    let written = made.and_then(|_| {
        state.write_network(&NetworkRecord {
            id: req.network_id.clone(),
            driver: DockerDriver::Overlay,
            name: name.clone(),
            bridge: cfg.bridge.to_string(),
            bridge_created: true,
            // No gateway in Join: Docker's gateway network carries egress.
            gateways: Vec::new(),
            masquerade: false,
            icc: true,
            mtu: Some(mtu),
            internal,
            parent: None,
            macvlan_mode: None,
            overlay: Some(conf),
        })
    });
    if let Err(e) = written {
        // Whatever of the devices and facts was made goes (the teardown takes what is there).
        if let Ok(lock) = NetworkLock::exclusive(&name) {
            let _ = teardown(&name, &cfg, lock);
        }
        return Err(e);
    }
    docker_user::ensure();
    tracing::info!(network = short(&req.network_id), name, vni = cfg.vni, %vtep, "docker: overlay network created");
    Ok(json!({}))
}

/// The overlay network whose subnet is `pool`, if any: its addresses come from this host's blocks.
pub fn network_on_pool(
    state: &DockerState,
    pool: IpNetwork,
) -> Result<Option<NetworkRecord>, Error> {
    Ok(state.networks()?.into_iter().find(|n| {
        n.driver == DockerDriver::Overlay
            && config_of(n).is_ok_and(|c| c.pools.iter().any(|p| p.subnet == pool))
    }))
}

/// RequestAddress on an overlay network's pool: an address from one of this host's blocks (claimed through
/// the cluster store when they are full), leased under a key of its own until ReleaseAddress.
pub fn lease_address(net: &NetworkRecord) -> Result<IpNetwork, Error> {
    let cfg = config_of(net)?;
    let host = Netlink::new()?;
    let (_, vtep) = resolve_underlay(&host, &cfg.underlay)?;
    let key = lease_key()?;
    let dir = OverlayDir::for_network(&net.name);
    let _lock = NetworkLock::shared(&net.name)?;
    // Docker's overlay networks are IPv4 only (create refuses --ipv6): one pool, one address.
    allocate_addresses(&dir, &cfg, &net.name, vtep, (&key, IFNAME))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::config(format!("network {} has no subnet", net.name)))
}

/// A key no other lease of this host has: Docker names the endpoint only after the address is given.
fn lease_key() -> Result<String, Error> {
    let mac = MacAddr::random().map_err(|e| Error::io(e.to_string()))?;
    let hex: String = mac.octets().iter().map(|b| format!("{b:02x}")).collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok(format!("docker-{nanos:x}{hex}"))
}

/// ReleaseAddress of an overlay address: its lease goes (nothing to do when the network is gone already).
/// Whether `ip` was an overlay lease.
pub fn release_lease(net: &NetworkRecord, ip: IpAddr) -> Result<bool, Error> {
    let dir = OverlayDir::for_network(&net.name);
    let _lock = NetworkLock::exclusive(&claims_lock_name(&net.name))?;
    let Some(store) = Store::existing(dir.lease_data_dir(), LEASE_STORE)? else {
        return Ok(false);
    };
    // The store's lock is let go before `release_address` takes it again.
    let owner = store.lock()?.lease_owner(ip)?;
    let Some(LeaseHolder::Attachment(owner)) = owner else {
        return Ok(false);
    };
    release_address(&dir, owner.container_id(), owner.ifname())?;
    Ok(true)
}

pub fn create_endpoint(state: &DockerState, req: &CreateEndpointRequest) -> Result<Value, Error> {
    let net = state.known_network(&req.network_id)?;
    let cfg = config_of(&net)?;
    let iface = req.interface.clone().unwrap_or_default();
    let addresses = iface.addresses()?;
    let ips: Vec<IpNetwork> = addresses
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() && cfg.pools.iter().any(|p| p.contains(a.ip())))
        .collect();
    if ips.is_empty() || !leased_here(&net, &ips)? {
        return Err(Error::config(format!(
            "address {} of this endpoint was not handed out by tether's overlay blocks; create the \
             network with --ipam-driver tether (another IPAM driver hands out addresses other hosts use too)",
            iface.address
        )));
    }
    let asked = iface.mac()?;
    let (host_if, peer_if) = veth_names(&req.endpoint_id);
    let mac = asked.unwrap_or_else(|| MacAddr::from_name(&peer_if));
    let host = Netlink::new()?;
    let _lock = NetworkLock::shared(&net.name)?;
    let mut rollback = Rollback::new();
    attach_endpoint_veth(&host, &net, (&host_if, &peer_if), mac, false, &mut rollback)?;
    let container_id = req
        .endpoint_id
        .parse()
        .map_err(|e| Error::config(format!("endpoint id {}: {e}", short(&req.endpoint_id))))?;
    // What the control plane publishes to the other hosts (their FDB and neighbour entries).
    RecordDir::for_network(&net.name).write(&AttachmentRecord {
        network: net.name.clone(),
        container_id,
        ifname: IFNAME.parse().expect("a valid interface name"),
        driver: DriverKind::Overlay,
        netns: None,
        netns_id: None,
        host_ifname: Some(host_if.parse().expect("veth names are interface names")),
        bridge: Some(cfg.bridge.clone()),
        mac: Some(mac),
        macspoofchk: false,
        ips: ips.clone(),
        name: None,
        aliases: Vec::new(),
        dns: false,
        internal: net.internal,
        own_resolver: false,
        remote: None,
    })?;
    let records_net = net.name.clone();
    let endpoint = req.endpoint_id.clone();
    rollback.push("attachment record", move || {
        RecordDir::for_network(&records_net)
            .remove(&endpoint, IFNAME)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    state.write_endpoint(&EndpointRecord {
        id: req.endpoint_id.clone(),
        network_id: net.id.clone(),
        host_if,
        peer_if,
        addresses,
        mac,
        ports: Vec::new(),
    })?;
    rollback.commit();
    attachment_added(&net.name, &req.endpoint_id, IFNAME, &[]);
    Ok(mac_reply(asked, mac))
}

/// Whether every address in `ips` is a lease of this host's overlay blocks.
fn leased_here(net: &NetworkRecord, ips: &[IpNetwork]) -> Result<bool, Error> {
    let dir = OverlayDir::for_network(&net.name);
    let Some(store) = Store::existing(dir.lease_data_dir(), LEASE_STORE)? else {
        return Ok(false);
    };
    let locked = store.lock()?;
    for ip in ips {
        if locked.lease_owner(ip.ip())?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The veth pair, the attachment record (the control plane withdraws it from the other hosts) and the
/// endpoint's record. The address stays leased until Docker's ReleaseAddress.
pub fn remove_endpoint(
    state: &DockerState,
    net: &NetworkRecord,
    ep: &EndpointRecord,
) -> Result<(), Error> {
    Netlink::new()?.delete_link_by_name(&ep.host_if)?;
    RecordDir::for_network(&net.name).remove(&ep.id, IFNAME)?;
    attachment_removed(&net.name, &ep.id, IFNAME, None);
    state.remove_endpoint(&ep.id)
}

/// Endpoints Docker could not delete go first; then tether-overlay's own teardown: the VXLAN device, the
/// bridge and the network's overlay state (its leases; the control plane releases its blocks).
pub fn delete_network(state: &DockerState, network_id: &str) -> Result<Value, Error> {
    let Some(net) = state.network(network_id)? else {
        return Ok(json!({}));
    };
    for ep in state.endpoints()? {
        if ep.network_id == net.id {
            remove_endpoint(state, &net, &ep)?;
        }
    }
    let cfg = config_of(&net)?;
    teardown(&net.name, &cfg, NetworkLock::exclusive(&net.name)?)?;
    state.remove_network(&net.id)?;
    if state.networks()?.is_empty() {
        docker_user::remove();
    }
    tracing::info!(
        network = short(network_id),
        name = net.name,
        "docker: overlay network deleted"
    );
    Ok(json!({}))
}
