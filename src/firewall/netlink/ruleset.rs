//! Tables, chains, sets and rules as nf_tables messages: a small typed model of the expressions tether
//! writes (what they mean is `firewall::render`'s business). One [`RulesetBatch`] is one transaction: the
//! kernel applies all of it or none.

use std::io;

use super::requests::{put_elements, ElementChange, EncodedBatch};
use super::socket::NfSocket;
use super::uapi::*;
use super::verdict::put_verdict;
pub use super::verdict::Verdict;
use super::writer::MessageWriter;

/// A data register: NFT_REG_VERDICT, a 16-byte NFT_REG_n, or a 32-bit word (NFT_REG32_nn). Loads put their
/// result there, matches and statements read it; a concatenation occupies consecutive words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register(u32);

impl Register {
    pub const VERDICT: Register = Register(NFT_REG_VERDICT);
    pub const R1: Register = Register(1);
    pub const R2: Register = Register(2);

    /// The 32-bit word `n` words from the start of R1 (R1 is words 0-3, R2 words 4-7).
    pub const fn word(n: u32) -> Register {
        Register(NFT_REG32_00 + n)
    }
}

/// Where a payload load reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Link,
    Network,
    Transport,
}

/// Packet metadata a rule reads or sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `meta l4proto`: one byte.
    L4Proto,
    /// `meta nfproto`: one byte, NFPROTO_IPV4 or NFPROTO_IPV6 (in an inet table).
    NfProto,
    /// `iifname` / `oifname`: IFNAMSIZ bytes.
    InputName,
    OutputName,
    /// `meta mark`: a host-order u32.
    Mark,
    /// `meta secpath`: one byte, 1 when the packet came out of an IPsec state (`meta secpath missing` is 0).
    SecPath,
}

/// Conntrack state a rule reads: host-order u32 bit fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state` (NEW, ESTABLISHED, ...).
    State,
    /// `ct status` (IPS_* bits: DNAT, ...).
    Status,
    /// `ct direction`: one byte, 0 original, 1 reply.
    Direction,
    /// `ct mark`: a host-order u32, kept with the connection.
    Mark,
}

impl CtKey {
    fn number(self) -> u32 {
        match self {
            CtKey::State => NFT_CT_STATE,
            CtKey::Status => NFT_CT_STATUS,
            CtKey::Direction => NFT_CT_DIRECTION,
            CtKey::Mark => NFT_CT_MARK,
        }
    }
}

/// One expression of a rule. Values are laid out as the kernel compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta(MetaKey, Register),
    /// Sets the meta key from a register.
    SetMeta(MetaKey, Register),
    Ct(CtKey, Register),
    /// Sets the conntrack key (`ct mark set`) from a register.
    SetCt(CtKey, Register),
    /// `len` bytes at `offset` of a header into a register.
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        into: Register,
    },
    /// Writes `len` bytes from a register over the header at `offset`, and updates the internet checksum
    /// at `checksum_at` of the same header when given (the kernel leaves a checksum it will compute
    /// later, CHECKSUM_PARTIAL, alone).
    SetPayload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        from: Register,
        checksum_at: Option<u32>,
    },
    /// `notrack`: conntrack leaves the packet alone, here and in every later hook.
    Notrack,
    /// `reg = (reg & mask) ^ xor`, over `mask.len()` bytes.
    Bitwise {
        reg: Register,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// The register equals `value`, else the rule ends here.
    Equals(Register, Vec<u8>),
    /// The register differs from `value`, else the rule ends here.
    NotEquals(Register, Vec<u8>),
    /// The register (and the words after it) is a key of `set` (is not, when `inverted`); a map's data
    /// goes to `into`.
    Lookup {
        set: String,
        from: Register,
        into: Option<Register>,
        inverted: bool,
    },
    /// `fib daddr type` into a register (a host-order u32 RTN_* type).
    FibDestinationType(Register),
    /// Puts `value` into a register.
    Immediate(Register, Vec<u8>),
    Verdict(Verdict),
    /// Destination NAT (NFPROTO_IPV4 or NFPROTO_IPV6) to the address in `addr` and the port in `port`.
    Dnat {
        family: u8,
        addr: Register,
        port: Register,
    },
    Masquerade,
    /// `numgen random mod MODULUS` into a register: a host-order u32 in 0..MODULUS.
    RandomNumber {
        modulus: u32,
        into: Register,
    },
    /// `jhash` of `len` bytes from `from`, `mod MODULUS seed SEED`, into a register.
    JenkinsHash {
        from: Register,
        len: u32,
        modulus: u32,
        seed: u32,
        into: Register,
    },
    /// `reject with tcp reset` (for TCP only) or `reject with icmpx port-unreachable`.
    Reject {
        tcp_reset: bool,
    },
}

