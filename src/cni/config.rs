//! A plugin's network configuration, the JSON on stdin (spec section 1,
//! "Plugin configuration objects", as a runtime hands it to one plugin).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::env::is_valid_identifier;
use super::error::{CniError, ErrorCode};
use super::result::Dns;
use super::runtime_config::{lowercase_keys, RuntimeConfig};
use super::version;

/// libcni reads a configuration without `cniVersion` as 0.1.0.
const VERSION_WHEN_MISSING: &str = "0.1.0";

/// A still-valid attachment named by the runtime in a GC call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// Always one of [`version::SUPPORTED_VERSIONS`].
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub runtime_config: RuntimeConfig,
    /// The previous plugin's result, untouched; see `Call::prev_result`.
    pub prev_result: Option<Value>,
    pub ipam: Option<Value>,
    pub dns: Option<Dns>,
    /// GC only: `cni.dev/valid-attachments` (or the older `cni.dev/attachments`);
    /// `None` when the configuration carries neither key.
    pub gc_attachments: Option<Vec<Attachment>>,
    /// The whole stdin object.
    pub raw: Value,
}

impl NetConf {
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|err| {
            CniError::new(
                ErrorCode::Decode,
                format!("cannot decode the network configuration on stdin: {err}"),
            )
            .with_details(
                "the runtime must pass the network configuration as a JSON object on stdin",
            )
        })?;
        let obj = raw.as_object().ok_or_else(|| {
            CniError::new(
                ErrorCode::Decode,
                "the network configuration on stdin is not a JSON object",
            )
        })?;

        let cni_version = match obj.get("cniVersion") {
            None | Some(Value::Null) => VERSION_WHEN_MISSING.to_string(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => {
                return Err(CniError::new(
                    ErrorCode::Decode,
                    format!("\"cniVersion\" must be a string, got {other}"),
                ))
            }
        };
        if !version::is_supported(&cni_version) {
            return Err(version::incompatible(&cni_version));
        }
        let name = validated_network_name(obj.get("name"))?;
        let plugin_type = match obj.get("type") {
            Some(Value::String(text)) if !text.is_empty() => text.clone(),
            _ => {
                return Err(invalid(format!("network \"{name}\": \"type\" is missing"))
                    .with_details("set \"type\" to the plugin's executable name"))
            }
        };

        let capabilities = match obj.get("capabilities") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(caps)) => caps
                .iter()
                .map(|(key, value)| match value {
                    Value::Bool(on) => Ok((key.clone(), *on)),
                    other => Err(invalid(format!(
                        "capability \"{key}\" must be true or false, got {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(format!(
                    "\"capabilities\" must be an object, got {other}"
                )))
            }
        };
        let runtime_config = RuntimeConfig::parse(obj.get("runtimeConfig"))?;
        let prev_result = obj.get("prevResult").filter(|v| !v.is_null()).cloned();
        let ipam = match obj.get("ipam") {
            None | Some(Value::Null) => None,
            Some(value @ Value::Object(_)) => Some(value.clone()),
            Some(other) => return Err(invalid(format!("\"ipam\" must be an object, got {other}"))),
        };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(serde_json::from_value::<Dns>(value.clone()).map_err(|err| {
                    invalid(format!("network \"{name}\": invalid \"dns\": {err}"))
                })?)
            }
        };
        let gc_attachments = parse_attachments(obj)?;

        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            capabilities,
            runtime_config,
            prev_result,
            ipam,
            dns,
            gc_attachments,
            raw,
        })
    }

    /// The attachments a GC call says are still in use; empty when none were
    /// given (the dispatcher refuses a GC without the key before a plugin
    /// sees it).
    pub fn valid_attachments(&self) -> Vec<Attachment> {
        self.gc_attachments.clone().unwrap_or_default()
    }

    /// `ipam.type`, when there is an `ipam` section.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// Deserializes the plugin's own fields from the whole stdin object. On
    /// failure the message names the offending top-level field.
    pub fn plugin_fields<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        serde_json::from_value::<T>(self.raw.clone()).map_err(|err| {
            let culprit = culprit_field::<T>(&self.raw, &err.to_string());
            let msg = match culprit {
                Some(field) => format!(
                    "network \"{}\": invalid field \"{field}\": {err}",
                    self.name
                ),
                None => format!("network \"{}\": invalid configuration: {err}", self.name),
            };
            invalid(msg).with_details(format!(
                "check the \"{}\" plugin's documented fields",
                self.plugin_type
            ))
        })
    }
}

fn invalid(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg)
}

