//! tether-portmap: a chained plugin that publishes container ports on the host (DNAT, from other hosts,
//! from the host itself, from 127.0.0.1 and hairpin) through the firewall's port maps. What ADD published
//! is kept in the state directory, so DEL removes exactly that even when the runtime sends no runtimeConfig.

mod config;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::CniResult;
use crate::driver::check::{self, mismatch};
use crate::error::Error;
use crate::firewall::{Firewall, PortMapping, PortmapOptions, Protocol};
use crate::link::set_sysctl;
use crate::state_file;

pub struct PortmapPlugin;

/// A published port as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedMapping {
    host_ip: Option<IpAddr>,
    host_port: u16,
    container_ip: IpAddr,
    container_port: u16,
    protocol: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortmapRecord {
    container_id: String,
    ifname: String,
    mappings: Vec<SavedMapping>,
}

impl From<&PortMapping> for SavedMapping {
    fn from(m: &PortMapping) -> Self {
        SavedMapping {
            host_ip: m.host_ip,
            host_port: m.host_port,
            container_ip: m.container_ip,
            container_port: m.container_port,
            protocol: m.protocol.name().to_string(),
        }
    }
}

impl SavedMapping {
    pub fn to_mapping(&self) -> Option<PortMapping> {
        Some(PortMapping {
            host_ip: self.host_ip,
            host_port: self.host_port,
            container_ip: self.container_ip,
            container_port: self.container_port,
            protocol: self.protocol.parse::<Protocol>().ok()?,
        })
    }
}

fn record_path(network: &str, container_id: &str, ifname: &str) -> PathBuf {
    record_dir(network).join(format!("{container_id}.{ifname}.json"))
}

fn record_dir(network: &str) -> PathBuf {
    crate::paths::state_dir().join("portmap").join(network)
}

/// The attachment; `Env` has already checked both are present for ADD, CHECK and DEL.
fn ids(call: &Call) -> (&str, &str) {
    (call.container_id(), call.ifname())
}

/// The container's addresses and the host-side interface that leads to them (the first interface of the
/// previous result without a sandbox: the bridge, for tether-bridge and the reference bridge).
fn from_prev(prev: &CniResult) -> (Vec<IpAddr>, Option<String>) {
    let in_sandbox = |i: Option<usize>| {
        i.and_then(|i| prev.interfaces.get(i))
            .is_none_or(|iface| iface.sandbox.is_some())
    };
    let ips = prev
        .ips
        .iter()
        .filter(|ip| in_sandbox(ip.interface))
        .map(|ip| ip.address.ip())
        .collect();
    let host_if = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none())
        .map(|i| i.name.clone());
    (ips, host_if)
}

fn wanted_mappings(call: &Call, prev: &CniResult) -> Result<Vec<PortMapping>, Error> {
    let (ips, _) = from_prev(prev);
    config::expand(&call.conf.runtime_config.port_mappings, &ips)
}

/// The mappings DEL/CHECK act on: what ADD recorded, else what the runtime sends now.
fn recorded_or_wanted(call: &Call) -> Result<Vec<PortMapping>, Error> {
    let (cid, ifname) = ids(call);
    let rec: Option<PortmapRecord> =
        state_file::read_json(&record_path(&call.conf.name, cid, ifname))?;
    if let Some(rec) = rec {
        return Ok(rec
            .mappings
            .iter()
            .filter_map(SavedMapping::to_mapping)
            .collect());
    }
    match call.prev_result()? {
        Some(prev) => wanted_mappings(call, &prev),
        None => Ok(Vec::new()),
    }
}

/// The ports the runtime asks for (`portMappings`) published to the container's addresses `ips`, behind
/// `host_if` (the bridge), in one batch on `fw`, and recorded for DEL. Returns what was published, so a
/// caller that fails later can [`withdraw`] it. Shared by tether-portmap and by tether-bridge when it
/// declares the `portMappings` capability itself (one process for the whole chain).
pub fn publish(
    fw: &Firewall,
    call: &Call,
    opts: &PortmapOptions,
    ips: &[IpAddr],
    host_if: Option<&str>,
    hairpin: bool,
) -> Result<Vec<PortMapping>, Error> {
    let (cid, ifname) = ids(call);
    let maps = config::expand(&call.conf.runtime_config.port_mappings, ips)?;
    if maps.is_empty() {
        return Ok(maps);
    }
    refuse_mesh_ports(&maps)?;
    fw.ensure_portmap(opts)?;
    if let Some(bridge) = host_if {
        // 127.0.0.1:hostPort: the kernel drops loopback-sourced packets routed out of a non-loopback
        // interface unless route_localnet is on for it (IPv4 only; IPv6 has no such switch).
        if maps.iter().any(|m| m.container_ip.is_ipv4()) {
            set_sysctl(&format!("net/ipv4/conf/{bridge}/route_localnet"), "1")?;
        }
        if hairpin {
            fw.add_hairpin_interface(bridge)?;
        }
    }
    // One batch: a conflict refuses every mapping of this container, so nothing is half-published.
    fw.add_ports(&maps)?;
    let rec = PortmapRecord {
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
        mappings: maps.iter().map(SavedMapping::from).collect(),
    };
    if let Err(e) = state_file::write_json(&record_path(&call.conf.name, cid, ifname), &rec) {
        let _ = fw.remove_ports(&maps);
        return Err(Error::from(e));
    }
    Ok(maps)
}

