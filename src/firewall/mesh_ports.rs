//! The routing mesh's table in the host's own namespace: a service's published port answers on every local
//! address (from outside, from the host itself, from containers) and is DNATed to one replica, chosen in the
//! kernel from a map of slots, as `service_balance` does for VIPs inside clients.
//!
//! ```text
//! table inet tether_mesh {
//!   map ports4 { type inet_proto . inet_service : verdict }           # proto.hostport -> lb chain | refuse
//!   map be4 { type inet_proto . inet_service . mark : ipv4_addr . inet_service }   # slot -> replica
//!   (ports6, be6)
//!   set fwd_local, fwd_remote, refused { type inet_proto . inet_service }   # one counted element per port
//!   map peers { type ether_addr : mark }       # the mesh hosts that forward here, each its mark
//!   chain pre  { type nat hook prerouting priority dstnat - 1;
//!                meta l4proto . th dport @ports4 ct mark set ether saddr map @peers; jump dispatch }
//!   chain reply { type filter hook prerouting priority mangle;
//!                 ct direction reply ct mark & 0xffff == 0x0e7e meta mark set ct mark }
//!   chain out  { type nat hook output priority dstnat - 1; jump dispatch }
//!   chain dispatch { fib daddr type local meta nfproto ipv4 meta l4proto . th dport vmap @ports4 (ip6 alike) }
//!   chain lb4_lN { meta l4proto . th dport @fwd_local
//!                  dnat ip to meta l4proto . th dport . numgen random mod N map @be4 }
//!   chain lb4_sN { ip daddr != 127.0.0.0/8 meta mark set meta mark | 0x2000; ... @fwd_remote ... }  # remote, SNATed
//!   chain lb4_pN { ip daddr != 127.0.0.0/8 ... @fwd_remote ... }              # remote, client address kept
//!   chain refuse { meta l4proto . th dport @refused; tcp reset; icmpx port-unreachable }
//!   chain post { type nat hook postrouting priority srcnat - 1;
//!                ct status dnat meta mark & 0x2000 masquerade      # hairpin (marked by inet tether) and remote
//!                ct status dnat ip saddr 127.0.0.0/8 masquerade; ct status dnat ip6 saddr ::1 masquerade }
//! }
//! ```
//!
//! A port's slots hold the replicas its host forwards to now (the local ones, or the remote ones, which one
//! is `service::mesh`'s choice); a replica that comes or goes is at most five element changes, as in
//! `service_balance`. The counted elements are added once per published port, so their counters live as
//! long as the publication: connections forwarded locally, remotely, and refused.
//!
//! `peers` serves `--preserve-client-ip` across hosts: a connection another mesh host forwarded here keeps
//! the client's address, so its replies must go back through that host (whose conntrack un-NATs them),
//! not straight to the client. It is recognised by the forwarding host's MAC, marked in conntrack with
//! that host's [`peer_mark`], and its replies carry the mark into the routing decision, where a policy
//! route per mark (`service::mesh_return`) sends them to that host.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

use super::balancing::{jump_target, set_dispatch, BalancingChain};
use super::netlink::replies::{self, Counter};
use super::netlink::requests::{
    self, address_bytes, concat_bytes, ElementChange, ElementData, ElementOp, SetElement,
};
use super::netlink::ruleset::{
    BaseChain, Change, CtKey, DataType, Expr, MapData, MetaKey, PayloadBase, Register, SetSpec,
    Verdict,
};
use super::netlink::socket::NfSocket;
use super::netlink::uapi::{
    NFPROTO_IPV4, NFPROTO_IPV6, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING,
    RTN_LOCAL,
};
use super::render::{
    concatenation, exprs, IpFamily, TYPE_ETHERADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE,
    TYPE_IP6ADDR, TYPE_IPADDR, TYPE_MARK,
};
use super::table::{self, Family};
use super::{FirewallError, Protocol};

