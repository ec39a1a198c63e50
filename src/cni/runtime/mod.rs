//! The runtime side of CNI, as libcni does it: load a network's configuration list, run its plugin
//! chain for ADD (each plugin gets the previous one's result), DEL (reverse order, the cached result as
//! `prevResult`), CHECK, GC and STATUS, and keep libcni's result cache so DEL and CHECK work from what
//! ADD used. The CLI and the OCI hook both run networks through here.

mod cache;
mod error;
mod loader;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use cache::{CachedAttachment, ResultCache, CACHE_KIND};
pub use error::RuntimeError;
pub use loader::{list_networks, load_network, NetworkConfigList};

use crate::cni::config::Attachment;
use crate::cni::env::Command;
use crate::cni::error::CniError;
use crate::cni::exec::{exec_plugin, find_plugin, ExecRequest};
use crate::cni::version::Version;

/// What one attachment hands the plugins besides the configuration (libcni's `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// The container's network namespace; DEL works without it.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// CNI_ARGS pairs, in order.
    pub args: Vec<(String, String)>,
    /// Capability arguments by capability name (`portMappings`, `ips`, `mac`, `aliases`, ...); a plugin
    /// sees in `runtimeConfig` only those it declares in `capabilities`.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    fn from_cache(entry: &CachedAttachment) -> RuntimeConf {
        RuntimeConf {
            container_id: entry.container_id.clone(),
            netns: entry.netns.as_ref().map(PathBuf::from),
            ifname: entry.ifname.clone(),
            args: entry
                .cni_args
                .iter()
                .map(|[k, v]| (k.clone(), v.clone()))
                .collect(),
            capability_args: entry.capability_args.clone(),
        }
    }
}

/// Where plugins are found and results are cached.
#[derive(Debug, Clone)]
pub struct CniRuntime {
    pub plugin_path: Vec<PathBuf>,
    pub cache: ResultCache,
}

impl CniRuntime {
    pub fn new(plugin_path: Vec<PathBuf>, cache_dir: &Path) -> CniRuntime {
        CniRuntime {
            plugin_path,
            cache: ResultCache::new(cache_dir),
        }
    }

    /// `CNI_PATH` (else the default plugin dirs) and `TETHER_CNI_CACHE_DIR` (else `/var/lib/cni`).
    pub fn from_env() -> CniRuntime {
        CniRuntime::new(crate::paths::cni_path(), &crate::paths::cni_cache_dir())
    }

