//! Service balancing inside a client container's namespace: connections to a VIP are DNATed to one of the
//! service's backends before they leave the client (no balancer in the path, no SNAT: the backend sees
//! the client's own address, and the reply is un-NATed by the client's own conntrack). This works the same
//! on every driver (a macvlan container's traffic to a neighbour never meets the host).
//!
//! ```text
//! table inet tether_svc {
//!   map svc4 { type ipv4_addr . inet_proto . inet_service : verdict }      # VIP.proto.port -> lb chain
//!   map be4  { type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service }
//!   set vip4 { type ipv4_addr }                                            # every VIP (unknown ports)
//!   (and svc6, be6, vip6)
//!   chain out { type nat hook output priority dstnat;
//!     ip daddr . meta l4proto . th dport vmap @svc4; ip daddr @vip4 jump no_backend; (ip6 alike) }
//!   chain lb4_rN { dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N map @be4 }
//!   chain lb4_hN { dnat ip to ip daddr . meta l4proto . th dport . jhash ip saddr mod N map @be4 }
//!   chain no_backend { ct state new meta l4proto tcp reject with tcp reset;
//!                      ct state new reject with icmpx port-unreachable }
//! }
//! ```
//!
//! A service with N backends holds slots 0..N-1 in `be4` and a `svc4` element jumping to `lb4_rN`. A
//! backend that comes takes slot N; one that goes is replaced by the last slot's backend: at most five
//! element changes and no rule is rewritten (an `lbN` chain is written once per namespace, the first time
//! some service has N backends). Only a connection's first packet meets a nat chain, so conntrack alone
//! keeps flows on their backend; nothing here ever ends one.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;

use super::balancing::{jump_target, set_dispatch, BalancingChain};
use super::netlink::replies;
use super::netlink::requests::{
    self, address_bytes, concat_bytes, ElementChange, ElementData, ElementOp, SetElement,
};
use super::netlink::ruleset::{
    BaseChain, Change, CtKey, Expr, MapData, MetaKey, PayloadBase, Register, RulesetBatch, SetSpec,
    Verdict,
};
use super::netlink::socket::NfSocket;
use super::netlink::uapi::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NF_INET_LOCAL_OUT};
use super::render::exprs::ct_any;
use super::render::{
    concatenation, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_IP6ADDR, TYPE_IPADDR, TYPE_MARK,
};
use super::table::Family;
use super::{FirewallError, Protocol};

/// The table, in a client container's namespace.
pub const TABLE: &str = "tether_svc";
const OUT_CHAIN: &str = "out";
const REJECT_CHAIN: &str = "no_backend";
/// `ct state new`.
const CT_STATE_NEW: u32 = 0x8;
/// NF_IP_PRI_NAT_DST.
const DSTNAT: i32 = -100;
const IPPROTO_TCP: u8 = 6;
/// `jhash`'s seed: fixed, so a tetherd restart keeps each client on its backend.
const HASH_SEED: u32 = 0x7e7e_5e5e;

/// One port of one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub vip: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

/// The maps, sets and chains of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn of(ip: &IpAddr) -> Fam {
        if ip.is_ipv4() {
            Fam::V4
        } else {
            Fam::V6
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "4",
            Fam::V6 => "6",
        }
    }
    fn dispatch_map(self) -> String {
        format!("svc{}", self.suffix())
    }
    fn backend_map(self) -> String {
        format!("be{}", self.suffix())
    }
    fn vip_set(self) -> String {
        format!("vip{}", self.suffix())
    }
    fn nfproto(self) -> u8 {
        match self {
            Fam::V4 => NFPROTO_IPV4,
            Fam::V6 => NFPROTO_IPV6,
        }
    }
    fn addr(self) -> (u32, u32) {
        match self {
            Fam::V4 => (TYPE_IPADDR, 4),
            Fam::V6 => (TYPE_IP6ADDR, 16),
        }
    }
    /// Offset and length of the source address in the network header (the destination follows it).
    fn saddr(self) -> (u32, u32) {
        match self {
            Fam::V4 => (12, 4),
            Fam::V6 => (8, 16),
        }
    }
    /// Register words an address takes.
    fn words(self) -> u32 {
        match self {
            Fam::V4 => 1,
            Fam::V6 => 4,
        }
    }
}

