//! The resolver's sockets in one container namespace: UDP and TCP on 127.0.0.11 at private, kernel-chosen
//! ports, with the namespace's redirect of 127.0.0.11:53 to them (`firewall::ResolverRedirect`), so port
//! 53 stays free for the container's own servers. They are made inside the namespace (a socket stays in
//! the namespace it was created in): by the plugin during ADD, which hands them over with its notify, else
//! by the daemon's namespace thread; then served on the async runtime like any other socket. Dropping the `Listener` closes both; [`remove_redirect`] takes the redirect away.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};

use super::datagram_batch::{self, DatagramBatch};
use super::error::DnsError;
use super::forwarder::FORWARDS_PER_CONTAINER;
use super::quota::Quota;
use super::resolver::{Outcome, Resolver, Scope, Transport};
use super::wire::Question;
use crate::firewall::ResolverRedirect;
use crate::kernel_fd;
use crate::netns::{NetnsError, NsWorker, NsWorkerError};
use crate::resolver_sockets::ResolverSockets;

/// A TCP client that sends nothing for this long is dropped (RFC 7766 §6.2.3 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// One container namespace's resolver, served by the [`SocketSet`]; dropping it closes both sockets.
pub struct Listener {
    pub scope: Rc<RefCell<Scope>>,
    set: Rc<SocketSet>,
    slot: u32,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.set.remove(self.slot);
    }
}

/// Every namespace's sockets in one level-triggered epoll set, served by one task. A tokio registration
/// and a task per namespace cost about 1 KB of RSS each (both are 128-byte aligned): a thousand
/// containers, a megabyte more than the sockets themselves.
struct SocketSet {
    epoll: AsyncFd<OwnedFd>,
    resolver: Rc<Resolver>,
    max_tcp: usize,
    slots: RefCell<Vec<Option<Rc<NamespaceSockets>>>>,
    free: RefCell<Vec<u32>>,
}

struct NamespaceSockets {
    /// Shared with the tasks that send forwarded replies.
    udp: Rc<std::net::UdpSocket>,
    tcp: std::net::TcpListener,
    scope: Rc<RefCell<Scope>>,
    /// This container's share of the upstream queries in flight, over UDP and TCP alike.
    forwards: Rc<Quota>,
    /// Dropped with the namespace, and every connection task with it. Made on the first TCP client, as
    /// most containers never ask over TCP.
    connections: RefCell<Option<JoinSet<()>>>,
}

/// The epoll token of a socket: its slot, and whether it is the TCP listener.
fn token(slot: u32, tcp: bool) -> u64 {
    (slot as u64) << 1 | tcp as u64
}

/// The set of served namespaces and its task, which ends when this is dropped.
pub struct Sockets {
    set: Rc<SocketSet>,
    task: JoinHandle<()>,
}

impl Drop for Sockets {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sockets {
    pub fn start(resolver: Rc<Resolver>, max_tcp: usize) -> std::io::Result<Sockets> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let epoll = kernel_fd::register(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let set = Rc::new(SocketSet {
            epoll,
            resolver,
            max_tcp,
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        });
        Ok(Sockets {
            task: tokio::task::spawn_local(serve_set(set.clone())),
            set,
        })
    }

    /// Serves the sockets until the returned listener is dropped.
    pub fn serve(&self, sockets: ResolverSockets, scope: Scope) -> std::io::Result<Listener> {
        let set = &self.set;
        let scope = Rc::new(RefCell::new(scope));
        let ns = Rc::new(NamespaceSockets {
            udp: Rc::new(sockets.udp),
            tcp: sockets.tcp,
            scope: scope.clone(),
            forwards: Quota::new(FORWARDS_PER_CONTAINER),
            connections: RefCell::new(None),
        });
        let slot = match set.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                let mut slots = set.slots.borrow_mut();
                slots.push(None);
                (slots.len() - 1) as u32
            }
        };
        set.slots.borrow_mut()[slot as usize] = Some(ns.clone());
        // From here on, dropping the listener undoes whatever was added.
        let listener = Listener {
            scope,
            set: set.clone(),
            slot,
        };
        set.watch(ns.udp.as_raw_fd(), token(slot, false))?;
        set.watch(ns.tcp.as_raw_fd(), token(slot, true))?;
        Ok(listener)
    }
}

