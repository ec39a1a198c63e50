//! The nf_tables messages tether sends: set-element batches and the few lookups.

use std::net::IpAddr;

use super::uapi::*;
use super::verdict::{put_verdict, Verdict};
use super::writer::MessageWriter;
use crate::firewall::table::{self, Family};

/// What a set-element message does to its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOp {
    /// Adds; an element already present with the same data is fine.
    Add,
    /// Adds with create semantics (NLM_F_EXCL): any element already present with the same
    /// key fails the whole batch with EEXIST. This is how published ports stay unique.
    Create,
    /// Fails with ENOENT when an element is absent.
    Delete,
    /// Succeeds when an element is absent (kernel 6.3 and later).
    Destroy,
}

impl ElementOp {
    pub(super) fn message_type(self) -> u8 {
        match self {
            ElementOp::Add | ElementOp::Create => NFT_MSG_NEWSETELEM,
            ElementOp::Delete => NFT_MSG_DELSETELEM,
            ElementOp::Destroy => NFT_MSG_DESTROYSETELEM,
        }
    }

    pub(super) fn flags(self) -> u16 {
        let base = NLM_F_REQUEST | NLM_F_ACK;
        match self {
            ElementOp::Add => base | NLM_F_CREATE,
            ElementOp::Create => base | NLM_F_CREATE | NLM_F_EXCL,
            ElementOp::Delete | ElementOp::Destroy => base,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ElementOp::Add | ElementOp::Create => "adding elements",
            ElementOp::Delete => "deleting elements",
            ElementOp::Destroy => "destroying elements",
        }
    }
}

/// The data half of a map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    /// A verdict map's `jump CHAIN`.
    Jump(String),
    /// A data map's value, already laid out as the kernel keeps it (see `key_bytes`).
    Value(Vec<u8>),
}

/// One element: its key as the kernel keeps it and, in a map, its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElement {
    pub key: Vec<u8>,
    pub data: Option<ElementData>,
}

impl SetElement {
    pub fn key_only(key: Vec<u8>) -> SetElement {
        SetElement { key, data: None }
    }

    pub fn address(addr: &IpAddr) -> SetElement {
        SetElement::key_only(address_bytes(addr))
    }
}

/// The elements of one set (or map) changed by one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    pub family: Family,
    pub op: ElementOp,
    pub set: String,
    pub elements: Vec<SetElement>,
    /// Adds give each element its own packet/byte counter (`tether inspect` reads them back).
    pub counted: bool,
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

pub fn address_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Lays out a concatenated key or value as nf_tables does: each field starts on a 4-byte
/// register boundary, so shorter fields (a protocol byte, a port, a MAC) are zero-padded.
pub fn concat_bytes(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        out.extend_from_slice(field);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// An interface name as an `ifname` key: IFNAMSIZ (16) bytes, NUL-padded.
pub fn ifname_bytes(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let len = name.len().min(15);
    out[..len].copy_from_slice(&name.as_bytes()[..len]);
    out
}

/// The attributes of a set-element message changing `change`'s elements in `table`.
pub(super) fn put_elements(w: &mut MessageWriter, table: &str, change: &ElementChange) {
    let counted =
        change.counted && change.op != ElementOp::Delete && change.op != ElementOp::Destroy;
    put_element_list(w, table, &change.set, &change.elements, counted);
}

fn put_element_list(
    w: &mut MessageWriter,
    table: &str,
    set: &str,
    elements: &[SetElement],
    counted: bool,
) {
    w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
    w.put_str(NFTA_SET_ELEM_LIST_SET, set);
    w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
    for element in elements {
        w.begin_nested(NFTA_LIST_ELEM);
        w.begin_nested(NFTA_SET_ELEM_KEY);
        w.put_bytes(NFTA_DATA_VALUE, &element.key);
        w.end_nested();
        match &element.data {
            Some(ElementData::Jump(chain)) => {
                put_verdict(w, NFTA_SET_ELEM_DATA, &Verdict::Jump(chain.clone()));
            }
            Some(ElementData::Value(value)) => {
                w.begin_nested(NFTA_SET_ELEM_DATA);
                w.put_bytes(NFTA_DATA_VALUE, value);
                w.end_nested();
            }
            None => {}
        }
        if counted {
            // A stateful `counter` expression of this element alone, starting at zero.
            w.begin_nested(NFTA_SET_ELEM_EXPR);
            w.put_str(NFTA_EXPR_NAME, "counter");
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
        w.begin_message(
            nft_type(change.op.message_type()),
            change.op.flags(),
            seq,
            change.family.nfproto(),
            0,
        );
        put_elements(&mut w, table::NAME, change);
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

/// Looks up given elements of a set; the kernel answers ENOENT if any one is absent, and
/// otherwise returns each element with its data.
pub fn get_elements(family: Family, set: &str, keys: &[Vec<u8>], seq: u32) -> Vec<u8> {
    get_elements_in(table::NAME, family, set, keys, seq)
}

/// [`get_elements`] in another table of tether's (`inet tether_svc` in a client's namespace).
pub fn get_elements_in(
    table: &str,
    family: Family,
    set: &str,
    keys: &[Vec<u8>],
    seq: u32,
) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETSETELEM),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family.nfproto(),
        0,
    );
    let elements: Vec<SetElement> = keys
        .iter()
        .map(|key| SetElement::key_only(key.clone()))
        .collect();
    put_element_list(&mut w, table, set, &elements, false);
    w.end_message();
    w.into_bytes()
}

/// Lists every element of a set.
pub fn dump_elements(family: Family, set: &str, seq: u32) -> Vec<u8> {
    dump_elements_in(table::NAME, family, set, seq)
}

/// [`dump_elements`] in another table of tether's.
pub fn dump_elements_in(table: &str, family: Family, set: &str, seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETSETELEM),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family.nfproto(),
        0,
    );
    w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
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
    dump_chains_of(NFPROTO_INET, seq)
}

