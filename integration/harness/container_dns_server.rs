//! A container's own DNS server (what dnsmasq or CoreDNS would be): UDP and TCP on addresses the test picks,
//! port 53 usually, served by a thread that entered the container's namespace. It answers every A query
//! with [`OWN_ANSWER`], so a test tells its answers from tetherd's, and counts the queries it saw.

use super::dns_upstream::answer_a;
use super::netns::NetNs;
use nix::sched::CloneFlags;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// The address the container's own server gives for every name.
pub const OWN_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);

pub struct ContainerDnsServer {
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ContainerDnsServer {
    /// Binds `udp` and `tcp` inside `ns`; Err with the bind error (EADDRINUSE when something of
    /// tether's holds the port).
    pub fn start(ns: &NetNs, udp: &str, tcp: &str) -> Result<ContainerDnsServer, String> {
        let udp: SocketAddr = udp.parse().expect("a socket address");
        let tcp: SocketAddr = tcp.parse().expect("a socket address");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = ns.path();
        let (q, s) = (queries.clone(), stop.clone());
        // This thread enters the namespace and never runs anything else (setns is per thread).
        let thread = std::thread::spawn(move || {
            let bound = (|| -> Result<(UdpSocket, TcpListener), String> {
                let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
                let u = UdpSocket::bind(udp).map_err(|e| format!("bind udp {udp}: {e}"))?;
                let t = TcpListener::bind(tcp).map_err(|e| format!("bind tcp {tcp}: {e}"))?;
                u.set_read_timeout(Some(Duration::from_millis(20)))
                    .map_err(|e| e.to_string())?;
                t.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok((u, t))
            })();
            let (u, t) = match bound {
                Ok(sockets) => sockets,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            serve(&u, &t, &q, &s);
            // Shut down, not just closed: a forked child of another test thread may hold a copy.
            // SAFETY: shutdown on descriptors this thread owns.
            unsafe {
                libc::shutdown(t.as_raw_fd(), libc::SHUT_RDWR);
                libc::shutdown(u.as_raw_fd(), libc::SHUT_RDWR);
            }
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err("the container's DNS server did not start".into()));
        let server = ContainerDnsServer {
            queries,
            stop,
            thread: Some(thread),
        };
        ready.map(|()| server)
    }

    /// How many queries this server answered.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

fn serve(udp: &UdpSocket, tcp: &TcpListener, queries: &AtomicUsize, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, peer)) = udp.recv_from(&mut buf) {
            if answer_a(&buf[..n], OWN_ANSWER, &mut out) {
                queries.fetch_add(1, Ordering::Relaxed);
                let _ = udp.send_to(&out, peer);
            }
        }
        match tcp.accept() {
            Ok((mut conn, _)) => {
                // RFC 1035 §4.2.2: one length-prefixed query, one length-prefixed answer.
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut len = [0u8; 2];
                if conn.read_exact(&mut len).is_ok() {
                    let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                    if conn.read_exact(&mut query).is_ok() && answer_a(&query, OWN_ANSWER, &mut out)
                    {
                        queries.fetch_add(1, Ordering::Relaxed);
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        let _ = conn.write_all(&framed);
                    }
                }
                let _ = conn.shutdown(Shutdown::Both);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
    }
}

impl Drop for ContainerDnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
