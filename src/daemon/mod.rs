//! tetherd, the resident helper (docs/design.md §1): started on demand by the first ADD that needs it, it serves
//! what cannot live in a short plugin call (the embedded DNS resolver, the overlay control plane).
//!
//! Its only state is the attachment records in the state directory: it reads them at start and again on
//! every notify message, so a crash or restart loses nothing. The daemon itself knows no protocol and no
//! service by name: it runs [`Service`]s, hands each the records (its own and what the services add) and
//! its own section of the config file, and exits when none of them needs to run any more. Plugins reach it
//! through `crate::client`.

pub mod config;
pub mod error;
pub mod lifecycle;
pub mod namespace_watch;
pub mod periodic_timer;
pub mod pid_lock;
pub mod records;
pub mod records_watch;
pub mod service;
pub mod socket_park;

pub use config::DaemonConfig;
pub use error::DaemonError;
pub use lifecycle::{run, DaemonOptions};
pub use records::RecordSnapshot;
pub use service::{RecordChange, Service, ServiceContext};

use std::path::{Path, PathBuf};

/// The pid file, held with `flock` while a tetherd runs for this run dir.
pub fn pid_path(run_dir: &Path) -> PathBuf {
    run_dir.join("tetherd.pid")
}
