//! Other tables' forward chains that drop what tether forwards: by policy (Docker's `ip filter FORWARD`) or
//! by a catch-all rule under an accept policy (firewalld's `reject` at the end of its forward chain); and
//! whether the rules that let tether's bridges through (device group 7447, docs/plugins/bridge.md) are
//! already there. Read-only: `nft list` and `iptables-save` print, they change nothing.

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

/// Rules of other tables' forward base chains that drop or reject with no match at all (a counter or a log
/// at most), as `nft -j list ruleset` shows them.
fn catch_all_drops() -> Vec<(ForeignForwardDrop, String)> {
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
        let exprs = rule["expr"].as_array().cloned().unwrap_or_default();
        let keys: Vec<&str> = exprs
            .iter()
            .filter_map(|e| e.as_object()?.keys().next().map(String::as_str))
            .collect();
        let verdict = keys
            .iter()
            .copied()
            .find(|k| matches!(*k, "drop" | "reject"));
        let only_bookkeeping = keys
            .iter()
            .all(|k| matches!(*k, "drop" | "reject" | "counter" | "log"));
        if let (Some(verdict), true) = (verdict, only_bookkeeping) {
            out.push((
                ForeignForwardDrop {
                    family,
                    table: table.into(),
                    chain: chain.into(),
                },
                format!("{verdict} # handle {}", rule["handle"]),
            ));
        }
    }
    out
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
