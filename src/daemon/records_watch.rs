//! Tells the daemon when the records directory may have changed, so it looks only then: inotify on the
//! attachments root and each network's directory, for the entry changes that move the directories' mtimes
//! (what [`RecordsFingerprint`](super::records::RecordsFingerprint) compares). A daemon that polled every
//! half second woke four to five times a second at rest (tokio's timer wheel adds a wake per tick).
//!
//! Where inotify cannot be had (the per-user limit of instances, 128 by default, or of watches is spent; not
//! even the state directory exists yet) the daemon falls back to polling; [`RecordsWatch::sync`] says which.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

use super::records::sub_dirs;
use crate::kernel_fd;

/// Entries made, removed or renamed in a watched directory, and the directory itself going away.
const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

pub struct RecordsWatch {
    inotify: AsyncFd<OwnedFd>,
    root: PathBuf,
}

impl RecordsWatch {
    pub fn start(root: &Path) -> io::Result<RecordsWatch> {
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let inotify = kernel_fd::register(unsafe {
            libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC)
        })?;
        Ok(RecordsWatch {
            inotify,
            root: root.to_path_buf(),
        })
    }

    /// Watches the root and every network directory in it (one watched already keeps its watch); whether
    /// the root is watched. Called before each look at the records, so a directory made since is watched
    /// before it is read: a change after the look wakes the daemon.
    pub fn sync(&self) -> bool {
        if self.add(&self.root).is_err() {
            // No record written yet: the state directory's events say when the root is made.
            return self.root.parent().is_some_and(|p| self.add(p).is_ok());
        }
        // One removed meanwhile is simply not watched (the root's event for it woke the daemon); one that
        // cannot be watched (the per-user limit of watches spent) leaves the daemon polling.
        let mut watched = true;
        for dir in sub_dirs(&self.root) {
            match self.add(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch a records directory");
                    watched = false;
                }
            }
        }
        watched
    }

    fn add(&self, dir: &Path) -> io::Result<()> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the descriptor is open and the path is NUL-terminated.
        let wd = unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), path.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next events and takes them (events left over make the next call return at once):
    /// something under the root may have changed (an overflowed queue counts too). Which entry does not
    /// matter; the fingerprint decides.
    pub async fn changed(&self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        kernel_fd::read(&self.inotify, &mut buf).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn within<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> Option<F::Output> {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(500), f)
                .await
                .ok()
        })
    }

    #[test]
    fn a_record_made_or_removed_in_a_network_directory_made_after_the_start_is_seen() {
        let state = std::env::temp_dir().join(format!("tether-rwatch-{}", std::process::id()));
        let root = state.join("attachments");
        let _ = std::fs::remove_dir_all(&state);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = rt.enter();
        let watch = RecordsWatch::start(&root).unwrap();
        assert!(
            !watch.sync(),
            "no state directory yet: the daemon must poll"
        );
        std::fs::create_dir(&state).unwrap();
        assert!(watch.sync(), "the state directory stands in for the root");
        std::fs::create_dir(&root).unwrap();
        assert!(within(&rt, watch.changed()).is_some(), "the root made");
        assert!(watch.sync());
        std::fs::create_dir(root.join("net1")).unwrap();
        assert!(
            within(&rt, watch.changed()).is_some(),
            "a new network directory"
        );
        // Nothing happened since: no wake.
        assert!(within(&rt, watch.changed()).is_none());
        assert!(watch.sync());
        std::fs::write(root.join("net1/c.eth0.json"), b"{}").unwrap();
        assert!(within(&rt, watch.changed()).is_some(), "a record in it");
        std::fs::remove_file(root.join("net1/c.eth0.json")).unwrap();
        assert!(within(&rt, watch.changed()).is_some(), "its removal");
        std::fs::remove_dir_all(&state).unwrap();
    }
}
