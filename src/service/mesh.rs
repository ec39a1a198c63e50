//! The routing mesh in tetherd: every published port of every service answers on this host's local
//! addresses (table `inet tether_mesh`, `firewall::mesh_ports`) and goes to a healthy replica: one on this
//! host when there is one (DNAT only, the replica sees the client), else another host that runs one (DNAT
//! to that host's own mesh port, SNATed to this host), else a reset. The balancer calls
//! [`MeshPorts::sync`] after each reconcile with the healthy replicas it knows; a replica record that names
//! another host (the cluster store's) is a remote one. With `--preserve-client-ip` the remote case is
//! not SNATed, and every host keeps the return path of such connections (`service::mesh_return`).
//!
//! tetherd also holds a socket bound to each published port, so no process on the host can bind it later
//! (the mesh's DNAT comes first, so those sockets never see a connection, except to [::1], and IPv6
//! ones to a port only other hosts serve over an IPv4 underlay: both relayed to 127.0.0.1).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ipnetwork::IpNetwork;

use crate::firewall::mesh_ports::{self, Forward, MeshKey, MeshTable};
use crate::firewall::netlink::ruleset::Change;
use crate::service::mesh_return::MeshReturn;
use crate::state::mesh::{MeshDir, MeshPolicy, MeshSpec, PublishMode};
use crate::state::mesh_counts::{CountsDir, HostCounts, PortCount, ServiceCounts};
use crate::state::service::ProtocolName;
use crate::state::{AttachmentRecord, DriverKind};

/// A healthy replica as the mesh sees it: its address, and the host it runs on (None: this host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshBackend {
    pub addr: IpAddr,
    pub host: Option<String>,
}

/// Where this host sends a publication's new connections: local replicas first (their addresses); else,
/// under the cluster policy in mesh mode, the hosts that run one (their addresses: the connection goes to
/// that host's own mesh port, which forwards it to its local replica); else nowhere (a reset).
pub fn choose(spec: &MeshSpec, backends: &[MeshBackend]) -> (Forward, Vec<IpAddr>) {
    let local: Vec<IpAddr> = backends
        .iter()
        .filter(|b| b.host.is_none())
        .map(|b| b.addr)
        .collect();
    if !local.is_empty() {
        return (Forward::Local, local);
    }
    if spec.policy == MeshPolicy::Local || spec.mode == PublishMode::Host {
        return (Forward::Refuse, Vec::new());
    }
    let mut remote: Vec<IpAddr> = backends
        .iter()
        .filter_map(|b| b.host.as_deref()?.parse().ok())
        .collect();
    remote.sort();
    remote.dedup();
    match (remote.is_empty(), spec.preserve_client_ip) {
        (true, _) => (Forward::Refuse, Vec::new()),
        (false, false) => (Forward::RemoteSnat, remote),
        (false, true) => (Forward::RemotePreserve, remote),
    }
}

/// The balancer's healthy backends (per service, their addresses) with the host each runs on: a record
/// of another host's container (the overlay's `overlay-remote` records) names its host,
/// any other record is this host's. A local overlay container is reached at its gateway-bridge address
/// (`egress`): this host has no address on the overlay itself.
pub fn backends_by_host(
    active: &HashMap<String, Vec<IpAddr>>,
    records: &[AttachmentRecord],
    egress: impl Fn(&AttachmentRecord) -> Option<IpAddr>,
) -> HashMap<String, Vec<MeshBackend>> {
    let mut by_addr: HashMap<IpAddr, MeshBackend> = HashMap::new();
    for rec in records {
        let host = rec.remote.as_ref().map(|r| r.host.to_string());
        let reach = match rec.driver {
            DriverKind::Overlay => egress(rec),
            _ => None,
        };
        for net in &rec.ips {
            let addr = reach.unwrap_or(net.ip());
            let host = host.clone();
            by_addr.insert(net.ip(), MeshBackend { addr, host });
        }
    }
    active
        .iter()
        .map(|(name, addrs)| {
            let list = addrs
                .iter()
                .map(|&addr| {
                    let local = MeshBackend { addr, host: None };
                    by_addr.get(&addr).cloned().unwrap_or(local)
                })
                .collect();
            (name.clone(), list)
        })
        .collect()
}