/// The table, in the host's namespace.
pub const TABLE: &str = "tether_mesh";
const DISPATCH_CHAIN: &str = "dispatch";
const REFUSE_CHAIN: &str = "refuse";
const LOCAL_COUNTS: &str = "fwd_local";
const REMOTE_COUNTS: &str = "fwd_remote";
const REFUSED_COUNTS: &str = "refused";
const PEERS_MAP: &str = "peers";
/// `priority mangle`: before the routing decision, as a reply's mark must be.
const MANGLE: i32 = -150;
/// The low half of every peer mark (bit 13, the hairpin bit, is clear); the high half is the peer's.
const PEER_MARK_TAG: u32 = 0x0e7e;
const PEER_MARK_MASK: u32 = 0xffff;
const CT_DIR_REPLY: u8 = 1;
/// Before `inet tether`'s published ports (dstnat): a mesh port wins over a container's `-p` of the same
/// port, which `tether-portmap` refuses anyway.
const DSTNAT_FIRST: i32 = -101;
const SRCNAT_FIRST: i32 = 99;
const IPPROTO_TCP: u8 = 6;
const CT_STATUS_DNAT: u32 = 0x20;
/// "Masquerade this DNATed flow": the bit `inet tether` sets on hairpin traffic, set here on flows to
/// remote replicas that are SNATed to this host.
pub const MASQUERADE_MARK: u32 = table::HAIRPIN_MARK;

/// The conntrack (and routing) mark of connections mesh host `host` forwarded here: the low 16 bits of
/// its address over [`PEER_MARK_TAG`], so it is the same on every host and after a restart; two hosts
/// whose addresses share their low 16 bits cannot both be peers (the caller keeps the first).
pub fn peer_mark(host: Ipv4Addr) -> u32 {
    (u32::from(host) & 0xffff) << 16 | PEER_MARK_TAG
}

/// One published port in one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeshKey {
    pub protocol: Protocol,
    pub host_port: u16,
    pub v6: bool,
}

/// Where a port's new connections go on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// DNAT to a replica on this host, the client's address kept.
    Local,
    /// DNAT to a replica on another host, SNATed to this host's address there.
    RemoteSnat,
    /// DNAT to a replica on another host, the client's address kept.
    RemotePreserve,
    /// Reset / port unreachable.
    Refuse,
}

impl Forward {
    fn letter(self) -> &'static str {
        match self {
            Forward::Local => "l",
            Forward::RemoteSnat => "s",
            Forward::RemotePreserve => "p",
            Forward::Refuse => "x",
        }
    }
    fn counter_set(self) -> &'static str {
        match self {
            Forward::Local => LOCAL_COUNTS,
            Forward::RemoteSnat | Forward::RemotePreserve => REMOTE_COUNTS,
            Forward::Refuse => REFUSED_COUNTS,
        }
    }
}

fn suffix(v6: bool) -> &'static str {
    if v6 {
        "6"
    } else {
        "4"
    }
}

fn dispatch_map(v6: bool) -> String {
    format!("ports{}", suffix(v6))
}

fn backend_map(v6: bool) -> String {
    format!("be{}", suffix(v6))
}

fn ip_family(v6: bool) -> IpFamily {
    if v6 {
        IpFamily::V6
    } else {
        IpFamily::V4
    }
}

/// An lb chain: per family, how it forwards and over how many slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LbChain {
    v6: bool,
    forward: Forward,
    count: u32,
}

/// `meta l4proto . th dport` into words 0 and 1.
fn proto_port() -> [Expr; 2] {
    [
        Expr::Meta(MetaKey::L4Proto, Register::word(0)),
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            into: Register::word(1),
        },
    ]
}

fn counted_lookup(set: &str) -> Vec<Expr> {
    let mut out = proto_port().to_vec();
    out.push(exprs::lookup(set, None));
    out
}

impl BalancingChain for LbChain {
    fn name(self) -> String {
        format!(
            "lb{}_{}{}",
            suffix(self.v6),
            self.forward.letter(),
            self.count
        )
    }