/// An `lb` chain: per family, backend count and whether the client address picks the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LbChain {
    fam: Fam,
    count: u32,
    affinity: bool,
}

impl BalancingChain for LbChain {
    fn name(self) -> String {
        let how = if self.affinity { "h" } else { "r" };
        format!("lb{}_{how}{}", self.fam.suffix(), self.count)
    }

    /// `dnat to daddr . l4proto . dport . (numgen|jhash saddr) map @beF`.
    fn rule(self) -> Vec<Expr> {
        let fam = self.fam;
        let w = fam.words();
        let (saddr, len) = fam.saddr();
        let mut out = service_key(fam).to_vec();
        let slot = Register::word(w + 2);
        if self.affinity {
            // The source address goes to R3 (words 8-11), past the key's words.
            out.push(Expr::Payload {
                base: PayloadBase::Network,
                offset: saddr,
                len,
                into: Register::word(8),
            });
            out.push(Expr::JenkinsHash {
                from: Register::word(8),
                len,
                modulus: self.count,
                seed: HASH_SEED,
                into: slot,
            });
        } else {
            out.push(Expr::RandomNumber {
                modulus: self.count,
                into: slot,
            });
        }
        out.push(Expr::Lookup {
            set: fam.backend_map(),
            from: Register::R1,
            into: Some(Register::R1),
            inverted: false,
        });
        out.push(Expr::Dnat {
            family: fam.nfproto(),
            addr: Register::R1,
            port: Register::word(w),
        });
        out
    }
}

/// Loads a packet's service key, `daddr . l4proto . dport`, into R1 and the words after the address.
fn service_key(fam: Fam) -> [Expr; 3] {
    let (saddr, len) = fam.saddr();
    let w = fam.words();
    [
        Expr::Payload {
            base: PayloadBase::Network,
            offset: saddr + len,
            len,
            into: Register::R1,
        },
        Expr::Meta(MetaKey::L4Proto, Register::word(w)),
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            into: Register::word(w + 1),
        },
    ]
}

fn verdict_jump(chain: &str) -> Expr {
    Expr::Verdict(Verdict::Jump(chain.to_string()))
}

/// `daddr . l4proto . dport vmap @svcF` and `daddr @vipF jump no_backend`, behind a version check.
fn dispatch_rules(fam: Fam) -> [Vec<Expr>; 2] {
    let version = [
        Expr::Meta(MetaKey::NfProto, Register::R1),
        Expr::Equals(Register::R1, vec![fam.nfproto()]),
    ];
    let [daddr, l4proto, dport] = service_key(fam);
    let mut by_port = version.to_vec();
    by_port.extend([
        daddr.clone(),
        l4proto,
        dport,
        Expr::Lookup {
            set: fam.dispatch_map(),
            from: Register::R1,
            into: Some(Register::VERDICT),
            inverted: false,
        },
    ]);
    let mut any_port = version.to_vec();
    any_port.extend([
        daddr,
        Expr::Lookup {
            set: fam.vip_set(),
            from: Register::R1,
            into: None,
            inverted: false,
        },
        verdict_jump(REJECT_CHAIN),
    ]);
    [by_port, any_port]
}

fn sets() -> Vec<SetSpec> {
    const PROTO: (u32, u32) = (TYPE_INET_PROTOCOL, 1);
    const PORT: (u32, u32) = (TYPE_INET_SERVICE, 2);
    const SLOT: (u32, u32) = (TYPE_MARK, 4);
    let mut out = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        let addr = fam.addr();
        out.push(SetSpec {
            name: fam.dispatch_map(),
            key: concatenation(&[addr, PROTO, PORT]),
            data: Some(MapData::Verdict),
        });
        out.push(SetSpec {
            name: fam.backend_map(),
            key: concatenation(&[addr, PROTO, PORT, SLOT]),
            data: Some(MapData::Value(concatenation(&[addr, PORT]))),
        });
        out.push(SetSpec {
            name: fam.vip_set(),
            key: concatenation(&[addr]),
            data: None,
        });
    }
    out
}

