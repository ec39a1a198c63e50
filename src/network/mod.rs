//! Network definitions: conflists in the config dir that tether writes (`network create`), reads
//! (`ls`, `inspect`) and removes with everything the network left on the host (`rm`). Any CNI runtime
//! (podman, containerd) can use what is written here.

mod error;
mod name;
mod options;
mod plan;
mod pool;
mod render;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::Serialize;
use serde_json::Value;

pub use error::NetworkError;
pub use name::{bridge_name, validate as validate_name};
pub use options::{split_option, DriverKind};
pub use plan::{plan, CreateRequest, Surroundings, FIRST_AUTO_VNI};
pub use pool::{first_overlap, pick_v4, pick_v6, Occupied};
pub use render::{Addressing, NetworkPlan};

use crate::cni::runtime::{list_networks, load_network, NetworkConfigList, RuntimeError};
use crate::driver::ipam_backend::IN_PROCESS_TYPE;
use crate::driver::network_devices::NetworkDevices;
use crate::driver::network_summary::NetworkSummary;
use crate::driver::teardown::Teardown;
use crate::endpoint::{Attachment, Endpoints};
use crate::ipam::IpamConfig;
use crate::link::{IpFamily, Netlink};
use crate::state::attachment::attachments_root;

/// A network as `ls` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    pub name: String,
    /// bridge, macvlan, overlay, or the first plugin's type for networks tether did not write.
    pub driver: String,
    pub subnets: Vec<IpNetwork>,
    pub gateways: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    pub internal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub containers: Vec<Attachment>,
    pub config: Value,
}

impl NetworkInfo {
    fn new(net: &NetworkConfigList, attachments: &[Attachment]) -> NetworkInfo {
        let summary = NetworkSummary::of_plugins(&net.list.plugins);
        for problem in &summary.problems {
            tracing::warn!(network = net.name(), %problem, "part of the network's config cannot be read");
        }
        NetworkInfo {
            name: net.name().to_string(),
            driver: summary.driver,
            subnets: summary.subnets,
            gateways: summary.gateways,
            bridge: summary.bridge,
            internal: summary.internal,
            file: net.path.clone(),
            containers: attachments
                .iter()
                .filter(|a| a.network == net.name())
                .cloned()
                .collect(),
            config: serde_json::from_slice(&net.bytes).unwrap_or(Value::Null),
        }
    }
}

/// Networks in one config dir, attached through one CNI runtime.
#[derive(Debug, Clone)]
pub struct Networks {
    pub endpoints: Endpoints,
}

impl Networks {
    pub fn from_env() -> Networks {
        Networks {
            endpoints: Endpoints::from_env(),
        }
    }

    fn conf_dir(&self) -> &Path {
        &self.endpoints.conf_dir
    }

    /// What the current namespace's routes and the existing networks occupy.
    pub fn surroundings(&self) -> Result<Surroundings, NetworkError> {
        let netlink = Netlink::new().map_err(|source| NetworkError::Routes {
            source: Box::new(source),
        })?;
        let mut routes = Vec::new();
        for family in [IpFamily::V4, IpFamily::V6] {
            for route in netlink
                .routes(family)
                .map_err(|source| NetworkError::Routes {
                    source: Box::new(source),
                })?
            {
                routes.push(Occupied {
                    net: route.dst,
                    what: format!("host route {}", route.dst),
                });
            }
        }
        let mut networks = Vec::new();
        let mut vnis = Vec::new();
        for net in list_networks(self.conf_dir())? {
            let summary = NetworkSummary::of_plugins(&net.list.plugins);
            for subnet in summary.subnets {
                networks.push(Occupied {
                    net: subnet,
                    what: format!("network {} ({subnet})", net.name()),
                });
            }
            if let Some(vni) = summary.vni {
                vnis.push((vni, net.name().to_string()));
            }
        }
        Ok(Surroundings {
            routes,
            networks,
            vnis,
        })
    }

