//! A per-network lock in the run directory. ADDs take it shared (they may run together: making the bridge and
//! installing the network's firewall chains are idempotent), from before the bridge is ensured until the
//! attachment record is written; tearing a network down after its last DEL takes it exclusive (and a
//! background bridge delete keeps it), so a teardown never races an ADD joining the bridge or chains.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;

pub struct NetworkLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
#[error("locking network {network} ({path}): {source}")]
pub struct LockError {
    network: String,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl NetworkLock {
    fn open(network: &str) -> Result<(File, PathBuf), LockError> {
        let dir = crate::paths::run_dir().join("locks");
        let path = dir.join(format!("net-{network}.lock"));
        let err = |source| LockError {
            network: network.to_string(),
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        Ok((file, path))
    }

    pub fn shared(network: &str) -> Result<Self, LockError> {
        let (file, path) = Self::open(network)?;
        file.lock_shared().map_err(|source| LockError {
            network: network.to_string(),
            path,
            source,
        })?;
        Ok(Self { _file: file })
    }

    pub fn exclusive(network: &str) -> Result<Self, LockError> {
        let (file, path) = Self::open(network)?;
        file.lock().map_err(|source| LockError {
            network: network.to_string(),
            path,
            source,
        })?;
        Ok(Self { _file: file })
    }
}
