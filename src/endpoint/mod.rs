//! Attaching containers to networks and detaching them: the library behind `tether attach/detach/ps/gc`
//! and the OCI hook. Networks run through the CNI runtime side (`cni::runtime`), as libcni would run
//! them, so the result cache is shared with podman and any libcni user.

mod attachment;
mod default_route;
mod error;
mod host_port;
mod port_spec;
mod release;

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

pub use attachment::{Attachment, NAME_ARG};
pub use error::EndpointError;
pub use host_port::{resolve as choose_host_ports, PublishedPort, TakenPorts};
pub use port_spec::{HostPorts, PortRange, PortSpec, PortSpecError};
pub use release::{all_records, Held};

use crate::cni::config::Attachment as ValidAttachment;
use crate::cni::error::TetherCode;
use crate::cni::runtime::{
    list_networks, load_network, CniRuntime, NetworkConfigList, RuntimeConf, RuntimeError,
};
use crate::link::{IpFamily, MacAddr, Netlink};
use crate::netns::NetNs;

/// The interface name a container gets when none is asked for and none is taken.
pub const DEFAULT_IFNAME: &str = "eth0";

/// How often a chosen (random or first-free) host port is chosen again after losing a race.
const PORT_RETRIES: u32 = 3;

/// One container joining one network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttachRequest {
    pub network: String,
    pub container_id: String,
    /// The container's network namespace (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub netns: PathBuf,
    /// `None`: eth0, or the next free ethN when the container already has one.
    pub ifname: Option<String>,
    /// Static addresses (one per address family of the network).
    pub ips: Vec<IpAddr>,
    pub mac: Option<MacAddr>,
    pub ports: Vec<PortSpec>,
    /// The container's name, for DNS (`K8S_POD_NAME` in CNI_ARGS, as podman sends it).
    pub name: Option<String>,
    pub aliases: Vec<String>,
}

/// Where networks are defined and how their plugins run; [`Endpoints::from_env`] reads the usual
/// environment (TETHER_CONF_DIR, CNI_PATH, TETHER_CNI_CACHE_DIR).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub conf_dir: PathBuf,
    /// tether's state dir, whose attachment records tell where each container's namespace was.
    pub state_dir: PathBuf,
    pub runtime: CniRuntime,
}

impl Endpoints {
    pub fn from_env() -> Endpoints {
        Endpoints {
            conf_dir: crate::paths::conf_dir(),
            state_dir: crate::paths::state_dir(),
            runtime: CniRuntime::from_env(),
        }
    }

