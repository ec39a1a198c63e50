//! Decodes the nf_tables replies tether reads: chains, set elements, generation id.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::reader::{attribute, attributes};
use super::uapi::*;

/// A reply's attributes start after the 4-byte nfgenmsg.
fn reply_attributes(payload: &[u8]) -> &[u8] {
    payload.get(NFGENMSG_LEN..).unwrap_or(&[])
}

fn nul_terminated(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReply {
    /// NFPROTO_* of the chain's table.
    pub family: u8,
    pub table: String,
    pub name: String,
    pub comment: Option<String>,
    /// Base chains only: the hook number and the policy verdict.
    pub hook: Option<u32>,
    pub policy: Option<u32>,
}

pub fn chain(payload: &[u8]) -> ChainReply {
    let attrs = reply_attributes(payload);
    let be32 = |value: &[u8]| value.try_into().ok().map(u32::from_be_bytes);
    ChainReply {
        family: payload.first().copied().unwrap_or(0),
        hook: attribute(attrs, NFTA_CHAIN_HOOK)
            .and_then(|hook| attribute(hook, NFTA_HOOK_HOOKNUM))
            .and_then(be32),
        policy: attribute(attrs, NFTA_CHAIN_POLICY).and_then(be32),
        table: attribute(attrs, NFTA_CHAIN_TABLE)
            .map(nul_terminated)
            .unwrap_or_default(),
        name: attribute(attrs, NFTA_CHAIN_NAME)
            .map(nul_terminated)
            .unwrap_or_default(),
        comment: attribute(attrs, NFTA_CHAIN_USERDATA).and_then(udata_comment),
    }
}

/// nft stores a comment in the userdata blob as a TLV: type u8, length u8, NUL-terminated text.
fn udata_comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == NFTNL_UDATA_CHAIN_COMMENT {
            return Some(nul_terminated(value));
        }
        udata = &udata[2 + len..];
    }
    None
}

/// One element of a NEWSETELEM reply: its key, in a data map its value, and its counter if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementEntry {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub counter: Option<Counter>,
}

/// An element's `counter` expression: what matched it since it was added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The `counter` among an element's expressions: one (NFTA_SET_ELEM_EXPR) or a list of them
/// (NFTA_SET_ELEM_EXPRESSIONS, when the set declares more than one).
fn element_counter(elem: &[u8]) -> Option<Counter> {
    let single = attribute(elem, NFTA_SET_ELEM_EXPR).into_iter();
    let listed = attribute(elem, NFTA_SET_ELEM_EXPRESSIONS)
        .map(attributes)
        .unwrap_or_default()
        .into_iter()
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .map(|(_, expr)| expr);
    single.chain(listed).find_map(|expr| {
        if attribute(expr, NFTA_EXPR_NAME).map(nul_terminated)? != "counter" {
            return None;
        }
        let data = attribute(expr, NFTA_EXPR_DATA)?;
        let be64 = |kind| {
            attribute(data, kind)
                .and_then(|v| v.try_into().ok())
                .map(u64::from_be_bytes)
        };
        Some(Counter {
            packets: be64(NFTA_COUNTER_PACKETS)?,
            bytes: be64(NFTA_COUNTER_BYTES)?,
        })
    })
}

/// The elements in a NEWSETELEM reply (one message of a dump or a lookup).
pub fn element_entries(payload: &[u8]) -> Vec<ElementEntry> {
    let attrs = reply_attributes(payload);
    let Some(list) = attribute(attrs, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Vec::new();
    };
    attributes(list)
        .into_iter()
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .filter_map(|(_, elem)| {
            let key = attribute(attribute(elem, NFTA_SET_ELEM_KEY)?, NFTA_DATA_VALUE)?;
            let value = attribute(elem, NFTA_SET_ELEM_DATA)
                .and_then(|data| attribute(data, NFTA_DATA_VALUE))
                .map(<[u8]>::to_vec);
            Some(ElementEntry {
                key: key.to_vec(),
                value,
                counter: element_counter(elem),
            })
        })
        .collect()
}

/// The address keys in a NEWSETELEM reply (one message of a dump).
pub fn element_addresses(payload: &[u8]) -> Vec<IpAddr> {
    element_entries(payload)
        .into_iter()
        .filter_map(|entry| match entry.key.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(entry.key.as_slice()).ok()?,
            ))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(entry.key.as_slice()).ok()?,
            ))),
            _ => None,
        })
        .collect()
}

