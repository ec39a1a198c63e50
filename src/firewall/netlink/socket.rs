//! A NETLINK_NETFILTER socket bound in the network namespace of the thread that opened it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netlink_sys::{constants::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;

use super::reader::{error_code, messages};
use super::uapi::{NLMSG_DONE, NLMSG_ERROR};

/// A kernel that stops answering is a bug, but a plugin must not hang forever on it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const RECEIVE_BUFFER: usize = 256 * 1024;

/// What the kernel answered to a lookup: reply payloads, or the errno it refused with.
pub type Answer = Result<Vec<Vec<u8>>, i32>;

#[derive(Debug)]
pub struct NfSocket {
    socket: Socket,
    next_seq: AtomicU32,
}

impl NfSocket {
    pub fn open() -> io::Result<NfSocket> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors then carry only the failed message's header, not a copy of the request.
        socket.set_cap_ack(true)?;
        let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        setsockopt(&socket, ReceiveTimeout, &timeout).map_err(io::Error::from)?;
        // Start from the clock so replies to an earlier process on a reused port id are not
        // mistaken for ours.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(NfSocket {
            socket,
            next_seq: AtomicU32::new(start),
        })
    }

    /// Closes the socket on a thread of its own, for a long-lived process (tetherd): the last release of an
    /// nf_tables socket after a commit waits for the kernel's deferred transaction cleanup, an RCU grace
    /// period (~10 ms here; nft_rcv_nl_event on NETLINK_URELEASE), and the caller should not. A short-lived
    /// plugin forks instead (`Firewall::release_in_background`).
    pub fn close_in_background(self) {
        release_in_background(Box::new(self));
    }

    /// The socket's descriptor, for handing a reference to it to tetherd (`client::notify`).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the descriptor is the socket's own and stays open as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }

    /// Reserves `count` consecutive sequence numbers and returns the first.
    pub fn reserve_seqs(&self, count: u32) -> u32 {
        self.next_seq.fetch_add(count, Ordering::Relaxed)
    }

    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "netlink send was short: {sent} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    fn receive(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(RECEIVE_BUFFER);
        let len = self.socket.recv(&mut buf, 0)?;
        if len > buf.len() {
            return Err(io::Error::other("netlink reply truncated"));
        }
        Ok(buf)
    }

    /// Reads acks until each of `awaited` has one, or the kernel rejects the whole batch
    /// (an error aimed at `batch_seq`). Returns each sequence number's errno (0 for success).
    pub fn collect_acks(&self, awaited: &[u32], batch_seq: u32) -> io::Result<HashMap<u32, i32>> {
        // Counted, not looked up again after every read: a batch awaits dozens of acks.
        let wanted: HashSet<u32> = awaited.iter().copied().collect();
        let mut answers = HashMap::with_capacity(wanted.len());
        while answers.len() < wanted.len() {
            let buf = self.receive()?;
            for msg in messages(&buf).map_err(io::Error::other)? {
                if msg.kind != NLMSG_ERROR {
                    continue;
                }
                let code = error_code(msg.payload).unwrap_or(libc::EBADMSG);
                if msg.seq == batch_seq && code != 0 {
                    for seq in awaited {
                        answers.entry(*seq).or_insert(code);
                    }
                } else if wanted.contains(&msg.seq) {
                    answers.insert(msg.seq, code);
                }
                // Anything else is a late answer to an earlier request on this socket.
            }
        }
        Ok(answers)
    }

    /// Sends a single lookup sent with NLM_F_ACK and gathers its replies up to the ack.
    pub fn request(&self, bytes: &[u8], seq: u32) -> io::Result<Answer> {
        self.send(bytes)?;
        self.gather(seq, false)
    }

    /// Sends a dump request and gathers its replies up to NLMSG_DONE.
    pub fn dump(&self, bytes: &[u8], seq: u32) -> io::Result<Answer> {
        self.send(bytes)?;
        self.gather(seq, true)
    }

    fn gather(&self, seq: u32, dump: bool) -> io::Result<Answer> {
        let mut replies = Vec::new();
        loop {
            let buf = self.receive()?;
            for msg in messages(&buf).map_err(io::Error::other)? {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    NLMSG_ERROR => {
                        let code = error_code(msg.payload).unwrap_or(libc::EBADMSG);
                        return Ok(if code == 0 { Ok(replies) } else { Err(code) });
                    }
                    NLMSG_DONE if dump => return Ok(Ok(replies)),
                    _ => replies.push(msg.payload.to_vec()),
                }
            }
        }
    }
}

/// Drops `held` (an nf_tables socket, or a descriptor of one) on a thread of its own, in the process's own
/// namespace: see [`NfSocket::close_in_background`].
pub fn release_in_background(held: Box<dyn Send>) {
    /// Where things to drop go: the closer thread's queue (none when the thread could not start).
    type Closer = Option<Mutex<mpsc::Sender<Box<dyn Send>>>>;
    static CLOSER: OnceLock<Closer> = OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("nft-close".into())
            .spawn(move || {
                // A new thread starts in its creator's namespace, and the first caller is tetherd's
                // namespace thread inside a container: staying there would pin that namespace for
                // good (and count as a process in it). Move to the process's own namespace first.
                if let Ok(own) = std::fs::File::open("/proc/self/ns/net") {
                    let _ = nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNET);
                }
                rx.into_iter().for_each(drop)
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    if let Some(tx) = closer {
        // On failure the socket comes back in the error and is closed here: correct, only slower.
        let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(held);
    }
}