/// The data of an NFTA_*_DATA attribute: a value, or a verdict.
fn put_data(w: &mut MessageWriter, kind: u16, value: &[u8]) {
    w.begin_nested(kind);
    w.put_bytes(NFTA_DATA_VALUE, value);
    w.end_nested();
}

impl PayloadBase {
    /// The bytes a payload load or write covers: `len` bytes at `offset` of this header.
    fn put_span(self, w: &mut MessageWriter, offset: u32, len: u32) {
        let base = match self {
            PayloadBase::Link => NFT_PAYLOAD_LL_HEADER,
            PayloadBase::Network => NFT_PAYLOAD_NETWORK_HEADER,
            PayloadBase::Transport => NFT_PAYLOAD_TRANSPORT_HEADER,
        };
        w.put_be32(NFTA_PAYLOAD_BASE, base);
        w.put_be32(NFTA_PAYLOAD_OFFSET, offset);
        w.put_be32(NFTA_PAYLOAD_LEN, len);
    }
}

impl MetaKey {
    fn number(self) -> u32 {
        match self {
            MetaKey::L4Proto => NFT_META_L4PROTO,
            MetaKey::NfProto => NFT_META_NFPROTO,
            MetaKey::InputName => NFT_META_IIFNAME,
            MetaKey::OutputName => NFT_META_OIFNAME,
            MetaKey::Mark => NFT_META_MARK,
            MetaKey::SecPath => NFT_META_SECPATH,
        }
    }
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta(..) | Expr::SetMeta(..) => "meta",
            Expr::Ct(..) | Expr::SetCt(..) => "ct",
            Expr::Payload { .. } | Expr::SetPayload { .. } => "payload",
            Expr::Notrack => "notrack",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Equals(..) | Expr::NotEquals(..) => "cmp",
            Expr::Lookup { .. } => "lookup",
            Expr::FibDestinationType(_) => "fib",
            Expr::Immediate(..) | Expr::Verdict(_) => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::RandomNumber { .. } => "numgen",
            Expr::JenkinsHash { .. } => "hash",
            Expr::Reject { .. } => "reject",
        }
    }

    fn encode(&self, w: &mut MessageWriter) {
        w.begin_nested(NFTA_LIST_ELEM);
        w.put_str(NFTA_EXPR_NAME, self.name());
        w.begin_nested(NFTA_EXPR_DATA);
        self.encode_data(w);
        w.end_nested(); // NFTA_EXPR_DATA
        w.end_nested(); // NFTA_LIST_ELEM
    }

    /// The expression's attributes: meta, ct, payload and bitwise here, the rest in `encode_compare_and_act`.
    fn encode_data(&self, w: &mut MessageWriter) {
        let reg = |r: &Register| r.0;
        match self {
            Expr::Meta(key, into) => {
                w.put_be32(NFTA_META_DREG, reg(into));
                w.put_be32(NFTA_META_KEY, key.number());
            }
            Expr::SetMeta(key, from) => {
                w.put_be32(NFTA_META_KEY, key.number());
                w.put_be32(NFTA_META_SREG, reg(from));
            }
            Expr::Ct(key, into) => {
                w.put_be32(NFTA_CT_DREG, reg(into));
                w.put_be32(NFTA_CT_KEY, key.number());
            }
            Expr::SetCt(key, from) => {
                w.put_be32(NFTA_CT_KEY, key.number());
                w.put_be32(NFTA_CT_SREG, reg(from));
            }
            Expr::Payload {
                base,
                offset,
                len,
                into,
            } => {
                w.put_be32(NFTA_PAYLOAD_DREG, reg(into));
                base.put_span(w, *offset, *len);
            }
            Expr::SetPayload {
                base,
                offset,
                len,
                from,
                checksum_at,
            } => {
                w.put_be32(NFTA_PAYLOAD_SREG, reg(from));
                base.put_span(w, *offset, *len);
                if let Some(at) = checksum_at {
                    w.put_be32(NFTA_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_INET);
                    w.put_be32(NFTA_PAYLOAD_CSUM_OFFSET, *at);
                }
            }
            Expr::Notrack => {}
            Expr::Bitwise { reg: r, mask, xor } => {
                w.put_be32(NFTA_BITWISE_SREG, reg(r));
                w.put_be32(NFTA_BITWISE_DREG, reg(r));
                w.put_be32(NFTA_BITWISE_LEN, mask.len() as u32);
                put_data(w, NFTA_BITWISE_MASK, mask);
                put_data(w, NFTA_BITWISE_XOR, xor);
            }
            _ => self.encode_compare_and_act(w),
        }
    }

    fn encode_compare_and_act(&self, w: &mut MessageWriter) {
        let reg = |r: &Register| r.0;
        match self {
            Expr::Equals(sreg, value) | Expr::NotEquals(sreg, value) => {
                w.put_be32(NFTA_CMP_SREG, reg(sreg));
                let op = match self {
                    Expr::Equals(..) => NFT_CMP_EQ,
                    _ => NFT_CMP_NEQ,
                };
                w.put_be32(NFTA_CMP_OP, op);
                put_data(w, NFTA_CMP_DATA, value);
            }
            Expr::Lookup {
                set,
                from,
                into,
                inverted,
            } => {
                w.put_str(NFTA_LOOKUP_SET, set);
                w.put_be32(NFTA_LOOKUP_SREG, reg(from));
                if let Some(into) = into {
                    w.put_be32(NFTA_LOOKUP_DREG, reg(into));
                }
                if *inverted {
                    w.put_be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::FibDestinationType(into) => {
                w.put_be32(NFTA_FIB_DREG, reg(into));
                w.put_be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                w.put_be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
            }
            Expr::Immediate(dreg, value) => {
                w.put_be32(NFTA_IMMEDIATE_DREG, reg(dreg));
                put_data(w, NFTA_IMMEDIATE_DATA, value);
            }
            Expr::Verdict(verdict) => {
                w.put_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                put_verdict(w, NFTA_IMMEDIATE_DATA, verdict);
            }
            Expr::Dnat { family, addr, port } => {
                w.put_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                w.put_be32(NFTA_NAT_FAMILY, *family as u32);
                w.put_be32(NFTA_NAT_REG_ADDR_MIN, reg(addr));
                w.put_be32(NFTA_NAT_REG_PROTO_MIN, reg(port));
            }
            Expr::Masquerade => {}
            Expr::RandomNumber { modulus, into } => {
                w.put_be32(NFTA_NG_DREG, reg(into));
                w.put_be32(NFTA_NG_MODULUS, *modulus);
                w.put_be32(NFTA_NG_TYPE, NFT_NG_RANDOM);
            }
            Expr::JenkinsHash {
                from,
                len,
                modulus,
                seed,
                into,
            } => {
                w.put_be32(NFTA_HASH_SREG, reg(from));
                w.put_be32(NFTA_HASH_DREG, reg(into));
                w.put_be32(NFTA_HASH_LEN, *len);
                w.put_be32(NFTA_HASH_MODULUS, *modulus);
                w.put_be32(NFTA_HASH_SEED, *seed);
                w.put_be32(NFTA_HASH_TYPE, NFT_HASH_JENKINS);
            }
            Expr::Reject { tcp_reset: true } => {
                w.put_be32(NFTA_REJECT_TYPE, NFT_REJECT_TCP_RST);
            }
            Expr::Reject { tcp_reset: false } => {
                w.put_be32(NFTA_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
                w.put_bytes(NFTA_REJECT_ICMP_CODE, &[NFT_REJECT_ICMPX_PORT_UNREACH]);
            }
            Expr::Meta(..)
            | Expr::SetMeta(..)
            | Expr::Ct(..)
            | Expr::SetCt(..)
            | Expr::Payload { .. }
            | Expr::SetPayload { .. }
            | Expr::Notrack
            | Expr::Bitwise { .. } => unreachable!("register loads are encoded by encode_data"),
        }
    }
}

/// A base chain: where it hooks in and what kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub name: String,
    /// "filter", "nat" or "route".
    pub kind: &'static str,
    /// NF_INET_* (or NF_BR_*) hook number.
    pub hook: u32,
    pub priority: i32,
}

/// The type of a set's keys or a map's data: nft's datatype number (what `nft list` prints it as; a
/// concatenation packs its fields' numbers 6 bits each) and the length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataType {
    pub id: u32,
    pub len: u32,
    /// How nft should read a key of one field, kept in the set's userdata (the kernel ignores it).
    pub byteorder: Option<u32>,
}

