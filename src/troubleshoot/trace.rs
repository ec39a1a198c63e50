//! `tether trace SRC DST[:PORT[/PROTO]]`: the path a new connection takes and the verdict at each step,
//! computed from tether's state (records, cached results, published ports, the networks' isolation) and
//! confirmed by the kernel (`ip route get` in the namespace that routes, the rules and elements of `inet
//! tether`, other tables' forward policies). Answers "isolation, a missing publish, DNS or routing?".

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::bridge_port::BridgePort;
use super::container::{self, KnownAttachment};
use super::host_firewall;
use super::inspect::{describe_port, recorded_ports};
use super::resolver_socket;
use crate::firewall::{Firewall, NetworkId, PortMapping, Protocol};
use crate::ifname::IfName;
use crate::netns::NetNs;

/// One end of the flow as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A container id or name, or an address.
    pub host: String,
    pub port: Option<u16>,
    pub protocol: Protocol,
}

impl FromStr for Target {
    type Err = String;

    /// `NAME`, `ADDR`, `NAME:PORT`, `ADDR:PORT/PROTO`, `[V6ADDR]:PORT`.
    fn from_str(text: &str) -> Result<Target, String> {
        let (rest, protocol) = match text.rsplit_once('/') {
            Some((rest, proto)) => (rest, proto.parse::<Protocol>()?),
            None => (text, Protocol::Tcp),
        };
        if rest.parse::<IpAddr>().is_ok() {
            return Ok(Target {
                host: rest.into(),
                port: None,
                protocol,
            });
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, tail) = inner
                .split_once(']')
                .ok_or("an IPv6 address opened with [ needs ]")?;
            (addr, tail.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("{p:?} is not a port number"))
            })
            .transpose()?;
        if host.is_empty() {
            return Err("empty container name or address".into());
        }
        Ok(Target {
            host: host.into(),
            port,
            protocol,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepVerdict {
    Pass,
    Drop,
    Warn,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: String,
    pub verdict: StepVerdict,
    pub detail: String,
    /// What the kernel says about it.
    pub kernel: String,
}

/// Why a flow does not get through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    Isolation,
    MissingPublish,
    Dns,
    Routing,
    /// Another table's forward chain, or a container-level block (icc=false).
    Firewall,
    /// A part tether made is gone (an interface, an element): `tether inspect` shows which.
    Broken,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub source: String,
    pub destination: String,
    pub delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0} is neither an attached container (id or name) nor an IP address; `tether ps` lists the containers")]
    Unknown(String),
    #[error("both ends are outside addresses; name at least one container")]
    NoContainer,
}

/// A resolved end.
enum End {
    Container(Vec<KnownAttachment>),
    Outside(IpAddr),
}

pub struct Tracer {
    pub state_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
}

/// What the path needs of one container attachment.
struct Leg<'a> {
    a: &'a KnownAttachment,
    ip: IpAddr,
    bridge: Option<String>,
    netns: Option<String>,
}

impl<'a> Leg<'a> {
    fn of(a: &'a KnownAttachment, v4: bool) -> Option<Leg<'a>> {
        let rec = a.record.as_ref()?;
        let ip = rec
            .ips
            .iter()
            .map(|n| n.ip())
            .find(|ip| ip.is_ipv4() == v4)?;
        Some(Leg {
            a,
            ip,
            bridge: rec.bridge.as_ref().map(|b| b.to_string()),
            netns: rec.netns.as_ref().map(|p| p.display().to_string()),
        })
    }

    fn label(&self) -> String {
        let name = self.a.name().map(|n| format!(" ({n})")).unwrap_or_default();
        format!(
            "{}{name} {} on {}",
            self.a.container_id, self.ip, self.a.network
        )
    }
}

struct Trace {
    steps: Vec<Step>,
    cause: Option<Cause>,
    fix: Option<String>,
}

impl Trace {
    fn pass(&mut self, step: &str, detail: String, kernel: String) {
        self.push(step, StepVerdict::Pass, detail, kernel);
    }