/// The table as tetherd made it in one namespace: what each service's slots hold, so a change is a few
/// element updates computed here without asking the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BalanceTable {
    slots: HashMap<ServiceKey, Slots>,
    chains: HashSet<LbChain>,
    vips: HashSet<IpAddr>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Slots {
    backends: Vec<IpAddr>,
    affinity: bool,
}

fn key_prefix(key: &ServiceKey) -> Vec<u8> {
    concat_bytes(&[
        &address_bytes(&key.vip),
        &[key.protocol.number()],
        &key.port.to_be_bytes(),
    ])
}

fn element(op: ElementOp, set: String, element: SetElement) -> Change {
    Change::Elements(ElementChange {
        counted: false,
        family: Family::Inet,
        op,
        set,
        elements: vec![element],
    })
}

fn slot_change(key: &ServiceKey, slot: usize, backend: Option<IpAddr>) -> Change {
    let mut k = key_prefix(key);
    k.extend_from_slice(&(slot as u32).to_ne_bytes());
    let set = Fam::of(&key.vip).backend_map();
    match backend {
        Some(b) => {
            let mut add = element(
                ElementOp::Add,
                set,
                SetElement {
                    key: k,
                    data: Some(ElementData::Value(concat_bytes(&[
                        &address_bytes(&b),
                        &key.port.to_be_bytes(),
                    ]))),
                },
            );
            // Each slot counts the connections it sends to its backend (`tether service inspect`).
            if let Change::Elements(e) = &mut add {
                e.counted = true;
            }
            add
        }
        None => element(ElementOp::Delete, set, SetElement::key_only(k)),
    }
}

impl BalanceTable {
    /// A fresh, empty table (replacing whatever an earlier tetherd left), in one transaction.
    pub fn install(&mut self) -> Vec<Change> {
        *self = BalanceTable::default();
        let mut out = vec![Change::AddTable, Change::DeleteTable, Change::AddTable];
        out.extend(sets().into_iter().map(Change::AddSet));
        out.push(Change::AddChain {
            name: REJECT_CHAIN.into(),
            comment: None,
        });
        // `ct state new`, though a nat chain only ever sees new connections: a nat hook consults its
        // chains only for packets conntrack tracks, and nothing else here turns conntrack on in the
        // namespace until some service has a backend (a `dnat` does). Without it, a connection to a VIP
        // that never had one would leave unanswered instead of refused.
        let mut tcp = ct_any(CtKey::State, CT_STATE_NEW).to_vec();
        tcp.extend([
            Expr::Meta(MetaKey::L4Proto, Register::R1),
            Expr::Equals(Register::R1, vec![IPPROTO_TCP]),
            Expr::Reject { tcp_reset: true },
        ]);
        let mut other = ct_any(CtKey::State, CT_STATE_NEW).to_vec();
        other.push(Expr::Reject { tcp_reset: false });
        for exprs in [tcp, other] {
            out.push(Change::AddRule {
                chain: REJECT_CHAIN.into(),
                exprs,
            });
        }
        out.push(Change::AddBaseChain(BaseChain {
            name: OUT_CHAIN.into(),
            kind: "nat",
            hook: NF_INET_LOCAL_OUT,
            priority: DSTNAT,
        }));
        for fam in [Fam::V4, Fam::V6] {
            for exprs in dispatch_rules(fam) {
                out.push(Change::AddRule {
                    chain: OUT_CHAIN.into(),
                    exprs,
                });
            }
        }
        out
    }

    /// The backends now in `key`'s slots, in slot order.
    pub fn backends(&self, key: &ServiceKey) -> &[IpAddr] {
        self.slots
            .get(key)
            .map(|s| s.backends.as_slice())
            .unwrap_or(&[])
    }

