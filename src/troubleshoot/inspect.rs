//! `tether inspect CONTAINER`: for each attachment, what tether made (its attachment record, the cached CNI
//! result, the published ports it recorded) beside what the kernel has now, every difference flagged.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bridge_port::BridgePort;
use super::container::{self, KnownAttachment};
use super::resolver_socket;
use super::services::{self, ServiceCheck};
use crate::cni::result::CniResult;
use crate::firewall::{Counter, ElementState, Firewall, PortMapping, Protocol};
use crate::link::{IpFamily, LinkInfo, Netlink};
use crate::netns::{NetNs, NsId};
use crate::state::driver_kind::DriverKind;
use crate::state::AttachmentRecord;

/// Whether tether's side and the kernel's agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Same,
    Differs,
    /// Shown for context; nothing to compare.
    Info,
}

/// One row: what tether made, what the kernel has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub what: String,
    pub tether: String,
    pub kernel: String,
    pub verdict: Verdict,
    /// A firewall element's packets and bytes since it was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<Counter>,
}

fn row(
    what: impl Into<String>,
    tether: impl Into<String>,
    kernel: impl Into<String>,
    same: bool,
) -> Comparison {
    Comparison {
        what: what.into(),
        tether: tether.into(),
        kernel: kernel.into(),
        verdict: if same {
            Verdict::Same
        } else {
            Verdict::Differs
        },
        counter: None,
    }
}

fn info(
    what: impl Into<String>,
    tether: impl Into<String>,
    kernel: impl Into<String>,
) -> Comparison {
    Comparison {
        verdict: Verdict::Info,
        ..row(what, tether, kernel, true)
    }
}