pub fn generation(payload: &[u8]) -> Option<u32> {
    let value = attribute(reply_attributes(payload), NFTA_GEN_ID)?;
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::netlink::writer::MessageWriter;

    fn payload_of(w: MessageWriter) -> Vec<u8> {
        w.into_bytes()[NLMSG_HDRLEN..].to_vec()
    }

    #[test]
    fn chain_comment_is_read_from_udata() {
        let mut w = MessageWriter::new();
        w.begin_message(nft_type(3), 0, 1, NFPROTO_INET, 0);
        w.put_str(NFTA_CHAIN_TABLE, "tether");
        w.put_str(NFTA_CHAIN_NAME, "n1_fwd");
        let mut udata = vec![NFTNL_UDATA_CHAIN_COMMENT, 4];
        udata.extend(b"abc\0");
        w.put_bytes(NFTA_CHAIN_USERDATA, &udata);
        w.end_message();
        let reply = chain(&payload_of(w));
        assert_eq!(reply.table, "tether");
        assert_eq!(reply.name, "n1_fwd");
        assert_eq!(reply.comment.as_deref(), Some("abc"));
    }

    #[test]
    fn element_keys_are_decoded() {
        let mut w = MessageWriter::new();
        w.begin_message(nft_type(NFT_MSG_NEWSETELEM), 0, 1, NFPROTO_INET, 0);
        w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
        for key in [
            &[10u8, 0, 0, 2][..],
            &[0xfdu8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2][..],
        ] {
            w.begin_nested(NFTA_LIST_ELEM);
            w.begin_nested(NFTA_SET_ELEM_KEY);
            w.put_bytes(NFTA_DATA_VALUE, key);
            w.end_nested();
            w.end_nested();
        }
        w.end_nested();
        w.end_message();
        let addrs = element_addresses(&payload_of(w));
        assert_eq!(
            addrs,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse::<IpAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn map_values_are_decoded() {
        let mut w = MessageWriter::new();
        w.begin_message(nft_type(NFT_MSG_NEWSETELEM), 0, 1, NFPROTO_INET, 0);
        w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
        w.begin_nested(NFTA_LIST_ELEM);
        w.begin_nested(NFTA_SET_ELEM_KEY);
        w.put_bytes(NFTA_DATA_VALUE, &[6, 0, 0, 0, 0, 80, 0, 0]);
        w.end_nested();
        w.begin_nested(NFTA_SET_ELEM_DATA);
        w.put_bytes(NFTA_DATA_VALUE, &[10, 0, 0, 2, 0, 80, 0, 0]);
        w.end_nested();
        w.end_nested();
        w.end_nested();
        w.end_message();
        let entries = element_entries(&payload_of(w));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].key, vec![6, 0, 0, 0, 0, 80, 0, 0]);
        assert_eq!(entries[0].value, Some(vec![10, 0, 0, 2, 0, 80, 0, 0]));
        assert_eq!(entries[0].counter, None);
    }

    #[test]
    fn an_element_counter_is_decoded() {
        let mut w = MessageWriter::new();
        w.begin_message(nft_type(NFT_MSG_NEWSETELEM), 0, 1, NFPROTO_INET, 0);
        w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
        w.begin_nested(NFTA_LIST_ELEM);
        w.begin_nested(NFTA_SET_ELEM_KEY);
        w.put_bytes(NFTA_DATA_VALUE, &[10, 0, 0, 2]);
        w.end_nested();
        w.begin_nested(NFTA_SET_ELEM_EXPR);
        w.put_str(NFTA_EXPR_NAME, "counter");
        w.begin_nested(NFTA_EXPR_DATA);
        w.put_bytes(NFTA_COUNTER_BYTES, &1500u64.to_be_bytes());
        w.put_bytes(NFTA_COUNTER_PACKETS, &3u64.to_be_bytes());
        w.end_nested();
        w.end_nested();
        w.end_nested();
        w.end_nested();
        w.end_message();
        let entries = element_entries(&payload_of(w));
        assert_eq!(
            entries[0].counter,
            Some(Counter {
                packets: 3,
                bytes: 1500
            })
        );
    }
}