/// The other hosts of the mesh: every host a record of another host's container names (IPv4: the
/// underlay's family).
pub fn mesh_hosts(records: &[AttachmentRecord]) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = records
        .iter()
        .filter_map(|r| match r.remote.as_ref()?.host {
            IpAddr::V4(h) => Some(h),
            IpAddr::V6(_) => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// [`backends_by_host`]'s `egress`: the overlay driver's lease on this host's gateway bridge.
pub fn overlay_egress(rec: &AttachmentRecord) -> Option<IpAddr> {
    crate::driver::overlay::egress_address(&rec.container_id, &rec.ifname)
}

/// tetherd's mesh: the publications read from the state directory, the table, the held sockets.
#[derive(Default)]
pub struct MeshPorts {
    state_dir: PathBuf,
    specs: Vec<MeshSpec>,
    stamp: Option<SystemTime>,
    table: MeshTable,
    installed: bool,
    held: HashMap<(ProtocolName, u16), port_hold::Held>,
    /// Bridges with route_localnet set (127.0.0.1 to a replica behind them).
    localnet: HashSet<String>,
    /// The return path of connections other hosts forward here with the client's address.
    ret: MeshReturn,
    /// The hosts that may forward here with the client's address (some publication preserves it).
    peers: Vec<Ipv4Addr>,
    /// Where the ::1 and IPv6 relays send connections (`port_hold::Target`).
    relay_to: port_hold::Target,
    /// The counters last written for the cluster store, and when.
    counts: (BTreeMap<String, Vec<PortCount>>, Option<Instant>),
}

/// How often the counters are sampled for the cluster store, and how long unchanged ones go unwritten
/// (their age in `inspect` says the host is still there).
const COUNTS_EVERY: Duration = Duration::from_secs(2);
const COUNTS_UNCHANGED_EVERY: Duration = Duration::from_secs(30);

impl MeshPorts {
    pub fn new(state_dir: &Path) -> MeshPorts {
        MeshPorts {
            state_dir: state_dir.to_path_buf(),
            ..MeshPorts::default()
        }
    }

    /// Re-reads the mesh files when their directory changed.
    fn reload(&mut self) {
        let dir = MeshDir::new(&self.state_dir);
        let stamp = dir.stamp();
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match dir.list() {
            Ok(specs) => self.specs = specs,
            Err(e) => tracing::warn!(error = %e, "reading mesh files"),
        }
    }

    /// Whether some service publishes a port (tetherd stays up for it).
    pub fn publishes(&mut self) -> bool {
        self.reload();
        self.specs.iter().any(|s| !s.publish.is_empty())
    }

    /// Nothing published and nothing of the mesh left in the kernel.
    pub fn idle(&mut self) -> bool {
        !self.publishes() && !self.installed
    }

    /// Brings the table and the held sockets in line with the publications and `backends` (per
    /// service, its healthy replicas; `hosts`, the other hosts of the mesh). Runs on tetherd's own
    /// thread, in the host's namespace.
    pub fn sync(&mut self, backends: &HashMap<String, Vec<MeshBackend>>, hosts: &[Ipv4Addr]) {
        self.reload();
        let mut changes = Vec::new();
        if !self.installed && !self.specs.is_empty() {
            changes = self.table.install();
        }
        let direct = host_routes::connected();
        let mut local = Vec::new();
        let mut wanted = HashSet::new();
        let mut departed_udp: Vec<(u16, IpAddr)> = Vec::new();
        // A publication whose service is gone (a copy the cluster store took away) publishes nothing.
        let mut live: Vec<MeshSpec> = self
            .specs
            .iter()
            .filter(|s| backends.contains_key(&s.service))
            .cloned()
            .collect();
        // Host mode without a replica here: the host does not publish at all (no element, no held
        // socket), as Docker's `mode=host` does not listen on hosts without a task.
        let direct_ref = &direct;
        live.retain(|spec| {
            spec.mode == PublishMode::Mesh
                || backends[&spec.service]
                    .iter()
                    .any(|b| b.host.is_none() && direct_ref.iter().any(|(n, _)| n.contains(b.addr)))
        });
        for spec in &live {
            let mut usable = backends.get(&spec.service).cloned().unwrap_or_default();
            // A local replica is reached at its addresses on a link of this host (on an overlay: its
            // gateway-bridge address, not its overlay one).
            usable
                .retain(|b| b.host.is_some() || direct.iter().any(|(net, _)| net.contains(b.addr)));
            let (forward, addrs) = choose(spec, &usable);
            if forward == Forward::Local {
                local.extend(addrs.iter().copied());
            }
            for p in &spec.publish {
                for v6 in [false, true] {
                    let key = MeshKey {
                        protocol: p.protocol.protocol(),
                        host_port: p.host_port,
                        v6,
                    };
                    let remote = matches!(forward, Forward::RemoteSnat | Forward::RemotePreserve);
                    if v6 && remote && !addrs.iter().any(IpAddr::is_ipv6) {
                        // IPv6 clients of a port other hosts serve over an IPv4 underlay: no element
                        // (NAT cannot change the family), so tetherd's held socket takes them and
                        // relays them to 127.0.0.1:HOSTPORT, through the mesh.
                        continue;
                    }
                    wanted.insert(key);
                    // Another host is asked on its own published port.
                    let port = match forward {
                        Forward::Local | Forward::Refuse => p.port,
                        Forward::RemoteSnat | Forward::RemotePreserve => p.host_port,
                    };
                    let (c, gone) = self.table.set_port(key, port, forward, &addrs);
                    changes.extend(c);
                    if p.protocol == ProtocolName::Udp {
                        departed_udp.extend(gone.into_iter().map(|b| (p.host_port, b)));
                    }
                }
            }
        }
        let stale: Vec<MeshKey> = self
            .table
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in stale {
            changes.extend(self.table.remove_port(&key));
        }
        // Any host's copy of a publication that preserves the client may forward here.
        self.relay_to.set(hosts.first().map(|h| source_towards(*h)));
        let preserve = live.iter().any(|s| s.preserve_client_ip);
        self.peers = if preserve { hosts.to_vec() } else { Vec::new() };
        let peers = self.ret.sync(&self.peers);
        changes.extend(self.table.set_peers(&peers));
        self.apply(changes);
        for (port, backend) in departed_udp {
            if let Err(e) = crate::firewall::conntrack::forget_udp_flows_to_port(port, backend) {
                tracing::warn!(error = %e, %backend, port, "clearing mesh UDP flows");
            }
        }
        let held = live
            .iter()
            .flat_map(|s| s.publish.iter().map(|p| (p.protocol, p.host_port)))
            .collect();
        self.hold_ports(held);
        self.allow_localhost(&local, &direct);
    }

    /// Between syncs: samples the counters for the cluster store, and takes the MAC of a mesh host
    /// that was not resolved yet once it is.
    pub fn tick(&mut self) {
        self.sample_counts();
        if !self.installed || !self.ret.has_hosts() {
            return;
        }
        let peers = self.ret.sync(&self.peers);
        let changes = self.table.set_peers(&peers);
        if !changes.is_empty() {
            self.apply(changes);
        }
    }

    /// This host's counters per service into `state::mesh_counts`, when they changed (at most every
    /// [`COUNTS_EVERY`]) or have not been written for [`COUNTS_UNCHANGED_EVERY`].
    fn sample_counts(&mut self) {
        let since = self.counts.1.map(|t| t.elapsed());
        if since.is_some_and(|s| s < COUNTS_EVERY) || (!self.installed && self.counts.0.is_empty())
        {
            return;
        }
        let kernel = if self.installed {
            mesh_ports::counters().unwrap_or_default()
        } else {
            HashMap::new()
        };
        let now: BTreeMap<String, Vec<PortCount>> = self
            .specs
            .iter()
            .map(|s| {
                let ports = s
                    .publish
                    .iter()
                    .map(|p| {
                        let c = kernel
                            .get(&(p.protocol.protocol(), p.host_port))
                            .copied()
                            .unwrap_or_default();
                        PortCount {
                            publish: *p,
                            forwarded_local: c.forwarded_local,
                            forwarded_remote: c.forwarded_remote,
                            refused: c.refused,
                        }
                    })
                    .collect();
                (s.service.clone(), ports)
            })
            .collect();
        if now == self.counts.0 && since.is_some_and(|s| s < COUNTS_UNCHANGED_EVERY) {
            return;
        }
        let sampled_at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let file = HostCounts {
            host: None,
            services: now
                .iter()
                .map(|(name, ports)| {
                    let ports = ports.clone();
                    (
                        name.clone(),
                        ServiceCounts {
                            sampled_at_ms,
                            ports,
                        },
                    )
                })
                .collect(),
        };
        match CountsDir::new(&self.state_dir).write_own(&file) {
            Ok(()) => {
                self.counts = (now, Some(Instant::now()));
                // The control plane publishes them; it reads the state directory when poked.
                crate::client::poke::poke_control_plane();
            }
            Err(e) => tracing::warn!(error = %e, "writing the mesh counters"),
        }
    }

    fn apply(&mut self, changes: Vec<Change>) {
        if self.table.is_empty() {
            if self.installed || !changes.is_empty() {
                if let Err(e) = mesh_ports::remove() {
                    tracing::warn!(error = %e, "removing the mesh table");
                }
            }
            self.installed = false;
            self.table = MeshTable::default();
            return;
        }
        match mesh_ports::apply(&changes, "updating the mesh table") {
            Ok(()) => self.installed = true,
            Err(e) => {
                tracing::warn!(error = %e, "mesh table not updated; rebuilding it next time");
                self.installed = false;
                self.table = MeshTable::default();
            }
        }
    }

    /// Binds (without listening) each published port on every address, and lets go of the others.
    fn hold_ports(&mut self, wanted: HashSet<(ProtocolName, u16)>) {
        self.held.retain(|k, _| wanted.contains(k));
        for key in wanted {
            if self.held.contains_key(&key) {
                continue;
            }
            match port_hold::hold(key.0, key.1, &self.relay_to) {
                Ok(held) => {
                    self.held.insert(key, held);
                }
                Err(e) => {
                    tracing::warn!(port = key.1, error = %e, "holding a published port");
                }
            }
        }
    }

    /// 127.0.0.1 DNATed to a replica leaves through the interface of the replica's connected route, which
    /// the kernel allows only with route_localnet on it (IPv6 has no such switch).
    fn allow_localhost(&mut self, forwarded: &[IpAddr], direct: &[(IpNetwork, String)]) {
        for addr in forwarded.iter().filter(|a| a.is_ipv4()) {
            let Some((_, iface)) = direct.iter().find(|(net, _)| net.contains(*addr)) else {
                continue;
            };
            if self.localnet.contains(iface) {
                continue;
            }
            let key = format!("net/ipv4/conf/{iface}/route_localnet");
            match crate::link::set_sysctl(&key, "1") {
                Ok(()) => {
                    self.localnet.insert(iface.clone());
                }
                Err(e) => tracing::warn!(error = %e, iface, "route_localnet for the mesh"),
            }
        }
    }
}

/// The address this host sends from to `host` (no packet is sent); 127.0.0.1 when there is no route.
fn source_towards(host: Ipv4Addr) -> Ipv4Addr {
    let local = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((host, 9)).and_then(|()| s.local_addr()));
    match local {
        Ok(std::net::SocketAddr::V4(a)) => *a.ip(),
        _ => Ipv4Addr::LOCALHOST,
    }
}

/// The prefixes this host reaches on a link of its own (connected routes, no gateway), from /proc/net:
/// read on tetherd's runtime thread, where rtnetlink's blocking calls must not run.
mod host_routes {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use ipnetwork::IpNetwork;

    /// Each connected prefix with its interface.
    pub fn connected() -> Vec<(IpNetwork, String)> {
        let mut out = ipv4(&std::fs::read_to_string("/proc/net/route").unwrap_or_default());
        out.extend(ipv6(
            &std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default(),
        ));
        out
    }

    /// `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`, addresses in host order hex.
    pub(super) fn ipv4(text: &str) -> Vec<(IpNetwork, String)> {
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let word = |i: usize| u32::from_str_radix(f.get(i)?, 16).ok();
                let (dst, gw, mask) = (word(1)?, word(2)?, word(7)?);
                if gw != 0 || mask == 0 {
                    return None;
                }
                let dst = Ipv4Addr::from(u32::from_be(dst));
                let prefix = u32::from_be(mask).leading_ones() as u8;
                let net = IpNetwork::new(IpAddr::V4(dst), prefix).ok()?;
                Some((net, f.first()?.to_string()))
            })
            .collect()
    }

    /// `dst prefixlen src srcprefixlen nexthop metric refcnt use flags iface`.
    pub(super) fn ipv6(text: &str) -> Vec<(IpNetwork, String)> {
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (dst, prefix, next_hop, iface) = (f.first()?, f.get(1)?, f.get(4)?, f.get(9)?);
                let prefix = u8::from_str_radix(prefix, 16).ok()?;
                if prefix == 0 || *iface == "lo" || next_hop.chars().any(|c| c != '0') {
                    return None;
                }
                let dst = Ipv6Addr::from(u128::from_str_radix(dst, 16).ok()?);
                let net = IpNetwork::new(IpAddr::V6(dst), prefix).ok()?;
                Some((net, iface.to_string()))
            })
            .collect()
    }
}

