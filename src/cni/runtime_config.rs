//! `runtimeConfig`: the per-container data a runtime injects for the
//! capabilities a plugin declares (CNI CONVENTIONS.md). Runtimes disagree on
//! key case (containerd sends `HostPort`, `ContainerPort`, `HostIP`), so every
//! key is lower-cased, at every level, before anything reads it.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use super::error::{CniError, ErrorCode};
use crate::mac::MacAddr;
use crate::transport::Protocol;

/// One published port (`portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMappingSpec {
    pub host_port: u16,
    pub container_port: u16,
    /// tcp when the runtime names none.
    pub protocol: Protocol,
    /// `None` means every host address; containerd sends "" for that.
    pub host_ip: Option<IpAddr>,
}

/// `bandwidth` capability: rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BandwidthSpec {
    pub ingress_rate: Option<u64>,
    pub ingress_burst: Option<u64>,
    pub egress_rate: Option<u64>,
    pub egress_burst: Option<u64>,
}

/// `dns` capability: what the runtime wants in the container's resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    pub port_mappings: Vec<PortMappingSpec>,
    /// `ips` capability: requested addresses, sent CIDR or bare (only the address counts).
    pub ips: Vec<IpAddr>,
    /// `mac` capability.
    pub mac: Option<MacAddr>,
    pub aliases: Option<Value>,
    pub bandwidth: Option<BandwidthSpec>,
    pub dns: Option<RuntimeDns>,
    /// The whole object with every key lower-cased, for capabilities not
    /// modelled here.
    pub raw: Value,
}

impl RuntimeConfig {
    /// Parses the `runtimeConfig` object of a plugin configuration. `null`
    /// or a missing object yields the empty config.
    pub fn parse(value: Option<&Value>) -> Result<RuntimeConfig, CniError> {
        let raw = match value {
            None | Some(Value::Null) => return Ok(RuntimeConfig::default_with_raw()),
            Some(value @ Value::Object(_)) => lowercase_keys(value),
            Some(other) => {
                return Err(invalid(format!(
                    "\"runtimeConfig\" must be an object, got {other}"
                )))
            }
        };
        let obj = raw.as_object().cloned().unwrap_or_default();

        let mut port_mappings = Vec::new();
        for (index, entry) in list(&obj, "portmappings")?.iter().enumerate() {
            port_mappings.push(parse_port_mapping(entry, index)?);
        }
        let ips = list(&obj, "ips")?
            .iter()
            .map(|ip| {
                let text = ip.as_str().ok_or_else(|| {
                    invalid(format!("runtimeConfig \"ips\" entry {ip} must be a string"))
                })?;
                requested_ip(text).ok_or_else(|| {
                    invalid(format!(
                        "runtimeConfig \"ips\" entry {text:?} is not an IP address; write \"10.1.2.3\" or \"10.1.2.3/24\""
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let mac = match obj.get("mac") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(Value::String(text)) => Some(parse_mac(text, "runtimeConfig \"mac\"")?),
            Some(other) => {
                return Err(invalid(format!(
                    "runtimeConfig \"mac\" must be a string, got {other}"
                )))
            }
        };
        let bandwidth = match obj.get("bandwidth") {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse_bandwidth(value)?),
        };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse_dns(value)?),
        };
        Ok(RuntimeConfig {
            port_mappings,
            ips,
            mac,
            aliases: obj.get("aliases").filter(|v| !v.is_null()).cloned(),
            bandwidth,
            dns,
            raw,
        })
    }

    fn default_with_raw() -> RuntimeConfig {
        RuntimeConfig {
            raw: Value::Object(Map::new()),
            ..RuntimeConfig::default()
        }
    }

    /// A capability's data by name, matched case-insensitively.
    pub fn get(&self, capability: &str) -> Option<&Value> {
        self.raw.get(capability.to_ascii_lowercase())
    }
}

/// A requested address as runtimes write it, "10.1.2.3/24" or bare "10.1.2.3": only the address counts (the
/// prefix comes from the IPAM range). The one reading of `runtimeConfig.ips`, `CNI_ARGS IP=` and
/// `args.cni.ips`.
pub fn requested_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<IpNetwork>().map(|n| n.ip()).ok()
    } else {
        text.parse::<IpAddr>().ok()
    }
}

