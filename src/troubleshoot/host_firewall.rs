//! Other tables' forward chains that drop by default, and whether the rules that let tether's bridges
//! through (device group 7447, docs/plugins/bridge.md) are already there. Read-only: `nft list` and
//! `iptables-save` print, they change nothing.

use std::process::Command;

use crate::firewall::{FirewallError, ForeignForwardDrop};
use crate::link::TETHER_BRIDGE_GROUP;

/// A forward chain with policy drop, and whether its table already admits tether's device group both ways.
pub struct ForwardDrop {
    pub chain: ForeignForwardDrop,
    pub admits_tether: bool,
}

pub fn forward_drops() -> Result<Vec<ForwardDrop>, FirewallError> {
    let fw = crate::firewall::Firewall::open()?;
    Ok(fw
        .foreign_forward_drops()?
        .into_iter()
        .map(|chain| ForwardDrop {
            admits_tether: admits_tether(&chain),
            chain,
        })
        .collect())
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
