//! The result of an ADD, modelled once in the 1.1.0 shape and rendered to or
//! read from the JSON of every spec version (0.1.0 through 1.1.0).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{CniError, ErrorCode};
use super::version::{self, Version};

/// What an ADD (or an IPAM plugin) reports, independent of the spec version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// 1.1.0 only.
    pub mtu: Option<u32>,
    /// The netns path for container-side interfaces; `None` on the host.
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with the prefix length of its subnet, e.g. 10.88.0.5/16.
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; IPAM plugins leave it out.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    /// `mtu`, `advmss`, `priority`, `table`, `scope`: 1.1.0 only.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
}

impl Route {
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings of a result or of a network configuration. Nameservers stay
/// strings: the spec says "IPv4 or IPv6 address" but runtimes pass them on
/// to resolv.conf untouched, and refusing e.g. a zone index would break ADDs
/// the reference plugins accept.
///
/// Every entry becomes a word of a line in the container's resolv.conf, so a control character (a
/// newline above all) is refused here: it would add lines of the sender's choosing to that file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "resolv_conf_words"
    )]
    pub nameservers: Vec<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "resolv_conf_word"
    )]
    pub domain: Option<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "resolv_conf_words"
    )]
    pub search: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "resolv_conf_words"
    )]
    pub options: Vec<String>,
}

/// The first control character of `text`, if any (what may never reach a line-based file).
pub fn control_char(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

fn checked_word<E: serde::de::Error>(word: String) -> Result<String, E> {
    match control_char(&word) {
        Some(c) => Err(E::custom(format!(
            "{word:?} holds the control character {c:?}; resolv.conf entries are single words"
        ))),
        None => Ok(word),
    }
}

fn resolv_conf_words<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(checked_word)
        .collect()
}

fn resolv_conf_word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(checked_word)
        .transpose()
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }

    fn from_value(value: &Value) -> Result<Dns, CniError> {
        Dns::deserialize(value).map_err(|err| decode_error(format!("invalid \"dns\": {err}")))
    }
}

const V0_3_0: Version = Version::new(0, 3, 0);

