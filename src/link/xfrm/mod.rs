//! IPsec over NETLINK_XFRM with tether's own encoder (`wire`): ESP transport-mode states with an AEAD, and
//! policies that protect or block, in the namespace of the thread that opened the socket. Only what the
//! encrypted overlay needs; `ip xfrm` is never spawned.

mod wire;

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netlink_sys::{constants::NETLINK_XFRM, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;

use super::kernel_socket;

pub use wire::{IPPROTO_ESP, IPPROTO_UDP};

/// The AEAD of every state tether makes: AES-GCM as ESP uses it (RFC 4106), a 256-bit key then a 4-byte
/// salt.
pub const ESP_AEAD: &str = "rfc4106(gcm(aes))";
/// 32-byte key + 4-byte salt.
pub const ESP_KEY_LEN: usize = 36;
pub const ESP_ICV_BITS: u32 = 128;

/// A state is named by its destination and SPI (the protocol is always ESP here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateId {
    pub dst: IpAddr,
    pub spi: u32,
}

/// One ESP transport-mode state for UDP from `src` to `id.dst` at `port`.
#[derive(Clone, PartialEq, Eq)]
pub struct EspState {
    pub id: StateId,
    pub src: IpAddr,
    pub port: u16,
    pub reqid: u32,
    pub algorithm: &'static str,
    pub key: [u8; ESP_KEY_LEN],
    pub icv_bits: u32,
    /// Packets; ESN is always on.
    pub replay_window: u32,
    /// Soft lifetimes: the kernel reports an expiry when passed (`None`: no limit).
    pub soft_bytes: Option<u64>,
    pub soft_packets: Option<u64>,
}

impl std::fmt::Debug for EspState {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspState")
            .field("src", &self.src)
            .field("dst", &self.id.dst)
            .field("spi", &format_args!("{:#010x}", self.id.spi))
            .field("reqid", &self.reqid)
            .finish_non_exhaustive()
    }
}

/// What a policy matches: addresses (`None`: any), the protocol and destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    /// AF_INET or AF_INET6.
    pub family: u16,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: u8,
    pub dport: Option<u16>,
}

