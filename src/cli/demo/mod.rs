//! `tether demo`: on a fresh machine, in a few seconds, proves what tether does without touching the
//! machine's own network. Everything happens in a throwaway "host" namespace with throwaway config,
//! state and cache dirs: a bridge network is created, two containers (namespaces) are attached (one
//! publishing 8080:80), one pings the other, and an "outside" machine reaches the second container's
//! server through the published port. Then everything is detached and removed, also on failure or Ctrl-C.

mod echo;
mod interrupt;
mod namespace;
mod responder;

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use super::output;
use crate::endpoint::{AttachRequest, EndpointError, Endpoints};
use crate::link::{LinkError, Netlink};
use crate::netns::{NetNs, NetnsError};
use crate::network::{CreateRequest, NetworkError, NetworkInfo, Networks};
use namespace::ScratchNetns;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo makes network namespaces and needs root; run it with sudo")]
    NotRoot,
    #[error("plugin {plugin} not found next to {} nor on CNI_PATH; build them first: cargo build --release", exe.display())]
    PluginMissing { plugin: String, exe: PathBuf },
    #[error("namespace {name}: {what}: {source}")]
    Namespace {
        name: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netns {
        #[from]
        source: NetnsError,
    },
    #[error("setting up the demo's links: {source}")]
    Link {
        #[source]
        source: Box<LinkError>,
    },
    #[error(transparent)]
    Network(Box<NetworkError>),
    #[error(transparent)]
    Endpoint(Box<EndpointError>),
    #[error("{what}: {why}")]
    Step { what: String, why: String },
    #[error("creating the scratch directory {}: {source}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<NetworkError> for DemoError {
    fn from(e: NetworkError) -> Self {
        DemoError::Network(Box::new(e))
    }
}

impl From<EndpointError> for DemoError {
    fn from(e: EndpointError) -> Self {
        DemoError::Endpoint(Box::new(e))
    }
}

/// The network `tether network create` writes is tether-bridge alone: tether-ipam's store runs in it, and it
/// publishes ports itself.
const PLUGINS: [&str; 2] = ["tether-bridge", "tether-ipam"];
const NETWORK: &str = "demo";
const HOST_ADDR: &str = "198.51.100.1";
const OUTSIDE_ADDR: &str = "198.51.100.2";
const PUBLISHED: u16 = 8080;
const SERVED: u16 = 80;

/// What the demo made; dropping it removes all of it (namespaces first, then the dirs).
struct Scratch {
    namespaces: Vec<ScratchNetns>,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn step(what: &str, why: impl ToString) -> DemoError {
    DemoError::Step {
        what: what.to_string(),
        why: why.to_string(),
    }
}

/// The plugin dir: next to this executable when the plugins are there, else CNI_PATH's.
fn plugin_path() -> Result<String, DemoError> {
    let exe = std::env::current_exe().map_err(|e| step("finding the tether executable", e))?;
    let mut dirs: Vec<PathBuf> = exe.parent().map(Path::to_path_buf).into_iter().collect();
    dirs.extend(crate::paths::cni_path());
    for plugin in PLUGINS {
        if crate::cni::exec::find_plugin(plugin, &dirs).is_err() {
            return Err(DemoError::PluginMissing {
                plugin: plugin.to_string(),
                exe,
            });
        }
    }
    let joined: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Ok(joined.join(":"))
}

pub fn run() -> Result<(), DemoError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(DemoError::NotRoot);
    }
    let started = Instant::now();
    let tag = std::process::id();
    let dir = std::env::temp_dir().join(format!("tether-demo-{tag}"));
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Scratch {
        path: dir.clone(),
        source,
    })?;
    let pending: interrupt::Pending<Scratch> = Arc::new(Mutex::new(Some(Scratch {
        namespaces: Vec::new(),
        dir: dir.clone(),
    })));
    // Before any thread exists: the environment is read by every plugin we run.
    let cni_path = plugin_path()?;
    for (var, sub) in [
        ("TETHER_CONF_DIR", "conf"),
        ("TETHER_STATE_DIR", "state"),
        ("TETHER_RUN_DIR", "run"),
        ("TETHER_CNI_CACHE_DIR", "cache"),
    ] {
        std::env::set_var(var, dir.join(sub));
    }
    std::env::set_var("CNI_PATH", &cni_path);
    interrupt::watch(pending.clone()).map_err(|e| step("watching for Ctrl-C", e))?;

    let result = demo(tag, &pending);
    // Normal end or failure: the same cleanup as on Ctrl-C.
    drop(pending.lock().unwrap_or_else(|e| e.into_inner()).take());
    match &result {
        Ok(()) => output::line(&format!(
            "\nall done in {} ms; the demo's namespaces and files are gone",
            started.elapsed().as_millis()
        )),
        Err(_) => output::line("\nthe demo failed; its namespaces and files are removed"),
    }
    result
}

