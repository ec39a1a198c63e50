//! tether-portmap's config: the reference `portmap` plugin's option names, and the runtime's
//! `portMappings` turned into one firewall mapping per container address family.

use std::net::IpAddr;

use serde::Deserialize;

use crate::cni::runtime_config::PortMappingSpec;
use crate::error::Error;
use crate::firewall::{PortMapping, PortmapOptions};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPortmapConfig {
    snat: Option<bool>,
    #[serde(default)]
    masq_all: bool,
    // iptables match expressions: nothing in nftables means the same, so refuse rather than ignore.
    conditions_v4: Option<serde_json::Value>,
    conditions_v6: Option<serde_json::Value>,
}

pub fn options(raw: &serde_json::Value) -> Result<PortmapOptions, Error> {
    let r: RawPortmapConfig = serde_json::from_value(raw.clone())
        .map_err(|e| Error::config(format!("invalid tether-portmap config: {e}")))?;
    if r.conditions_v4.is_some() || r.conditions_v6.is_some() {
        return Err(Error::unsupported("tether-portmap does not support `conditionsV4`/`conditionsV6` (iptables match expressions); remove them",
        ));
    }
    Ok(PortmapOptions {
        snat: r.snat.unwrap_or(true),
        masq_all: r.masq_all,
    })
}

/// One mapping per (runtime mapping, container address of the matching family). A mapping without
/// `hostIP` is published on both families when the container has both, as Docker does for `-p 8080:80`.
pub fn expand(
    specs: &[PortMappingSpec],
    container_ips: &[IpAddr],
) -> Result<Vec<PortMapping>, Error> {
    let mut out = Vec::new();
    for spec in specs {
        let (protocol, host_ip) = (spec.protocol, spec.host_ip);
        let targets: Vec<IpAddr> = container_ips
            .iter()
            .copied()
            .filter(|c| host_ip.is_none_or(|h| h.is_ipv4() == c.is_ipv4()))
            .collect();
        if targets.is_empty() {
            return Err(Error::config(format!(
                "cannot publish {}:{}/{}: the container has no {} address",
                host_ip.map(|h| h.to_string()).unwrap_or_else(|| "*".into()),
                spec.host_port,
                protocol.name(),
                if host_ip.is_some_and(|h| h.is_ipv6()) {
                    "IPv6"
                } else {
                    "IPv4"
                }
            )));
        }
        // One address per family: the first, as the reference plugin does.
        let mut seen_v4 = false;
        let mut seen_v6 = false;
        for ip in targets {
            let seen = if ip.is_ipv4() {
                &mut seen_v4
            } else {
                &mut seen_v6
            };
            if std::mem::replace(seen, true) {
                continue;
            }
            out.push(PortMapping {
                host_ip,
                host_port: spec.host_port,
                container_ip: ip,
                container_port: spec.container_port,
                protocol,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Protocol;
    use serde_json::json;

    fn spec(host_ip: Option<&str>, protocol: Protocol) -> PortMappingSpec {
        PortMappingSpec {
            host_port: 8080,
            container_port: 80,
            protocol,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        }
    }

    #[test]
    fn options_default_to_snat_on() {
        let o = options(&json!({"type": "tether-portmap"})).unwrap();
        assert!(o.snat && !o.masq_all);
        let o = options(&json!({"snat": false, "masqAll": true})).unwrap();
        assert!(!o.snat && o.masq_all);
        assert_eq!(
            options(&json!({"conditionsV4": ["-s", "1.2.3.4"]}))
                .unwrap_err()
                .code(),
            2
        );
        assert_eq!(options(&json!({"snat": "yes"})).unwrap_err().code(), 7);
    }

    #[test]
    fn a_mapping_without_host_ip_goes_to_each_family_once() {
        let ips: Vec<IpAddr> = vec![
            "10.0.0.2".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        ];
        let m = expand(&[spec(None, Protocol::Tcp)], &ips).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].container_ip, ips[0]);
        assert_eq!(m[1].container_ip, ips[1]);
    }

    #[test]
    fn a_host_ip_picks_its_family_and_a_family_the_container_lacks_is_refused() {
        let ips: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap()];
        let m = expand(&[spec(Some("127.0.0.1"), Protocol::Udp)], &ips).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].protocol, Protocol::Udp);
        assert_eq!(
            expand(&[spec(Some("::1"), Protocol::Tcp)], &ips)
                .unwrap_err()
                .code(),
            7
        );
    }
}
