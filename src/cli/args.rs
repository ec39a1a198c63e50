//! The command line, declared once with clap: every subcommand gets `--help` from here.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnetwork::IpNetwork;

use crate::endpoint::PortSpec;
use crate::link::MacAddr;
use crate::state::mesh::{MeshPolicy, Publish, PublishMode};
use crate::state::service::{HealthCheck, Mode, ProtocolName, ServicePort};

#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version,
    about = "Container networking for Linux: networks as CNI conflists, containers attached through CNI plugins",
    long_about = "Container networking for Linux. `tether network create` writes a CNI conflist into the config dir \
(TETHER_CONF_DIR, default /etc/cni/net.d) that podman, containerd or tether itself can use; `tether attach` runs \
its plugin chain for a network namespace as libcni would and caches the result in TETHER_CNI_CACHE_DIR \
(default /var/lib/cni). Plugins are found on CNI_PATH (default /opt/cni/bin:/usr/lib/cni). Run as root."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect and remove networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Services: a VIP on a network balanced over the containers named (or aliased) like the service
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Attach a container (a network namespace) to a network
    Attach(AttachArgs),
    /// Detach a container from a network (or from all of them)
    Detach(DetachArgs),
    /// List attachments: container, network, interface, addresses, ports
    Ps(PsArgs),
    /// Detach containers whose namespace is gone, then run CNI GC on every network
    Gc(GcArgs),
    /// Check this host (the network namespace it runs in): kernel features, forwarding, other firewalls, plugins, config files, leftovers of dead containers, tetherd; exit status 1 when something is wrong
    Doctor(DoctorArgs),
    /// What tether made for a container (by id or name) beside what the kernel has now, every difference flagged; exit status 1 when there is one
    Inspect(ContainerInspectArgs),
    /// The path of a new connection from SRC to DST and the verdict at each step (isolation, a missing publish, DNS or routing?); exit status 1 when it does not get through
    Trace(TraceArgs),
    /// The overlay's cluster store as this host's tetherd sees it, and forgetting a dead host
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Two throwaway containers on a new network, traffic between them and through a published port, then cleanup
    Demo,
    /// OCI runtime hook: reads the container state on stdin (createRuntime attaches, poststop detaches)
    // `--help` goes to the hook, which knows its own flags.
    #[command(disable_help_flag = true)]
    Hook(HookWords),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The store in use, members and their liveness, blocks per host, records per network, last sync
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Set the encrypted overlay's key rotation interval for the whole cluster (in force from the epoch after next)
    Rotation {
        /// Seconds per epoch, at least 2
        seconds: u64,
    },
    /// Drop a dead host's address blocks and records from the store (refused while it is up)
    Forget {
        /// The host's control-plane address (its `overlay.bind` IP)
        host: std::net::IpAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (a conflist in the config dir)
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show a network as JSON, with its attached containers
    Inspect(InspectArgs),
    /// Remove networks, their bridge, firewall rules and address store
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service on a network; its backends are the network's containers whose name or alias is NAME
    Create(ServiceCreateArgs),
    /// List services
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show a service as JSON: network, VIPs, ports, mode, backends with their health, counters
    Inspect(ServiceInspectArgs),
    /// Remove services
    #[command(visible_alias = "remove")]
    Rm(ServiceRmArgs),
    /// Change a service's published ports (the routing mesh)
    Update(ServiceUpdateArgs),
}

