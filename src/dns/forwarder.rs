//! Forwarding to the host's resolvers: one UDP socket per address family, shared by every query, with a
//! random ID per upstream query and the question checked on the way back (so a reply must match ID,
//! server and question). Failover: each server in turn, starting with the last one that answered, for
//! resolv.conf's number of attempts; a truncated UDP reply is asked again over TCP.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

use super::upstreams::Upstreams;
use super::wire;

/// Upstream queries in flight at most; well below the 65536 IDs, so a free one is always found quickly.
const MAX_PENDING: usize = 8192;

struct Pending {
    server: SocketAddr,
    reply: oneshot::Sender<Vec<u8>>,
}

pub struct Forwarder {
    upstreams: RefCell<Upstreams>,
    timeout: Duration,
    sockets: RefCell<HashMap<bool, Rc<UdpSocket>>>,
    pending: Rc<RefCell<HashMap<u16, Pending>>>,
    /// Index of the server that answered last: tried first next time.
    preferred: Cell<usize>,
    rng: Cell<u64>,
}

impl Forwarder {
    pub fn new(upstreams: Upstreams, timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams: RefCell::new(upstreams),
            timeout,
            sockets: RefCell::new(HashMap::new()),
            pending: Rc::new(RefCell::new(HashMap::new())),
            preferred: Cell::new(0),
            rng: Cell::new(seed()),
        }
    }

    /// Asks the upstreams; the reply carries the upstream's ID (the caller sets the client's). `None` when
    /// no server answered (or none is configured).
    pub async fn forward(&self, query: &[u8], question_end: usize) -> Option<Vec<u8>> {
        let conf = self.upstreams.borrow_mut().current().clone();
        let n = conf.servers.len();
        if n == 0 {
            return None;
        }
        let start = self.preferred.get() % n;
        let mut fallback = None;
        for _ in 0..conf.attempts {
            for i in 0..n {
                let idx = (start + i) % n;
                let server = conf.servers[idx];
                let Some(reply) = self.ask_udp(server, query, question_end).await else {
                    continue;
                };
                let reply = if wire::is_truncated(&reply) {
                    match self.ask_tcp(server, query).await {
                        Some(full) => full,
                        None => reply,
                    }
                } else {
                    reply
                };
                if matches!(
                    wire::rcode(&reply),
                    wire::RCODE_SERVFAIL | wire::RCODE_REFUSED
                ) {
                    fallback = Some(reply);
                    continue;
                }
                self.preferred.set(idx);
                return Some(reply);
            }
        }
        fallback
    }

    fn next_id(&self) -> u16 {
        // xorshift64*: unpredictable enough with a random seed; not a CSPRNG, the question check and the
        // source check narrow what a spoofer can hit.
        loop {
            let mut x = self.rng.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng.set(x);
            let id = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16;
            if !self.pending.borrow().contains_key(&id) {
                return id;
            }
        }
    }

    fn socket(&self, v6: bool) -> Option<Rc<UdpSocket>> {
        if let Some(s) = self.sockets.borrow().get(&v6) {
            return Some(s.clone());
        }
        let bind: SocketAddr = if v6 {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let std = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .map_err(|e| tracing::warn!(error = %e, "cannot open the upstream socket"))
            .ok()?;
        let socket = Rc::new(UdpSocket::from_std(std).ok()?);
        tokio::task::spawn_local(receive_replies(socket.clone(), self.pending.clone()));
        self.sockets.borrow_mut().insert(v6, socket.clone());
        Some(socket)
    }

    async fn ask_udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        question_end: usize,
    ) -> Option<Vec<u8>> {
        if self.pending.borrow().len() >= MAX_PENDING {
            // Upstreams this far behind are not helped by more queries; the client gets SERVFAIL now.
            tracing::debug!(%server, "too many upstream queries in flight");
            return None;
        }
        let socket = self.socket(server.is_ipv6())?;
        let id = self.next_id();
        let mut msg = query.to_vec();
        wire::set_id(&mut msg, id);
        let (tx, rx) = oneshot::channel();
        self.pending
            .borrow_mut()
            .insert(id, Pending { server, reply: tx });
        if let Err(e) = socket.send_to(&msg, server).await {
            tracing::debug!(%server, error = %e, "sending to upstream failed");
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            _ => {
                self.pending.borrow_mut().remove(&id);
                tracing::debug!(%server, "upstream did not answer in time");
                return None;
            }
        };
        // The question must come back unchanged (byte for byte, as upstreams echo it).
        let same_question =
            reply.get(wire::HEADER_LEN..question_end) == query.get(wire::HEADER_LEN..question_end);
        same_question.then_some(reply)
    }

    async fn ask_tcp(&self, server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
        let exchange = async {
            let mut stream = TcpStream::connect(server).await.ok()?;
            let mut msg = Vec::with_capacity(query.len() + 2);
            msg.extend_from_slice(&(query.len() as u16).to_be_bytes());
            msg.extend_from_slice(query);
            stream.write_all(&msg).await.ok()?;
            let len = stream.read_u16().await.ok()? as usize;
            let mut reply = vec![0u8; len];
            stream.read_exact(&mut reply).await.ok()?;
            Some(reply)
        };
        tokio::time::timeout(self.timeout, exchange).await.ok()?
    }
}

async fn receive_replies(socket: Rc<UdpSocket>, pending: Rc<RefCell<HashMap<u16, Pending>>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let msg = &buf[..n];
        let Some(id) = wire::id(msg) else { continue };
        let mut table = pending.borrow_mut();
        // Only the server we asked may answer (a stray or spoofed reply is dropped, the query stays open).
        if table.get(&id).is_some_and(|p| p.server == from) && wire::is_response(msg) {
            if let Some(p) = table.remove(&id) {
                let _ = p.reply.send(msg.to_vec());
            }
        }
    }
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok()
    {
        let s = u64::from_ne_bytes(bytes);
        if s != 0 {
            return s;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ ((std::process::id() as u64) << 32) | 1
}