    fn rule(self) -> Vec<Expr> {
        let mut out = Vec::new();
        let remote = matches!(self.forward, Forward::RemoteSnat | Forward::RemotePreserve);
        if remote && !self.v6 {
            // 127.0.0.0/8 DNATed to another host would leave with a loopback source, which the kernel
            // drops: left alone, it reaches tetherd's held socket, whose relay asks again from this
            // host's own address (`service::mesh`).
            out.extend(exprs::address(IpFamily::V4, true));
            out.push(Expr::Bitwise {
                reg: Register::R1,
                mask: vec![255, 0, 0, 0],
                xor: vec![0; 4],
            });
            out.push(Expr::NotEquals(Register::R1, vec![127, 0, 0, 0]));
        }
        if self.forward == Forward::RemoteSnat {
            out.push(Expr::Meta(MetaKey::Mark, Register::R1));
            out.push(Expr::Bitwise {
                reg: Register::R1,
                mask: (!MASQUERADE_MARK).to_ne_bytes().to_vec(),
                xor: MASQUERADE_MARK.to_ne_bytes().to_vec(),
            });
            out.push(Expr::SetMeta(MetaKey::Mark, Register::R1));
        }
        out.extend(counted_lookup(self.forward.counter_set()));
        out.extend(proto_port());
        out.push(Expr::RandomNumber {
            modulus: self.count,
            into: Register::word(2),
        });
        out.push(exprs::lookup(&backend_map(self.v6), Some(Register::R1)));
        let (nfproto, addr_words) = if self.v6 {
            (NFPROTO_IPV6, 4)
        } else {
            (NFPROTO_IPV4, 1)
        };
        out.push(Expr::Dnat {
            family: nfproto,
            addr: Register::R1,
            port: Register::word(addr_words),
        });
        out
    }
}

fn sets() -> Vec<SetSpec> {
    const PROTO: (u32, u32) = (TYPE_INET_PROTOCOL, 1);
    const PORT: (u32, u32) = (TYPE_INET_SERVICE, 2);
    const SLOT: (u32, u32) = (TYPE_MARK, 4);
    let mut out = Vec::new();
    for v6 in [false, true] {
        let addr = if v6 {
            (TYPE_IP6ADDR, 16)
        } else {
            (TYPE_IPADDR, 4)
        };
        out.push(SetSpec {
            name: dispatch_map(v6),
            key: concatenation(&[PROTO, PORT]),
            data: Some(MapData::Verdict),
        });
        out.push(SetSpec {
            name: backend_map(v6),
            key: concatenation(&[PROTO, PORT, SLOT]),
            data: Some(MapData::Value(concatenation(&[addr, PORT]))),
        });
    }
    for name in [LOCAL_COUNTS, REMOTE_COUNTS, REFUSED_COUNTS] {
        out.push(SetSpec {
            name: name.into(),
            key: concatenation(&[PROTO, PORT]),
            data: None,
        });
    }
    out.push(SetSpec {
        name: PEERS_MAP.into(),
        // Six bytes, not a register's eight: nft lists the elements as MACs.
        key: DataType {
            len: 6,
            ..concatenation(&[(TYPE_ETHERADDR, 6)])
        },
        data: Some(MapData::Value(concatenation(&[SLOT]))),
    });
    out
}

/// A new IPv4 connection to a published port from a peer's MAC: its conntrack mark is the peer's.
fn mark_peer_rule() -> Vec<Expr> {
    let mut out = exprs::ip_version(IpFamily::V4).to_vec();
    out.extend(proto_port());
    out.push(exprs::lookup(&dispatch_map(false), None));
    out.push(Expr::Payload {
        base: PayloadBase::Link,
        offset: 6,
        len: 6,
        into: Register::R1,
    });
    out.push(exprs::lookup(PEERS_MAP, Some(Register::R1)));
    out.push(Expr::SetCt(CtKey::Mark, Register::R1));
    out
}

