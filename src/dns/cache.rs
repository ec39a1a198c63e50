//! Upstream answers kept for their TTL (docs/design.md §6: aardvark-dns keeps none). Keyed by name, type and
//! class; a hit is the stored reply with the TTLs aged and the client's ID (and its spelling of the
//! question, when it is the same name in another case).
//!
//! Bounded by bytes, not entries: containers are untrusted and one of them can ask for names whose
//! answers are large. A reply over [`MAX_CACHED_REPLY`] is answered but never kept, and the network that
//! caused an insert is charged for it: one network holds at most [`NETWORK_SHARE`] of the budget, so a
//! container flooding the cache evicts its own network's entries, never everybody's.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::wire;

/// Longest time any answer is kept, whatever its TTL says.
const MAX_TTL: u32 = 3600;
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Largest reply kept (larger ones are passed on uncached). Also what lets TTL offsets be `u16`.
pub const MAX_CACHED_REPLY: usize = 4096;
/// The whole cache's budget: replies, keys and bookkeeping.
pub const CACHE_BYTES: usize = 8 << 20;
/// The part of the budget one network may hold (a fraction: budget / this).
pub const NETWORK_SHARE: usize = 2;
/// What an entry costs beyond its bytes: its slot, the allocator's header of its one buffer, its part of
/// the index (4-byte buckets, at most half full after deletions) and its places in its network's queue.
const ENTRY_OVERHEAD: usize = 112;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// One kept reply. Every entry is one allocation: a map keyed by `CacheKey` with the reply, its TTL
/// offsets and a queue of cloned keys beside it cost four, and a hash table of whole entries that
/// deletions have left half full costs ten times its live entries (measured: 1.85 MB of table for 4096).
struct Entry {
    /// The key's name, then the reply, then each TTL field's offset in the reply (`u16`, native order).
    data: Box<[u8]>,
    name_len: u16,
    reply_len: u16,
    qtype: u16,
    qclass: u16,
    /// Where the stored reply's question ends.
    question_end: u16,
    stored: Instant,
    lifetime_s: u32,
    owner: u32,
    /// Matches the entry to its place in the owner's queue (a key inserted again gets a new one).
    seq: u32,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.data[..self.name_len as usize]
    }

    fn reply(&self) -> &[u8] {
        let start = self.name_len as usize;
        &self.data[start..start + self.reply_len as usize]
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.data[self.name_len as usize + self.reply_len as usize..]
            .chunks_exact(2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
    }

    fn matches(&self, key: &CacheKey) -> bool {
        self.qtype == key.qtype && self.qclass == key.qclass && self.name() == key.name.as_bytes()
    }

    fn cost(&self) -> usize {
        self.data.len() + self.name_len as usize + ENTRY_OVERHEAD
    }

    fn expired(&self) -> bool {
        self.stored.elapsed() >= Duration::from_secs(self.lifetime_s as u64)
    }
}

fn cost_of(reply: usize, ttls: usize, name: usize) -> usize {
    reply + 2 * ttls + 2 * name + ENTRY_OVERHEAD
}

/// One network's part of the cache: its bytes and its entries, oldest first (as slot and sequence).
#[derive(Default)]
struct Owner {
    bytes: usize,
    entries: usize,
    order: VecDeque<(u32, u32)>,
}

pub struct ReplyCache {
    /// Entries by slot; a freed slot is reused before the vector grows.
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Slots by the hash of their key.
    index: HashTable<u32>,
    hasher: RandomState,
    live: usize,
    /// Most entries kept, whatever their size (0 turns the cache off).
    capacity: usize,
    budget: usize,
    owners: Vec<Owner>,
    owner_ids: HashMap<String, u32>,
    bytes: usize,
    seq: u32,
    swept: Option<Instant>,
    pub hits: u64,
    pub misses: u64,
}

impl ReplyCache {
    pub fn new(capacity: usize) -> ReplyCache {
        ReplyCache::with_budget(capacity, CACHE_BYTES)
    }

    pub fn with_budget(capacity: usize, budget: usize) -> ReplyCache {
        ReplyCache {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            live: 0,
            capacity,
            budget,
            owners: Vec::new(),
            owner_ids: HashMap::new(),
            bytes: 0,
            seq: 0,
            swept: None,
            hits: 0,
            misses: 0,
        }
    }

    fn hash(&self, name: &[u8], qtype: u16, qclass: u16) -> u64 {
        self.hasher.hash_one((name, qtype, qclass))
    }