    /// Runs the network's chain ADD for the container and returns what it got.
    pub fn attach(&self, req: &AttachRequest) -> Result<Attachment, EndpointError> {
        if !crate::cni::env::is_valid_identifier(&req.container_id) {
            return Err(EndpointError::BadContainerId {
                id: req.container_id.clone(),
            });
        }
        let net = load_network(&self.conf_dir, &req.network)?;
        let cached = self.runtime.cache.list()?;
        if let Some(existing) = cached
            .iter()
            .find(|e| e.network_name == req.network && e.container_id == req.container_id)
        {
            return Err(EndpointError::AlreadyAttached {
                container: req.container_id.clone(),
                network: req.network.clone(),
                ifname: existing.ifname.clone(),
            });
        }
        let netns = NetNs::open(&req.netns).map_err(|source| EndpointError::Netns {
            container: req.container_id.clone(),
            source,
        })?;
        let netlink = Netlink::in_netns(&netns).map_err(|source| EndpointError::Links {
            container: req.container_id.clone(),
            netns: req.netns.clone(),
            source: Box::new(source),
        })?;
        let ifname = self.choose_ifname(req, &netlink, &cached)?;
        let (has_v4, has_v6) = default_routes(&netlink).map_err(|source| EndpointError::Links {
            container: req.container_id.clone(),
            netns: req.netns.clone(),
            source: Box::new(source),
        })?;
        let net = default_route::without_default_routes(&net, has_v4, has_v6).unwrap_or(net);

        let mut taken: host_port::TakenPorts = cached
            .iter()
            .flat_map(|e| Attachment::from_cache(e).ports)
            .map(|p| (p.protocol, p.host_port))
            .collect();
        let chooses = req
            .ports
            .iter()
            .any(|p| !matches!(p.host_ports, HostPorts::Exact(_)));
        let mut attempt = 0;
        let rt = loop {
            let ports = host_port::resolve(&req.ports, &mut taken)?;
            let rt = runtime_conf(req, &net, ifname.clone(), &ports);
            match self.runtime.add(&net, &rt) {
                Ok(_) => break rt,
                // Another attach published the port we chose between our check and our ADD: the
                // port stays in `taken`, so the next round picks another one.
                Err(err)
                    if chooses
                        && attempt < PORT_RETRIES
                        && err.plugin_error().map(|e| e.code)
                            == Some(TetherCode::PortInUse.as_u32()) =>
                {
                    attempt += 1;
                    tracing::debug!(error = %err, attempt, "chosen host port taken meanwhile; choosing again");
                }
                Err(err) => return Err(err.into()),
            }
        };
        let entry = self
            .runtime
            .cache
            .read(&req.network, &req.container_id, &rt.ifname)?
            .ok_or_else(|| RuntimeError::NotCached {
                network: req.network.clone(),
                container: req.container_id.clone(),
                ifname: rt.ifname.clone(),
                dir: self.runtime.cache.dir().to_path_buf(),
            })?;
        Ok(Attachment::from_cache(&entry))
    }

    fn choose_ifname(
        &self,
        req: &AttachRequest,
        netlink: &Netlink,
        cached: &[crate::cni::runtime::CachedAttachment],
    ) -> Result<String, EndpointError> {
        let links = netlink.links().map_err(|source| EndpointError::Links {
            container: req.container_id.clone(),
            netns: req.netns.clone(),
            source: Box::new(source),
        })?;
        let in_use = |name: &str| {
            links.iter().any(|l| l.name == name)
                || cached
                    .iter()
                    .any(|e| e.container_id == req.container_id && e.ifname == name)
        };
        if let Some(name) = &req.ifname {
            if let Some(reason) = crate::ifname::ifname_problem(name) {
                return Err(EndpointError::BadIfname {
                    ifname: name.clone(),
                    reason,
                });
            }
            if in_use(name) {
                return Err(EndpointError::IfnameTaken {
                    container: req.container_id.clone(),
                    ifname: name.clone(),
                });
            }
            return Ok(name.clone());
        }
        (0..100)
            .map(|n| format!("eth{n}"))
            .find(|name| !in_use(name))
            .ok_or_else(|| EndpointError::NoFreeIfname {
                container: req.container_id.clone(),
            })
    }

    /// Detaches the container from the network: every cached interface, or only `ifname`. Succeeds
    /// when nothing is attached. Without a cache entry but with the network defined, DEL still runs
    /// with the current configuration (for `ifname`, else eth0) so partial state is cleaned up.
    pub fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError> {
        let cached: Vec<_> = self
            .runtime
            .cache
            .list()?
            .into_iter()
            .filter(|e| e.network_name == network && e.container_id == container_id)
            .filter(|e| ifname.is_none_or(|i| i == e.ifname))
            .collect();
        if cached.is_empty() {
            let net = match load_network(&self.conf_dir, network) {
                Ok(net) => net,
                Err(RuntimeError::NetworkNotFound { .. }) => return Ok(()),
                Err(err) => return Err(err.into()),
            };
            let rt = RuntimeConf {
                container_id: container_id.to_string(),
                ifname: ifname.unwrap_or(DEFAULT_IFNAME).to_string(),
                ..RuntimeConf::default()
            };
            self.runtime.del(&net, &rt)?;
            return Ok(());
        }
        for entry in cached {
            self.runtime
                .del_cached(network, container_id, &entry.ifname)?;
        }
        Ok(())
    }

