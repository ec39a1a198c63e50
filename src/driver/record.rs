//! The attachment record: what an ADD made, written to the state directory before the plugin answers, so
//! DEL works without prevResult, the last container of a network can be detected, and `tetherd`/the CLI can
//! rebuild everything after a restart (DESIGN.md §1: plugins write their facts first).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub driver: String,
    #[serde(default)]
    pub netns: Option<String>,
    /// Host-side interface (veth) and the bridge it hangs on, when the driver made one.
    #[serde(default)]
    pub host_ifname: Option<String>,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    /// Whether ADD put the container's MAC into the macspoofchk sets (so DEL knows to remove it).
    #[serde(default)]
    pub macspoofchk: bool,
    pub ips: Vec<IpNetwork>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("writing attachment record {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading attachment record {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("attachment record {path} is corrupt: {source}; delete it and run DEL again")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The records of one network: `<state>/attachments/<network>/<container>.<ifname>.json`.
pub struct RecordDir {
    dir: PathBuf,
}

impl RecordDir {
    pub fn new(state_dir: &Path, network: &str) -> Self {
        Self {
            dir: state_dir.join("attachments").join(network),
        }
    }

    pub fn for_network(network: &str) -> Self {
        Self::new(&crate::paths::state_dir(), network)
    }

    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}.{ifname}.json"))
    }

    /// Atomic write (temp file + rename) so a crash never leaves half a record. No fsync: the record must
    /// survive a crash of tether, not of the machine (the netns and veths do not survive a reboot either).
    pub fn write(&self, rec: &AttachmentRecord) -> Result<(), RecordError> {
        let path = self.path(&rec.container_id, &rec.ifname);
        let err = |source| RecordError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", rec.container_id, rec.ifname));
        let body = serde_json::to_vec_pretty(rec).expect("record serializes");
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    pub fn read(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<AttachmentRecord>, RecordError> {
        let path = self.path(container_id, ifname);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RecordError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RecordError::Read { path, source }),
        }
    }

    /// Ok(false) when there was nothing to remove.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<bool, RecordError> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(RecordError::Write { path, source }),
        }
    }

    /// True when no container is attached; reads at most one directory entry.
    pub fn is_empty(&self) -> bool {
        match fs::read_dir(&self.dir) {
            Ok(mut entries) => !entries.any(|e| {
                e.map(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .unwrap_or(false)
            }),
            Err(_) => true,
        }
    }

    pub fn list(&self) -> Result<Vec<AttachmentRecord>, RecordError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RecordError::Read {
                    path: self.dir.clone(),
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
            let bytes = fs::read(&path).map_err(|source| RecordError::Read {
                path: path.clone(),
                source,
            })?;
            match serde_json::from_slice(&bytes) {
                Ok(r) => out.push(r),
                Err(source) => return Err(RecordError::Corrupt { path, source }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cid: &str) -> AttachmentRecord {
        AttachmentRecord {
            network: "n1".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            driver: "bridge".into(),
            netns: Some("/run/netns/x".into()),
            host_ifname: Some("tv0123".into()),
            bridge: Some("tether0".into()),
            mac: None,
            macspoofchk: false,
            ips: vec!["10.0.0.2/24".parse().unwrap()],
        }
    }

    #[test]
    fn write_read_list_remove_round_trip() {
        let tmp = std::env::temp_dir().join(format!("tether-rec-{}", std::process::id()));
        let dir = RecordDir::new(&tmp, "n1");
        assert!(dir.is_empty());
        dir.write(&sample("a")).unwrap();
        dir.write(&sample("b")).unwrap();
        assert!(!dir.is_empty());
        assert_eq!(dir.read("a", "eth0").unwrap(), Some(sample("a")));
        assert_eq!(dir.list().unwrap().len(), 2);
        assert!(dir.remove("a", "eth0").unwrap());
        assert!(!dir.remove("a", "eth0").unwrap());
        assert!(dir.remove("b", "eth0").unwrap());
        assert!(dir.is_empty());
        fs::remove_dir_all(tmp).unwrap();
    }
}