    /// Writes `<conf_dir>/<name>.conflist`; nothing is written when anything is refused.
    pub fn create(&self, req: &CreateRequest) -> Result<NetworkInfo, NetworkError> {
        validate_name(&req.name)?;
        // Two creates picking a pool at once would pick the same one: one at a time per host.
        let _lock = create_lock()?;
        let path = self.conf_dir().join(format!("{}.conflist", req.name));
        match load_network(self.conf_dir(), &req.name) {
            Ok(existing) => {
                return Err(NetworkError::Exists {
                    name: req.name.clone(),
                    path: existing.path.unwrap_or(path),
                })
            }
            Err(RuntimeError::NetworkNotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        if path.exists() {
            return Err(NetworkError::Exists {
                name: req.name.clone(),
                path,
            });
        }
        let plan = plan(req, &self.surroundings()?)?;
        if let Some(parent) = plan.parent() {
            check_parent(parent)?;
        }
        // The IPAM plugin's own parser is the judge of the ranges we made.
        crate::ipam::IpamConfig::parse(&plan.ipam(), &crate::paths::ipam_dir())
            .map_err(|source| NetworkError::Ipam { source })?;
        let mut bytes = serde_json::to_vec_pretty(&plan.render()).expect("JSON values serialize");
        bytes.push(b'\n');
        write_atomically(&path, &bytes)?;
        tracing::info!(network = %req.name, file = %path.display(), "network created");
        let net = NetworkConfigList::from_bytes(bytes, Some(path)).map_err(|source| {
            RuntimeError::BadConf {
                path: self.conf_dir().to_path_buf(),
                source: Box::new(source),
            }
        })?;
        Ok(NetworkInfo::new(&net, &[]))
    }

    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetworkError> {
        let attachments = self.endpoints.list()?;
        Ok(list_networks(self.conf_dir())?
            .iter()
            .map(|net| NetworkInfo::new(net, &attachments))
            .collect())
    }

    pub fn inspect(&self, name: &str) -> Result<NetworkInfo, NetworkError> {
        let net = load_network(self.conf_dir(), name)?;
        Ok(NetworkInfo::new(&net, &self.endpoints.list()?))
    }

    /// Removes the network: refused while containers are attached unless `force`, which detaches
    /// them first. Then the conflist, the bridge, the firewall chains and the IPAM store go.
    pub fn remove(&self, name: &str, force: bool) -> Result<NetworkInfo, NetworkError> {
        let net = load_network(self.conf_dir(), name)?;
        let info = NetworkInfo::new(&net, &self.endpoints.list()?);
        if !info.containers.is_empty() {
            if !force {
                let containers: Vec<String> = info
                    .containers
                    .iter()
                    .map(|a| format!("{}/{}", a.container_id, a.ifname))
                    .collect();
                return Err(NetworkError::InUse {
                    name: name.to_string(),
                    count: containers.len(),
                    containers: containers.join(", "),
                });
            }
            for a in &info.containers {
                self.endpoints
                    .detach(name, &a.container_id, Some(&a.ifname))?;
            }
        }
        // Read before the file goes; a config its driver no longer accepts still lets the file and the
        // stores go (what it made stays, as `tether doctor` then shows).
        let devices = net
            .list
            .plugins
            .first()
            .map(NetworkDevices::of_plugin)
            .transpose()
            .unwrap_or_else(|error| {
                tracing::warn!(network = name, %error, "cannot read the network's driver config; its devices stay");
                None
            })
            .flatten();
        // The file first: from here on no new attachment can start.
        if let Some(path) = &net.path {
            fs::remove_file(path).map_err(|source| NetworkError::Remove {
                path: path.clone(),
                source,
            })?;
        }
        if let Some(devices) = devices {
            self.remove_host_state(&net, &devices)?;
        }
        tracing::info!(network = name, "network removed");
        Ok(info)
    }

    /// The stores of the network, then its driver's teardown (the same as its last DEL's, done before this
    /// returns), under the exclusive lock: a racing ADD must not put a container into chains being removed.
    /// Without the lock nothing is removed: going on unlocked could strand that ADD's container.
    fn remove_host_state(
        &self,
        net: &NetworkConfigList,
        devices: &NetworkDevices,
    ) -> Result<(), NetworkError> {
        let name = net.name();
        let others = self.list()?;
        let lock = crate::state::NetworkLock::exclusive(name)?;
        for plugin in &net.list.plugins {
            let Some(ipam) = plugin.get("ipam").filter(|i| i["type"] == IN_PROCESS_TYPE) else {
                continue;
            };
            match IpamConfig::parse(ipam, &crate::paths::ipam_dir()) {
                Ok(conf) => remove_dir(&conf.data_dir.join(name))?,
                Err(error) => {
                    tracing::warn!(network = name, %error, "cannot read the IPAM config; its store stays")
                }
            }
        }
        remove_dir(&attachments_root(&crate::paths::state_dir()).join(name))?;
        let bridge_in_use = devices.bridge().is_some_and(|bridge| {
            others
                .iter()
                .any(|other| other.name != name && other.bridge.as_deref() == Some(bridge))
        });
        devices
            .teardown(name, lock, Teardown::NetworkRm { bridge_in_use })
            .map_err(|source| NetworkError::Teardown {
                name: name.to_string(),
                source: Box::new(source),
            })
    }
}

/// A macvlan parent must exist here, or every attach would fail later with a less clear message.
fn check_parent(parent: &str) -> Result<(), NetworkError> {
    let found = Netlink::new()
        .and_then(|netlink| netlink.link_by_name(parent))
        .map_err(|source| NetworkError::Parent {
            parent: parent.to_string(),
            source: Box::new(source),
        })?;
    match found {
        Some(_) => Ok(()),
        None => Err(NetworkError::BadOption {
            key: "parent".into(),
            value: parent.into(),
            reason: "no such link in this namespace; set -o parent= to an existing interface"
                .into(),
        }),
    }
}

/// An exclusive flock on `<run_dir>/locks/network-create.lock`, released on drop.
fn create_lock() -> Result<fs::File, NetworkError> {
    let dir = crate::paths::run_dir().join("locks");
    let path = dir.join("network-create.lock");
    let err = |source| NetworkError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(&dir).map_err(err)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    file.lock().map_err(err)?;
    Ok(file)
}

fn remove_dir(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Temp file + rename in the same directory, so a runtime never reads half a conflist.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    crate::state_file::write_bytes(path, bytes).map_err(|e| match e {
        crate::state_file::StateFileError::Write { path, source }
        | crate::state_file::StateFileError::Read { path, source } => {
            NetworkError::Write { path, source }
        }
        crate::state_file::StateFileError::Corrupt { path, source } => NetworkError::Write {
            path,
            source: std::io::Error::other(source),
        },
    })
}
