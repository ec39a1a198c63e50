//! Other tables' forward chains that drop what tether forwards: by policy (Docker's `ip filter FORWARD`) or
//! by a catch-all rule under an accept policy (firewalld's `reject` at the end of its forward chain); and
//! whether the rules that let tether's bridges through (device group 7447, docs/plugins/bridge.md) are
//! already there. Read-only: `nft list` and `iptables-save` print, they change nothing.

use std::net::IpAddr;
use std::process::Command;

use serde_json::Value;

use crate::firewall::{FirewallError, ForeignForwardDrop};
use crate::link::TETHER_BRIDGE_GROUP;

/// tether's own table, `inet tether` (docs/design.md §3).
const TETHER_TABLE: &str = "tether";

/// A forward chain that drops tether's traffic, and whether its table already admits tether's device group
/// both ways.
pub struct ForwardDrop {
    pub chain: ForeignForwardDrop,
    /// The catch-all rule (`reject # handle 3`); `None` when it is the chain's policy.
    pub catch_all: Option<String>,
    pub admits_tether: bool,
}

impl ForwardDrop {
    /// What drops, in words.
    pub fn describe(&self) -> String {
        let c = &self.chain;
        match &self.catch_all {
            None => format!("chain {} of table {} {} has policy drop at the forward hook", c.chain, c.family, c.table),
            Some(rule) => format!(
                "chain {} of table {} {} ends in `{rule}`, which drops every forwarded packet no earlier rule accepted",
                c.chain, c.family, c.table
            ),
        }
    }
}

pub fn forward_drops() -> Result<Vec<ForwardDrop>, FirewallError> {
    let fw = crate::firewall::Firewall::open()?;
    let mut out: Vec<ForwardDrop> = fw
        .foreign_forward_drops()?
        .into_iter()
        .map(|chain| ForwardDrop {
            admits_tether: admits_tether(&chain),
            catch_all: None,
            chain,
        })
        .collect();
    out.extend(
        catch_all_drops()
            .into_iter()
            .map(|(chain, rule)| ForwardDrop {
                admits_tether: admits_tether(&chain),
                catch_all: Some(rule),
                chain,
            }),
    );
    Ok(out)
}

fn static_family(name: &str) -> Option<&'static str> {
    ["ip", "ip6", "inet"].into_iter().find(|f| *f == name)
}

/// Every rule of other tables' forward base chains, as `nft -j list ruleset` shows them.
fn foreign_forward_rules() -> Vec<(ForeignForwardDrop, Value)> {
    let text = output("nft", &["-j", "list", "ruleset"]);
    let Ok(ruleset) = serde_json::from_str::<Value>(&text) else {
        return Vec::new();
    };
    let objects = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    let forward_chains: Vec<(String, String, String)> = objects
        .iter()
        .filter_map(|o| o.get("chain"))
        .filter(|c| c["hook"] == "forward")
        .filter_map(|c| {
            Some((
                c["family"].as_str()?.into(),
                c["table"].as_str()?.into(),
                c["name"].as_str()?.into(),
            ))
        })
        .filter(|(family, table, _)| !(family == "inet" && table == TETHER_TABLE))
        .collect();
    let mut out = Vec::new();
    for rule in objects.iter().filter_map(|o| o.get("rule")) {
        let (Some(family), Some(table), Some(chain)) = (
            rule["family"].as_str(),
            rule["table"].as_str(),
            rule["chain"].as_str(),
        ) else {
            continue;
        };
        let Some(family) = static_family(family) else {
            continue;
        };
        if !forward_chains.contains(&(family.into(), table.into(), chain.into())) {
            continue;
        }
        let chain = ForeignForwardDrop {
            family,
            table: table.into(),
            chain: chain.into(),
        };
        out.push((chain, rule.clone()));
    }
    out
}

/// The statement keys of a rule (`match`, `counter`, `drop`, ...) and its drop or reject verdict, if any.
fn verdict_of(rule: &Value) -> (Vec<String>, Option<&'static str>) {
    let keys: Vec<String> = rule["expr"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_object()?.keys().next().cloned())
        .collect();
    let verdict = keys.iter().find_map(|k| match k.as_str() {
        "drop" => Some("drop"),
        "reject" => Some("reject"),
        _ => None,
    });
    (keys, verdict)
}

/// Rules of other tables' forward base chains that drop or reject with no match at all (a counter or a log
/// at most).
fn catch_all_drops() -> Vec<(ForeignForwardDrop, String)> {
    foreign_forward_rules()
        .into_iter()
        .filter_map(|(chain, rule)| {
            let (keys, verdict) = verdict_of(&rule);
            let only_bookkeeping = keys
                .iter()
                .all(|k| matches!(k.as_str(), "drop" | "reject" | "counter" | "log"));
            let verdict = verdict.filter(|_| only_bookkeeping)?;
            Some((chain, format!("{verdict} # handle {}", rule["handle"])))
        })
        .collect()
}