    pub fn keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.slots.keys()
    }

    /// Makes `key` balance over `wanted` (only addresses of the VIP's family count): the element changes,
    /// and the backends that left (their flows' conntrack entries are the caller's to clear).
    pub fn set_backends(
        &mut self,
        key: ServiceKey,
        affinity: bool,
        wanted: &[IpAddr],
    ) -> (Vec<Change>, Vec<IpAddr>) {
        let fam = Fam::of(&key.vip);
        let wanted: Vec<IpAddr> = wanted
            .iter()
            .copied()
            .filter(|b| Fam::of(b) == fam)
            .collect();
        let known = self.slots.contains_key(&key);
        let slots = self.slots.entry(key).or_default();
        let before = (slots.backends.len(), slots.affinity);
        let mut changes = Vec::new();
        let mut gone = Vec::new();
        let mut i = 0;
        while i < slots.backends.len() {
            if wanted.contains(&slots.backends[i]) {
                i += 1;
                continue;
            }
            let last = slots.backends.len() - 1;
            gone.push(slots.backends[i]);
            if i != last {
                // The last slot's backend moves into the hole: the slots stay 0..N-1.
                changes.push(slot_change(&key, i, None));
                changes.push(slot_change(&key, i, Some(slots.backends[last])));
            }
            changes.push(slot_change(&key, last, None));
            slots.backends.swap_remove(i);
        }
        for b in wanted {
            if !slots.backends.contains(&b) {
                changes.push(slot_change(&key, slots.backends.len(), Some(b)));
                slots.backends.push(b);
            }
        }
        slots.affinity = affinity;
        let count = slots.backends.len() as u32;
        if known && before == (count as usize, affinity) {
            return (changes, gone);
        }
        let chain = (count > 0).then_some(LbChain {
            fam,
            count,
            affinity,
        });
        let target = jump_target(chain, REJECT_CHAIN, &mut self.chains, &mut changes);
        set_dispatch(
            SetElement::key_only(key_prefix(&key)),
            target,
            known,
            |op, e| element(op, fam.dispatch_map(), e),
            &mut changes,
        );
        (changes, gone)
    }

    /// Takes `key` out: its slots and its dispatch element.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Vec<Change> {
        let Some(slots) = self.slots.remove(key) else {
            return Vec::new();
        };
        let mut changes: Vec<Change> = (0..slots.backends.len())
            .map(|i| slot_change(key, i, None))
            .collect();
        changes.push(element(
            ElementOp::Delete,
            Fam::of(&key.vip).dispatch_map(),
            SetElement::key_only(key_prefix(key)),
        ));
        changes
    }

    /// Makes the set of VIPs (whose other ports are refused at once) exactly `vips`.
    pub fn set_vips(&mut self, vips: &HashSet<IpAddr>) -> Vec<Change> {
        let mut changes = Vec::new();
        for gone in self.vips.difference(vips) {
            changes.push(element(
                ElementOp::Delete,
                Fam::of(gone).vip_set(),
                SetElement::address(gone),
            ));
        }
        for new in vips.difference(&self.vips) {
            changes.push(element(
                ElementOp::Add,
                Fam::of(new).vip_set(),
                SetElement::address(new),
            ));
        }
        self.vips = vips.clone();
        changes
    }
}

/// How many changes go in one transaction. The kernel acks every message, and each ack takes about a
/// kilobyte of the socket's receive buffer (~208 KiB) until it is read after the send: a few thousand
/// changes at once (a new client on a network with hundreds of services) fail with ENOBUFS.
const CHANGES_PER_TRANSACTION: usize = 128;

/// Applies `changes` to table `inet tether_svc` of the calling thread's namespace: as one transaction
/// when they are few (every backend change is), else in order, in transactions of
/// [`CHANGES_PER_TRANSACTION`].
pub fn apply(changes: &[Change], op: &'static str) -> Result<(), FirewallError> {
    apply_to(TABLE, changes, op)
}

/// [`apply`] for another of tetherd's tables of this kind (the routing mesh's).
pub fn apply_to(table: &str, changes: &[Change], op: &'static str) -> Result<(), FirewallError> {
    if changes.is_empty() {
        return Ok(());
    }
    let changes = coalesce(changes);
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let mut outcome = Ok(());
    for chunk in changes.chunks(CHANGES_PER_TRANSACTION) {
        let batch = RulesetBatch {
            family: NFPROTO_INET,
            table: table.into(),
            changes: chunk.to_vec(),
        };
        let source = match batch.apply(&socket) {
            Ok(Ok(())) => continue,
            Ok(Err(refusal)) => io::Error::from_raw_os_error(refusal.errno),
            Err(source) => source,
        };
        outcome = Err(FirewallError::ServiceTable { op, source });
        break;
    }
    // See ResolverRedirect: the last release may wait for an RCU grace period; tetherd need not.
    socket.close_in_background();
    outcome
}

