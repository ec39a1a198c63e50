//! An upstream reply (fuzzed) kept in the cache and served for a query (fuzzed): the hit must be the
//! stored reply whole, with the client's ID, and the byte accounting must stay within its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::dns::cache::{CacheKey, ReplyCache};
use tether::dns::wire;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (query, reply) = rest.split_at((split as usize).min(rest.len()));
    let Ok(q) = wire::parse_query(query) else {
        return;
    };
    let _ = wire::reply_ttls(reply);
    let _ = wire::answers(reply);
    let key = CacheKey {
        name: q.name.clone(),
        qtype: q.qtype,
        qclass: q.qclass,
    };
    let mut cache = ReplyCache::with_budget(8, 64 * 1024);
    cache.insert(key.clone(), reply, "net1");
    assert!(cache.bytes() <= 64 * 1024);
    let mut out = Vec::new();
    if cache.get(&key, query, q.raw_end, &mut out) {
        assert_eq!(out.len(), reply.len(), "a hit is the stored reply whole");
        assert_eq!(wire::id(&out), wire::id(query));
        assert_eq!(&out[2..wire::HEADER_LEN], &reply[2..wire::HEADER_LEN]);
        let mut cut = out.clone();
        wire::truncate_to_question(&mut cut);
        assert!(cut.len() <= out.len());
    }
    // Many inserts of variations: the budget holds.
    for i in 0..20u8 {
        let k = CacheKey {
            name: format!("{}{i}", q.name),
            ..key.clone()
        };
        cache.insert(k, reply, if i % 2 == 0 { "a" } else { "b" });
        assert!(cache.bytes() <= 64 * 1024);
        assert!(cache.network_bytes("a") <= 32 * 1024);
    }
});
