//! The network driver `tether`: a Linux bridge per Docker network, a veth pair per endpoint (Docker moves
//! one end into the container and configures it), isolation and masquerade in `inet tether`, published
//! ports in tether's port maps. The steps are tether-bridge's own (`driver::bridge`), applied in the order
//! Docker asks for them: CreateNetwork makes the bridge and the network's chains, CreateEndpoint the veth
//! pair and the firewall elements, ProgramExternalConnectivity the port maps.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{json, Value};

use super::docker_user;
use super::options::BridgeOptions;
use super::protocol::{
    CreateEndpointRequest, CreateNetworkRequest, DockerPortBinding, ExternalConnectivityRequest,
};
use super::records::{short, DockerDriver, DockerState, EndpointRecord, NetworkRecord};
use crate::driver::bridge::{ensure_network_bridge, remove_bridge_if_unused, NetworkBridge};
use crate::driver::bridge_port::{self, BridgePort};
use crate::driver::portmap::SavedMapping;
use crate::driver::rollback::Rollback;
use crate::driver::veth_name::host_veth_name;
use crate::endpoint::{choose_host_ports, HostPorts, PortRange, PortSpec, TakenPorts};
use crate::error::Error;
use crate::firewall::{Firewall, NetworkRules, PortMapping, PortmapOptions, Protocol};
use crate::link::{set_sysctl, MacAddr, Netlink, TETHER_BRIDGE_GROUP};
use crate::netns::NetNs;
use crate::state::NetworkLock;

/// Where Docker puts the `-p` mappings in ProgramExternalConnectivity's options.
const PORTMAP_OPTION: &str = "com.docker.network.portmap";

pub fn capabilities() -> Value {
    json!({ "Scope": "local", "ConnectivityScope": "local" })
}

pub fn create_network(state: &DockerState, req: &CreateNetworkRequest) -> Result<Value, Error> {
    if state.network(&req.network_id)?.is_some() {
        return Ok(json!({}));
    }
    let opts = BridgeOptions::from_docker(&req.options)?;
    let name = format!("docker-{}", short(&req.network_id));
    let bridge = opts
        .bridge
        .clone()
        .unwrap_or_else(|| format!("tb-{}", short(&req.network_id)));
    let gateways = req.gateways()?;
    let masquerade = opts.masquerade && !opts.internal;
    let host = Netlink::new()?;
    let fw = Firewall::open()?;
    let _lock = NetworkLock::exclusive(&name)?;
    let mut rollback = Rollback::new();
    let (_, created) = ensure_network_bridge(
        &host,
        &NetworkBridge {
            name: &bridge,
            mtu: opts.mtu,
            promisc: false,
            gateways: &gateways,
            force_address: false,
            forward: &gateways,
        },
        &mut rollback,
    )?;
    fw.ensure_network(&NetworkRules {
        name: name.clone(),
        bridge: bridge.clone(),
        masquerade,
        isolation: true,
    })?;
    let fw_name = name.clone();
    rollback.push("network firewall", move || {
        Firewall::open()
            .and_then(|fw| fw.remove_network(&fw_name))
            .map_err(|e| e.to_string())
    });
    docker_user::ensure();
    state.write_network(&NetworkRecord {
        id: req.network_id.clone(),
        driver: DockerDriver::Bridge,
        name,
        bridge: bridge.clone(),
        bridge_created: created,
        gateways,
        masquerade,
        icc: opts.icc,
        mtu: opts.mtu,
        internal: opts.internal,
        parent: None,
        macvlan_mode: None,
        overlay: None,
    })?;
    rollback.commit();
    tracing::info!(network = short(&req.network_id), "docker: network created");
    Ok(json!({}))
}

