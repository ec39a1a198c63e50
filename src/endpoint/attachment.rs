//! An attachment as people and scripts see it (`tether ps`, `tether attach --json`): read back from
//! the libcni result cache, the one record every CNI runtime on the host keeps.

use ipnetwork::IpNetwork;
use serde::Serialize;
use serde_json::Value;

use super::host_port::PublishedPort;
use crate::cni::result::CniResult;
use crate::cni::runtime::CachedAttachment;

/// The CNI_ARGS key podman uses for the container's name, which tetherd's DNS serves.
pub const NAME_ARG: &str = "K8S_POD_NAME";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub ips: Vec<IpNetwork>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub ports: Vec<PublishedPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The chain's result, as cached.
    pub result: Value,
}

impl Attachment {
    pub fn from_cache(entry: &CachedAttachment) -> Attachment {
        let result = entry.result.clone().unwrap_or(Value::Null);
        let parsed = CniResult::from_json(&result).unwrap_or_default();
        // The container's own interface: the sandboxed one with our ifname.
        let own = parsed
            .interfaces
            .iter()
            .position(|i| i.name == entry.ifname && i.sandbox.is_some());
        let ips = parsed
            .ips
            .iter()
            .filter(|ip| own.is_none() || ip.interface.is_none() || ip.interface == own)
            .map(|ip| ip.address)
            .collect();
        let mac = own.and_then(|i| parsed.interfaces[i].mac.clone());
        let ports = entry
            .capability_args
            .get("portMappings")
            .and_then(|v| serde_json::from_value::<Vec<PublishedPort>>(v.clone()).ok())
            .unwrap_or_default();
        let aliases = entry
            .capability_args
            .get("aliases")
            .and_then(|v| v.get(&entry.network_name))
            .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
            .unwrap_or_default();
        let name = entry
            .cni_args
            .iter()
            .find(|[k, _]| k == NAME_ARG)
            .map(|[_, v]| v.clone());
        Attachment {
            network: entry.network_name.clone(),
            container_id: entry.container_id.clone(),
            ifname: entry.ifname.clone(),
            name,
            netns: entry.netns.clone(),
            ips,
            mac,
            ports,
            aliases,
            result,
        }
    }
}