fn make_netns(pending: &interrupt::Pending<Scratch>, name: String) -> Result<PathBuf, DemoError> {
    let ns = ScratchNetns::create(&name)?;
    let path = ns.path.clone();
    let mut guard = pending.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut() {
        Some(scratch) => scratch.namespaces.push(ns),
        None => return Err(step("making namespaces", "interrupted")),
    }
    crate::netns::loopback_up(&NetNs::open(&path)?)?;
    Ok(path)
}

fn demo(tag: u32, pending: &interrupt::Pending<Scratch>) -> Result<(), DemoError> {
    let host = make_netns(pending, format!("tether-demo-{tag}-host"))?;
    let client = make_netns(pending, format!("tether-demo-{tag}-client"))?;
    let server = make_netns(pending, format!("tether-demo-{tag}-server"))?;
    let outside = make_netns(pending, format!("tether-demo-{tag}-outside"))?;
    output::line(&format!(
        "namespaces: host {}, containers {} and {}, outside machine {}",
        name_of(&host),
        name_of(&client),
        name_of(&server),
        name_of(&outside)
    ));

    // From here this thread (and every plugin it runs) lives in the throwaway host namespace.
    let host_ns = NetNs::open(&host)?;
    let _inside = host_ns.enter()?;
    link_outside(&outside)?;

    let networks = Networks::from_env();
    let endpoints = &networks.endpoints;
    let net = create_network(&networks)?;

    let client_ip = attach(endpoints, "client", &client, &[])?;
    let server_ip = attach(
        endpoints,
        "server",
        &server,
        &[format!("{PUBLISHED}:{SERVED}")],
    )?;
    output::line("\n$ tether ps");
    output::attachments(&endpoints.list()?, false);

    output::line(&format!("\n$ ping {server_ip}   (from client)"));
    let ping = ping_from(&client, server_ip)?;
    output::line(&ping);

    let greeting = "hello from the server container".to_string();
    responder::spawn(&server, SERVED, greeting.clone())?;
    let target = SocketAddr::new(HOST_ADDR.parse().expect("literal"), PUBLISHED);
    output::line(&format!(
        "\n$ connect {target}   (from the outside machine {OUTSIDE_ADDR}; the server listens on {server_ip}:{SERVED})"
    ));
    let answer = connect_from(&outside, target)?;
    output::line(&format!("answer: {}", answer.trim()));
    if !answer.starts_with(&greeting) {
        return Err(step("checking the published port's answer", answer));
    }
    let direct = connect_from(&client, SocketAddr::new(server_ip, SERVED))?;

    for container in ["client", "server"] {
        endpoints.detach(NETWORK, container, None)?;
    }
    networks.remove(NETWORK, false)?;
    output::line(&format!(
        "\n$ tether detach --network {NETWORK} client; tether detach --network {NETWORK} server; tether network rm {NETWORK}"
    ));
    let leftovers = leftovers(&net.bridge.unwrap_or_default())?;

    output::line("\nproved:");
    output::line(&format!(
        "  - `network create` picked {} and wrote a CNI conflist any runtime can use",
        net.subnets
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    ));
    output::line(&format!(
        "  - `attach` ran tether-bridge (tether-ipam's store and the published port in the same process): client {client_ip}, server {server_ip}"
    ));
    output::line("  - container to container: the client's ping reached the server");
    output::line(&format!(
        "  - container to container over TCP: {}",
        direct.trim()
    ));
    output::line(&format!(
        "  - published port: {OUTSIDE_ADDR} -> {HOST_ADDR}:{PUBLISHED} reached {server_ip}:{SERVED}"
    ));
    output::line(&format!("  - `detach` and `network rm` left {leftovers}"));
    Ok(())
}

