//! The one place where tether's tables, chains, sets and rules are described: a small typed model of
//! the statements tether needs, encoded as nf_tables messages (`Statement::change`, `Rule::exprs`) for
//! one netlink transaction, and rendered as the equivalent nft text for logs, errors and tests.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::netlink::requests::{self, concat_bytes, ifname_bytes, ElementChange, ElementData};
use super::netlink::requests::{ElementOp, SetElement};
use super::netlink::ruleset::{
    self, Change, CtKey, DataType, Expr, MapData, MetaKey, PayloadBase, Register, SetSpec, Verdict,
};
use super::netlink::uapi::{
    NFPROTO_IPV4, NFPROTO_IPV6, NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING, RTN_LOCAL,
};
use super::network_id::NetworkId;
use super::network_spec::{InstalledNetwork, NetworkSpec};
use super::table::{self, Family};

/// One change to a table, as one nf_tables message (and one line of the equivalent nft script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Statement {
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
    AddMap {
        name: String,
        key: KeyType,
        value: MapValue,
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

/// The base chains tether hooks into, one per (hook, purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BaseChain {
    /// inet: filter at forward (network dispatch and isolation).
    Forward,
    /// inet: srcnat at postrouting (per-network masquerade dispatch).
    Postrouting,
    /// inet: dstnat at prerouting (published ports, traffic from elsewhere).
    PortsPrerouting,
    /// inet: dstnat at output (published ports, traffic from the host itself).
    PortsOutput,
    /// inet: srcnat at postrouting (localhost, hairpin and masqAll masquerade of
    /// published-port traffic); its own chain so network installs never flush it.
    PortsPostrouting,
    /// bridge: filter at prerouting (macspoofchk).
    BridgePrerouting,
}