/// A reply of a peer-marked connection carries the mark into the routing decision.
fn restore_peer_mark_rule() -> Vec<Expr> {
    vec![
        Expr::Ct(CtKey::Direction, Register::R1),
        Expr::Equals(Register::R1, vec![CT_DIR_REPLY]),
        Expr::Ct(CtKey::Mark, Register::R1),
        Expr::Bitwise {
            reg: Register::R1,
            mask: PEER_MARK_MASK.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Equals(Register::R1, PEER_MARK_TAG.to_ne_bytes().to_vec()),
        Expr::Ct(CtKey::Mark, Register::R1),
        Expr::SetMeta(MetaKey::Mark, Register::R1),
    ]
}

/// `fib daddr type local`, the family, then `l4proto . dport vmap @portsF`. IPv6 skips ::1: the kernel
/// drops replies NATed back to ::1 (IPv6 has no route_localnet), so tetherd's own socket on the port
/// takes those connections and relays them to 127.0.0.1 (`service::mesh`).
fn dispatch_rule(v6: bool) -> Vec<Expr> {
    let mut out = exprs::ip_version(ip_family(v6)).to_vec();
    if v6 {
        out.extend(exprs::address(IpFamily::V6, true).into_iter().skip(2));
        out.push(Expr::NotEquals(
            Register::R1,
            std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
        ));
    }
    out.push(Expr::FibDestinationType(Register::R1));
    out.push(Expr::Equals(Register::R1, RTN_LOCAL.to_ne_bytes().to_vec()));
    out.extend(proto_port());
    out.push(exprs::lookup(&dispatch_map(v6), Some(Register::VERDICT)));
    out
}

/// The postrouting rules: marked flows (hairpin, remote SNAT) and loopback sources are masqueraded.
fn masquerade_rules() -> Vec<Vec<Expr>> {
    let dnat = exprs::ct_any(CtKey::Status, CT_STATUS_DNAT);
    let mut marked = dnat.to_vec();
    marked.extend(exprs::mark_has(MASQUERADE_MARK));
    marked.push(Expr::Masquerade);
    let mut lo4 = dnat.to_vec();
    lo4.extend(exprs::address(IpFamily::V4, false));
    lo4.push(Expr::Bitwise {
        reg: Register::R1,
        mask: vec![255, 0, 0, 0],
        xor: vec![0; 4],
    });
    lo4.push(Expr::Equals(Register::R1, vec![127, 0, 0, 0]));
    lo4.push(Expr::Masquerade);
    let mut lo6 = dnat.to_vec();
    lo6.extend(exprs::address(IpFamily::V6, false));
    lo6.push(Expr::Equals(
        Register::R1,
        std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
    ));
    lo6.push(Expr::Masquerade);
    vec![marked, lo4, lo6]
}

fn element(op: ElementOp, set: &str, element: SetElement, counted: bool) -> Change {
    Change::Elements(ElementChange {
        counted,
        family: Family::Inet,
        op,
        set: set.to_string(),
        elements: vec![element],
    })
}

fn port_key(protocol: Protocol, port: u16) -> Vec<u8> {
    concat_bytes(&[&[protocol.number()], &port.to_be_bytes()])
}

/// What one port's slots hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortSlots {
    target_port: u16,
    forward: Forward,
    backends: Vec<IpAddr>,
}

/// The mesh table as tetherd made it: each port's slots, so a change is computed here without asking
/// the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MeshTable {
    ports: HashMap<MeshKey, PortSlots>,
    chains: HashSet<LbChain>,
    /// The (protocol, port)s with counted elements.
    counted: HashSet<(Protocol, u16)>,
    /// The peers map: a forwarding host's MAC and its mark.
    peers: HashMap<[u8; 6], u32>,
}

/// Makes the slots hold `wanted`: a replica that leaves is replaced by the last slot's, a new one takes
/// the next slot.
fn fill_slots(
    key: &MeshKey,
    slots: &mut PortSlots,
    wanted: &[IpAddr],
    changes: &mut Vec<Change>,
    gone: &mut Vec<IpAddr>,
) {
    let port = slots.target_port;
    let mut i = 0;
    while i < slots.backends.len() {
        if wanted.contains(&slots.backends[i]) {
            i += 1;
            continue;
        }
        let last = slots.backends.len() - 1;
        gone.push(slots.backends[i]);
        if i != last {
            changes.push(slot_change(key, i, None));
            changes.push(slot_change(key, i, Some((slots.backends[last], port))));
        }
        changes.push(slot_change(key, last, None));
        slots.backends.swap_remove(i);
    }
    for &b in wanted {
        if !slots.backends.contains(&b) {
            changes.push(slot_change(key, slots.backends.len(), Some((b, port))));
            slots.backends.push(b);
        }
    }
}

