//! Services as troubleshooting sees them: for `inspect`, the services a container backs (with the health
//! tetherd gives each backend) and, for a client, whether its namespace dispatches each VIP; for `doctor`,
//! unhealthy backends and backend slots in a client's maps that no container holds any more.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;

use super::finding::Finding;
use crate::firewall::service_balance::{self, ServiceKey};
use crate::netns::NetNs;
use crate::service::backends::serves;
use crate::state::service::{Mode, ServiceDir, ServiceSpec};
use crate::state::AttachmentRecord;

/// One service check of a container, as inspect shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCheck {
    /// The container backs `service`; `health` as tetherd sees it (None: tetherd does not answer).
    Backend {
        service: String,
        vips: Vec<IpAddr>,
        health: Option<String>,
    },
    /// The container is a client of `service`: is `key` dispatched in its namespace?
    Vip {
        service: String,
        key: ServiceKey,
        dispatched: Result<bool, String>,
    },
}

/// The services defined on `network`.
pub fn on_network(state_dir: &Path, network: &str) -> Vec<ServiceSpec> {
    ServiceDir::new(state_dir)
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.network == network)
        .collect()
}

/// tetherd's balancer status (`services.balancer.services`), from a status reply.
pub fn balancer_services(status: &Value) -> Option<&Value> {
    status
        .pointer("/services/balancer/services")
        .filter(|v| !v.is_null())
}

/// A backend's health in the balancer status: healthy, unhealthy or starting.
fn health_of<'v>(services: &'v Value, service: &str, rec: &AttachmentRecord) -> Option<&'v str> {
    let key = format!("{}/{}", rec.container_id, rec.ifname).replace('/', "~1");
    services
        .pointer(&format!("/{service}/backends/{key}/health"))
        .and_then(Value::as_str)
}

/// What inspect shows of `rec`'s services; `status` is tetherd's status reply, if it answered.
pub fn checks(
    rec: &AttachmentRecord,
    specs: &[ServiceSpec],
    status: Option<&Value>,
    ns: Option<&NetNs>,
) -> Vec<ServiceCheck> {
    let services = status.and_then(balancer_services);
    let families: HashSet<bool> = rec.ips.iter().map(|ip| ip.is_ipv4()).collect();
    let mut out = Vec::new();
    for spec in specs {
        if serves(rec, spec) {
            out.push(ServiceCheck::Backend {
                service: spec.name.clone(),
                vips: spec.vips.clone(),
                health: services.map(|s| {
                    health_of(s, &spec.name, rec)
                        .unwrap_or("not balanced yet")
                        .to_string()
                }),
            });
        }
        let Some(ns) = ns.filter(|_| spec.mode == Mode::Vip) else {
            continue;
        };
        for vip in spec.vips.iter().filter(|v| families.contains(&v.is_ipv4())) {
            for port in &spec.ports {
                let key = ServiceKey {
                    vip: *vip,
                    protocol: port.protocol.protocol(),
                    port: port.port,
                };
                let dispatched = match ns.run(|| service_balance::dispatches(&key)) {
                    Ok(Ok(found)) => Ok(found),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                out.push(ServiceCheck::Vip {
                    service: spec.name.clone(),
                    key,
                    dispatched,
                });
            }
        }
    }
    out
}

/// Doctor: backends tetherd finds unhealthy, and backend slots in a live client's maps pointing to an
/// address no attachment of the network holds, here or (overlay) on another host (a container gone
/// without tetherd noticing).
pub fn findings(
    state_dir: &Path,
    clients: &[&AttachmentRecord],
    all: &[AttachmentRecord],
    status: &Value,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(services) = balancer_services(status).and_then(Value::as_object) {
        for (name, service) in services {
            let Some(backends) = service["backends"].as_object() else {
                continue;
            };
            for (id, backend) in backends {
                if backend["health"] == "unhealthy" {
                    out.push(Finding::warning(
                        "services",
                        format!("service {name}: backend {id} fails its health probes and takes no new connections"),
                        format!("look at what listens on the service's first TCP port in that container (`tether service inspect {name}`)"),
                    ));
                }
            }
        }
    }
    // Other hosts' containers on an overlay are backends too (their addresses are in the slots).
    let remote = crate::overlay::remote_names::load(state_dir);
    for client in clients {
        if on_network(state_dir, &client.network).is_empty() {
            continue;
        }
        let Some(path) = &client.netns else { continue };
        let Ok(ns) = NetNs::open(path) else { continue };
        let Ok(Ok(slots)) = ns.run(service_balance::slot_backends) else {
            continue;
        };
        let held: HashSet<IpAddr> = all
            .iter()
            .chain(remote.iter())
            .filter(|r| r.network == client.network)
            .flat_map(|r| r.ips.iter().map(|ip| ip.ip()))
            .collect();
        for gone in slots.iter().filter(|a| !held.contains(a)) {
            out.push(Finding::problem(
                "services",
                format!(
                    "container {} on network {}: its service maps still send connections to {gone}, which no container holds",
                    client.container_id, client.network
                ),
                "tetherd takes a backend out of every client when its attachment record goes: check that it runs, \
                 and restart it if the slot stays",
            ));
        }
    }
    out
}
