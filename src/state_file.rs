//! JSON files in the state directory, written atomically (temp file + rename) so a crash never leaves half
//! of one. No fsync: they must survive a crash of tether, not of the machine (netns and veths do not survive
//! a reboot either).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::spare_files::SpareFiles;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupt: {source}; delete it and run DEL again")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateFileError> {
    let body = serde_json::to_vec_pretty(value).expect("state serializes");
    write_bytes(path, &body)
}

/// `bytes` as the whole of `path`: a temp file beside it, then a rename, so a reader (a runtime reading a
/// conflist, tetherd reading a record) never sees half of it. The temp name starts with a dot, ends in
/// neither `.json` nor `.conflist` (libcni and the record scans skip it) and carries the pid, so two writers
/// never share one.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    let err = |source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("state files live in a directory");
    fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .expect("state file has a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    match spares_for(path) {
        Some(spares) => spares.write_new(&tmp, bytes).map_err(err)?,
        None => fs::write(&tmp, bytes).map_err(err)?,
    }
    fs::rename(&tmp, path).map_err(err)
}

/// The spares of the state directory, for a file inside it; none elsewhere (a conflist in /etc/cni/net.d).
fn spares_for(path: &Path) -> Option<SpareFiles> {
    let root = crate::paths::state_dir();
    path.starts_with(&root).then(|| SpareFiles::of(&root))
}

/// Ok(None) when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateFileError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateFileError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes a per-container record, keeping its file as a spare for the next write in the state directory
/// (see `spare_files`). Ok(false) when there was nothing to remove.
pub fn retire(path: &Path) -> Result<bool, StateFileError> {
    let Some(spares) = spares_for(path) else {
        return remove(path);
    };
    spares.retire(path).map_err(|source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Ok(false) when there was nothing to remove.
pub fn remove(path: &Path) -> Result<bool, StateFileError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StateFileError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Every `*.json` file of `dir` parsed; an absent directory is empty.
pub fn list_json<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>, StateFileError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateFileError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        if let Some(v) = read_json(&path)? {
            out.push(v);
        }
    }
    Ok(out)
}
/// A directory of JSON files, one per name (`<dir>/<name>.json`), with a lock file (`<dir>/.lock`) for the
/// changes that must not interleave (two creates taking one name or one address). What the service and
/// mesh files are kept in.
#[derive(Debug, Clone)]
pub struct JsonDir {
    dir: PathBuf,
}

/// The directory's lock, held until dropped.
pub struct DirLock {
    _file: File,
}

impl JsonDir {
    pub fn new(dir: PathBuf) -> JsonDir {
        JsonDir { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// An exclusive flock on `<dir>/.lock` (made with the directory when missing).
    pub fn lock(&self) -> io::Result<DirLock> {
        fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        file.lock()?;
        Ok(DirLock { _file: file })
    }

    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateFileError> {
        read_json(&self.path(name))
    }

    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateFileError> {
        write_json(&self.path(name), value)
    }

    pub fn remove(&self, name: &str) -> Result<bool, StateFileError> {
        remove(&self.path(name))
    }

    /// Every file's value; a missing directory is none.
    pub fn list<T: DeserializeOwned>(&self) -> Result<Vec<T>, StateFileError> {
        list_json(&self.dir)
    }

    /// The directory's modification time: a reader re-reads the files only when it moved.
    pub fn stamp(&self) -> Option<std::time::SystemTime> {
        fs::metadata(&self.dir).and_then(|m| m.modified()).ok()
    }
}
