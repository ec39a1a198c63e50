//! Deleting a veth costs ~20 ms, nearly all of it after the link is already gone from view: the kernel
//! unlinks the device (its name is free and no lookup finds it) under the RTNL lock, then, with the lock
//! released, waits in netdev_run_todo for an RCU barrier before freeing it, and only then answers the
//! RTM_DELLINK. A DEL that waits for that answer spends most of its time on memory reclamation nobody observes.
//!
//! So the delete is sent from a child process, and DEL waits only until the link has disappeared (or the
//! child failed). The child is the plugin's own binary run again when it is static and serves as its own
//! helper ([`serve_reaper_helper`]), else a fork. Either is started before any lock is taken or thread
//! started (it must not inherit a flock or run on a copy of another thread's state), has no stdout/stderr of
//! the runtime's (a runtime reading our output waits for every holder of the pipe to close it), and exits
//! when the kernel answers.
//!
//! Gone from view means unlisted: the kernel unlists the device early in its delete, right after closing it,
//! then still runs under RTNL every protocol's unregister work and two RCU grace periods. The child reports
//! the link's index through a pipe and DEL watches that index with an ioctl that needs no RTNL.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, ForkResult, Pid};

use super::{LinkError, Netlink, TETHER_BRIDGE_GROUP};

/// Longest time to wait for the kernel to drop the link from view before giving up. The child has sent the
/// delete by then; when many links go at once their deletes queue on the kernel's RTNL lock (a hundred DELs
/// at once took 3 s here), and a DEL that gave up would only be sent again into the same queue.
const UNLIST_TIMEOUT: Duration = Duration::from_secs(60);

/// Shortest and longest pause between two looks at whether the link is still listed (a look is one ioctl).
const POLL_INTERVAL_MIN: Duration = Duration::from_micros(100);
const POLL_INTERVAL_MAX: Duration = Duration::from_millis(4);

/// The pause before the next look: an eighth of the time waited so far, within the bounds above. A DEL
/// answered within a few milliseconds loses at most an eighth of that; a hundred DELs waiting at once no
/// longer take both CPUs from the processes deleting their links (polling every 100 us, 30-58 of 100
/// concurrent DELs waited past 10 s; with the pause growing, all were done in 3 s).
fn poll_pause(waited: Duration) -> Duration {
    (waited / 8).clamp(POLL_INTERVAL_MIN, POLL_INTERVAL_MAX)
}

pub struct LinkReaper {
    name: String,
    child: Option<Pid>,
    /// Read end of the pipe on which the child reports the link's index (0: there was no such link).
    index_pipe: Option<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("deleting link {name} failed (exit status {status}); run DEL again")]
    Failed { name: String, status: i32 },
    #[error(
        "link {name} is still present {secs} s after its delete was sent: the kernel has not got to it (a task \
         holding its RTNL lock shows rtnl in /proc/PID/stack); run DEL again"
    )]
    Timeout { name: String, secs: u64 },
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// argv[1] of a plugin run again as its own reaper helper; argv[2] is the link's name. argv, not the
/// environment: a runtime passes its own environment through to plugins, never arguments.
const HELPER_ARG: &str = "--tether-reap-link";

/// Whether [`LinkReaper::start`] starts this binary again rather than forking: its main called
/// [`serve_reaper_helper`] and it is static.
static SPAWN_HELPER: AtomicBool = AtomicBool::new(false);

/// First thing in a plugin's main. Run as the reaper helper (argv asks for it), deletes the link, writes its
/// index to stdout and exits; otherwise notes that this binary can be its own helper. Only a static binary
/// takes that way: its start costs less than the copy-on-write a fork leaves the plugin (the first steps
/// after it fault in every page they write), where a dynamic one's loading costs more.
pub fn serve_reaper_helper() {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == HELPER_ARG) {
        let report = std::io::stdout().as_fd().try_clone_to_owned();
        let deleted = match (args.next().and_then(|n| n.into_string().ok()), report) {
            (Some(name), Ok(report)) => delete_reporting_index(&name, report).is_ok(),
            _ => false,
        };
        std::process::exit(if deleted { 0 } else { 1 });
    }
    SPAWN_HELPER.store(cfg!(target_feature = "crt-static"), Ordering::Relaxed);
}

