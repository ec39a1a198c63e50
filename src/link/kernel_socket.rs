//! A netlink socket talking to the kernel, and where its request sequence numbers start: shared by the
//! route and the xfrm sockets.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use netlink_sys::{Socket, SocketAddr};

/// A `protocol` socket with a port id of its own, connected to the kernel (port 0).
pub(crate) fn connected(protocol: isize) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// From the clock, so answers meant for an earlier user of the same port id never look like ours.
pub(crate) fn first_sequence() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32)
}