/// Undoes a [`publish`] of this call's container whose ADD failed later.
pub fn withdraw(call: &Call, maps: &[PortMapping]) -> Result<(), Error> {
    let (cid, ifname) = ids(call);
    if !maps.is_empty() {
        Firewall::open()?.remove_ports(maps)?;
    }
    state_file::retire(&record_path(&call.conf.name, cid, ifname))?;
    Ok(())
}

/// DEL: removes what ADD published for this container (its record, else what the runtime sends now).
pub fn unpublish(fw: &Firewall, call: &Call) -> Result<(), Error> {
    let (cid, ifname) = ids(call);
    let maps = recorded_or_wanted(call)?;
    if !maps.is_empty() {
        // remove_ports deletes only entries still pointing at this container, so a DEL of a container
        // whose ADD was refused never unpublishes the holder's port.
        fw.remove_ports(&maps)?;
    }
    state_file::retire(&record_path(&call.conf.name, cid, ifname))?;
    Ok(())
}

/// CHECK: every port the runtime asks for is published to the addresses of `prev`.
pub fn verify(call: &Call, prev: &CniResult) -> Result<(), Error> {
    let maps = wanted_mappings(call, prev)?;
    if maps.is_empty() {
        return Ok(());
    }
    let present = Firewall::open().and_then(|fw| fw.ports_present(&maps))?;
    if !present {
        return Err(mismatch(format!(
            "published ports of container {} are missing from table inet tether",
            call.env.container_id.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

/// GC: removes the published ports of every container of the network not in `valid`.
pub fn collect(call: &Call, valid: &[Attachment]) -> Result<(), Error> {
    let dir = record_dir(&call.conf.name);
    let records: Vec<PortmapRecord> = state_file::list_json(&dir)?;
    if records.is_empty() {
        return Ok(());
    }
    let fw = Firewall::open()?;
    for rec in records {
        if valid
            .iter()
            .any(|a| a.container_id == rec.container_id && a.ifname == rec.ifname)
        {
            continue;
        }
        let maps: Vec<PortMapping> = rec
            .mappings
            .iter()
            .filter_map(SavedMapping::to_mapping)
            .collect();
        fw.remove_ports(&maps)?;
        state_file::retire(&record_path(
            &call.conf.name,
            &rec.container_id,
            &rec.ifname,
        ))?;
    }
    Ok(())
}

/// The options of a plugin's own config (`snat`, `masqAll`): tether-portmap's, or tether-bridge's when it
/// publishes ports itself.
pub fn options(raw: &serde_json::Value) -> Result<PortmapOptions, Error> {
    config::options(raw)
}

impl Plugin for PortmapPlugin {
    type Error = Error;
    type Config = PortmapOptions;

    fn config(&self, call: &Call) -> Result<PortmapOptions, Error> {
        config::options(&call.conf.raw)
    }

    fn add(&self, call: &Call, opts: &PortmapOptions) -> Result<CniResult, Error> {
        let prev = call.prev_result()?.ok_or_else(|| {
            Error::config("tether-portmap is a chained plugin: put it after an interface plugin (e.g. tether-bridge) in a conflist",
            )
        })?;
        if call.conf.runtime_config.port_mappings.is_empty() {
            return Ok(prev);
        }
        let (ips, host_if) = from_prev(&prev);
        let fw = Firewall::open()?;
        // Hairpin masquerade for bridges that are not tether networks (tether's own get it from their
        // network chains); adding it again is harmless.
        publish(&fw, call, opts, &ips, host_if.as_deref(), true)?;
        release(fw);
        Ok(prev)
    }

    fn del(&self, call: &Call, _: &PortmapOptions) -> Result<(), Error> {
        let fw = Firewall::open()?;
        unpublish(&fw, call)?;
        release(fw);
        Ok(())
    }

    fn check(&self, call: &Call, _: &PortmapOptions) -> Result<(), Error> {
        verify(call, &check::prev_result(call)?)
    }

    fn gc(&self, call: &Call, _: &PortmapOptions, valid: &[Attachment]) -> Result<(), Error> {
        collect(call, valid)
    }
}

/// A host port a service publishes through the routing mesh is the mesh's on every host address.
fn refuse_mesh_ports(maps: &[crate::firewall::PortMapping]) -> Result<(), Error> {
    use crate::state::service::ProtocolName;
    let mesh = crate::state::mesh::MeshDir::new(&crate::paths::state_dir());
    for m in maps {
        let protocol = match m.protocol {
            crate::firewall::Protocol::Tcp => ProtocolName::Tcp,
            crate::firewall::Protocol::Udp => ProtocolName::Udp,
            crate::firewall::Protocol::Sctp => ProtocolName::Sctp,
        };
        if let Some((service, publication)) = mesh.holder(protocol, m.host_port) {
            return Err(crate::firewall::FirewallError::PortInUse {
                host: m.host_side(),
                existing: format!(" by service {service}'s routing mesh (--publish {publication})"),
            }
            .into());
        }
    }
    Ok(())
}

/// Ends the plugin's nf_tables socket without a wait: a running tetherd keeps a reference to it (the
/// release of the last one waits out the kernel's pending destroy work holding the host's nf_tables lock,
/// and the next container's veth needs that lock); otherwise it is released from a forked child.
fn release(fw: Firewall) {
    if !crate::client::notify::park_socket(fw.socket_fd()) {
        fw.release_in_background();
    }
}
