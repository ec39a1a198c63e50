//! A TCP exchange between two namespaces without helper processes: a listener and a client, each on
//! a fresh OS thread that setns()es into its namespace. setns changes only the calling thread, and
//! such a thread must never run anything else afterwards, so each one ends with its task.
//!
//! Sockets are shut down, not just closed: other test threads fork children all the time (a plugin starting
//! tetherd, or any spawn with a `pre_exec`, forks rather than vforks), and each child holds a copy of every open fd until it
//! execs. A listener merely closed then can stay LISTENing in such a child, and the next bind of the same
//! address fails with EADDRINUSE; a connection merely closed sends its FIN only when the child execs.
//! shutdown() acts on the socket itself, whoever else holds the fd.

use super::netns::NetNs;
use nix::sched::CloneFlags;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `server_ip:port` in `server`, connects from `client`, sends a line and expects it
/// echoed back with a prefix. Err says which step failed.
pub fn exchange(server: &NetNs, server_ip: &str, port: u16, client: &NetNs) -> Result<(), String> {
    let ip: IpAddr = server_ip
        .parse()
        .map_err(|e| format!("bad server ip {server_ip}: {e}"))?;
    let addr = SocketAddr::new(ip, port);
    exchange_via(server, addr, client, addr).map(drop)
}

/// Like [`exchange`], but the server listens on `listen` and the client connects to `connect` (a published
/// port on the host, say). Returns the client address the server saw, to tell whether it was NATed.
pub fn exchange_via(
    server: &NetNs,
    listen: SocketAddr,
    client: &NetNs,
    connect: SocketAddr,
) -> Result<SocketAddr, String> {
    let addr = listen;
    let (ready_tx, ready_rx) = mpsc::channel();
    let server_thread = in_netns(server, move || -> Result<SocketAddr, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let served = serve_one(&listener, addr);
        stop_listening(&listener);
        served
    });
    if ready_rx.recv_timeout(TIMEOUT).is_err() {
        return Err(join(server_thread)
            .err()
            .unwrap_or("server never got ready".into()));
    }
    let client_thread = in_netns(client, move || -> Result<String, String> {
        let mut s = connect_within(connect, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.write_all(b"hello")
            .map_err(|e| format!("client write: {e}"))?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)
            .map_err(|e| format!("client read: {e}"))?;
        Ok(reply)
    });
    let reply = join(client_thread);
    let served = join(server_thread);
    let reply = reply?;
    let peer = served?;
    if reply != "echo:hello" {
        return Err(format!("unexpected reply {reply:?}"));
    }
    Ok(peer)
}

/// Accepts one connection on `listener` (non-blocking), reads a line and echoes it back with a prefix;
/// returns the peer's address.
fn serve_one(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, String> {
    // The client may spend all of TIMEOUT retrying its connect: wait a little longer than that.
    let deadline = Instant::now() + TIMEOUT + Duration::from_secs(1);
    let (mut conn, _) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(format!("no connection to {addr} within {TIMEOUT:?}"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept on {addr}: {e}")),
        }
    };
    let peer = conn.peer_addr().map_err(|e| e.to_string())?;
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = conn
        .read(&mut buf)
        .map_err(|e| format!("server read: {e}"))?;
    conn.write_all(b"echo:")
        .and_then(|_| conn.write_all(&buf[..n]))
        .map_err(|e| format!("server write: {e}"))?;
    // The FIN goes now, even if a forked child still holds a copy of this fd.
    let _ = conn.shutdown(Shutdown::Both);
    Ok(peer)
}

/// Takes the listener out of LISTEN at once (see the module comment); its address can be bound again
/// even while a forked child still holds the fd.
fn stop_listening(listener: &TcpListener) {
    // SAFETY: shutdown on an fd we own; no memory is involved.
    unsafe {
        libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR);
    }
}

/// Connects to `to`, retrying for up to `within` while the kernel reports the host unreachable. On a
/// loaded machine the first neighbour resolution of a fresh address can fail (the kernel gives up after
/// its three ARP probes and answers the queued SYN with ICMP host unreachable, which ends a connect in
/// SYN_SENT at once); ping_retry and fetch_from retry for the same reason. Any other error is returned.
fn connect_within(to: SocketAddr, within: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&to, left.max(Duration::from_millis(100))) {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH)
                ) && Instant::now() + Duration::from_millis(200) < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("connect to {to}: {e}")),
        }
    }
}

/// One UDP datagram from `client` to `connect`, received by a socket bound to `listen` in `server`, answered,
/// and the answer received. Returns the client address the server saw.
pub fn udp_exchange_via(
    server: &NetNs,
    listen: SocketAddr,
    client: &NetNs,
    connect: SocketAddr,
) -> Result<SocketAddr, String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let server_thread = in_netns(server, move || -> Result<SocketAddr, String> {
        let sock = UdpSocket::bind(listen).map_err(|e| format!("bind udp {listen}: {e}"))?;
        sock.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let mut buf = [0u8; 64];
        let (n, peer) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no datagram on {listen}: {e}"))?;
        sock.send_to(&[b"echo:", &buf[..n]].concat(), peer)
            .map_err(|e| format!("udp reply: {e}"))?;
        Ok(peer)
    });
    if ready_rx.recv_timeout(TIMEOUT).is_err() {
        return Err(join(server_thread)
            .err()
            .unwrap_or("udp server never got ready".into()));
    }
    let client_thread = in_netns(client, move || -> Result<String, String> {
        let any: SocketAddr = if connect.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap();
        let sock = UdpSocket::bind(any).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        sock.send_to(b"hello", connect)
            .map_err(|e| format!("udp send to {connect}: {e}"))?;
        let mut buf = [0u8; 64];
        let (n, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no udp answer from {connect}: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    let reply = join(client_thread);
    let peer = join(server_thread);
    let reply = reply?;
    let peer = peer?;
    if reply != "echo:hello" {
        return Err(format!("unexpected udp reply {reply:?}"));
    }
    Ok(peer)
}

/// Runs `f` on a new thread inside `ns`; the thread ends with `f`.
fn in_netns<T: Send + 'static>(
    ns: &NetNs,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let path = ns.path();
    std::thread::spawn(move || {
        let file =
            std::fs::File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {}: {e}", path.display()))?;
        f()
    })
}

fn join<T>(h: JoinHandle<Result<T, String>>) -> Result<T, String> {
    h.join().unwrap_or_else(|_| Err("thread panicked".into()))
}
