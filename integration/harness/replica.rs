//! A service replica without helper processes: threads inside a container's namespace that answer TCP
//! connections with "NAME PEER\n" (then echo "NAME:" + whatever comes, until the peer closes) and UDP
//! datagrams with "NAME", on every address of the namespace. The client side asks from another
//! namespace. Threads setns() once and end with their task (see tcp.rs on why sockets are shut down).

use super::netns::NetNs;
use nix::sched::CloneFlags;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Replica {
    pub name: String,
    listening: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    ns: NetNs,
    port: u16,
    threads: Vec<JoinHandle<()>>,
}

/// Runs `f` on a new thread inside `ns`.
pub fn in_netns<T: Send + 'static>(
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

impl Replica {
    /// Serves TCP and UDP `port` in `ns` as `name`.
    pub fn start(ns: &NetNs, name: &str, port: u16) -> Replica {
        let mut r = Replica {
            name: name.to_string(),
            listening: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            ns: ns.clone(),
            port,
            threads: Vec::new(),
        };
        r.listen();
        let (name, stop) = (r.name.clone(), r.stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        r.threads.push(in_netns(ns, move || {
            let sock = UdpSocket::bind(SocketAddr::from(([0u16; 8], port))).expect("bind udp");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let _ = tx.send(());
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    // "peer?" asks who sent it, too (`ask_udp_peer`).
                    let answer = match &buf[..n] {
                        b"peer?" => format!("{name} {}", peer.ip().to_canonical()),
                        _ => name.clone(),
                    };
                    let _ = sock.send_to(answer.as_bytes(), peer);
                }
            }
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("udp replica ready");
        r
    }

    /// (Again) accepts TCP connections.
    pub fn listen(&mut self) {
        let (name, stop, listening, port) = (
            self.name.clone(),
            self.stop.clone(),
            self.listening.clone(),
            self.port,
        );
        listening.store(true, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        self.threads.push(in_netns(&self.ns, move || {
            let listener =
                TcpListener::bind(SocketAddr::from(([0u16; 8], port))).expect("bind tcp");
            listener.set_nonblocking(true).unwrap();
            let _ = tx.send(());
            while listening.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        let (name, stop) = (name.clone(), stop.clone());
                        // A thread made here starts in this thread's namespace; it only serves `conn`.
                        std::thread::spawn(move || serve(conn, peer, &name, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // SAFETY: shutdown on an fd we own.
            unsafe {
                libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR);
            }
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("tcp replica ready");
    }

    /// Stops accepting new connections (its health probe fails); established ones go on.
    pub fn stop_listening(&self) {
        self.listening.store(false, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, peer: SocketAddr, name: &str, stop: &AtomicBool) {
    let peer_ip = match peer {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_else(|| v6.ip().to_string()),
        SocketAddr::V4(v4) => v4.ip().to_string(),
    };
    if conn
        .write_all(format!("{name} {peer_ip}\n").as_bytes())
        .is_err()
    {
        return;
    }
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let reply = [format!("{name}:").as_bytes(), &buf[..n]].concat();
                if conn.write_all(&reply).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = conn.shutdown(Shutdown::Both);
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects from `client` to `to` and reads the greeting: (replica name, the client address it saw).
pub fn ask(client: &NetNs, to: SocketAddr) -> Result<(String, String), String> {
    in_netns(client, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect to {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while s
            .read(&mut byte)
            .map_err(|e| format!("read from {to}: {e}"))?
            == 1
            && byte[0] != b'\n'
        {
            line.push(byte[0]);
        }
        let _ = s.shutdown(Shutdown::Both);
        let text = String::from_utf8_lossy(&line).into_owned();
        let (name, peer) = text
            .split_once(' ')
            .ok_or(format!("bad greeting {text:?}"))?;
        Ok((name.to_string(), peer.to_string()))
    })
    .join()
    .unwrap_or_else(|_| Err("client thread panicked".into()))
}

/// A connection kept open from `client`, on a thread of its own inside the namespace.
pub struct HeldConnection {
    requests: std::sync::mpsc::Sender<Vec<u8>>,
    replies: std::sync::mpsc::Receiver<Result<String, String>>,
    pub greeting: String,
}

impl HeldConnection {
    pub fn open(client: &NetNs, to: SocketAddr) -> Result<HeldConnection, String> {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (rep_tx, rep_rx) = std::sync::mpsc::channel();
        in_netns(client, move || {
            let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                Ok(s) => s,
                Err(e) => {
                    let _ = rep_tx.send(Err(format!("connect to {to}: {e}")));
                    return;
                }
            };
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = rep_tx.send(Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string()));
            for msg in req_rx {
                let answer = s
                    .write_all(&msg)
                    .map_err(|e| format!("write: {e}"))
                    .and_then(|_| s.read(&mut buf).map_err(|e| format!("read: {e}")))
                    .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = rep_tx.send(answer);
            }
            let _ = s.shutdown(Shutdown::Both);
        });
        let greeting = rep_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())??;
        Ok(HeldConnection {
            requests: req_tx,
            replies: rep_rx,
            greeting,
        })
    }

    /// Sends `msg` and returns what came back.
    pub fn say(&self, msg: &str) -> Result<String, String> {
        self.requests
            .send(msg.as_bytes().to_vec())
            .map_err(|e| e.to_string())?;
        self.replies
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?
    }
}

/// One datagram from `client`'s `source_port` to `to`; the answer (a replica's name).
pub fn ask_udp(
    client: &NetNs,
    source_port: u16,
    to: SocketAddr,
    wait: Duration,
) -> Result<String, String> {
    udp_exchange(client, source_port, to, wait, b"?").map(|(answer, _)| answer)
}

/// As [`ask_udp`], asking the replica who sent the datagram: (its name, the address it saw, the
/// address the answer came from).
pub fn ask_udp_peer(
    client: &NetNs,
    source_port: u16,
    to: SocketAddr,
    wait: Duration,
) -> Result<(String, String, SocketAddr), String> {
    let (answer, from) = udp_exchange(client, source_port, to, wait, b"peer?")?;
    let (name, peer) = answer
        .split_once(' ')
        .ok_or(format!("bad answer {answer:?}"))?;
    Ok((name.to_string(), peer.to_string(), from))
}

fn udp_exchange(
    client: &NetNs,
    source_port: u16,
    to: SocketAddr,
    wait: Duration,
    ask: &'static [u8],
) -> Result<(String, SocketAddr), String> {
    in_netns(client, move || {
        let any = SocketAddr::from(([0u16; 8], source_port));
        let sock = UdpSocket::bind(any).map_err(|e| format!("bind udp {any}: {e}"))?;
        sock.set_read_timeout(Some(wait)).unwrap();
        let to = match to {
            SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
            v6 => v6,
        };
        sock.send_to(ask, to)
            .map_err(|e| format!("send to {to}: {e}"))?;
        let mut buf = [0u8; 256];
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer from {to}: {e}"))?;
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
    })
    .join()
    .unwrap_or_else(|_| Err("client thread panicked".into()))
}