fn slot_change(key: &MeshKey, slot: usize, target: Option<(IpAddr, u16)>) -> Change {
    let mut k = port_key(key.protocol, key.host_port);
    k.extend_from_slice(&(slot as u32).to_ne_bytes());
    let set = backend_map(key.v6);
    match target {
        Some((addr, port)) => element(
            ElementOp::Add,
            &set,
            SetElement {
                key: k,
                data: Some(ElementData::Value(concat_bytes(&[
                    &address_bytes(&addr),
                    &port.to_be_bytes(),
                ]))),
            },
            false,
        ),
        None => element(ElementOp::Delete, &set, SetElement::key_only(k), false),
    }
}

impl MeshTable {
    /// A fresh, empty table (replacing whatever an earlier tetherd left), in one transaction.
    pub fn install(&mut self) -> Vec<Change> {
        *self = MeshTable::default();
        let mut out = vec![Change::AddTable, Change::DeleteTable, Change::AddTable];
        out.extend(sets().into_iter().map(Change::AddSet));
        let chain = |name: &str| Change::AddChain {
            name: name.into(),
            comment: None,
        };
        let rule = |chain: &str, exprs: Vec<Expr>| Change::AddRule {
            chain: chain.into(),
            exprs,
        };
        out.push(chain(REFUSE_CHAIN));
        out.push(rule(REFUSE_CHAIN, counted_lookup(REFUSED_COUNTS)));
        out.push(rule(
            REFUSE_CHAIN,
            vec![
                Expr::Meta(MetaKey::L4Proto, Register::R1),
                Expr::Equals(Register::R1, vec![IPPROTO_TCP]),
                Expr::Reject { tcp_reset: true },
            ],
        ));
        out.push(rule(REFUSE_CHAIN, vec![Expr::Reject { tcp_reset: false }]));
        out.push(chain(DISPATCH_CHAIN));
        for v6 in [false, true] {
            out.push(rule(DISPATCH_CHAIN, dispatch_rule(v6)));
        }
        for (name, hook, priority) in [
            ("pre", NF_INET_PRE_ROUTING, DSTNAT_FIRST),
            ("out", NF_INET_LOCAL_OUT, DSTNAT_FIRST),
        ] {
            out.push(Change::AddBaseChain(BaseChain {
                name: name.into(),
                kind: "nat",
                hook,
                priority,
            }));
            if hook == NF_INET_PRE_ROUTING {
                out.push(rule(name, mark_peer_rule()));
            }
            out.push(rule(
                name,
                vec![Expr::Verdict(Verdict::Jump(DISPATCH_CHAIN.into()))],
            ));
        }
        out.push(Change::AddBaseChain(BaseChain {
            name: "reply".into(),
            kind: "filter",
            hook: NF_INET_PRE_ROUTING,
            priority: MANGLE,
        }));
        out.push(rule("reply", restore_peer_mark_rule()));
        out.push(Change::AddBaseChain(BaseChain {
            name: "post".into(),
            kind: "nat",
            hook: NF_INET_POST_ROUTING,
            priority: SRCNAT_FIRST,
        }));
        out.extend(masquerade_rules().into_iter().map(|e| rule("post", e)));
        out
    }

    pub fn keys(&self) -> impl Iterator<Item = &MeshKey> {
        self.ports.keys()
    }

    /// The replicas in `key`'s slots now, in slot order.
    pub fn backends(&self, key: &MeshKey) -> &[IpAddr] {
        self.ports
            .get(key)
            .map(|p| p.backends.as_slice())
            .unwrap_or(&[])
    }