pub fn delete_network(state: &DockerState, network_id: &str) -> Result<Value, Error> {
    let Some(net) = state.network(network_id)? else {
        return Ok(json!({}));
    };
    // Endpoints Docker could not delete (tetherd was down, dockerd restarted) go with their network.
    for ep in state.endpoints()? {
        if ep.network_id == net.id {
            remove_endpoint(state, &net, &ep)?;
        }
    }
    let _lock = NetworkLock::exclusive(&net.name)?;
    Firewall::open()?.remove_network(&net.name)?;
    let host = Netlink::new()?;
    if let Some(br) = host.link_by_name(&net.bridge)? {
        if net.bridge_created && br.group == TETHER_BRIDGE_GROUP {
            remove_bridge_if_unused(&host, &net.bridge, br.index).map_err(Error::io)?;
        } else {
            for gw in &net.gateways {
                host.del_address(br.index, *gw)?;
            }
        }
    }
    state.remove_network(&net.id)?;
    if state.networks()?.is_empty() {
        docker_user::remove();
    }
    tracing::info!(network = short(network_id), "docker: network deleted");
    Ok(json!({}))
}

/// The veth names of an endpoint: the bridge port `tv…` (tether's usual host-side name) and `tc…`, the end
/// Docker moves into the container.
pub fn veth_names(endpoint_id: &str) -> (String, String) {
    let host_if = host_veth_name(endpoint_id, "docker");
    let peer_if = format!("tc{}", &host_if[2..]);
    (host_if.into_string(), peer_if)
}

/// An endpoint's veth pair `(host_if, peer_if)` on the network's bridge, both ends made in tetherd's
/// namespace: Docker moves the peer into the container itself. Its undo goes on `rollback`.
pub fn attach_endpoint_veth<'a>(
    host: &'a Netlink,
    net: &NetworkRecord,
    (host_if, peer_if): (&str, &str),
    mac: MacAddr,
    isolated: bool,
    rollback: &mut Rollback<'a>,
) -> Result<(), Error> {
    let bridge = host.link_by_name(&net.bridge)?.ok_or_else(|| {
        Error::io(format!(
            "bridge {} of network {} is gone; remove the network and create it again",
            net.bridge,
            short(&net.id)
        ))
    })?;
    let here = NetNs::current()?;
    bridge_port::attach(
        host,
        &BridgePort {
            bridge: bridge.index,
            host_ifname: host_if,
            ifname: peer_if,
            netns: &here,
            mtu: net.mtu,
            mac: Some(mac),
            hairpin: false,
            isolated,
        },
        rollback,
    )?;
    Ok(())
}

pub fn create_endpoint(state: &DockerState, req: &CreateEndpointRequest) -> Result<Value, Error> {
    let net = state.known_network(&req.network_id)?;
    let iface = req.interface.clone().unwrap_or_default();
    let addresses = iface.addresses()?;
    let mac = iface.mac()?;
    let (host_if, peer_if) = veth_names(&req.endpoint_id);
    let peer_mac = mac.unwrap_or_else(|| MacAddr::from_name(&peer_if));

    let host = Netlink::new()?;
    let fw = Firewall::open()?;
    let _lock = NetworkLock::shared(&net.name)?;
    let mut rollback = Rollback::new();
    attach_endpoint_veth(
        &host,
        &net,
        (&host_if, &peer_if),
        peer_mac,
        !net.icc,
        &mut rollback,
    )?;
    let ips: Vec<IpAddr> = addresses.iter().map(IpNetwork::ip).collect();
    fw.add_container(&net.name, &ips)?;
    let (fw_net, added) = (net.name.clone(), ips.clone());
    rollback.push("firewall elements", move || {
        Firewall::open()
            .and_then(|fw| fw.remove_container(&fw_net, &added))
            .map_err(|e| e.to_string())
    });
    state.write_endpoint(&EndpointRecord {
        id: req.endpoint_id.clone(),
        network_id: net.id.clone(),
        host_if,
        peer_if,
        addresses,
        mac: peer_mac,
        ports: Vec::new(),
    })?;
    rollback.commit();
    Ok(mac_reply(mac, peer_mac))
}

