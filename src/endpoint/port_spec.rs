//! `-p` as Docker spells it: `[HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, ports or equal-length ranges
//! (`8000-8010:80-90`), a host range for one container port (the first free one is taken), a bare
//! container port for a random free host port, IPv6 host addresses in brackets (`[::1]:8080:80`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::firewall::Protocol;

/// An inclusive port range; a single port is `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What the host side of a spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPorts {
    /// `-p 80`: any free port from the ephemeral range.
    Random,
    /// Exactly these, one per container port.
    Exact(PortRange),
    /// `-p 8000-8010:80`: the first free one of the range.
    FirstFreeOf(PortRange),
}

/// One parsed `-p` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<IpAddr>,
    pub host_ports: HostPorts,
    pub container_ports: PortRange,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port mapping {spec:?}: {reason}; use [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp|sctp], e.g. 8080:80 or 127.0.0.1:8000-8001:80-81/udp")]
pub struct PortSpecError {
    pub spec: String,
    pub reason: String,
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(text: &str) -> Result<PortSpec, PortSpecError> {
        let fail = |reason: &str| PortSpecError {
            spec: text.to_string(),
            reason: reason.to_string(),
        };
        let (body, protocol) = match text.rsplit_once('/') {
            Some((body, proto)) => (body, proto.parse::<Protocol>().map_err(|e| fail(&e))?),
            None => (text, Protocol::Tcp),
        };
        let (host_ip, rest) = split_host_ip(body).map_err(|r| fail(&r))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (host, container) = match parts.as_slice() {
            [container] if host_ip.is_none() => (None, *container),
            [host, container] => (Some(*host), *container),
            _ => return Err(fail("too many ':' (IPv6 host addresses go in brackets)")),
        };
        let container_ports = parse_range(container).map_err(|r| fail(&r))?;
        let host_ports = match host {
            None | Some("") => {
                if container_ports.len() > 1 {
                    return Err(fail("a container port range needs a host port range"));
                }
                HostPorts::Random
            }
            Some(host) => {
                let range = parse_range(host).map_err(|r| fail(&r))?;
                if range.len() == container_ports.len() {
                    HostPorts::Exact(range)
                } else if container_ports.len() == 1 {
                    HostPorts::FirstFreeOf(range)
                } else {
                    return Err(fail(&format!(
                        "host range {range} and container range {container_ports} differ in length"
                    )));
                }
            }
        };
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            protocol,
        })
    }
}

/// Splits a leading `IP:` (`[v6]:` for IPv6) off; a part with a '.' or brackets is an address.
fn split_host_ip(body: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(rest) = body.strip_prefix('[') {
        let (addr, rest) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after the IPv6 address".to_string())?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| "expected ':' after the bracketed address".to_string())?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        if !ip.is_ipv6() {
            return Err(format!("brackets are for IPv6 addresses, not {addr}"));
        }
        return Ok((Some(ip), rest));
    }
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() == 3 {
        let ip = parts[0];
        if ip.is_empty() {
            return Ok((None, &body[1..]));
        }
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        return Ok((Some(ip), &body[parts[0].len() + 1..]));
    }
    Ok((None, body))
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port".to_string()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("{text:?} is not a port number (1-65535)")),
    }
}

fn parse_range(text: &str) -> Result<PortRange, String> {
    match text.split_once('-') {
        None => {
            let port = parse_port(text)?;
            Ok(PortRange {
                first: port,
                last: port,
            })
        }
        Some((first, last)) => {
            let (first, last) = (parse_port(first)?, parse_port(last)?);
            if first > last {
                return Err(format!("range {first}-{last} runs backwards"));
            }
            Ok(PortRange { first, last })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    fn parse(text: &str) -> PortSpec {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn host_and_container_port() {
        assert_eq!(
            parse("8080:80"),
            PortSpec {
                host_ip: None,
                host_ports: HostPorts::Exact(range(8080, 8080)),
                container_ports: range(80, 80),
                protocol: Protocol::Tcp,
            }
        );
        assert_eq!(parse("53:53/udp").protocol, Protocol::Udp);
        assert_eq!(parse("53:53/UDP").protocol, Protocol::Udp);
    }

    #[test]
    fn a_bare_container_port_gets_a_random_host_port() {
        let spec = parse("80");
        assert_eq!(spec.host_ports, HostPorts::Random);
        assert_eq!(parse(":80").host_ports, HostPorts::Random);
        assert_eq!(parse("80/udp").protocol, Protocol::Udp);
    }

    #[test]
    fn host_addresses() {
        let spec = parse("127.0.0.1:8080:80");
        assert_eq!(spec.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(spec.host_ports, HostPorts::Exact(range(8080, 8080)));
        let spec = parse("[::1]:8080:80/sctp");
        assert_eq!(spec.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(spec.protocol, Protocol::Sctp);
        let spec = parse("10.0.0.1::80");
        assert_eq!(spec.host_ports, HostPorts::Random);
        assert_eq!(spec.host_ip, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ranges() {
        let spec = parse("8000-8010:80-90");
        assert_eq!(spec.host_ports, HostPorts::Exact(range(8000, 8010)));
        assert_eq!(spec.container_ports, range(80, 90));
        let spec = parse("8000-8010:80");
        assert_eq!(spec.host_ports, HostPorts::FirstFreeOf(range(8000, 8010)));
    }

    #[test]
    fn bad_specs_say_why() {
        for (text, why) in [
            ("8000-8010:80-85", "differ in length"),
            ("80-90", "needs a host port range"),
            ("0:80", "port 0"),
            ("70000:80", "not a port number"),
            ("90-80:90-80", "backwards"),
            ("8080:80/icmp", "unknown protocol"),
            ("::1:8080:80", "too many ':'"),
            ("[10.0.0.1]:80:80", "brackets are for IPv6"),
            ("[::1:80:80", "missing ']'"),
            ("x.y:80:80", "not an IP address"),
            ("http:80", "not a port number"),
        ] {
            let err = text.parse::<PortSpec>().unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
