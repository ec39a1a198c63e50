//! A blocking NETLINK_ROUTE socket: one request at a time, its answers read until the kernel's
//! acknowledgement or the end of a dump. A plugin makes a handful of requests per call; an async
//! connection cost each call a runtime (its epoll, waker and drivers, a task and channels) for nothing.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{constants::NETLINK_ROUTE, Socket};

use super::kernel_socket;

/// What a dump may put in one datagram: the kernel fills up to the reader's buffer, at most 32 KB
/// (iproute2 reads with the same size).
const RECEIVE_BUFFER: usize = 32 * 1024;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The kernel refused the request with this errno.
    #[error("{0}")]
    Refused(io::Error),
    #[error("netlink socket: {0}")]
    Io(io::Error),
    #[error("undecodable netlink answer: {0}")]
    Decode(String),
}

pub(crate) struct RouteSocket {
    socket: Socket,
    seq: AtomicU32,
    /// Also keeps two threads from reading each other's answers.
    buffer: Mutex<Vec<u8>>,
}

impl RouteSocket {
    /// A socket in the calling thread's current namespace; it stays there.
    pub(crate) fn open() -> io::Result<RouteSocket> {
        Ok(RouteSocket {
            socket: kernel_socket::connected(NETLINK_ROUTE)?,
            seq: AtomicU32::new(kernel_socket::first_sequence()),
            buffer: Mutex::new(Vec::new()),
        })
    }

    /// Sends `message` with `flags` (NLM_F_REQUEST is added; NLM_F_ACK too unless it is a dump) and
    /// returns the messages answered before the acknowledgement or NLMSG_DONE.
    pub(crate) fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RequestError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        request.header.sequence_number = seq;
        request.finalize();
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.clear();
        buffer.resize(request.buffer_len(), 0);
        request.serialize(&mut buffer[..]);
        let sent = self.socket.send(&buffer[..], 0).map_err(RequestError::Io)?;
        if sent != buffer.len() {
            return Err(RequestError::Io(io::Error::other("short netlink send")));
        }
        let mut answers = Vec::new();
        loop {
            buffer.clear();
            buffer.reserve(RECEIVE_BUFFER);
            self.socket
                .recv(&mut *buffer, 0)
                .map_err(RequestError::Io)?;
            if read_datagram(&buffer, seq, &mut answers)? {
                return Ok(answers);
            }
        }
    }
}

/// Takes the answers to `seq` out of one datagram; true once the last one (ack, error or NLMSG_DONE)
/// was in it.
fn read_datagram(
    datagram: &[u8],
    seq: u32,
    answers: &mut Vec<RouteNetlinkMessage>,
) -> Result<bool, RequestError> {
    let mut at = 0;
    while at < datagram.len() {
        let header = NetlinkBuffer::new_checked(&datagram[at..])
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        let len = header.length() as usize;
        let mine = header.sequence_number() == seq;
        let bytes = &datagram[at..at + len];
        // Messages are 4-byte aligned within a datagram.
        at += (len + 3) & !3;
        if !mine {
            continue;
        }
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        match message.payload {
            NetlinkPayload::InnerMessage(inner) => answers.push(inner),
            NetlinkPayload::Error(error) => {
                return match error.code {
                    None => Ok(true),
                    Some(code) => Err(RequestError::Refused(io::Error::from_raw_os_error(
                        -code.get(),
                    ))),
                }
            }
            NetlinkPayload::Done(done) => {
                return match done.code {
                    0 => Ok(true),
                    code => Err(RequestError::Refused(io::Error::from_raw_os_error(
                        code.abs(),
                    ))),
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage, NetlinkHeader};
    use netlink_packet_route::link::LinkMessage;
    use std::num::NonZeroI32;

    fn bytes(seq: u32, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        let mut message = NetlinkMessage::new(header, payload);
        message.finalize();
        let mut out = vec![0; message.buffer_len()];
        message.serialize(&mut out);
        out
    }

    fn link(index: u32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(message))
    }

    fn ack(code: i32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut error = ErrorMessage::default();
        error.code = NonZeroI32::new(code);
        NetlinkPayload::Error(error)
    }

    #[test]
    fn answers_before_the_ack_are_kept_and_other_sequences_skipped() {
        let mut datagram = bytes(6, link(9));
        datagram.extend(bytes(7, link(1)));
        datagram.extend(bytes(7, link(2)));
        let mut answers = Vec::new();
        assert!(!read_datagram(&datagram, 7, &mut answers).unwrap());
        assert!(read_datagram(&bytes(7, ack(0)), 7, &mut answers).unwrap());
        let indexes: Vec<u32> = answers
            .iter()
            .map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l.header.index,
                _ => 0,
            })
            .collect();
        assert_eq!(indexes, [1, 2]);
    }

    #[test]
    fn a_refusal_carries_the_positive_errno() {
        let err = read_datagram(&bytes(3, ack(-libc::EXFULL)), 3, &mut Vec::new()).unwrap_err();
        match err {
            RequestError::Refused(e) => assert_eq!(e.raw_os_error(), Some(libc::EXFULL)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dump_ends_at_done() {
        let done = NetlinkPayload::Done(DoneMessage::default());
        let mut datagram = bytes(4, link(5));
        datagram.extend(bytes(4, done));
        let mut answers = Vec::new();
        assert!(read_datagram(&datagram, 4, &mut answers).unwrap());
        assert_eq!(answers.len(), 1);
    }

    #[test]
    fn a_truncated_datagram_is_an_error_not_a_panic() {
        let datagram = bytes(4, link(5));
        let cut = &datagram[..datagram.len() - 3];
        assert!(matches!(
            read_datagram(cut, 4, &mut Vec::new()),
            Err(RequestError::Decode(_))
        ));
    }
}