/// Sockets that keep a port from other binds: a dual-stack one when IPv6 is on, else an IPv4 one. The
/// dual-stack TCP one listens: the only connections that reach it are those to [::1] and IPv6 ones the
/// mesh leaves alone (it DNATs every other local address), relayed to 127.0.0.1 and so through the mesh.
mod port_hold {
    use std::cell::Cell;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::rc::Rc;

    use nix::sys::socket::{
        getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
        SockProtocol, SockType, SockaddrIn, SockaddrIn6,
    };

    use crate::state::service::ProtocolName;

    /// A held port: its socket, or the relay task that owns it.
    pub enum Held {
        Bound(#[allow(dead_code)] OwnedFd),
        Relaying(tokio::task::JoinHandle<()>),
    }

    impl Drop for Held {
        fn drop(&mut self) {
            if let Held::Relaying(task) = self {
                task.abort();
            }
        }
    }

    /// Where the relays send what they take: this host's address towards the other mesh hosts (the
    /// none: 127.0.0.1). Not 127.0.0.1 when there are other hosts: a connection from it
    /// DNATed to another host would leave with a loopback source, which the kernel drops.
    pub type Target = Rc<Cell<Option<Ipv4Addr>>>;

    fn target_addr(target: &Target) -> Ipv4Addr {
        target.get().unwrap_or(Ipv4Addr::LOCALHOST)
    }

