//! IPAM: a file-locked address store with host-local compatible configuration.
//!
//! The pure API ([`allocate`], [`release`], [`check`], [`gc`], [`free_counts`]) knows nothing of CNI;
//! `plugin` adapts it to the CNI plugin interface.

pub mod allocator;
pub mod attachment;
pub mod config;
pub mod error;
pub mod gc;
pub mod plugin;
pub mod range;
pub mod requested;
pub mod resolv_conf;
pub mod store;

pub use allocator::{allocate, check, free_counts, release, Allocation};
pub use attachment::AttachmentId;
pub use config::{IpamConfig, RouteSpec};
pub use error::IpamError;
pub use gc::gc;
pub use plugin::{add_in_process, check_in_process, del_in_process, TetherIpam};
pub use range::{AddressRange, RangeSet};
pub use store::Store;

#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};

    /// A fresh directory under the system temp dir, removed on drop even when the test fails.
    pub struct TestDir(PathBuf);

    impl TestDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tether-ipam-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create test dir");
            TestDir(dir)
        }
    }

    impl std::ops::Deref for TestDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for TestDir {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