/// Lists all chains of one family; NFPROTO_UNSPEC lists every family's.
pub fn dump_chains_of(family: u8, seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::new();
    w.begin_message(
        nft_type(NFT_MSG_GETCHAIN),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
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
            family: Family::Inet,
            op: ElementOp::Add,
            set: "n1_c4".into(),
            elements: vec![SetElement::address(&"10.1.2.3".parse().unwrap())],
            counted: false,
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
            counted: false,
            family: Family::Inet,
            op: ElementOp::Add,
            set: "nat4".into(),
            elements: vec![SetElement {
                key: vec![10, 0, 0, 2],
                data: Some(ElementData::Jump("n1_nat".into())),
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
            counted: false,
            family: Family::Inet,
            op,
            set: "s".into(),
            elements: vec![SetElement::address(&"fd00::1".parse().unwrap())],
        };
        let del = element_batch(&[change(ElementOp::Delete)], 1).bytes;
        assert_eq!(&del[24..26], &ne16(0x0a0e));
        assert_eq!(&del[26..28], &ne16(0x5));
        let destroy = element_batch(&[change(ElementOp::Destroy)], 1).bytes;
        assert_eq!(&destroy[24..26], &ne16(0x0a1e));
    }

    #[test]
    fn create_asks_for_exclusive_insert() {
        let change = ElementChange {
            counted: false,
            family: Family::Inet,
            op: ElementOp::Create,
            set: "pm4_any".into(),
            elements: vec![SetElement::key_only(vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0])],
        };
        let bytes = element_batch(&[change], 1).bytes;
        assert_eq!(&bytes[24..26], &ne16(0x0a0c));
        // REQUEST | ACK | EXCL | CREATE
        assert_eq!(&bytes[26..28], &ne16(0x1 | 0x4 | 0x200 | 0x400));
    }

    #[test]
    fn bridge_family_is_sent_in_nfgenmsg() {
        let change = ElementChange {
            counted: false,
            family: Family::Bridge,
            op: ElementOp::Add,
            set: "spoofchk_ports".into(),
            elements: vec![SetElement::key_only(ifname_bytes("tv1").to_vec())],
        };
        let bytes = element_batch(&[change], 1).bytes;
        // Second message's nfgenmsg family byte: NFPROTO_BRIDGE.
        assert_eq!(bytes[20 + 16], 7);
    }

    #[test]
    fn concatenated_fields_are_padded_to_registers() {
        let mac = [2u8, 0, 0, 0, 0, 2];
        let key = concat_bytes(&[&ifname_bytes("tv1"), &mac]);
        let mut expected = b"tv1".to_vec();
        expected.resize(16, 0);
        expected.extend([2, 0, 0, 0, 0, 2, 0, 0]);
        assert_eq!(key, expected);
        assert_eq!(
            concat_bytes(&[&[6], &8080u16.to_be_bytes()]),
            vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]
        );
    }

    #[test]
    fn data_map_element_carries_a_value() {
        let change = ElementChange {
            counted: false,
            family: Family::Inet,
            op: ElementOp::Create,
            set: "m".into(),
            elements: vec![SetElement {
                key: vec![6, 0, 0, 0, 0, 80, 0, 0],
                data: Some(ElementData::Value(vec![10, 0, 0, 2, 0, 80, 0, 0])),
            }],
        };
        let bytes = element_batch(&[change], 1).bytes;
        let mut data = Vec::new();
        // NFTA_SET_ELEM_DATA { NFTA_DATA_VALUE 8 bytes }
        data.extend(ne16(4 + 12));
        data.extend(ne16(0x8002));
        data.extend(ne16(12));
        data.extend(ne16(1));
        data.extend([10, 0, 0, 2, 0, 80, 0, 0]);
        assert!(bytes.windows(data.len()).any(|w| w == data.as_slice()));
    }
}
