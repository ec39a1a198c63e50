//! Throwaway named network namespaces, made the way `ip netns add` makes them: a thread unshares its
//! network namespace and bind-mounts it onto a file in /run/netns, which keeps it alive after the
//! thread is gone. Visible to `ip netns` while the demo runs, so a curious user can look inside.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::DemoError;

const NETNS_DIR: &str = "/run/netns";

#[derive(Debug)]
pub struct ScratchNetns {
    pub path: PathBuf,
}

impl ScratchNetns {
    pub fn create(name: &str) -> Result<ScratchNetns, DemoError> {
        let path = Path::new(NETNS_DIR).join(name);
        let fail = |what: &str, source: io::Error| DemoError::Namespace {
            name: name.to_string(),
            what: what.to_string(),
            source,
        };
        fs::create_dir_all(NETNS_DIR).map_err(|e| fail("creating /run/netns", e))?;
        fs::File::create(&path).map_err(|e| fail("creating its mount point", e))?;
        let target = path.clone();
        let made = std::thread::spawn(move || -> Result<(), nix::Error> {
            // unshare acts on this thread only; the thread ends right after, the mount stays.
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .map_err(|_| fail("making it", io::Error::other("thread panicked")))?;
        if let Err(errno) = made {
            let _ = fs::remove_file(&path);
            return Err(fail("making it", io::Error::from(errno)));
        }
        Ok(ScratchNetns { path })
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        // Lazy unmount: the namespace goes when its last user (a thread still inside) is gone.
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&self.path);
    }
}