/// A set, or a map when it has data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub key: DataType,
    pub data: Option<MapData>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapData {
    Verdict,
    Value(DataType),
}

/// One change to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Creates the table; one already there is kept as it is.
    AddTable,
    /// Creates the table; one already there refuses the transaction with EEXIST.
    CreateTable,
    /// Deletes the table with everything in it (fails with ENOENT when absent).
    DeleteTable,
    /// Creates a base chain with policy accept; one already there with the same hook is kept.
    AddBaseChain(BaseChain),
    /// Creates a regular chain; one already there is kept with its old comment.
    AddChain {
        name: String,
        comment: Option<String>,
    },
    /// Deletes every rule of a chain.
    FlushChain(String),
    DeleteChain(String),
    /// Appends a rule to a chain.
    AddRule {
        chain: String,
        exprs: Vec<Expr>,
    },
    /// Creates a set; one already there with the same types is kept.
    AddSet(SetSpec),
    DeleteSet(String),
    /// Adds or deletes elements (the change's family must be the batch's).
    Elements(ElementChange),
}

/// Changes to one table of one family, sent as one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetBatch {
    /// NFPROTO_* of the table.
    pub family: u8,
    pub table: String,
    pub changes: Vec<Change>,
}

/// A refused batch: which change the kernel refused first, and why. Nothing of the batch was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub errno: i32,
}

