//! Whether tetherd's resolver listens in a namespace: a UDP socket bound to 127.0.0.11:53 there, as the
//! kernel lists it in `/proc/thread-self/net/udp` while this thread is in that namespace.

use crate::netns::{NetNs, NetnsError};

/// `127.0.0.11:53` as /proc/net/udp prints it (the address as a host-order hex word, then the port).
const RESOLVER_LOCAL: &str = "0B00007F:0035";

pub fn listens(netns: &NetNs) -> Result<bool, NetnsError> {
    let table = netns.run(|| std::fs::read_to_string("/proc/thread-self/net/udp"))?;
    Ok(table
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(RESOLVER_LOCAL)))
}
