//! A verdict as nf_tables encodes it (accept, drop, jump to a chain): the one piece that element batches
//! (verdict maps) and rules both write.

use super::uapi::*;
use super::writer::MessageWriter;

/// What a rule does with the packet when every match before it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
}

pub(super) fn put_verdict(w: &mut MessageWriter, kind: u16, verdict: &Verdict) {
    let (code, chain) = match verdict {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Jump(chain) => (NFT_JUMP as u32, Some(chain)),
    };
    w.begin_nested(kind);
    w.begin_nested(NFTA_DATA_VERDICT);
    w.put_be32(NFTA_VERDICT_CODE, code);
    if let Some(chain) = chain {
        w.put_str(NFTA_VERDICT_CHAIN, chain);
    }
    w.end_nested();
    w.end_nested();
}
