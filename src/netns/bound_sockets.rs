//! Which socket of a network namespace holds a local address, asked of the kernel through sock_diag
//! (NETLINK_SOCK_DIAG, linux/inet_diag.h). The netlink socket answers for the namespace it was opened in:
//! the calling thread's, so a thread that entered a container's namespace (`NetNs::run`) asks about the
//! container's sockets.
//!
//! One exact lookup per protocol, the one the kernel does for an arriving packet, rather than a dump:
//! reading `/proc/net/tcp` walks the whole host's TCP hash tables (5 ms here), a lookup costs microseconds.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use netlink_sys::{constants::NETLINK_SOCK_DIAG, Socket, SocketAddr};

/// SOCK_DIAG_BY_FAMILY in linux/sock_diag.h.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// inet_diag_req_v2: family, protocol, ext, pad, states, then the 48-byte inet_diag_sockid.
const REQUEST_LEN: usize = 8 + 48;
/// INET_DIAG_NOCOOKIE: match any socket, not one remembered by its cookie.
const NO_COOKIE: u32 = !0;
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a socket of the calling thread's namespace is bound to exactly `addr` (IPv4, or IPv4-mapped on
/// an IPv6 socket): a UDP socket, or a listening TCP socket. A wildcard bind (0.0.0.0, ::) of the same port
/// does not count.
pub fn held_exactly(addr: SocketAddrV4) -> io::Result<bool> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let timeout = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
        .map_err(io::Error::from)?;
    for protocol in [libc::IPPROTO_UDP as u8, libc::IPPROTO_TCP as u8] {
        socket.send(&lookup(protocol, addr), 0)?;
        let mut reply = Vec::with_capacity(8192);
        socket.recv(&mut reply, 0)?;
        if matches!(found_local(&reply), Some(local) if local == *addr.ip()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A request for the one socket a packet to `addr` would reach, exact binds before wildcard ones.
fn lookup(protocol: u8, addr: SocketAddrV4) -> Vec<u8> {
    let mut ip = [0u8; 16];
    ip[..4].copy_from_slice(&addr.ip().octets());
    let (local, any) = ((addr.port().to_be_bytes(), ip), ([0u8; 2], [0u8; 16]));
    // The sockid's `src` side is the local one for TCP; udp_diag swaps the sides (kernel comment: "for
    // historical reasons").
    let (src, dst) = if protocol == libc::IPPROTO_UDP as u8 {
        (any, local)
    } else {
        (local, any)
    };
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + REQUEST_LEN);
    msg.extend_from_slice(&((NLMSG_HDRLEN + REQUEST_LEN) as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq: one request in flight per socket
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[libc::AF_INET as u8, protocol, 0, 0]);
    msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    msg.extend_from_slice(&src.0);
    msg.extend_from_slice(&dst.0);
    msg.extend_from_slice(&src.1);
    msg.extend_from_slice(&dst.1);
    msg.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    msg.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    msg.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    msg
}

/// The local IPv4 address of the socket in a reply (inet_diag_msg), also when an IPv6 socket holds it
/// IPv4-mapped; None for "no such socket" (an NLMSG_ERROR) or an IPv6 address.
fn found_local(reply: &[u8]) -> Option<Ipv4Addr> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind == NLMSG_ERROR {
        return None;
    }
    let msg = reply.get(NLMSG_HDRLEN..)?;
    // family, state, timer, retrans, then the sockid: sport, dport, src.
    let src = msg.get(8..24)?;
    match msg[0] as i32 {
        libc::AF_INET => Some(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        libc::AF_INET6 => {
            let v6: [u8; 16] = src.try_into().ok()?;
            std::net::Ipv6Addr::from(v6).to_ipv4_mapped()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(family: u8, src: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; NLMSG_HDRLEN];
        r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        r.extend_from_slice(&[family, 10, 0, 0, 0, 53, 0, 0]);
        let mut addr = src.to_vec();
        addr.resize(16, 0);
        r.extend_from_slice(&addr);
        r.extend_from_slice(&[0u8; 40]);
        r
    }

    #[test]
    fn the_local_address_is_read_from_ipv4_and_mapped_ipv6_replies() {
        let resolver = Ipv4Addr::new(127, 0, 0, 11);
        assert_eq!(found_local(&reply(2, &[127, 0, 0, 11])), Some(resolver));
        assert_eq!(
            found_local(&reply(2, &[0, 0, 0, 0])),
            Some(Ipv4Addr::UNSPECIFIED)
        );
        let mapped = resolver.to_ipv6_mapped().octets();
        assert_eq!(found_local(&reply(10, &mapped)), Some(resolver));
        assert_eq!(found_local(&reply(10, &[0; 16])), None, "[::] is not exact");
        let mut error = vec![0u8; 20];
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(found_local(&error), None);
    }

    #[test]
    fn udp_lookups_name_the_local_side_as_destination_and_tcp_ones_as_source() {
        let addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 11), 53);
        let id = |m: &[u8]| m[NLMSG_HDRLEN + 8..NLMSG_HDRLEN + 8 + 36].to_vec();
        let (udp, tcp) = (id(&lookup(17, addr)), id(&lookup(6, addr)));
        assert_eq!(&udp[0..4], &[0, 0, 0, 53]);
        assert_eq!(&udp[20..24], &[127, 0, 0, 11]);
        assert_eq!(&tcp[0..4], &[0, 53, 0, 0]);
        assert_eq!(&tcp[4..8], &[127, 0, 0, 11]);
        assert_eq!(lookup(6, addr).len(), NLMSG_HDRLEN + REQUEST_LEN);
    }
}