impl Selector {
    /// UDP to `port` from `src` to `dst`, in the family of whichever address is given (IPv4 without any).
    pub fn udp(src: Option<IpAddr>, dst: Option<IpAddr>, port: u16) -> Selector {
        let family = src.or(dst).map_or(libc::AF_INET as u16, wire::family);
        Selector {
            family,
            src,
            dst,
            proto: IPPROTO_UDP,
            dport: Some(port),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PolicyDir {
    In = 0,
    Out = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyAction {
    /// Requires ESP transport with a state of this reqid.
    Protect { reqid: u32 },
    /// Drops every matching packet.
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Policy {
    pub dir: PolicyDir,
    pub selector: Selector,
    /// Lower numbers win where selectors overlap.
    pub priority: u32,
    pub action: PolicyAction,
}

impl EspState {
    /// A digest of the key, to tell whether a listed state with this SPI holds this key.
    pub fn key_digest(&self) -> u64 {
        key_digest(&self.key)
    }
}

fn key_digest(key: &[u8]) -> u64 {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// A state as the kernel lists it: enough to tell tether's own (by reqid), whether it holds the key tether
/// wants there, whether it passed a soft lifetime, and to delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedState {
    pub id: StateId,
    pub src: IpAddr,
    pub reqid: u32,
    /// [`EspState::key_digest`] of its AEAD key (`None`: no AEAD).
    pub key_digest: Option<u64>,
    /// Its bytes or packets reached a soft limit (the kernel has reported the expiry).
    pub soft_expired: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum XfrmError {
    #[error("could not open a NETLINK_XFRM socket: {source}; is CONFIG_XFRM_USER available in this kernel?")]
    Socket {
        #[source]
        source: io::Error,
    },
    #[error("netlink I/O while {op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused {op}: {source}{hint}")]
    Refused {
        op: String,
        errno: i32,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
}

impl XfrmError {
    /// The errno the kernel answered with, if it answered.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XfrmError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Without ESP or the AEAD the kernel answers ENOPROTOOPT / ENOSYS / ENOENT to NEWSA.
const NO_ESP_HINT: &str = " (this kernel lacks ESP or rfc4106(gcm(aes)): it needs the esp4/esp6 \
     modules and the crypto modules gcm, aes and a DRBG (drbg, jitterentropy_rng))";

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A NETLINK_XFRM socket bound in the namespace of the thread that opened it.
pub struct XfrmSocket {
    socket: Socket,
    seq: AtomicU32,
}

impl XfrmSocket {
    pub fn open() -> Result<XfrmSocket, XfrmError> {
        let open = || -> io::Result<Socket> {
            let socket = kernel_socket::connected(NETLINK_XFRM)?;
            socket.set_cap_ack(true)?;
            let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
            setsockopt(&socket, ReceiveTimeout, &timeout).map_err(io::Error::from)?;
            Ok(socket)
        };
        let socket = open().map_err(|source| XfrmError::Socket { source })?;
        Ok(XfrmSocket {
            socket,
            seq: AtomicU32::new(kernel_socket::first_sequence()),
        })
    }

    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `state`; one already there with this destination and SPI is kept (`Ok(false)`): tether derives
    /// the SPI and the key from the same inputs, so an equal SPI is the same state.
    pub fn add_state(&self, state: &EspState) -> Result<bool, XfrmError> {
        let op = || format!("adding ESP state {state:?}");
        match self.ask(&wire::new_state(state, self.next_seq()), op, NO_ESP_HINT) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a state; one already gone is fine (`Ok(false)`).
    pub fn delete_state(&self, id: &StateId) -> Result<bool, XfrmError> {
        let op = || format!("deleting ESP state {} spi {:#010x}", id.dst, id.spi);
        match self.ask(&wire::delete_state(id, self.next_seq()), op, "") {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ESRCH) || e.errno() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Inserts or replaces `policy`.
    pub fn update_policy(&self, policy: &Policy) -> Result<(), XfrmError> {
        let op = || format!("setting policy {policy:?}");
        self.ask(&wire::update_policy(policy, self.next_seq()), op, "")
    }

    /// Deletes the policy of `selector` and `dir`; one already gone is fine.
    pub fn delete_policy(&self, selector: &Selector, dir: PolicyDir) -> Result<bool, XfrmError> {
        let op = || format!("deleting policy {dir:?} {selector:?}");
        match self.ask(&wire::delete_policy(selector, dir, self.next_seq()), op, "") {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every ESP state of the namespace.
    pub fn states(&self) -> Result<Vec<ListedState>, XfrmError> {
        let seq = self.next_seq();
        let op = || "listing xfrm states".to_string();
        self.send(&wire::dump_states(seq), op)?;
        let mut out = Vec::new();
        loop {
            let buf = self.receive(op)?;
            for (kind, msg_seq, payload) in messages(&buf) {
                if msg_seq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = error_code(payload);
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(refused(op(), errno, ""));
                    }
                    wire::XFRM_MSG_NEWSA => out.extend(parse_state(payload)),
                    _ => {}
                }
            }
        }
    }

    fn send(&self, bytes: &[u8], op: impl Fn() -> String) -> Result<(), XfrmError> {
        let io_err = |source| XfrmError::Io { op: op(), source };
        let sent = self.socket.send(bytes, 0).map_err(io_err)?;
        if sent != bytes.len() {
            return Err(io_err(io::Error::other("short netlink send")));
        }
        Ok(())
    }

    fn receive(&self, op: impl Fn() -> String) -> Result<Vec<u8>, XfrmError> {
        let mut buf = Vec::with_capacity(64 * 1024);
        self.socket
            .recv(&mut buf, 0)
            .map_err(|source| XfrmError::Io { op: op(), source })?;
        Ok(buf)
    }

    /// Sends one request with NLM_F_ACK and waits for its ack.
    fn ask(
        &self,
        request: &[u8],
        op: impl Fn() -> String,
        hint: &'static str,
    ) -> Result<(), XfrmError> {
        let seq = u32::from_ne_bytes(request[8..12].try_into().expect("header"));
        self.send(request, &op)?;
        loop {
            let buf = self.receive(&op)?;
            for (kind, msg_seq, payload) in messages(&buf) {
                if kind == NLMSG_ERROR && msg_seq == seq {
                    return match error_code(payload) {
                        0 => Ok(()),
                        errno => Err(refused(op(), errno, hint)),
                    };
                }
            }
        }
    }
}

fn refused(op: String, errno: i32, hint: &'static str) -> XfrmError {
    XfrmError::Refused {
        op,
        errno,
        source: io::Error::from_raw_os_error(errno),
        hint,
    }
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// The messages of one datagram: (type, seq, payload after the 16-byte header).
fn messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
        out.push((kind, seq, &buf[at + 16..at + len]));
        at += (len + 3) & !3;
    }
    out
}

/// NLMSG_ERROR's errno, positive (the kernel sends it negated).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(libc::EBADMSG, |b| -i32::from_ne_bytes(b))
}

/// An ESP state from a dumped `xfrm_usersa_info` and its attributes.
fn parse_state(info: &[u8]) -> Option<ListedState> {
    if info.len() < wire::USERSA_INFO_LEN || info[wire::SA_PROTO] != IPPROTO_ESP {
        return None;
    }
    let family = u16::from_ne_bytes(info[wire::SA_FAMILY..wire::SA_FAMILY + 2].try_into().ok()?);
    let dst = wire::read_address(&info[wire::SELECTOR_LEN..], family)?;
    let src = wire::read_address(&info[wire::SA_SADDR..], family)?;
    let spi = u32::from_be_bytes(info[wire::SA_SPI..wire::SA_SPI + 4].try_into().ok()?);
    let reqid = u32::from_ne_bytes(info[wire::SA_REQID..wire::SA_REQID + 4].try_into().ok()?);
    let u64_at = |at: usize| u64::from_ne_bytes(info[at..at + 8].try_into().expect("8 bytes"));
    let (soft_bytes, soft_packets) = (u64_at(wire::SA_LFT), u64_at(wire::SA_LFT + 16));
    let (bytes, packets) = (u64_at(wire::SA_CURLFT), u64_at(wire::SA_CURLFT + 8));
    Some(ListedState {
        id: StateId { dst, spi },
        src,
        reqid,
        key_digest: wire::aead_key(&info[wire::USERSA_INFO_LEN..]).map(key_digest),
        soft_expired: bytes >= soft_bytes || packets >= soft_packets,
    })
}

/// Wakes the control plane when the kernel reports a state's soft or hard expiry (the multicast group
/// XFRMNLGRP_EXPIRE of the namespace that opened it). What to do is read from the state dump: a lost
/// report only delays the rekey to the next reconcile.
pub struct ExpiryListener {
    socket: Socket,
}

impl ExpiryListener {
    pub fn open() -> Result<ExpiryListener, XfrmError> {
        let open = || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_XFRM)?;
            socket.bind(&SocketAddr::new(0, 1 << (wire::XFRMNLGRP_EXPIRE - 1)))?;
            socket.set_non_blocking(true)?;
            Ok(socket)
        };
        let socket = open().map_err(|source| XfrmError::Socket { source })?;
        Ok(ExpiryListener { socket })
    }

    /// Reads every pending report; returns how many expiries they held.
    pub fn drain(&self) -> usize {
        let mut n = 0;
        let mut buf = Vec::with_capacity(16 * 1024);
        // ENOBUFS (reports dropped) also counts as news: the next dump sees what they said.
        loop {
            buf.clear();
            match self.socket.recv(&mut buf, 0) {
                Ok(0) => return n,
                Ok(_) => {
                    n += messages(&buf)
                        .iter()
                        .filter(|(kind, _, _)| *kind == wire::XFRM_MSG_EXPIRE)
                        .count()
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => n += 1,
                Err(_) => return n,
            }
        }
    }
}

impl std::os::fd::AsFd for ExpiryListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests;
