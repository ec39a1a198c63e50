//! Tables, base chains and rules as nf_tables messages: a small typed model of the few expressions tether
//! writes over netlink (the per-network ruleset goes through `nft -f`; see `firewall::render`). One
//! [`RulesetBatch`] is one transaction: the kernel applies all of it or none.

use super::requests::EncodedBatch;
use super::uapi::*;
use super::writer::MessageWriter;

/// A 16-byte data register (NFT_REG_1 .. NFT_REG_4), where loads put their result and matches read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    R1 = 1,
    R2 = 2,
}

/// Where a payload load reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Network,
    Transport,
}

/// One expression of a rule. Values are laid out as the kernel compares them (network byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta l4proto` into a register.
    L4Proto(Register),
    /// `len` bytes at `offset` of a header into a register.
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        into: Register,
    },
    /// The register equals `value`, else the rule ends here.
    Equals(Register, Vec<u8>),
    /// Puts `value` into a register.
    Immediate(Register, Vec<u8>),
    /// IPv4 destination NAT to the address in `addr` and the port in `port`.
    Dnat4 { addr: Register, port: Register },
}

impl Expr {
    fn encode(&self, w: &mut MessageWriter) {
        let reg = |r: &Register| *r as u32;
        w.begin_nested(NFTA_LIST_ELEM);
        match self {
            Expr::L4Proto(into) => {
                w.put_str(NFTA_EXPR_NAME, "meta");
                w.begin_nested(NFTA_EXPR_DATA);
                w.put_be32(NFTA_META_DREG, reg(into));
                w.put_be32(NFTA_META_KEY, NFT_META_L4PROTO);
            }
            Expr::Payload {
                base,
                offset,
                len,
                into,
            } => {
                w.put_str(NFTA_EXPR_NAME, "payload");
                w.begin_nested(NFTA_EXPR_DATA);
                w.put_be32(NFTA_PAYLOAD_DREG, reg(into));
                w.put_be32(
                    NFTA_PAYLOAD_BASE,
                    match base {
                        PayloadBase::Network => NFT_PAYLOAD_NETWORK_HEADER,
                        PayloadBase::Transport => NFT_PAYLOAD_TRANSPORT_HEADER,
                    },
                );
                w.put_be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.put_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Equals(sreg, value) => {
                w.put_str(NFTA_EXPR_NAME, "cmp");
                w.begin_nested(NFTA_EXPR_DATA);
                w.put_be32(NFTA_CMP_SREG, reg(sreg));
                w.put_be32(NFTA_CMP_OP, NFT_CMP_EQ);
                w.begin_nested(NFTA_CMP_DATA);
                w.put_bytes(NFTA_DATA_VALUE, value);
                w.end_nested();
            }
            Expr::Immediate(dreg, value) => {
                w.put_str(NFTA_EXPR_NAME, "immediate");
                w.begin_nested(NFTA_EXPR_DATA);
                w.put_be32(NFTA_IMMEDIATE_DREG, reg(dreg));
                w.begin_nested(NFTA_IMMEDIATE_DATA);
                w.put_bytes(NFTA_DATA_VALUE, value);
                w.end_nested();
            }
            Expr::Dnat4 { addr, port } => {
                w.put_str(NFTA_EXPR_NAME, "nat");
                w.begin_nested(NFTA_EXPR_DATA);
                w.put_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                w.put_be32(NFTA_NAT_FAMILY, NFPROTO_IPV4 as u32);
                w.put_be32(NFTA_NAT_REG_ADDR_MIN, reg(addr));
                w.put_be32(NFTA_NAT_REG_PROTO_MIN, reg(port));
            }
        }
        w.end_nested(); // NFTA_EXPR_DATA
        w.end_nested(); // NFTA_LIST_ELEM
    }
}

/// A base chain: where it hooks in and what kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub name: String,
    /// "filter", "nat" or "route".
    pub kind: &'static str,
    /// NF_INET_* hook number.
    pub hook: u32,
    pub priority: i32,
}

/// One change to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Creates the table; one already there is kept as it is.
    AddTable,
    /// Deletes the table with everything in it (fails with ENOENT when absent).
    DeleteTable,
    /// Creates a base chain with policy accept.
    AddChain(BaseChain),
    /// Appends a rule to a chain.
    AddRule { chain: String, exprs: Vec<Expr> },
}

/// Changes to one table of one family, sent as one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetBatch {
    /// NFPROTO_* of the table.
    pub family: u8,
    pub table: String,
    pub changes: Vec<Change>,
}

impl RulesetBatch {
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
        for change in &self.changes {
            seq = seq.wrapping_add(1);
            self.encode_change(&mut w, change, seq);
            change_seqs.push(seq);
        }
        envelope(&mut w, NFNL_MSG_BATCH_END, seq.wrapping_add(1));
        EncodedBatch {
            bytes: w.into_bytes(),
            begin_seq: first_seq,
            change_seqs,
        }
    }

    fn encode_change(&self, w: &mut MessageWriter, change: &Change, seq: u32) {
        let acked = NLM_F_REQUEST | NLM_F_ACK;
        let (kind, flags) = match change {
            Change::AddTable => (NFT_MSG_NEWTABLE, acked | NLM_F_CREATE),
            Change::DeleteTable => (NFT_MSG_DELTABLE, acked),
            Change::AddChain(_) => (NFT_MSG_NEWCHAIN, acked | NLM_F_CREATE),
            Change::AddRule { .. } => (NFT_MSG_NEWRULE, acked | NLM_F_CREATE | NLM_F_APPEND),
        };
        w.begin_message(nft_type(kind), flags, seq, self.family, 0);
        match change {
            Change::AddTable | Change::DeleteTable => w.put_str(NFTA_TABLE_NAME, &self.table),
            Change::AddChain(chain) => {
                w.put_str(NFTA_CHAIN_TABLE, &self.table);
                w.put_str(NFTA_CHAIN_NAME, &chain.name);
                w.begin_nested(NFTA_CHAIN_HOOK);
                w.put_be32(NFTA_HOOK_HOOKNUM, chain.hook);
                w.put_be32(NFTA_HOOK_PRIORITY, chain.priority as u32);
                w.end_nested();
                w.put_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
                w.put_str(NFTA_CHAIN_TYPE, chain.kind);
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
        }
        w.end_message();
    }
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
                Change::AddChain(BaseChain {
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
                    Expr::L4Proto(Register::R1),
                    Expr::Equals(Register::R1, vec![17]),
                    Expr::Immediate(Register::R2, 5353u16.to_be_bytes().to_vec()),
                    Expr::Dnat4 {
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
