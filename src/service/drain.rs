//! `tether detach --drain SECONDS`: before a service backend is detached, it leaves every map (tetherd's
//! balancer, on every host through the cluster store), so no new flow reaches it, and the detach waits
//! until the backend's open TCP connections on the service ports are gone or the time is up. Only then is
//! its interface deleted. What drains: TCP connections to the backend's service ports, counted as the
//! backend's own sockets (any state but LISTEN, TIME_WAIT and CLOSE), whichever host the client is on.
//! UDP does not drain: its conntrack entries through the VIP are deleted when the backend leaves the maps,
//! so a client moves with its next datagram.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::backends::{serves, BackendId};
use super::registry::ServiceError;
use crate::state::service::{ProtocolName, ServiceDir};
use crate::state::RecordDir;

/// How often the open connections are counted while draining.
const POLL: Duration = Duration::from_millis(100);
/// How long tetherd may take to report the backend out of its maps.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// One attachment of the container that serves services.
#[derive(Debug, Clone)]
struct Draining {
    id: BackendId,
    netns: Option<PathBuf>,
    services: Vec<String>,
    ports: BTreeSet<u16>,
}

/// What a drain did, for the CLI to print.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainReport {
    /// The services the container backed.
    pub services: Vec<String>,
    /// Open connections when the backend left the maps, and when the drain ended.
    pub connections_at_start: usize,
    pub connections_left: usize,
    pub waited_ms: u64,
}

/// The container's attachments that back services (on `network`, and `ifname`, when given).
fn draining(
    state_dir: &Path,
    container_id: &str,
    network: Option<&str>,
    ifname: Option<&str>,
) -> Result<Vec<Draining>, ServiceError> {
    let mut out: Vec<Draining> = Vec::new();
    for spec in ServiceDir::new(state_dir).list()? {
        if network.is_some_and(|n| n != spec.network) {
            continue;
        }
        let records = RecordDir::new(state_dir, &spec.network)
            .list()
            .unwrap_or_default();
        for rec in records.iter().filter(|r| {
            r.container_id == container_id
                && ifname.is_none_or(|i| i == r.ifname)
                && serves(r, &spec)
        }) {
            let id = BackendId {
                container_id: rec.container_id.to_string(),
                ifname: rec.ifname.to_string(),
            };
            let ports = spec
                .ports
                .iter()
                .filter(|p| p.protocol == ProtocolName::Tcp)
                .map(|p| p.port);
            match out.iter_mut().find(|d| d.id == id) {
                Some(d) => {
                    d.services.push(spec.name.clone());
                    d.ports.extend(ports);
                }
                None => out.push(Draining {
                    id,
                    netns: rec.netns.clone(),
                    services: vec![spec.name.clone()],
                    ports: ports.collect(),
                }),
            }
        }
    }
    Ok(out)
}

/// Takes the container's backends out of the maps and waits (up to `timeout`) for their connections.
/// A container that backs no service returns at once.
pub fn drain(
    container_id: &str,
    network: Option<&str>,
    ifname: Option<&str>,
    timeout: Duration,
) -> Result<DrainReport, ServiceError> {
    let state_dir = crate::paths::state_dir();
    let backends = draining(&state_dir, container_id, network, ifname)?;
    let mut report = DrainReport {
        services: backends.iter().flat_map(|b| b.services.clone()).collect(),
        ..DrainReport::default()
    };
    if backends.is_empty() {
        return Ok(report);
    }
    leave_maps(&backends)?;
    let started = Instant::now();
    report.connections_at_start = open_connections(&backends);
    report.connections_left = report.connections_at_start;
    while report.connections_left > 0 && started.elapsed() < timeout {
        std::thread::sleep(POLL);
        report.connections_left = open_connections(&backends);
    }
    report.waited_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Tells tetherd to drain the backends and waits until its status says they are out of the maps.
fn leave_maps(backends: &[Draining]) -> Result<(), ServiceError> {
    let run_dir = crate::paths::run_dir();
    let ids: Vec<&BackendId> = backends.iter().map(|b| &b.id).collect();
    let request = crate::client::protocol::Request::Service {
        service: "balancer".into(),
        command: json!({ "drain": ids }),
    };
    let reply = crate::client::notify::request(&run_dir, &request, Duration::from_secs(5))
        .map_err(|e| {
            ServiceError::Bad(format!("tetherd does not answer ({e}); nothing to drain"))
        })?;
    if !reply.ok {
        return Err(ServiceError::Bad(reply.error.unwrap_or_default()));
    }
    let deadline = Instant::now() + LEAVE_WAIT;
    while Instant::now() < deadline {
        let status = crate::client::notify::request(
            &run_dir,
            &crate::client::protocol::Request::Status,
            Duration::from_secs(2),
        )
        .ok()
        .and_then(|r| r.status);
        if status.is_some_and(|s| all_draining(&s, backends)) {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    Err(ServiceError::Bad(
        "tetherd did not take the backend out of its maps in time; not detached".into(),
    ))
}

/// Whether tetherd's status shows every backend draining in every service it backs.
fn all_draining(status: &Value, backends: &[Draining]) -> bool {
    backends.iter().all(|b| {
        let key = format!("{}~1{}", b.id.container_id, b.id.ifname);
        b.services.iter().all(|service| {
            status
                .pointer(&format!(
                    "/services/balancer/services/{service}/backends/{key}/health"
                ))
                .and_then(Value::as_str)
                == Some("draining")
        })
    })
}

/// The backends' open TCP connections on their service ports, counted inside their namespaces.
fn open_connections(backends: &[Draining]) -> usize {
    backends
        .iter()
        .filter_map(|b| {
            let ns = crate::netns::NetNs::open(b.netns.as_ref()?).ok()?;
            ns.run(|| {
                ["tcp", "tcp6"]
                    .iter()
                    .filter_map(|f| {
                        std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).ok()
                    })
                    .map(|table| count_open(&table, &b.ports))
                    .sum::<usize>()
            })
            .ok()
        })
        .sum()
}

/// Sockets of `/proc/net/tcp{,6}` text with a local port in `ports`, in a state that still carries a
/// connection: not LISTEN (0A), TIME_WAIT (06) or CLOSE (07).
fn count_open(table: &str, ports: &BTreeSet<u16>) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                return false;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            port.is_some_and(|p| ports.contains(&p)) && !matches!(*state, "0A" | "06" | "07")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_on_the_service_ports_count() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000\n\
   1: 0A4D0003:1F90 0A4D0002:9C40 01 00000000:00000000\n\
   2: 0A4D0003:1F90 0A4D0002:9C41 06 00000000:00000000\n\
   3: 0A4D0003:1F90 0A4D0002:9C42 08 00000000:00000000\n\
   4: 0A4D0003:0050 0A4D0002:9C43 01 00000000:00000000\n";
        let ports = BTreeSet::from([8080]);
        assert_eq!(count_open(table, &ports), 2, "established and close-wait");
    }
}
