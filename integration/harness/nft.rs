//! The host's nftables table `inet tether`, read with `nft -j` (fine in tests; never on a hot path).

use super::netns::NetNs;
use serde_json::Value;

pub const TABLE: &[&str] = &["inet", "tether"];

/// `nft -j list table inet tether` in `ns`; None when the table does not exist.
pub fn table(ns: &NetNs) -> Option<Value> {
    let out = ns.exec(&["nft", "-j", "list", "table", TABLE[0], TABLE[1]]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The objects of the table (`{"set": {...}}`, `{"chain": {...}}`, ...), without metainfo.
pub fn objects(ns: &NetNs) -> Vec<Value> {
    table(ns)
        .and_then(|t| t["nftables"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.get("metainfo").is_none())
        .collect()
}

/// Every element of every set and map in the table, flattened to the strings it contains
/// (plain addresses, prefixes' addresses, concatenation parts).
pub fn set_elements(ns: &NetNs) -> Vec<String> {
    let mut out = Vec::new();
    for o in objects(ns) {
        for kind in ["set", "map"] {
            if let Some(elems) = o[kind]["elem"].as_array() {
                for e in elems {
                    collect_strings(e, &mut out);
                }
            }
        }
    }
    out
}

/// True when some set or map element of the table is (or contains) `ip`.
pub fn has_element(ns: &NetNs, ip: &str) -> bool {
    set_elements(ns).iter().any(|e| e == ip)
}

/// Names of the table's chains, sets and maps that mention `network` (case-insensitive).
pub fn objects_named_for(ns: &NetNs, network: &str) -> Vec<String> {
    let needle = network.to_lowercase();
    objects(ns)
        .iter()
        .flat_map(|o| ["chain", "set", "map"].map(|k| o[k]["name"].as_str().map(str::to_owned)))
        .flatten()
        .filter(|n| n.to_lowercase().contains(&needle))
        .collect()
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}
