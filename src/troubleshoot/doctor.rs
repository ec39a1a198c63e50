//! `tether doctor`: is this host (the network namespace it runs in) ready for tether, and is what tether
//! made still healthy? Every finding says what to do. Read-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::cluster;
use super::container;
use super::finding::{Finding, Severity};
use super::host_firewall;
use super::kernel_features::{self, Feature, Probe};
use super::resolver_socket;
use super::services;
use crate::cni::runtime::{list_networks, NetworkConfigList};
use crate::endpoint::{all_records, Held};
use crate::link::Netlink;
use crate::netns::liveness::{is_gone, OccupiedOnDemand};
use crate::netns::NetNs;
use crate::state::driver_kind::DriverKind;
use crate::state::AttachmentRecord;

/// The kernel refuses a bridge's 1024th port (BR_MAX_PORTS); warn well before.
const BRIDGE_PORT_LIMIT: usize = crate::link::BRIDGE_MAX_PORTS + 1;
const BRIDGE_PORT_WARNING: usize = 896;
/// How long tetherd gets to answer a status request.
const TETHERD_TIMEOUT: Duration = Duration::from_millis(1000);
/// The control plane answers `cluster status` from its own thread, between store calls.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where doctor looks; [`Doctor::from_env`] reads the usual `TETHER_*` variables and `CNI_PATH`.
#[derive(Debug, Clone)]
pub struct Doctor {
    pub conf_dir: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
    pub cni_path: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub healthy: bool,
    pub problems: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    fn new(findings: Vec<Finding>) -> DoctorReport {
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        let problems = count(Severity::Problem);
        DoctorReport {
            healthy: problems == 0,
            problems,
            warnings: count(Severity::Warning),
            findings,
        }
    }
}

/// A network as doctor needs it: its name, driver and what its plugins ask of the kernel.
struct NetworkNeeds {
    name: String,
    plugins: Vec<String>,
    features: Vec<Feature>,
}

impl Doctor {
    pub fn from_env() -> Doctor {
        Doctor {
            conf_dir: crate::paths::conf_dir(),
            state_dir: crate::paths::state_dir(),
            run_dir: crate::paths::run_dir(),
            cni_cache_dir: crate::paths::cni_cache_dir(),
            cni_path: crate::paths::cni_path(),
        }
    }

    pub fn run(&self) -> DoctorReport {
        let mut findings = Vec::new();
        findings.extend(self.conflists());
        let networks: Vec<NetworkNeeds> = list_networks(&self.conf_dir)
            .unwrap_or_default()
            .iter()
            .map(needs_of)
            .collect();
        findings.extend(kernel(&networks));
        findings.extend(self.plugins(&networks));
        let records = all_records(&self.state_dir);
        findings.extend(sysctls(&records));
        findings.extend(firewall());
        findings.extend(shadowing_rules(&records));
        let mut occupied = OccupiedOnDemand::of_proc();
        findings.extend(self.leftovers(&mut occupied));
        findings.extend(self.tetherd(&records, &mut occupied));
        findings.extend(bridge_ports());
        DoctorReport::new(findings)
    }

