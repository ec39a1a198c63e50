//! One query, answered: local names from the index (only the networks of the asking container), cached
//! upstream answers, or a decision to forward. Synchronous except forwarding, so a local answer never
//! waits on anything.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::cache::{CacheKey, ReplyCache};
use super::forwarder::Forwarder;
use super::index::{reverse_address, Lookup, NameIndex};
use super::quota::Quota;
use super::service_names::{SharedServiceNames, BACKEND_TTL};
use super::wire::{self, QueryProblem, Question, Rdata, ReplyWriter};

/// What the asking container may see: the networks it is attached to, and whether any of them lets
/// queries out to the host's resolvers (an `internal` network alone does not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub networks: Vec<String>,
    pub forward: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The result of [`Resolver::answer`].
#[derive(Debug)]
pub enum Outcome {
    /// The reply is in the output buffer.
    Reply,
    /// Not ours and not cached: call [`Resolver::forward`].
    Forward(Question),
    /// Not a query (a response, a runt): say nothing.
    Drop,
}

pub struct Resolver {
    index: RefCell<NameIndex>,
    /// Service names (set by tetherd's balancer); they win over container names.
    services: Option<SharedServiceNames>,
    cache: RefCell<ReplyCache>,
    forwarder: Forwarder,
    local_ttl: u32,
    /// Turns the order of multi-address answers, so clients that take the first spread over all holders.
    rotation: Cell<usize>,
    pub local_answers: Cell<u64>,
    pub forwarded: Cell<u64>,
}

impl Resolver {
    pub fn new(forwarder: Forwarder, cache_entries: usize, local_ttl: u32) -> Resolver {
        Resolver {
            index: RefCell::new(NameIndex::default()),
            services: None,
            cache: RefCell::new(ReplyCache::new(cache_entries)),
            forwarder,
            local_ttl,
            rotation: Cell::new(0),
            local_answers: Cell::new(0),
            forwarded: Cell::new(0),
        }
    }

    /// Answers service names from `names` too.
    pub fn with_service_names(mut self, names: SharedServiceNames) -> Resolver {
        self.services = Some(names);
        self
    }

    pub fn set_index(&self, index: NameIndex) {
        *self.index.borrow_mut() = index;
    }

    /// Changes the index in place (never while a query is being answered: both run on one thread and an
    /// answer holds no borrow across an await).
    pub fn update_index(&self, change: impl FnOnce(&mut NameIndex)) {
        change(&mut self.index.borrow_mut());
    }

    /// (networks, names) in the index.
    pub fn index_counts(&self) -> (usize, usize) {
        let index = self.index.borrow();
        (index.network_count(), index.name_count())
    }

    pub fn cache_stats(&self) -> (u64, u64, usize) {
        let c = self.cache.borrow();
        (c.hits, c.misses, c.len())
    }

    pub fn answer(
        &self,
        query: &[u8],
        scope: &Scope,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let q = match wire::parse_query(query) {
            Ok(q) => q,
            Err(QueryProblem::Ignore) => return Outcome::Drop,
            Err(QueryProblem::Reject(rcode)) => {
                wire::error_reply(out, query, rcode);
                return Outcome::Reply;
            }
        };
        let limit = limit_for(&q, transport);
        if q.qclass == wire::CLASS_IN && self.answer_locally(query, &q, scope, limit, out) {
            self.local_answers.set(self.local_answers.get() + 1);
            return Outcome::Reply;
        }
        if !scope.forward {
            // REFUSED rather than SERVFAIL: the client learns at once that this server will not recurse
            // for it (RFC 1035 §4.1.1), instead of retrying a "temporary" failure.
            ReplyWriter::start(out, query, &q, wire::RCODE_REFUSED, false, limit).finish(&q);
            return Outcome::Reply;
        }
        let key = CacheKey {
            name: q.name,
            qtype: q.qtype,
            qclass: q.qclass,
        };
        if self.cache.borrow_mut().get(&key, query, q.raw_end, out) {
            if out.len() > limit {
                wire::truncate_to_question(out);
            }
            return Outcome::Reply;
        }
        Outcome::Forward(Question {
            name: key.name,
            ..q
        })
    }