    fn find(&self, key: &CacheKey) -> Option<u32> {
        let hash = self.hash(key.name.as_bytes(), key.qtype, key.qclass);
        let slots = &self.slots;
        self.index
            .find(hash, |&s| {
                slots[s as usize].as_ref().is_some_and(|e| e.matches(key))
            })
            .copied()
    }

    /// Keeps `reply`, charged to `network`, if it is a cacheable answer (NOERROR or NXDOMAIN, not
    /// truncated, with a TTL, at most [`MAX_CACHED_REPLY`] long).
    pub fn insert(&mut self, key: CacheKey, reply: &[u8], network: &str) {
        if self.capacity == 0 || reply.len() > MAX_CACHED_REPLY || wire::is_truncated(reply) {
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
        let Ok(question_end) = wire::question_end(reply) else {
            return;
        };
        // A DNS name is at most 255 bytes; anything longer is not a question we answered.
        let Ok(name_len) = u16::try_from(key.name.len()) else {
            return;
        };
        let cost = cost_of(reply.len(), ttls.offsets.len(), key.name.len());
        let share = self.budget / NETWORK_SHARE;
        if cost > share {
            return;
        }
        self.remove(&key);
        self.sweep_if_due();
        let owner = self.owner_id(network);
        while self.owners[owner as usize].bytes + cost > share {
            self.evict_oldest(owner);
        }
        while self.bytes + cost > self.budget || self.live >= self.capacity {
            // Over the whole budget: the biggest holder gives up its oldest entry.
            let Some(biggest) = (0..self.owners.len()).max_by_key(|&i| self.owners[i].bytes) else {
                break;
            };
            if self.owners[biggest].entries == 0 {
                break;
            }
            self.evict_oldest(biggest as u32);
        }
        let mut data = Vec::with_capacity(key.name.len() + reply.len() + 2 * ttls.offsets.len());
        data.extend_from_slice(key.name.as_bytes());
        data.extend_from_slice(reply);
        // Every offset is below the reply's length, which is at most 4 KiB.
        for &at in &ttls.offsets {
            data.extend_from_slice(&(at as u16).to_ne_bytes());
        }
        self.seq = self.seq.wrapping_add(1);
        let entry = Entry {
            data: data.into_boxed_slice(),
            name_len,
            reply_len: reply.len() as u16,
            qtype: key.qtype,
            qclass: key.qclass,
            question_end: question_end as u16,
            stored: Instant::now(),
            lifetime_s: ttl.min(MAX_TTL),
            owner,
            seq: self.seq,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        let hash = self.hash(key.name.as_bytes(), key.qtype, key.qclass);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            let e = slots[s as usize]
                .as_ref()
                .expect("indexed slots hold entries");
            hasher.hash_one((e.name(), e.qtype, e.qclass))
        });
        self.live += 1;
        let o = &mut self.owners[owner as usize];
        o.bytes += cost;
        o.entries += 1;
        o.order.push_back((slot, self.seq));
        self.bytes += cost;
    }

    /// A fresh copy of the stored reply for `query` (whose question is `question_end` long) into `out`.
    pub fn get(
        &mut self,
        key: &CacheKey,
        query: &[u8],
        question_end: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(slot) = self.find(key) else {
            self.misses += 1;
            return false;
        };
        let e = self.slots[slot as usize]
            .as_ref()
            .expect("indexed slots hold entries");
        let age = e.stored.elapsed();
        if e.expired() {
            self.remove_slot(slot);
            self.misses += 1;
            return false;
        }
        out.clear();
        out.extend_from_slice(e.reply());
        for at in e.ttl_offsets() {
            wire::age_ttl(out, at, age.as_secs() as u32);
        }
        // Give the client back its own spelling when it is the same name in another case: same bytes
        // but for letters. A question spelled differently (a compression pointer, say) has another
        // length or other bytes, and copying it over the stored one would garble the reply: the client
        // then gets the question as the upstream wrote it, which names the same name.
        let stored_end = e.question_end as usize;
        if stored_end == question_end {
            if let (Some(mine), Some(theirs)) = (
                query.get(wire::HEADER_LEN..question_end),
                out.get_mut(wire::HEADER_LEN..question_end),
            ) {
                if mine.eq_ignore_ascii_case(theirs) {
                    theirs.copy_from_slice(mine);
                }
            }
        }
        wire::set_id(out, wire::id(query).unwrap_or(0));
        self.hits += 1;
        true
    }

