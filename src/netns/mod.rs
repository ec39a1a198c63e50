//! Network namespaces: open one by path or pid, enter it on the calling thread and come back.
//!
//! `setns(2)` changes the namespace of the calling *thread* only. Everything here therefore works on
//! the current OS thread and the guard that restores the original namespace cannot leave that thread
//! (it is `!Send`). Never enter a namespace on a tokio worker or blocking-pool thread: every task
//! scheduled there later would run in the wrong namespace; a program with such threads (tetherd) does its
//! namespace work on one [`NsWorker`] thread.

pub mod bound_sockets;
pub mod liveness;
mod loopback;
mod worker;

pub use loopback::{loopback_up, loopback_up_here};
pub use worker::{NsWorker, NsWorkerError};

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

// `NS_GET_NSTYPE` from linux/nsfs.h: `_IO(0xb7, 0x3)`. Answers which kind of namespace an nsfs file
// refers to (kernel 4.11+).
nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {} not found; check the path (or that the process still runs)", path.display())]
    NotFound { path: PathBuf },

    #[error("opening network namespace {} failed: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not a network namespace; pass a path like /run/netns/NAME or /proc/PID/ns/net", path.display())]
    NotNetns { path: PathBuf },

    #[error("entering network namespace {} failed: {source}", path.display())]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("bringing lo up in network namespace {} failed: {source}", path.display())]
    Loopback {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A namespace's identity: the device and inode of its nsfs file. Stable while the namespace lives and
/// never shared by two live namespaces, so a reused pid or `/run/netns` name is told apart from the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// What `path` refers to now (`stat` follows `/proc/PID/ns/net` and bind mounts); `None` when it
    /// refers to nothing.
    pub fn of_path(path: &Path) -> Option<NsId> {
        std::fs::metadata(path).ok().map(|m| NsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// An open handle on a network namespace. Holding the file keeps the namespace alive even if its
/// bind mount is removed meanwhile.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace behind `path` (e.g. `/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(NetnsError::NotFound { path })
            }
            Err(source) => return Err(NetnsError::Open { path, source }),
        };
        // SAFETY: an argument-less ioctl on a valid descriptor we own; no memory is passed.
        let kind = unsafe { ns_get_nstype(file.as_raw_fd()) };
        if kind != Ok(libc::CLONE_NEWNET) {
            // Also covers regular files (ioctl fails with ENOTTY): they are not namespaces either.
            return Err(NetnsError::NotNetns { path });
        }
        Ok(NetNs { file, path })
    }

    /// The namespace of the calling thread (not of the process: threads may differ).
    pub fn current() -> Result<NetNs, NetnsError> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// The namespace of process `pid`.
    pub fn from_pid(pid: u32) -> Result<NetNs, NetnsError> {
        NetNs::open(format!("/proc/{pid}/ns/net"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw descriptor, e.g. for IFLA_NET_NS_FD. Valid as long as `self` lives.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// True when both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &NetNs) -> Result<bool, NetnsError> {
        Ok(self.id()? == other.id()?)
    }

    /// The namespace's identity (its nsfs inode).
    pub fn id(&self) -> Result<NsId, NetnsError> {
        let meta = self.file.metadata().map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok(NsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Moves the calling thread into this namespace until the returned guard is dropped.
    pub fn enter(&self) -> Result<NsGuard, NetnsError> {
        let original = NetNs::current()?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: self.path.clone(),
            source,
        })?;
        tracing::trace!(netns = %self.path.display(), "entered network namespace");
        Ok(NsGuard {
            original,
            _not_send: PhantomData,
        })
    }

    /// Runs `f` inside this namespace on the calling thread and comes back, also when `f` panics.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let guard = self.enter()?;
        let value = f();
        drop(guard);
        Ok(value)
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Returns the calling thread to the namespace it was in before [`NetNs::enter`], on drop.
#[must_use = "the namespace is restored when the guard is dropped"]
pub struct NsGuard {
    original: NetNs,
    // setns acts on one thread: restoring from another thread would move the wrong thread.
    _not_send: PhantomData<*const ()>,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(self.original.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Continuing would run the rest of the program (sockets, sysctls, routes) in the container's
            // namespace and silently change the wrong network; there is no safe way to go on.
            tracing::error!(
                netns = %self.original.path.display(),
                error = %e,
                "cannot return to the original network namespace; aborting"
            );
            eprintln!(
                "tether: cannot return to network namespace {}: {e}; aborting",
                self.original.path.display()
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_namespace_is_reported_as_not_found() {
        let err = NetNs::open("/run/netns/tt-definitely-missing").unwrap_err();
        assert!(matches!(err, NetnsError::NotFound { .. }));
        assert_eq!(
            err.to_string(),
            "network namespace /run/netns/tt-definitely-missing not found; check the path (or that the process still runs)"
        );
    }

    #[test]
    fn a_regular_file_is_not_a_namespace() {
        let err = NetNs::open("/proc/self/status").unwrap_err();
        assert!(matches!(err, NetnsError::NotNetns { .. }), "{err}");
    }

    #[test]
    fn a_mount_namespace_is_not_a_network_namespace() {
        let err = NetNs::open("/proc/self/ns/mnt").unwrap_err();
        assert!(matches!(err, NetnsError::NotNetns { .. }), "{err}");
    }

    #[test]
    fn current_namespace_equals_own_pid_namespace() {
        let here = NetNs::current().unwrap();
        let by_pid = NetNs::from_pid(std::process::id()).unwrap();
        assert!(here.same_as(&by_pid).unwrap());
    }
}
