//! tetherd, the resident helper (docs/design.md §1): started on demand by the first ADD that needs it, it serves
//! what cannot live in a short plugin call (the embedded DNS resolver and the overlay control plane).
//!
//! Its only state is the attachment records in the state directory: it reads them at start and again on
//! every notify message, so a crash or restart loses nothing. The daemon itself knows no protocol: it runs
//! [`Service`]s, hands each the records and its own section of the config file, and exits when none of them
//! needs to run any more.

pub mod config;
pub mod control;
pub mod error;
pub mod lifecycle;
pub mod namespace_watch;
pub mod notify;
pub mod ns_worker;
pub mod pid_lock;
pub mod records;
pub mod service;
pub mod spawn;

pub use config::DaemonConfig;
pub use error::DaemonError;
pub use lifecycle::{run, DaemonOptions};
pub use notify::endpoint_changed;
pub use ns_worker::NsWorker;
pub use records::RecordSnapshot;
pub use service::{Service, ServiceContext};

use std::path::{Path, PathBuf};

/// The control socket: `<run_dir>/tetherd.sock`, mode 0600.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("tetherd.sock")
}

/// The pid file, held with `flock` while a tetherd runs for this run dir.
pub fn pid_path(run_dir: &Path) -> PathBuf {
    run_dir.join("tetherd.pid")
}

/// Where a tetherd started on demand writes its stdout and stderr.
pub fn log_path(run_dir: &Path) -> PathBuf {
    run_dir.join("tetherd.log")
}