/// Spec section 1: a network name starts with a letter or digit and holds
/// only letters, digits, '_', '.' and '-' (it becomes part of file names).
pub(crate) fn validated_network_name(value: Option<&Value>) -> Result<String, CniError> {
    match value {
        Some(Value::String(name)) if is_valid_identifier(name) => Ok(name.clone()),
        Some(Value::String(name)) if !name.is_empty() => Err(invalid(format!(
            "invalid characters in network name \"{name}\""
        ))
        .with_details("a network name starts with a letter or digit and holds only letters, digits, '_', '.' and '-'")),
        _ => Err(invalid("missing network name".to_string())
            .with_details("set \"name\" in the network configuration")),
    }
}

/// serde errors from a `Value` carry no position. "missing field `x`" and
/// "unknown field `x`" name it already; for type errors, deserialize once more
/// from the object printed one top-level key per line and take the key at the
/// error's line. Linear in the config's size (removing one key at a time and
/// retrying was quadratic: minutes for a config of a few thousand keys).
fn culprit_field<T: DeserializeOwned>(raw: &Value, error: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = error.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    raw.as_object()?;
    let text = serde_json::to_string_pretty(raw).ok()?;
    let err = serde_json::from_str::<T>(&text).err()?;
    // Pretty printing puts each top-level key at the start of a line, indented by two spaces; the
    // error lies in the value of the last such key at or above its line.
    text.lines()
        .take(err.line())
        .filter_map(|line| line.strip_prefix("  \""))
        .filter(|rest| !rest.starts_with(' '))
        .last()
        .and_then(|rest| {
            let quoted = format!("\"{}", rest.split_once("\": ")?.0);
            serde_json::from_str::<String>(&format!("{quoted}\"")).ok()
        })
}

