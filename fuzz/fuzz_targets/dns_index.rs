//! Random sequences of record changes (joins, leaves, replacements) applied to the index one record's
//! contribution at a time, as the DNS service does (a changed record goes out, its new version in at the
//! end, as the daemon's snapshot appends it), must always equal a full rebuild from the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::dns::index::{Contribution, NameIndex};
use tether::state::AttachmentRecord;

const NAMES: &[&str] = &[
    "web", "WEB", "db", "web.net1", "a b", "", "x.", "net1", "cache", " web ", "é", "a..b",
];
const NETWORKS: &[&str] = &["net1", "net2", "NET1", "net1."];

fn record(bytes: &[u8; 6], n: usize) -> AttachmentRecord {
    let ips: Vec<String> = (0..bytes[3] % 4)
        .map(|i| match (bytes[4] >> i) & 3 {
            0 => format!("10.0.0.{}/24", bytes[5] % 5),
            1 => format!("fd00::{}/64", bytes[5] % 3),
            _ => format!("10.0.0.{}/24", i),
        })
        .collect();
    let aliases: Vec<&str> = (0..bytes[2] % 3)
        .map(|i| NAMES[(bytes[2] as usize / 3 + i as usize) % NAMES.len()])
        .collect();
    let mut r: AttachmentRecord = serde_json::from_value(serde_json::json!({
        "network": NETWORKS[bytes[0] as usize % NETWORKS.len()],
        "containerId": format!("c{n}"), "ifname": "eth0", "driver": "bridge",
        "ips": ips, "name": NAMES[bytes[1] as usize % NAMES.len()], "aliases": aliases, "dns": true,
    }))
    .unwrap();
    r.dns = bytes[4] & 0x80 == 0;
    r
}

fuzz_target!(|data: &[u8]| {
    let mut records: Vec<(AttachmentRecord, Option<Contribution>)> = Vec::new();
    let mut index = NameIndex::default();
    // At most 64 changes: each step compares with a full rebuild, so longer inputs only slow it down.
    for (n, op) in data.chunks_exact(6).take(64).enumerate() {
        let op: &[u8; 6] = op.try_into().unwrap();
        let removed = !records.is_empty() && op[5] & 0x40 != 0;
        if removed {
            let (_, old) = records.remove(op[5] as usize % records.len());
            if let Some(old) = old {
                index.remove(&old);
            }
        }
        if !removed || op[5] & 0x20 != 0 {
            let r = record(op, n);
            let c = index.insert(n as u64, &r);
            records.push((r, c));
        }
        assert_eq!(index, NameIndex::build(records.iter().map(|(r, _)| r)));
    }
});