    pub fn hold(protocol: ProtocolName, port: u16, target: &Target) -> Result<Held, String> {
        let fd = bind(protocol, port).map_err(|e| e.to_string())?;
        let dual_stack = getsockname::<SockaddrIn6>(fd.as_raw_fd()).is_ok();
        if protocol == ProtocolName::Udp && dual_stack {
            let sock = std::net::UdpSocket::from(fd);
            sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            let sock = tokio::net::UdpSocket::from_std(sock).map_err(|e| e.to_string())?;
            return Ok(Held::Relaying(tokio::task::spawn_local(udp_relay::run(
                sock,
                port,
                target.clone(),
            ))));
        }
        if protocol != ProtocolName::Tcp || !dual_stack {
            return Ok(Held::Bound(fd));
        }
        let backlog = Backlog::new(64).map_err(|e| e.to_string())?;
        listen(&fd, backlog).map_err(|e| e.to_string())?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        Ok(Held::Relaying(tokio::task::spawn_local(relay(
            listener,
            port,
            target.clone(),
        ))))
    }

    /// Datagrams to [::1]:port (and IPv6 ones the mesh leaves alone: it DNATs every other local
    /// address), relayed to the [`Target`]'s port from one socket per client, whose answers go back to
    /// the client from the address it asked; a client quiet for [`udp_relay::IDLE`] is forgotten.
    mod udp_relay {
        use std::cell::RefCell;
        use std::collections::HashMap;
        use std::net::{Ipv4Addr, SocketAddr};
        use std::rc::Rc;
        use std::time::Duration;

