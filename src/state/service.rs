//! Services on disk: one JSON file per service, `<state>/services/<name>.json`, written by `tether service
//! create` and read by tetherd (balancing, health, DNS names) and the CLI. A service is a plain value with
//! no host in it, so a cluster store can carry the same document to other hosts later.

use std::fmt;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};

use crate::firewall::Protocol;
use crate::state_file::{self, DirLock, JsonDir};

pub use crate::state_file::StateFileError as ServiceFileError;

/// The default service ranges: off-link addresses that exist only inside container namespaces (the
/// balancing DNATs them before they leave), never handed to a container. Not in tether's network pools
/// (172.17-31.0.0/16, 192.168.0-240.0/20). `TETHER_SERVICE_RANGE` (`V4CIDR[,V6CIDR]`) overrides them.
pub const DEFAULT_RANGE_V4: &str = "10.96.0.0/16";
pub const DEFAULT_RANGE_V6: &str = "fd7e:7e7e:5e5e::/112";

/// One port of a service, as `--port PORT[/tcp|udp|sctp]` gives it (tcp when no protocol is named).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePort {
    pub port: u16,
    pub protocol: ProtocolName,
}

/// `Protocol` with an order and a text form for the service file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolName {
    Tcp,
    Udp,
    Sctp,
}

impl ProtocolName {
    pub fn protocol(self) -> Protocol {
        match self {
            ProtocolName::Tcp => Protocol::Tcp,
            ProtocolName::Udp => Protocol::Udp,
            ProtocolName::Sctp => Protocol::Sctp,
        }
    }
}

impl FromStr for ServicePort {
    type Err = String;

    fn from_str(text: &str) -> Result<ServicePort, String> {
        let (port, proto) = match text.split_once('/') {
            Some((p, proto)) => (p, proto),
            None => (text, "tcp"),
        };
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => ProtocolName::Tcp,
            "udp" => ProtocolName::Udp,
            "sctp" => ProtocolName::Sctp,
            other => {
                return Err(format!(
                    "unknown protocol {other:?} in port {text:?}; use tcp, udp or sctp"
                ))
            }
        };
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(ServicePort { port, protocol }),
            _ => Err(format!("bad port {port:?} in {text:?}; give 1-65535")),
        }
    }
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.protocol().name())
    }
}

crate::text_form::serde_as_text!(ServicePort);

/// What NAME answers: the VIP, or the backends themselves in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Vip,
    Dnsrr,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(text: &str) -> Result<Mode, String> {
        match text {
            "vip" => Ok(Mode::Vip),
            "dnsrr" => Ok(Mode::Dnsrr),
            _ => Err(format!("unknown mode {text:?}; use vip or dnsrr")),
        }
    }
}

/// How tetherd decides that a backend may take new connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum HealthCheck {
    /// Every attached backend is in.
    None,
    /// A TCP connect to the service's first TCP port.
    Tcp,
    /// An HTTP GET of the path on the first TCP port answers 2xx.
    Http(String),
}

impl FromStr for HealthCheck {
    type Err = String;
    fn from_str(text: &str) -> Result<HealthCheck, String> {
        match text {
            "none" => Ok(HealthCheck::None),
            "tcp" => Ok(HealthCheck::Tcp),
            _ => match text.strip_prefix("http:") {
                Some(path) if path.starts_with('/') && !path.chars().any(char::is_whitespace) => {
                    Ok(HealthCheck::Http(path.to_string()))
                }
                _ => Err(format!(
                    "unknown health check {text:?}; use tcp, http:/PATH or none"
                )),
            },
        }
    }
}

/// Which backend a new connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// Any backend (`numgen random`).
    #[default]
    None,
    /// The same backend for one client address while the backends stay the same (`jhash ip saddr`).
    Client,
}

/// Probe timing: every `interval`, `rise` passes in a row bring a backend in, `fall` failures take it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthTiming {
    pub interval_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthTiming {
    fn default() -> HealthTiming {
        HealthTiming {
            interval_ms: 2000,
            rise: 2,
            fall: 2,
        }
    }
}