impl RulesetBatch {
    /// Sends the batch on `socket` as one transaction and waits for every answer.
    pub fn apply(&self, socket: &NfSocket) -> io::Result<Result<(), Refusal>> {
        let batch = self.encode(socket.reserve_seqs(self.changes.len() as u32 + 2));
        socket.send(&batch.bytes)?;
        let answers = socket.collect_acks(&batch.change_seqs, batch.begin_seq)?;
        let refused = batch
            .change_seqs
            .iter()
            .enumerate()
            .find_map(|(index, seq)| match answers.get(seq) {
                Some(0) | None => None,
                Some(errno) => Some(Refusal {
                    index,
                    errno: *errno,
                }),
            });
        Ok(refused.map_or(Ok(()), Err))
    }

    /// BATCH_BEGIN, one acked message per change, BATCH_END; uses sequence numbers
    /// `first_seq ..= first_seq + changes.len() + 1`.
    pub fn encode(&self, first_seq: u32) -> EncodedBatch {
        let mut w = MessageWriter::new();
        let envelope = |w: &mut MessageWriter, kind: u16, seq: u32| {
            w.begin_message(
                kind,
                NLM_F_REQUEST,
                seq,
                NFPROTO_UNSPEC,
                NFNL_SUBSYS_NFTABLES,
            );
            w.end_message();
        };
        envelope(&mut w, NFNL_MSG_BATCH_BEGIN, first_seq);
        let mut seq = first_seq;
        let mut change_seqs = Vec::with_capacity(self.changes.len());
        for (index, change) in self.changes.iter().enumerate() {
            seq = seq.wrapping_add(1);
            self.encode_change(&mut w, change, seq, index as u32 + 1);
            change_seqs.push(seq);
        }
        envelope(&mut w, NFNL_MSG_BATCH_END, seq.wrapping_add(1));
        EncodedBatch {
            bytes: w.into_bytes(),
            begin_seq: first_seq,
            change_seqs,
        }
    }