    fn warn(&mut self, step: &str, detail: String, kernel: String) {
        self.push(step, StepVerdict::Warn, detail, kernel);
    }

    fn drop(&mut self, step: &str, detail: String, kernel: String, cause: Cause, fix: String) {
        self.push(step, StepVerdict::Drop, detail, kernel);
        self.cause = Some(cause);
        self.fix = Some(fix);
    }

    fn push(&mut self, step: &str, verdict: StepVerdict, detail: String, kernel: String) {
        self.steps.push(Step {
            step: step.into(),
            verdict,
            detail,
            kernel,
        });
    }

    fn dropped(&self) -> bool {
        self.cause.is_some()
    }
}

impl Tracer {
    pub fn from_env() -> Tracer {
        Tracer {
            state_dir: crate::paths::state_dir(),
            cni_cache_dir: crate::paths::cni_cache_dir(),
        }
    }

    fn resolve(&self, host: &str, everything: &[KnownAttachment]) -> Result<End, TraceError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            let owners: Vec<KnownAttachment> = everything
                .iter()
                .filter(|a| {
                    a.record
                        .as_ref()
                        .is_some_and(|r| r.ips.iter().any(|n| n.ip() == ip))
                })
                .cloned()
                .collect();
            return Ok(if owners.is_empty() {
                End::Outside(ip)
            } else {
                End::Container(owners)
            });
        }
        let found = container::find(host, &self.state_dir, &self.cni_cache_dir);
        let found: Vec<KnownAttachment> =
            found.into_iter().filter(|a| a.record.is_some()).collect();
        if found.is_empty() {
            return Err(TraceError::Unknown(host.into()));
        }
        Ok(End::Container(found))
    }

    pub fn trace(&self, src: &Target, dst: &Target) -> Result<TraceReport, TraceError> {
        let everything = container::all(&self.state_dir, &self.cni_cache_dir);
        let from = self.resolve(&src.host, &everything)?;
        let to = self.resolve(&dst.host, &everything)?;
        let mut t = Trace {
            steps: Vec::new(),
            cause: None,
            fix: None,
        };
        let fw = Firewall::open().ok();
        match (&from, &to) {
            (End::Container(s), End::Container(d)) => {
                self.container_to_container(s, d, dst, fw.as_ref(), &mut t)
            }
            (End::Outside(ip), End::Container(d)) => {
                self.outside_to_container(*ip, d, dst, fw.as_ref(), &mut t)
            }
            (End::Outside(ip), End::Outside(addr)) if dst.port.is_some() => {
                // An outside client to a host address and port: whatever is published there.
                self.outside_to_host_port(*ip, *addr, dst, &everything, fw.as_ref(), &mut t)
            }
            (End::Container(s), End::Outside(ip)) => {
                self.container_to_outside(s, *ip, fw.as_ref(), &mut t)
            }
            (End::Outside(_), End::Outside(_)) => return Err(TraceError::NoContainer),
        }
        Ok(TraceReport {
            source: describe_target(src),
            destination: describe_target(dst),
            delivered: !t.dropped(),
            cause: t.cause,
            fix: t.fix,
            steps: t.steps,
        })
    }

    fn container_to_container(
        &self,
        srcs: &[KnownAttachment],
        dsts: &[KnownAttachment],
        dst: &Target,
        fw: Option<&Firewall>,
        t: &mut Trace,
    ) {
        // Only a name is looked up; an address or a container id is traced as given.
        let by_name =
            dst.host.parse::<IpAddr>().is_err() && dsts.iter().all(|d| d.container_id != dst.host);
        let shared = srcs
            .iter()
            .find_map(|s| dsts.iter().find(|d| d.network == s.network).map(|d| (s, d)));
        if by_name {
            dns_step(srcs, dsts, &dst.host, shared.map(|(_, d)| d), t);
            if t.dropped() {
                return;
            }
        }
        let (s, d) = match shared {
            Some(pair) => pair,
            None => (&srcs[0], &dsts[0]),
        };
        let (Some(src), Some(dstl)) = (Leg::of(s, true), Leg::of(d, true)) else {
            t.drop(
                "addresses",
                "no IPv4 address on both ends".into(),
                "-".into(),
                Cause::Routing,
                "attach both containers to an IPv4 network".into(),
            );
            return;
        };
        route_in_container(&src, dstl.ip, t);
        if t.dropped() {
            return;
        }
        if s.network == d.network {
            same_network(&src, &dstl, t);
        } else {
            host_routing(&src, dstl.ip, dstl.bridge.as_deref(), t);
            if t.dropped() {
                return;
            }
            forward_between_networks(&src, &dstl, fw, t);
        }
        if !t.dropped() {
            t.pass("delivery", format!("to {}", dstl.label()), arrival(&dstl));
        }
    }

    fn outside_to_container(
        &self,
        from: IpAddr,
        dsts: &[KnownAttachment],
        dst: &Target,
        fw: Option<&Firewall>,
        t: &mut Trace,
    ) {
        let Some(port) = dst.port else {
            t.drop(
                "publish",
                format!("from {from} a container is reached only through a published port; no port was given"),
                "-".into(),
                Cause::MissingPublish,
                "trace CONTAINER:PORT[/PROTO] for the port the client uses".into(),
            );
            return;
        };
        let published: Vec<PortMapping> = dsts
            .iter()
            .flat_map(|a| recorded_ports(&self.state_dir, &a.network, &a.container_id, &a.ifname))
            .filter(|m| m.container_port == port && m.protocol == dst.protocol)
            .collect();
        let Some(mapping) = published.first() else {
            let d = &dsts[0];
            let bridge = d
                .record
                .as_ref()
                .and_then(|r| r.bridge.as_ref().map(|b| b.to_string()))
                .unwrap_or_default();
            let rule = isolation_rule(&d.network, &bridge);
            t.drop(
                "publish",
                format!(
                    "port {port}/{} of {} is not published: from outside the host only published ports reach a container; a packet sent straight to its address meets network {}'s isolation",
                    dst.protocol.name(),
                    dst.host,
                    d.network
                ),
                rule.unwrap_or_else(|| "no isolation rule found in inet tether".into()),
                Cause::MissingPublish,
                format!(
                    "publish it: tether detach {c} && tether attach --network {n} ... -p HOSTPORT:{port}/{p} {c} (or the runtime's -p)",
                    c = d.container_id,
                    n = d.network,
                    p = dst.protocol.name()
                ),
            );
            return;
        };
        self.published_path(from, mapping, dsts, fw, t);
    }

    fn outside_to_host_port(
        &self,
        from: IpAddr,
        addr: IpAddr,
        dst: &Target,
        everything: &[KnownAttachment],
        fw: Option<&Firewall>,
        t: &mut Trace,
    ) {
        let port = dst.port.unwrap_or_default();
        let hit = everything.iter().find_map(|a| {
            recorded_ports(&self.state_dir, &a.network, &a.container_id, &a.ifname)
                .into_iter()
                .find(|m| {
                    m.host_port == port
                        && m.protocol == dst.protocol
                        && m.host_ip.is_none_or(|h| h.is_unspecified() || h == addr)
                        && m.container_ip.is_ipv4() == addr.is_ipv4()
                })
                .map(|m| (m, a.clone()))
        });
        match hit {
            Some((m, a)) => self.published_path(from, &m, std::slice::from_ref(&a), fw, t),
            None => t.drop(
                "publish",
                format!(
                    "nothing is published on {addr}:{port}/{}",
                    dst.protocol.name()
                ),
                "no entry in the port maps of inet tether".into(),
                Cause::MissingPublish,
                format!(
                    "publish a container port on {port}/{} (tether attach -p {port}:CONTAINERPORT)",
                    dst.protocol.name()
                ),
            ),
        }
    }

    /// DNAT by the published port, then routed to the container's bridge, admitted as DNATed traffic.
    fn published_path(
        &self,
        from: IpAddr,
        m: &PortMapping,
        dsts: &[KnownAttachment],
        fw: Option<&Firewall>,
        t: &mut Trace,
    ) {
        let present = fw.map(|fw| fw.ports_present(&[*m]).unwrap_or(false));
        match present {
            Some(true) => t.pass(
                "publish",
                format!("published {}", describe_port(m)),
                "the port map entry of inet tether is in place (DNAT in ports_prerouting)".into(),
            ),
            _ => {
                t.drop(
                    "publish",
                    format!(
                        "published {} by tether, but the kernel lost it",
                        describe_port(m)
                    ),
                    "no matching entry in the port maps of inet tether".into(),
                    Cause::Broken,
                    "tether inspect shows it; detach and attach the container again to republish"
                        .into(),
                );
                return;
            }
        }
        let Some(d) = dsts.iter().find(|a| {
            a.record
                .as_ref()
                .is_some_and(|r| r.ips.iter().any(|n| n.ip() == m.container_ip))
        }) else {
            return;
        };
        let Some(leg) = Leg::of(d, m.container_ip.is_ipv4()) else {
            return;
        };
        let route = ip_route_get(None, &[&m.container_ip.to_string()]);
        match (&route, &leg.bridge) {
            (Ok(r), Some(bridge)) if r.dev.as_deref() == Some(bridge.as_str()) => t.pass(
                "host routing",
                format!(
                    "after DNAT to {}: out through bridge {bridge}",
                    m.container_ip
                ),
                r.text.clone(),
            ),
            (Ok(r), _) => {
                t.drop("host routing", format!("after DNAT to {}: expected the container's bridge", m.container_ip), r.text.clone(), Cause::Routing, "the host's route to the network's subnet is gone or shadowed: check `ip route`".into());
                return;
            }
            (Err(e), _) => {
                t.drop(
                    "host routing",
                    format!("no route to {}", m.container_ip),
                    e.clone(),
                    Cause::Routing,
                    "the host's route to the network's subnet is gone: check `ip route`".into(),
                );
                return;
            }
        }
        let bridge = leg.bridge.clone().unwrap_or_default();
        t.pass(
            "firewall (inet tether)",
            format!(
                "DNATed traffic into network {} is accepted (from {from})",
                d.network
            ),
            accept_rule(
                &d.network,
                &format!("oifname \"{bridge}\" ct status dnat accept"),
            ),
        );
        foreign_drops(t);
        if !t.dropped() {
            t.pass("delivery", format!("to {}", leg.label()), arrival(&leg));
        }
    }

    fn container_to_outside(
        &self,
        srcs: &[KnownAttachment],
        to: IpAddr,
        fw: Option<&Firewall>,
        t: &mut Trace,
    ) {
        let Some(src) = srcs.iter().find_map(|a| Leg::of(a, to.is_ipv4())) else {
            t.drop(
                "addresses",
                format!("the container has no address of {to}'s family"),
                "-".into(),
                Cause::Routing,
                "attach it to a network with that family".into(),
            );
            return;
        };
        route_in_container(&src, to, t);
        if t.dropped() {
            return;
        }
        host_routing(&src, to, None, t);
        if t.dropped() {
            return;
        }
        let masq = src
            .a
            .cached
            .as_ref()
            .and_then(|c| serde_json::from_slice::<Value>(&c.config).ok())
            .and_then(|v| v.pointer("/plugins/0/ipMasq").and_then(Value::as_bool))
            .unwrap_or(false);
        // The container's address in its network's NAT map is what sends it to the masquerade rule.
        let mapped = fw.map(|fw| {
            fw.container_present(&src.a.network, &[src.ip])
                .unwrap_or(false)
        });
        match (masq, mapped) {
            (true, Some(true)) => t.pass(
                "masquerade",
                format!(
                    "{} leaves with the host's address (network {} has ipMasq)",
                    src.ip, src.a.network
                ),
                format!(
                    "{} is in network {}'s set and NAT map",
                    src.ip, src.a.network
                ),
            ),
            (true, _) => {
                t.drop(
                    "masquerade",
                    format!("network {} masquerades, but {} is not in its NAT map: replies cannot come back", src.a.network, src.ip),
                    "element missing from inet tether".into(),
                    Cause::Broken,
                    "tether inspect shows it; detach and attach the container again".into(),
                );
                return;
            }
            (false, _) => t.warn(
                "masquerade",
                format!(
                    "network {} does not masquerade: replies must find their way back to {}",
                    src.a.network, src.ip
                ),
                "-".into(),
            ),
        }
        foreign_drops(t);
        if !t.dropped() {
            t.pass(
                "delivery",
                format!("leaves the host towards {to}"),
                "-".into(),
            );
        }
    }
}