impl SocketSet {
    fn watch(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; the kernel copies the event.
        let r =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove(&self, slot: u32) {
        let Some(ns) = self.slots.borrow_mut()[slot as usize].take() else {
            return;
        };
        for fd in [ns.udp.as_raw_fd(), ns.tcp.as_raw_fd()] {
            // SAFETY: the descriptors are still open (ns owns them); a socket never added fails harmlessly.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                );
            }
        }
        self.free.borrow_mut().push(slot);
    }

    fn namespace(&self, slot: u32) -> Option<Rc<NamespaceSockets>> {
        self.slots.borrow().get(slot as usize).cloned().flatten()
    }
}

thread_local! {
    // One set of batch buffers for every namespace: the runtime has one thread and a batch is answered
    // without an await in between, so a thousand containers cost no thousand buffers.
    static UDP_BATCH: RefCell<DatagramBatch> = RefCell::new(DatagramBatch::default());
}

/// Events taken per `epoll_wait`.
const EVENTS: usize = 64;

async fn serve_set(set: Rc<SocketSet>) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        let Ok(mut ready) = set.epoll.readable().await else {
            return;
        };
        // SAFETY: events has room for EVENTS entries; a zero timeout never blocks the runtime.
        let n = unsafe {
            libc::epoll_wait(set.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, 0)
        };
        if n <= 0 {
            // Nothing ready (or EINTR): wait for the next wakeup. tokio keeps a wakeup that came after
            // this readiness was reported, so none is lost.
            ready.clear_ready();
            continue;
        }
        let mut drained = (n as usize) < EVENTS;
        for event in &events[..n as usize] {
            let (slot, tcp) = ((event.u64 >> 1) as u32, event.u64 & 1 == 1);
            // A namespace closed since the wait is simply gone.
            let Some(ns) = set.namespace(slot) else {
                continue;
            };
            if tcp {
                accept_clients(&set, &ns);
            } else {
                drained &= answer_datagrams(&set.resolver, &ns) < datagram_batch::BATCH;
            }
        }
        if drained {
            // Every socket was emptied: wait for the next datagram instead of asking epoll again, one
            // system call less per wakeup (the common case at a few thousand queries a second). A
            // datagram that came meanwhile has woken the set already, so nothing waits unseen. The
            // wait itself lets the other tasks run: no yield, which would cost the runtime one more
            // poll of its own epoll before this task sleeps.
            ready.clear_ready();
        } else {
            // Sockets with datagrams left: the readiness stays set, the loop comes straight back, and
            // level-triggered epoll hands them out again, one batch a round. Forwarded queries and TCP
            // clients have a turn between rounds.
            drop(ready);
            tokio::task::yield_now().await;
        }
    }
}

fn accept_clients(set: &SocketSet, ns: &NamespaceSockets) {
    loop {
        let stream = match ns.tcp.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // Out of descriptors, say: the client stays queued until the next wakeup, rather than
                // the set spinning on it.
                tracing::debug!(error = %e, "resolver accept failed");
                return;
            }
        };
        let Ok(stream) = stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        else {
            continue;
        };
        let mut connections = ns.connections.borrow_mut();
        let connections = connections.get_or_insert_with(JoinSet::new);
        while connections.try_join_next().is_some() {}
        if connections.len() >= set.max_tcp {
            continue; // dropped: the client retries or gives up, the daemon's memory stays bounded
        }
        connections.spawn_local(serve_tcp_client(
            set.resolver.clone(),
            stream,
            ns.scope.clone(),
            ns.forwards.clone(),
        ));
    }
}

/// Opens the sockets inside `netns` (see `ResolverSockets::bind`) and points 127.0.0.11:53 at them,
/// replacing the redirect an earlier tetherd left. For namespaces no plugin handed sockets for.
pub async fn open_sockets(worker: &NsWorker, netns: &Path) -> Result<ResolverSockets, DnsError> {
    let path = netns.to_path_buf();
    let bind = move || -> Result<ResolverSockets, DnsError> {
        let bind_error = |source| DnsError::Bind {
            netns: path.clone(),
            source,
        };
        let sockets = ResolverSockets::bind().map_err(bind_error)?;
        let redirect = sockets.redirect().map_err(bind_error)?;
        redirect.install().map_err(|source| DnsError::Redirect {
            netns: path.clone(),
            source,
        })?;
        Ok(sockets)
    };
    worker
        .run_in(netns, bind)
        .await
        .map_err(|source| DnsError::Enter {
            netns: netns.to_path_buf(),
            source,
        })?
}

