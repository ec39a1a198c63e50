//! Docker's `-o` options and `--internal`, mapped onto tether's bridge settings where they mean the same.

use serde_json::Value;

use super::protocol::Options;
use crate::error::Error;
use crate::ifname::ifname_problem;
use crate::link::{check_mtu, MacvlanMode};

/// Where Docker puts the `-o key=value` pairs of `docker network create`.
const GENERIC: &str = "com.docker.network.generic";
const INTERNAL: &str = "com.docker.network.internal";

/// The options a `tether` network takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// `com.docker.network.bridge.name`.
    pub bridge: Option<String>,
    /// `com.docker.network.bridge.enable_icc` (or `icc`): containers of the network reach each other.
    pub icc: bool,
    /// `com.docker.network.bridge.enable_ip_masquerade`.
    pub masquerade: bool,
    /// `com.docker.network.driver.mtu`, `com.docker.network.bridge.mtu` or `mtu`.
    pub mtu: Option<u32>,
    /// `--internal`: no default route, no masquerade.
    pub internal: bool,
}

/// Go's strconv.ParseBool, which Docker's own drivers use for these options.
fn parse_bool(key: &str, text: &str) -> Result<bool, Error> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Error::config(format!(
            "option {key}={text:?} is not a boolean; use true or false"
        ))),
    }
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `--internal` and the `-o` pairs of a request.
fn split(options: &Options) -> (bool, Vec<(String, String)>) {
    let Some(options) = options else {
        return (false, Vec::new());
    };
    let internal = matches!(options.get(INTERNAL), Some(Value::Bool(true)));
    let pairs = match options.get(GENERIC) {
        Some(Value::Object(generic)) => generic
            .iter()
            .map(|(k, v)| (k.clone(), as_text(v)))
            .collect(),
        _ => Vec::new(),
    };
    (internal, pairs)
}

const MTU_KEYS: [&str; 3] = [
    "com.docker.network.driver.mtu",
    "com.docker.network.bridge.mtu",
    "mtu",
];

fn parse_mtu(key: &str, text: &str) -> Result<u32, Error> {
    let mtu = text.parse::<u32>().map_err(|_| {
        Error::config(format!(
            "option {key}={text:?}: expected a number, the MTU in bytes"
        ))
    })?;
    check_mtu(mtu).map_err(|e| Error::config(format!("option {key}={text:?}: {e}")))
}

fn unknown(key: &str, driver: &str, known: &str) -> Error {
    Error::config(format!(
        "option {key} is not known to the {driver} driver; it takes {known}"
    ))
}