/// A narrower rule of another table's forward chain that drops or rejects traffic of tether's containers:
/// it matches their addresses as source or destination.
pub struct ShadowingRule {
    pub chain: ForeignForwardDrop,
    /// `drop # handle 4`.
    pub rule: String,
    /// The containers (name or id, address) it matches.
    pub containers: Vec<(String, IpAddr)>,
    pub admits_tether: bool,
}

/// Drop or reject rules in other tables' forward chains that match the address of one of `containers`.
pub fn shadowing_rules(containers: &[(String, IpAddr)]) -> Vec<ShadowingRule> {
    let mut out = Vec::new();
    for (chain, rule) in foreign_forward_rules() {
        let (_, Some(verdict)) = verdict_of(&rule) else {
            continue;
        };
        let hit: Vec<(String, IpAddr)> = containers
            .iter()
            .filter(|(_, ip)| rule_matches_address(&rule, *ip))
            .cloned()
            .collect();
        if hit.is_empty() {
            continue;
        }
        out.push(ShadowingRule {
            admits_tether: admits_tether(&chain),
            rule: format!("{verdict} # handle {}", rule["handle"]),
            chain,
            containers: hit,
        });
    }
    out
}

/// Whether one of the rule's `ip/ip6 saddr/daddr ==` matches takes `ip` (a plain address, a prefix, a range
/// or an anonymous set of those).
fn rule_matches_address(rule: &Value, ip: IpAddr) -> bool {
    rule["expr"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("match"))
        .filter(|m| matches!(m["op"].as_str(), None | Some("==") | Some("in")))
        .filter(|m| {
            let payload = &m["left"]["payload"];
            matches!(payload["field"].as_str(), Some("saddr" | "daddr"))
                && matches!(payload["protocol"].as_str(), Some("ip" | "ip6"))
        })
        .any(|m| address_in(&m["right"], ip))
}

fn address_in(right: &Value, ip: IpAddr) -> bool {
    if let Some(text) = right.as_str() {
        return text.parse::<IpAddr>().is_ok_and(|a| a == ip);
    }
    if let Some(prefix) = right.get("prefix") {
        let net = prefix["addr"]
            .as_str()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .zip(prefix["len"].as_u64())
            .and_then(|(a, len)| ipnetwork::IpNetwork::new(a, len as u8).ok());
        return net.is_some_and(|n| n.contains(ip));
    }
    if let Some([low, high]) = right
        .get("range")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        let parse = |v: &Value| v.as_str().and_then(|a| a.parse::<IpAddr>().ok());
        return matches!((parse(low), parse(high)), (Some(l), Some(h)) if l <= ip && ip <= h);
    }
    if let Some(set) = right.get("set").and_then(Value::as_array) {
        return set.iter().any(|v| address_in(v, ip));
    }
    false
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Both directions accepted for the group: as nft rules (`meta iifgroup`/`oifgroup`) or, for a table
/// iptables manages, as `-m devgroup` matches (nft shows those only as an opaque `xt match`).
fn admits_tether(chain: &ForeignForwardDrop) -> bool {
    let g = TETHER_BRIDGE_GROUP;
    let hex = format!("0x{g:x}");
    let nft = output("nft", &["list", "table", chain.family, &chain.table]);
    let names = |dir: &str| {
        nft.lines()
            .any(|l| l.contains(&format!("{dir} {g}")) && l.contains("accept"))
    };
    if names("iifgroup") && names("oifgroup") {
        return true;
    }
    let save = match chain.family {
        "ip" => "iptables-save",
        "ip6" => "ip6tables-save",
        _ => return false,
    };
    let rules = output(save, &["-t", &chain.table]);
    let has = |flag: &str| {
        rules.lines().any(|l| {
            l.contains(flag)
                && (l.contains(&format!("{flag} {hex}")) || l.contains(&format!("{flag} {g}")))
                && l.contains("-j ACCEPT")
        })
    };
    has("--src-group") && has("--dst-group")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(right: Value, op: &str) -> Value {
        json!({"expr": [
            {"match": {"op": op, "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": right}},
            {"drop": null}
        ]})
    }

    #[test]
    fn an_address_match_takes_addresses_prefixes_ranges_and_sets() {
        let ip: IpAddr = "10.86.0.5".parse().unwrap();
        let prefix = json!({"prefix": {"addr": "10.86.0.0", "len": 24}});
        assert!(rule_matches_address(&rule(json!("10.86.0.5"), "=="), ip));
        assert!(rule_matches_address(&rule(prefix.clone(), "=="), ip));
        assert!(rule_matches_address(
            &rule(json!({"range": ["10.86.0.1", "10.86.0.9"]}), "=="),
            ip
        ));
        assert!(rule_matches_address(
            &rule(json!({"set": ["192.0.2.1", prefix]}), "=="),
            ip
        ));
        assert!(!rule_matches_address(&rule(json!("10.86.0.6"), "=="), ip));
        assert!(!rule_matches_address(
            &rule(json!({"prefix": {"addr": "10.86.0.0", "len": 24}}), "!="),
            ip
        ));
    }
}
