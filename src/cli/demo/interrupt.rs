//! Ctrl-C (and SIGTERM/SIGHUP) during the demo: the signals are blocked in every thread and one
//! watcher thread waits for them, runs the cleanup and exits, so nothing the demo made survives.

use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Whatever must be dropped to clean up; `None` once the demo cleaned up itself.
pub type Pending<T> = Arc<Mutex<Option<T>>>;

/// Blocks the signals in the calling thread (threads made later inherit that) and starts the
/// watcher. Call before any other thread exists. Children inherit the mask too, so a plugin that
/// is running when Ctrl-C comes finishes its call before the cleanup.
pub fn watch<T: Send + 'static>(pending: Pending<T>) -> Result<(), nix::Error> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            super::super::output::line(&format!("\n{signal}: cleaning up"));
            let leftovers = pending.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(leftovers);
            std::process::exit(130);
        }
    });
    Ok(())
}
