//! What travels between hosts, inside the seal: SWIM's own messages, and batches of records. A batch may
//! ask for the receiver's records in return (push-pull), which is how full syncs and new members converge.

use serde::{Deserialize, Serialize};

use super::agreement::ClaimRef;
use super::records::Record;

/// Plaintext budget of one record batch, so a sealed batch fits one unfragmented datagram.
pub const MAX_BATCH_BYTES: usize = 1300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Packet {
    Swim(Vec<u8>),
    Records {
        records: Vec<Record>,
        reply: bool,
    },
    /// "I claim this block; do you hold a better claim of it?" (`unconfirmed`: its addresses are in use).
    Propose {
        claim: ClaimRef,
        unconfirmed: bool,
    },
    /// The answer to a [`Packet::Propose`].
    Answer {
        claim: ClaimRef,
        accepted: bool,
    },
}

pub fn encode(packet: &Packet) -> Vec<u8> {
    postcard::to_allocvec(packet).expect("serialising to a Vec cannot fail")
}

pub fn decode(bytes: &[u8]) -> Result<Packet, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Cuts `records` into encoded batches of at most [`MAX_BATCH_BYTES`] (a single larger record goes alone).
/// Only the last batch asks for a reply, so the peer answers once.
pub fn batches(records: Vec<Record>, reply: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Vec<Record> = Vec::new();
    let mut size = 0;
    for record in records {
        let len = postcard::to_allocvec(&record).map(|v| v.len()).unwrap_or(0);
        if !current.is_empty() && size + len > MAX_BATCH_BYTES {
            out.push(encode(&Packet::Records {
                records: std::mem::take(&mut current),
                reply: false,
            }));
            size = 0;
        }
        size += len;
        current.push(record);
    }
    if !current.is_empty() || reply {
        out.push(encode(&Packet::Records {
            records: current,
            reply,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::records::{RecordKey, RecordValue};

    #[test]
    fn batches_fit_a_datagram_and_round_trip() {
        let records: Vec<Record> = (0..200u32)
            .map(|i| Record {
                key: RecordKey::Endpoint {
                    host: "192.0.2.1".parse().unwrap(),
                    network: "ovl".into(),
                    ip: std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                },
                version: 1_700_000_000_000 + u64::from(i),
                value: Some(RecordValue::Endpoint {
                    vni: 7,
                    mac: [2, 0, 0, 0, 0, i as u8],
                    vtep: "192.0.2.1".parse().unwrap(),
                    names: vec!["web".into()],
                    healthy_for: Vec::new(),
                }),
            })
            .collect();
        let encoded = batches(records.clone(), true);
        assert!(encoded.len() > 1);
        let mut back = Vec::new();
        for (i, bytes) in encoded.iter().enumerate() {
            assert!(
                bytes.len() <= MAX_BATCH_BYTES + 64,
                "batch of {} bytes",
                bytes.len()
            );
            let Packet::Records { records, reply } = decode(bytes).unwrap() else {
                panic!("not records")
            };
            assert_eq!(reply, i == encoded.len() - 1);
            back.extend(records);
        }
        assert_eq!(back, records);
        assert_eq!(
            batches(Vec::new(), true).len(),
            1,
            "an empty push-pull still asks"
        );
        assert!(batches(Vec::new(), false).is_empty());
    }
}