impl HealthTiming {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(50))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    pub network: String,
    /// One address per family the network has (IPv4 first); empty in dnsrr mode.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub mode: Mode,
    pub health: HealthCheck,
    #[serde(default)]
    pub health_timing: HealthTiming,
    #[serde(default)]
    pub affinity: Affinity,
    /// Set on a network that spans hosts (overlay): the service lives in the cluster store and exists
    /// on every host of the network with the same VIP. None: this host's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterScope>,
}

/// Where a cluster service comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterScope {
    /// Wall-clock milliseconds at creation: of two services holding one VIP, the earlier keeps it.
    pub created_at_ms: u64,
    /// The host that created it, when that is another host: this file is then a copy of its record in
    /// the cluster store, written and removed by the control plane. None: created here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<IpAddr>,
}

impl ServiceSpec {
    /// A service this host created on a network spanning hosts: its record goes to the cluster store.
    pub fn is_own_cluster_service(&self) -> bool {
        self.cluster.is_some_and(|c| c.origin.is_none())
    }

    /// The host whose cluster record this file copies.
    pub fn origin(&self) -> Option<IpAddr> {
        self.cluster.and_then(|c| c.origin)
    }
}

impl ServiceSpec {
    /// The port health probes connect to: the first TCP port.
    pub fn probe_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == ProtocolName::Tcp)
            .map(|p| p.port)
    }
}

/// The service ranges VIPs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRange {
    pub v4: Ipv4Network,
    pub v6: Ipv6Network,
}

impl Default for ServiceRange {
    fn default() -> ServiceRange {
        ServiceRange {
            v4: DEFAULT_RANGE_V4.parse().expect("a valid default"),
            v6: DEFAULT_RANGE_V6.parse().expect("a valid default"),
        }
    }
}

impl FromStr for ServiceRange {
    type Err = String;
    /// `V4CIDR[,V6CIDR]`, in either order; a family not named keeps its default.
    fn from_str(text: &str) -> Result<ServiceRange, String> {
        let mut range = ServiceRange::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<IpNetwork>() {
                Ok(IpNetwork::V4(n)) if n.prefix() <= 30 => range.v4 = n,
                Ok(IpNetwork::V6(n)) if n.prefix() <= 126 => range.v6 = n,
                _ => {
                    return Err(format!(
                        "bad service range {part:?}; give V4CIDR[,V6CIDR] with room for addresses"
                    ))
                }
            }
        }
        Ok(range)
    }
}

impl ServiceRange {
    /// `TETHER_SERVICE_RANGE`, or the defaults.
    pub fn from_env() -> Result<ServiceRange, String> {
        match std::env::var("TETHER_SERVICE_RANGE") {
            Ok(text) if !text.trim().is_empty() => text.parse(),
            _ => Ok(ServiceRange::default()),
        }
    }

    pub fn networks(&self) -> [IpNetwork; 2] {
        [IpNetwork::V4(self.v4), IpNetwork::V6(self.v6)]
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.contains(a),
            IpAddr::V6(a) => self.v6.contains(a),
        }
    }

    /// The `index`th address of each range (index 0 is the network address, never handed out).
    fn nth(&self, index: u128) -> Option<(Ipv4Addr, Ipv6Addr)> {
        let v4_size = 1u128 << (32 - self.v4.prefix());
        let v6_size = 1u128
            .checked_shl(128 - u32::from(self.v6.prefix()))
            .unwrap_or(u128::MAX);
        // The last address of the IPv4 range is its broadcast: not used either.
        if index == 0 || index >= v4_size - 1 || index >= v6_size {
            return None;
        }
        let v4 = Ipv4Addr::from(u32::from(self.v4.network()) + index as u32);
        let v6 = Ipv6Addr::from(u128::from(self.v6.network()) + index);
        Some((v4, v6))
    }

    /// The first index whose addresses no service holds: the pair `(v4, v6)`; a service takes the ones
    /// of the families its network has.
    pub fn first_free(&self, taken: &[IpAddr]) -> Option<(Ipv4Addr, Ipv6Addr)> {
        (1u128..)
            .map_while(|i| self.nth(i))
            .find(|(v4, v6)| !taken.contains(&IpAddr::V4(*v4)) && !taken.contains(&IpAddr::V6(*v6)))
    }
}

