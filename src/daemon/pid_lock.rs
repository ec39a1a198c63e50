//! One tetherd per run directory: the pid file is held with an exclusive `flock` for the daemon's whole
//! life. The kernel drops the lock when the process dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use super::error::DaemonError;

pub struct PidLock {
    _file: File,
}

impl PidLock {
    /// `Ok(None)` when another tetherd already holds the lock.
    pub fn acquire(path: &Path) -> Result<Option<PidLock>, DaemonError> {
        let err = |source| DaemonError::PidFile {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
        file.set_len(0).map_err(err)?;
        writeln!(file, "{}", std::process::id()).map_err(err)?;
        Ok(Some(PidLock { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let path = std::env::temp_dir().join(format!("tether-pidlock-{}", std::process::id()));
        let first = PidLock::acquire(&path).unwrap().expect("free lock");
        assert!(PidLock::acquire(&path).unwrap().is_none());
        drop(first);
        // Another test of this process may fork between our open and drop: the child's copy of the
        // descriptor keeps the lock until it execs or exits, so the lock may come back a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut second = PidLock::acquire(&path).unwrap();
        while second.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            second = PidLock::acquire(&path).unwrap();
        }
        assert!(
            second.is_some(),
            "the lock was not free 5 s after its holder let go"
        );
        std::fs::remove_file(path).unwrap();
    }
}