impl CniResult {
    /// Renders the JSON of spec `version`, leaving out what that version
    /// lacks. Empty lists are left out and `dns` is always present, which is
    /// what the reference plugins print.
    pub fn to_json(&self, version: &str) -> Result<Value, CniError> {
        if !version::is_supported(version) {
            return Err(version::incompatible(version));
        }
        let parsed = Version::parse(version)?;
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::String(version.to_string()));
        if parsed < V0_3_0 {
            self.render_legacy(&mut out);
        } else {
            self.render_current(parsed, &mut out);
        }
        out.insert("dns".into(), self.dns.to_value());
        Ok(Value::Object(out))
    }

    /// 0.1.0/0.2.0: one `ip4` and one `ip6` object, routes inside them. Only
    /// the first address of each family fits; interfaces do not exist.
    fn render_legacy(&self, out: &mut Map<String, Value>) {
        for (key, want_v4) in [("ip4", true), ("ip6", false)] {
            let Some(ip) = self.ips.iter().find(|ip| ip.address.is_ipv4() == want_v4) else {
                continue;
            };
            let mut family = Map::new();
            family.insert("ip".into(), Value::String(ip.address.to_string()));
            if let Some(gateway) = ip.gateway {
                family.insert("gateway".into(), Value::String(gateway.to_string()));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|route| route.dst.is_ipv4() == want_v4)
                .map(|route| route_json(route, false))
                .collect();
            if !routes.is_empty() {
                family.insert("routes".into(), Value::Array(routes));
            }
            out.insert(key.into(), Value::Object(family));
        }
    }

    fn render_current(&self, version: Version, out: &mut Map<String, Value>) {
        let rich = version >= Version::V1_1_0;
        if !self.interfaces.is_empty() {
            let list = self
                .interfaces
                .iter()
                .map(|iface| interface_json(iface, rich))
                .collect();
            out.insert("interfaces".into(), Value::Array(list));
        }
        if !self.ips.is_empty() {
            // 0.3.x/0.4.0 tag each address with its family; 1.0.0 dropped it.
            let tag_family = version < Version::V1_0_0;
            let list = self
                .ips
                .iter()
                .map(|ip| {
                    let mut obj = Map::new();
                    if tag_family {
                        let family = if ip.address.is_ipv4() { "4" } else { "6" };
                        obj.insert("version".into(), Value::String(family.into()));
                    }
                    if let Some(index) = ip.interface {
                        obj.insert("interface".into(), json!(index));
                    }
                    obj.insert("address".into(), Value::String(ip.address.to_string()));
                    if let Some(gateway) = ip.gateway {
                        obj.insert("gateway".into(), Value::String(gateway.to_string()));
                    }
                    Value::Object(obj)
                })
                .collect();
            out.insert("ips".into(), Value::Array(list));
        }
        if !self.routes.is_empty() {
            let list = self
                .routes
                .iter()
                .map(|route| route_json(route, rich))
                .collect();
            out.insert("routes".into(), Value::Array(list));
        }
    }

    /// Reads a result (or a `prevResult`) of any version. The shape decides
    /// when `cniVersion` is missing: `ip4`/`ip6` objects mean 0.1.0/0.2.0.
    pub fn from_json(value: &Value) -> Result<CniResult, CniError> {
        let obj = value
            .as_object()
            .ok_or_else(|| decode_error("a CNI result must be a JSON object".to_string()))?;
        let version = match obj.get("cniVersion") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(Version::parse(text)?),
            Some(other) => {
                return Err(decode_error(format!(
                    "invalid \"cniVersion\" {other}: expected a string"
                )))
            }
        };
        let legacy = match version {
            Some(v) => v < V0_3_0,
            None => {
                !obj.contains_key("ips")
                    && !obj.contains_key("interfaces")
                    && (obj.contains_key("ip4") || obj.contains_key("ip6"))
            }
        };
        let mut result = if legacy {
            parse_legacy(obj)?
        } else {
            parse_current(obj)?
        };
        if let Some(dns) = obj.get("dns").filter(|v| !v.is_null()) {
            result.dns = Dns::from_value(dns)?;
        }
        Ok(result)
    }
}

fn interface_json(iface: &Interface, rich: bool) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), Value::String(iface.name.clone()));
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(text) = value.as_ref().filter(|t| !t.is_empty()) {
            obj.insert(key.into(), Value::String(text.clone()));
        }
    };
    put("mac", &iface.mac);
    put("sandbox", &iface.sandbox);
    if rich {
        put("socketPath", &iface.socket_path);
        put("pciID", &iface.pci_id);
        if let Some(mtu) = iface.mtu.filter(|m| *m != 0) {
            obj.insert("mtu".into(), json!(mtu));
        }
    }
    Value::Object(obj)
}

fn route_json(route: &Route, rich: bool) -> Value {
    let mut obj = Map::new();
    obj.insert("dst".into(), Value::String(route.dst.to_string()));
    if let Some(gw) = route.gw {
        obj.insert("gw".into(), Value::String(gw.to_string()));
    }
    if rich {
        // libcni leaves zero mtu/advmss/priority out; table and scope are
        // pointers there, so an explicit 0 is kept.
        for (key, value) in [
            ("mtu", route.mtu),
            ("advmss", route.advmss),
            ("priority", route.priority),
        ] {
            if let Some(number) = value.filter(|n| *n != 0) {
                obj.insert(key.into(), json!(number));
            }
        }
        if let Some(table) = route.table {
            obj.insert("table".into(), json!(table));
        }
        if let Some(scope) = route.scope {
            obj.insert("scope".into(), json!(scope));
        }
    }
    Value::Object(obj)
}

fn decode_error(msg: String) -> CniError {
    CniError::new(ErrorCode::Decode, msg)
        .with_details("the result or prevResult does not follow the CNI spec for its cniVersion")
}

