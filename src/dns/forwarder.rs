//! Forwarding to the host's resolvers: one connected UDP socket per upstream server, shared by every
//! query to it, with a random ID per upstream query and the question checked on the way back (so a reply
//! must match ID, server and question). Connected, so the kernel hands the socket the ICMP error of a
//! server with nothing on its port (ECONNREFUSED): the queries waiting on it fail at once and the next
//! server is asked, instead of each waiting out the timeout. Failover: each server in turn, starting
//! with the last one that answered, for resolv.conf's number of attempts; a truncated UDP reply is asked
//! again over TCP.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::upstreams::Upstreams;
use super::wire;

/// Upstream queries in flight at most; well below the 65536 IDs, so a free one is always found quickly.
const MAX_PENDING: usize = 8192;
/// Upstream queries one container may have in flight: a container flooding unanswerable names fills
/// its own share, and the rest of [`MAX_PENDING`] stays for everybody else.
pub const FORWARDS_PER_CONTAINER: usize = 128;
/// After a server refused, it is skipped for this long: the kernel rate-limits the ICMP errors that
/// tell us (one a second per peer past a burst of six), so asking again sooner could mean
/// waiting out a timeout after all.
const REFUSED_BACKOFF: Duration = Duration::from_secs(1);

/// Why an upstream gave no reply.
enum NoReply {
    /// The server's host said nothing listens there: try the next one now.
    Refused,
    /// Timed out, could not be sent, or answered another question.
    Lost,
}

struct Pending {
    server: SocketAddr,
    reply: oneshot::Sender<Result<Vec<u8>, NoReply>>,
}

type PendingTable = Rc<RefCell<HashMap<u16, Pending>>>;
/// When a server last refused (shared by its receiving task and the senders).
type RefusedAt = Rc<Cell<Option<Instant>>>;

/// The socket connected to one server and the task reading it.
struct Upstream {
    socket: Rc<UdpSocket>,
    receiver: JoinHandle<()>,
    refused_at: RefusedAt,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

pub struct Forwarder {
    upstreams: RefCell<Upstreams>,
    timeout: Duration,
    sockets: RefCell<HashMap<SocketAddr, Upstream>>,
    pending: PendingTable,
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
        // Sockets of servers resolv.conf no longer names are closed.
        self.sockets
            .borrow_mut()
            .retain(|server, _| conf.servers.contains(server));
        if n == 0 {
            return None;
        }
        let start = self.preferred.get() % n;
        let mut fallback = None;
        for _ in 0..conf.attempts {
            let mut refused = 0;
            for i in 0..n {
                let idx = (start + i) % n;
                let server = conf.servers[idx];
                let reply = match self.ask_udp(server, query, question_end).await {
                    Ok(reply) => reply,
                    Err(NoReply::Refused) => {
                        refused += 1;
                        continue;
                    }
                    Err(NoReply::Lost) => continue,
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
            if refused == n {
                // Every server refused: another round would only be refused again.
                break;
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

    /// The socket connected to `server` and when it last refused, opened on first use.
    fn upstream(&self, server: SocketAddr) -> Option<(Rc<UdpSocket>, RefusedAt)> {
        if let Some(u) = self.sockets.borrow().get(&server) {
            return Some((u.socket.clone(), u.refused_at.clone()));
        }
        let bind: SocketAddr = if server.is_ipv6() {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let std = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.connect(server).map(|_| s))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .map_err(|e| tracing::warn!(%server, error = %e, "cannot open the upstream socket"))
            .ok()?;
        let socket = Rc::new(UdpSocket::from_std(std).ok()?);
        let refused_at = Rc::new(Cell::new(None));
        let receiver = tokio::task::spawn_local(receive_replies(
            socket.clone(),
            server,
            self.pending.clone(),
            refused_at.clone(),
        ));
        self.sockets.borrow_mut().insert(
            server,
            Upstream {
                socket: socket.clone(),
                receiver,
                refused_at: refused_at.clone(),
            },
        );
        Some((socket, refused_at))
    }

    async fn ask_udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        question_end: usize,
    ) -> Result<Vec<u8>, NoReply> {
        if self.pending.borrow().len() >= MAX_PENDING {
            // Upstreams this far behind are not helped by more queries; the client gets SERVFAIL now.
            tracing::debug!(%server, "too many upstream queries in flight");
            return Err(NoReply::Lost);
        }
        let (socket, refused_at) = self.upstream(server).ok_or(NoReply::Lost)?;
        if refused_at
            .get()
            .is_some_and(|t| t.elapsed() < REFUSED_BACKOFF)
        {
            return Err(NoReply::Refused);
        }
        let id = self.next_id();
        let mut msg = query.to_vec();
        wire::set_id(&mut msg, id);
        let (tx, rx) = oneshot::channel();
        self.pending
            .borrow_mut()
            .insert(id, Pending { server, reply: tx });
        if let Err(e) = socket.send(&msg).await {
            self.pending.borrow_mut().remove(&id);
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                // An ICMP error from an earlier query, reported on this send.
                refused_at.set(Some(Instant::now()));
                return Err(NoReply::Refused);
            }
            tracing::debug!(%server, error = %e, "sending to upstream failed");
            return Err(NoReply::Lost);
        }
        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply?,
            _ => {
                self.pending.borrow_mut().remove(&id);
                tracing::debug!(%server, "upstream did not answer in time");
                return Err(NoReply::Lost);
            }
        };
        // The question must come back unchanged (byte for byte, as upstreams echo it).
        let same_question =
            reply.get(wire::HEADER_LEN..question_end) == query.get(wire::HEADER_LEN..question_end);
        if same_question {
            Ok(reply)
        } else {
            Err(NoReply::Lost)
        }
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

async fn receive_replies(
    socket: Rc<UdpSocket>,
    server: SocketAddr,
    pending: PendingTable,
    refused_at: RefusedAt,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // Nothing listens on the server's port. The error names no query: every query waiting
                // on this server is failed now, and each is asked of the next server.
                refused_at.set(Some(Instant::now()));
                let mut table = pending.borrow_mut();
                let ids: Vec<u16> = table
                    .iter()
                    .filter(|(_, p)| p.server == server)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    if let Some(p) = table.remove(&id) {
                        let _ = p.reply.send(Err(NoReply::Refused));
                    }
                }
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let msg = &buf[..n];
        let Some(id) = wire::id(msg) else { continue };
        let mut table = pending.borrow_mut();
        // The socket is connected: only the server can have sent this. A stray reply is dropped and
        // the query stays open.
        if table.get(&id).is_some_and(|p| p.server == server) && wire::is_response(msg) {
            if let Some(p) = table.remove(&id) {
                let _ = p.reply.send(Ok(msg.to_vec()));
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
