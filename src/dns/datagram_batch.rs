//! Many datagrams per system call (recvmmsg/sendmmsg): under load a resolver spends more time entering
//! the kernel than answering, and one call per batch instead of two per query halves its CPU per answer.
//! IPv4 only, as the resolver's sockets are (127.0.0.11).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;

/// Datagrams taken per call.
pub const BATCH: usize = 32;
/// Longer datagrams are cut to this (MSG_TRUNC); a DNS query over UDP is never near it.
const MAX_DATAGRAM: usize = 4096;

/// Reusable buffers for one batch: the received datagrams and their senders, then the replies.
pub struct DatagramBatch {
    data: Vec<[u8; MAX_DATAGRAM]>,
    lens: [usize; BATCH],
    peers: [libc::sockaddr_in; BATCH],
    count: usize,
    pub replies: Vec<Vec<u8>>,
    /// Which received datagrams get the reply of the same index.
    pub answered: [bool; BATCH],
}

impl Default for DatagramBatch {
    fn default() -> Self {
        DatagramBatch {
            data: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: [0; BATCH],
            // SAFETY: sockaddr_in is plain data; all zeroes is a valid (unspecified) address.
            peers: [unsafe { std::mem::zeroed() }; BATCH],
            count: 0,
            replies: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            answered: [false; BATCH],
        }
    }
}

impl DatagramBatch {
    /// Receives up to [`BATCH`] datagrams without blocking. `Err(WouldBlock)` when there are none.
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.data[i].as_mut_ptr() as *mut libc::c_void,
            iov_len: MAX_DATAGRAM,
        });
        let mut msgs: [libc::mmsghdr; BATCH] = std::array::from_fn(|i| {
            // SAFETY: a zeroed mmsghdr is valid; the pointers set below outlive the call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = &mut self.peers[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m
        });
        // SAFETY: every header points at buffers owned by self (or iovs) that live across the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                // c_int for glibc, c_uint for musl.
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(std::io::Error::last_os_error());
        }
        self.count = n as usize;
        for (i, m) in msgs[..self.count].iter().enumerate() {
            self.lens[i] = (m.msg_len as usize).min(MAX_DATAGRAM);
            self.answered[i] = false;
        }
        Ok(self.count)
    }

    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.data[i][..self.lens[i]]
    }

    pub fn peer(&self, i: usize) -> SocketAddr {
        let p = &self.peers[i];
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(p.sin_addr.s_addr)),
            u16::from_be(p.sin_port),
        ))
    }

    /// Sends every reply marked answered to its sender in one call. A full socket buffer drops the rest,
    /// like lost datagrams: the clients retry.
    pub fn send_replies(&mut self, fd: RawFd) {
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        // SAFETY: as in receive; unused headers stay zeroed and are not passed.
        let mut msgs: [libc::mmsghdr; BATCH] =
            std::array::from_fn(|_| unsafe { std::mem::zeroed() });
        let mut n = 0;
        for i in 0..self.count {
            if !self.answered[i] {
                continue;
            }
            iovs[n] = libc::iovec {
                iov_base: self.replies[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.replies[i].len(),
            };
            msgs[n].msg_hdr.msg_name =
                &mut self.peers[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            msgs[n].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            msgs[n].msg_hdr.msg_iov = &mut iovs[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            n += 1;
        }
        if n == 0 {
            return;
        }
        // SAFETY: the first n headers point at replies and peers owned by self, alive across the call.
        unsafe {
            libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT as _);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_is_received_and_answered_in_order() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let mut batch = DatagramBatch::default();
        assert_eq!(
            batch.receive(server.as_raw_fd()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        for i in 0..3u8 {
            client.send(&[i; 5]).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.receive(server.as_raw_fd()).unwrap(), 3);
        for i in 0..3 {
            assert_eq!(batch.datagram(i), &[i as u8; 5]);
            assert_eq!(batch.peer(i), client.local_addr().unwrap());
            batch.replies[i].clear();
            batch.replies[i].push(100 + i as u8);
            batch.answered[i] = i != 1;
        }
        batch.send_replies(server.as_raw_fd());
        let mut buf = [0u8; 8];
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        assert_eq!(client.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 100);
        assert_eq!(client.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 102);
    }
}