/// Runs of element changes with the same operation on the same set become one message: a new client
/// on a network with hundreds of services gets its maps in a few messages instead of thousands.
fn coalesce(changes: &[Change]) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    for change in changes {
        if let (Some(Change::Elements(last)), Change::Elements(next)) = (out.last_mut(), change) {
            if last.op == next.op
                && last.set == next.set
                && last.family == next.family
                && last.counted == next.counted
            {
                last.elements.extend(next.elements.iter().cloned());
                continue;
            }
        }
        out.push(change.clone());
    }
    out
}

/// Whether table `inet tether_svc` of the calling thread's namespace dispatches `key` (its `svc` map
/// holds VIP . protocol . port): what `tether inspect` checks in a client.
pub fn dispatches(key: &ServiceKey) -> Result<bool, FirewallError> {
    let fam = Fam::of(&key.vip);
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let seq = socket.reserve_seqs(1);
    let request = requests::get_elements_in(
        TABLE,
        Family::Inet,
        &fam.dispatch_map(),
        &[key_prefix(key)],
        seq,
    );
    let answer = socket.request(&request, seq);
    socket.close_in_background();
    match answer {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(libc::ENOENT)) => Ok(false),
        Ok(Err(errno)) => Err(FirewallError::ServiceTable {
            op: "looking up a VIP",
            source: io::Error::from_raw_os_error(errno),
        }),
        Err(source) => Err(FirewallError::ServiceTable {
            op: "looking up a VIP",
            source,
        }),
    }
}

/// Every slot element of table `inet tether_svc` in the calling thread's namespace, with its family
/// (none without the table).
fn slot_entries() -> Result<Vec<(Fam, replies::ElementEntry)>, FirewallError> {
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let mut out = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        let seq = socket.reserve_seqs(1);
        let request = requests::dump_elements_in(TABLE, Family::Inet, &fam.backend_map(), seq);
        let payloads = match socket.dump(&request, seq) {
            Ok(Ok(payloads)) => payloads,
            Ok(Err(libc::ENOENT)) => continue,
            Ok(Err(errno)) => {
                socket.close_in_background();
                return Err(FirewallError::ServiceTable {
                    op: "listing backend slots",
                    source: io::Error::from_raw_os_error(errno),
                });
            }
            Err(source) => {
                socket.close_in_background();
                return Err(FirewallError::ServiceTable {
                    op: "listing backend slots",
                    source,
                });
            }
        };
        out.extend(
            payloads
                .iter()
                .flat_map(|p| replies::element_entries(p))
                .map(|e| (fam, e)),
        );
    }
    socket.close_in_background();
    Ok(out)
}