/// CreateEndpoint's answer: Docker takes a MAC from the driver only when it gave none.
pub fn mac_reply(asked: Option<MacAddr>, made: MacAddr) -> Value {
    match asked {
        Some(_) => json!({ "Interface": {} }),
        None => json!({ "Interface": { "MacAddress": made.to_string() } }),
    }
}

/// Everything of one endpoint goes: published ports, firewall elements, the veth pair, the record.
fn remove_endpoint(
    state: &DockerState,
    net: &NetworkRecord,
    ep: &EndpointRecord,
) -> Result<(), Error> {
    let fw = Firewall::open()?;
    let ports = ep.port_mappings();
    if !ports.is_empty() {
        fw.remove_ports(&ports)?;
    }
    {
        let _lock = NetworkLock::shared(&net.name)?;
        fw.remove_container(&net.name, &ep.ips())?;
    }
    // Deleting either end removes the pair; after Leave Docker has moved the peer back, after a crash the
    // peer went with the container's namespace and the host end with it.
    Netlink::new()?.delete_link_by_name(&ep.host_if)?;
    state.remove_endpoint(&ep.id)
}

pub fn delete_endpoint(
    state: &DockerState,
    network_id: &str,
    endpoint_id: &str,
) -> Result<Value, Error> {
    delete_endpoint_by(state, (network_id, endpoint_id), remove_endpoint)
}

/// DeleteEndpoint with the driver's `remove`; when the network's record is gone, the veth and the record.
pub fn delete_endpoint_by(
    state: &DockerState,
    (network_id, endpoint_id): (&str, &str),
    remove: fn(&DockerState, &NetworkRecord, &EndpointRecord) -> Result<(), Error>,
) -> Result<Value, Error> {
    let Some(ep) = state.endpoint(endpoint_id)? else {
        return Ok(json!({}));
    };
    match state.network(network_id)? {
        Some(net) => remove(state, &net, &ep)?,
        None => {
            Netlink::new()?.delete_link_by_name(&ep.host_if)?;
            state.remove_endpoint(&ep.id)?;
        }
    }
    Ok(json!({}))
}

fn protocol_of(number: u8) -> Result<Protocol, Error> {
    match number {
        6 => Ok(Protocol::Tcp),
        17 => Ok(Protocol::Udp),
        132 => Ok(Protocol::Sctp),
        other => Err(Error::config(format!(
            "published port with IP protocol {other}: use tcp, udp or sctp"
        ))),
    }
}

/// Docker's bindings as `-p` specs: a host port, a host range (first free one) or none (any free port).
fn specs_of(bindings: &[DockerPortBinding]) -> Result<Vec<PortSpec>, Error> {
    bindings
        .iter()
        .map(|b| {
            let host_ip = match b.host_ip.as_str() {
                "" => None,
                text => Some(text.parse::<IpAddr>().map_err(|_| {
                    Error::config(format!(
                        "host address {text:?} of a published port is not an IP address"
                    ))
                })?),
            };
            let host_ports = match (b.host_port, b.host_port_end) {
                (0, _) => HostPorts::Random,
                (first, last) if last > first => HostPorts::FirstFreeOf(PortRange { first, last }),
                (port, _) => HostPorts::Exact(PortRange {
                    first: port,
                    last: port,
                }),
            };
            Ok(PortSpec {
                host_ip,
                host_ports,
                container_ports: PortRange {
                    first: b.port,
                    last: b.port,
                },
                protocol: protocol_of(b.proto)?,
            })
        })
        .collect()
}