fn parse_legacy(obj: &Map<String, Value>) -> Result<CniResult, CniError> {
    let mut result = CniResult::default();
    for key in ["ip4", "ip6"] {
        let Some(family) = obj.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let family = family
            .as_object()
            .ok_or_else(|| decode_error(format!("\"{key}\" must be an object")))?;
        let ctx = key;
        let address = cidr(required_str(family, "ip", ctx)?, ctx, "ip")?;
        let gateway = optional_ip(family, "gateway", ctx)?;
        result.ips.push(IpConfig {
            address,
            gateway,
            interface: None,
        });
        for route in optional_array(family, "routes", ctx)? {
            result
                .routes
                .push(parse_route(route, &format!("{key}.routes"))?);
        }
    }
    Ok(result)
}

fn parse_current(obj: &Map<String, Value>) -> Result<CniResult, CniError> {
    let mut result = CniResult::default();
    for entry in optional_array(obj, "interfaces", "result")? {
        let ctx = "interfaces[]";
        let iface = entry
            .as_object()
            .ok_or_else(|| decode_error("each of \"interfaces\" must be an object".into()))?;
        result.interfaces.push(Interface {
            name: required_str(iface, "name", ctx)?.to_string(),
            mac: optional_str(iface, "mac", ctx)?,
            mtu: optional_u32(iface, "mtu", ctx)?,
            sandbox: optional_str(iface, "sandbox", ctx)?,
            socket_path: optional_str(iface, "socketPath", ctx)?,
            pci_id: optional_str(iface, "pciID", ctx)?,
        });
    }
    for entry in optional_array(obj, "ips", "result")? {
        let ctx = "ips[]";
        let ip = entry
            .as_object()
            .ok_or_else(|| decode_error("each of \"ips\" must be an object".into()))?;
        let address = cidr(required_str(ip, "address", ctx)?, ctx, "address")?;
        // 0.3.x/0.4.0 carry the family; it must agree with the address.
        if let Some(family) = optional_str(ip, "version", ctx)? {
            let expected = if address.is_ipv4() { "4" } else { "6" };
            if family != expected {
                return Err(decode_error(format!(
                    "ips[] entry {address} says \"version\": \"{family}\" but is IPv{expected}"
                )));
            }
        }
        let interface = match ip.get("interface") {
            None | Some(Value::Null) => None,
            Some(index) => {
                let index = index.as_u64().ok_or_else(|| {
                    decode_error(format!(
                        "ips[] entry {address}: \"interface\" must be a non-negative index"
                    ))
                })? as usize;
                if index >= result.interfaces.len() {
                    return Err(decode_error(format!(
                        "ips[] entry {address} points at interface {index}, but the result lists {} interfaces",
                        result.interfaces.len()
                    )));
                }
                Some(index)
            }
        };
        result.ips.push(IpConfig {
            address,
            gateway: optional_ip(ip, "gateway", ctx)?,
            interface,
        });
    }
    for entry in optional_array(obj, "routes", "result")? {
        result.routes.push(parse_route(entry, "routes")?);
    }
    Ok(result)
}

fn parse_route(value: &Value, ctx: &str) -> Result<Route, CniError> {
    let obj = value
        .as_object()
        .ok_or_else(|| decode_error(format!("each of \"{ctx}\" must be an object")))?;
    let scope = match optional_u32(obj, "scope", ctx)? {
        None => None,
        Some(scope) => Some(u8::try_from(scope).map_err(|_| {
            decode_error(format!("{ctx}: \"scope\" {scope} is out of range 0-255"))
        })?),
    };
    Ok(Route {
        dst: cidr(required_str(obj, "dst", ctx)?, ctx, "dst")?,
        gw: optional_ip(obj, "gw", ctx)?,
        mtu: optional_u32(obj, "mtu", ctx)?,
        advmss: optional_u32(obj, "advmss", ctx)?,
        priority: optional_u32(obj, "priority", ctx)?,
        table: optional_u32(obj, "table", ctx)?,
        scope,
    })
}

