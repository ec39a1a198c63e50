//! The plugins' side of the control socket. ADD and DEL call these after writing or removing their
//! record; they never fail and never wait long: the record is already on disk, and tetherd reads every
//! record when it (re)starts, so a lost notify costs at most a short delay, never a wrong answer.

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::protocol::{AttachmentKey, Reply, Request};

/// How long a plugin waits for tetherd to apply a change (it answers once the endpoint is served).
const NOTIFY_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a plugin waits for a tetherd it just started to open its socket.
const START_TIMEOUT: Duration = Duration::from_millis(1500);
/// A health probe's budget.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("tetherd control socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tetherd answered with something that is not a reply: {source}")]
    BadReply {
        #[source]
        source: serde_json::Error,
    },
    #[error("tetherd refused the request: {0}")]
    Refused(String),
    /// It accepted the connection and closed it unanswered: it is exiting.
    #[error("tetherd closed the control connection without answering; it is shutting down")]
    Closed,
}

/// Sends one request and waits up to `timeout` for its reply.
pub fn request(run_dir: &Path, req: &Request, timeout: Duration) -> Result<Reply, NotifyError> {
    request_carrying(run_dir, req, timeout, &[])
}

/// [`request`], handing tetherd a reference to each of `sockets` with it (`SCM_RIGHTS`; at most four, what
/// tetherd reads).
fn request_carrying(
    run_dir: &Path,
    req: &Request,
    timeout: Duration,
    sockets: &[BorrowedFd],
) -> Result<Reply, NotifyError> {
    let path = super::socket_path(run_dir);
    let io = |source| NotifyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(&path).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(req).expect("a request serializes");
    line.push(b'\n');
    let mut sent = 0;
    if !sockets.is_empty() {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let fds: Vec<_> = sockets.iter().map(|fd| fd.as_raw_fd()).collect();
        sent = sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&line)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| io(e.into()))?;
    }
    stream.write_all(&line[sent..]).map_err(io)?;
    let mut answer = String::new();
    if BufReader::new(stream).read_line(&mut answer).map_err(io)? == 0 {
        return Err(NotifyError::Closed);
    }
    let reply: Reply =
        serde_json::from_str(&answer).map_err(|source| NotifyError::BadReply { source })?;
    if !reply.ok {
        return Err(NotifyError::Refused(reply.error.unwrap_or_default()));
    }
    Ok(reply)
}

/// What an attachment's notify got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notified {
    /// tetherd runs or is starting; false only when it could not be started at all.
    pub served: bool,
    /// tetherd kept the nf_tables socket the notify carried, so the caller's release of it is not the
    /// last one: it flushes nothing under the namespace's nf_tables lock (see `firewall::Firewall`).
    pub socket_parked: bool,
}

/// Hands a running tetherd a reference to `socket` (see [`Notified::socket_parked`]); true when it kept it.
/// Never starts one.
pub fn park_socket(socket: BorrowedFd) -> bool {
    let run_dir = crate::paths::run_dir();
    request_carrying(&run_dir, &Request::Park, PROBE_TIMEOUT, &[socket]).is_ok_and(|r| r.parked)
}

/// True when a tetherd serves `run_dir` and answers.
pub fn answers(run_dir: &Path) -> bool {
    request(run_dir, &Request::Status, PROBE_TIMEOUT).is_ok()
}

/// After ADD wrote a record that tetherd serves (DNS, overlay): tell tetherd, starting it if it is not
/// running. Returns once tetherd serves the endpoint, or after a short timeout: true when tetherd runs
/// (or is starting), false when it could not be started at all (not installed), so the caller can leave
/// the container's resolv.conf alone instead of pointing it at a resolver that will never come.
pub fn endpoint_changed(network: &str) -> bool {
    let run_dir = crate::paths::run_dir();
    notify_or_start(&run_dir, network, true)
}

