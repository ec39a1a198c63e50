//! Reading CNI results of any version: 0.1.0/0.2.0 (`ip4`/`ip6` objects) and 0.3.0+ (`ips` list).

use serde_json::Value;

/// The container's addresses as "addr/prefix", whatever the result version.
pub fn addresses(result: &Value) -> Vec<String> {
    if let Some(ips) = result["ips"].as_array() {
        return ips
            .iter()
            .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
            .collect();
    }
    ["ip4", "ip6"]
        .iter()
        .filter_map(|k| result[*k]["ip"].as_str().map(str::to_owned))
        .collect()
}

/// The first address of one family ("4" or "6") without its prefix length.
pub fn ip(result: &Value, family: &str) -> String {
    addresses(result)
        .into_iter()
        .find(|a| (family == "6") == a.contains(':'))
        .map(|a| a.split('/').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no IPv{family} address in result {result}"))
}

/// The gateway given for the first address of one family, if any.
pub fn gateway(result: &Value, family: &str) -> Option<String> {
    if let Some(ips) = result["ips"].as_array() {
        return ips
            .iter()
            .find(|ip| (family == "6") == ip["address"].as_str().unwrap_or("").contains(':'))
            .and_then(|ip| ip["gateway"].as_str().map(str::to_owned));
    }
    result[format!("ip{family}")]["gateway"]
        .as_str()
        .map(str::to_owned)
}

/// Strips the prefix length: "10.1.0.2/24" -> "10.1.0.2".
pub fn bare(addr: &str) -> &str {
    addr.split('/').next().unwrap()
}