    /// Detaches the container from every network it is attached to; returns what it detached.
    pub fn detach_all(&self, container_id: &str) -> Result<Vec<Attachment>, EndpointError> {
        let mut done = Vec::new();
        for entry in self.runtime.cache.list()? {
            if entry.container_id != container_id {
                continue;
            }
            self.runtime
                .del_cached(&entry.network_name, container_id, &entry.ifname)?;
            done.push(Attachment::from_cache(&entry));
        }
        Ok(done)
    }

    /// Every attachment in the result cache (also those made by podman or another libcni user).
    pub fn list(&self) -> Result<Vec<Attachment>, EndpointError> {
        Ok(self
            .runtime
            .cache
            .list()?
            .iter()
            .map(Attachment::from_cache)
            .collect())
    }

    /// Detaches every attachment whose namespace is gone (no process in it and its path no longer
    /// refers to it; the path and identity come from the cache entry, else from tether's attachment
    /// record), then runs CNI GC on each network with the attachments still valid. Returns what it
    /// detached.
    pub fn gc(&self) -> Result<Vec<Attachment>, EndpointError> {
        let collected = self.release_gone()?;
        for net in list_networks(&self.conf_dir)? {
            let keep: Vec<ValidAttachment> = collected
                .valid
                .iter()
                .filter(|(network, _)| network == net.name())
                .map(|(_, a)| a.clone())
                .collect();
            self.runtime.gc(&net, &keep)?;
        }
        Ok(collected.freed)
    }
}

/// The main routing table's id (linux/rtnetlink.h).
const RT_TABLE_MAIN: u32 = 254;

/// Whether the container already has an IPv4 and an IPv6 default route (main table).
fn default_routes(netlink: &Netlink) -> Result<(bool, bool), crate::link::LinkError> {
    let has = |family| -> Result<bool, crate::link::LinkError> {
        Ok(netlink
            .routes(family)?
            .iter()
            .any(|r| r.is_default() && r.table == RT_TABLE_MAIN))
    };
    Ok((has(IpFamily::V4)?, has(IpFamily::V6)?))
}

/// Capability args the plugins declare get the data; what no plugin declares goes into CNI_ARGS
/// (`IP=`, `MAC=`), which tether's and the reference plugins read too.
fn runtime_conf(
    req: &AttachRequest,
    net: &NetworkConfigList,
    ifname: String,
    ports: &[PublishedPort],
) -> RuntimeConf {
    let declares = |capability: &str| {
        net.list.plugins.iter().any(|p| {
            p.get("capabilities")
                .and_then(|c| c.get(capability))
                .and_then(Value::as_bool)
                == Some(true)
        })
    };
    let mut args = vec![("IgnoreUnknown".to_string(), "1".to_string())];
    if let Some(name) = &req.name {
        args.push((NAME_ARG.to_string(), name.clone()));
    }
    let mut caps = Map::new();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), json!(ports));
    }
    if !req.ips.is_empty() {
        let ips: Vec<String> = req.ips.iter().map(IpAddr::to_string).collect();
        if declares("ips") {
            caps.insert("ips".into(), json!(ips));
        } else {
            args.push(("IP".to_string(), ips.join(",")));
        }
    }
    if let Some(mac) = req.mac {
        if declares("mac") {
            caps.insert("mac".into(), json!(mac.to_string()));
        } else {
            args.push(("MAC".to_string(), mac.to_string()));
        }
    }
    if !req.aliases.is_empty() {
        // podman's shape: aliases by network name.
        caps.insert(
            "aliases".into(),
            json!({ req.network.clone(): req.aliases }),
        );
    }
    RuntimeConf {
        container_id: req.container_id.clone(),
        netns: Some(req.netns.clone()),
        ifname,
        args,
        capability_args: caps,
    }
}
