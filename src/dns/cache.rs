//! Upstream answers kept for their TTL (docs/design.md §6: aardvark-dns keeps none). Keyed by name, type and
//! class; a hit is the stored reply with the TTLs aged, the client's ID and its question bytes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::wire;

/// Longest time any answer is kept, whatever its TTL says.
const MAX_TTL: u32 = 3600;
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

struct Entry {
    reply: Vec<u8>,
    ttl_offsets: Vec<usize>,
    stored: Instant,
    lifetime: Duration,
}

pub struct ReplyCache {
    entries: HashMap<CacheKey, Entry>,
    capacity: usize,
    swept: Option<Instant>,
    pub hits: u64,
    pub misses: u64,
}

impl ReplyCache {
    pub fn new(capacity: usize) -> ReplyCache {
        ReplyCache {
            entries: HashMap::new(),
            capacity,
            swept: None,
            hits: 0,
            misses: 0,
        }
    }

    /// Keeps `reply` if it is a cacheable answer (NOERROR or NXDOMAIN, not truncated, with a TTL).
    pub fn insert(&mut self, key: CacheKey, reply: &[u8]) {
        if self.capacity == 0 || wire::is_truncated(reply) {
            return;
        }
        if !matches!(
            wire::rcode(reply),
            wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN
        ) {
            return;
        }
        let Ok(ttls) = wire::reply_ttls(reply) else {
            return;
        };
        let Some(ttl) = ttls.min_ttl.filter(|t| *t > 0) else {
            return;
        };
        if self.entries.len() >= self.capacity {
            // A sweep walks every entry: at most once a second, or a full cache of unique names would
            // pay for it on every insert.
            if self.swept.is_none_or(|t| t.elapsed() >= SWEEP_INTERVAL) {
                self.swept = Some(Instant::now());
                self.evict_expired();
            }
            if self.entries.len() >= self.capacity {
                // Still full of live entries: drop an arbitrary one rather than keep a second structure
                // for LRU order; the cache is a speed-up, never the source of truth.
                if let Some(k) = self.entries.keys().next().cloned() {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                reply: reply.to_vec(),
                ttl_offsets: ttls.offsets,
                stored: Instant::now(),
                lifetime: Duration::from_secs(ttl.min(MAX_TTL) as u64),
            },
        );
    }

    /// A fresh copy of the stored reply for `query` (whose question is `question_end` long) into `out`.
    pub fn get(
        &mut self,
        key: &CacheKey,
        query: &[u8],
        question_end: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(e) = self.entries.get(key) else {
            self.misses += 1;
            return false;
        };
        let age = e.stored.elapsed();
        if age >= e.lifetime {
            self.entries.remove(key);
            self.misses += 1;
            return false;
        }
        out.clear();
        out.extend_from_slice(&e.reply);
        wire::age_ttls(out, &e.ttl_offsets, age.as_secs() as u32);
        // Same name in another case has the same length: give the client back its own spelling.
        if out.len() >= question_end {
            out[wire::HEADER_LEN..question_end]
                .copy_from_slice(&query[wire::HEADER_LEN..question_end]);
        }
        wire::set_id(out, wire::id(query).unwrap_or(0));
        self.hits += 1;
        true
    }

    fn evict_expired(&mut self) {
        self.entries.retain(|_, e| e.stored.elapsed() < e.lifetime);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn upstream_reply(name: &str, ttl: u32) -> Vec<u8> {
        let query = wire::build_query(99, name, wire::TYPE_A, false);
        let q = wire::parse_query(&query).unwrap();
        let mut out = Vec::new();
        let mut w = wire::ReplyWriter::start(&mut out, &query, &q, 0, false, 512);
        w.answer(
            wire::TYPE_A,
            ttl,
            wire::Rdata::A(Ipv4Addr::new(192, 0, 2, 1)),
        );
        w.finish(&q);
        out
    }

    #[test]
    fn a_hit_carries_the_clients_id_and_spelling() {
        let mut cache = ReplyCache::new(10);
        let key = CacheKey {
            name: "example.com".into(),
            qtype: wire::TYPE_A,
            qclass: wire::CLASS_IN,
        };
        cache.insert(key.clone(), &upstream_reply("example.com", 300));
        let query = wire::build_query(4242, "EXAMPLE.com", wire::TYPE_A, false);
        let q = wire::parse_query(&query).unwrap();
        let mut out = Vec::new();
        assert!(cache.get(&key, &query, q.raw_end, &mut out));
        assert_eq!(wire::id(&out), Some(4242));
        assert_eq!(&out[12..q.raw_end], &query[12..q.raw_end]);
        assert_eq!(wire::answers(&out).unwrap()[0].1, vec![192, 0, 2, 1]);
    }

    #[test]
    fn zero_ttl_and_errors_are_not_kept_and_capacity_holds() {
        let mut cache = ReplyCache::new(2);
        let key = |n: &str| CacheKey {
            name: n.into(),
            qtype: 1,
            qclass: 1,
        };
        cache.insert(key("a"), &upstream_reply("a", 0));
        assert!(cache.is_empty());
        let mut servfail = upstream_reply("b", 60);
        servfail[3] |= wire::RCODE_SERVFAIL;
        cache.insert(key("b"), &servfail);
        assert!(cache.is_empty());
        for n in ["c", "d", "e"] {
            cache.insert(key(n), &upstream_reply(n, 60));
        }
        assert_eq!(cache.len(), 2);
    }
}