/// [`endpoint_changed`] for one attachment: tetherd re-reads only this record, so the cost of the notify
/// does not grow with the number of containers. What interface plugins call after writing their record;
/// with `sockets`: their nf_tables sockets, for tetherd to keep until containers stop coming and going, and
/// the resolver's sockets they made in the container's namespace (`ResolverSockets`), for tetherd to serve.
pub fn attachment_added(
    network: &str,
    container_id: &str,
    ifname: &str,
    sockets: &[BorrowedFd],
) -> Notified {
    let run_dir = crate::paths::run_dir();
    notify_or_start_with(
        &run_dir,
        network,
        Some(key(container_id, ifname)),
        true,
        sockets,
    )
}

/// [`endpoint_removed`] for one attachment: what interface plugins call after removing their record.
pub fn attachment_removed(
    network: &str,
    container_id: &str,
    ifname: &str,
    socket: Option<BorrowedFd>,
) -> Notified {
    let run_dir = crate::paths::run_dir();
    let others_remain = !crate::state::RecordDir::for_network(network).is_empty();
    notify_or_start_with(
        &run_dir,
        network,
        Some(key(container_id, ifname)),
        others_remain,
        socket.as_slice(),
    )
}

fn key(container_id: &str, ifname: &str) -> AttachmentKey {
    AttachmentKey {
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
    }
}

/// After DEL removed a record: tell a running tetherd. A tetherd that is not running is started only when
/// the network still has records (it may have crashed and they need serving); otherwise there is nothing
/// it would do.
pub fn endpoint_removed(network: &str) {
    let run_dir = crate::paths::run_dir();
    let others_remain = !crate::state::RecordDir::for_network(network).is_empty();
    notify_or_start(&run_dir, network, others_remain);
}

fn notify_or_start(run_dir: &Path, network: &str, start: bool) -> bool {
    notify_or_start_with(run_dir, network, None, start, &[]).served
}

/// False only when tetherd is absent and could not be started.
fn notify_or_start_with(
    run_dir: &Path,
    network: &str,
    attachment: Option<AttachmentKey>,
    start: bool,
    sockets: &[BorrowedFd],
) -> Notified {
    let served = |reply: Option<Reply>| Notified {
        served: true,
        socket_parked: reply.is_some_and(|r| r.parked),
    };
    let changed = Request::Changed {
        network: Some(network.to_string()),
        attachment,
    };
    match request_carrying(run_dir, &changed, NOTIFY_TIMEOUT, sockets) {
        Ok(reply) => return served(Some(reply)),
        Err(NotifyError::Io { source, .. }) if is_absent(&source) => {}
        // Caught it exiting (idle): a new one waits for the old one's pid lock, then reads the records.
        Err(NotifyError::Closed) => {}
        Err(e) => {
            // Running but slow or confused: it re-reads the records on its own poll.
            tracing::warn!(network, error = %e, "notifying tetherd failed; it will catch up from the state directory");
            return served(None);
        }
    }
    if !start {
        return served(None);
    }
    if let Err(e) = super::spawn::spawn_detached(run_dir) {
        tracing::warn!(network, error = %e, "cannot start tetherd; DNS for this network is unavailable");
        return Notified {
            served: false,
            socket_parked: false,
        };
    }
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        match request_carrying(run_dir, &changed, NOTIFY_TIMEOUT, sockets) {
            Ok(reply) => return served(Some(reply)),
            Err(NotifyError::Closed) => std::thread::sleep(Duration::from_millis(5)),
            Err(NotifyError::Io { source, .. }) if is_absent(&source) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!(network, error = %e, "notifying the new tetherd failed");
                return served(None);
            }
        }
    }
    tracing::warn!(
        network,
        "tetherd did not open its socket in time; it will serve the endpoint once up"
    );
    served(None)
}

/// No socket file, a file nobody listens on (a dead tetherd's), or a tetherd that died under us. A killed
/// tetherd's listening socket outlives its main thread while its other threads finish exiting (one may be
/// closing an nf_tables socket, which waits for an RCU grace period): a connect then lands in the backlog
/// and is reset when the socket finally closes. That tetherd is gone, not slow.
fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}
