//! The nf_tables messages tether sends: set-element batches and the few lookups.

use std::net::IpAddr;

use super::uapi::*;
use super::writer::MessageWriter;
use crate::firewall::table;

/// What a set-element message does to its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOp {
    Add,
    /// Fails with ENOENT when an element is absent.
    Delete,
    /// Succeeds when an element is absent (kernel 6.3 and later).
    Destroy,
}

impl ElementOp {
    fn message_type(self) -> u8 {
        match self {
            ElementOp::Add => NFT_MSG_NEWSETELEM,
            ElementOp::Delete => NFT_MSG_DELSETELEM,
            ElementOp::Destroy => NFT_MSG_DESTROYSETELEM,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ElementOp::Add => "adding elements",
            ElementOp::Delete => "deleting elements",
            ElementOp::Destroy => "destroying elements",
        }
    }
}

/// One element: an address key and, in a verdict map, the chain to jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElement {
    pub key: IpAddr,
    pub jump: Option<String>,
}

/// The elements of one set (or map) changed by one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    pub op: ElementOp,
    pub set: String,
    pub elements: Vec<SetElement>,
}

/// A batch ready to send, and which sequence number stands for which change so that
/// the kernel's answers can be told apart.
#[derive(Debug)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    pub begin_seq: u32,
    /// Sequence number of each change, in the order of `changes`.
    pub change_seqs: Vec<u32>,
}

fn address_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn put_elements(w: &mut MessageWriter, set: &str, elements: &[SetElement]) {
    w.put_str(NFTA_SET_ELEM_LIST_TABLE, table::NAME);
    w.put_str(NFTA_SET_ELEM_LIST_SET, set);
    w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
    for element in elements {
        w.begin_nested(NFTA_LIST_ELEM);
        w.begin_nested(NFTA_SET_ELEM_KEY);
        w.put_bytes(NFTA_DATA_VALUE, &address_bytes(&element.key));
        w.end_nested();
        if let Some(chain) = &element.jump {
            w.begin_nested(NFTA_SET_ELEM_DATA);
            w.begin_nested(NFTA_DATA_VERDICT);
            w.put_be32(NFTA_VERDICT_CODE, NFT_JUMP as u32);
            w.put_str(NFTA_VERDICT_CHAIN, chain);
            w.end_nested();
            w.end_nested();
        }
        w.end_nested();
    }
    w.end_nested();
}

/// One transaction: BATCH_BEGIN, one message per change (each asking for an ack),
/// BATCH_END. Uses sequence numbers `first_seq ..= first_seq + changes.len() + 1`.
pub fn element_batch(changes: &[ElementChange], first_seq: u32) -> EncodedBatch {
    let mut w = MessageWriter::new();
    let mut seq = first_seq;
    w.begin_message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message();
    let mut change_seqs = Vec::with_capacity(changes.len());
    for change in changes {
        seq = seq.wrapping_add(1);
        let mut flags = NLM_F_REQUEST | NLM_F_ACK;
        if change.op == ElementOp::Add {
            flags |= NLM_F_CREATE;
        }
        w.begin_message(
            nft_type(change.op.message_type()),
            flags,
            seq,
            NFPROTO_INET,
            0,
        );
        put_elements(&mut w, &change.set, &change.elements);
        w.end_message();
        change_seqs.push(seq);
    }
    seq = seq.wrapping_add(1);
    w.begin_message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message();
    EncodedBatch {
        bytes: w.into_bytes(),
        begin_seq: first_seq,
        change_seqs,
    }
}

/// Looks up one chain of table `inet tether`; the answer carries its comment.
pub fn get_chain(chain: &str, seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETCHAIN),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NFPROTO_INET,
        0,
    );
    w.put_str(NFTA_CHAIN_TABLE, table::NAME);
    w.put_str(NFTA_CHAIN_NAME, chain);
    w.end_message();
    w.into_bytes()
}

/// Looks up given elements of a set; the kernel answers ENOENT if any one is absent.
pub fn get_elements(set: &str, keys: &[IpAddr], seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETSETELEM),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NFPROTO_INET,
        0,
    );
    let elements: Vec<SetElement> = keys
        .iter()
        .map(|key| SetElement {
            key: *key,
            jump: None,
        })
        .collect();
    put_elements(&mut w, set, &elements);
    w.end_message();
    w.into_bytes()
}

/// Lists every element of a set.
pub fn dump_elements(set: &str, seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETSETELEM),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        NFPROTO_INET,
        0,
    );
    w.put_str(NFTA_SET_ELEM_LIST_TABLE, table::NAME);
    w.put_str(NFTA_SET_ELEM_LIST_SET, set);
    w.end_message();
    w.into_bytes()
}

/// Asks for the ruleset generation id.
pub fn get_generation(seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETGEN),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NFPROTO_UNSPEC,
        0,
    );
    w.end_message();
    w.into_bytes()
}