    /// Config files the runtimes would skip: they no longer parse.
    fn conflists(&self) -> Vec<Finding> {
        let Ok(entries) = std::fs::read_dir(&self.conf_dir) else {
            return vec![Finding::info(
                "conflist",
                format!("no config dir {} (no networks)", self.conf_dir.display()),
            )];
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| ["conflist", "conf", "json"].contains(&e))
            })
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for path in &paths {
            let parsed = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    NetworkConfigList::from_bytes(b, Some(path.clone())).map_err(|e| e.msg)
                });
            if let Err(why) = parsed {
                out.push(Finding::problem(
                    "conflist",
                    format!("{} does not parse: {why}", path.display()),
                    format!(
                        "fix or remove {}: tether, podman and containerd skip it, so its network is gone for them",
                        path.display()
                    ),
                ));
            }
        }
        if out.is_empty() {
            out.push(Finding::ok(
                "conflist",
                format!("{} network config file(s) parse", paths.len()),
            ));
        }
        out
    }

    /// Every plugin a network names must be on CNI_PATH; tether's plugins need `nft` for per-network setup.
    fn plugins(&self, networks: &[NetworkNeeds]) -> Vec<Finding> {
        let mut out = Vec::new();
        let dirs = self
            .cni_path
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut missing = 0;
        for net in networks {
            for plugin in &net.plugins {
                if !self
                    .cni_path
                    .iter()
                    .any(|d| crate::paths::is_executable(&d.join(plugin)))
                {
                    missing += 1;
                    out.push(Finding::problem(
                        "plugins",
                        format!("network {} needs plugin {plugin}, which is not on CNI_PATH ({dirs})", net.name),
                        format!("install {plugin} into one of {dirs}, or set CNI_PATH to the directory that has it"),
                    ));
                }
            }
        }
        // Plugins program nf_tables over netlink; nft is only a tool for people to look with.
        match crate::paths::on_path("nft") {
            Some(path) => out.push(Finding::ok("plugins", format!("nft at {}", path.display()))),
            None => out.push(Finding::info(
                "plugins",
                "nft is not on PATH: tether does not need it; install nftables to look at its rules",
            )),
        }
        if missing == 0 {
            out.push(Finding::ok(
                "plugins",
                format!(
                    "every plugin of {} network(s) is on CNI_PATH",
                    networks.len()
                ),
            ));
        }
        out
    }

    /// State held for containers whose namespace is gone: tether's records and libcni's cache entries, with
    /// the rule tetherd and `tether gc` use.
    fn leftovers(&self, occupied: &mut OccupiedOnDemand) -> Vec<Finding> {
        let attachments = container::all(&self.state_dir, &self.cni_cache_dir);
        let mut out = Vec::new();
        for a in &attachments {
            let Some(netns) = a.netns() else { continue };
            let id = a.record.as_ref().and_then(|r| r.netns_id);
            if !is_gone(Path::new(&netns), id, occupied) {
                continue;
            }
            let held = match &a.record {
                Some(rec) => format!(
                    "tether still holds its addresses {}{}, firewall elements and DNS names",
                    join(&rec.ips),
                    rec.host_ifname
                        .as_ref()
                        .map(|h| format!(", host veth {h}"))
                        .unwrap_or_default()
                ),
                None => "the CNI result cache still holds its attachment".to_string(),
            };
            out.push(Finding::problem(
                "leftovers",
                format!(
                    "container {} on network {} ({}): its namespace {netns} is gone, but {held}",
                    a.container_id, a.network, a.ifname
                ),
                "run `tether gc` (tetherd does it by itself within goneCheckMs when it runs)",
            ));
        }
        if out.is_empty() {
            out.push(Finding::ok(
                "leftovers",
                format!(
                    "all {} attachment(s) still have their namespace",
                    attachments.len()
                ),
            ));
        }
        out
    }

    /// tetherd must answer when a live container has DNS or an overlay, and serve a resolver in each.
    fn tetherd(
        &self,
        records: &[AttachmentRecord],
        occupied: &mut OccupiedOnDemand,
    ) -> Vec<Finding> {
        let served: Vec<&AttachmentRecord> = records
            .iter()
            .filter(|r| r.dns || r.driver == DriverKind::Overlay)
            .filter(|r| Held::of_record(r).is_some_and(|h| !h.is_gone(occupied)))
            .collect();
        let request = crate::client::protocol::Request::Status;
        let status = crate::client::notify::request(&self.run_dir, &request, TETHERD_TIMEOUT);
        let mut out = Vec::new();
        let status = match status {
            Ok(reply) => reply.status.unwrap_or(Value::Null),
            Err(e) if served.is_empty() => {
                out.push(Finding::ok(
                    "tetherd",
                    format!("not running, and no container needs it ({e})"),
                ));
                return out;
            }
            Err(e) => {
                out.push(Finding::problem(
                    "tetherd",
                    format!(
                        "tetherd does not answer on {}, but {} container(s) need it for DNS or the overlay: {e}",
                        self.run_dir.join("tetherd.sock").display(),
                        served.len()
                    ),
                    format!(
                        "start it: `tetherd --stay` (or `systemctl start tetherd`); see {}",
                        self.run_dir.join("tetherd.log").display()
                    ),
                ));
                return out;
            }
        };
        out.push(Finding::ok(
            "tetherd",
            format!(
                "running (pid {}), {} record(s), serving DNS in {} namespace(s)",
                status["pid"], status["records"], status["services"]["dns"]["namespaces"]
            ),
        ));
        if status["services"]
            .get("overlay")
            .is_some_and(|o| !o.is_null())
        {
            out.extend(cluster::findings(&self.run_dir, CLUSTER_TIMEOUT));
        }
        let live: Vec<&AttachmentRecord> = records
            .iter()
            .filter(|r| Held::of_record(r).is_some_and(|h| !h.is_gone(occupied)))
            .collect();
        out.extend(services::findings(&self.state_dir, &live, records, &status));
        for rec in served.iter().filter(|r| r.dns && !r.own_resolver) {
            let Some(path) = &rec.netns else { continue };
            let Ok(ns) = NetNs::open(path) else { continue };
            if !resolver_socket::listens(&ns).unwrap_or(true) {
                out.push(Finding::problem(
                    "tetherd",
                    format!(
                        "container {} on network {} has no resolver at 127.0.0.11:53 in {}: its names do not resolve",
                        rec.container_id, rec.network, path.display()
                    ),
                    "look in tetherd.log for why; restarting tetherd reopens the resolver of every recorded container",
                ));
            }
        }
        out
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn needs_of(net: &NetworkConfigList) -> NetworkNeeds {
    let mut plugins = Vec::new();
    let mut features = Vec::new();
    for plugin in &net.list.plugins {
        let Some(kind) = plugin.get("type").and_then(Value::as_str) else {
            continue;
        };
        plugins.push(kind.to_string());
        if let Some(ipam) = plugin.pointer("/ipam/type").and_then(Value::as_str) {
            // In-process in tether's drivers, but a runtime may still exec it.
            plugins.push(ipam.to_string());
        }
        let base = kind.strip_prefix("tether-").unwrap_or(kind);
        match base {
            "bridge" => features.extend([
                Feature::Bridge,
                Feature::Veth,
                Feature::NftInet,
                Feature::NftNat,
            ]),
            "overlay" => features.extend([
                Feature::Vxlan,
                Feature::Bridge,
                Feature::Veth,
                Feature::NftInet,
                Feature::NftNat,
            ]),
            "macvlan" => {
                features.push(Feature::Macvlan);
                let vlan_field = plugin.get("vlan").is_some_and(|v| !v.is_null());
                let vlan_parent = plugin
                    .get("master")
                    .and_then(Value::as_str)
                    .is_some_and(is_vlan_name);
                if vlan_field || vlan_parent {
                    features.push(Feature::Vlan8021q);
                }
            }
            "portmap" => features.extend([Feature::NftInet, Feature::NftNat]),
            _ => {}
        }
        if plugin.get("macspoofchk").and_then(Value::as_bool) == Some(true) {
            features.push(Feature::NftBridge);
        }
    }
    plugins.dedup();
    NetworkNeeds {
        name: net.name().to_string(),
        plugins,
        features,
    }
}

/// `eth0.10`: an 802.1Q sub-interface by iproute2's naming.
fn is_vlan_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(lower, id)| {
        !lower.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    })
}

