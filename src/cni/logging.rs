//! Diagnostics for plugins. A plugin's stdout belongs to the CNI protocol,
//! so logs go to stderr, and only when asked for: runtimes often capture
//! stderr into their own error messages.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber when `TETHER_LOG` is set (an EnvFilter
/// directive such as `debug` or `tether=trace`). With `TETHER_LOG_FILE` the
/// lines are appended to that file instead of stderr. Does nothing when a
/// subscriber is already installed.
pub fn init_from_env() {
    let Ok(directive) = std::env::var("TETHER_LOG") else {
        return;
    };
    if directive.is_empty() {
        return;
    }
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("debug"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let file = std::env::var("TETHER_LOG_FILE")
        .ok()
        .filter(|path| !path.is_empty())
        .and_then(|path| OpenOptions::new().create(true).append(true).open(path).ok());
    // try_init: a second call (tests, a binary that set up its own) is fine.
    let _ = match file {
        Some(file) => builder.with_writer(Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