    /// True when the name is ours (the reply is in `out`), false when it is to be forwarded.
    fn answer_locally(
        &self,
        query: &[u8],
        q: &Question,
        scope: &Scope,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let index = self.index.borrow();
        if q.qtype == wire::TYPE_PTR {
            let Some(name) =
                reverse_address(&q.name).and_then(|ip| index.reverse(ip, &scope.networks))
            else {
                return false;
            };
            let mut w = ReplyWriter::start(out, query, q, wire::RCODE_NOERROR, true, limit);
            w.answer(wire::TYPE_PTR, self.local_ttl, Rdata::Ptr(name));
            w.finish(q);
            return true;
        }
        let service = self
            .services
            .as_ref()
            .and_then(|s| s.borrow().lookup(&q.name, &scope.networks));
        let (found, ttl) = match service {
            Some(answer) if answer.backends => {
                (Lookup::Found(answer.addrs), self.local_ttl.min(BACKEND_TTL))
            }
            Some(answer) => (Lookup::Found(answer.addrs), self.local_ttl),
            None => (index.lookup(&q.name, &scope.networks), self.local_ttl),
        };
        match found {
            Lookup::Found(addrs) => {
                let turn = self.rotation.get();
                self.rotation.set(turn.wrapping_add(1));
                let mut w = ReplyWriter::start(out, query, q, wire::RCODE_NOERROR, true, limit);
                let (want_v4, want_v6) = match q.qtype {
                    wire::TYPE_A => (true, false),
                    wire::TYPE_AAAA => (false, true),
                    wire::TYPE_ANY => (true, true),
                    // The name exists, the type does not: NOERROR with no answers (RFC 2308 NODATA),
                    // which is also what an AAAA query for an IPv4-only container gets.
                    _ => (false, false),
                };
                if want_v4 {
                    let n = addrs.v4.len();
                    for i in 0..n {
                        if !w.answer(wire::TYPE_A, ttl, Rdata::A(addrs.v4[(turn + i) % n])) {
                            break;
                        }
                    }
                }
                if want_v6 {
                    let n = addrs.v6.len();
                    for i in 0..n {
                        if !w.answer(wire::TYPE_AAAA, ttl, Rdata::Aaaa(addrs.v6[(turn + i) % n])) {
                            break;
                        }
                    }
                }
                w.finish(q);
                true
            }
            Lookup::Missing { owned_suffix: true } => {
                ReplyWriter::start(out, query, q, wire::RCODE_NXDOMAIN, true, limit).finish(q);
                true
            }
            Lookup::Missing {
                owned_suffix: false,
            } => false,
        }
    }

    /// Forwards a query `answer` handed back, and returns the reply for the client (SERVFAIL when no
    /// upstream answered, or at once when the asking container has `forwards` all in use). A reply kept
    /// in the cache is charged to `network`.
    pub async fn forward(
        &self,
        query: &[u8],
        q: Question,
        transport: Transport,
        forwards: &Rc<Quota>,
        network: &str,
    ) -> Vec<u8> {
        self.forwarded.set(self.forwarded.get() + 1);
        let limit = limit_for(&q, transport);
        let mut out = Vec::new();
        let reply = match forwards.take() {
            Some(_held) => self.forwarder.forward(query, q.raw_end).await,
            None => {
                tracing::debug!("container has too many queries upstream");
                None
            }
        };
        match reply {
            Some(mut reply) => {
                wire::set_id(&mut reply, q.id);
                self.cache.borrow_mut().insert(
                    CacheKey {
                        name: q.name,
                        qtype: q.qtype,
                        qclass: q.qclass,
                    },
                    &reply,
                    network,
                );
                if reply.len() > limit {
                    wire::truncate_to_question(&mut reply);
                }
                reply
            }
            None => {
                ReplyWriter::start(&mut out, query, &q, wire::RCODE_SERVFAIL, false, limit)
                    .finish(&q);
                out
            }
        }
    }
}