fn kernel(networks: &[NetworkNeeds]) -> Vec<Finding> {
    kernel_findings(&kernel_features::probe_all(), networks)
}

fn kernel_findings(probes: &[(Feature, Probe)], networks: &[NetworkNeeds]) -> Vec<Finding> {
    probes
        .iter()
        .map(|(feature, probe)| {
            let needed_by: Vec<&str> = networks
                .iter()
                .filter(|n| n.features.contains(feature))
                .map(|n| n.name.as_str())
                .collect();
            let what = feature.describe();
            let module = feature.module();
            match probe {
                Probe::Present => Finding::ok("kernel", format!("{what}: present")),
                Probe::Missing(why) if !needed_by.is_empty() => Finding::problem(
                    "kernel",
                    format!(
                        "{what} is missing from this kernel ({why}), and network(s) {} need it",
                        needed_by.join(", ")
                    ),
                    format!(
                        "load it (`modprobe {module}`) or boot a kernel that has it (Debian's linux-image-amd64 does); until then remove or change network(s) {}",
                        needed_by.join(", ")
                    ),
                ),
                Probe::Missing(why) => Finding::info(
                    "kernel",
                    format!("{what} is missing ({why}); no network here needs it (module {module})"),
                ),
                Probe::Untested(why) if !needed_by.is_empty() => Finding::warning(
                    "kernel",
                    format!("{what} could not be tried ({why}); network(s) {} need it", needed_by.join(", ")),
                    "run doctor as root with util-linux and iproute2 installed",
                ),
                Probe::Untested(why) => Finding::info("kernel", format!("{what} could not be tried ({why})")),
            }
        })
        .collect()
}

