//! Which attached containers are a service's backends: those on the service's network whose name or
//! alias is the service's name (however they were attached: `tether attach --name/--alias`, podman's
//! container name and `--network-alias`, hook annotations, CNI_ARGS all end up in the attachment record).

use std::net::IpAddr;

use serde::Serialize;

use crate::state::service::ServiceSpec;
use crate::state::{AttachmentRecord, RemoteEndpoint};

/// One attachment serving a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendId {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub id: BackendId,
    pub name: Option<String>,
    pub addresses: Vec<IpAddr>,
    /// The backend's namespace (health probes run there).
    pub netns: Option<String>,
    /// Another host's container: that host probes it, and says so in the cluster store.
    pub remote: Option<RemoteEndpoint>,
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('.').eq_ignore_ascii_case(b)
}

/// Whether the record answers to `service` on `network`.
pub fn serves(rec: &AttachmentRecord, spec: &ServiceSpec) -> bool {
    rec.network == spec.network
        && rec
            .name
            .iter()
            .chain(rec.aliases.iter())
            .any(|n| same_name(n, &spec.name))
}

/// The service's backends among `records`, in a stable order.
pub fn backends_of<'a>(
    spec: &ServiceSpec,
    records: impl IntoIterator<Item = &'a AttachmentRecord>,
) -> Vec<Backend> {
    let mut out: Vec<Backend> = records
        .into_iter()
        .filter(|r| serves(r, spec))
        .map(|r| Backend {
            id: BackendId {
                container_id: r.container_id.to_string(),
                ifname: r.ifname.to_string(),
            },
            name: r.name.clone(),
            addresses: r.ips.iter().map(|n| n.ip()).collect(),
            netns: r.netns.as_ref().map(|p| p.display().to_string()),
            remote: r.remote.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    // A record that carries the name twice (as name and alias) is one backend.
    out.dedup_by(|a, b| a.id == b.id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::service::{HealthCheck, ServiceSpec};

    fn rec(cid: &str, net: &str, name: Option<&str>, aliases: &[&str]) -> AttachmentRecord {
        serde_json::from_value(serde_json::json!({
            "network": net, "containerId": cid, "ifname": "eth0", "driver": "bridge",
            "ips": ["10.0.0.2/24"], "name": name, "aliases": aliases,
        }))
        .unwrap()
    }

    #[test]
    fn name_or_alias_on_the_network_makes_a_backend() {
        let spec = ServiceSpec {
            name: "web".into(),
            network: "n1".into(),
            vips: vec![],
            ports: vec![],
            mode: Default::default(),
            health: HealthCheck::None,
            health_timing: Default::default(),
            affinity: Default::default(),
            cluster: None,
        };
        let records = [
            rec("a", "n1", Some("web"), &[]),
            rec("b", "n1", Some("web-2"), &["WEB"]),
            rec("c", "n2", Some("web"), &[]),
            rec("d", "n1", Some("db"), &["webby"]),
        ];
        let ids: Vec<String> = backends_of(&spec, &records)
            .into_iter()
            .map(|b| b.id.container_id)
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
    }
}
