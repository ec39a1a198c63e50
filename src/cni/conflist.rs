//! Network configuration lists (spec section 1) and how a runtime turns one
//! entry into the stdin of one plugin (spec section 3, "Deriving execution
//! configuration from plugin configuration").

use serde_json::{Map, Value};

use super::config::validated_network_name;
use super::error::{CniError, ErrorCode};
use super::version::{self, Version};

#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    /// The version the runtime uses with every plugin of the list.
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Plugin configuration objects, each with a non-empty `type`.
    pub plugins: Vec<Value>,
}

impl ConfList {
    pub fn parse(bytes: &[u8]) -> Result<ConfList, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|err| {
            CniError::new(
                ErrorCode::Decode,
                format!("cannot decode the network configuration list: {err}"),
            )
        })?;
        let obj = raw.as_object().ok_or_else(|| {
            CniError::new(
                ErrorCode::Decode,
                "the network configuration list is not a JSON object",
            )
        })?;
        let name = validated_network_name(obj.get("name"))?;
        let cni_version = pick_version(obj, &name)?;
        let flag = |key: &str| -> Result<bool, CniError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(on)) => Ok(*on),
                // libcni also accepts the strings "true"/"false" here.
                Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
                Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
                Some(other) => Err(invalid(format!(
                    "network \"{name}\": \"{key}\" must be true or false, got {other}"
                ))),
            }
        };
        let disable_check = flag("disableCheck")?;
        let disable_gc = flag("disableGC")?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(items)) if !items.is_empty() => items.clone(),
            _ => {
                return Err(invalid(format!(
                    "network \"{name}\": \"plugins\" is missing or empty"
                ))
                .with_details("a configuration list needs a non-empty \"plugins\" list"))
            }
        };
        for (index, plugin) in plugins.iter().enumerate() {
            match plugin.get("type") {
                Some(Value::String(kind)) if !kind.is_empty() && !kind.contains('/') => {}
                _ => {
                    return Err(invalid(format!(
                        "network \"{name}\": plugins[{index}] has no valid \"type\""
                    ))
                    .with_details("\"type\" is the plugin's executable name, without '/'"))
                }
            }
        }
        Ok(ConfList {
            cni_version,
            name,
            disable_check,
            disable_gc,
            plugins,
        })
    }

    /// The `type` of plugin `index`.
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]["type"].as_str().unwrap_or_default()
    }

    /// The stdin for plugin `index` (panics when out of range, like slice
    /// indexing): its own object plus the list's `name` and `cniVersion`, the
    /// previous plugin's result, and `runtimeConfig` holding only the
    /// capabilities the plugin declares `true` and the runtime has data for.
    pub fn plugin_conf(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        runtime_config: &Value,
    ) -> Value {
        let mut conf = match &self.plugins[index] {
            Value::Object(obj) => obj.clone(),
            _ => Map::new(),
        };
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(result) = prev_result {
            conf.insert("prevResult".into(), result.clone());
        }
        let mut filtered = Map::new();
        if let Some(Value::Object(capabilities)) = conf.get("capabilities") {
            for (capability, enabled) in capabilities {
                if enabled.as_bool() != Some(true) {
                    continue;
                }
                if let Some(data) = runtime_config.get(capability) {
                    filtered.insert(capability.clone(), data.clone());
                }
            }
        }
        // Like libcni, a `runtimeConfig` (or `prevResult`) written in the file
        // survives unless the runtime has something to put in its place.
        if !filtered.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(filtered));
        }
        Value::Object(conf)
    }
}

fn invalid(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg)
}

/// Spec 1.1 "Version considerations": `cniVersions` lists every version the
/// file is valid for; use the newest one we speak, else `cniVersion`.
fn pick_version(obj: &Map<String, Value>, name: &str) -> Result<String, CniError> {
    if let Some(Value::Array(listed)) = obj.get("cniVersions") {
        let best = listed
            .iter()
            .filter_map(Value::as_str)
            .filter(|text| version::is_supported(text))
            .filter_map(|text| Version::parse(text).ok().map(|v| (v, text)))
            .max();
        if let Some((_, text)) = best {
            return Ok(text.to_string());
        }
    }
    match obj.get("cniVersion") {
        Some(Value::String(text)) if version::is_supported(text) => Ok(text.clone()),
        Some(Value::String(text)) => Err(version::incompatible(text)),
        None | Some(Value::Null) => Err(invalid(format!(
            "network \"{name}\": \"cniVersion\" is missing"
        ))
        .with_details(format!(
            "set it to one of {}",
            version::SUPPORTED_VERSIONS.join(", ")
        ))),
        Some(other) => Err(CniError::new(
            ErrorCode::Decode,
            format!("network \"{name}\": \"cniVersion\" must be a string, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ConfList {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cni/chain.conflist");
        ConfList::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn parses_a_chain() {
        let list = sample();
        assert_eq!(list.name, "web");
        assert_eq!(list.cni_version, "1.0.0");
        assert!(list.disable_check);
        assert!(!list.disable_gc);
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugin_type(1), "tether-portmap");
    }

    #[test]
    fn plugin_conf_injects_and_filters_capabilities() {
        let list = sample();
        let runtime = json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1},
            "ips": ["10.0.0.9/24"]
        });
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/16"}]});

        // The bridge declares no capabilities: nothing of runtimeConfig.
        let first = list.plugin_conf(0, None, &runtime);
        assert_eq!(
            first,
            json!({"type": "tether-bridge", "bridge": "tether0", "name": "web", "cniVersion": "1.0.0",
                   "ipam": {"type": "tether-ipam", "subnet": "10.88.0.0/16"}})
        );

        // portmap declares portMappings (true) and bandwidth (false).
        let second = list.plugin_conf(1, Some(&prev), &runtime);
        assert_eq!(
            second,
            json!({"type": "tether-portmap", "name": "web", "cniVersion": "1.0.0",
                   "capabilities": {"portMappings": true, "bandwidth": false},
                   "prevResult": prev,
                   "runtimeConfig": {"portMappings": runtime["portMappings"]}})
        );

        // No data for the declared capability: the file's own runtimeConfig
        // stays, as libcni leaves it.
        let bare = list.plugin_conf(1, None, &json!({}));
        assert_eq!(
            bare["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 1, "containerPort": 1}]})
        );
        assert!(bare.get("prevResult").is_none());
    }

    #[test]
    fn cni_versions_pick_the_newest_supported() {
        let list = ConfList::parse(
            br#"{"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0", "9.0.0"], "name": "n",
                 "plugins": [{"type": "t"}]}"#,
        )
        .unwrap();
        assert_eq!(list.cni_version, "1.1.0");
    }

    #[test]
    fn bad_lists_are_refused() {
        let cases: [(&[u8], u32); 7] = [
            (b"nope", 6),
            (br#"{"cniVersion": "1.0.0", "plugins": [{"type": "t"}]}"#, 7),
            (br#"{"cniVersion": "1.0.0", "name": "n", "plugins": []}"#, 7),
            (
                br#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"bridge": "x"}]}"#,
                7,
            ),
            (
                br#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../evil"}]}"#,
                7,
            ),
            (
                br#"{"cniVersion": "2.0.0", "name": "n", "plugins": [{"type": "t"}]}"#,
                1,
            ),
            (br#"{"name": "n", "plugins": [{"type": "t"}]}"#, 7),
        ];
        for (input, code) in cases {
            let err = ConfList::parse(input).unwrap_err();
            assert_eq!(err.code, code, "{}: {err}", String::from_utf8_lossy(input));
        }
    }
}