pub fn program_external_connectivity(
    state: &DockerState,
    req: &ExternalConnectivityRequest,
) -> Result<Value, Error> {
    let net = state.known_network(&req.network_id)?;
    let mut ep = state.known_endpoint(&req.endpoint_id)?;
    let bindings: Vec<DockerPortBinding> =
        match req.options.as_ref().and_then(|o| o.get(PORTMAP_OPTION)) {
            Some(Value::Null) | None => Vec::new(),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| Error::config(format!("{PORTMAP_OPTION}: {e}")))?,
        };
    if bindings.is_empty() || !ep.ports.is_empty() {
        return Ok(json!({}));
    }
    // Ports other endpoints hold are not free, even while nothing listens on them.
    let mut taken: TakenPorts = state
        .endpoints()?
        .iter()
        .flat_map(EndpointRecord::port_mappings)
        .map(|m| (m.protocol.name().to_string(), m.host_port))
        .collect();
    let published = choose_host_ports(&specs_of(&bindings)?, &mut taken)
        .map_err(|e| Error::config(e.to_string()))?;
    let mut maps = Vec::new();
    for p in &published {
        let host_ip = p.host_ip.filter(|ip| !ip.is_unspecified());
        let want_v4 = host_ip.is_none_or(|ip| ip.is_ipv4());
        for container_ip in ep.ips() {
            if container_ip.is_ipv4() != want_v4 && host_ip.is_some() {
                continue;
            }
            maps.push(PortMapping {
                host_ip,
                host_port: p.host_port,
                container_ip,
                container_port: p.container_port,
                protocol: p.protocol.parse().map_err(Error::config)?,
            });
        }
    }
    let fw = Firewall::open()?;
    fw.ensure_portmap(&PortmapOptions::default())?;
    if maps.iter().any(|m| m.container_ip.is_ipv4()) {
        // 127.0.0.1:hostPort from the host itself, as tether-portmap does.
        set_sysctl(&format!("net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
    }
    fw.add_ports(&maps)?;
    ep.ports = maps.iter().map(SavedMapping::from).collect();
    if let Err(e) = state.write_endpoint(&ep) {
        let _ = fw.remove_ports(&maps);
        return Err(e);
    }
    tracing::info!(
        endpoint = short(&ep.id),
        ports = maps.len(),
        "docker: ports published"
    );
    Ok(json!({}))
}

pub fn revoke_external_connectivity(
    state: &DockerState,
    endpoint_id: &str,
) -> Result<Value, Error> {
    let Some(mut ep) = state.endpoint(endpoint_id)? else {
        return Ok(json!({}));
    };
    let maps = ep.port_mappings();
    if !maps.is_empty() {
        Firewall::open()?.remove_ports(&maps)?;
        ep.ports.clear();
        state.write_endpoint(&ep)?;
    }
    Ok(json!({}))
}

/// After a restart: make sure Docker's FORWARD DROP still lets tether's networks through (a restarted
/// dockerd may have made DOCKER-USER anew).
pub fn restore(state: &DockerState) -> Result<(), Error> {
    if !state.networks()?.is_empty() {
        docker_user::ensure();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_pair_up() {
        let (h, p) = veth_names("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        assert!(h.starts_with("tv") && p.starts_with("tc"));
        assert_eq!(h[2..], p[2..]);
        assert!(h.len() <= 15 && p.len() <= 15);
    }

    #[test]
    fn bindings_become_specs() {
        let b = |json: &str| serde_json::from_str::<DockerPortBinding>(json).unwrap();
        let specs = specs_of(&[
            b(r#"{"Proto":6,"Port":80,"HostPort":8080,"HostPortEnd":8080}"#),
            b(r#"{"Proto":17,"Port":53,"HostIP":"127.0.0.1","HostPort":0}"#),
            b(r#"{"Proto":6,"Port":81,"HostPort":9000,"HostPortEnd":9010}"#),
        ])
        .unwrap();
        assert_eq!(
            specs[0].host_ports,
            HostPorts::Exact(PortRange {
                first: 8080,
                last: 8080
            })
        );
        assert_eq!(specs[1].host_ports, HostPorts::Random);
        assert_eq!(specs[1].protocol, Protocol::Udp);
        assert_eq!(
            specs[2].host_ports,
            HostPorts::FirstFreeOf(PortRange {
                first: 9000,
                last: 9010
            })
        );
        assert!(specs_of(&[b(r#"{"Proto":1,"Port":1}"#)]).is_err());
    }
}