/// `<run>/balancer-health.json`: this host's backends in their services' maps (healthy by tetherd's
/// probes, or of a service without checks; not draining), as (service, container id, ifname). tetherd's
/// balancer writes it; the overlay control plane publishes it with this host's endpoints, so other hosts
/// balance over a backend of this one only while it is listed.
pub fn backend_health_path(run_dir: &Path) -> PathBuf {
    run_dir.join("balancer-health.json")
}

/// One healthy backend in that file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthyBackend {
    pub service: String,
    pub container_id: String,
    pub ifname: String,
}

/// The healthy backends the file lists; none when it is missing or unreadable.
pub fn read_healthy_backends(run_dir: &Path) -> Vec<HealthyBackend> {
    state_file::read_json(&backend_health_path(run_dir))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// `<state>/services`: the one place that names the layout.
pub fn services_root(state_dir: &Path) -> PathBuf {
    state_dir.join("services")
}

/// The service files, with a lock so two `service create`s never take one VIP or one name.
pub struct ServiceDir {
    files: JsonDir,
}

/// Held while a service is created or removed.
pub type ServiceLock = DirLock;

impl ServiceDir {
    pub fn new(state_dir: &Path) -> ServiceDir {
        ServiceDir {
            files: JsonDir::new(services_root(state_dir)),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.files.path(name)
    }

    pub fn lock(&self) -> std::io::Result<ServiceLock> {
        self.files.lock()
    }

    pub fn read(&self, name: &str) -> Result<Option<ServiceSpec>, ServiceFileError> {
        self.files.read(name)
    }

    pub fn write(&self, spec: &ServiceSpec) -> Result<(), ServiceFileError> {
        self.files.write(&spec.name, spec)
    }

    pub fn remove(&self, name: &str) -> Result<bool, ServiceFileError> {
        self.files.remove(name)
    }

    /// Every service, by name; a missing directory is no services.
    pub fn list(&self) -> Result<Vec<ServiceSpec>, ServiceFileError> {
        let mut all: Vec<ServiceSpec> = self.files.list()?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The directory's modification time: tetherd re-reads the services only when it moved.
    pub fn stamp(&self) -> Option<std::time::SystemTime> {
        self.files.stamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_tcp_by_default() {
        let p: ServicePort = "80".parse().unwrap();
        assert_eq!(p.to_string(), "80/tcp");
        assert_eq!(
            "53/UDP".parse::<ServicePort>().unwrap().protocol,
            ProtocolName::Udp
        );
        assert!("0".parse::<ServicePort>().is_err());
        assert!("80/icmp".parse::<ServicePort>().is_err());
    }

    #[test]
    fn health_checks_parse() {
        assert_eq!(
            "http:/healthz".parse(),
            Ok(HealthCheck::Http("/healthz".into()))
        );
        assert_eq!("tcp".parse(), Ok(HealthCheck::Tcp));
        assert!("http:healthz".parse::<HealthCheck>().is_err());
    }

    #[test]
    fn vips_skip_taken_ones_and_the_network_address() {
        let range = ServiceRange::default();
        let (v4, v6) = range.first_free(&[]).unwrap();
        assert_eq!(v4, "10.96.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(v6, "fd7e:7e7e:5e5e::1".parse::<Ipv6Addr>().unwrap());
        let (v4, _) = range.first_free(&[IpAddr::V4(v4)]).unwrap();
        assert_eq!(v4, "10.96.0.2".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn a_small_range_runs_out() {
        let range: ServiceRange = "10.1.0.0/30".parse().unwrap();
        let taken: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()];
        assert_eq!(range.first_free(&taken), None);
    }

    #[test]
    fn the_file_round_trips() {
        let spec = ServiceSpec {
            name: "web".into(),
            network: "n1".into(),
            vips: vec!["10.96.0.1".parse().unwrap()],
            ports: vec!["80".parse().unwrap(), "53/udp".parse().unwrap()],
            mode: Mode::Vip,
            health: HealthCheck::Http("/".into()),
            health_timing: HealthTiming::default(),
            affinity: Affinity::Client,
            cluster: None,
        };
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""ports":["80/tcp","53/udp"]"#), "{text}");
        assert_eq!(serde_json::from_str::<ServiceSpec>(&text).unwrap(), spec);
    }
}