    /// Makes `key` forward to `backends` (those of the key's family) on `target_port`, or refuse: the
    /// element changes, and the replicas that left (their UDP flows are the caller's to clear).
    pub fn set_port(
        &mut self,
        key: MeshKey,
        target_port: u16,
        forward: Forward,
        backends: &[IpAddr],
    ) -> (Vec<Change>, Vec<IpAddr>) {
        let mut changes = Vec::new();
        let mut gone = Vec::new();
        if self
            .ports
            .get(&key)
            .is_some_and(|p| p.target_port != target_port)
        {
            // Every slot's value names the port: start the port over.
            gone.extend(self.backends(&key).iter().copied());
            changes.extend(self.remove_port(&key));
        }
        if self.counted.insert((key.protocol, key.host_port)) {
            for set in [LOCAL_COUNTS, REMOTE_COUNTS, REFUSED_COUNTS] {
                let e = SetElement::key_only(port_key(key.protocol, key.host_port));
                changes.push(element(ElementOp::Add, set, e, true));
            }
        }
        let wanted: Vec<IpAddr> = if forward == Forward::Refuse {
            Vec::new()
        } else {
            backends
                .iter()
                .copied()
                .filter(|b| b.is_ipv6() == key.v6)
                .collect()
        };
        let known = self.ports.contains_key(&key);
        let slots = self.ports.entry(key).or_insert(PortSlots {
            target_port,
            forward,
            backends: Vec::new(),
        });
        let before = (slots.backends.len(), slots.forward);
        fill_slots(&key, slots, &wanted, &mut changes, &mut gone);
        slots.forward = forward;
        let count = slots.backends.len() as u32;
        if known && before == (count as usize, forward) {
            return (changes, gone);
        }
        let chain = (count > 0).then_some(LbChain {
            v6: key.v6,
            forward,
            count,
        });
        let target = jump_target(chain, REFUSE_CHAIN, &mut self.chains, &mut changes);
        set_dispatch(
            SetElement::key_only(port_key(key.protocol, key.host_port)),
            target,
            known,
            |op, e| element(op, &dispatch_map(key.v6), e, false),
            &mut changes,
        );
        (changes, gone)
    }

