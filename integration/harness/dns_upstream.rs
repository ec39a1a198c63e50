//! A stand-in for the host's DNS server: a UDP responder on a thread that entered a test namespace,
//! answering every A query with one fixed address (TTL 60) and counting what it was asked, so tests can
//! see forwarding, failover and caching without ever reaching this machine's real resolver.

use super::netns::NetNs;
use nix::sched::CloneFlags;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tether::dns::wire;

/// The address every forwarded A query resolves to.
pub const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

pub struct FakeUpstream {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How a [`FakeUpstream`] answers one query: writes the reply into the buffer, or returns false to
/// stay silent (a blackhole).
pub type Respond = dyn Fn(&wire::Question, &[u8], &mut Vec<u8>) -> bool + Send;

/// The default answer: every A query gets [`UPSTREAM_ANSWER`] with TTL 60, other types an empty NOERROR.
pub fn answer_fixed(query: &wire::Question, raw: &[u8], out: &mut Vec<u8>) -> bool {
    let mut w = wire::ReplyWriter::start(out, raw, query, 0, false, 512);
    if query.qtype == wire::TYPE_A {
        w.answer(wire::TYPE_A, 60, wire::Rdata::A(UPSTREAM_ANSWER));
    }
    w.finish(query);
    true
}

impl FakeUpstream {
    /// Serves on `ip:53` inside `ns` until dropped, answering with [`answer_fixed`].
    pub fn start(ns: &NetNs, ip: &str) -> FakeUpstream {
        FakeUpstream::start_with(ns, ip, Box::new(answer_fixed))
    }

    /// Serves on `ip:53` inside `ns` until dropped, answering as `respond` says.
    pub fn start_with(ns: &NetNs, ip: &str, respond: Box<Respond>) -> FakeUpstream {
        let addr: SocketAddr = format!("{ip}:53").parse().expect("an IPv4 address");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = ns.path();
        let (q, s) = (queries.clone(), stop.clone());
        // This thread enters the namespace and never runs anything else (setns is per thread).
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open upstream netns");
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into upstream netns");
            let socket = UdpSocket::bind(addr).expect("bind the fake upstream");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 4096];
            let mut out = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = wire::parse_query(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::Relaxed);
                if respond(&query, &buf[..n], &mut out) {
                    let _ = socket.send_to(&out, peer);
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("fake upstream did not start");
        FakeUpstream {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// How many queries reached this server.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes to `out` the reply to `query` that answers an A question with `addr` (TTL 60) and any other
/// question with no record; false when `query` is not a DNS query.
pub fn answer_a(query: &[u8], addr: Ipv4Addr, out: &mut Vec<u8>) -> bool {
    let Ok(question) = wire::parse_query(query) else {
        return false;
    };
    let mut w = wire::ReplyWriter::start(out, query, &question, 0, false, 512);
    if question.qtype == wire::TYPE_A {
        w.answer(wire::TYPE_A, 60, wire::Rdata::A(addr));
    }
    w.finish(&question);
    true
}

/// Runs `f` on a fresh thread inside `ns` and returns its result (the thread ends with `f`).
pub fn in_netns<T: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f)
        .join()
        .expect("thread in netns panicked")
}

/// Starts `f` on a fresh thread inside `ns` (the thread ends with `f`).
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &NetNs,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}
