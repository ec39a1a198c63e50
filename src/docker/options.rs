//! Docker's `-o` options and `--internal`, mapped onto tether's bridge settings where they mean the same.

use serde_json::Value;

use super::protocol::Options;
use crate::error::Error;
use crate::ifname::ifname_problem;
use crate::link::MTU_RANGE;

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

impl BridgeOptions {
    pub fn from_docker(options: &Options) -> Result<BridgeOptions, Error> {
        let mut out = BridgeOptions {
            bridge: None,
            icc: true,
            masquerade: true,
            mtu: None,
            internal: false,
        };
        let Some(options) = options else {
            return Ok(out);
        };
        out.internal = matches!(options.get(INTERNAL), Some(Value::Bool(true)));
        let Some(Value::Object(generic)) = options.get(GENERIC) else {
            return Ok(out);
        };
        for (key, value) in generic {
            let text = as_text(value);
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
                    out.icc = parse_bool(key, &text)?
                }
                "com.docker.network.bridge.enable_ip_masquerade" => {
                    out.masquerade = parse_bool(key, &text)?
                }
                "com.docker.network.driver.mtu" | "com.docker.network.bridge.mtu" | "mtu" => {
                    let mtu = text.parse::<u32>().ok().filter(|m| MTU_RANGE.contains(m));
                    out.mtu = Some(mtu.ok_or_else(|| {
                        Error::config(format!(
                            "option {key}={text:?}: use an MTU from {} to {}",
                            MTU_RANGE.start(),
                            MTU_RANGE.end()
                        ))
                    })?);
                }
                _ => {
                    return Err(Error::config(format!(
                        "option {key} is not known to the tether driver; it takes \
                         com.docker.network.bridge.name, com.docker.network.bridge.enable_icc, \
                         com.docker.network.bridge.enable_ip_masquerade, com.docker.network.driver.mtu (or mtu)"
                    )))
                }
            }
        }
        Ok(out)
    }
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
}