impl BridgeOptions {
    pub fn from_docker(options: &Options) -> Result<BridgeOptions, Error> {
        let (internal, pairs) = split(options);
        let mut out = BridgeOptions {
            bridge: None,
            icc: true,
            masquerade: true,
            mtu: None,
            internal,
        };
        for (key, text) in pairs {
            match key.as_str() {
                "com.docker.network.bridge.name" => {
                    if let Some(why) = ifname_problem(&text) {
                        return Err(Error::config(format!(
                            "option {key}={text:?} is not a valid interface name: {why}"
                        )));
                    }
                    out.bridge = Some(text);
                }
                "com.docker.network.bridge.enable_icc" | "icc" => {
                    out.icc = parse_bool(&key, &text)?
                }
                "com.docker.network.bridge.enable_ip_masquerade" => {
                    out.masquerade = parse_bool(&key, &text)?
                }
                k if MTU_KEYS.contains(&k) => out.mtu = Some(parse_mtu(k, &text)?),
                _ => {
                    return Err(unknown(
                        &key,
                        "tether",
                        "com.docker.network.bridge.name, com.docker.network.bridge.enable_icc, \
                         com.docker.network.bridge.enable_ip_masquerade, com.docker.network.driver.mtu (or mtu)",
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// The options a `tether-macvlan` network takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanOptions {
    /// `parent`: the link the children hang on; `None`: the interface of the default route.
    pub parent: Option<String>,
    /// `macvlan_mode`.
    pub mode: MacvlanMode,
    pub mtu: Option<u32>,
    /// `--internal`: no default route.
    pub internal: bool,
}

impl MacvlanOptions {
    pub fn from_docker(options: &Options) -> Result<MacvlanOptions, Error> {
        let (internal, pairs) = split(options);
        let mut out = MacvlanOptions {
            parent: None,
            mode: MacvlanMode::Bridge,
            mtu: None,
            internal,
        };
        for (key, text) in pairs {
            match key.as_str() {
                "parent" => {
                    if let Some(why) = ifname_problem(&text) {
                        return Err(Error::config(format!(
                            "option parent={text:?} is not a valid interface name: {why}"
                        )));
                    }
                    out.parent = Some(text);
                }
                "macvlan_mode" => {
                    out.mode = text
                        .parse()
                        .map_err(|e| Error::config(format!("option macvlan_mode: {e}")))?
                }
                k if MTU_KEYS.contains(&k) => out.mtu = Some(parse_mtu(k, &text)?),
                _ => {
                    return Err(unknown(
                        &key,
                        "tether-macvlan",
                        "parent, macvlan_mode, com.docker.network.driver.mtu (or mtu)",
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// The options a `tether-overlay` network takes, as tether-overlay's own config (the subnet is the pool
/// Docker's IPAM gave): parsed by `OverlayConfig::from_json`, so both entry points check them alike.
pub fn overlay_config(options: &Options, subnet: &str) -> Result<(Value, bool), Error> {
    let (internal, pairs) = split(options);
    // Docker's gateway network (docker_gwbridge) is the egress, not tether's gateway bridge.
    let mut conf = serde_json::json!({ "subnet": subnet, "egress": false });
    for (key, text) in pairs {
        let field = match key.as_str() {
            "vni" => "vni",
            "underlay" => "underlay",
            "block_size" => "blockSize",
            "encrypted" => "encrypted",
            "vxlan_port" => "vxlanPort",
            k if MTU_KEYS.contains(&k) => {
                conf["mtu"] = parse_mtu(k, &text)?.into();
                continue;
            }
            _ => {
                return Err(unknown(
                    &key,
                    "tether-overlay",
                    "vni, underlay, block_size, encrypted, vxlan_port, com.docker.network.driver.mtu (or mtu)",
                ))
            }
        };
        conf[field] = match field {
            "underlay" => Value::String(text),
            // `-o encrypted` alone arrives as "" (Docker's overlay takes it so).
            "encrypted" => Value::Bool(text.is_empty() || parse_bool(&key, &text)?),
            _ => text
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| Error::config(format!("option {key}={text:?}: expected a number")))?,
        };
    }
    if conf.get("vni").is_none() {
        return Err(Error::config(
            "tether-overlay needs -o vni=N (1..16777215): the same N on every host names the network \
             across them",
        ));
    }
    Ok((conf, internal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<BridgeOptions, Error> {
        let map = serde_json::from_value(v).unwrap();
        BridgeOptions::from_docker(&Some(map))
    }

    #[test]
    fn overlay_options_become_tether_overlays_config() {
        let opts = serde_json::from_value(json!({"com.docker.network.generic": {
            "vni": "42", "underlay": "ul0", "block_size": "28", "encrypted": "", "mtu": "1400"
        }}))
        .unwrap();
        let (conf, internal) = overlay_config(&Some(opts), "10.40.0.0/16").unwrap();
        assert_eq!(
            conf,
            json!({"subnet": "10.40.0.0/16", "egress": false, "vni": 42, "underlay": "ul0",
                   "blockSize": 28, "encrypted": true, "mtu": 1400})
        );
        assert!(!internal);
        for bad in [
            json!({"com.docker.network.generic": {}}),
            json!({"com.docker.network.generic": {"vni": "x"}}),
            json!({"com.docker.network.generic": {"vni": "1", "parent": "eth0"}}),
            json!({"com.docker.network.generic": {"vni": "1", "encrypted": "maybe"}}),
        ] {
            let map = serde_json::from_value(bad.clone()).unwrap();
            assert!(overlay_config(&Some(map), "10.40.0.0/16").is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_options_map_to_bridge_settings() {
        let o = parse(json!({
            "com.docker.network.enable_ipv6": false,
            "com.docker.network.internal": true,
            "com.docker.network.generic": {
                "com.docker.network.bridge.name": "br-test",
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.enable_ip_masquerade": "0",
                "mtu": "1400"
            }
        }))
        .unwrap();
        assert_eq!(o.bridge.as_deref(), Some("br-test"));
        assert!(!o.icc && !o.masquerade && o.internal);
        assert_eq!(o.mtu, Some(1400));
        let d = BridgeOptions::from_docker(&None).unwrap();
        assert!(d.icc && d.masquerade && !d.internal && d.mtu.is_none());
    }

    #[test]
    fn bad_options_are_refused_with_what_would_do() {
        for bad in [
            json!({"com.docker.network.generic": {"mtu": "20"}}),
            json!({"com.docker.network.generic": {"icc": "maybe"}}),
            json!({"com.docker.network.generic": {"com.docker.network.bridge.name": "much-too-long-bridge"}}),
            json!({"com.docker.network.generic": {"parent": "eth0"}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn macvlan_options() {
        let map = serde_json::from_value(json!({
            "com.docker.network.generic": {"parent": "mv0", "macvlan_mode": "private", "mtu": "1400"}
        }))
        .unwrap();
        let o = MacvlanOptions::from_docker(&Some(map)).unwrap();
        assert_eq!(o.parent.as_deref(), Some("mv0"));
        assert_eq!(o.mode, MacvlanMode::Private);
        assert_eq!(o.mtu, Some(1400));
        let bad = serde_json::from_value(json!({
            "com.docker.network.generic": {"macvlan_mode": "l2"}
        }))
        .unwrap();
        assert!(MacvlanOptions::from_docker(&Some(bad)).is_err());
        let bad = serde_json::from_value(json!({
            "com.docker.network.generic": {"com.docker.network.bridge.name": "x"}
        }))
        .unwrap();
        assert!(MacvlanOptions::from_docker(&Some(bad)).is_err());
    }
}
