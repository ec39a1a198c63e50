//! One default route per container, as Docker does it: a container joining a second network keeps
//! the default route of its first. Without this the second bridge's `isDefaultGateway` (or an IPAM
//! default route) fails the ADD with "route exists". The adjusted configuration is what gets cached,
//! so DEL runs with exactly what ADD ran.

use serde_json::Value;

use crate::cni::runtime::NetworkConfigList;

fn is_default_dst(route: &Value, v4: bool, v6: bool) -> bool {
    match route.get("dst").and_then(Value::as_str) {
        Some("0.0.0.0/0") => v4,
        Some("::/0") => v6,
        _ => false,
    }
}

/// `net` with its default routes removed for the families the container already routes by default
/// (`v4`, `v6`); `None` when nothing had to change.
pub fn without_default_routes(
    net: &NetworkConfigList,
    v4: bool,
    v6: bool,
) -> Option<NetworkConfigList> {
    if !v4 && !v6 {
        return None;
    }
    let mut config: Value = serde_json::from_slice(&net.bytes).ok()?;
    let mut changed = false;
    for plugin in config.get_mut("plugins")?.as_array_mut()? {
        if plugin.get("isDefaultGateway").and_then(Value::as_bool) == Some(true) {
            plugin["isDefaultGateway"] = Value::Bool(false);
            // isDefaultGateway implied isGateway: keep the gateway on the bridge.
            plugin["isGateway"] = Value::Bool(true);
            changed = true;
        }
        if let Some(routes) = plugin
            .get_mut("ipam")
            .and_then(|ipam| ipam.get_mut("routes"))
            .and_then(Value::as_array_mut)
        {
            let before = routes.len();
            routes.retain(|r| !is_default_dst(r, v4, v6));
            changed |= routes.len() != before;
        }
    }
    if !changed {
        return None;
    }
    let bytes = serde_json::to_vec(&config).ok()?;
    NetworkConfigList::from_bytes(bytes, net.path.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetworkConfigList {
        NetworkConfigList::from_bytes(text.as_bytes().to_vec(), None).unwrap()
    }

    #[test]
    fn second_network_drops_its_default_routes() {
        let n = net(r#"{"cniVersion":"1.0.0","name":"b","plugins":[
            {"type":"tether-bridge","isDefaultGateway":true,
             "ipam":{"type":"tether-ipam","routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"},{"dst":"10.0.0.0/8"}]}},
            {"type":"tether-portmap"}]}"#);
        let out = without_default_routes(&n, true, false).unwrap();
        let main = &out.list.plugins[0];
        assert_eq!(main["isDefaultGateway"], false);
        assert_eq!(main["isGateway"], true);
        assert_eq!(
            main["ipam"]["routes"],
            serde_json::json!([{"dst": "::/0"}, {"dst": "10.0.0.0/8"}])
        );
        assert!(without_default_routes(&n, false, false).is_none());
        let plain = net(r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"x"}]}"#);
        assert!(without_default_routes(&plain, true, true).is_none());
    }
}