    /// Takes `key` out: its slots, its dispatch element, and its counted elements once neither family
    /// of the port is left.
    pub fn remove_port(&mut self, key: &MeshKey) -> Vec<Change> {
        let Some(slots) = self.ports.remove(key) else {
            return Vec::new();
        };
        let mut changes: Vec<Change> = (0..slots.backends.len())
            .map(|i| slot_change(key, i, None))
            .collect();
        let port = SetElement::key_only(port_key(key.protocol, key.host_port));
        changes.push(element(
            ElementOp::Delete,
            &dispatch_map(key.v6),
            port.clone(),
            false,
        ));
        let other = MeshKey {
            v6: !key.v6,
            ..*key
        };
        if !self.ports.contains_key(&other) && self.counted.remove(&(key.protocol, key.host_port)) {
            for set in [LOCAL_COUNTS, REMOTE_COUNTS, REFUSED_COUNTS] {
                changes.push(element(ElementOp::Delete, set, port.clone(), false));
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Makes the peers map hold `wanted` (MAC to mark): an element whose mark changed is deleted and
    /// added again.
    pub fn set_peers(&mut self, wanted: &HashMap<[u8; 6], u32>) -> Vec<Change> {
        let mut changes = Vec::new();
        let peer = |op, mac: &[u8; 6], mark: Option<u32>| {
            let e = SetElement {
                key: mac.to_vec(),
                data: mark.map(|m| ElementData::Value(m.to_ne_bytes().to_vec())),
            };
            element(op, PEERS_MAP, e, false)
        };
        self.peers.retain(|mac, mark| {
            let keep = wanted.get(mac) == Some(mark);
            if !keep {
                changes.push(peer(ElementOp::Delete, mac, None));
            }
            keep
        });
        for (mac, &mark) in wanted {
            if self.peers.insert(*mac, mark).is_none() {
                changes.push(peer(ElementOp::Add, mac, Some(mark)));
            }
        }
        changes
    }
}

/// Applies `changes` to table `inet tether_mesh` of the calling thread's namespace.
pub fn apply(changes: &[Change], op: &'static str) -> Result<(), FirewallError> {
    super::service_balance::apply_to(TABLE, changes, op)
}

/// Removes the table from the calling thread's namespace; one that is not there is fine.
pub fn remove() -> Result<(), FirewallError> {
    apply(
        &[Change::AddTable, Change::DeleteTable],
        "removing the mesh table",
    )
}

/// Connections a published port forwarded (or refused) since it was published on this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortCounters {
    pub forwarded_local: u64,
    pub forwarded_remote: u64,
    pub refused: u64,
}

/// Every published port's counters in the calling thread's namespace (empty without the table). A
/// connection's first packet is the only one that meets a nat chain, so packets are connections.
pub fn counters() -> Result<HashMap<(Protocol, u16), PortCounters>, FirewallError> {
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let mut out: HashMap<(Protocol, u16), PortCounters> = HashMap::new();
    for set in [LOCAL_COUNTS, REMOTE_COUNTS, REFUSED_COUNTS] {
        let seq = socket.reserve_seqs(1);
        let request = requests::dump_elements_in(TABLE, Family::Inet, set, seq);
        let source = match socket.dump(&request, seq) {
            Ok(Ok(payloads)) => {
                add_counts(&mut out, set, &payloads);
                continue;
            }
            Ok(Err(libc::ENOENT)) => break,
            Ok(Err(errno)) => io::Error::from_raw_os_error(errno),
            Err(source) => source,
        };
        socket.close_in_background();
        return Err(FirewallError::ServiceTable {
            op: "reading the mesh counters",
            source,
        });
    }
    socket.close_in_background();
    Ok(out)
}

fn add_counts(out: &mut HashMap<(Protocol, u16), PortCounters>, set: &str, payloads: &[Vec<u8>]) {
    {
        for entry in payloads.iter().flat_map(|p| replies::element_entries(p)) {
            let Some(key) = parse_port_key(&entry.key) else {
                continue;
            };
            let n = entry.counter.map_or(0, |c: Counter| c.packets);
            let c = out.entry(key).or_default();
            match set {
                LOCAL_COUNTS => c.forwarded_local = n,
                REMOTE_COUNTS => c.forwarded_remote = n,
                _ => c.refused = n,
            }
        }
    }
}

fn parse_port_key(key: &[u8]) -> Option<(Protocol, u16)> {
    let protocol = match key.first()? {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => return None,
    };
    let port = u16::from_be_bytes([*key.get(4)?, *key.get(5)?]);
    Some((protocol, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v6: bool) -> MeshKey {
        MeshKey {
            protocol: Protocol::Tcp,
            host_port: 8080,
            v6,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn elements(changes: &[Change]) -> Vec<(ElementOp, String)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Elements(e) => Some((e.op, e.set.clone())),
                _ => None,
            })
            .collect()
    }

    fn jump_target(changes: &[Change]) -> Option<String> {
        changes.iter().rev().find_map(|c| match c {
            Change::Elements(e) if e.op == ElementOp::Add && e.set.starts_with("ports") => {
                match &e.elements[0].data {
                    Some(ElementData::Jump(t)) => Some(t.clone()),
                    _ => None,
                }
            }
            _ => None,
        })
    }

    #[test]
    fn a_replica_leaving_costs_a_few_elements_and_no_rule() {
        let mut t = MeshTable::default();
        let all: Vec<IpAddr> = (2..7).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        let (first, _) = t.set_port(key(false), 80, Forward::Local, &all);
        assert_eq!(jump_target(&first).as_deref(), Some("lb4_l5"));
        // Three counted elements, five slots, one dispatch element.
        assert_eq!(elements(&first).len(), 9, "{first:?}");
        let (changes, gone) = t.set_port(key(false), 80, Forward::Local, &all[1..]);
        assert_eq!(gone, vec![ip("10.0.0.2")]);
        assert_eq!(elements(&changes).len(), 5, "{changes:?}");
        assert_eq!(t.backends(&key(false))[0], ip("10.0.0.6"));
        let (back, _) = t.set_port(key(false), 80, Forward::Local, &all);
        assert!(back.iter().all(|c| matches!(c, Change::Elements(_))));
    }

    #[test]
    fn no_replica_refuses_and_remote_replicas_get_their_own_chains() {
        let mut t = MeshTable::default();
        let (c, _) = t.set_port(key(false), 80, Forward::Local, &[]);
        assert_eq!(jump_target(&c).as_deref(), Some(REFUSE_CHAIN));
        let (c, _) = t.set_port(key(false), 80, Forward::RemoteSnat, &[ip("10.0.1.2")]);
        assert_eq!(jump_target(&c).as_deref(), Some("lb4_s1"));
        let (c, _) = t.set_port(key(false), 80, Forward::RemotePreserve, &[ip("10.0.1.2")]);
        assert_eq!(jump_target(&c).as_deref(), Some("lb4_p1"));
        // An IPv6 port with only IPv4 replicas refuses rather than reaching the host's own socket.
        let (c, _) = t.set_port(key(true), 80, Forward::Local, &[ip("10.0.0.2")]);
        assert_eq!(jump_target(&c).as_deref(), Some(REFUSE_CHAIN));
    }

    #[test]
    fn removing_both_families_of_a_port_removes_its_counters_too() {
        let mut t = MeshTable::default();
        t.set_port(key(false), 80, Forward::Local, &[ip("10.0.0.2")]);
        t.set_port(key(true), 80, Forward::Local, &[ip("fd00::2")]);
        let v4 = t.remove_port(&key(false));
        assert!(!elements(&v4).iter().any(|(_, s)| s == LOCAL_COUNTS));
        let v6 = t.remove_port(&key(true));
        assert_eq!(
            elements(&v6)
                .iter()
                .filter(|(op, _)| *op == ElementOp::Delete)
                .count(),
            5,
            "{v6:?}"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_new_target_port_starts_the_slots_over() {
        let mut t = MeshTable::default();
        t.set_port(key(false), 80, Forward::Local, &[ip("10.0.0.2")]);
        let (changes, gone) = t.set_port(key(false), 81, Forward::Local, &[ip("10.0.0.2")]);
        assert_eq!(gone, vec![ip("10.0.0.2")]);
        let values: Vec<&ElementData> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Elements(e) if e.set == "be4" && e.op == ElementOp::Add => {
                    e.elements[0].data.as_ref()
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            values,
            vec![&ElementData::Value(vec![10, 0, 0, 2, 0, 81, 0, 0])]
        );
    }

    #[test]
    fn peers_change_by_element_and_a_new_mark_replaces_the_old() {
        let mut t = MeshTable::default();
        let mac = [2, 0, 0, 0, 0, 1];
        let a = peer_mark(Ipv4Addr::new(192, 168, 77, 1));
        assert_eq!(a, 0x4d01_0e7e);
        assert_eq!(
            a & table::HAIRPIN_MARK,
            0,
            "a peer mark never looks like hairpin"
        );
        let add = t.set_peers(&HashMap::from([(mac, a)]));
        assert_eq!(
            elements(&add),
            vec![(ElementOp::Add, PEERS_MAP.to_string())]
        );
        assert!(t.set_peers(&HashMap::from([(mac, a)])).is_empty());
        let b = peer_mark(Ipv4Addr::new(192, 168, 77, 9));
        let moved = t.set_peers(&HashMap::from([(mac, b)]));
        assert_eq!(
            elements(&moved),
            vec![
                (ElementOp::Delete, PEERS_MAP.to_string()),
                (ElementOp::Add, PEERS_MAP.to_string())
            ]
        );
        let gone = t.set_peers(&HashMap::new());
        assert_eq!(
            elements(&gone),
            vec![(ElementOp::Delete, PEERS_MAP.to_string())]
        );
    }

    #[test]
    fn remote_snat_marks_before_it_loads_the_key() {
        let rule = LbChain {
            v6: false,
            forward: Forward::RemoteSnat,
            count: 2,
        }
        .rule();
        assert!(matches!(rule[7], Expr::SetMeta(MetaKey::Mark, _)));
        assert!(matches!(rule[4], Expr::NotEquals(_, ref v) if v == &[127, 0, 0, 0]));
        assert!(matches!(rule.last(), Some(Expr::Dnat { port, .. }) if *port == Register::word(1)));
        assert_eq!(
            parse_port_key(&port_key(Protocol::Udp, 5353)),
            Some((Protocol::Udp, 5353))
        );
    }
}
