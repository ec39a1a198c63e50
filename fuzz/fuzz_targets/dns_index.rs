//! Random sequences of record changes (joins, leaves, replacements) applied to the index incrementally,
//! as the DNS service does, must always equal a full rebuild from the same records.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use tether::dns::index::{keys_of, network_key, NameIndex};
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
    let mut records: Vec<AttachmentRecord> = Vec::new();
    let mut index = NameIndex::default();
    // At most 64 changes: each step compares with a full rebuild, so longer inputs only slow it down.
    for (n, op) in data.chunks_exact(6).take(64).enumerate() {
        let op: &[u8; 6] = op.try_into().unwrap();
        let old = if !records.is_empty() && op[5] & 0x40 != 0 {
            Some(records.remove(op[5] as usize % records.len()))
        } else {
            None
        };
        let new = if old.is_none() || op[5] & 0x20 != 0 {
            let r = record(op, n);
            let at = op[3] as usize % (records.len() + 1);
            records.insert(at, r.clone());
            Some(r)
        } else {
            None
        };
        for r in [&old, &new].into_iter().flatten().filter(|r| r.dns) {
            let Some(network) = network_key(&r.network) else {
                continue;
            };
            let ips: Vec<IpAddr> = r.ips.iter().map(|i| i.ip()).collect();
            index.refresh(&records, &network, &keys_of(r, &network), &ips);
        }
        assert_eq!(index, NameIndex::build(&records));
    }
});