fn describe_target(t: &Target) -> String {
    match t.port {
        Some(p) => format!("{}:{p}/{}", t.host, t.protocol.name()),
        None => t.host.clone(),
    }
}

fn dns_step(
    srcs: &[KnownAttachment],
    dsts: &[KnownAttachment],
    name: &str,
    shared: Option<&KnownAttachment>,
    t: &mut Trace,
) {
    let src_dns = srcs
        .iter()
        .any(|s| s.record.as_ref().is_some_and(|r| r.dns));
    let answers = |d: &KnownAttachment| {
        d.record.as_ref().is_some_and(|r| {
            r.dns && (r.name.as_deref() == Some(name) || r.aliases.iter().any(|a| a == name))
        })
    };
    match shared {
        Some(d) if src_dns && answers(d) => {
            let ips: Vec<String> = d.record.as_ref().map(|r| r.ips.iter().map(|n| n.ip().to_string()).collect()).unwrap_or_default();
            // The name is in scope; the source must also have tetherd's resolver listening in its namespace.
            let src_ns = srcs
                .iter()
                .find_map(|s| s.record.as_ref().filter(|r| r.dns)?.netns.clone());
            let listens = src_ns
                .as_deref()
                .and_then(|p| NetNs::open(p).ok())
                .map(|ns| resolver_socket::listens(&ns).unwrap_or(false));
            match listens {
                Some(false) => t.drop(
                    "DNS",
                    format!("{name} is in scope on network {}, but the source has no resolver listening", d.network),
                    format!("no answer from 127.0.0.11:53 in {}", src_ns.unwrap_or_default().display()),
                    Cause::Dns,
                    "tether doctor says why tetherd does not serve it; restarting tetherd reopens every recorded container's resolver".into(),
                ),
                _ => t.pass(
                    "DNS",
                    format!("{name} resolves on network {} to {}", d.network, ips.join(", ")),
                    "tetherd's resolver listens at 127.0.0.11:53 in the source's namespace".into(),
                ),
            }
        }
        Some(d) if !src_dns => t.warn("DNS", format!("the source has no embedded DNS; {name} resolves only if the runtime's resolver knows it"), format!("network {} has DNS off", d.network)),
        Some(d) => t.drop(
            "DNS",
            format!("{name} is not a DNS name of the container on network {} (its name and aliases are what resolve)", d.network),
            "-".into(),
            Cause::Dns,
            "attach it with --name/--alias, or use its address".into(),
        ),
        None => {
            let nets: Vec<&str> = dsts.iter().map(|d| d.network.as_str()).collect();
            t.drop(
                "DNS",
                format!("{name} is on network(s) {} and shares none with the source: tetherd does not answer it there and forwards it upstream", nets.join(", ")),
                "-".into(),
                Cause::Dns,
                format!("attach the source to {} as well, or use an address (then isolation decides)", nets[0]),
            );
        }
    }
}