const NONE: &str = "-";
/// The main routing table's id (linux/rtnetlink.h).
const RT_TABLE_MAIN: u32 = 254;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentInspection {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub driver: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub differences: usize,
    pub comparisons: Vec<Comparison>,
    /// tether's attachment record, as written at ADD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<AttachmentRecord>,
    /// The chain's result as the runtime cached it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_result: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub container: String,
    pub differences: usize,
    pub attachments: Vec<AttachmentInspection>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no container with id or name {query} is attached (neither tether's records in {state} nor the CNI cache in {cache} know it); `tether ps` lists what is")]
    NotFound {
        query: String,
        state: String,
        cache: String,
    },
}

/// A published port as tether-portmap records it (`<state>/portmap/<network>/<container>.<ifname>.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedPort {
    host_ip: Option<IpAddr>,
    host_port: u16,
    container_ip: IpAddr,
    container_port: u16,
    protocol: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RecordedPorts {
    mappings: Vec<RecordedPort>,
}

/// The ports tether-portmap published for this attachment, as firewall mappings.
pub fn recorded_ports(
    state_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Vec<PortMapping> {
    let path = state_dir
        .join("portmap")
        .join(network)
        .join(format!("{container_id}.{ifname}.json"));
    let Ok(Some(rec)) = crate::state_file::read_json::<RecordedPorts>(&path) else {
        return Vec::new();
    };
    rec.mappings
        .iter()
        .filter_map(|m| {
            Some(PortMapping {
                host_ip: m.host_ip,
                host_port: m.host_port,
                container_ip: m.container_ip,
                container_port: m.container_port,
                protocol: m.protocol.parse::<Protocol>().ok()?,
            })
        })
        .collect()
}

pub fn describe_port(m: &PortMapping) -> String {
    let host = match m.host_ip {
        Some(ip) if ip.is_ipv6() => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    format!(
        "{host}{} -> {}:{}/{}",
        m.host_port,
        m.container_ip,
        m.container_port,
        m.protocol.name()
    )
}

pub struct Inspector {
    pub state_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
}

impl Inspector {
    pub fn from_env() -> Inspector {
        Inspector {
            state_dir: crate::paths::state_dir(),
            cni_cache_dir: crate::paths::cni_cache_dir(),
        }
    }

    pub fn inspect(&self, query: &str) -> Result<InspectReport, InspectError> {
        let found = container::find(query, &self.state_dir, &self.cni_cache_dir);
        if found.is_empty() {
            return Err(InspectError::NotFound {
                query: query.to_string(),
                state: self.state_dir.display().to_string(),
                cache: self.cni_cache_dir.display().to_string(),
            });
        }
        let host = Netlink::new().ok();
        let firewall = Firewall::open().ok();
        let attachments: Vec<AttachmentInspection> = found
            .iter()
            .map(|a| self.one(a, host.as_ref(), firewall.as_ref()))
            .collect();
        Ok(InspectReport {
            container: query.to_string(),
            differences: attachments.iter().map(|a| a.differences).sum(),
            attachments,
        })
    }

    fn one(
        &self,
        a: &KnownAttachment,
        host: Option<&Netlink>,
        fw: Option<&Firewall>,
    ) -> AttachmentInspection {
        let result = a
            .cached
            .as_ref()
            .and_then(|c| c.result.as_ref())
            .and_then(|r| CniResult::from_json(r).ok());
        let driver = a
            .record
            .as_ref()
            .map(|r| r.driver.name().to_string())
            .unwrap_or_else(|| "(not a tether driver)".into());
        let mut rows = Vec::new();
        // Either may be absent for good reasons: a plugin that is not tether's writes no record, a
        // runtime that calls plugins itself keeps no libcni cache.
        rows.push(info(
            "tether's attachment record",
            if a.record.is_some() {
                "written"
            } else {
                "none"
            },
            NONE,
        ));
        rows.push(info(
            "CNI result cache entry",
            if a.cached.is_some() { "cached" } else { "none" },
            NONE,
        ));
        let expected_ips: Vec<IpNetwork> = match (&a.record, &a.view()) {
            (Some(r), _) => r.ips.clone(),
            (None, Some(v)) => v.ips.clone(),
            _ => Vec::new(),
        };
        let netns_path = a.netns();
        let container_side = namespace_row(netns_path.as_deref(), &mut rows);
        let mut container_mtu = None;
        if let Some(ns) = &container_side {
            container_mtu = self.container_rows(a, ns, result.as_ref(), &expected_ips, &mut rows);
        }
        if let (Some(rec), Some(host)) = (&a.record, host) {
            host_rows(rec, host, container_mtu, &mut rows);
        }
        if let (Some(rec), Some(fw)) = (&a.record, fw) {
            if rec.driver == DriverKind::Bridge {
                firewall_rows(rec, fw, &mut rows);
            }
        }
        if let Some(fw) = fw {
            self.port_rows(a, fw, &mut rows);
        }
        if let Some(rec) = &a.record {
            dns_rows(rec, container_side.as_ref(), result.as_ref(), &mut rows);
            service_rows(rec, container_side.as_ref(), &self.state_dir, &mut rows);
            if rec.driver == DriverKind::Overlay {
                if let Some(host) = host {
                    overlay_rows(a, host, &self.state_dir, &mut rows);
                }
            }
        }
        let differences = rows
            .iter()
            .filter(|r| r.verdict == Verdict::Differs)
            .count();
        AttachmentInspection {
            network: a.network.clone(),
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            name: a.name(),
            driver,
            netns: netns_path,
            differences,
            comparisons: rows,
            record: a.record.clone(),
            cached_result: a.cached.as_ref().and_then(|c| c.result.clone()),
        }
    }

    /// Each port the attachment published, in the port maps or not.
    fn port_rows(&self, a: &KnownAttachment, fw: &Firewall, rows: &mut Vec<Comparison>) {
        const WHAT: &str = "published port (inet tether port maps)";
        for m in recorded_ports(&self.state_dir, &a.network, &a.container_id, &a.ifname) {
            rows.push(match fw.port_element(&m) {
                Ok(e) => element_row(WHAT, describe_port(&m), &e),
                Err(e) => row(WHAT, describe_port(&m), format!("cannot read: {e}"), false),
            });
        }
    }

    /// Interface, MAC, MTU, addresses and routes inside the container; returns the interface's MTU.
    fn container_rows(
        &self,
        a: &KnownAttachment,
        ns: &NetNs,
        result: Option<&CniResult>,
        expected_ips: &[IpNetwork],
        rows: &mut Vec<Comparison>,
    ) -> Option<u32> {
        let nl = match Netlink::in_netns(ns) {
            Ok(nl) => nl,
            Err(e) => {
                rows.push(row(
                    "container interface",
                    a.ifname.as_str(),
                    format!("cannot look: {e}"),
                    false,
                ));
                return None;
            }
        };
        let link = nl.link_by_name(&a.ifname).ok().flatten();
        let Some(link) = link else {
            rows.push(row(
                "container interface",
                a.ifname.as_str(),
                "missing",
                false,
            ));
            return None;
        };
        rows.push(row(
            "container interface",
            format!("{} up", a.ifname),
            format!("{} {}", link.name, if link.up { "up" } else { "down" }),
            link.up,
        ));
        let own = result.and_then(|r| {
            r.interfaces
                .iter()
                .find(|i| i.name == a.ifname && i.sandbox.is_some())
        });
        let expected_mac = a
            .record
            .as_ref()
            .and_then(|r| r.mac.map(|m| m.to_string()))
            .or_else(|| own.and_then(|i| i.mac.clone()));
        let actual_mac = link
            .mac
            .map(|m| m.to_string())
            .unwrap_or_else(|| NONE.into());
        match expected_mac {
            Some(mac) => rows.push(row(
                "MAC",
                mac.to_lowercase(),
                actual_mac.clone(),
                mac.eq_ignore_ascii_case(&actual_mac),
            )),
            None => rows.push(info("MAC", NONE, actual_mac)),
        }
        match own.and_then(|i| i.mtu) {
            Some(mtu) => rows.push(row(
                "MTU",
                mtu.to_string(),
                link.mtu.to_string(),
                mtu == link.mtu,
            )),
            None => rows.push(info("MTU", NONE, link.mtu.to_string())),
        }
        let actual: Vec<IpNetwork> = nl.addresses(link.index).unwrap_or_default();
        for ip in expected_ips {
            let present = actual.contains(ip);
            rows.push(row(
                "address",
                ip.to_string(),
                if present {
                    ip.to_string()
                } else {
                    "missing".into()
                },
                present,
            ));
        }
        for ip in actual
            .iter()
            .filter(|ip| !expected_ips.contains(ip) && !is_link_local(ip))
        {
            rows.push(row("address", "not made by tether", ip.to_string(), false));
        }
        if let Some(result) = result {
            route_rows(&nl, &link, result, rows);
        }
        Some(link.mtu)
    }
}

fn is_link_local(ip: &IpNetwork) -> bool {
    match ip.ip() {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(v4) => v4.is_link_local(),
    }
}

/// Every route of the cached result must be in the container's main table through its interface.
fn route_rows(nl: &Netlink, link: &LinkInfo, result: &CniResult, rows: &mut Vec<Comparison>) {
    let mut kernel = nl.routes(IpFamily::V4).unwrap_or_default();
    kernel.extend(nl.routes(IpFamily::V6).unwrap_or_default());
    for want in &result.routes {
        let gw = want.gw.or_else(|| {
            result
                .ips
                .iter()
                .find(|ip| ip.address.is_ipv4() == want.dst.is_ipv4())
                .and_then(|ip| ip.gateway)
        });
        let describe = |gw: Option<IpAddr>| match gw {
            Some(gw) => format!("{} via {gw}", want.dst),
            None => want.dst.to_string(),
        };
        let found = kernel.iter().find(|r| {
            r.dst == want.dst
                && r.table == RT_TABLE_MAIN
                && (r.oif.is_none() || r.oif == Some(link.index))
        });
        match found {
            Some(r) => rows.push(row(
                "route",
                describe(gw),
                describe(r.gw),
                gw.is_none() || r.gw == gw,
            )),
            None => rows.push(row("route", describe(gw), "missing", false)),
        }
    }
}

/// The host end: the veth, its bridge, its port state; its MTU beside the container's.
/// The container's namespace: open (its rows follow) or gone.
fn namespace_row(path: Option<&str>, rows: &mut Vec<Comparison>) -> Option<NetNs> {
    match path.map(|p| (p, NetNs::open(p))) {
        Some((path, Ok(ns))) => {
            rows.push(row("namespace", path, "present", true));
            Some(ns)
        }
        Some((path, Err(e))) => {
            rows.push(row("namespace", path, format!("gone ({e})"), false));
            None
        }
        None => {
            rows.push(row("namespace", NONE, NONE, false));
            None
        }
    }
}

fn host_rows(
    rec: &AttachmentRecord,
    host: &Netlink,
    container_mtu: Option<u32>,
    rows: &mut Vec<Comparison>,
) {
    let Some(veth) = &rec.host_ifname else { return };
    let Some(link) = host.link_by_name(veth).ok().flatten() else {
        rows.push(row("host veth", veth.as_str(), "missing", false));
        return;
    };
    rows.push(row(
        "host veth",
        format!("{veth} up"),
        format!("{veth} {}", if link.up { "up" } else { "down" }),
        link.up,
    ));
    if let Some(mtu) = container_mtu {
        rows.push(row(
            "host veth MTU",
            mtu.to_string(),
            link.mtu.to_string(),
            mtu == link.mtu,
        ));
    }
    if let Some(bridge) = &rec.bridge {
        let master = link
            .master
            .and_then(|i| host.link_by_index(i).ok().flatten())
            .map(|l| l.name);
        let actual = master.clone().unwrap_or_else(|| "no bridge".into());
        rows.push(row(
            "bridge",
            bridge.as_str(),
            actual,
            master.as_deref() == Some(bridge.as_str()),
        ));
        let state = BridgePort::of(veth).and_then(|p| p.state());
        rows.push(row(
            "bridge port state",
            "forwarding",
            state.clone().unwrap_or_else(|| "unknown".into()),
            state.as_deref() == Some("forwarding"),
        ));
    }
}

/// The container's addresses in its network's sets and NAT maps (isolation and masquerade key on them),
/// each with its counter.
fn firewall_rows(rec: &AttachmentRecord, fw: &Firewall, rows: &mut Vec<Comparison>) {
    let addrs: Vec<IpAddr> = rec.ips.iter().map(|ip| ip.ip()).collect();
    match fw.container_elements(&rec.network, &addrs) {
        Ok(elements) => rows.extend(elements.iter().map(|e| {
            element_row(
                "firewall elements (inet tether)",
                format!("{} in {}", e.key, e.set),
                e,
            )
        })),
        Err(e) => rows.push(row(
            "firewall elements (inet tether)",
            "the container's addresses",
            format!("cannot read: {e}"),
            false,
        )),
    }
}

/// One element: present or not, and what its counter says.
fn element_row(what: &str, tether: String, e: &ElementState) -> Comparison {
    let kernel = match (e.present, e.counter) {
        (false, _) => "missing".to_string(),
        (true, Some(c)) => format!("present, {} packets / {} bytes", c.packets, c.bytes),
        (true, None) => "present (no counter: added before elements had one)".to_string(),
    };
    Comparison {
        counter: e.counter,
        ..row(what, tether, kernel, e.present)
    }
}

/// The services the container backs, with their health as tetherd sees it, and, as a client of its
/// network's services, whether each VIP is dispatched in its namespace.
fn service_rows(
    rec: &AttachmentRecord,
    ns: Option<&NetNs>,
    state_dir: &Path,
    rows: &mut Vec<Comparison>,
) {
    let specs = services::on_network(state_dir, &rec.network);
    if specs.is_empty() {
        return;
    }
    let status = crate::client::notify::request(
        &crate::paths::run_dir(),
        &crate::client::protocol::Request::Status,
        std::time::Duration::from_secs(2),
    )
    .ok()
    .and_then(|reply| reply.status);
    for check in services::checks(rec, &specs, status.as_ref(), ns) {
        rows.push(match check {
            ServiceCheck::Backend {
                service,
                vips,
                health,
            } => {
                let what = "service backend";
                let tether = format!("backs {service} (VIP {})", join_addresses(&vips));
                match health.as_deref() {
                    Some("healthy") => row(what, tether, "healthy", true),
                    Some("unhealthy") => {
                        row(what, tether, "unhealthy: fails its health probes", false)
                    }
                    Some(other) => info(what, tether, other),
                    None => info(what, tether, "unknown: tetherd does not answer"),
                }
            }
            ServiceCheck::Vip {
                service,
                key,
                dispatched,
            } => {
                let what = "service VIP (inet tether_svc)";
                let tether = format!(
                    "{service}: {} port {}/{}",
                    key.vip,
                    key.port,
                    key.protocol.name()
                );
                match dispatched {
                    Ok(true) => row(what, tether, "dispatched", true),
                    Ok(false) => row(what, tether, "missing", false),
                    Err(e) => row(what, tether, format!("cannot read: {e}"), false),
                }
            }
        });
    }
}

fn join_addresses(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return NONE.to_string();
    }
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names it answers to, its resolver, the resolv.conf a process in it reads.
fn dns_rows(
    rec: &AttachmentRecord,
    ns: Option<&NetNs>,
    result: Option<&CniResult>,
    rows: &mut Vec<Comparison>,
) {
    if !rec.dns {
        rows.push(info("DNS", "off on this network", NONE));
        return;
    }
    let mut names: Vec<String> = rec.name.iter().chain(rec.aliases.iter()).cloned().collect();
    let qualified: Vec<String> = names
        .iter()
        .map(|n| format!("{n}.{}", rec.network))
        .collect();
    names.extend(qualified);
    rows.push(info(
        "DNS names",
        if names.is_empty() {
            NONE.to_string()
        } else {
            names.join(", ")
        },
        NONE,
    ));
    let Some(ns) = ns else { return };
    let listens = resolver_socket::listens(ns).unwrap_or(false);
    rows.push(row(
        "resolver",
        "127.0.0.11:53 (tetherd)",
        if listens { "answers" } else { "no answer" },
        listens,
    ));
    let expected: Vec<String> = result
        .map(|r| r.dns.nameservers.clone())
        .unwrap_or_default();
    match resolv_conf_in_use(ns) {
        Some((pid, servers)) => {
            let uses = expected.iter().all(|s| servers.contains(s));
            rows.push(row(
                format!("resolv.conf of pid {pid}"),
                format!("nameserver {}", expected.join(" ")),
                format!("nameserver {}", servers.join(" ")),
                uses,
            ));
        }
        None => rows.push(info(
            "resolv.conf",
            format!("nameserver {}", expected.join(" ")),
            "no process in the namespace to read it from",
        )),
    }
}

/// The nameservers in `/etc/resolv.conf` of the first process found in the namespace.
fn resolv_conf_in_use(ns: &NetNs) -> Option<(u32, Vec<String>)> {
    let id = ns.id().ok()?;
    let pid = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| NsId::of_path(Path::new(&format!("/proc/{pid}/ns/net"))) == Some(id))?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf")).ok()?;
    let servers = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .collect();
    Some((pid, servers))
}

/// On an overlay: the container's own record in the cluster store and the hosts that should keep entries for
/// it (each live host of the network; their kernels are theirs to show, a down host keeps none), then this
/// host's VXLAN FDB (`remote MAC -> VTEP`) and neighbour (`IP -> MAC`) entries for the other hosts'
/// endpoints, against what the device holds. The store's view comes from tetherd; without it, the remote
/// endpoints tetherd wrote down (those with DNS names, `<state>/overlay-remote/`) stand in.
fn overlay_rows(a: &KnownAttachment, host: &Netlink, state_dir: &Path, rows: &mut Vec<Comparison>) {
    let facts = crate::state::overlay::OverlayDir::new(state_dir, &a.network)
        .facts()
        .ok()
        .flatten();
    let Some(facts) = facts else {
        rows.push(row(
            "overlay network facts",
            "written at first ADD",
            "missing",
            false,
        ));
        return;
    };
    let view = overlay_view(&a.network);
    if let (Some(view), Some(rec)) = (&view, &a.record) {
        store_rows(rec, &facts, view, rows);
    }
    let device = facts.vxlan.clone();
    let Some(link) = host.link_by_name(&device).ok().flatten() else {
        rows.push(row("VXLAN device", device, "missing", false));
        return;
    };
    let fdb = host.fdb_entries(link.index).unwrap_or_default();
    let neighbours = host.permanent_neighbours(link.index).unwrap_or_default();
    rows.push(info(
        "VXLAN device",
        format!("{device} (VNI {}, VTEP {})", facts.vni, facts.vtep),
        format!("{} FDB, {} neighbour entries", fdb.len(), neighbours.len()),
    ));
    let remote: Vec<(String, String, Vec<IpAddr>)> = match &view {
        Some(view) => view
            .endpoints
            .iter()
            .filter(|e| e.host != view.host && view.hosts.iter().any(|h| h.host == e.host && h.up))
            .map(|e| (e.mac.to_string(), e.vtep.to_string(), vec![e.ip]))
            .collect(),
        None => crate::overlay::remote_names::load(state_dir)
            .iter()
            .filter(|r| r.network == a.network)
            .filter_map(|r| {
                // Remote records are named `<VTEP>_<address>`.
                let vtep = r.container_id.split('_').next().unwrap_or_default();
                let ips = r.ips.iter().map(|n| n.ip()).collect();
                r.mac.map(|m| (m.to_string(), vtep.to_string(), ips))
            })
            .collect(),
    };
    for (mac, vtep, ips) in remote {
        let entry = fdb
            .iter()
            .find(|e| e.mac.to_string().eq_ignore_ascii_case(&mac));
        rows.push(row(
            format!("FDB on {device}"),
            format!("{mac} -> {vtep}"),
            entry
                .map(|e| format!("{mac} -> {}", e.dst))
                .unwrap_or_else(|| "missing".into()),
            entry.is_some_and(|e| e.dst.to_string() == vtep),
        ));
        for ip in ips {
            let known = neighbours
                .iter()
                .any(|n| n.ip == ip && n.mac.to_string().eq_ignore_ascii_case(&mac));
            rows.push(row(
                format!("neighbour on {device}"),
                format!("{ip} -> {mac}"),
                if known { "present" } else { "missing" },
                known,
            ));
        }
    }
}

/// The store's view of `network` from this host's tetherd, if it runs an overlay control plane.
fn overlay_view(network: &str) -> Option<crate::overlay::NetworkView> {
    let request = crate::client::protocol::Request::Service {
        service: "overlay".into(),
        command: serde_json::json!({"cluster": "network", "network": network}),
    };
    let reply = crate::client::notify::request(
        &crate::paths::run_dir(),
        &request,
        std::time::Duration::from_secs(2),
    )
    .ok()?;
    serde_json::from_value(reply.status?).ok()
}

/// The container's endpoint records in the store, and which hosts keep entries for them.
fn store_rows(
    rec: &AttachmentRecord,
    facts: &crate::state::overlay::NetworkFacts,
    view: &crate::overlay::NetworkView,
    rows: &mut Vec<Comparison>,
) {
    let Some(mac) = rec.mac else {
        return;
    };
    let want = |ip: &IpAddr| format!("{ip} {mac} -> {}", facts.vtep);
    for ip in rec.ips.iter().map(|n| n.ip()) {
        let found = view
            .endpoints
            .iter()
            .find(|e| e.host == view.host && e.ip == ip);
        let have = found.map(|e| format!("{} {} -> {}", e.ip, e.mac, e.vtep));
        rows.push(row(
            "record in the cluster store",
            want(&ip),
            have.clone().unwrap_or_else(|| "missing".into()),
            have.as_deref() == Some(want(&ip).as_str()),
        ));
    }
    for other in view.hosts.iter().filter(|h| h.host != view.host) {
        let what = format!("FDB on host {}", other.host);
        let tether = format!("{mac} -> {}", facts.vtep);
        rows.push(if other.up {
            info(
                what,
                tether,
                "kept by that host's tetherd from the store (host up)",
            )
        } else {
            row(what, tether, "host down: nothing keeps it there", false)
        });
    }
}