/// Forwarding and br_netfilter, as this namespace sees them.
fn sysctls(records: &[AttachmentRecord]) -> Vec<Finding> {
    let mut out = Vec::new();
    let routed: Vec<&AttachmentRecord> = records
        .iter()
        .filter(|r| matches!(r.driver, DriverKind::Bridge | DriverKind::Overlay))
        .collect();
    match crate::link::get_sysctl("net/ipv4/ip_forward").as_deref().map(str::trim) {
        Ok("1") => out.push(Finding::ok("sysctl", "net.ipv4.ip_forward = 1")),
        Ok(value) if !routed.is_empty() => out.push(Finding::problem(
            "sysctl",
            format!(
                "net.ipv4.ip_forward = {value} while {} bridge/overlay container(s) are attached: nothing is routed to or from them (egress, published ports from other hosts)",
                routed.len()
            ),
            "sysctl -w net.ipv4.ip_forward=1, and find what turned it off (tether-bridge sets it on every ADD)",
        )),
        Ok(value) => out.push(Finding::info(
            "sysctl",
            format!("net.ipv4.ip_forward = {value}; tether-bridge turns it on at the first ADD"),
        )),
        Err(e) => out.push(Finding::warning("sysctl", format!("cannot read net.ipv4.ip_forward: {e}"), "run doctor as root")),
    }
    let loaded = Path::new("/sys/module/br_netfilter").exists();
    let call = crate::link::get_sysctl("net/bridge/bridge-nf-call-iptables").ok();
    match (loaded, call.as_deref().map(str::trim)) {
        (false, _) => out.push(Finding::info(
            "sysctl",
            "br_netfilter is not loaded: traffic between containers of one bridge network is bridged and never meets any table's forward chain",
        )),
        (true, Some("1")) => out.push(Finding::info(
            "sysctl",
            "br_netfilter is loaded and net.bridge.bridge-nf-call-iptables = 1 here: traffic between containers of one bridge network also passes the ip/ip6 forward hooks, so another table's forward drop cuts them off from each other too (tether's own chain accepts it)",
        )),
        (true, value) => out.push(Finding::info(
            "sysctl",
            format!(
                "br_netfilter is loaded; net.bridge.bridge-nf-call-iptables = {} here, so bridged traffic between containers skips the ip forward hooks",
                value.unwrap_or("unset")
            ),
        )),
    }
    out
}

fn firewall() -> Vec<Finding> {
    let drops = match host_firewall::forward_drops() {
        Ok(drops) => drops,
        Err(e) => {
            return vec![Finding::problem(
                "firewall",
                format!("cannot read nf_tables: {e}"),
                "run doctor as root; load nf_tables (`modprobe nf_tables`)",
            )]
        }
    };
    let mut out = Vec::new();
    for drop in &drops {
        let c = &drop.chain;
        if drop.admits_tether {
            out.push(Finding::ok(
                "firewall",
                format!(
                    "{}, and that table accepts tether's device group {} both ways",
                    drop.describe(),
                    crate::link::TETHER_BRIDGE_GROUP
                ),
            ));
        } else {
            out.push(Finding::problem(
                "firewall",
                format!(
                    "{}: containers' traffic to and from other networks and the outside is dropped there (tether never edits another table)",
                    drop.describe()
                ),
                c.remedy(),
            ));
        }
    }
    if drops.is_empty() {
        out.push(Finding::ok(
            "firewall",
            "no other table drops forwarded traffic by default",
        ));
    }
    out
}

