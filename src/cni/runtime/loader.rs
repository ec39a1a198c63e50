//! Finding a network's configuration in the config dir the way libcni does (`LoadConfList`): files are
//! read in name order; `*.conflist` files first, then single-plugin `*.conf`/`*.json` files, which are
//! wrapped into a list of one.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::error::RuntimeError;
use crate::cni::conflist::ConfList;
use crate::cni::error::{CniError, ErrorCode};

/// A network's configuration list as loaded: parsed, plus the exact bytes (the result cache keeps them,
/// so DEL uses what ADD used even after the file changed).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub list: ConfList,
    pub bytes: Vec<u8>,
    /// The file it came from; `None` when it came from the cache.
    pub path: Option<PathBuf>,
}

impl NetworkConfigList {
    pub fn name(&self) -> &str {
        &self.list.name
    }

    /// Parses list bytes (a conflist, or a single plugin config wrapped into one).
    pub fn from_bytes(bytes: Vec<u8>, path: Option<PathBuf>) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| {
            CniError::new(
                ErrorCode::Decode,
                format!("cannot decode network configuration: {err}"),
            )
        })?;
        let bytes = if value.get("plugins").is_none() && value.get("type").is_some() {
            wrap_single(&value)
        } else {
            bytes
        };
        let list = ConfList::parse(&bytes)?;
        Ok(NetworkConfigList { list, bytes, path })
    }
}

/// libcni's `ConfListFromConf`: the single config becomes the only plugin; name and version move up.
fn wrap_single(conf: &Value) -> Vec<u8> {
    let wrapped = json!({
        "cniVersion": conf.get("cniVersion").cloned().unwrap_or(Value::Null),
        "name": conf.get("name").cloned().unwrap_or(Value::Null),
        "plugins": [conf],
    });
    serde_json::to_vec(&wrapped).expect("JSON values serialize")
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// Config files of `dir` with one of `extensions`, sorted by name; a missing dir has none.
fn files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, RuntimeError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RuntimeError::ReadConf {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && has_extension(p, extensions))
        .collect();
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<NetworkConfigList, RuntimeError> {
    let bytes = fs::read(path).map_err(|source| RuntimeError::ReadConf {
        path: path.to_path_buf(),
        source,
    })?;
    NetworkConfigList::from_bytes(bytes, Some(path.to_path_buf())).map_err(|source| {
        RuntimeError::BadConf {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    })
}

/// Every valid network of `dir`, conflists first; a name seen twice keeps its first file (libcni's
/// lookup order). Invalid files are skipped with a warning: one broken file must not hide the rest.
pub fn list_networks(dir: &Path) -> Result<Vec<NetworkConfigList>, RuntimeError> {
    let mut out: Vec<NetworkConfigList> = Vec::new();
    let ordered = files(dir, &["conflist"])?
        .into_iter()
        .chain(files(dir, &["conf", "json"])?);
    for path in ordered {
        match read(&path) {
            Ok(net) if out.iter().any(|known| known.name() == net.name()) => {
                tracing::debug!(file = %path.display(), network = net.name(), "shadowed by an earlier file");
            }
            Ok(net) => out.push(net),
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "skipping invalid network configuration")
            }
        }
    }
    Ok(out)
}

/// The network called `name` in `dir`.
pub fn load_network(dir: &Path, name: &str) -> Result<NetworkConfigList, RuntimeError> {
    let ordered = files(dir, &["conflist"])?
        .into_iter()
        .chain(files(dir, &["conf", "json"])?);
    for path in ordered {
        // A cheap look at the name first, so an unrelated broken file does not fail this lookup.
        let Ok(bytes) = fs::read(&path) else { continue };
        let named = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string));
        if named.as_deref() == Some(name) {
            return read(&path);
        }
    }
    Err(RuntimeError::NetworkNotFound {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TestDir;

    #[test]
    fn conflists_come_first_and_single_configs_are_wrapped() {
        let dir = TestDir::new("loader");
        fs::write(
            dir.join("90-a.conf"),
            r#"{"cniVersion":"1.0.0","name":"a","type":"tether-bridge"}"#,
        )
        .unwrap();
        fs::write(
            dir.join("99-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"x"},{"type":"y"}]}"#,
        )
        .unwrap();
        fs::write(
            dir.join("50-b.json"),
            r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        fs::write(dir.join("10-broken.conflist"), "{nope").unwrap();

        let a = load_network(&dir, "a").unwrap();
        assert_eq!(a.list.plugins.len(), 2, "the conflist wins over the .conf");
        let b = load_network(&dir, "b").unwrap();
        assert_eq!(b.list.plugin_type(0), "bridge");
        assert_eq!(b.list.cni_version, "0.4.0");
        assert!(matches!(
            load_network(&dir, "c"),
            Err(RuntimeError::NetworkNotFound { .. })
        ));
        let names: Vec<String> = list_networks(&dir)
            .unwrap()
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