fn limit_for(q: &Question, transport: Transport) -> usize {
    match transport {
        Transport::Udp => q.udp_limit(),
        Transport::Tcp => u16::MAX as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::upstreams::Upstreams;
    use std::time::Duration;

    fn resolver() -> Resolver {
        let records: Vec<crate::state::AttachmentRecord> = [
            ("net1", "a", "web", vec!["www"], vec!["10.0.0.2/24"]),
            ("net1", "b", "db", vec!["www"], vec!["10.0.0.3/24"]),
            ("net2", "c", "hidden", vec![], vec!["10.1.0.2/24"]),
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
        let r = Resolver::new(
            Forwarder::new(
                Upstreams::new("/nonexistent/resolv.conf".into()),
                Duration::from_millis(100),
            ),
            100,
            10,
        );
        r.set_index(NameIndex::build(&records));
        r
    }

    fn ask(r: &Resolver, scope: &Scope, name: &str, qtype: u16) -> (Outcome, Vec<u8>) {
        let query = wire::build_query(1, name, qtype, false);
        let mut out = Vec::new();
        let o = r.answer(&query, scope, Transport::Udp, &mut out);
        (o, out)
    }

    fn scope(nets: &[&str], forward: bool) -> Scope {
        Scope {
            networks: nets.iter().map(|s| s.to_string()).collect(),
            forward,
        }
    }

    #[test]
    fn local_names_answer_and_shared_aliases_rotate() {
        let r = resolver();
        let s = scope(&["net1"], true);
        let (o, out) = ask(&r, &s, "WEB.net1", wire::TYPE_A);
        assert!(matches!(o, Outcome::Reply));
        assert_eq!(wire::answers(&out).unwrap(), vec![(1, vec![10, 0, 0, 2])]);
        let (_, first) = ask(&r, &s, "www", wire::TYPE_A);
        let (_, second) = ask(&r, &s, "www", wire::TYPE_A);
        let a = wire::answers(&first).unwrap();
        let b = wire::answers(&second).unwrap();
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0], "the order turns between answers");
    }

    #[test]
    fn aaaa_for_an_ipv4_name_is_empty_noerror() {
        let r = resolver();
        let (_, out) = ask(&r, &scope(&["net1"], true), "web", wire::TYPE_AAAA);
        assert_eq!(wire::rcode(&out), wire::RCODE_NOERROR);
        assert!(wire::answers(&out).unwrap().is_empty());
    }

    #[test]
    fn other_networks_names_are_forwarded_or_refused_never_answered() {
        let r = resolver();
        let (o, _) = ask(&r, &scope(&["net1"], true), "hidden", wire::TYPE_A);
        assert!(matches!(o, Outcome::Forward(_)));
        let (o, out) = ask(&r, &scope(&["net1"], false), "hidden", wire::TYPE_A);
        assert!(matches!(o, Outcome::Reply));
        assert_eq!(wire::rcode(&out), wire::RCODE_REFUSED);
        let (_, out) = ask(&r, &scope(&["net1"], true), "hidden.net1", wire::TYPE_A);
        assert_eq!(wire::rcode(&out), wire::RCODE_NXDOMAIN);
    }

    #[test]
    fn ptr_answers_the_name_in_scope() {
        let r = resolver();
        let (_, out) = ask(
            &r,
            &scope(&["net1"], true),
            "3.0.0.10.in-addr.arpa",
            wire::TYPE_PTR,
        );
        assert_eq!(
            wire::answers(&out).unwrap()[0].1,
            b"\x02db\x04net1\x00".to_vec()
        );
    }

    #[test]
    fn a_container_out_of_forwards_gets_servfail_at_once_and_others_do_not() {
        let r = resolver();
        let query = wire::build_query(7, "example.com", wire::TYPE_A, false);
        let mut out = Vec::new();
        let Outcome::Forward(q) =
            r.answer(&query, &scope(&["net1"], true), Transport::Udp, &mut out)
        else {
            panic!("not forwarded")
        };
        let flooder = Quota::new(1);
        let _busy = flooder.take().unwrap();
        let reply =
            futures::executor::block_on(r.forward(&query, q, Transport::Udp, &flooder, "net1"));
        assert_eq!(wire::rcode(&reply), wire::RCODE_SERVFAIL);
        assert_eq!(wire::id(&reply), Some(7));
        assert_eq!(flooder.used(), 1, "nothing more was taken");
    }

    #[test]
    fn garbage_is_dropped_or_formerr() {
        let r = resolver();
        let s = scope(&["net1"], true);
        let mut out = Vec::new();
        assert!(matches!(
            r.answer(&[1, 2, 3], &s, Transport::Udp, &mut out),
            Outcome::Drop
        ));
        let mut bad = wire::build_query(5, "web", 1, false);
        bad[5] = 2; // two questions
        assert!(matches!(
            r.answer(&bad, &s, Transport::Udp, &mut out),
            Outcome::Reply
        ));
        assert_eq!(wire::rcode(&out), wire::RCODE_FORMERR);
    }
}