/// Types of set keys and map values, as nft names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyType {
    Ipv4,
    Ipv6,
    Interface,
    /// `iifname . oifname` pairs.
    InterfacePair,
    /// A bridge port and the one source MAC allowed through it.
    InterfaceMac,
    /// `meta l4proto . th dport`.
    ProtoPort,
    /// `ip daddr . meta l4proto . th dport`.
    Ipv4ProtoPort,
    Ipv6ProtoPort,
    /// A DNAT target: address and port.
    Ipv4Port,
    Ipv6Port,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MapValue {
    Verdict,
    Data(KeyType),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ElementKey {
    Interface(String),
    /// The same interface as input and output: `"br0" . "br0"`.
    SameInterface(String),
    Address(IpAddr),
}

/// IPv4 or IPv6, for rules that exist once per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpFamily {
    V4,
    V6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Rule {
    /// `iifname vmap @map`: forward traffic coming from a network's bridge.
    DispatchInputInterface(&'static str),
    /// `oifname vmap @map`: forward traffic going to a network's bridge.
    DispatchOutputInterface(&'static str),
    /// `ip saddr vmap @map`: NAT dispatch by the container's own address, as tethers before `nat_in`
    /// did (postrouting sees the bridge as input interface of forwarded traffic, which `nat_in` uses).
    DispatchSourceV4(&'static str),
    DispatchSourceV6(&'static str),
    Jump(String),
    /// Routed traffic between containers of one network.
    AcceptWithinBridge {
        bridge: String,
    },
    AcceptFromBridge {
        bridge: String,
    },
    AcceptRepliesToBridge {
        bridge: String,
    },
    /// Traffic that came through a published port (DNAT) may enter.
    AcceptPublishedToBridge {
        bridge: String,
    },
    /// Isolation: nothing else enters the network from outside or from other networks.
    DropIngressToBridge {
        bridge: String,
    },
    /// Isolation: the network's containers do not reach other tether networks directly.
    DropToOtherBridges {
        bridge: String,
        bridges: &'static str,
    },
    MasqueradeV4 {
        set: String,
        bridge: String,
    },
    MasqueradeV6 {
        set: String,
        bridge: String,
    },
    /// DNAT by `daddr . l4proto . dport` (mappings bound to one host address).
    DnatBoundAddress {
        family: IpFamily,
        map: &'static str,
    },
    /// DNAT by `l4proto . dport` for traffic to any local address.
    DnatAnyLocalAddress {
        family: IpFamily,
        map: &'static str,
    },
    /// `127.0.0.1:port` from the host: the container cannot answer 127.0.0.1.
    MasqueradePublishedFromLoopback,
    /// Marks DNATed traffic that leaves through the interface it came in on (a container
    /// reaching a published port of its own network through the host). Postrouting has
    /// no input interface (and no `fib`), so the decision is made here and carried to
    /// the masquerade rule in a mark bit.
    MarkHairpin {
        interfaces: &'static str,
    },
    /// Hairpin traffic marked in forward.
    MasqueradeHairpin,
    /// masqAll.
    MasqueradePublished,
    /// macspoofchk: a watched port lets through only its container's source MAC.
    DropSpoofedSource {
        ports: &'static str,
        allowed: &'static str,
    },
}

impl KeyType {
    fn nft_type(self) -> &'static str {
        match self {
            KeyType::Ipv4 => "ipv4_addr",
            KeyType::Ipv6 => "ipv6_addr",
            KeyType::Interface => "ifname",
            KeyType::InterfacePair => "ifname . ifname",
            KeyType::InterfaceMac => "ifname . ether_addr",
            KeyType::ProtoPort => "inet_proto . inet_service",
            KeyType::Ipv4ProtoPort => "ipv4_addr . inet_proto . inet_service",
            KeyType::Ipv6ProtoPort => "ipv6_addr . inet_proto . inet_service",
            KeyType::Ipv4Port => "ipv4_addr . inet_service",
            KeyType::Ipv6Port => "ipv6_addr . inet_service",
        }
    }
}

impl MapValue {
    fn nft_type(self) -> &'static str {
        match self {
            MapValue::Verdict => "verdict",
            MapValue::Data(key) => key.nft_type(),
        }
    }
}

impl ElementKey {
    fn render(&self) -> String {
        match self {
            ElementKey::Interface(name) => format!("\"{name}\""),
            ElementKey::SameInterface(name) => format!("\"{name}\" . \"{name}\""),
            ElementKey::Address(addr) => addr.to_string(),
        }
    }
}

impl IpFamily {
    fn nft(self) -> &'static str {
        match self {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
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
            Rule::Jump(chain) => format!("jump {chain}"),
            Rule::AcceptWithinBridge { bridge } => {
                format!("oifname \"{bridge}\" iifname \"{bridge}\" accept")
            }
            Rule::AcceptFromBridge { bridge } => format!("iifname \"{bridge}\" accept"),
            Rule::AcceptRepliesToBridge { bridge } => {
                format!("oifname \"{bridge}\" ct state established,related accept")
            }
            Rule::AcceptPublishedToBridge { bridge } => {
                format!("oifname \"{bridge}\" ct status dnat accept")
            }
            Rule::DropIngressToBridge { bridge } => format!("oifname \"{bridge}\" drop"),
            Rule::DropToOtherBridges { bridge, bridges } => {
                format!("iifname \"{bridge}\" oifname @{bridges} drop")
            }
            Rule::MasqueradeV4 { set, bridge } => {
                format!("ip saddr @{set} oifname != \"{bridge}\" masquerade")
            }
            Rule::MasqueradeV6 { set, bridge } => {
                format!("ip6 saddr @{set} oifname != \"{bridge}\" masquerade")
            }
            Rule::DnatBoundAddress { family, map } => {
                let f = family.nft();
                format!("dnat {f} to {f} daddr . meta l4proto . th dport map @{map}")
            }
            Rule::DnatAnyLocalAddress { family, map } => format!(
                "fib daddr type local dnat {} to meta l4proto . th dport map @{map}",
                family.nft()
            ),
            Rule::MasqueradePublishedFromLoopback => {
                "ct status dnat ip saddr 127.0.0.0/8 masquerade".into()
            }
            Rule::MarkHairpin { interfaces } => format!(
                "ct status dnat iifname . oifname @{interfaces} meta mark set meta mark | {:#x}",
                table::HAIRPIN_MARK
            ),
            Rule::MasqueradeHairpin => format!(
                "meta mark & {mark:#x} == {mark:#x} masquerade",
                mark = table::HAIRPIN_MARK
            ),
            Rule::MasqueradePublished => "ct status dnat masquerade".into(),
            Rule::DropSpoofedSource { ports, allowed } => {
                format!("iifname @{ports} iifname . ether saddr != @{allowed} drop")
            }
        }
    }
}

impl BaseChain {
    fn render(self) -> String {
        let (name, spec) = match self {
            BaseChain::Forward => (
                table::FORWARD_CHAIN,
                "type filter hook forward priority filter",
            ),
            BaseChain::Postrouting => (
                table::POSTROUTING_CHAIN,
                "type nat hook postrouting priority srcnat",
            ),
            BaseChain::PortsPrerouting => (
                table::PORTS_PREROUTING_CHAIN,
                "type nat hook prerouting priority dstnat",
            ),
            // nft accepts the `dstnat` keyword at prerouting only; -100 is its value.
            BaseChain::PortsOutput => (
                table::PORTS_OUTPUT_CHAIN,
                "type nat hook output priority -100",
            ),
            BaseChain::PortsPostrouting => (
                table::PORTS_POSTROUTING_CHAIN,
                "type nat hook postrouting priority srcnat",
            ),
            BaseChain::BridgePrerouting => (
                table::SPOOFCHK_CHAIN,
                "type filter hook prerouting priority filter",
            ),
        };
        format!("{name} {{ {spec}; policy accept; }}")
    }
}

impl Statement {
    pub(super) fn render(&self, family: Family) -> String {
        let t = format!("{} {}", family.nft_name(), table::NAME);
        match self {
            Statement::AddTable => format!("add table {t}"),
            Statement::AddBaseChain(chain) => format!("add chain {t} {}", chain.render()),
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
            Statement::AddMap { name, key, value } => format!(
                "add map {t} {name} {{ type {} : {}; }}",
                key.nft_type(),
                value.nft_type()
            ),
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

pub(super) fn render(statements: &[Statement], family: Family) -> String {
    let mut script = String::new();
    for statement in statements {
        let _ = writeln!(script, "{}", statement.render(family));
    }
    script
}

/// nft's datatype numbers (enum datatypes in nftables' datatype.h) of the fields tether's keys are made of.
pub(super) const TYPE_IPADDR: u32 = 7;
pub(super) const TYPE_IP6ADDR: u32 = 8;
pub(super) const TYPE_ETHERADDR: u32 = 9;
pub(super) const TYPE_INET_PROTOCOL: u32 = 12;
pub(super) const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
/// A host-order u32 (`meta mark`): how a `numgen`/`jhash` slot is typed, since nft cannot print a
/// concatenation with a field of plain `integer` (no fixed length).
pub(super) const TYPE_MARK: u32 = 19;
/// How many bits of a concatenation's datatype number each field takes (nft's TYPE_BITS).
const TYPE_BITS: u32 = 6;
/// `ct state established,related` and `ct status dnat` (IPS_DST_NAT) bits.
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
const CT_STATUS_DNAT: u32 = 0x20;
/// nft's `priority filter` in the bridge family (NF_BR_PRI_FILTER_BRIDGED).
const BRIDGE_FILTER_PRIORITY: i32 = -200;
/// `priority dstnat` and `priority srcnat`.
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;

/// nft's byte orders (enum byteorder in nftables' expression.h), which `nft list` needs to print a
/// single-field key; a concatenation's fields carry their own.
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;

/// The datatype of fields laid out one after the other, each on a 4-byte register boundary.
pub(super) fn concatenation(fields: &[(u32, u32)]) -> DataType {
    let byteorder = match fields {
        [(TYPE_IFNAME, _)] => Some(BYTEORDER_HOST),
        [_] => Some(BYTEORDER_BIG),
        _ => None,
    };
    DataType {
        id: fields
            .iter()
            .fold(0, |id, (field, _)| id << TYPE_BITS | field),
        len: fields.iter().map(|(_, len)| len.next_multiple_of(4)).sum(),
        byteorder,
    }
}

impl KeyType {
    fn data_type(self) -> DataType {
        const IP: (u32, u32) = (TYPE_IPADDR, 4);
        const IP6: (u32, u32) = (TYPE_IP6ADDR, 16);
        const IFNAME: (u32, u32) = (TYPE_IFNAME, 16);
        const PROTO: (u32, u32) = (TYPE_INET_PROTOCOL, 1);
        const PORT: (u32, u32) = (TYPE_INET_SERVICE, 2);
        concatenation(match self {
            KeyType::Ipv4 => &[IP],
            KeyType::Ipv6 => &[IP6],
            KeyType::Interface => &[IFNAME],
            KeyType::InterfacePair => &[IFNAME, IFNAME],
            KeyType::InterfaceMac => &[IFNAME, (TYPE_ETHERADDR, 6)],
            KeyType::ProtoPort => &[PROTO, PORT],
            KeyType::Ipv4ProtoPort => &[IP, PROTO, PORT],
            KeyType::Ipv6ProtoPort => &[IP6, PROTO, PORT],
            KeyType::Ipv4Port => &[IP, PORT],
            KeyType::Ipv6Port => &[IP6, PORT],
        })
    }
}

impl ElementKey {
    fn bytes(&self) -> Vec<u8> {
        match self {
            ElementKey::Interface(name) => ifname_bytes(name).to_vec(),
            ElementKey::SameInterface(name) => {
                let name = ifname_bytes(name);
                concat_bytes(&[&name, &name])
            }
            ElementKey::Address(addr) => requests::address_bytes(addr),
        }
    }
}

impl IpFamily {
    fn nfproto(self) -> u8 {
        match self {
            IpFamily::V4 => NFPROTO_IPV4,
            IpFamily::V6 => NFPROTO_IPV6,
        }
    }

    /// Offset and length of the source address in the network header (the destination follows it).
    fn source_address(self) -> (u32, u32) {
        match self {
            IpFamily::V4 => (12, 4),
            IpFamily::V6 => (8, 16),
        }
    }

    /// The first register word after an address in R1.
    fn word_after_address(self) -> u32 {
        match self {
            IpFamily::V4 => 1,
            IpFamily::V6 => 4,
        }
    }
}

/// Building blocks of the rules, as nft itself encodes them.
pub(super) mod exprs {
    use super::*;

    pub fn interface_is(key: MetaKey, name: &str) -> [Expr; 2] {
        [
            Expr::Meta(key, Register::R1),
            Expr::Equals(Register::R1, ifname_bytes(name).to_vec()),
        ]
    }

    /// A ct key with any of `bits` set.
    pub fn ct_any(key: CtKey, bits: u32) -> [Expr; 3] {
        [
            Expr::Ct(key, Register::R1),
            Expr::Bitwise {
                reg: Register::R1,
                mask: bits.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::NotEquals(Register::R1, vec![0; 4]),
        ]
    }

    /// In an inet table, matches on IP headers first check which IP version the packet is.
    pub fn ip_version(family: IpFamily) -> [Expr; 2] {
        [
            Expr::Meta(MetaKey::NfProto, Register::R1),
            Expr::Equals(Register::R1, vec![family.nfproto()]),
        ]
    }

    /// `ip saddr` / `ip daddr` (with its version check) into R1.
    pub fn address(family: IpFamily, destination: bool) -> Vec<Expr> {
        let (offset, len) = family.source_address();
        let mut out = ip_version(family).to_vec();
        out.push(Expr::Payload {
            base: PayloadBase::Network,
            offset: if destination { offset + len } else { offset },
            len,
            into: Register::R1,
        });
        out
    }

    pub fn lookup(set: &str, into: Option<Register>) -> Expr {
        Expr::Lookup {
            set: set.to_string(),
            from: Register::R1,
            into,
            inverted: false,
        }
    }

    /// `th dport` into a register.
    pub fn destination_port(into: Register) -> Expr {
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            into,
        }
    }

    /// DNAT to the address (R1) and port (the word after it) a map lookup put in R1.
    pub fn dnat_from_map(family: IpFamily, map: &str) -> [Expr; 2] {
        [
            lookup(map, Some(Register::R1)),
            Expr::Dnat {
                family: family.nfproto(),
                addr: Register::R1,
                port: Register::word(family.word_after_address()),
            },
        ]
    }

    /// `meta mark & MARK == MARK`.
    pub fn mark_has(bits: u32) -> [Expr; 3] {
        [
            Expr::Meta(MetaKey::Mark, Register::R1),
            Expr::Bitwise {
                reg: Register::R1,
                mask: bits.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Equals(Register::R1, bits.to_ne_bytes().to_vec()),
        ]
    }
}

impl Rule {
    /// The rule's expressions, in the order nft writes them for the text `render` gives.
    pub(super) fn exprs(&self) -> Vec<Expr> {
        use exprs::*;
        use MetaKey::{InputName, OutputName};
        let accept = Expr::Verdict(Verdict::Accept);
        let drop = Expr::Verdict(Verdict::Drop);
        let mut out: Vec<Expr> = Vec::new();
        match self {
            Rule::DispatchInputInterface(map) | Rule::DispatchOutputInterface(map) => {
                let key = match self {
                    Rule::DispatchInputInterface(_) => InputName,
                    _ => OutputName,
                };
                out.push(Expr::Meta(key, Register::R1));
                out.push(lookup(map, Some(Register::VERDICT)));
            }
            Rule::DispatchSourceV4(map) | Rule::DispatchSourceV6(map) => {
                let family = match self {
                    Rule::DispatchSourceV4(_) => IpFamily::V4,
                    _ => IpFamily::V6,
                };
                out.extend(address(family, false));
                out.push(lookup(map, Some(Register::VERDICT)));
            }
            Rule::Jump(chain) => out.push(Expr::Verdict(Verdict::Jump(chain.clone()))),
            Rule::AcceptWithinBridge { bridge } => {
                out.extend(interface_is(OutputName, bridge));
                out.extend(interface_is(InputName, bridge));
                out.push(accept);
            }
            Rule::AcceptFromBridge { bridge } => {
                out.extend(interface_is(InputName, bridge));
                out.push(accept);
            }
            Rule::AcceptRepliesToBridge { bridge } => {
                out.extend(interface_is(OutputName, bridge));
                out.extend(ct_any(CtKey::State, CT_ESTABLISHED_RELATED));
                out.push(accept);
            }
            Rule::AcceptPublishedToBridge { bridge } => {
                out.extend(interface_is(OutputName, bridge));
                out.extend(ct_any(CtKey::Status, CT_STATUS_DNAT));
                out.push(accept);
            }
            Rule::DropIngressToBridge { bridge } => {
                out.extend(interface_is(OutputName, bridge));
                out.push(drop);
            }
            Rule::DropToOtherBridges { bridge, bridges } => {
                out.extend(interface_is(InputName, bridge));
                out.push(Expr::Meta(OutputName, Register::R1));
                out.push(lookup(bridges, None));
                out.push(drop);
            }
            Rule::MasqueradeV4 { set, bridge } | Rule::MasqueradeV6 { set, bridge } => {
                let family = match self {
                    Rule::MasqueradeV4 { .. } => IpFamily::V4,
                    _ => IpFamily::V6,
                };
                out.extend(address(family, false));
                out.push(lookup(set, None));
                out.push(Expr::Meta(OutputName, Register::R1));
                out.push(Expr::NotEquals(Register::R1, ifname_bytes(bridge).to_vec()));
                out.push(Expr::Masquerade);
            }
            Rule::DnatBoundAddress { family, map } => {
                let after = family.word_after_address();
                out.extend(address(*family, true));
                out.push(Expr::Meta(MetaKey::L4Proto, Register::word(after)));
                out.push(destination_port(Register::word(after + 1)));
                out.extend(dnat_from_map(*family, map));
            }
            Rule::DnatAnyLocalAddress { family, map } => {
                out.push(Expr::FibDestinationType(Register::R1));
                // No IP version check: the NAT statement of the other family does nothing.
                out.push(Expr::Equals(Register::R1, RTN_LOCAL.to_ne_bytes().to_vec()));
                out.push(Expr::Meta(MetaKey::L4Proto, Register::R1));
                out.push(destination_port(Register::word(1)));
                out.extend(dnat_from_map(*family, map));
            }
            Rule::MasqueradePublishedFromLoopback => out.extend(masquerade_from_loopback()),
            Rule::MarkHairpin { interfaces } => out.extend(mark_hairpin(interfaces)),
            Rule::MasqueradeHairpin => {
                out.extend(mark_has(table::HAIRPIN_MARK));
                out.push(Expr::Masquerade);
            }
            Rule::MasqueradePublished => {
                out.extend(ct_any(CtKey::Status, CT_STATUS_DNAT));
                out.push(Expr::Masquerade);
            }
            Rule::DropSpoofedSource { ports, allowed } => {
                out.extend(drop_spoofed_source(ports, allowed))
            }
        }
        out
    }
}

/// Published-port traffic from 127.0.0.0/8, masqueraded (the reply must not go to the container's own lo).
fn masquerade_from_loopback() -> Vec<Expr> {
    use exprs::*;
    let mut out = ct_any(CtKey::Status, CT_STATUS_DNAT).to_vec();
    out.extend(address(IpFamily::V4, false));
    out.push(Expr::Bitwise {
        reg: Register::R1,
        mask: vec![255, 0, 0, 0],
        xor: vec![0; 4],
    });
    out.push(Expr::Equals(Register::R1, vec![127, 0, 0, 0]));
    out.push(Expr::Masquerade);
    out
}

/// Marks published-port traffic that leaves through the interface it came in on (hairpin).
fn mark_hairpin(interfaces: &str) -> Vec<Expr> {
    use exprs::*;
    let mut out = ct_any(CtKey::Status, CT_STATUS_DNAT).to_vec();
    out.push(Expr::Meta(MetaKey::InputName, Register::R1));
    out.push(Expr::Meta(MetaKey::OutputName, Register::R2));
    out.push(lookup(interfaces, None));
    out.push(Expr::Meta(MetaKey::Mark, Register::R1));
    out.push(Expr::Bitwise {
        reg: Register::R1,
        mask: (!table::HAIRPIN_MARK).to_ne_bytes().to_vec(),
        xor: table::HAIRPIN_MARK.to_ne_bytes().to_vec(),
    });
    out.push(Expr::SetMeta(MetaKey::Mark, Register::R1));
    out
}

/// Drops frames from a checked port whose source MAC is not that port's container's.
fn drop_spoofed_source(ports: &str, allowed: &str) -> Vec<Expr> {
    use exprs::*;
    vec![
        Expr::Meta(MetaKey::InputName, Register::R1),
        lookup(ports, None),
        Expr::Meta(MetaKey::InputName, Register::R1),
        Expr::Payload {
            base: PayloadBase::Link,
            offset: 6,
            len: 6,
            into: Register::R2,
        },
        Expr::Lookup {
            set: allowed.to_string(),
            from: Register::R1,
            into: None,
            inverted: true,
        },
        Expr::Verdict(Verdict::Drop),
    ]
}

impl BaseChain {
    fn netlink(self) -> ruleset::BaseChain {
        let (name, kind, hook, priority) = match self {
            BaseChain::Forward => (table::FORWARD_CHAIN, "filter", NF_INET_FORWARD, 0),
            BaseChain::Postrouting => (
                table::POSTROUTING_CHAIN,
                "nat",
                NF_INET_POST_ROUTING,
                SRCNAT,
            ),
            BaseChain::PortsPrerouting => (
                table::PORTS_PREROUTING_CHAIN,
                "nat",
                NF_INET_PRE_ROUTING,
                DSTNAT,
            ),
            BaseChain::PortsOutput => (table::PORTS_OUTPUT_CHAIN, "nat", NF_INET_LOCAL_OUT, DSTNAT),
            BaseChain::PortsPostrouting => (
                table::PORTS_POSTROUTING_CHAIN,
                "nat",
                NF_INET_POST_ROUTING,
                SRCNAT,
            ),
            BaseChain::BridgePrerouting => (
                table::SPOOFCHK_CHAIN,
                "filter",
                NF_INET_PRE_ROUTING,
                BRIDGE_FILTER_PRIORITY,
            ),
        };
        ruleset::BaseChain {
            name: name.into(),
            kind,
            hook,
            priority,
        }
    }
}

impl Statement {
    /// The statement as one nf_tables message of a batch on table `family tether`.
    pub(super) fn change(&self, family: Family) -> Change {
        let elements = |set: &str, op, element| {
            Change::Elements(ElementChange {
                counted: false,
                family,
                op,
                set: set.into(),
                elements: vec![element],
            })
        };
        match self {
            Statement::AddTable => Change::AddTable,
            Statement::AddBaseChain(chain) => Change::AddBaseChain(chain.netlink()),
            Statement::AddChain { name, comment } => Change::AddChain {
                name: name.clone(),
                comment: comment.clone(),
            },
            Statement::FlushChain(name) => Change::FlushChain(name.clone()),
            Statement::DeleteChain(name) => Change::DeleteChain(name.clone()),
            Statement::AddRule { chain, rule } => Change::AddRule {
                chain: chain.clone(),
                exprs: rule.exprs(),
            },
            Statement::AddSet { name, key } => Change::AddSet(SetSpec {
                name: name.clone(),
                key: key.data_type(),
                data: None,
            }),
            Statement::DeleteSet(name) => Change::DeleteSet(name.clone()),
            Statement::AddMap { name, key, value } => Change::AddSet(SetSpec {
                name: name.clone(),
                key: key.data_type(),
                data: Some(match value {
                    MapValue::Verdict => MapData::Verdict,
                    MapValue::Data(data) => MapData::Value(data.data_type()),
                }),
            }),
            Statement::AddElement { set, key, jump } => elements(
                set,
                ElementOp::Add,
                SetElement {
                    key: key.bytes(),
                    data: jump.clone().map(ElementData::Jump),
                },
            ),
            Statement::DeleteElement { set, key } => {
                elements(set, ElementOp::Delete, SetElement::key_only(key.bytes()))
            }
        }
    }
}

/// The statements as one transaction on table `family tether`.
pub(super) fn batch(statements: &[Statement], family: Family) -> ruleset::RulesetBatch {
    ruleset::RulesetBatch {
        family: family.nfproto(),
        table: table::NAME.into(),
        changes: statements.iter().map(|s| s.change(family)).collect(),
    }
}

/// Table, base chains, dispatch maps and the dispatch rules. `add` is a no-op on what
/// exists, and the base chains are flushed and refilled so racing callers leave exactly
/// one copy of each dispatch rule.
pub(super) fn table_statements() -> Vec<Statement> {
    let mut s = vec![
        Statement::AddTable,
        Statement::AddBaseChain(BaseChain::Forward),
        Statement::AddBaseChain(BaseChain::Postrouting),
    ];
    s.extend(map_statements());
    // Ingress first: a network's chain decides what may enter it before the sending
    // network's chain can accept (an accept ends the base chain).
    s.extend([
        Statement::FlushChain(table::FORWARD_CHAIN.into()),
        Statement::AddRule {
            chain: table::FORWARD_CHAIN.into(),
            rule: Rule::MarkHairpin {
                interfaces: table::HAIRPIN_SET,
            },
        },
        Statement::AddRule {
            chain: table::FORWARD_CHAIN.into(),
            rule: Rule::DispatchOutputInterface(table::FORWARD_OUT_MAP),
        },
        Statement::AddRule {
            chain: table::FORWARD_CHAIN.into(),
            rule: Rule::DispatchInputInterface(table::FORWARD_IN_MAP),
        },
        Statement::FlushChain(table::POSTROUTING_CHAIN.into()),
        Statement::AddRule {
            chain: table::POSTROUTING_CHAIN.into(),
            rule: Rule::DispatchInputInterface(table::NAT_IN_MAP),
        },
        // Containers added by a tether before `nat_in`; their network's chain masquerades only once either
        // way (masquerade ends the hook, and a packet it spares is spared again).
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

/// The table-wide sets and maps, shared by networks and published ports.
fn map_statements() -> Vec<Statement> {
    let verdict_map = |name: &str, key| Statement::AddMap {
        name: name.into(),
        key,
        value: MapValue::Verdict,
    };
    vec![
        verdict_map(table::FORWARD_IN_MAP, KeyType::Interface),
        verdict_map(table::FORWARD_OUT_MAP, KeyType::Interface),
        verdict_map(table::NAT_IN_MAP, KeyType::Interface),
        verdict_map(table::NAT_V4_MAP, KeyType::Ipv4),
        verdict_map(table::NAT_V6_MAP, KeyType::Ipv6),
        Statement::AddSet {
            name: table::BRIDGES_SET.into(),
            key: KeyType::Interface,
        },
        Statement::AddSet {
            name: table::HAIRPIN_SET.into(),
            key: KeyType::InterfacePair,
        },
    ]
}

/// The elements that name a network's bridge outside its own chains.
fn bridge_elements(bridge: &str, id: NetworkId) -> Vec<(&'static str, ElementKey, Option<String>)> {
    let mut out: Vec<_> = [
        (table::FORWARD_IN_MAP, id.forward_chain()),
        (table::FORWARD_OUT_MAP, id.forward_chain()),
        (table::NAT_IN_MAP, id.nat_chain()),
    ]
    .into_iter()
    .map(|(map, chain)| (map, ElementKey::Interface(bridge.into()), Some(chain)))
    .collect();
    out.push((
        table::BRIDGES_SET,
        ElementKey::Interface(bridge.into()),
        None,
    ));
    out.push((
        table::HAIRPIN_SET,
        ElementKey::SameInterface(bridge.into()),
        None,
    ));
    out
}

/// Removes the forward chain and the bridge's dispatch elements, whether or not they exist:
/// each object is first added (a no-op when present) so the deletes cannot fail. The
/// bridge also leaves the set of tether bridges and the hairpin set. The NAT chain is left
/// (a jump of `nat_in` to it is added, so it is made first when missing).
fn forward_removal(id: NetworkId, bridge: &str) -> Vec<Statement> {
    let chain = id.forward_chain();
    let mut s = vec![
        Statement::AddChain {
            name: chain.clone(),
            comment: None,
        },
        Statement::AddChain {
            name: id.nat_chain(),
            comment: None,
        },
    ];
    let elements = bridge_elements(bridge, id);
    for (set, key, jump) in &elements {
        s.push(Statement::AddElement {
            set: (*set).into(),
            key: key.clone(),
            jump: jump.clone(),
        });
    }
    for (set, key, _) in elements {
        s.push(Statement::DeleteElement {
            set: set.into(),
            key,
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
pub fn install(spec: &NetworkSpec, replacing: Option<&InstalledNetwork>) -> Vec<Statement> {
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
    ]);
    s.extend(
        forward_rules(spec)
            .into_iter()
            .map(|rule| Statement::AddRule {
                chain: forward.clone(),
                rule,
            }),
    );
    s.extend([
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
    for (set, key, jump) in bridge_elements(&spec.bridge, id) {
        s.push(Statement::AddElement {
            set: set.into(),
            key,
            jump,
        });
    }
    s
}

/// The network's forward chain. It is jumped to twice per packet at most: first for
/// traffic going to the bridge (`oifname`, the ingress rules), then for traffic coming
/// from it (`iifname`), so every rule names the direction it is about.
fn forward_rules(spec: &NetworkSpec) -> Vec<Rule> {
    let bridge = || spec.bridge.clone();
    let mut rules = vec![
        Rule::AcceptWithinBridge { bridge: bridge() },
        Rule::AcceptRepliesToBridge { bridge: bridge() },
        Rule::AcceptPublishedToBridge { bridge: bridge() },
    ];
    if spec.isolation {
        rules.push(Rule::DropIngressToBridge { bridge: bridge() });
        rules.push(Rule::DropToOtherBridges {
            bridge: bridge(),
            bridges: table::BRIDGES_SET,
        });
    }
    rules.push(Rule::AcceptFromBridge { bridge: bridge() });
    rules
}

/// Deletes exactly one network's chains, sets and map elements, including NAT map elements
/// of containers that were never removed (`leftovers`), in a single transaction that
/// succeeds whether or not each object still exists.
pub fn teardown(
    id: NetworkId,
    installed: &InstalledNetwork,
    leftovers: &[IpAddr],
) -> Vec<Statement> {
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
    s
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
            isolation: true,
        })
        .unwrap()
    }

    const TABLE_PART: &str = "\
add table inet tether
add chain inet tether forward { type filter hook forward priority filter; policy accept; }
add chain inet tether postrouting { type nat hook postrouting priority srcnat; policy accept; }
add map inet tether fwd_in { type ifname : verdict; }
add map inet tether fwd_out { type ifname : verdict; }
add map inet tether nat_in { type ifname : verdict; }
add map inet tether nat4 { type ipv4_addr : verdict; }
add map inet tether nat6 { type ipv6_addr : verdict; }
add set inet tether tether_bridges { type ifname; }
add set inet tether hairpin_ifs { type ifname . ifname; }
flush chain inet tether forward
add rule inet tether forward ct status dnat iifname . oifname @hairpin_ifs meta mark set meta mark | 0x2000
add rule inet tether forward oifname vmap @fwd_out
add rule inet tether forward iifname vmap @fwd_in
flush chain inet tether postrouting
add rule inet tether postrouting iifname vmap @nat_in
add rule inet tether postrouting ip saddr vmap @nat4
add rule inet tether postrouting ip6 saddr vmap @nat6
";

    #[test]
    fn install_with_masquerade() {
        let expected = TABLE_PART.to_string()
            + "\
add set inet tether ne40c292c_c4 { type ipv4_addr; }
add set inet tether ne40c292c_c6 { type ipv6_addr; }
add chain inet tether ne40c292c_fwd { comment \"tether bridge=br0 masq=1 iso=1 nat=iif net=a\"; }
flush chain inet tether ne40c292c_fwd
add rule inet tether ne40c292c_fwd oifname \"br0\" iifname \"br0\" accept
add rule inet tether ne40c292c_fwd oifname \"br0\" ct state established,related accept
add rule inet tether ne40c292c_fwd oifname \"br0\" ct status dnat accept
add rule inet tether ne40c292c_fwd oifname \"br0\" drop
add rule inet tether ne40c292c_fwd iifname \"br0\" oifname @tether_bridges drop
add rule inet tether ne40c292c_fwd iifname \"br0\" accept
add chain inet tether ne40c292c_nat
flush chain inet tether ne40c292c_nat
add rule inet tether ne40c292c_nat ip saddr @ne40c292c_c4 oifname != \"br0\" masquerade
add rule inet tether ne40c292c_nat ip6 saddr @ne40c292c_c6 oifname != \"br0\" masquerade
add element inet tether fwd_in { \"br0\" : jump ne40c292c_fwd }
add element inet tether fwd_out { \"br0\" : jump ne40c292c_fwd }
add element inet tether nat_in { \"br0\" : jump ne40c292c_nat }
add element inet tether tether_bridges { \"br0\" }
add element inet tether hairpin_ifs { \"br0\" . \"br0\" }
";
        assert_eq!(render(&install(&spec(true), None), Family::Inet), expected);
    }

    #[test]
    fn install_without_masquerade_leaves_nat_chain_empty() {
        let script = render(&install(&spec(false), None), Family::Inet);
        assert!(script.contains("flush chain inet tether ne40c292c_nat\nadd element"));
        assert!(!script.contains("masquerade"));
    }

    #[test]
    fn reinstall_recreates_forward_chain_of_old_bridge() {
        let old = InstalledNetwork::from_comment("tether bridge=old0 masq=0 net=a").unwrap();
        let script = render(&install(&spec(true), Some(&old)), Family::Inet);
        let replaced = "\
add chain inet tether ne40c292c_fwd
add chain inet tether ne40c292c_nat
add element inet tether fwd_in { \"old0\" : jump ne40c292c_fwd }
add element inet tether fwd_out { \"old0\" : jump ne40c292c_fwd }
add element inet tether nat_in { \"old0\" : jump ne40c292c_nat }
add element inet tether tether_bridges { \"old0\" }
add element inet tether hairpin_ifs { \"old0\" . \"old0\" }
delete element inet tether fwd_in { \"old0\" }
delete element inet tether fwd_out { \"old0\" }
delete element inet tether nat_in { \"old0\" }
delete element inet tether tether_bridges { \"old0\" }
delete element inet tether hairpin_ifs { \"old0\" . \"old0\" }
flush chain inet tether ne40c292c_fwd
delete chain inet tether ne40c292c_fwd
add chain inet tether ne40c292c_fwd { comment \"tether bridge=br0 masq=1 iso=1 nat=iif net=a\"; }
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
add map inet tether nat_in { type ifname : verdict; }
add map inet tether nat4 { type ipv4_addr : verdict; }
add map inet tether nat6 { type ipv6_addr : verdict; }
add set inet tether tether_bridges { type ifname; }
add set inet tether hairpin_ifs { type ifname . ifname; }
add set inet tether ne40c292c_c4 { type ipv4_addr; }
add set inet tether ne40c292c_c6 { type ipv6_addr; }
add chain inet tether ne40c292c_nat
add element inet tether nat4 { 10.0.0.2 : jump ne40c292c_nat }
add element inet tether nat6 { fd00::2 : jump ne40c292c_nat }
delete element inet tether nat4 { 10.0.0.2 }
delete element inet tether nat6 { fd00::2 }
add chain inet tether ne40c292c_fwd
add chain inet tether ne40c292c_nat
add element inet tether fwd_in { \"br0\" : jump ne40c292c_fwd }
add element inet tether fwd_out { \"br0\" : jump ne40c292c_fwd }
add element inet tether nat_in { \"br0\" : jump ne40c292c_nat }
add element inet tether tether_bridges { \"br0\" }
add element inet tether hairpin_ifs { \"br0\" . \"br0\" }
delete element inet tether fwd_in { \"br0\" }
delete element inet tether fwd_out { \"br0\" }
delete element inet tether nat_in { \"br0\" }
delete element inet tether tether_bridges { \"br0\" }
delete element inet tether hairpin_ifs { \"br0\" . \"br0\" }
flush chain inet tether ne40c292c_fwd
delete chain inet tether ne40c292c_fwd
flush chain inet tether ne40c292c_nat
delete chain inet tether ne40c292c_nat
delete set inet tether ne40c292c_c4
delete set inet tether ne40c292c_c6
";
        assert_eq!(
            render(
                &teardown(NetworkId::of("a"), &installed, &leftovers),
                Family::Inet
            ),
            expected
        );
    }
}