/// A MAC the runtime asks for (`mac` capability or `CNI_ARGS MAC=`).
pub fn parse_mac(text: &str, source: &str) -> Result<MacAddr, CniError> {
    text.parse::<MacAddr>().map_err(|_| {
        CniError::new(
            ErrorCode::InvalidConfig,
            format!("{source} {text:?} is not a MAC address; write it as aa:bb:cc:dd:ee:ff"),
        )
    })
}

/// Returns a copy of `value` with every object key lower-cased, recursively.
pub fn lowercase_keys(value: &Value) -> Value {
    match value {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .map(|(key, inner)| (key.to_ascii_lowercase(), lowercase_keys(inner)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lowercase_keys).collect()),
        other => other.clone(),
    }
}

fn invalid(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg).with_details(
        "runtimeConfig is filled in by the runtime from the plugin's declared capabilities",
    )
}

fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(invalid(format!(
            "runtimeConfig \"{key}\" must be a list, got {other}"
        ))),
    }
}

fn port(entry: &Map<String, Value>, key: &str, index: usize) -> Result<u16, CniError> {
    let value = entry.get(key).ok_or_else(|| {
        invalid(format!(
            "runtimeConfig portMappings[{index}] has no \"{key}\""
        ))
    })?;
    value
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| {
            invalid(format!(
                "runtimeConfig portMappings[{index}] \"{key}\" {value} is not a port 1-65535"
            ))
        })
}

fn parse_port_mapping(entry: &Value, index: usize) -> Result<PortMappingSpec, CniError> {
    let entry = entry.as_object().ok_or_else(|| {
        invalid(format!(
            "runtimeConfig portMappings[{index}] must be an object"
        ))
    })?;
    let protocol = match entry.get("protocol") {
        None | Some(Value::Null) => Protocol::Tcp,
        Some(Value::String(text)) if text.is_empty() => Protocol::Tcp,
        Some(Value::String(text)) => text.parse::<Protocol>().map_err(|_| {
            invalid(format!(
                "runtimeConfig portMappings[{index}] protocol \"{}\" is not tcp, udp or sctp",
                text.to_ascii_lowercase()
            ))
        })?,
        Some(other) => {
            return Err(invalid(format!(
                "runtimeConfig portMappings[{index}] \"protocol\" must be a string, got {other}"
            )))
        }
    };
    let host_ip = match entry.get("hostip") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(text.trim().parse::<IpAddr>().map_err(|_| {
            invalid(format!(
                "runtimeConfig portMappings[{index}] hostIP \"{text}\" is not an IP address"
            ))
        })?),
        Some(other) => {
            return Err(invalid(format!(
                "runtimeConfig portMappings[{index}] \"hostIP\" must be a string, got {other}"
            )))
        }
    };
    Ok(PortMappingSpec {
        host_port: port(entry, "hostport", index)?,
        container_port: port(entry, "containerport", index)?,
        protocol,
        host_ip,
    })
}

fn parse_bandwidth(value: &Value) -> Result<BandwidthSpec, CniError> {
    let obj = value.as_object().ok_or_else(|| {
        invalid(format!(
            "runtimeConfig \"bandwidth\" must be an object, got {value}"
        ))
    })?;
    let number = |key: &str| -> Result<Option<u64>, CniError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(n) => n.as_u64().map(Some).ok_or_else(|| {
                invalid(format!(
                    "runtimeConfig bandwidth \"{key}\" must be a non-negative integer, got {n}"
                ))
            }),
        }
    };
    Ok(BandwidthSpec {
        ingress_rate: number("ingressrate")?,
        ingress_burst: number("ingressburst")?,
        egress_rate: number("egressrate")?,
        egress_burst: number("egressburst")?,
    })
}