/// `tether network create`, timed, and what it made.
fn create_network(networks: &Networks) -> Result<NetworkInfo, DemoError> {
    let t = Instant::now();
    let net = networks.create(&CreateRequest {
        name: NETWORK.into(),
        ..CreateRequest::default()
    })?;
    output::line(&format!(
        "\n$ tether network create {NETWORK}      ({} ms)",
        t.elapsed().as_millis()
    ));
    output::line(&format!(
        "network {NETWORK}: bridge {}, subnet {} (the first free pool), conflist {}",
        net.bridge.clone().unwrap_or_default(),
        net.subnets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        net.file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default()
    ));
    Ok(net)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A veth between the host and the outside machine, on TEST-NET-2.
fn link_outside(outside: &Path) -> Result<(), DemoError> {
    let link = |source| DemoError::Link {
        source: Box::new(source),
    };
    let outside_ns = NetNs::open(outside)?;
    let host = Netlink::new().map_err(link)?;
    let uplink = host
        .create_veth("uplink", "eth0", &outside_ns, None, None)
        .map_err(link)?;
    host.add_address(uplink.index, net(HOST_ADDR, 24), false)
        .map_err(link)?;
    host.set_up(uplink.index).map_err(link)?;
    let far = Netlink::in_netns(&outside_ns).map_err(link)?;
    let eth0 = far
        .link_by_name("eth0")
        .map_err(link)?
        .ok_or_else(|| step("setting up the outside machine", "its eth0 vanished"))?;
    far.add_address(eth0.index, net(OUTSIDE_ADDR, 24), false)
        .map_err(link)?;
    far.set_up(eth0.index).map_err(link)?;
    Ok(())
}

fn net(addr: &str, prefix: u8) -> IpNetwork {
    IpNetwork::new(addr.parse().expect("literal"), prefix).expect("valid prefix")
}

fn attach(
    endpoints: &Endpoints,
    container: &str,
    netns: &Path,
    publish: &[String],
) -> Result<IpAddr, DemoError> {
    let ports = publish
        .iter()
        .map(|p| p.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(EndpointError::from)?;
    let t = Instant::now();
    let attached = endpoints.attach(&AttachRequest {
        network: NETWORK.into(),
        container_id: container.into(),
        netns: netns.to_path_buf(),
        name: Some(container.into()),
        ports,
        ..AttachRequest::default()
    })?;
    let flags: String = publish.iter().map(|p| format!(" -p {p}")).collect();
    output::line(&format!(
        "\n$ tether attach --network {NETWORK} --netns {}{flags} {container}      ({} ms)",
        netns.display(),
        t.elapsed().as_millis()
    ));
    let ip = attached
        .ips
        .first()
        .map(|n| n.ip())
        .ok_or_else(|| step("attaching", format!("{container} got no address")))?;
    output::line(&format!("{container}: {} {ip}", attached.ifname));
    Ok(ip)
}

/// One echo, up to three tries (the first may wait for ARP), sent from inside `netns`.
fn ping_from(netns: &Path, target: IpAddr) -> Result<String, DemoError> {
    let IpAddr::V4(v4) = target else {
        return Err(step(
            &format!("pinging {target}"),
            "the demo echoes IPv4 only",
        ));
    };
    let ns = NetNs::open(netns)?;
    let mut last = String::new();
    for seq in 1..=3 {
        match ns.run(|| echo::echo(v4, seq, Duration::from_secs(2)))? {
            Ok(rtt) => {
                return Ok(format!(
                    "echo reply from {target}: seq={seq} time={:.2} ms",
                    rtt.as_secs_f64() * 1000.0
                ))
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(step(
        &format!("pinging {target}"),
        format!("no reply: {last}"),
    ))
}

/// Connects from inside `netns` and reads the one-line answer.
fn connect_from(netns: &Path, target: SocketAddr) -> Result<String, DemoError> {
    let ns = NetNs::open(netns)?;
    let stream = ns
        .run(|| TcpStream::connect_timeout(&target, Duration::from_secs(3)))?
        .map_err(|e| step(&format!("connecting to {target}"), e))?;
    let mut answer = String::new();
    let mut stream = stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| step("reading the answer", e))?;
    stream
        .read_to_string(&mut answer)
        .map_err(|e| step(&format!("reading the answer from {target}"), e))?;
    Ok(answer)
}

/// What the network left in the host namespace after `rm`: its bridge, container veths, rules.
fn leftovers(bridge: &str) -> Result<String, DemoError> {
    let link = |source| DemoError::Link {
        source: Box::new(source),
    };
    let netlink = Netlink::new().map_err(link)?;
    let mut found = Vec::new();
    for l in netlink.links().map_err(link)? {
        if l.name == bridge || l.name.starts_with("tv") {
            found.push(format!("link {}", l.name));
        }
    }
    let firewall = crate::firewall::Firewall::open().map_err(|e| step("opening nftables", e))?;
    if firewall
        .network_installed(NETWORK)
        .map_err(|e| step("reading nftables", e))?
    {
        found.push(format!("the firewall chains of {NETWORK}"));
    }
    if found.is_empty() {
        Ok("no bridge, veth or firewall rule behind".to_string())
    } else {
        Err(step(
            "checking the cleanup",
            format!("left behind: {}", found.join(", ")),
        ))
    }
}