impl LinkReaper {
    /// Sends the delete of `name` (in the current namespace) from a child process, which also holds a copy of
    /// `held`, if given, until the kernel is done (an nf_tables socket whose last release would make this
    /// process wait).
    /// The child is this binary run again when it serves as its own helper, else a fork. Call before taking
    /// locks or starting threads. Falls back to deleting in-process when neither can be had.
    pub fn start(name: &str, held: Option<BorrowedFd<'_>>) -> Result<Self, ReaperError> {
        if SPAWN_HELPER.load(Ordering::Relaxed) {
            if let Some(reaper) = Self::start_helper(name, held) {
                return Ok(reaper);
            }
        }
        let in_process = || -> Result<Self, ReaperError> {
            Netlink::new()?.delete_link_by_name(name)?;
            Ok(Self {
                name: name.to_string(),
                child: None,
                index_pipe: None,
            })
        };
        let Ok((read_end, write_end)) = pipe2(OFlag::O_CLOEXEC) else {
            return in_process();
        };
        // SAFETY: the caller is single-threaded here (see module doc), so the child may run ordinary code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(read_end);
                silence_stdio();
                let code = match delete_reporting_index(name, write_end) {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
                // _exit: no atexit handlers or buffered output of the parent's copy of the process.
                // SAFETY: ends this process at once; nothing of it is used afterwards.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => Ok(Self {
                name: name.to_string(),
                child: Some(child),
                index_pipe: Some(File::from(read_end)),
            }),
            Err(_) => in_process(),
        }
    }

    /// This binary run again with [`HELPER_ARG`] (posix_spawn: the plugin's memory is not copied), `held`
    /// passed down to it; None when it cannot be started.
    fn start_helper(name: &str, held: Option<BorrowedFd<'_>>) -> Option<Self> {
        // The plugin is single-threaded here, so no other spawn can inherit `held` meanwhile.
        let inherit = |on: bool| {
            let flags = if on {
                FdFlag::empty()
            } else {
                FdFlag::FD_CLOEXEC
            };
            held.is_none_or(|fd| fcntl(fd, FcntlArg::F_SETFD(flags)).is_ok())
        };
        if !inherit(true) {
            return None;
        }
        let spawned = std::process::Command::new("/proc/self/exe")
            .arg(HELPER_ARG)
            .arg(name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        inherit(false);
        let child = spawned.ok()?;
        Some(Self {
            name: name.to_string(),
            child: Some(Pid::from_raw(child.id() as i32)),
            index_pipe: child.stdout.map(|out| File::from(OwnedFd::from(out))),
        })
    }

    /// Returns once the link is gone from view: the child finished, or the kernel unlisted the link while it
    /// still works on the delete. Watched by index with SIOCGIFNAME, which the kernel answers from its RCU
    /// index table: RTM_GETLINK would wait for the RTNL lock that the delete holds until it has also run every
    /// protocol's unregister work (the bridge's grows with its port count) and two RCU grace periods.
    pub fn wait_unlisted(mut self) -> Result<(), ReaperError> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        let index = self.index_pipe.take().and_then(|mut pipe| {
            let mut bytes = [0u8; 4];
            // EOF before four bytes: the child failed before its lookup answered; its exit status says more.
            pipe.read_exact(&mut bytes)
                .ok()
                .map(|_| u32::from_ne_bytes(bytes))
        });
        if index == Some(0) {
            return Ok(()); // there was no such link
        }
        let probe = IndexProbe::open();
        let started = Instant::now();
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
            if let (Some(index), Some(probe)) = (index, probe.as_ref()) {
                if !probe.names(index, &self.name) {
                    // The child finishes on its own; being our child until we exit, it is then reaped by init.
                    return Ok(());
                }
            }
            let waited = started.elapsed();
            if waited > UNLIST_TIMEOUT {
                return Err(ReaperError::Timeout {
                    name: self.name.clone(),
                    secs: UNLIST_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(poll_pause(waited));
        }
    }
}

/// Deletes bridge `name` from a forked child, if tether made it (device group TETHER_BRIDGE_GROUP: a bridge
/// the user made stays) and no port is left on it, and returns at once. Every descriptor the caller holds is
/// inherited by the child and kept until the bridge is gone: pass the lock that keeps ADDs off the bridge as
/// `held` (the caller's own copy is closed here), and a socket whose last release would wait stays open
/// in the child. Call with no other thread running. Without fork, deletes in-process.
pub fn delete_bridge_in_background<T>(name: &str, held: T) {
    // SAFETY: the caller is single-threaded here, so the child may run ordinary code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            silence_stdio();
            let code = match delete_unused_bridge(name) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // _exit: no atexit handlers or buffered output of the parent's copy of the process.
            // SAFETY: _exit ends this forked child at once and has no preconditions.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { .. }) => drop(held),
        Err(_) => {
            if let Err(error) = delete_unused_bridge(name) {
                tracing::warn!(bridge = name, %error, "could not delete the unused bridge");
            }
            drop(held);
        }
    }
}