fn parse_dns(value: &Value) -> Result<RuntimeDns, CniError> {
    let obj = value.as_object().ok_or_else(|| {
        invalid(format!(
            "runtimeConfig \"dns\" must be an object, got {value}"
        ))
    })?;
    let strings = |key: &str| -> Result<Vec<String>, CniError> {
        list(obj, key)?
            .iter()
            .map(|item| {
                let text = item.as_str().ok_or_else(|| {
                    invalid(format!(
                        "runtimeConfig dns \"{key}\" entry {item} must be a string"
                    ))
                })?;
                // Each entry becomes a word in the container's resolv.conf: a newline would add lines.
                match super::result::control_char(text) {
                    Some(c) => Err(invalid(format!(
                        "runtimeConfig dns \"{key}\" entry {item} holds the control character {c:?}"
                    ))),
                    None => Ok(text.to_string()),
                }
            })
            .collect()
    };
    Ok(RuntimeDns {
        servers: strings("servers")?,
        searches: strings("searches")?,
        options: strings("options")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_in_any_case() {
        // containerd spelling and the reference spelling side by side.
        let value = json!({
            "PortMappings": [
                {"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ],
            "IPs": ["10.0.0.9/24"],
            "MAC": "0a:00:00:00:00:09",
            "Bandwidth": {"IngressRate": 1000, "egressBurst": 20},
            "DNS": {"Servers": ["1.1.1.1"], "Searches": ["a.example"], "Options": ["ndots:2"]},
            "Aliases": {"net": ["web"]},
            "IO.Kubernetes.Custom": {"Nested": {"DeepKey": 1}}
        });
        let config = RuntimeConfig::parse(Some(&value)).unwrap();
        assert_eq!(
            config.port_mappings,
            vec![
                PortMappingSpec {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None
                },
                PortMappingSpec {
                    host_port: 5353,
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_ip: Some("127.0.0.1".parse().unwrap())
                },
            ]
        );
        assert_eq!(config.ips, vec!["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(config.mac, Some("0a:00:00:00:00:09".parse().unwrap()));
        assert_eq!(
            config.bandwidth,
            Some(BandwidthSpec {
                ingress_rate: Some(1000),
                egress_burst: Some(20),
                ..BandwidthSpec::default()
            })
        );
        assert_eq!(
            config.dns.as_ref().unwrap().searches,
            vec!["a.example".to_string()]
        );
        assert_eq!(config.aliases, Some(json!({"net": ["web"]})));
        assert_eq!(
            config.get("io.kubernetes.CUSTOM"),
            Some(&json!({"nested": {"deepkey": 1}}))
        );
    }

    #[test]
    fn dns_entries_with_newlines_are_refused() {
        let value = json!({"dns": {"searches": ["a.example", "b\nnameserver 6.6.6.6"]}});
        let err = RuntimeConfig::parse(Some(&value)).unwrap_err();
        assert_eq!(err.code, 7);
        assert!(err.msg.contains("control character"), "{}", err.msg);
    }

    #[test]
    fn protocol_defaults_to_tcp() {
        let value = json!({"portMappings": [{"hostPort": 1, "containerPort": 2}]});
        let config = RuntimeConfig::parse(Some(&value)).unwrap();
        assert_eq!(config.port_mappings[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn missing_runtime_config_is_empty() {
        let config = RuntimeConfig::parse(None).unwrap();
        assert!(config.port_mappings.is_empty() && config.mac.is_none());
        assert_eq!(config.raw, json!({}));
    }

    #[test]
    fn bad_entries_are_invalid_config() {
        for (value, needle) in [
            (json!([]), "must be an object"),
            (json!({"portMappings": {}}), "must be a list"),
            (
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
                "hostport",
            ),
            (
                json!({"portMappings": [{"hostPort": 70000, "containerPort": 80}]}),
                "hostport",
            ),
            (json!({"portMappings": [{"hostPort": 80}]}), "containerport"),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}),
                "icmp",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}]}),
                "nope",
            ),
            (json!({"ips": [1]}), "ips"),
            (json!({"ips": ["10.1.2.300"]}), "10.1.2.300"),
            (json!({"mac": "02:42:ac:11:00"}), "02:42:ac:11:00"),
            (json!({"bandwidth": {"ingressRate": -1}}), "ingressrate"),
        ] {
            let err = RuntimeConfig::parse(Some(&value)).unwrap_err();
            assert_eq!(err.code, 7, "{value}");
            assert!(err.msg.contains(needle), "{value}: {}", err.msg);
        }
    }
}
