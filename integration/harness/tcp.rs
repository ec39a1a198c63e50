//! A TCP exchange between two namespaces without helper processes: a listener and a client, each on
//! a fresh OS thread that setns()es into its namespace. setns changes only the calling thread, and
//! such a thread must never run anything else afterwards, so each one ends with its task.

use super::netns::NetNs;
use nix::sched::CloneFlags;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
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
    let (ready_tx, ready_rx) = mpsc::channel();
    let server_thread = in_netns(server, move || -> Result<(), String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let deadline = Instant::now() + TIMEOUT;
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
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = conn
            .read(&mut buf)
            .map_err(|e| format!("server read: {e}"))?;
        conn.write_all(b"echo:")
            .and_then(|_| conn.write_all(&buf[..n]))
            .map_err(|e| format!("server write: {e}"))
    });
    if ready_rx.recv_timeout(TIMEOUT).is_err() {
        return Err(join(server_thread)
            .err()
            .unwrap_or("server never got ready".into()));
    }
    let client_thread = in_netns(client, move || -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
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
    served?;
    if reply != "echo:hello" {
        return Err(format!("unexpected reply {reply:?}"));
    }
    Ok(())
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
