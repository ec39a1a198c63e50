//! Choosing host ports for `-p` specs that leave them open: a port is free when no other published
//! mapping (in the result cache) holds it and a socket can bind it in the current (host) namespace.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use super::error::EndpointError;
use super::port_spec::{HostPorts, PortSpec};
use crate::firewall::Protocol;

/// One published port, as handed to plugins in the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: String,
}

/// Ports held by other attachments: (protocol, host port).
pub type TakenPorts = HashSet<(String, u16)>;

/// The kernel's ephemeral range (`net.ipv4.ip_local_port_range`), Docker's source of random ports.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(first, last)| first <= last)
        .unwrap_or((32768, 60999))
}

fn can_bind(protocol: Protocol, host_ip: Option<IpAddr>, port: u16) -> bool {
    let addr = SocketAddr::new(host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
        // No SCTP socket in std; the firewall still refuses a port another container holds.
        Protocol::Sctp => true,
    }
}

fn is_free(spec: &PortSpec, port: u16, taken: &TakenPorts) -> bool {
    !taken.contains(&(spec.protocol.name().to_string(), port))
        && can_bind(spec.protocol, spec.host_ip, port)
}

/// A start point that differs between calls, so concurrent attaches rarely race for one port.
fn scatter(len: u32) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % len.max(1)
}

/// Turns specs into concrete mappings, choosing host ports where the spec leaves them open. Ports it
/// chooses are added to `taken`, so two random specs in one call never get the same port.
pub fn resolve(
    specs: &[PortSpec],
    taken: &mut TakenPorts,
) -> Result<Vec<PublishedPort>, EndpointError> {
    let mut out = Vec::new();
    for spec in specs {
        let mapping = |host_port: u16, container_port: u16| PublishedPort {
            host_ip: spec.host_ip,
            host_port,
            container_port,
            protocol: spec.protocol.name().to_string(),
        };
        let chosen = match spec.host_ports {
            HostPorts::Exact(range) => {
                for (host, container) in range.ports().zip(spec.container_ports.ports()) {
                    out.push(mapping(host, container));
                }
                continue;
            }
            HostPorts::FirstFreeOf(range) => range.ports().find(|p| is_free(spec, *p, taken)),
            HostPorts::Random => {
                let (first, last) = ephemeral_range();
                let len = u32::from(last - first) + 1;
                let start = scatter(len);
                (0..len)
                    .map(|i| first + ((start + i) % len) as u16)
                    .find(|p| is_free(spec, *p, taken))
            }
        };
        let port = chosen.ok_or_else(|| EndpointError::NoFreePort {
            what: format!(
                "container port {}/{}",
                spec.container_ports,
                spec.protocol.name()
            ),
        })?;
        taken.insert((spec.protocol.name().to_string(), port));
        out.push(mapping(port, spec.container_ports.first));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ranges_pair_up_in_order() {
        let specs = ["8000-8002:80-82/udp".parse().unwrap()];
        let out = resolve(&specs, &mut TakenPorts::new()).unwrap();
        let pairs: Vec<(u16, u16)> = out
            .iter()
            .map(|m| (m.host_port, m.container_port))
            .collect();
        assert_eq!(pairs, [(8000, 80), (8001, 81), (8002, 82)]);
        assert!(out.iter().all(|m| m.protocol == "udp"));
    }

    #[test]
    fn random_ports_avoid_taken_and_bound_ones_and_each_other() {
        let (first, last) = ephemeral_range();
        let specs: Vec<PortSpec> = vec!["80".parse().unwrap(), "81".parse().unwrap()];
        let mut taken = TakenPorts::new();
        let out = resolve(&specs, &mut taken).unwrap();
        assert_ne!(out[0].host_port, out[1].host_port);
        for m in &out {
            assert!((first..=last).contains(&m.host_port));
            assert!(taken.contains(&("tcp".to_string(), m.host_port)));
        }
    }

    #[test]
    fn first_free_of_a_range_skips_held_ports() {
        // Hold 127.0.0.1:P so binding it fails; the next port of the range is chosen.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        if port == u16::MAX {
            return;
        }
        let spec: PortSpec = format!("127.0.0.1:{port}-{}:80", port + 1).parse().unwrap();
        let out = resolve(&[spec], &mut TakenPorts::new());
        match out {
            Ok(out) => assert_eq!(out[0].host_port, port + 1),
            // The neighbour may be in use on a busy machine too: then nothing is free, which is right.
            Err(EndpointError::NoFreePort { .. }) => {}
            Err(other) => panic!("{other}"),
        }
        let mut taken: TakenPorts = [("tcp".to_string(), port + 1)].into();
        let spec: PortSpec = format!("127.0.0.1:{port}-{}:80", port + 1).parse().unwrap();
        assert!(matches!(
            resolve(&[spec], &mut taken),
            Err(EndpointError::NoFreePort { .. })
        ));
    }
}