/// Parses `addr/prefix` strictly: the prefix is required and numeric (the
/// ipnetwork crate would also take a bare address or a dotted netmask).
pub(crate) fn parse_cidr(text: &str) -> Option<IpNetwork> {
    let (_, prefix) = text.split_once('/')?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn cidr(text: &str, ctx: &str, key: &str) -> Result<IpNetwork, CniError> {
    parse_cidr(text).ok_or_else(|| {
        decode_error(format!(
            "{ctx}: \"{key}\" \"{text}\" is not an address with prefix length (CIDR)"
        ))
    })
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<&'a str, CniError> {
    match obj.get(key) {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Err(decode_error(format!("{ctx}: \"{key}\" is missing"))),
        Some(other) => Err(decode_error(format!(
            "{ctx}: \"{key}\" must be a string, got {other}"
        ))),
    }
}

fn optional_str(
    obj: &Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(decode_error(format!(
            "{ctx}: \"{key}\" must be a string, got {other}"
        ))),
    }
}

fn optional_ip(obj: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<IpAddr>, CniError> {
    match optional_str(obj, key, ctx)? {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| decode_error(format!("{ctx}: \"{key}\" \"{text}\" is not an IP address"))),
    }
}

fn optional_u32(obj: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<u32>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                decode_error(format!(
                    "{ctx}: \"{key}\" must be a non-negative integer, got {value}"
                ))
            }),
    }
}

