//! Talking to tetherd: the control protocol on `<run>/tetherd.sock`, the notify plugins send after
//! writing or removing a record (starting tetherd when it is needed and not running), and the datagram
//! poke on `<run>/overlay.sock`. Plugins and the CLI use it; tetherd serves it. It never needs tetherd to
//! be up: a lost notify or poke costs a short delay, never a wrong answer.

pub mod notify;
pub mod poke;
pub mod protocol;
pub mod spawn;

pub use notify::endpoint_changed;
pub use protocol::{AttachmentKey, Reply, Request};

use std::path::{Path, PathBuf};

/// The control socket: `<run_dir>/tetherd.sock`, mode 0600.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("tetherd.sock")
}

/// Where a tetherd started on demand writes its stdout and stderr.
pub fn log_path(run_dir: &Path) -> PathBuf {
    run_dir.join("tetherd.log")
}