/// `ip route get` in the container: which interface and gateway it sends by.
fn route_in_container(src: &Leg<'_>, to: IpAddr, t: &mut Trace) {
    let answer = ip_route_get(
        src.netns.as_deref(),
        &[&to.to_string(), "from", &src.ip.to_string()],
    );
    match answer {
        Ok(r) => t.pass(
            "container routing",
            format!(
                "{} sends to {to} by {}",
                src.label(),
                r.dev.clone().unwrap_or_default()
            ),
            r.text,
        ),
        Err(e) => t.drop(
            "container routing",
            format!("{} has no route to {to}", src.label()),
            e,
            Cause::Routing,
            "a deleted route or an internal network: `tether inspect` shows the routes tether made"
                .into(),
        ),
    }
}

/// `ip route get` on the host for a packet arriving from the source's bridge.
fn host_routing(src: &Leg<'_>, to: IpAddr, expect_dev: Option<&str>, t: &mut Trace) {
    let Some(bridge) = &src.bridge else { return };
    let to_s = to.to_string();
    let from_s = src.ip.to_string();
    let answer = ip_route_get(None, &[&to_s, "from", &from_s, "iif", bridge]);
    match answer {
        Ok(r) if expect_dev.is_none_or(|d| r.dev.as_deref() == Some(d)) => t.pass(
            "host routing",
            format!(
                "from bridge {bridge} out through {}",
                r.dev.clone().unwrap_or_default()
            ),
            r.text,
        ),
        Ok(r) => t.drop(
            "host routing",
            format!("expected out through {}", expect_dev.unwrap_or_default()),
            r.text,
            Cause::Routing,
            "the host's route to the destination network is gone or shadowed: check `ip route`"
                .into(),
        ),
        Err(e) => t.drop(
            "host routing",
            format!("the host does not forward from {bridge} to {to}"),
            e,
            Cause::Routing,
            "check `ip route` and net.ipv4.ip_forward (tether doctor)".into(),
        ),
    }
}