    /// `set_id` names a new set within the transaction (the kernel wants one; lookups here go by name).
    fn encode_change(&self, w: &mut MessageWriter, change: &Change, seq: u32, set_id: u32) {
        let acked = NLM_F_REQUEST | NLM_F_ACK;
        let (kind, flags) = match change {
            Change::AddTable => (NFT_MSG_NEWTABLE, acked | NLM_F_CREATE),
            Change::CreateTable => (NFT_MSG_NEWTABLE, acked | NLM_F_CREATE | NLM_F_EXCL),
            Change::DeleteTable => (NFT_MSG_DELTABLE, acked),
            Change::AddBaseChain(_) | Change::AddChain { .. } => {
                (NFT_MSG_NEWCHAIN, acked | NLM_F_CREATE)
            }
            Change::FlushChain(_) => (NFT_MSG_DELRULE, acked),
            Change::DeleteChain(_) => (NFT_MSG_DELCHAIN, acked),
            Change::AddRule { .. } => (NFT_MSG_NEWRULE, acked | NLM_F_CREATE | NLM_F_APPEND),
            Change::AddSet(_) => (NFT_MSG_NEWSET, acked | NLM_F_CREATE),
            Change::DeleteSet(_) => (NFT_MSG_DELSET, acked),
            Change::Elements(elements) => (elements.op.message_type(), elements.op.flags()),
        };
        w.begin_message(nft_type(kind), flags, seq, self.family, 0);
        match change {
            Change::AddTable | Change::CreateTable | Change::DeleteTable => {
                w.put_str(NFTA_TABLE_NAME, &self.table)
            }
            Change::AddBaseChain(chain) => {
                w.put_str(NFTA_CHAIN_TABLE, &self.table);
                w.put_str(NFTA_CHAIN_NAME, &chain.name);
                w.begin_nested(NFTA_CHAIN_HOOK);
                w.put_be32(NFTA_HOOK_HOOKNUM, chain.hook);
                w.put_be32(NFTA_HOOK_PRIORITY, chain.priority as u32);
                w.end_nested();
                w.put_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
                w.put_str(NFTA_CHAIN_TYPE, chain.kind);
            }
            Change::AddChain { name, comment } => {
                w.put_str(NFTA_CHAIN_TABLE, &self.table);
                w.put_str(NFTA_CHAIN_NAME, name);
                if let Some(comment) = comment {
                    w.put_bytes(NFTA_CHAIN_USERDATA, &comment_udata(comment));
                }
            }
            Change::FlushChain(chain) => {
                w.put_str(NFTA_RULE_TABLE, &self.table);
                w.put_str(NFTA_RULE_CHAIN, chain);
            }
            Change::DeleteChain(name) => {
                w.put_str(NFTA_CHAIN_TABLE, &self.table);
                w.put_str(NFTA_CHAIN_NAME, name);
            }
            Change::AddRule { chain, exprs } => {
                w.put_str(NFTA_RULE_TABLE, &self.table);
                w.put_str(NFTA_RULE_CHAIN, chain);
                w.begin_nested(NFTA_RULE_EXPRESSIONS);
                for expr in exprs {
                    expr.encode(w);
                }
                w.end_nested();
            }
            Change::AddSet(set) => {
                w.put_str(NFTA_SET_TABLE, &self.table);
                w.put_str(NFTA_SET_NAME, &set.name);
                let flags = if set.data.is_some() { NFT_SET_MAP } else { 0 };
                w.put_be32(NFTA_SET_FLAGS, flags);
                w.put_be32(NFTA_SET_KEY_TYPE, set.key.id);
                w.put_be32(NFTA_SET_KEY_LEN, set.key.len);
                match set.data {
                    Some(MapData::Verdict) => w.put_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT),
                    Some(MapData::Value(data)) => {
                        w.put_be32(NFTA_SET_DATA_TYPE, data.id);
                        w.put_be32(NFTA_SET_DATA_LEN, data.len);
                    }
                    None => {}
                }
                w.put_be32(NFTA_SET_ID, set_id);
                if let Some(order) = set.key.byteorder {
                    // NFTNL_UDATA_SET_KEYBYTEORDER: a host-order u32.
                    let mut udata = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
                    udata.extend_from_slice(&order.to_ne_bytes());
                    w.put_bytes(NFTA_SET_USERDATA, &udata);
                }
            }
            Change::DeleteSet(name) => {
                w.put_str(NFTA_SET_TABLE, &self.table);
                w.put_str(NFTA_SET_NAME, name);
            }
            Change::Elements(elements) => put_elements(w, &self.table, elements),
        }
        w.end_message();
    }
}