        use tokio::net::UdpSocket;

        use super::{target_addr, Target};

        pub const IDLE: Duration = Duration::from_secs(30);

        type Sessions = Rc<RefCell<HashMap<SocketAddr, Rc<UdpSocket>>>>;

        pub async fn run(held: UdpSocket, port: u16, target: Target) {
            let held = Rc::new(held);
            let sessions: Sessions = Rc::default();
            // Owned here, so the answers end with the relay (the port is let go at once).
            let mut tasks = tokio::task::JoinSet::new();
            let mut buf = vec![0u8; 65536];
            loop {
                while tasks.try_join_next().is_some() {}
                let Ok((n, client)) = held.recv_from(&mut buf).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let known = sessions.borrow().get(&client).cloned();
                let upstream = match known {
                    Some(u) => u,
                    None => {
                        let Ok(u) = open(target_addr(&target), port).await else {
                            continue;
                        };
                        let u = Rc::new(u);
                        sessions.borrow_mut().insert(client, u.clone());
                        let back = answers(u.clone(), held.clone(), client, sessions.clone());
                        tasks.spawn_local(back);
                        u
                    }
                };
                let _ = upstream.send(&buf[..n]).await;
            }
        }

        async fn open(to: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
            let u = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
            u.connect((to, port)).await?;
            Ok(u)
        }