    fn owner_id(&mut self, network: &str) -> u32 {
        if let Some(id) = self.owner_ids.get(network) {
            return *id;
        }
        let id = self.owners.len() as u32;
        self.owners.push(Owner::default());
        self.owner_ids.insert(network.to_string(), id);
        id
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.find(key) {
            self.remove_slot(slot);
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        let Some(e) = self.slots[slot as usize].take() else {
            return;
        };
        let hash = self.hash(e.name(), e.qtype, e.qclass);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        self.free.push(slot);
        self.live -= 1;
        let cost = e.cost();
        let o = &mut self.owners[e.owner as usize];
        o.bytes -= cost;
        o.entries -= 1;
        self.bytes -= cost;
        // Its place in the queue goes stale; drop stale places once they outnumber live ones.
        if o.order.len() > 2 * o.entries + 16 {
            let slots = &self.slots;
            o.order
                .retain(|&(s, seq)| slots[s as usize].as_ref().is_some_and(|e| e.seq == seq));
        }
    }

    /// Drops `owner`'s oldest entry (stale queue places are skipped).
    fn evict_oldest(&mut self, owner: u32) {
        while let Some((slot, seq)) = self.owners[owner as usize].order.pop_front() {
            if self.slots[slot as usize]
                .as_ref()
                .is_some_and(|e| e.seq == seq)
            {
                self.remove_slot(slot);
                return;
            }
        }
    }

    fn sweep_if_due(&mut self) {
        // A sweep walks every entry: at most once a second, or a full cache of unique names would pay
        // for it on every insert.
        if self.swept.is_some_and(|t| t.elapsed() < SWEEP_INTERVAL) {
            return;
        }
        self.swept = Some(Instant::now());
        let expired: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].as_ref().is_some_and(Entry::expired))
            .collect();
        for slot in expired {
            self.remove_slot(slot);
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes charged in all, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes charged to `network`.
    pub fn network_bytes(&self, network: &str) -> usize {
        self.owner_ids
            .get(network)
            .map_or(0, |id| self.owners[*id as usize].bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn upstream_reply(name: &str, ttl: u32) -> Vec<u8> {
        upstream_reply_with(name, ttl, 1)
    }

    fn upstream_reply_with(name: &str, ttl: u32, answers: usize) -> Vec<u8> {
        let query = wire::build_query(99, name, wire::TYPE_A, false);
        let q = wire::parse_query(&query).unwrap();
        let mut out = Vec::new();
        let mut w = wire::ReplyWriter::start(&mut out, &query, &q, 0, false, 65535);
        for i in 0..answers {
            w.answer(
                wire::TYPE_A,
                ttl,
                wire::Rdata::A(Ipv4Addr::from(0xc000_0200 + i as u32)),
            );
        }
        w.finish(&q);
        out
    }

    fn key(n: &str) -> CacheKey {
        CacheKey {
            name: n.into(),
            qtype: wire::TYPE_A,
            qclass: wire::CLASS_IN,
        }
    }

    #[test]
    fn a_hit_carries_the_clients_id_and_spelling() {
        let mut cache = ReplyCache::new(10);
        cache.insert(key("example.com"), &upstream_reply("example.com", 300), "n");
        let query = wire::build_query(4242, "EXAMPLE.com", wire::TYPE_A, false);
        let q = wire::parse_query(&query).unwrap();
        let mut out = Vec::new();
        assert!(cache.get(&key("example.com"), &query, q.raw_end, &mut out));
        assert_eq!(wire::id(&out), Some(4242));
        assert_eq!(&out[12..q.raw_end], &query[12..q.raw_end]);
        assert_eq!(wire::answers(&out).unwrap()[0].1, vec![192, 0, 2, 0]);
    }

    /// Issue 21: a question spelled with a compression pointer is shorter than the stored one; copying
    /// it over the reply cut the reply short.
    #[test]
    fn a_hit_for_a_question_spelled_with_a_pointer_is_whole() {
        let mut cache = ReplyCache::new(10);
        let stored = upstream_reply("example.com", 300);
        cache.insert(key("example.com"), &stored, "n");
        // "\x07example" then a pointer to offset 7, where the header's counts spell "\x03com\x00".
        let mut query = vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x03, b'c', b'o', b'm', 0,
        ];
        query.extend_from_slice(b"\x07example\xc0\x07\x00\x01\x00\x01");
        let q = wire::parse_query(&query).unwrap();
        assert_eq!(q.name, "example.com");
        let mut out = Vec::new();
        assert!(cache.get(&key("example.com"), &query, q.raw_end, &mut out));
        assert_eq!(out.len(), stored.len());
        assert_eq!(wire::id(&out), Some(0x1234));
        assert_eq!(&out[2..], &stored[2..]);
        assert_eq!(wire::answers(&out).unwrap()[0].1, vec![192, 0, 2, 0]);
    }

    #[test]
    fn zero_ttl_and_errors_are_not_kept_and_capacity_holds() {
        let mut cache = ReplyCache::new(2);
        cache.insert(key("a"), &upstream_reply("a", 0), "n");
        assert!(cache.is_empty());
        let mut servfail = upstream_reply("b", 60);
        servfail[3] |= wire::RCODE_SERVFAIL;
        cache.insert(key("b"), &servfail, "n");
        assert!(cache.is_empty());
        for n in ["c", "d", "e"] {
            cache.insert(key(n), &upstream_reply(n, 60), "n");
        }
        assert_eq!(cache.len(), 2);
        let mut out = Vec::new();
        let query = wire::build_query(1, "c", wire::TYPE_A, false);
        assert!(
            !cache.get(&key("c"), &query, query.len(), &mut out),
            "oldest went first"
        );
    }

    #[test]
    fn large_replies_are_not_kept() {
        let mut cache = ReplyCache::new(10);
        let big = upstream_reply_with("big", 60, 300);
        assert!(big.len() > MAX_CACHED_REPLY);
        cache.insert(key("big"), &big, "n");
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn bytes_are_counted_and_given_back() {
        let mut cache = ReplyCache::new(100);
        let reply = upstream_reply("a", 60);
        cache.insert(key("a"), &reply, "n");
        let one = cost_of(reply.len(), 1, 1);
        assert_eq!((cache.bytes(), cache.network_bytes("n")), (one, one));
        // The same key again replaces, not adds.
        cache.insert(key("a"), &reply, "n");
        assert_eq!(cache.bytes(), one);
        cache.remove(&key("a"));
        assert_eq!(
            (cache.bytes(), cache.network_bytes("n"), cache.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn one_network_fills_only_its_share_and_pays_for_its_own_flood() {
        let reply = |n: &str| upstream_reply_with(n, 60, 100);
        let each = cost_of(reply("v0").len(), 100, 2);
        // Room for 20 entries; a network may hold 10.
        let mut cache = ReplyCache::with_budget(1000, 20 * each);
        for i in 0..5 {
            let n = format!("v{i}");
            cache.insert(key(&n), &reply(&n), "victim");
        }
        for i in 0..500 {
            let n = format!("h{i:03}");
            cache.insert(key(&n), &reply(&n), "hostile");
            assert!(cache.network_bytes("hostile") <= 10 * each);
        }
        assert_eq!(cache.network_bytes("victim"), 5 * each, "victim kept all");
        assert!(cache.bytes() <= 20 * each);
        let mut out = Vec::new();
        let q = wire::build_query(1, "v0", wire::TYPE_A, false);
        assert!(cache.get(&key("v0"), &q, q.len(), &mut out));
        // Over the whole budget (many networks), the biggest holder gives way.
        for net in 0..4 {
            for i in 0..10 {
                let n = format!("n{net}x{i}");
                cache.insert(key(&n), &reply(&n), &format!("net{net}"));
            }
        }
        assert!(cache.bytes() <= 20 * each);
        let stale = cache.owners.iter().map(|o| o.order.len()).sum::<usize>();
        assert!(stale <= 2 * cache.len() + 16 * cache.owners.len());
    }

    /// Unique names through a full cache: slots are reused and the index stays sized for the capacity,
    /// however many deletions it has seen; every kept name is found again.
    #[test]
    fn churn_keeps_slots_and_index_at_the_capacity() {
        let mut cache = ReplyCache::new(100);
        for i in 0..10_000 {
            let n = format!("n{i}.example");
            cache.insert(key(&n), &upstream_reply(&n, 60), "n");
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.slots.len(), 100);
        assert!(cache.index.capacity() <= 256, "{}", cache.index.capacity());
        let mut out = Vec::new();
        for i in 9_900..10_000 {
            let n = format!("n{i}.example");
            let q = wire::build_query(7, &n, wire::TYPE_A, false);
            assert!(cache.get(&key(&n), &q, q.len(), &mut out), "{n}");
        }
        let q = wire::build_query(7, "n9899.example", wire::TYPE_A, false);
        assert!(!cache.get(&key("n9899.example"), &q, q.len(), &mut out));
    }
}