/// Lists all chains of the inet family (the kernel does not filter chain dumps by table).
pub fn dump_chains(seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETCHAIN),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        NFPROTO_INET,
        0,
    );
    w.end_message();
    w.into_bytes()
}

/// Deletes table `inet tether` only if the ruleset is still at `generation`, so a network
/// installed after the caller looked is not swept away. Uses `first_seq ..= first_seq + 2`;
/// the deletion is `first_seq + 1`.
pub fn delete_table_if_unchanged(generation: u32, first_seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        first_seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.put_be32(NFNL_BATCH_GENID, generation);
    w.end_message();
    w.begin_message(
        nft_type(NFT_MSG_DELTABLE),
        NLM_F_REQUEST | NLM_F_ACK,
        first_seq.wrapping_add(1),
        NFPROTO_INET,
        0,
    );
    w.put_str(NFTA_TABLE_NAME, table::NAME);
    w.end_message();
    w.begin_message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        first_seq.wrapping_add(2),
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message();
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }

    #[test]
    fn newsetelem_message_bytes() {
        let changes = [ElementChange {
            op: ElementOp::Add,
            set: "n1_c4".into(),
            elements: vec![SetElement {
                key: "10.1.2.3".parse().unwrap(),
                jump: None,
            }],
        }];
        let batch = element_batch(&changes, 100);
        assert_eq!(batch.begin_seq, 100);
        assert_eq!(batch.change_seqs, vec![101]);

        let mut expected: Vec<u8> = Vec::new();
        // BATCH_BEGIN: len 20, type 0x10, flags REQUEST, seq 100, pid 0, nfgenmsg(0, 0, be16 10).
        expected.extend(20u32.to_ne_bytes());
        expected.extend(ne16(0x10));
        expected.extend(ne16(0x1));
        expected.extend(100u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        expected.extend([0, 0, 0, 10]);
        // NEWSETELEM: 16 + 4 + table(12) + set(12) + elements(4 + 4 + 4 + 8) = 64 bytes.
        expected.extend(64u32.to_ne_bytes());
        expected.extend(ne16(0x0a0c));
        expected.extend(ne16(0x1 | 0x4 | 0x400));
        expected.extend(101u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        expected.extend([1, 0, 0, 0]);
        expected.extend(ne16(11));
        expected.extend(ne16(1));
        expected.extend(b"tether\0\0");
        expected.extend(ne16(10));
        expected.extend(ne16(2));
        expected.extend(b"n1_c4\0\0\0");
        expected.extend(ne16(20));
        expected.extend(ne16(0x8003));
        expected.extend(ne16(16));
        expected.extend(ne16(0x8001));
        expected.extend(ne16(12));
        expected.extend(ne16(0x8001));
        expected.extend(ne16(8));
        expected.extend(ne16(1));
        expected.extend([10, 1, 2, 3]);
        // BATCH_END.
        expected.extend(20u32.to_ne_bytes());
        expected.extend(ne16(0x11));
        expected.extend(ne16(0x1));
        expected.extend(102u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        expected.extend([0, 0, 0, 10]);
        assert_eq!(batch.bytes, expected);
    }

    #[test]
    fn map_element_carries_a_jump_verdict() {
        let changes = [ElementChange {
            op: ElementOp::Add,
            set: "nat4".into(),
            elements: vec![SetElement {
                key: "10.0.0.2".parse().unwrap(),
                jump: Some("n1_nat".into()),
            }],
        }];
        let bytes = element_batch(&changes, 1).bytes;
        let mut data = Vec::new();
        // NFTA_SET_ELEM_DATA { NFTA_DATA_VERDICT { CODE be32(-3), CHAIN "n1_nat\0" } }
        data.extend(ne16(4 + 4 + 8 + 12));
        data.extend(ne16(0x8002));
        data.extend(ne16(4 + 8 + 12));
        data.extend(ne16(0x8002));
        data.extend(ne16(8));
        data.extend(ne16(1));
        data.extend([0xff, 0xff, 0xff, 0xfd]);
        data.extend(ne16(11));
        data.extend(ne16(2));
        data.extend(b"n1_nat\0\0");
        assert!(bytes.windows(data.len()).any(|w| w == data.as_slice()));
    }

    #[test]
    fn delete_has_no_create_flag_and_destroy_uses_its_type() {
        let change = |op| ElementChange {
            op,
            set: "s".into(),
            elements: vec![SetElement {
                key: "fd00::1".parse().unwrap(),
                jump: None,
            }],
        };
        let del = element_batch(&[change(ElementOp::Delete)], 1).bytes;
        assert_eq!(&del[24..26], &ne16(0x0a0e));
        assert_eq!(&del[26..28], &ne16(0x5));
        let destroy = element_batch(&[change(ElementOp::Destroy)], 1).bytes;
        assert_eq!(&destroy[24..26], &ne16(0x0a1e));
    }
}
