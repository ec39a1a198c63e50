//! A query from a container, through the whole synchronous answer path: parse, the local index (names,
//! aliases, `NAME.NETWORK`, PTR), the cache, or the decision to forward.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tether::dns::forwarder::Forwarder;
use tether::dns::index::NameIndex;
use tether::dns::resolver::{Outcome, Resolver, Scope, Transport};
use tether::dns::upstreams::Upstreams;
use tether::dns::wire;
use tether::state::AttachmentRecord;

fn resolver() -> Resolver {
    let records: Vec<AttachmentRecord> = [
        (
            "net1",
            "a",
            "web",
            vec!["www"],
            vec!["10.0.0.2/24", "fd00::2/64"],
        ),
        ("net1", "b", "db", vec!["www"], vec!["10.0.0.3/24"]),
        ("net1", "c", "bare", vec![], vec![]),
        ("net2", "d", "hidden", vec![], vec!["10.1.0.2/24"]),
    ]
    .into_iter()
    .map(|(net, cid, name, aliases, ips)| {
        serde_json::from_value(serde_json::json!({
            "network": net, "containerId": cid, "ifname": "eth0", "driver": "bridge",
            "ips": ips, "name": name, "aliases": aliases, "dns": true,
        }))
        .unwrap()
    })
    .collect();
    let resolver = Resolver::new(
        Forwarder::new(
            Upstreams::new("/nonexistent/resolv.conf".into()),
            Duration::from_millis(100),
        ),
        16,
        10,
    );
    resolver.set_index(NameIndex::build(&records));
    resolver
}

thread_local! {
    // One resolver for every input (its cache stays empty: nothing is forwarded here).
    static RESOLVER: Resolver = resolver();
}

fuzz_target!(|data: &[u8]| {
    RESOLVER.with(|resolver| answer(resolver, data));
});

fn answer(resolver: &Resolver, data: &[u8]) {
    let scope = Scope {
        networks: vec!["net1".into()],
        forward: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        match resolver.answer(data, &scope, transport, &mut out) {
            Outcome::Reply => {
                assert_eq!(
                    wire::id(&out),
                    wire::id(data),
                    "a reply carries the query's ID"
                );
                assert!(wire::is_response(&out));
                if transport == Transport::Udp {
                    assert!(out.len() <= wire::EDNS_UDP_SIZE as usize || out.len() <= data.len());
                }
            }
            Outcome::Forward(q) => {
                assert!(scope.forward, "forwarded for a scope that may not forward");
                assert!(q.raw_end <= data.len());
            }
            Outcome::Drop => assert!(data.len() < wire::HEADER_LEN || wire::is_response(data)),
        }
    }
}
