//! Telling the control plane that this host's records changed: one datagram to its socket in the run
//! directory. Never waited on and never an error: a control plane that is down reads the state directory
//! when it starts (DESIGN.md §1).

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// `<run>/overlay.sock`, where the control plane listens for change notices.
pub fn notify_socket_path() -> PathBuf {
    crate::paths::run_dir().join("overlay.sock")
}

pub fn notify_control_plane() {
    let path = notify_socket_path();
    let sent = UnixDatagram::unbound().and_then(|s| {
        s.set_nonblocking(true)?;
        s.send_to(b"changed", &path)
    });
    if let Err(e) = sent {
        tracing::debug!(socket = %path.display(), error = %e, "overlay control plane not notified; it converges when it starts");
    }
}
