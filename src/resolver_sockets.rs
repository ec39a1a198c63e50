//! The embedded resolver's two sockets in one container namespace: UDP and a listening TCP socket on
//! 127.0.0.11 at private, kernel-chosen ports (port 53 stays the container's; the namespace's redirect
//! sends 127.0.0.11:53 there). A socket stays in the namespace it was created in, so whoever is inside
//! makes them: the interface plugin during ADD (it is in the namespace already, and hands them to tetherd
//! with its notify), or tetherd's namespace thread when no plugin did (a restarted tetherd, a second
//! attachment racing the first).

use std::io;
use std::net::{SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::firewall::ResolverRedirect;
use crate::resolv_conf::RESOLVER_IP;

/// Port 0: the kernel picks a free port for each socket, so none the container chose is taken.
const PRIVATE_SOCKET: SocketAddrV4 = SocketAddrV4::new(RESOLVER_IP, 0);
/// Room for bursts of queries while tetherd is busy.
const UDP_RECEIVE_BUFFER: usize = 1 << 20;

#[derive(Debug)]
pub struct ResolverSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl ResolverSockets {
    /// Opens both, non-blocking, in the calling thread's namespace, bringing `lo` up first (127.0.0.11 lives
    /// there; a bare `ip netns add` leaves it down).
    pub fn bind() -> io::Result<ResolverSockets> {
        ensure_loopback_up()?;
        let udp = UdpSocket::bind(PRIVATE_SOCKET)?;
        udp.set_nonblocking(true)?;
        // Best effort: a smaller buffer only drops more of a burst.
        let _ = nix::sys::socket::setsockopt(
            &udp,
            nix::sys::socket::sockopt::RcvBuf,
            &UDP_RECEIVE_BUFFER,
        );
        let tcp = TcpListener::bind(PRIVATE_SOCKET)?;
        tcp.set_nonblocking(true)?;
        Ok(ResolverSockets { udp, tcp })
    }

    /// The redirect of 127.0.0.11:53 to these sockets' ports.
    pub fn redirect(&self) -> io::Result<ResolverRedirect> {
        Ok(ResolverRedirect {
            address: RESOLVER_IP,
            udp_port: self.udp.local_addr()?.port(),
            tcp_port: self.tcp.local_addr()?.port(),
        })
    }

    /// Both descriptors, UDP first, to hand over with `SCM_RIGHTS`.
    pub fn descriptors(&self) -> [BorrowedFd<'_>; 2] {
        [self.udp.as_fd(), self.tcp.as_fd()]
    }

    /// Takes a resolver's pair out of descriptors another process handed over: a UDP socket and a
    /// listening TCP socket, both IPv4. Anything else (the plugins' nf_tables sockets) stays in `fds`.
    /// `None`, taking nothing, unless exactly one of each came.
    pub fn take_from(fds: &mut Vec<OwnedFd>) -> Option<ResolverSockets> {
        let kinds: Vec<Option<Kind>> = fds.iter().map(|fd| kind(fd.as_fd())).collect();
        let udp = kinds.iter().position(|k| *k == Some(Kind::Udp))?;
        let tcp = kinds.iter().position(|k| *k == Some(Kind::TcpListener))?;
        if kinds.iter().filter(|k| k.is_some()).count() != 2 {
            return None;
        }
        // The later index first, so the earlier one does not move.
        let (first, second) = (udp.min(tcp), udp.max(tcp));
        let later = fds.remove(second);
        let earlier = fds.remove(first);
        let (udp, tcp) = if udp < tcp {
            (earlier, later)
        } else {
            (later, earlier)
        };
        Some(ResolverSockets {
            udp: UdpSocket::from(udp),
            tcp: TcpListener::from(tcp),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Udp,
    TcpListener,
}

/// What a handed-over descriptor is, when it is one of a resolver's sockets.
fn kind(fd: BorrowedFd) -> Option<Kind> {
    use nix::sys::socket::{
        getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
    };
    let address = getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok()?;
    if address.family() != Some(AddressFamily::Inet) {
        return None;
    }
    match getsockopt(&fd, sockopt::SockType).ok()? {
        SockType::Datagram => Some(Kind::Udp),
        SockType::Stream if getsockopt(&fd, sockopt::AcceptConn).ok()? => Some(Kind::TcpListener),
        _ => None,
    }
}

/// `lo` is up in every namespace a runtime makes, but a bare `ip netns add` leaves it down.
fn ensure_loopback_up() -> io::Result<()> {
    // SAFETY: plain socket/ioctl calls on an owned descriptor and a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = req.ifr_ifru.ifru_flags;
        if flags & libc::IFF_UP as libc::c_short == 0 {
            req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned<T: Into<OwnedFd>>(socket: T) -> OwnedFd {
        socket.into()
    }

    #[test]
    fn a_udp_socket_and_a_tcp_listener_are_taken_and_other_descriptors_stay() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        let netlink = crate::firewall::netlink::socket::NfSocket::open().unwrap();
        let netlink: OwnedFd = netlink.as_fd().try_clone_to_owned().unwrap();
        // In the order a plugin sends them (its nf_tables socket first), and in another.
        for order in [[2, 0, 1], [1, 2, 0]] {
            let mut pool = [
                Some(owned(udp.try_clone().unwrap())),
                Some(owned(tcp.try_clone().unwrap())),
                Some(netlink.try_clone().unwrap()),
            ];
            let mut fds: Vec<OwnedFd> = order.iter().map(|&i| pool[i].take().unwrap()).collect();
            let taken = ResolverSockets::take_from(&mut fds).expect("a pair");
            assert_eq!(taken.udp.local_addr().unwrap().port(), udp_port);
            assert_eq!(taken.tcp.local_addr().unwrap().port(), tcp_port);
            assert_eq!(fds.len(), 1);
            assert_eq!(kind(fds[0].as_fd()), None);
        }
    }

    #[test]
    fn no_pair_is_taken_from_half_a_pair_a_connected_stream_or_two_of_one_kind() {
        let udp = || owned(UdpSocket::bind("127.0.0.1:0").unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let cases: Vec<Vec<OwnedFd>> = vec![
            vec![udp()],
            vec![udp(), owned(stream)],
            vec![udp(), udp(), owned(listener.try_clone().unwrap())],
        ];
        for mut fds in cases {
            let before = fds.len();
            assert!(ResolverSockets::take_from(&mut fds).is_none());
            assert_eq!(fds.len(), before, "nothing taken");
        }
    }

    #[test]
    fn bound_sockets_tell_their_redirect_and_are_of_their_kinds() {
        // 127.0.0.11 is on every namespace's loopback (127.0.0.0/8), this test's too.
        let s = ResolverSockets::bind().unwrap();
        let r = s.redirect().unwrap();
        assert_eq!(r.address, RESOLVER_IP);
        assert_ne!(r.udp_port, 0);
        assert_ne!(r.tcp_port, 0);
        let [udp, tcp] = s.descriptors();
        assert_eq!(kind(udp), Some(Kind::Udp));
        assert_eq!(kind(tcp), Some(Kind::TcpListener));
    }
}
