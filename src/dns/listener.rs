//! The resolver's sockets in one container namespace: UDP and TCP on 127.0.0.11 at private, kernel-chosen
//! ports, with the namespace's redirect of 127.0.0.11:53 to them (`firewall::ResolverRedirect`), so port
//! 53 stays free for the container's own servers. They are opened by the daemon's namespace thread (a
//! socket stays in the namespace it was created in) and then served on the async runtime like any other
//! socket. Dropping the `Listener` closes both; [`remove_redirect`] takes the redirect away.

use std::cell::RefCell;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use super::datagram_batch::{self, DatagramBatch};
use super::error::DnsError;
use super::forwarder::FORWARDS_PER_CONTAINER;
use super::quota::Quota;
use super::resolver::{Outcome, Resolver, Scope, Transport};
use super::wire::Question;
use crate::firewall::ResolverRedirect;
use crate::netns::{NetnsError, NsWorker, NsWorkerError};
use crate::resolv_conf::RESOLVER_IP;

/// Port 0: the kernel picks a free port for each socket, so none the container chose is taken.
const PRIVATE_SOCKET: SocketAddrV4 = SocketAddrV4::new(RESOLVER_IP, 0);
/// A TCP client that sends nothing for this long is dropped (RFC 7766 §6.2.3 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Room for bursts of queries while the runtime is busy.
const UDP_RECEIVE_BUFFER: usize = 1 << 20;

pub struct Listener {
    pub scope: Rc<RefCell<Scope>>,
    /// One task serves both sockets: a thousand containers are a thousand tasks, not two thousand.
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens the sockets inside `netns` (bringing `lo` up first: 127.0.0.11 lives there) and points
/// 127.0.0.11:53 at them, replacing the redirect an earlier tetherd left.
pub async fn open_sockets(
    worker: &NsWorker,
    netns: &Path,
) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let path = netns.to_path_buf();
    let bind = move || -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
        let bind_error = |source| DnsError::Bind {
            netns: path.clone(),
            source,
        };
        ensure_loopback_up().map_err(bind_error)?;
        let udp = std::net::UdpSocket::bind(PRIVATE_SOCKET).map_err(bind_error)?;
        udp.set_nonblocking(true).map_err(bind_error)?;
        let _ = nix::sys::socket::setsockopt(
            &udp,
            nix::sys::socket::sockopt::RcvBuf,
            &UDP_RECEIVE_BUFFER,
        );
        let tcp = std::net::TcpListener::bind(PRIVATE_SOCKET).map_err(bind_error)?;
        tcp.set_nonblocking(true).map_err(bind_error)?;
        let redirect = ResolverRedirect {
            address: RESOLVER_IP,
            udp_port: udp.local_addr().map_err(bind_error)?.port(),
            tcp_port: tcp.local_addr().map_err(bind_error)?.port(),
        };
        redirect.install().map_err(|source| DnsError::Redirect {
            netns: path.clone(),
            source,
        })?;
        Ok((udp, tcp))
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

/// `lo` is up in every namespace a runtime makes, but a bare `ip netns add` leaves it down.
fn ensure_loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on an owned descriptor and a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = req.ifr_ifru.ifru_flags;
        if flags & libc::IFF_UP as libc::c_short == 0 {
            req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Serves the sockets until the returned listener is dropped.
pub fn serve(
    resolver: Rc<Resolver>,
    sockets: (std::net::UdpSocket, std::net::TcpListener),
    scope: Scope,
    max_tcp: usize,
) -> std::io::Result<Listener> {
    let udp = Rc::new(UdpSocket::from_std(sockets.0)?);
    let tcp = TcpListener::from_std(sockets.1)?;
    let scope = Rc::new(RefCell::new(scope));
    Ok(Listener {
        task: tokio::task::spawn_local(serve_sockets(resolver, udp, tcp, scope.clone(), max_tcp)),
        scope,
    })
}

thread_local! {
    // One set of batch buffers for every namespace: the runtime has one thread and a batch is answered
    // without an await in between, so a thousand containers cost no thousand buffers.
    static UDP_BATCH: RefCell<DatagramBatch> = RefCell::new(DatagramBatch::default());
}

async fn serve_sockets(
    resolver: Rc<Resolver>,
    udp: Rc<UdpSocket>,
    tcp: TcpListener,
    scope: Rc<RefCell<Scope>>,
    max_tcp: usize,
) {
    // This container's share of the upstream queries in flight, over UDP and TCP alike.
    let forwards = Quota::new(FORWARDS_PER_CONTAINER);
    // Owned here: when this task is aborted, every connection task goes with it. Made on the first
    // TCP client, as most containers never ask over TCP.
    let mut connections: Option<JoinSet<()>> = None;
    loop {
        // Both arms are cancel-safe: a readiness or an accept not taken stays with the socket.
        tokio::select! {
            ready = udp.readable() => {
                if ready.is_ok() {
                    answer_datagrams(&resolver, &udp, &scope, &forwards).await;
                }
            }
            accepted = tcp.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let connections = connections.get_or_insert_with(JoinSet::new);
                while connections.try_join_next().is_some() {}
                if connections.len() >= max_tcp {
                    continue; // dropped: the client retries or gives up, the daemon's memory stays bounded
                }
                connections.spawn_local(serve_tcp_client(
                    resolver.clone(),
                    stream,
                    scope.clone(),
                    forwards.clone(),
                ));
            }
        }
    }
}

/// Answers one batch of datagrams; the ones to forward go on in tasks of their own.
async fn answer_datagrams(
    resolver: &Rc<Resolver>,
    socket: &Rc<UdpSocket>,
    scope: &Rc<RefCell<Scope>>,
    forwards: &Rc<Quota>,
) {
    let fd = socket.as_raw_fd();
    let mut pending: Vec<(Vec<u8>, Question, SocketAddr)> = Vec::new();
    let received = UDP_BATCH.with_borrow_mut(|batch| {
        // try_io: a WouldBlock clears tokio's readiness, so the next readable() waits for new data.
        let n = socket.try_io(Interest::READABLE, || batch.receive(fd))?;
        let scope = scope.borrow();
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
        let (resolver, socket, forwards) = (resolver.clone(), socket.clone(), forwards.clone());
        let network = cache_owner(&scope.borrow());
        tokio::task::spawn_local(async move {
            let reply = resolver
                .forward(&query, q, Transport::Udp, &forwards, &network)
                .await;
            let _ = socket.send_to(&reply, peer).await;
        });
    }
    match received {
        // A full batch: more may be waiting; let other namespaces have a turn first.
        Ok(n) if n == datagram_batch::BATCH => tokio::task::yield_now().await,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => tracing::debug!(error = %e, "resolver receive failed"),
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
