//! A tiny TCP server inside a container namespace: a thread enters the namespace for good, listens
//! and answers every connection with one line. It stands in for the container's web server.

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;

use crate::netns::NetNs;

use super::DemoError;

/// Starts the responder on `port` in the namespace at `netns`; returns once it listens.
pub fn spawn(netns: &std::path::Path, port: u16, greeting: String) -> Result<(), DemoError> {
    let ns = NetNs::open(netns).map_err(|source| DemoError::Netns { source })?;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        // This thread never leaves the namespace; it ends with the process.
        let guard = match ns.enter() {
            Ok(guard) => guard,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        let listener = match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("binding port {port}: {e}")));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        for mut stream in listener.incoming().flatten() {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let _ = writeln!(stream, "{greeting} (you are {peer})");
        }
        drop(guard);
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(DemoError::Step {
            what: "starting the responder".into(),
            why,
        }),
        Err(_) => Err(DemoError::Step {
            what: "starting the responder".into(),
            why: "its thread ended".into(),
        }),
    }
}
