//! Whether tetherd's resolver answers in a namespace. tetherd listens on private ports of 127.0.0.11
//! behind a redirect of port 53 (docs/tetherd.md, "Port 53 is the container's"), so a socket table says
//! little: the check asks 127.0.0.11:53 one question from inside the namespace, as a container would.

use std::net::UdpSocket;
use std::time::Duration;

use crate::netns::{NetNs, NetnsError};
use crate::resolv_conf::RESOLVER_IP;

/// Long enough for a forwarded name to come back SERVFAIL from a slow upstream (the resolver answers
/// every query it receives).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// An A query for `tether-doctor.invalid.` (RFC 6761: never a real name) with id `id`.
fn probe_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in ["tether-doctor", "invalid"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// True when a reply to the probe comes back from 127.0.0.11:53 in `netns`.
pub fn listens(netns: &NetNs) -> Result<bool, NetnsError> {
    netns.run(|| {
        let ask = || -> std::io::Result<bool> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect((RESOLVER_IP, 53))?;
            socket.set_read_timeout(Some(PROBE_TIMEOUT))?;
            let id = std::process::id() as u16;
            socket.send(&probe_query(id))?;
            let mut buf = [0u8; 512];
            let n = socket.recv(&mut buf)?;
            Ok(n >= 2 && buf[..2] == id.to_be_bytes())
        };
        ask().unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_one_well_formed_question() {
        let q = probe_query(0xabcd);
        let parsed = crate::dns::wire::parse_query(&q).expect("a query the resolver parses");
        assert_eq!(parsed.qtype, crate::dns::wire::TYPE_A);
        assert_eq!(&q[..2], &[0xab, 0xcd]);
    }
}