fn same_network(src: &Leg<'_>, dst: &Leg<'_>, t: &mut Trace) {
    let bridge = src.bridge.clone().unwrap_or_default();
    let src_port = src.a.record.as_ref().and_then(|r| r.host_ifname.clone());
    let dst_port = dst.a.record.as_ref().and_then(|r| r.host_ifname.clone());
    let isolated = |p: &Option<IfName>| {
        p.as_deref()
            .and_then(BridgePort::of)
            .is_some_and(|p| p.isolated())
    };
    if isolated(&src_port) && isolated(&dst_port) {
        t.drop(
            "bridge",
            format!("both ports of bridge {bridge} are isolated: network {} has icc=false", src.a.network),
            "ip -d link: isolated on for both ports".into(),
            Cause::Isolation,
            format!("containers of network {} do not reach each other by design (icc=false); put them on a network with icc on", src.a.network),
        );
        return;
    }
    t.pass(
        "bridge",
        format!(
            "bridged within {bridge} (same network {}); tether's firewall accepts it",
            src.a.network
        ),
        accept_rule(
            &src.a.network,
            &format!("oifname \"{bridge}\" iifname \"{bridge}\" accept"),
        ),
    );
}

/// Between two tether networks: the destination network's chain decides what enters its bridge.
fn forward_between_networks(src: &Leg<'_>, dst: &Leg<'_>, fw: Option<&Firewall>, t: &mut Trace) {
    let bridge = dst.bridge.clone().unwrap_or_default();
    let present = fw.map(|fw| fw.network_installed(&dst.a.network).unwrap_or(false));
    match isolation_rule(&dst.a.network, &bridge) {
        Some(rule) => t.drop(
            "firewall (inet tether)",
            format!(
                "isolation: network {}'s chain {} drops new connections entering bridge {bridge} from another network (only replies and published ports get in)",
                dst.a.network,
                NetworkId::of(&dst.a.network).forward_chain()
            ),
            rule,
            Cause::Isolation,
            format!(
                "attach {} to network {} too (tether attach --network {} ...), or publish the port and use the host's address",
                src.a.container_id, dst.a.network, dst.a.network
            ),
        ),
        None if present == Some(true) => t.pass("firewall (inet tether)", format!("network {} has no isolation drop", dst.a.network), "chain present without the drop rule".into()),
        None => t.warn("firewall (inet tether)", format!("network {}'s chain is not installed", dst.a.network), "tether inspect / tether doctor show what is missing".into()),
    }
    if !t.dropped() {
        foreign_drops(t);
    }
}

