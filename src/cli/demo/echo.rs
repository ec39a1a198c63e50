//! One ICMP echo from inside a namespace, over a raw socket: the demo needs no `ping` binary. Raw, not
//! the unprivileged ping socket, because `net.ipv4.ping_group_range` is closed in a fresh namespace (the
//! demo runs as root anyway).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recvfrom, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;

/// RFC 1071: the one's-complement sum of 16-bit words.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn request(id: u16, seq: u16) -> Vec<u8> {
    let mut msg = vec![ECHO_REQUEST, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(b"tether demo echo");
    let sum = checksum(&msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    msg
}

/// Whether `packet` (an IPv4 datagram as a raw socket reads it) is the reply to echo `id`/`seq`.
fn is_reply(packet: &[u8], id: u16, seq: u16) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let header = usize::from(first & 0x0f) * 4;
    let Some(icmp) = packet.get(header..header + 8) else {
        return false;
    };
    icmp[0] == ECHO_REPLY && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes()
}

/// Sends one echo to `target` from the calling thread's namespace; the round trip on a reply.
pub fn echo(target: Ipv4Addr, seq: u16, timeout: Duration) -> io::Result<Duration> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?;
    let to = SockaddrIn::from(SocketAddrV4::new(target, 0));
    let id = std::process::id() as u16;
    let started = Instant::now();
    sendto(sock.as_raw_fd(), &request(id, seq), &to, MsgFlags::empty())?;
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo reply"));
        }
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(left.as_secs() as i64, left.subsec_micros() as i64),
        )?;
        let (n, _) = match recvfrom::<SockaddrIn>(sock.as_raw_fd(), &mut buf) {
            Ok(got) => got,
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        if is_reply(&buf[..n], id, seq) {
            return Ok(started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_sums_to_zero_with_its_checksum() {
        assert_eq!(checksum(&request(0x1234, 7)), 0);
    }

    #[test]
    fn only_the_matching_reply_counts() {
        let mut reply = vec![0x45; 1];
        reply.resize(20, 0);
        reply.extend_from_slice(&[ECHO_REPLY, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert!(is_reply(&reply, 0x1234, 7));
        assert!(!is_reply(&reply, 0x1234, 8));
        reply[20] = ECHO_REQUEST;
        assert!(!is_reply(&reply, 0x1234, 7));
        assert!(!is_reply(&reply[..24], 0x1234, 7));
    }
}