/// The backend address a slot element's value names.
fn slot_backend(fam: Fam, entry: &replies::ElementEntry) -> Option<IpAddr> {
    let (_, len) = fam.addr();
    match (fam, entry.value.as_ref()?.get(..len as usize)) {
        (Fam::V4, Some(b)) => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        (Fam::V6, Some(b)) => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The backend addresses the slots of table `inet tether_svc` in the calling thread's namespace point to
/// (empty without the table): `tether doctor` looks for ones no container holds any more.
pub fn slot_backends() -> Result<Vec<IpAddr>, FirewallError> {
    let mut out: Vec<IpAddr> = slot_entries()?
        .iter()
        .filter_map(|(fam, e)| slot_backend(*fam, e))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Per backend of `key`, the packets its slots in the calling thread's namespace matched: the new
/// connections sent to it (only a flow's first packet meets the nat chain) since it took its slot.
pub fn slot_counters(key: &ServiceKey) -> Result<Vec<(IpAddr, u64)>, FirewallError> {
    let prefix = key_prefix(key);
    Ok(slot_entries()?
        .iter()
        .filter(|(_, e)| e.key.starts_with(&prefix))
        .filter_map(|(fam, e)| Some((slot_backend(*fam, e)?, e.counter?.packets)))
        .collect())
}

/// Removes the table from the calling thread's namespace; one that is not there is fine.
pub fn remove() -> Result<(), FirewallError> {
    apply(
        &[Change::AddTable, Change::DeleteTable],
        "removing the service table",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey {
            vip: "10.96.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn element_ops(changes: &[Change]) -> Vec<(ElementOp, String)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Elements(e) => Some((e.op, e.set.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_backend_leaving_the_middle_is_replaced_by_the_last_in_a_few_elements() {
        let mut t = BalanceTable::default();
        let all: Vec<IpAddr> = (2..12).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        t.set_backends(key(), false, &all);
        let mut fewer = all.clone();
        fewer.remove(3);
        let (changes, gone) = t.set_backends(key(), false, &fewer);
        assert_eq!(gone, vec![ip("10.0.0.5")]);
        // slot 3 replaced, slot 9 dropped, dispatch moved to lb4_r9 (its chain made once).
        let ops = element_ops(&changes);
        assert_eq!(ops.len(), 5, "{changes:?}");
        assert_eq!(t.backends(&key())[3], ip("10.0.0.11"));
        assert_eq!(t.backends(&key()).len(), 9);
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::AddChain { name, .. } if name == "lb4_r9")));
        // Back to ten: lb4_r10 exists already, so only elements change.
        let (changes, _) = t.set_backends(key(), false, &all);
        assert!(changes.iter().all(|c| matches!(c, Change::Elements(_))));
        assert_eq!(element_ops(&changes).len(), 3);
    }

    #[test]
    fn no_backend_jumps_to_the_reject_chain_and_other_families_are_ignored() {
        let mut t = BalanceTable::default();
        let (changes, _) = t.set_backends(key(), false, &[ip("fd00::2")]);
        let last = changes.last().unwrap();
        match last {
            Change::Elements(e) => assert_eq!(
                e.elements[0].data,
                Some(ElementData::Jump(REJECT_CHAIN.into()))
            ),
            other => panic!("{other:?}"),
        }
        assert!(t.backends(&key()).is_empty());
    }

    #[test]
    fn an_unchanged_service_costs_nothing() {
        let mut t = BalanceTable::default();
        t.set_backends(key(), true, &[ip("10.0.0.2")]);
        let (changes, gone) = t.set_backends(key(), true, &[ip("10.0.0.2")]);
        assert!(changes.is_empty() && gone.is_empty());
    }

    #[test]
    fn runs_of_one_operation_on_one_set_become_one_message() {
        let mut t = BalanceTable::default();
        let mut changes = Vec::new();
        for i in 0..50u8 {
            let k = ServiceKey {
                vip: IpAddr::from([10, 96, 0, i + 1]),
                ..key()
            };
            changes.extend(t.set_backends(k, false, &[]).0);
        }
        let vips = changes.len();
        let merged = coalesce(&changes);
        assert_eq!(merged.len(), 1, "{merged:?}");
        match &merged[0] {
            Change::Elements(e) => assert_eq!(e.elements.len(), vips),
            other => panic!("{other:?}"),
        }
        // Merging keeps every element change in its order (a delete and a re-add of one key stay apart).
        let (grow, _) = t.set_backends(key(), false, &[ip("10.0.0.2"), ip("10.0.0.3")]);
        let (shrink, _) = t.set_backends(key(), false, &[ip("10.0.0.3")]);
        let both: Vec<Change> = grow.into_iter().chain(shrink).collect();
        let flat = |changes: &[Change]| -> Vec<(ElementOp, String, Vec<u8>)> {
            changes
                .iter()
                .filter_map(|c| match c {
                    Change::Elements(e) => Some(e),
                    _ => None,
                })
                .flat_map(|e| {
                    e.elements
                        .iter()
                        .map(|el| (e.op, e.set.clone(), el.key.clone()))
                })
                .collect()
        };
        assert_eq!(flat(&coalesce(&both)), flat(&both));
        assert!(coalesce(&both).len() < both.len());
    }

    #[test]
    fn the_balancing_rule_concatenates_the_slot_after_the_port() {
        let rule = LbChain {
            fam: Fam::V6,
            count: 3,
            affinity: false,
        }
        .rule();
        assert!(rule.contains(&Expr::RandomNumber {
            modulus: 3,
            into: Register::word(6)
        }));
        assert!(matches!(rule.last(), Some(Expr::Dnat { port, .. }) if *port == Register::word(4)));
    }
}