fn foreign_drops(t: &mut Trace) {
    for d in host_firewall::forward_drops().unwrap_or_default() {
        if !d.admits_tether {
            t.drop(
                "firewall (other tables)",
                d.describe(),
                match &d.catch_all {
                    Some(rule) => rule.clone(),
                    None => "policy drop at the forward hook".into(),
                },
                Cause::Firewall,
                d.chain.remedy(),
            );
            return;
        }
    }
}

/// The isolation rule of a network's chain as the kernel lists it, with its handle.
fn isolation_rule(network: &str, bridge: &str) -> Option<String> {
    let wanted = format!("oifname \"{bridge}\" drop");
    chain_rule(network, &wanted)
}

fn accept_rule(network: &str, wanted: &str) -> String {
    chain_rule(network, wanted)
        .unwrap_or_else(|| format!("expected rule `{wanted}` not found in the network's chain"))
}

/// The line of `nft -a list chain inet tether <network chain>` that matches `wanted`, with the chain named.
fn chain_rule(network: &str, wanted: &str) -> Option<String> {
    let chain = NetworkId::of(network).forward_chain();
    let out = Command::new("nft")
        .args(["-a", "list", "chain", "inet", "tether", &chain])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(wanted))
        .map(|l| format!("inet tether {chain}: {l}"))
}