fn optional_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<&'a [Value], CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(decode_error(format!(
            "{ctx}: \"{key}\" must be a list, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn testdata(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/cni")
            .join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A dual-stack bridge ADD: host veth + container eth0, two IPv4
    /// addresses (the second can't be said in 0.2.0), one IPv6, rich routes.
    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "tv1a2b3c".into(),
                    mac: Some("0a:58:0a:58:00:01".into()),
                    mtu: Some(1500),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("0a:58:0a:58:00:05".into()),
                    mtu: Some(1500),
                    sandbox: Some("/run/netns/c1".into()),
                    socket_path: Some("/run/vhost.sock".into()),
                    pci_id: Some("0000:00:1f.6".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.88.0.5/16".parse().unwrap(),
                    gateway: Some("10.88.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "10.99.0.5/24".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: Some("fd00::1".parse().unwrap()),
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route {
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(100),
                    table: Some(0),
                    scope: Some(0),
                    ..Route::new(
                        "0.0.0.0/0".parse().unwrap(),
                        Some("10.88.0.1".parse().unwrap()),
                    )
                },
                Route::new("::/0".parse().unwrap(), None),
            ],
            dns: Dns {
                nameservers: vec!["10.88.0.1".into()],
                domain: None,
                search: vec!["example.org".into()],
                options: vec![],
            },
        }
    }

    #[test]
    fn renders_each_version_exactly() {
        for (version, file) in [
            ("0.1.0", "result-0.1.0.json"),
            ("0.2.0", "result-0.2.0.json"),
            ("0.3.0", "result-0.3.0.json"),
            ("0.3.1", "result-0.3.1.json"),
            ("0.4.0", "result-0.4.0.json"),
            ("1.0.0", "result-1.0.0.json"),
            ("1.1.0", "result-1.1.0.json"),
        ] {
            assert_eq!(
                sample().to_json(version).unwrap(),
                testdata(file),
                "version {version}"
            );
        }
    }

    #[test]
    fn refuses_unknown_version() {
        let err = sample().to_json("0.5.0").unwrap_err();
        assert_eq!(err.code, 1);
    }

    #[test]
    fn empty_result_keeps_only_dns() {
        assert_eq!(
            CniResult::default().to_json("1.0.0").unwrap(),
            json!({"cniVersion": "1.0.0", "dns": {}})
        );
        assert_eq!(
            CniResult::default().to_json("0.2.0").unwrap(),
            json!({"cniVersion": "0.2.0", "dns": {}})
        );
    }

    #[test]
    fn reads_back_the_1_1_0_rendering_losslessly() {
        let value = sample().to_json("1.1.0").unwrap();
        assert_eq!(CniResult::from_json(&value).unwrap(), sample());
    }

    #[test]
    fn reads_every_version_sample() {
        let full = sample();
        let mut plain = full.clone();
        for iface in &mut plain.interfaces {
            iface.mtu = None;
            iface.socket_path = None;
            iface.pci_id = None;
        }
        plain.routes[0] = Route::new(full.routes[0].dst, full.routes[0].gw);
        let mut legacy = CniResult {
            interfaces: vec![],
            ips: vec![full.ips[0].clone(), full.ips[2].clone()],
            routes: plain.routes.clone(),
            dns: full.dns.clone(),
        };
        for ip in &mut legacy.ips {
            ip.interface = None;
        }
        for (file, expected) in [
            ("result-0.1.0.json", &legacy),
            ("result-0.2.0.json", &legacy),
            ("result-0.3.0.json", &plain),
            ("result-0.3.1.json", &plain),
            ("result-0.4.0.json", &plain),
            ("result-1.0.0.json", &plain),
            ("result-1.1.0.json", &full),
        ] {
            assert_eq!(
                &CniResult::from_json(&testdata(file)).unwrap(),
                expected,
                "{file}"
            );
        }
    }

    #[test]
    fn reads_reference_ipam_output() {
        // What Debian's host-local 1.1.1 prints for cniVersion 0.4.0.
        let parsed = CniResult::from_json(&testdata("host-local-0.4.0.json")).unwrap();
        assert!(parsed.interfaces.is_empty());
        assert_eq!(parsed.ips.len(), 1);
        assert_eq!(parsed.ips[0].address.to_string(), "10.22.0.2/16");
        assert_eq!(parsed.ips[0].gateway, Some("10.22.0.1".parse().unwrap()));
        assert_eq!(
            parsed.routes,
            vec![Route::new("0.0.0.0/0".parse().unwrap(), None)]
        );
    }

    #[test]
    fn detects_legacy_shape_without_version() {
        let value = json!({"ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1"}});
        let parsed = CniResult::from_json(&value).unwrap();
        assert_eq!(parsed.ips[0].address.to_string(), "10.1.0.2/24");
    }

    /// Issue 21: a search entry holding a newline wrote extra lines into the container's resolv.conf.
    #[test]
    fn refuses_control_characters_in_dns_entries() {
        for dns in [
            json!({"search": ["ok.example", "evil\nnameserver 6.6.6.6"]}),
            json!({"nameservers": ["10.0.0.1\r"]}),
            json!({"domain": "a\u{0}b"}),
            json!({"options": ["ndots:1\n"]}),
        ] {
            let err =
                CniResult::from_json(&json!({"cniVersion": "1.0.0", "dns": dns})).unwrap_err();
            assert!(err.msg.contains("control character"), "{}", err.msg);
        }
        let fine = json!({"cniVersion": "1.0.0", "dns": {"search": ["a.example"], "domain": "d"}});
        assert!(CniResult::from_json(&fine).is_ok());
    }

    #[test]
    fn refuses_malformed_results() {
        for (value, needle) in [
            (json!([1]), "JSON object"),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}),
                "CIDR",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/255.0.0.0"}]}),
                "CIDR",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/8", "interface": 0}]}),
                "interface 0",
            ),
            (
                json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/8"}]}),
                "\"version\"",
            ),
            (
                json!({"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]}),
                "\"dst\" is missing",
            ),
            (
                json!({"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0", "scope": 300}]}),
                "scope",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]}),
                "\"name\"",
            ),
            (
                json!({"cniVersion": "1.0.0", "dns": {"nameservers": "x"}}),
                "dns",
            ),
            (
                json!({"cniVersion": "0.2.0", "ip4": {"gateway": "10.0.0.1"}}),
                "\"ip\"",
            ),
            (json!({"cniVersion": "one"}), "cniVersion"),
        ] {
            let err = CniResult::from_json(&value).unwrap_err();
            assert_eq!(err.code, 6, "{value}");
            assert!(err.msg.contains(needle), "{value}: {}", err.msg);
        }
    }
}
