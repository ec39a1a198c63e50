//! The one place where nft script text is written: a small typed model of the statements
//! tether needs and their rendering. Used only on the rare per-network path (first container
//! in, last container out); per-container work goes over netlink instead.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::network_id::NetworkId;
use super::network_spec::{InstalledNetwork, NetworkSpec};
use super::table;

/// One line of an nft script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Statement {
    AddTable,
    AddBaseChain(BaseChain),
    AddChain {
        name: String,
        comment: Option<String>,
    },
    FlushChain(String),
    DeleteChain(String),
    AddRule {
        chain: String,
        rule: Rule,
    },
    AddSet {
        name: String,
        key: KeyType,
    },
    DeleteSet(String),
    AddVerdictMap {
        name: String,
        key: KeyType,
    },
    AddElement {
        set: String,
        key: ElementKey,
        jump: Option<String>,
    },
    DeleteElement {
        set: String,
        key: ElementKey,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaseChain {
    Forward,
    Postrouting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Ipv4,
    Ipv6,
    Interface,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ElementKey {
    Interface(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `iifname vmap @map`: forward traffic coming from a network's bridge.
    DispatchInputInterface(&'static str),
    /// `oifname vmap @map`: forward traffic going to a network's bridge.
    DispatchOutputInterface(&'static str),
    /// `ip saddr vmap @map`: postrouting has no input interface, so NAT dispatch is by the
    /// container's own address.
    DispatchSourceV4(&'static str),
    DispatchSourceV6(&'static str),
    AcceptFromBridge {
        bridge: String,
    },
    AcceptRepliesToBridge {
        bridge: String,
    },
    MasqueradeV4 {
        set: String,
        bridge: String,
    },
    MasqueradeV6 {
        set: String,
        bridge: String,
    },
}

impl KeyType {
    fn nft_type(self) -> &'static str {
        match self {
            KeyType::Ipv4 => "ipv4_addr",
            KeyType::Ipv6 => "ipv6_addr",
            KeyType::Interface => "ifname",
        }
    }
}

impl ElementKey {
    fn render(&self) -> String {
        match self {
            ElementKey::Interface(name) => format!("\"{name}\""),
            ElementKey::Address(addr) => addr.to_string(),
        }
    }
}

impl Rule {
    fn render(&self) -> String {
        match self {
            Rule::DispatchInputInterface(map) => format!("iifname vmap @{map}"),
            Rule::DispatchOutputInterface(map) => format!("oifname vmap @{map}"),
            Rule::DispatchSourceV4(map) => format!("ip saddr vmap @{map}"),
            Rule::DispatchSourceV6(map) => format!("ip6 saddr vmap @{map}"),
            Rule::AcceptFromBridge { bridge } => format!("iifname \"{bridge}\" accept"),
            Rule::AcceptRepliesToBridge { bridge } => {
                format!("oifname \"{bridge}\" ct state established,related accept")
            }
            Rule::MasqueradeV4 { set, bridge } => {
                format!("ip saddr @{set} oifname != \"{bridge}\" masquerade")
            }
            Rule::MasqueradeV6 { set, bridge } => {
                format!("ip6 saddr @{set} oifname != \"{bridge}\" masquerade")
            }
        }
    }
}

impl Statement {
    fn render(&self) -> String {
        let t = format!("{} {}", table::FAMILY, table::NAME);
        match self {
            Statement::AddTable => format!("add table {t}"),
            Statement::AddBaseChain(BaseChain::Forward) => format!(
                "add chain {t} {} {{ type filter hook forward priority filter; policy accept; }}",
                table::FORWARD_CHAIN
            ),
            Statement::AddBaseChain(BaseChain::Postrouting) => format!(
                "add chain {t} {} {{ type nat hook postrouting priority srcnat; policy accept; }}",
                table::POSTROUTING_CHAIN
            ),
            Statement::AddChain {
                name,
                comment: None,
            } => format!("add chain {t} {name}"),
            Statement::AddChain {
                name,
                comment: Some(comment),
            } => format!("add chain {t} {name} {{ comment \"{comment}\"; }}"),
            Statement::FlushChain(name) => format!("flush chain {t} {name}"),
            Statement::DeleteChain(name) => format!("delete chain {t} {name}"),
            Statement::AddRule { chain, rule } => format!("add rule {t} {chain} {}", rule.render()),
            Statement::AddSet { name, key } => {
                format!("add set {t} {name} {{ type {}; }}", key.nft_type())
            }
            Statement::DeleteSet(name) => format!("delete set {t} {name}"),
            Statement::AddVerdictMap { name, key } => {
                format!(
                    "add map {t} {name} {{ type {} : verdict; }}",
                    key.nft_type()
                )
            }
            Statement::AddElement { set, key, jump } => match jump {
                Some(chain) => format!(
                    "add element {t} {set} {{ {} : jump {chain} }}",
                    key.render()
                ),
                None => format!("add element {t} {set} {{ {} }}", key.render()),
            },
            Statement::DeleteElement { set, key } => {
                format!("delete element {t} {set} {{ {} }}", key.render())
            }
        }
    }
}

fn render(statements: &[Statement]) -> String {
    let mut script = String::new();
    for statement in statements {
        let _ = writeln!(script, "{}", statement.render());
    }
    script
}

/// Table, base chains, dispatch maps and the dispatch rules. `add` is a no-op on what
/// exists, and the base chains are flushed and refilled so racing callers leave exactly
/// one copy of each dispatch rule.
fn table_statements() -> Vec<Statement> {
    let mut s = vec![
        Statement::AddTable,
        Statement::AddBaseChain(BaseChain::Forward),
        Statement::AddBaseChain(BaseChain::Postrouting),
    ];
    s.extend(map_statements());
    s.extend([
        Statement::FlushChain(table::FORWARD_CHAIN.into()),
        Statement::AddRule {
            chain: table::FORWARD_CHAIN.into(),
            rule: Rule::DispatchInputInterface(table::FORWARD_IN_MAP),
        },
        Statement::AddRule {
            chain: table::FORWARD_CHAIN.into(),
            rule: Rule::DispatchOutputInterface(table::FORWARD_OUT_MAP),
        },
        Statement::FlushChain(table::POSTROUTING_CHAIN.into()),
        Statement::AddRule {
            chain: table::POSTROUTING_CHAIN.into(),
            rule: Rule::DispatchSourceV4(table::NAT_V4_MAP),
        },
        Statement::AddRule {
            chain: table::POSTROUTING_CHAIN.into(),
            rule: Rule::DispatchSourceV6(table::NAT_V6_MAP),
        },
    ]);
    s
}

fn map_statements() -> Vec<Statement> {
    vec![
        Statement::AddVerdictMap {
            name: table::FORWARD_IN_MAP.into(),
            key: KeyType::Interface,
        },
        Statement::AddVerdictMap {
            name: table::FORWARD_OUT_MAP.into(),
            key: KeyType::Interface,
        },
        Statement::AddVerdictMap {
            name: table::NAT_V4_MAP.into(),
            key: KeyType::Ipv4,
        },
        Statement::AddVerdictMap {
            name: table::NAT_V6_MAP.into(),
            key: KeyType::Ipv6,
        },
    ]
}

/// Removes the forward chain and its two dispatch elements, whether or not they exist:
/// each object is first added (a no-op when present) so the deletes cannot fail.
fn forward_removal(id: NetworkId, bridge: &str) -> Vec<Statement> {
    let chain = id.forward_chain();
    let mut s = vec![Statement::AddChain {
        name: chain.clone(),
        comment: None,
    }];
    for map in [table::FORWARD_IN_MAP, table::FORWARD_OUT_MAP] {
        s.push(Statement::AddElement {
            set: map.into(),
            key: ElementKey::Interface(bridge.into()),
            jump: Some(chain.clone()),
        });
    }
    for map in [table::FORWARD_IN_MAP, table::FORWARD_OUT_MAP] {
        s.push(Statement::DeleteElement {
            set: map.into(),
            key: ElementKey::Interface(bridge.into()),
        });
    }
    s.push(Statement::FlushChain(chain.clone()));
    s.push(Statement::DeleteChain(chain));
    s
}

/// Installs (or reinstalls) one network in a single transaction.
///
/// `replacing` is the network as currently installed when its settings differ: its forward
/// chain is deleted and made again, because the kernel keeps a chain's comment (our
/// fingerprint) when `add chain` names an existing chain. The NAT chain is only flushed and
/// refilled: container elements in the NAT maps jump to it, so it cannot be deleted.
pub fn install_script(spec: &NetworkSpec, replacing: Option<&InstalledNetwork>) -> String {
    let id = spec.id;
    let forward = id.forward_chain();
    let nat = id.nat_chain();
    let mut s = table_statements();
    s.push(Statement::AddSet {
        name: id.ipv4_set(),
        key: KeyType::Ipv4,
    });
    s.push(Statement::AddSet {
        name: id.ipv6_set(),
        key: KeyType::Ipv6,
    });
    if let Some(old) = replacing {
        s.extend(forward_removal(id, &old.bridge));
    }
    s.extend([
        Statement::AddChain {
            name: forward.clone(),
            comment: Some(spec.comment()),
        },
        Statement::FlushChain(forward.clone()),
        Statement::AddRule {
            chain: forward.clone(),
            rule: Rule::AcceptFromBridge {
                bridge: spec.bridge.clone(),
            },
        },
        Statement::AddRule {
            chain: forward.clone(),
            rule: Rule::AcceptRepliesToBridge {
                bridge: spec.bridge.clone(),
            },
        },
        Statement::AddChain {
            name: nat.clone(),
            comment: None,
        },
        Statement::FlushChain(nat.clone()),
    ]);
    if spec.masquerade {
        s.push(Statement::AddRule {
            chain: nat.clone(),
            rule: Rule::MasqueradeV4 {
                set: id.ipv4_set(),
                bridge: spec.bridge.clone(),
            },
        });
        s.push(Statement::AddRule {
            chain: nat,
            rule: Rule::MasqueradeV6 {
                set: id.ipv6_set(),
                bridge: spec.bridge.clone(),
            },
        });
    }
    for map in [table::FORWARD_IN_MAP, table::FORWARD_OUT_MAP] {
        s.push(Statement::AddElement {
            set: map.into(),
            key: ElementKey::Interface(spec.bridge.clone()),
            jump: Some(forward.clone()),
        });
    }
    render(&s)
}

/// Deletes exactly one network's chains, sets and map elements, including NAT map elements
/// of containers that were never removed (`leftovers`), in a single transaction that
/// succeeds whether or not each object still exists.
pub fn teardown_script(
    id: NetworkId,
    installed: &InstalledNetwork,
    leftovers: &[IpAddr],
) -> String {
    let nat = id.nat_chain();
    let mut s = vec![Statement::AddTable];
    s.extend(map_statements());
    s.extend([
        Statement::AddSet {
            name: id.ipv4_set(),
            key: KeyType::Ipv4,
        },
        Statement::AddSet {
            name: id.ipv6_set(),
            key: KeyType::Ipv6,
        },
        Statement::AddChain {
            name: nat.clone(),
            comment: None,
        },
    ]);
    for addr in leftovers {
        s.push(Statement::AddElement {
            set: nat_map_for(addr).into(),
            key: ElementKey::Address(*addr),
            jump: Some(nat.clone()),
        });
    }
    for addr in leftovers {
        s.push(Statement::DeleteElement {
            set: nat_map_for(addr).into(),
            key: ElementKey::Address(*addr),
        });
    }
    s.extend(forward_removal(id, &installed.bridge));
    s.extend([
        Statement::FlushChain(nat.clone()),
        Statement::DeleteChain(nat),
        Statement::DeleteSet(id.ipv4_set()),
        Statement::DeleteSet(id.ipv6_set()),
    ]);
    render(&s)
}

fn nat_map_for(addr: &IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => table::NAT_V4_MAP,
        IpAddr::V6(_) => table::NAT_V6_MAP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::NetworkRules;

    fn spec(masquerade: bool) -> NetworkSpec {
        NetworkSpec::parse(&NetworkRules {
            name: "a".into(),
            bridge: "br0".into(),
            masquerade,
        })
        .unwrap()
    }

    const TABLE_PART: &str = "\
add table inet tether
add chain inet tether forward { type filter hook forward priority filter; policy accept; }
add chain inet tether postrouting { type nat hook postrouting priority srcnat; policy accept; }
add map inet tether fwd_in { type ifname : verdict; }
add map inet tether fwd_out { type ifname : verdict; }
add map inet tether nat4 { type ipv4_addr : verdict; }
add map inet tether nat6 { type ipv6_addr : verdict; }
flush chain inet tether forward
add rule inet tether forward iifname vmap @fwd_in
add rule inet tether forward oifname vmap @fwd_out
flush chain inet tether postrouting
add rule inet tether postrouting ip saddr vmap @nat4
add rule inet tether postrouting ip6 saddr vmap @nat6
";

    #[test]
    fn install_with_masquerade() {
        let expected = TABLE_PART.to_string()
            + "\
add set inet tether ne40c292c_c4 { type ipv4_addr; }
add set inet tether ne40c292c_c6 { type ipv6_addr; }
add chain inet tether ne40c292c_fwd { comment \"tether bridge=br0 masq=1 net=a\"; }
flush chain inet tether ne40c292c_fwd
add rule inet tether ne40c292c_fwd iifname \"br0\" accept
add rule inet tether ne40c292c_fwd oifname \"br0\" ct state established,related accept
add chain inet tether ne40c292c_nat
flush chain inet tether ne40c292c_nat
add rule inet tether ne40c292c_nat ip saddr @ne40c292c_c4 oifname != \"br0\" masquerade
add rule inet tether ne40c292c_nat ip6 saddr @ne40c292c_c6 oifname != \"br0\" masquerade
add element inet tether fwd_in { \"br0\" : jump ne40c292c_fwd }
add element inet tether fwd_out { \"br0\" : jump ne40c292c_fwd }
";
        assert_eq!(install_script(&spec(true), None), expected);
    }

    #[test]
    fn install_without_masquerade_leaves_nat_chain_empty() {
        let script = install_script(&spec(false), None);
        assert!(script.contains("flush chain inet tether ne40c292c_nat\nadd element"));
        assert!(!script.contains("masquerade"));
    }

    #[test]
    fn reinstall_recreates_forward_chain_of_old_bridge() {
        let old = InstalledNetwork::from_comment("tether bridge=old0 masq=0 net=a").unwrap();
        let script = install_script(&spec(true), Some(&old));
        let replaced = "\
add chain inet tether ne40c292c_fwd
add element inet tether fwd_in { \"old0\" : jump ne40c292c_fwd }
add element inet tether fwd_out { \"old0\" : jump ne40c292c_fwd }
delete element inet tether fwd_in { \"old0\" }
delete element inet tether fwd_out { \"old0\" }
flush chain inet tether ne40c292c_fwd
delete chain inet tether ne40c292c_fwd
add chain inet tether ne40c292c_fwd { comment \"tether bridge=br0 masq=1 net=a\"; }
";
        assert!(script.contains(replaced), "{script}");
    }

    #[test]
    fn teardown_removes_only_this_network() {
        let installed = InstalledNetwork::from_comment("tether bridge=br0 masq=1 net=a").unwrap();
        let leftovers = ["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let expected = "\
add table inet tether
add map inet tether fwd_in { type ifname : verdict; }
add map inet tether fwd_out { type ifname : verdict; }
add map inet tether nat4 { type ipv4_addr : verdict; }
add map inet tether nat6 { type ipv6_addr : verdict; }
add set inet tether ne40c292c_c4 { type ipv4_addr; }
add set inet tether ne40c292c_c6 { type ipv6_addr; }
add chain inet tether ne40c292c_nat
add element inet tether nat4 { 10.0.0.2 : jump ne40c292c_nat }
add element inet tether nat6 { fd00::2 : jump ne40c292c_nat }
delete element inet tether nat4 { 10.0.0.2 }
delete element inet tether nat6 { fd00::2 }
add chain inet tether ne40c292c_fwd
add element inet tether fwd_in { \"br0\" : jump ne40c292c_fwd }
add element inet tether fwd_out { \"br0\" : jump ne40c292c_fwd }
delete element inet tether fwd_in { \"br0\" }
delete element inet tether fwd_out { \"br0\" }
flush chain inet tether ne40c292c_fwd
delete chain inet tether ne40c292c_fwd
flush chain inet tether ne40c292c_nat
delete chain inet tether ne40c292c_nat
delete set inet tether ne40c292c_c4
delete set inet tether ne40c292c_c6
";
        assert_eq!(
            teardown_script(NetworkId::of("a"), &installed, &leftovers),
            expected
        );
    }
}
