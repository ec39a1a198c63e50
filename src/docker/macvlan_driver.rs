//! The network driver `tether-macvlan`: one macvlan child of the network's parent link per endpoint, made in
//! the host namespace for Docker to move into the container (tether-macvlan's link step, `link::macvlan`,
//! and its explanations of the kernel's refusals). No bridge, no firewall: the containers sit on the parent's
//! network, so `-p` means nothing here, as with Docker's own macvlan driver.

use serde_json::{json, Value};

use super::bridge_driver::mac_reply;
use super::options::MacvlanOptions;
use super::protocol::{CreateEndpointRequest, CreateNetworkRequest};
use super::records::{short, DockerDriver, DockerState, EndpointRecord, NetworkRecord};
use crate::driver::macvlan::{
    creation_error, resolve, MasterSpec, Parent, VlanPlan, VlanRegistry, VlanUser,
};
use crate::driver::veth_name::host_veth_name;
use crate::error::Error;
use crate::link::{MacAddr, MacvlanMode, MacvlanSpec, Netlink};

pub fn create_network(state: &DockerState, req: &CreateNetworkRequest) -> Result<Value, Error> {
    if state.network(&req.network_id)?.is_some() {
        return Ok(json!({}));
    }
    let opts = MacvlanOptions::from_docker(&req.options)?;
    let gateways = req.gateways()?;
    let host = Netlink::new()?;
    let spec = MasterSpec {
        name: opts.parent.clone(),
        vlan: None,
    };
    let name = format!("docker-{}", short(&req.network_id));
    let user = vlan_user(&name, &req.network_id);
    let parent = match resolve(&host, &spec, "the host", true)? {
        Parent::Link(link) => link.name,
        // As Docker's macvlan driver: `eth0.10` is made when missing and goes with the network. The
        // registry counts this network as one user beside tether's CNI networks, and never records (so
        // never deletes) a sub-interface someone else made.
        Parent::Vlan {
            name: vlan,
            lower,
            id,
            ..
        } => {
            let plan = VlanPlan {
                name: &vlan,
                lower_index: lower.index,
                id,
            };
            VlanRegistry::new().acquire(&host, &plan, &lower.name, &user)?;
            vlan
        }
    };
    let written = state.write_network(&NetworkRecord {
        id: req.network_id.clone(),
        driver: DockerDriver::Macvlan,
        name: name.clone(),
        bridge: String::new(),
        bridge_created: false,
        gateways,
        masquerade: false,
        icc: true,
        mtu: opts.mtu,
        internal: opts.internal,
        parent: Some(parent.clone()),
        macvlan_mode: Some(opts.mode.as_str().to_string()),
        overlay: None,
    });
    if let Err(e) = written {
        let _ = VlanRegistry::new().release(&host, &user);
        return Err(e);
    }
    tracing::info!(network = short(&req.network_id), parent, mode = %opts.mode, "docker: macvlan network created");
    Ok(json!({}))
}

/// The network itself as the user of its 802.1Q parent in tether's VLAN registry.
fn vlan_user<'a>(name: &'a str, network_id: &'a str) -> VlanUser<'a> {
    VlanUser {
        network: name,
        container_id: network_id,
        ifname: "docker-network",
    }
}

fn parent_of(net: &NetworkRecord) -> Result<(&str, MacvlanMode), Error> {
    let parent = net
        .parent
        .as_deref()
        .ok_or_else(|| Error::io(format!("network {} has no parent", short(&net.id))))?;
    let mode = net
        .macvlan_mode
        .as_deref()
        .unwrap_or("bridge")
        .parse()
        .map_err(|e| Error::io(format!("network {}: {e}", short(&net.id))))?;
    Ok((parent, mode))
}

pub fn create_endpoint(state: &DockerState, req: &CreateEndpointRequest) -> Result<Value, Error> {
    let net = state.known_network(&req.network_id)?;
    let (parent, mode) = parent_of(&net)?;
    let iface = req.interface.clone().unwrap_or_default();
    let addresses = iface.addresses()?;
    let asked = iface.mac()?;
    let name = format!("tm{}", &host_veth_name(&req.endpoint_id, "docker")[2..]);
    let mac = asked.unwrap_or_else(|| MacAddr::from_name(&name));
    let host = Netlink::new()?;
    let parent_link = host.link_by_name(parent)?.ok_or_else(|| {
        Error::config(format!(
            "parent {parent} of network {} is gone; bring it back or create the network again",
            short(&net.id)
        ))
    })?;
    if host.link_by_name(&name)?.is_some() {
        host.delete_link_by_name(&name)?; // a leftover of a CreateEndpoint that died half-way
    }
    host.add_macvlan(&MacvlanSpec {
        name: &name,
        parent_index: parent_link.index,
        mode,
        netns: None,
        mtu: net.mtu,
        mac: Some(mac),
        source_macs: &[],
    })
    .map_err(|e| creation_error(e, mode, parent, net.mtu))?;
    let written = state.write_endpoint(&EndpointRecord {
        id: req.endpoint_id.clone(),
        network_id: net.id.clone(),
        host_if: name.clone(),
        peer_if: name.clone(),
        addresses,
        mac,
        ports: Vec::new(),
    });
    if let Err(e) = written {
        let _ = host.delete_link_by_name(&name);
        return Err(e);
    }
    Ok(mac_reply(asked, mac))
}

/// The child, wherever Docker left it in the host namespace (after Leave it is back there), and the record.
pub fn delete_endpoint(state: &DockerState, endpoint_id: &str) -> Result<Value, Error> {
    if let Some(ep) = state.endpoint(endpoint_id)? {
        Netlink::new()?.delete_link_by_name(&ep.host_if)?;
        state.remove_endpoint(&ep.id)?;
    }
    Ok(json!({}))
}

pub fn delete_network(state: &DockerState, network_id: &str) -> Result<Value, Error> {
    for ep in state.endpoints()? {
        if ep.network_id == network_id {
            delete_endpoint(state, &ep.id)?;
        }
    }
    if let Some(net) = state.network(network_id)? {
        let host = Netlink::new()?;
        VlanRegistry::new().release(&host, &vlan_user(&net.name, &net.id))?;
    }
    state.remove_network(network_id)?;
    Ok(json!({}))
}
