//! A CNI conflist of a bridge plugin (with its IPAM) then a portmap plugin, run as libcni runs a chain: each
//! plugin exec'd straight into the host namespace with CNI_* env and the conf on stdin, each given the previous
//! result; or, for tether-bridge declaring the `portMappings` capability itself (what `tether network create`
//! writes), the bridge plugin alone. Shared by the benches that time chains.

use crate::harness::{network_conf, HostNs, NetNs};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CNI_VERSION: &str = "1.0.0";
/// Container port every container publishes; the host port differs per container.
pub const CONTAINER_PORT: u16 = 80;

/// A bridge plugin (with its IPAM type) and a portmap plugin, run as one conflist.
pub struct PluginSet {
    pub label: &'static str,
    pub bridge: PathBuf,
    pub ipam_type: &'static str,
    /// `None`: the bridge plugin declares `portMappings` and publishes the ports itself.
    pub portmap: Option<PathBuf>,
}

/// Wall time of each plugin of one chain call, in the order they ran (zero for a plugin the set has not).
pub type PluginTimes = [Duration; 2];

/// The conflist of one plugin set: bridge (with its IPAM) then portmap, run as libcni runs a chain.
pub struct Chain<'h> {
    host: &'h HostNs,
    set: &'h PluginSet,
    bridge_conf: Value,
}

impl<'h> Chain<'h> {
    pub fn new(host: &'h HostNs, set: &'h PluginSet) -> Self {
        // One /16, gateway, default route and masquerade: the same network for both sets.
        let mut bridge_conf = network_conf::tether_bridge(host, CNI_VERSION, "10.90.0.0/16");
        bridge_conf["type"] = json!(file_name(&set.bridge));
        bridge_conf["ipMasq"] = json!(true);
        bridge_conf["ipam"]["type"] = json!(set.ipam_type);
        if set.portmap.is_none() {
            bridge_conf["capabilities"] = json!({"portMappings": true});
            bridge_conf["snat"] = json!(true);
        }
        Chain {
            host,
            set,
            bridge_conf,
        }
    }

    /// The portmap entry of the conflist with the runtime's port mapping and the previous result injected.
    pub fn portmap_conf(&self, portmap: &Path, host_port: u16, prev: &Value) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.bridge_conf["name"],
            "type": file_name(portmap),
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": host_port, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
            ]},
            "prevResult": prev,
        })
    }

    /// The bridge plugin's conf; with the runtime's port mapping when it publishes ports itself.
    fn bridge_conf(&self, host_port: u16) -> Value {
        let mut conf = self.bridge_conf.clone();
        if self.set.portmap.is_none() {
            conf["runtimeConfig"] = json!({"portMappings": [
                {"hostPort": host_port, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
            ]});
        }
        conf
    }

    /// Bridge ADD then portmap ADD; the chain's final result.
    pub fn add(&self, c: &NetNs, host_port: u16) -> Result<(Value, PluginTimes), String> {
        let (first, bridge) =
            self.call(&self.set.bridge, "ADD", c, &self.bridge_conf(host_port))?;
        let Some(portmap_bin) = &self.set.portmap else {
            return Ok((first, [bridge, Duration::ZERO]));
        };
        let (result, portmap) = self.call(
            portmap_bin,
            "ADD",
            c,
            &self.portmap_conf(portmap_bin, host_port, &first),
        )?;
        Ok((result, [bridge, portmap]))
    }

    /// Portmap DEL then bridge DEL, both given the chain's cached result as prevResult (libcni, CNI >= 0.4).
    pub fn del(&self, c: &NetNs, host_port: u16, cached: &Value) -> Result<PluginTimes, String> {
        let portmap = match &self.set.portmap {
            Some(portmap_bin) => {
                self.call(
                    portmap_bin,
                    "DEL",
                    c,
                    &self.portmap_conf(portmap_bin, host_port, cached),
                )?
                .1
            }
            None => Duration::ZERO,
        };
        let mut conf = self.bridge_conf(host_port);
        conf["prevResult"] = cached.clone();
        let (_, bridge) = self.call(&self.set.bridge, "DEL", c, &conf)?;
        Ok([portmap, bridge])
    }

    /// One plugin exec; its output and its wall time (spawn to exit).
    fn call(
        &self,
        binary: &Path,
        cmd: &str,
        c: &NetNs,
        conf: &Value,
    ) -> Result<(Value, Duration), String> {
        let out = self
            .host
            .plugin(binary)
            .cmd(cmd)
            .container(c)
            .conf(conf)
            .run();
        let valid = out.success() && (cmd != "ADD" || out.stdout_json["cniVersion"].is_string());
        if valid {
            Ok((out.stdout_json, out.elapsed))
        } else {
            Err(format!(
                "{} {cmd} for container {}: {} {}",
                file_name(binary),
                c.label,
                out.stdout.trim(),
                out.stderr.trim()
            ))
        }
    }
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
