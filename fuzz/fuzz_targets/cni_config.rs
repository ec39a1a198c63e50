//! Everything a runtime hands a plugin on stdin, in every CNI version: the network configuration, a
//! conflist, its runtimeConfig, its prevResult (and that result rendered back in every version), and the
//! plugin-field error path that names the culprit field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::cni::{CniResult, ConfList, NetConf, RuntimeConfig, SUPPORTED_VERSIONS};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct Fields {
    bridge: String,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    is_gateway: bool,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(conf) = NetConf::parse(data) {
        let _ = conf.plugin_fields::<Fields>();
        let _ = conf.valid_attachments();
    }
    let _ = ConfList::parse(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = RuntimeConfig::parse(Some(&value));
    let _ = RuntimeConfig::parse(value.get("runtimeConfig"));
    let results = [Some(&value), value.get("prevResult")];
    for v in results.into_iter().flatten() {
        if let Ok(result) = CniResult::from_json(v) {
            for version in SUPPORTED_VERSIONS {
                if let Ok(json) = result.to_json(version) {
                    let _ = CniResult::from_json(&json);
                }
            }
        }
    }
});