        async fn answers(up: Rc<UdpSocket>, held: Rc<UdpSocket>, client: SocketAddr, s: Sessions) {
            let mut buf = vec![0u8; 65536];
            while let Ok(Ok(n)) = tokio::time::timeout(IDLE, up.recv(&mut buf)).await {
                let _ = held.send_to(&buf[..n], client).await;
            }
            s.borrow_mut().remove(&client);
        }
    }

    /// Each connection to [::1]:port (or IPv6 one the mesh left alone), spliced to the target's port.
    async fn relay(listener: tokio::net::TcpListener, port: u16, target: Target) {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let to = SocketAddrV4::new(target_addr(&target), port);
            tokio::task::spawn_local(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    }

    fn bind(protocol: ProtocolName, port: u16) -> nix::Result<OwnedFd> {
        let (kind, proto) = match protocol {
            ProtocolName::Tcp => (SockType::Stream, SockProtocol::Tcp),
            ProtocolName::Udp => (SockType::Datagram, SockProtocol::Udp),
            ProtocolName::Sctp => (SockType::SeqPacket, SockProtocol::Sctp),
        };
        let v6 = socket(AddressFamily::Inet6, kind, SockFlag::SOCK_CLOEXEC, proto).and_then(|fd| {
            setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
            let addr = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
            nix::sys::socket::bind(fd.as_raw_fd(), &addr)?;
            Ok(fd)
        });
        match v6 {
            Err(nix::errno::Errno::EAFNOSUPPORT) => {
                let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, proto)?;
                let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
                nix::sys::socket::bind(fd.as_raw_fd(), &addr)?;
                Ok(fd)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: MeshPolicy, preserve: bool) -> MeshSpec {
        MeshSpec {
            service: "web".into(),
            publish: vec!["8080:80".parse().unwrap()],
            mode: PublishMode::Mesh,
            policy,
            preserve_client_ip: preserve,
            refused: Vec::new(),
        }
    }

    fn b(addr: &str, host: Option<&str>) -> MeshBackend {
        MeshBackend {
            addr: addr.parse().unwrap(),
            host: host.map(str::to_string),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlay_remote_records_name_their_host() {
        let rec = |id: &str, driver: &str, ip: &str| -> AttachmentRecord {
            serde_json::from_value(serde_json::json!({
                "network": "ov", "containerId": id, "ifname": "eth0", "driver": driver,
                "ips": [format!("{ip}/24")], "name": "web",
            }))
            .unwrap()
        };
        let records = [
            rec("c1", "overlay", "10.0.0.2"),
            AttachmentRecord {
                remote: Some(crate::state::attachment::RemoteEndpoint {
                    host: ip("192.168.77.2"),
                    healthy_for: vec!["web".into()],
                }),
                ..rec("192.168.77.2_10.0.0.66", "overlay-remote", "10.0.0.66")
            },
            rec("c3", "bridge", "10.1.0.3"),
        ];
        let active = HashMap::from([(
            "web".to_string(),
            vec![ip("10.0.0.2"), ip("10.0.0.66"), ip("10.1.0.3")],
        )]);
        let gateway = |r: &AttachmentRecord| (r.container_id == "c1").then(|| ip("172.30.0.2"));
        let by_host = backends_by_host(&active, &records, gateway);
        assert_eq!(
            by_host["web"],
            vec![
                b("172.30.0.2", None),
                b("10.0.0.66", Some("192.168.77.2")),
                b("10.1.0.3", None)
            ]
        );
    }

    #[test]
    fn connected_routes_are_read_from_proc_net() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
        assert_eq!(
            host_routes::ipv4(v4),
            vec![("192.0.2.0/24".parse().unwrap(), "eth0".to_string())]
        );
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
";
        assert_eq!(
            host_routes::ipv6(v6),
            vec![("fd00::/64".parse().unwrap(), "eth0".to_string())]
        );
    }

    #[test]
    fn local_replicas_come_first() {
        let all = [b("10.0.0.2", None), b("10.0.1.2", Some("192.168.77.2"))];
        assert_eq!(
            choose(&spec(MeshPolicy::Cluster, false), &all),
            (Forward::Local, vec![ip("10.0.0.2")])
        );
    }

    #[test]
    fn without_a_local_replica_the_cluster_policy_goes_remote() {
        let remote = [
            b("10.0.1.2", Some("192.168.77.3")),
            b("10.0.2.2", Some("192.168.77.2")),
            b("10.0.2.3", Some("192.168.77.2")),
        ];
        // Each host that runs a replica, once.
        assert_eq!(
            choose(&spec(MeshPolicy::Cluster, false), &remote),
            (
                Forward::RemoteSnat,
                vec![ip("192.168.77.2"), ip("192.168.77.3")]
            )
        );
        assert_eq!(
            choose(&spec(MeshPolicy::Cluster, true), &remote).0,
            Forward::RemotePreserve
        );
    }

    #[test]
    fn the_local_policy_and_host_mode_refuse_without_a_local_replica() {
        let remote = [b("10.0.1.2", Some("192.168.77.2"))];
        assert_eq!(
            choose(&spec(MeshPolicy::Local, false), &remote),
            (Forward::Refuse, vec![])
        );
        let host_mode = MeshSpec {
            mode: PublishMode::Host,
            ..spec(MeshPolicy::Cluster, false)
        };
        assert_eq!(choose(&host_mode, &remote).0, Forward::Refuse);
        assert_eq!(
            choose(&spec(MeshPolicy::Cluster, false), &[]).0,
            Forward::Refuse
        );
    }
}