/// The destination's interface, as the kernel has it.
fn arrival(leg: &Leg<'_>) -> String {
    let Some(path) = &leg.netns else {
        return "-".into();
    };
    let Ok(ns) = NetNs::open(path) else {
        return format!("its namespace {path} is gone");
    };
    let link = crate::link::Netlink::in_netns(&ns)
        .ok()
        .and_then(|nl| nl.link_by_name(&leg.a.ifname).ok().flatten());
    match link {
        Some(l) if l.up => format!("{} is up in {path}", l.name),
        Some(l) => format!("{} is DOWN in {path}", l.name),
        None => format!("{} is missing in {path}", leg.a.ifname),
    }
}

struct RouteAnswer {
    dev: Option<String>,
    text: String,
}

/// `ip -j route get ARGS`, in `netns` when given (this thread enters it; the child inherits it).
fn ip_route_get(netns: Option<&str>, args: &[&str]) -> Result<RouteAnswer, String> {
    let run = || {
        Command::new("ip")
            .args(["-j", "route", "get"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))
    };
    let out = match netns {
        Some(path) => {
            let ns = NetNs::open(Path::new(path)).map_err(|e| e.to_string())?;
            ns.run(run).map_err(|e| e.to_string())??
        }
        None => run()?,
    };
    if !out.status.success() {
        return Err(format!(
            "ip route get {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let value: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let r = &value[0];
    let dev = r["dev"].as_str().map(str::to_string);
    let mut text = format!(
        "ip route get {}: {} dev {}",
        args.join(" "),
        r["dst"].as_str().unwrap_or("?"),
        dev.as_deref().unwrap_or("?")
    );
    if let Some(gw) = r["gateway"].as_str() {
        text.push_str(&format!(" via {gw}"));
    }
    if r["type"].as_str() == Some("unreachable")
        || r["type"].as_str() == Some("prohibit")
        || r["type"].as_str() == Some("blackhole")
    {
        return Err(text);
    }
    Ok(RouteAnswer { dev, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_names_addresses_ports_and_protocols() {
        let t: Target = "web".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.protocol),
            ("web", None, Protocol::Tcp)
        );
        let t: Target = "web:53/udp".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.protocol),
            ("web", Some(53), Protocol::Udp)
        );
        let t: Target = "10.0.0.2:8080".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.2", Some(8080)));
        let t: Target = "fd00::2".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("fd00::2", None));
        let t: Target = "[fd00::2]:80/sctp".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.protocol),
            ("fd00::2", Some(80), Protocol::Sctp)
        );
        assert!("web:http".parse::<Target>().is_err());
        assert!("web:80/icmp".parse::<Target>().is_err());
    }
}