/// A comment as nft keeps it in a chain's userdata: TLV type 0, length, NUL-terminated text.
fn comment_udata(comment: &str) -> Vec<u8> {
    let text = &comment.as_bytes()[..comment.len().min(u8::MAX as usize - 1)];
    let mut udata = vec![NFTNL_UDATA_CHAIN_COMMENT, text.len() as u8 + 1];
    udata.extend_from_slice(text);
    udata.push(0);
    udata
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::netlink::reader::{attribute, attributes, messages};

    #[test]
    fn a_batch_is_one_message_per_change_between_begin_and_end() {
        let batch = RulesetBatch {
            family: NFPROTO_IPV4,
            table: "t".into(),
            changes: vec![
                Change::AddTable,
                Change::DeleteTable,
                Change::AddBaseChain(BaseChain {
                    name: "out".into(),
                    kind: "nat",
                    hook: NF_INET_LOCAL_OUT,
                    priority: -100,
                }),
            ],
        }
        .encode(40);
        assert_eq!(batch.change_seqs, vec![41, 42, 43]);
        let msgs = messages(&batch.bytes).unwrap();
        let kinds: Vec<u16> = msgs.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![
                NFNL_MSG_BATCH_BEGIN,
                nft_type(NFT_MSG_NEWTABLE),
                nft_type(NFT_MSG_DELTABLE),
                nft_type(NFT_MSG_NEWCHAIN),
                NFNL_MSG_BATCH_END
            ]
        );
        assert_eq!(msgs[4].seq, 44);
        let chain = &msgs[3].payload[NFGENMSG_LEN..];
        assert_eq!(msgs[3].payload[0], NFPROTO_IPV4);
        let hook = attribute(chain, NFTA_CHAIN_HOOK).unwrap();
        assert_eq!(
            attribute(hook, NFTA_HOOK_PRIORITY).unwrap(),
            (-100i32).to_be_bytes()
        );
        assert_eq!(attribute(chain, NFTA_CHAIN_TYPE).unwrap(), b"nat\0");
    }

    #[test]
    fn a_rule_carries_its_expressions_in_order_with_their_data() {
        let batch = RulesetBatch {
            family: NFPROTO_IPV4,
            table: "t".into(),
            changes: vec![Change::AddRule {
                chain: "out".into(),
                exprs: vec![
                    Expr::Meta(MetaKey::L4Proto, Register::R1),
                    Expr::Equals(Register::R1, vec![17]),
                    Expr::Immediate(Register::R2, 5353u16.to_be_bytes().to_vec()),
                    Expr::Dnat {
                        family: NFPROTO_IPV4,
                        addr: Register::R1,
                        port: Register::R2,
                    },
                ],
            }],
        }
        .encode(1);
        let msgs = messages(&batch.bytes).unwrap();
        let rule = &msgs[1].payload[NFGENMSG_LEN..];
        let exprs = attributes(attribute(rule, NFTA_RULE_EXPRESSIONS).unwrap());
        let names: Vec<&[u8]> = exprs
            .iter()
            .map(|(_, e)| attribute(e, NFTA_EXPR_NAME).unwrap())
            .collect();
        assert_eq!(
            names,
            vec![&b"meta\0"[..], b"cmp\0", b"immediate\0", b"nat\0"]
        );
        let cmp = attribute(exprs[1].1, NFTA_EXPR_DATA).unwrap();
        let data = attribute(attribute(cmp, NFTA_CMP_DATA).unwrap(), NFTA_DATA_VALUE);
        assert_eq!(data, Some(&[17u8][..]));
        let nat = attribute(exprs[3].1, NFTA_EXPR_DATA).unwrap();
        assert_eq!(
            attribute(nat, NFTA_NAT_REG_PROTO_MIN),
            Some(&2u32.to_be_bytes()[..])
        );
    }
}
