//! A datagram from a key holder, after the seal is opened: the decoder, and the records it carries
//! merged into a host's table (versions anywhere in the range, tombstones, our own keys).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use tether::overlay::fuzzing::{decode, encode, Packet, RecordTable, MAX_VERSION};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = decode(data) else {
        return;
    };
    // What decodes encodes back to something that decodes to the same.
    assert_eq!(decode(&encode(&packet)).ok(), Some(packet.clone()));
    if let Packet::Records { records, .. } = packet {
        let me = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut table = RecordTable::new();
        let outcome = table.merge(me, records.clone(), 1_000);
        assert!(outcome.disowned.iter().all(|r| r.version <= MAX_VERSION));
        // Applied twice, in any order, the result is the same (the cluster converges).
        let mut again = RecordTable::new();
        let mut reversed = records;
        reversed.reverse();
        again.merge(me, reversed, 1_000);
        let own = |t: &RecordTable| {
            t.all()
                .into_iter()
                .filter(|r| r.key.host() != me)
                .collect::<Vec<_>>()
        };
        assert_eq!(own(&table), own(&again));
        let _ = table.set_own(me, &Default::default(), 2_000);
    }
});