/// Narrower drop or reject rules in other tables' forward chains that match a container's address: they
/// shadow tether's own accept for that traffic.
fn shadowing_rules(records: &[AttachmentRecord]) -> Vec<Finding> {
    let containers: Vec<(String, std::net::IpAddr)> = records
        .iter()
        .flat_map(|r| {
            let who = r.name.clone().unwrap_or_else(|| r.container_id.to_string());
            r.ips.iter().map(move |n| (who.clone(), n.ip()))
        })
        .collect();
    if containers.is_empty() {
        return Vec::new();
    }
    host_firewall::shadowing_rules(&containers)
        .into_iter()
        .map(|shadow| {
            let c = &shadow.chain;
            let who: Vec<String> = shadow
                .containers
                .iter()
                .map(|(name, ip)| format!("{name} ({ip})"))
                .collect();
            let what = format!(
                "`{}` in chain {} of table {} {} matches the address of {}: it drops their forwarded traffic (tether never edits another table)",
                shadow.rule, c.chain, c.family, c.table, join(&who)
            );
            if shadow.admits_tether {
                Finding::warning(
                    "firewall",
                    what,
                    "that table accepts tether's device group; check that those accept rules come before this one (`nft -a list table ...`)",
                )
            } else {
                Finding::problem(
                    "firewall",
                    what,
                    format!("narrow or remove that rule, or accept tether's traffic before it: {}", c.remedy()),
                )
            }
        })
        .collect()
}

/// Bridges near the kernel's port limit: the next veth cannot join.
fn bridge_ports() -> Vec<Finding> {
    let links = match Netlink::new().and_then(|nl| nl.links()) {
        Ok(links) => links,
        Err(e) => {
            return vec![Finding::warning(
                "bridge",
                format!("cannot list links: {e}"),
                "run doctor as root",
            )]
        }
    };
    let mut ports: BTreeMap<u32, usize> = BTreeMap::new();
    for link in &links {
        if let Some(master) = link.master {
            *ports.entry(master).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for bridge in links.iter().filter(|l| l.is_bridge()) {
        let n = ports.get(&bridge.index).copied().unwrap_or(0);
        if n >= BRIDGE_PORT_WARNING {
            out.push(Finding::warning(
                "bridge",
                format!(
                    "bridge {} has {n} ports; the kernel refuses the {BRIDGE_PORT_LIMIT}th",
                    bridge.name
                ),
                "spread containers over more networks (one bridge each) before this one fills",
            ));
        } else {
            out.push(Finding::ok(
                "bridge",
                format!("bridge {}: {n} port(s)", bridge.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(json: &str) -> NetworkNeeds {
        needs_of(&NetworkConfigList::from_bytes(json.as_bytes().to_vec(), None).unwrap())
    }

    #[test]
    fn a_vlan_parent_needs_8021q_and_a_plain_one_does_not() {
        let by_field = net(
            r#"{"cniVersion":"1.0.0","name":"v","plugins":[{"type":"tether-macvlan","master":"eth0","vlan":10}]}"#,
        );
        let by_name = net(
            r#"{"cniVersion":"1.0.0","name":"w","plugins":[{"type":"macvlan","master":"eth0.20"}]}"#,
        );
        let plain = net(
            r#"{"cniVersion":"1.0.0","name":"p","plugins":[{"type":"tether-macvlan","master":"eth0"}]}"#,
        );
        assert!(by_field.features.contains(&Feature::Vlan8021q));
        assert!(by_name.features.contains(&Feature::Vlan8021q));
        assert!(!plain.features.contains(&Feature::Vlan8021q));
    }

    #[test]
    fn a_missing_feature_is_a_problem_only_when_a_network_needs_it() {
        let vlan = net(
            r#"{"cniVersion":"1.0.0","name":"v","plugins":[{"type":"tether-macvlan","master":"eth0","vlan":10}]}"#,
        );
        let missing = vec![
            (
                Feature::Vlan8021q,
                Probe::Missing("Unknown device type".into()),
            ),
            (Feature::Esp, Probe::Missing("no algorithm".into())),
        ];
        let found = kernel_findings(&missing, &[vlan]);
        assert_eq!(found[0].severity, Severity::Problem);
        assert!(found[0].what.contains("8021q") && found[0].what.contains("v"));
        assert!(found[0].fix.as_deref().unwrap().contains("modprobe 8021q"));
        assert_eq!(found[1].severity, Severity::Info);
    }

    #[test]
    fn plugins_and_their_ipam_are_listed_once() {
        let n = net(
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"tether-bridge","ipam":{"type":"tether-ipam"}},{"type":"tether-portmap"}]}"#,
        );
        assert_eq!(
            n.plugins,
            ["tether-bridge", "tether-ipam", "tether-portmap"]
        );
    }
}