    /// Runs the chain's ADD and caches the final result, which it returns (in the list's version).
    /// Unlike libcni, a failed ADD is undone here (DEL of the plugins that ran, in reverse), so callers
    /// never hold a half-made attachment.
    pub fn add(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<Value, RuntimeError> {
        let capabilities = Value::Object(rt.capability_args.clone());
        let mut prev: Option<Value> = None;
        for index in 0..net.list.plugins.len() {
            let conf = net.list.plugin_conf(index, prev.as_ref(), &capabilities);
            match self.exec(net, index, Command::Add, rt, &conf) {
                Ok(Some(result)) => prev = Some(result),
                // A plugin that prints nothing passes the previous result on.
                Ok(None) => {}
                Err(err) => {
                    self.undo_add(net, rt, index);
                    return Err(err);
                }
            }
        }
        let Some(result) = prev else {
            self.undo_add(net, rt, net.list.plugins.len() - 1);
            return Err(RuntimeError::NoResult {
                network: net.name().to_string(),
                container: rt.container_id.clone(),
            });
        };
        let entry = CachedAttachment {
            kind: CACHE_KIND.to_string(),
            container_id: rt.container_id.clone(),
            config: net.bytes.clone(),
            ifname: rt.ifname.clone(),
            network_name: net.name().to_string(),
            netns: rt.netns.as_ref().map(|p| p.display().to_string()),
            cni_args: rt
                .args
                .iter()
                .map(|(k, v)| [k.clone(), v.clone()])
                .collect(),
            capability_args: rt.capability_args.clone(),
            result: Some(result.clone()),
        };
        if let Err(err) = self.cache.write(&entry) {
            self.undo_add(net, rt, net.list.plugins.len() - 1);
            return Err(err);
        }
        Ok(result)
    }

    fn undo_add(&self, net: &NetworkConfigList, rt: &RuntimeConf, last: usize) {
        let capabilities = Value::Object(rt.capability_args.clone());
        for index in (0..=last).rev() {
            let conf = net.list.plugin_conf(index, None, &capabilities);
            if let Err(err) = self.exec(net, index, Command::Del, rt, &conf) {
                tracing::warn!(error = %err, "undoing a failed ADD: DEL failed");
            }
        }
    }

    /// Runs the chain's DEL in reverse order with the cached result as `prevResult` and removes the
    /// cache entry. Plugins answer DEL of something already gone with success, so this is idempotent.
    pub fn del(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), RuntimeError> {
        let cached = self
            .cache
            .read(net.name(), &rt.container_id, &rt.ifname)?
            .and_then(|entry| entry.result);
        let capabilities = Value::Object(rt.capability_args.clone());
        // prevResult exists on DEL from spec 0.4.0 on.
        let prev =
            cached.filter(|_| version_at_least(&net.list.cni_version, Version::new(0, 4, 0)));
        for index in (0..net.list.plugins.len()).rev() {
            let conf = net.list.plugin_conf(index, prev.as_ref(), &capabilities);
            self.exec(net, index, Command::Del, rt, &conf)?;
        }
        self.cache
            .remove(net.name(), &rt.container_id, &rt.ifname)?;
        Ok(())
    }

    /// DEL from the cache alone: the configuration, CNI_ARGS and capability arguments ADD used, so it
    /// works after the conflist changed or was removed. `Ok(false)` when nothing is cached.
    pub fn del_cached(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<bool, RuntimeError> {
        let Some(entry) = self.cache.read(network, container_id, ifname)? else {
            return Ok(false);
        };
        let path = self.cache.path(network, container_id, ifname);
        let net = NetworkConfigList::from_bytes(entry.config.clone(), None).map_err(|source| {
            RuntimeError::BadConf {
                path,
                source: Box::new(source),
            }
        })?;
        self.del(&net, &RuntimeConf::from_cache(&entry))?;
        Ok(true)
    }

    /// CHECK against the cached result (spec 0.4.0+; skipped when the list sets `disableCheck`).
    pub fn check(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), RuntimeError> {
        if net.list.disable_check || !version_at_least(&net.list.cni_version, Version::new(0, 4, 0))
        {
            return Ok(());
        }
        let cached = self
            .cache
            .read(net.name(), &rt.container_id, &rt.ifname)?
            .and_then(|entry| entry.result)
            .ok_or_else(|| RuntimeError::NotCached {
                network: net.name().to_string(),
                container: rt.container_id.clone(),
                ifname: rt.ifname.clone(),
                dir: self.cache.dir().to_path_buf(),
            })?;
        let capabilities = Value::Object(rt.capability_args.clone());
        for index in 0..net.list.plugins.len() {
            let conf = net.list.plugin_conf(index, Some(&cached), &capabilities);
            self.exec(net, index, Command::Check, rt, &conf)?;
        }
        Ok(())
    }

    /// GC (spec 1.1.0): every plugin frees what belongs to attachments not in `valid`; cache entries
    /// of this network outside `valid` are dropped too. A list older than 1.1.0 has no GC: only the
    /// cache is pruned.
    pub fn gc(&self, net: &NetworkConfigList, valid: &[Attachment]) -> Result<(), RuntimeError> {
        if version_at_least(&net.list.cni_version, Version::V1_1_0) && !net.list.disable_gc {
            let listed: Vec<Value> = valid
                .iter()
                .map(|a| serde_json::json!({"containerID": a.container_id, "ifname": a.ifname}))
                .collect();
            let rt = RuntimeConf::default();
            for index in 0..net.list.plugins.len() {
                let mut conf = net
                    .list
                    .plugin_conf(index, None, &Value::Object(Map::new()));
                conf["cni.dev/valid-attachments"] = Value::Array(listed.clone());
                self.exec(net, index, Command::Gc, &rt, &conf)?;
            }
        }
        for entry in self.cache.list()? {
            let keep = valid
                .iter()
                .any(|a| a.container_id == entry.container_id && a.ifname == entry.ifname);
            if entry.network_name == net.name() && !keep {
                self.cache
                    .remove(&entry.network_name, &entry.container_id, &entry.ifname)?;
            }
        }
        Ok(())
    }

    /// STATUS (spec 1.1.0): whether every plugin can take ADDs; lists older than 1.1.0 always can.
    pub fn status(&self, net: &NetworkConfigList) -> Result<(), RuntimeError> {
        if !version_at_least(&net.list.cni_version, Version::V1_1_0) {
            return Ok(());
        }
        let rt = RuntimeConf::default();
        for index in 0..net.list.plugins.len() {
            let conf = net
                .list
                .plugin_conf(index, None, &Value::Object(Map::new()));
            self.exec(net, index, Command::Status, &rt, &conf)?;
        }
        Ok(())
    }

    fn exec(
        &self,
        net: &NetworkConfigList,
        index: usize,
        command: Command,
        rt: &RuntimeConf,
        conf: &Value,
    ) -> Result<Option<Value>, RuntimeError> {
        let plugin = net.list.plugin_type(index);
        let wrap = |source: CniError| RuntimeError::Plugin {
            network: net.name().to_string(),
            plugin: plugin.to_string(),
            command,
            container: if rt.container_id.is_empty() {
                "-".to_string()
            } else {
                rt.container_id.clone()
            },
            source: Box::new(source),
        };
        let binary = find_plugin(plugin, &self.plugin_path).map_err(wrap)?;
        let args = rt.args_string();
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let req = ExecRequest {
            command,
            container_id: Some(rt.container_id.as_str()).filter(|_| per_container),
            netns: rt.netns.as_deref().filter(|_| per_container),
            ifname: Some(rt.ifname.as_str()).filter(|_| per_container),
            args: if per_container { &args } else { "" },
            path: &self.plugin_path,
        };
        let stdin = serde_json::to_vec(conf).expect("JSON values serialize");
        tracing::debug!(network = net.name(), plugin, %command, container = %rt.container_id, "running plugin");
        exec_plugin(&binary, &req, &stdin).map_err(wrap)
    }
}

fn version_at_least(text: &str, min: Version) -> bool {
    Version::parse(text).is_ok_and(|v| v >= min)
}

#[cfg(test)]
mod tests;