#[derive(Debug, Args)]
pub struct ServiceCreateArgs {
    #[arg(long)]
    pub network: String,
    /// A balanced port, PORT[/tcp|udp|sctp] (tcp by default); repeat for more
    #[arg(long = "port", value_name = "PORT[/PROTO]")]
    pub ports: Vec<ServicePort>,
    /// The VIP (default: the next free one of TETHER_SERVICE_RANGE, 10.96.0.0/16 and fd7e:7e7e:5e5e::/112)
    #[arg(long, value_name = "IP")]
    pub vip: Option<IpAddr>,
    /// vip: NAME answers the VIP, balanced in the kernel; dnsrr: NAME answers the backends in rotation
    #[arg(long, default_value = "vip")]
    pub mode: Mode,
    /// tcp, http:/PATH (2xx) or none (default: tcp when a TCP port is given, else none)
    #[arg(long)]
    pub health: Option<HealthCheck>,
    /// Milliseconds between probes of one backend
    #[arg(long, default_value_t = 2000)]
    pub health_interval: u64,
    /// Passes in a row that bring a backend in
    #[arg(long, default_value_t = 2)]
    pub health_rise: u32,
    /// Failures in a row that take a backend out
    #[arg(long, default_value_t = 2)]
    pub health_fall: u32,
    /// client: one client address keeps its backend (jhash); none: any backend (numgen)
    #[arg(long, default_value = "none")]
    pub affinity: String,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[arg(long)]
    pub json: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ServiceInspectArgs {
    /// Accepted for symmetry: inspect always prints JSON
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceRmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// bridge, macvlan or overlay
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form; at most one IPv4 and one IPv6 (default: first free of 172.17-31.0.0/16, 192.168.0-240.0/20)
    #[arg(long, value_name = "CIDR")]
    pub subnet: Vec<IpNetwork>,
    /// Gateway address (default: the subnet's first address)
    #[arg(long, value_name = "IP")]
    pub gateway: Option<IpAddr>,
    /// Hand out addresses from this part of the subnet only
    #[arg(long, value_name = "CIDR")]
    pub ip_range: Option<IpNetwork>,
    /// Also give containers an IPv6 address (a ULA /64 unless --subnet names one)
    #[arg(long)]
    pub ipv6: bool,
    /// No masquerade and no default route: containers reach only their network
    #[arg(long)]
    pub internal: bool,
    /// Driver option: bridge: bridge=NAME, mtu=N, icc=false, com.docker.network.bridge.enable_ip_masquerade=false; macvlan: parent=IF, macvlan_mode=M; overlay: vni=N
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    /// Print the network as JSON
    #[arg(long)]
    pub json: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long)]
    pub json: bool,
    /// Names only
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Accepted for symmetry: inspect always prints JSON
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Detach attached containers first
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[arg(long)]
    pub network: String,
    /// The container's network namespace, e.g. /run/netns/NAME or /proc/PID/ns/net
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "pid",
        conflicts_with = "pid"
    )]
    pub netns: Option<PathBuf>,
    /// A process in the container (its /proc/PID/ns/net)
    #[arg(long)]
    pub pid: Option<u32>,
    /// Interface name in the container (default: eth0, or the next free ethN)
    #[arg(long)]
    pub ifname: Option<String>,
    /// Static address; once per family
    #[arg(long)]
    pub ip: Vec<IpAddr>,
    #[arg(long)]
    pub mac: Option<MacAddr>,
    /// Publish a port: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO], ranges as 8000-8010:80-90, a bare port for a random host port
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<PortSpec>,
    /// Container name (for DNS)
    #[arg(long)]
    pub name: Option<String>,
    /// Extra DNS name on this network
    #[arg(long)]
    pub alias: Vec<String>,
    #[arg(long)]
    pub json: bool,
    pub container_id: String,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// The network (default: every network the container is attached to)
    #[arg(long)]
    pub network: Option<String>,
    /// Only this interface
    #[arg(long, requires = "network")]
    pub ifname: Option<String>,
    /// A service backend first leaves every map, then its open TCP connections get up to SECONDS to
    /// finish before its interface goes
    #[arg(long, value_name = "SECONDS")]
    pub drain: Option<u64>,
    pub container_id: String,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(long)]
    pub json: bool,
    /// Only attachments of this network
    #[arg(long)]
    pub network: Option<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HookWords {
    /// Passed to the hook as given
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ContainerInspectArgs {
    #[arg(long)]
    pub json: bool,
    /// Container id or name
    pub container: String,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[arg(long)]
    pub json: bool,
    /// A container (id or name) or an outside address
    pub source: crate::troubleshoot::Target,
    /// A container (id or name) or an address, optionally :PORT[/tcp|udp|sctp] ([V6ADDR]:PORT)
    pub destination: crate::troubleshoot::Target,
}

/// The routing mesh's options of `service create` and `service update`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Answer on HOSTPORT of every host address and forward to PORT of a healthy replica; repeat for more
    #[arg(long = "publish", value_name = "HOSTPORT:PORT[/PROTO]")]
    pub publish: Vec<Publish>,
    /// mesh: every host answers; host: only hosts with a replica, to their own replicas
    #[arg(long)]
    pub publish_mode: Option<PublishMode>,
    /// cluster: local replicas first, else other hosts'; local: only this host's, else a reset
    #[arg(long)]
    pub mesh_policy: Option<MeshPolicy>,
    /// Replicas on other hosts see the client's address rather than this host's
    #[arg(long)]
    pub preserve_client_ip: bool,
}

#[derive(Debug, Args)]
pub struct ServiceUpdateArgs {
    /// Publish one more port, HOSTPORT:PORT[/tcp|udp|sctp]
    #[arg(long = "publish-add", value_name = "HOSTPORT:PORT[/PROTO]")]
    pub publish_add: Vec<Publish>,
    /// Stop publishing a host port: HOSTPORT[/PROTO] (or the HOSTPORT:PORT[/PROTO] it was published as)
    #[arg(long = "publish-rm", value_name = "HOSTPORT[/PROTO]", value_parser = published_host_port)]
    pub publish_rm: Vec<(ProtocolName, u16)>,
    #[arg(long)]
    pub publish_mode: Option<PublishMode>,
    #[arg(long)]
    pub mesh_policy: Option<MeshPolicy>,
    /// true or false
    #[arg(long)]
    pub preserve_client_ip: Option<bool>,
    #[arg(long)]
    pub json: bool,
    pub name: String,
}

fn published_host_port(text: &str) -> Result<(ProtocolName, u16), String> {
    if text.contains(':') {
        let p: Publish = text.parse()?;
        return Ok((p.protocol, p.host_port));
    }
    let p: ServicePort = text.parse()?;
    Ok((p.protocol, p.port))
}
