//! libcni's result cache, byte-compatible so podman and tether read each other's entries:
//! `<cache>/results/<network>-<containerid>-<ifname>`, a JSON object of kind `cniCacheV1` holding the
//! configuration list used for ADD (base64, as Go encodes a `[]byte`), the CNI_ARGS pairs, the
//! capability arguments and the result.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::RuntimeError;

pub const CACHE_KIND: &str = "cniCacheV1";

/// One cached attachment, with libcni's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAttachment {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The configuration list bytes ADD ran with.
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub config: Vec<u8>,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

fn to_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text {
        None => Ok(Vec::new()),
        Some(text) => STANDARD.decode(text).map_err(serde::de::Error::custom),
    }
}

/// The `results/` directory of a libcni cache dir.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// `cache_dir` is the libcni cache dir (`/var/lib/cni`), not its `results/`.
    pub fn new(cache_dir: &Path) -> ResultCache {
        ResultCache {
            dir: cache_dir.join("results"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Writes atomically, 0600 as libcni does (results may hold addresses a user should not list).
    pub fn write(&self, entry: &CachedAttachment) -> Result<(), RuntimeError> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.ifname);
        let err = |source| RuntimeError::Cache {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.dir.join(format!(
            ".{}.tmp{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let body = serde_json::to_vec(entry).expect("cache entries serialize");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        file.write_all(&body).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    /// `Ok(None)` when there is no entry.
    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>, RuntimeError> {
        read_entry(&self.path(network, container_id, ifname))
    }

    /// `Ok(false)` when there was nothing to remove.
    pub fn remove(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<bool, RuntimeError> {
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(RuntimeError::Cache { path, source }),
        }
    }

    /// Every readable entry. File names cannot be split back (names hold '-'), so the contents decide;
    /// unreadable entries are skipped with a warning.
    pub fn list(&self) -> Result<Vec<CachedAttachment>, RuntimeError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RuntimeError::Cache {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') || !path.is_file() {
                continue;
            }
            match read_entry(&path) {
                Ok(Some(cached)) => out.push(cached),
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "skipping unreadable cache entry"),
            }
        }
        out.sort_by(|a, b| {
            (&a.network_name, &a.container_id, &a.ifname).cmp(&(
                &b.network_name,
                &b.container_id,
                &b.ifname,
            ))
        });
        Ok(out)
    }
}

fn read_entry(path: &Path) -> Result<Option<CachedAttachment>, RuntimeError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RuntimeError::Cache {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RuntimeError::CacheCorrupt {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CachedAttachment {
        CachedAttachment {
            kind: CACHE_KIND.into(),
            container_id: "c1".into(),
            config: br#"{"name":"web"}"#.to_vec(),
            ifname: "eth0".into(),
            network_name: "web".into(),
            netns: Some("/run/netns/c1".into()),
            cni_args: vec![["IgnoreUnknown".into(), "1".into()]],
            capability_args: json!({"portMappings": [{"hostPort": 8080}]})
                .as_object()
                .unwrap()
                .clone(),
            result: Some(json!({"cniVersion": "1.0.0"})),
        }
    }

    #[test]
    fn entries_have_libcni_field_names_and_base64_config() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(
            value,
            json!({
                "kind": "cniCacheV1",
                "containerId": "c1",
                "config": "eyJuYW1lIjoid2ViIn0=",
                "ifName": "eth0",
                "networkName": "web",
                "netns": "/run/netns/c1",
                "cniArgs": [["IgnoreUnknown", "1"]],
                "capabilityArgs": {"portMappings": [{"hostPort": 8080}]},
                "result": {"cniVersion": "1.0.0"}
            })
        );
    }

    #[test]
    fn reads_an_entry_written_by_libcni() {
        // As podman 4 writes one: no netns field, no capability args.
        let text = r#"{"kind":"cniCacheV1","containerId":"abc","config":"eyJuYW1lIjoid2ViIn0=","ifName":"eth0","networkName":"web","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","x"]],"result":{"cniVersion":"1.0.0","ips":[]}}"#;
        let entry: CachedAttachment = serde_json::from_str(text).unwrap();
        assert_eq!(entry.config, br#"{"name":"web"}"#);
        assert_eq!(entry.netns, None);
        assert_eq!(entry.cni_args[1], ["K8S_POD_NAME".to_string(), "x".into()]);
    }

    #[test]
    fn write_read_list_remove() {
        let root = std::env::temp_dir().join(format!("tt-cache-{}", std::process::id()));
        let cache = ResultCache::new(&root);
        cache.write(&sample()).unwrap();
        assert!(cache
            .path("web", "c1", "eth0")
            .ends_with("results/web-c1-eth0"));
        assert_eq!(cache.read("web", "c1", "eth0").unwrap(), Some(sample()));
        assert_eq!(cache.list().unwrap(), vec![sample()]);
        assert!(cache.remove("web", "c1", "eth0").unwrap());
        assert!(!cache.remove("web", "c1", "eth0").unwrap());
        assert_eq!(cache.read("web", "c1", "eth0").unwrap(), None);
        fs::remove_dir_all(root).unwrap();
    }
}