/// Takes the redirect out of the namespace at `netns` when it is still the one with identity `id` (a path
/// reused for a new namespace is left alone). A namespace already gone is fine: the table went with it.
pub async fn remove_redirect(
    worker: &NsWorker,
    netns: &Path,
    id: (u64, u64),
) -> Result<(), DnsError> {
    let path = netns.to_path_buf();
    let remove = move || -> Result<(), DnsError> {
        let same = std::fs::metadata("/proc/thread-self/ns/net")
            .is_ok_and(|here| (here.dev(), here.ino()) == id);
        if !same {
            return Ok(());
        }
        ResolverRedirect::remove().map_err(|source| DnsError::Redirect {
            netns: path,
            source,
        })
    };
    match worker.run_in(netns, remove).await {
        Ok(done) => done,
        Err(NsWorkerError::Netns(NetnsError::NotFound { .. })) => Ok(()),
        Err(source) => Err(DnsError::Enter {
            netns: netns.to_path_buf(),
            source,
        }),
    }
}

/// Answers one batch of datagrams; the ones to forward go on in tasks of their own. Returns how many
/// came (fewer than a batch: the socket is empty).
fn answer_datagrams(resolver: &Rc<Resolver>, ns: &NamespaceSockets) -> usize {
    let fd = ns.udp.as_raw_fd();
    let mut pending: Vec<(Vec<u8>, Question, SocketAddr)> = Vec::new();
    let received = UDP_BATCH.with_borrow_mut(|batch| {
        let n = batch.receive(fd)?;
        let scope = ns.scope.borrow();
        for i in 0..n {
            let mut reply = std::mem::take(&mut batch.replies[i]);
            match resolver.answer(batch.datagram(i), &scope, Transport::Udp, &mut reply) {
                Outcome::Reply => batch.answered[i] = true,
                Outcome::Forward(q) => pending.push((batch.datagram(i).to_vec(), q, batch.peer(i))),
                Outcome::Drop => {}
            }
            batch.replies[i] = reply;
        }
        batch.send_replies(fd);
        Ok::<usize, std::io::Error>(n)
    });
    for (query, q, peer) in pending {
        let (resolver, socket, forwards) = (resolver.clone(), ns.udp.clone(), ns.forwards.clone());
        let network = cache_owner(&ns.scope.borrow());
        tokio::task::spawn_local(async move {
            let reply = resolver
                .forward(&query, q, Transport::Udp, &forwards, &network)
                .await;
            // A full send buffer drops the reply, like a lost datagram: the client retries.
            let _ = socket.send_to(&reply, peer);
        });
    }
    match received {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => {
            tracing::debug!(error = %e, "resolver receive failed");
            0
        }
    }
}

/// RFC 1035 §4.2.2: each message prefixed by its length; several queries per connection.
async fn serve_tcp_client(
    resolver: Rc<Resolver>,
    mut stream: TcpStream,
    scope: Rc<RefCell<Scope>>,
    forwards: Rc<Quota>,
) {
    let mut out = Vec::with_capacity(1500);
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; len as usize];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await else {
            return;
        };
        let outcome = resolver.answer(&query, &scope.borrow(), Transport::Tcp, &mut out);
        let reply = match outcome {
            Outcome::Reply => std::mem::take(&mut out),
            Outcome::Forward(q) => {
                let network = cache_owner(&scope.borrow());
                resolver
                    .forward(&query, q, Transport::Tcp, &forwards, &network)
                    .await
            }
            Outcome::Drop => continue,
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The network a container's cached answers are charged to: the first it is on (the cache's share is
/// per network).
fn cache_owner(scope: &Scope) -> String {
    scope.networks.first().cloned().unwrap_or_default()
}