/// GC attachments: `[{"containerID": "...", "ifname": "..."}]`. Keys are
/// matched case-insensitively because Go's decoder (libcni) does so too.
fn parse_attachments(obj: &Map<String, Value>) -> Result<Option<Vec<Attachment>>, CniError> {
    let value = match obj
        .get("cni.dev/valid-attachments")
        .or_else(|| obj.get("cni.dev/attachments"))
    {
        None => return Ok(None),
        Some(value) => lowercase_keys(value),
    };
    let items = match &value {
        Value::Null => return Ok(Some(Vec::new())),
        Value::Array(items) => items,
        other => {
            return Err(invalid(format!(
                "\"cni.dev/valid-attachments\" must be a list, got {other}"
            )))
        }
    };
    items
        .iter()
        .map(|item| {
            let field = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            match (field("containerid"), field("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(Attachment {
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                }),
                _ => Err(invalid(format!(
                    "GC attachment {item} needs string \"containerID\" and \"ifname\""
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn parse(value: Value) -> Result<NetConf, CniError> {
        NetConf::parse(value.to_string().as_bytes())
    }

    #[test]
    fn parses_a_full_bridge_config() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cni/bridge-conf.json");
        let conf = NetConf::parse(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(conf.cni_version, "1.0.0");
        assert_eq!(conf.name, "tether-net");
        assert_eq!(conf.plugin_type, "tether-bridge");
        assert_eq!(conf.capabilities.get("portMappings"), Some(&true));
        assert_eq!(conf.ipam_type(), Some("tether-ipam"));
        assert_eq!(
            conf.dns.as_ref().unwrap().nameservers,
            vec!["10.88.0.1".to_string()]
        );
        assert_eq!(conf.runtime_config.port_mappings[0].host_port, 8080);
        assert!(conf.prev_result.is_none());
        assert!(conf.gc_attachments.is_none());
    }

    #[test]
    fn error_codes_for_bad_configs() {
        let cases: [(&[u8], u32, &str); 11] = [
            (b"{not json", 6, "cannot decode"),
            (b"[1,2]", 6, "not a JSON object"),
            (br#"{"cniVersion": 1, "name": "n", "type": "t"}"#, 6, "cniVersion"),
            (br#"{"cniVersion": "0.5.0", "name": "n", "type": "t"}"#, 1, "0.5.0"),
            (br#"{"cniVersion": "1.0", "name": "n", "type": "t"}"#, 1, "1.0"),
            (br#"{"cniVersion": "1.0.0", "type": "t"}"#, 7, "missing network name"),
            (br#"{"cniVersion": "1.0.0", "name": "", "type": "t"}"#, 7, "missing network name"),
            (br#"{"cniVersion": "1.0.0", "name": "a/b", "type": "t"}"#, 7, "invalid characters"),
            (br#"{"cniVersion": "1.0.0", "name": "n"}"#, 7, "\"type\" is missing"),
            (br#"{"cniVersion": "1.0.0", "name": "n", "type": "t", "capabilities": {"ips": "yes"}}"#, 7, "capability"),
            (br#"{"cniVersion": "1.0.0", "name": "n", "type": "t", "dns": {"nameservers": 1}}"#, 7, "dns"),
        ];
        for (input, code, needle) in cases {
            let err = NetConf::parse(input).unwrap_err();
            assert_eq!(err.code, code, "{}", String::from_utf8_lossy(input));
            assert!(
                err.msg.contains(needle),
                "{}: {}",
                String::from_utf8_lossy(input),
                err.msg
            );
        }
    }

    #[test]
    fn missing_version_means_0_1_0() {
        let conf = parse(json!({"name": "n", "type": "t"})).unwrap();
        assert_eq!(conf.cni_version, "0.1.0");
    }

    #[test]
    fn runtime_config_is_case_insensitive() {
        let conf = parse(json!({
            "cniVersion": "1.0.0", "name": "n", "type": "t",
            "runtimeConfig": {"portMappings": [{"HostPort": 80, "ContainerPort": 8080, "Protocol": "UDP"}]}
        }))
        .unwrap();
        let mapping = &conf.runtime_config.port_mappings[0];
        assert_eq!((mapping.host_port, mapping.container_port), (80, 8080));
        assert_eq!(mapping.protocol, crate::transport::Protocol::Udp);
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct BridgeFields {
        bridge: String,
        #[serde(default)]
        mtu: Option<u32>,
        #[serde(default)]
        is_gateway: bool,
    }

    #[test]
    fn plugin_fields_deserialize_from_raw() {
        let conf = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
                                "bridge": "br0", "mtu": 1400, "isGateway": true}))
        .unwrap();
        let fields: BridgeFields = conf.plugin_fields().unwrap();
        assert_eq!(fields.bridge, "br0");
        assert_eq!(fields.mtu, Some(1400));
        assert!(fields.is_gateway);
    }

    #[test]
    fn plugin_field_errors_name_the_field() {
        let wrong_type = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
                                      "bridge": "br0", "mtu": "big"}))
        .unwrap();
        let err = wrong_type.plugin_fields::<BridgeFields>().unwrap_err();
        assert_eq!(err.code, 7);
        assert!(err.msg.contains("invalid field \"mtu\""), "{}", err.msg);

        let missing = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "t"})).unwrap();
        let err = missing.plugin_fields::<BridgeFields>().unwrap_err();
        assert!(err.msg.contains("invalid field \"bridge\""), "{}", err.msg);
    }

    /// Issue 21: finding the bad field was quadratic in the number of keys (4000 extra keys took 4 s).
    /// 20000 keys and a bad one among them: found once, in one pass.
    #[test]
    fn the_bad_field_of_a_config_with_many_keys_is_found_in_linear_time() {
        let mut obj = serde_json::Map::new();
        for (k, v) in [
            ("cniVersion", "1.0.0"),
            ("name", "n"),
            ("type", "t"),
            ("bridge", "br0"),
        ] {
            obj.insert(k.into(), json!(v));
        }
        for i in 0..20000 {
            obj.insert(format!("extra{i:05}"), json!({"nested": [i, "x"]}));
        }
        obj.insert("mtu".into(), json!({"not": "a number"}));
        obj.insert("key \"quoted\"".into(), json!(1));
        let conf = parse(Value::Object(obj)).unwrap();
        let err = conf.plugin_fields::<BridgeFields>().unwrap_err();
        assert!(err.msg.contains("invalid field \"mtu\""), "{}", err.msg);
    }

    #[test]
    fn gc_attachments_from_either_key() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let mut value = json!({"cniVersion": "1.1.0", "name": "n", "type": "t"});
            value[key] = json!([{"containerID": "c1", "ifname": "eth0"}, {"containerid": "c2", "IfName": "net1"}]);
            let conf = parse(value).unwrap();
            assert_eq!(
                conf.valid_attachments(),
                vec![
                    Attachment {
                        container_id: "c1".into(),
                        ifname: "eth0".into()
                    },
                    Attachment {
                        container_id: "c2".into(),
                        ifname: "net1".into()
                    },
                ],
                "{key}"
            );
        }
        let bad = json!({"cniVersion": "1.1.0", "name": "n", "type": "t",
                         "cni.dev/valid-attachments": [{"containerID": "c1"}]});
        assert_eq!(parse(bad).unwrap_err().code, 7);
    }
}
