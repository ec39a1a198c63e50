//! Deleting a veth costs ~20 ms, nearly all of it after the link is already gone from view: the kernel
//! unlinks the device (its name is free and no lookup finds it) under the RTNL lock, then, with the lock
//! released, waits in netdev_run_todo for an RCU barrier before freeing it, and only then answers the
//! RTM_DELLINK. A DEL that waits for that answer spends most of its time on memory reclamation nobody observes.
//!
//! So the delete is sent from a forked child, and DEL waits only until the link has disappeared (or the
//! child failed). The child is forked before any lock is taken or thread started (it must not inherit a
//! flock or run on a copy of another thread's state), drops stdout/stderr (a runtime reading our output waits
//! for every holder of the pipe to close it), and exits when the kernel answers.

use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::link::{LinkError, Netlink};

/// Longest time to wait for the kernel to drop the link from view before giving up.
const UNLIST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct LinkReaper {
    name: String,
    child: Option<Pid>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("deleting link {name} failed (exit status {status}); run DEL again")]
    Failed { name: String, status: i32 },
    #[error("link {name} is still present {secs} s after its delete was sent")]
    Timeout { name: String, secs: u64 },
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl LinkReaper {
    /// Sends the delete of `name` (in the current namespace) from a child process. Call before taking locks
    /// or starting threads. Falls back to deleting in-process when fork fails.
    pub fn start(name: &str) -> Result<Self, ReaperError> {
        // SAFETY: the caller is single-threaded here (see module doc), so the child may run ordinary code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                silence_stdio();
                let code = match Netlink::new().and_then(|nl| nl.delete_link_by_name(name)) {
                    Ok(_) => 0,
                    Err(_) => 1,
                };
                // _exit: no atexit handlers or buffered output of the parent's copy of the process.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => Ok(Self {
                name: name.to_string(),
                child: Some(child),
            }),
            Err(_) => {
                Netlink::new()?.delete_link_by_name(name)?;
                Ok(Self {
                    name: name.to_string(),
                    child: None,
                })
            }
        }
    }

    /// Returns once the link is gone from view: the child finished, or the kernel unlisted the link while it
    /// still waits for the RCU barrier.
    pub fn wait_unlisted(mut self, host: &Netlink) -> Result<(), ReaperError> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + UNLIST_TIMEOUT;
        loop {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, status)) => {
                    return Err(ReaperError::Failed {
                        name: self.name.clone(),
                        status,
                    })
                }
                Ok(WaitStatus::Signaled(..)) => {
                    return Err(ReaperError::Failed {
                        name: self.name.clone(),
                        status: -1,
                    })
                }
                _ => {}
            }
            if host.link_by_name(&self.name)?.is_none() {
                // The child finishes on its own; being our child until we exit, it is then reaped by init.
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ReaperError::Timeout {
                    name: self.name.clone(),
                    secs: UNLIST_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn silence_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