/// Deletes bridge `name` now, if tether made it and no port is left on it (see
/// [`delete_bridge_in_background`]).
pub fn delete_unused_bridge(name: &str) -> Result<(), LinkError> {
    let netlink = Netlink::new()?;
    let Some(bridge) = netlink.link_by_name(name)? else {
        return Ok(());
    };
    if !bridge.is_bridge() || bridge.group != TETHER_BRIDGE_GROUP {
        return Ok(());
    }
    if netlink
        .links()?
        .iter()
        .any(|link| link.master == Some(bridge.index))
    {
        return Ok(());
    }
    netlink.delete_link(bridge.index).map(drop)
}

/// The child's work: look the link up, tell the parent its index, delete it.
fn delete_reporting_index(name: &str, report: OwnedFd) -> Result<(), LinkError> {
    let netlink = Netlink::new()?;
    let link = netlink.link_by_name(name)?;
    let index = link.as_ref().map_or(0, |l| l.index);
    let mut report = File::from(report);
    // A parent that is gone or stopped listening does not change what the child has to do.
    let _ = report.write_all(&index.to_ne_bytes());
    drop(report);
    if let Some(link) = link {
        netlink.delete_link(link.index)?;
    }
    Ok(())
}

nix::ioctl_readwrite_bad!(interface_name, libc::SIOCGIFNAME, libc::ifreq);

/// A socket to ask the kernel which name an interface index has (SIOCGIFNAME), in this namespace.
struct IndexProbe {
    socket: OwnedFd,
}

impl IndexProbe {
    /// None when no socket can be made; the caller then waits for the child instead.
    fn open() -> Option<Self> {
        socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()
        .map(|socket| Self { socket })
    }

    /// Whether `index` is still listed under `name`. An error other than ENODEV counts as listed, so the
    /// caller keeps waiting (for the child's exit, at worst).
    fn names(&self, index: u32, name: &str) -> bool {
        // SAFETY: `ifreq` is a plain C struct (a name array and a union of integers); all zeroes is valid.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        request.ifr_ifru.ifru_ifindex = index as libc::c_int;
        // SAFETY: a valid socket and a live, writable `ifreq`; the kernel fills `ifr_name` for the index.
        if let Err(errno) = unsafe { interface_name(self.socket.as_raw_fd(), &mut request) } {
            return errno != nix::errno::Errno::ENODEV;
        }
        // The kernel NUL-terminates the name within the array (IFNAMSIZ includes the NUL).
        let bytes = request.ifr_name.map(|c| c as u8);
        let Ok(listed) = std::ffi::CStr::from_bytes_until_nul(&bytes) else {
            return true;
        };
        // Another name under this index: ours is gone and the index was given to a new link.
        listed.to_bytes() == name.as_bytes()
    }
}

fn silence_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = dup2_stdin(&null);
        let _ = dup2_stdout(&null);
        let _ = dup2_stderr(&null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_between_looks_grows_with_the_wait_within_its_bounds() {
        assert_eq!(poll_pause(Duration::ZERO), POLL_INTERVAL_MIN);
        assert_eq!(
            poll_pause(Duration::from_millis(4)),
            Duration::from_micros(500)
        );
        assert_eq!(poll_pause(Duration::from_secs(5)), POLL_INTERVAL_MAX);
        // Never more than an eighth of the wait, once past the shortest pause.
        for ms in [1u64, 2, 8, 16, 31] {
            let waited = Duration::from_millis(ms);
            assert!(poll_pause(waited) <= (waited / 8).max(POLL_INTERVAL_MIN));
        }
    }
}
