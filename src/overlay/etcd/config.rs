//! `overlay.store = {"etcd": {...}}`: where the etcd cluster answers, the key prefix, TLS files, and the
//! liveness lease's time to live.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::overlay::OverlayError;

fn config_error(reason: impl Into<String>) -> OverlayError {
    OverlayError::Config {
        reason: format!("store.etcd: {}", reason.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEtcd {
    endpoints: Vec<String>,
    prefix: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    lease_ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    etcd: RawEtcd,
}

/// TLS toward etcd: the CA that signed the servers, and optionally this host's client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Every key lives under it; no trailing slash.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// This host counts as up while its liveness key's lease lives; kept alive every third of it.
    pub lease_ttl: Duration,
}

/// 10 s: a dead host leaves the kernel tables within about that.
const DEFAULT_LEASE_TTL_S: i64 = 10;

impl EtcdConfig {
    /// Parses the `store` value of the overlay section.
    pub fn from_store_section(section: &serde_json::Value) -> Result<EtcdConfig, OverlayError> {
        let raw: RawStore = serde_json::from_value(section.clone()).map_err(|e| {
            config_error(format!(
                "`store` must be {{\"etcd\": {{\"endpoints\": [\"http://192.0.2.1:2379\"], ...}}}} (or left out for gossip): {e}"
            ))
        })?;
        let raw = raw.etcd;
        if raw.endpoints.is_empty() {
            return Err(config_error(
                "`store.etcd.endpoints` needs at least one URL like \"http://192.0.2.1:2379\"",
            ));
        }
        for e in &raw.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(config_error(format!(
                    "etcd endpoint {e:?} must start with http:// or https://"
                )));
            }
        }
        let prefix = raw.prefix.unwrap_or_else(|| "/tether".into());
        let prefix = prefix.trim_end_matches('/').to_string();
        if prefix.is_empty() {
            return Err(config_error(
                "`store.etcd.prefix` must name a key prefix such as \"/tether\"",
            ));
        }
        let tls = match (raw.ca_file, raw.cert_file, raw.key_file) {
            (None, None, None) => None,
            (Some(ca_file), None, None) => Some(EtcdTls {
                ca_file,
                client: None,
            }),
            (Some(ca_file), Some(cert), Some(key)) => Some(EtcdTls {
                ca_file,
                client: Some((cert, key)),
            }),
            _ => {
                return Err(config_error(
                    "etcd TLS takes `caFile`, optionally with both `certFile` and `keyFile`",
                ))
            }
        };
        let ttl = raw.lease_ttl_seconds.unwrap_or(DEFAULT_LEASE_TTL_S);
        if ttl < 2 {
            return Err(config_error(
                "`store.etcd.leaseTtlSeconds` must be at least 2",
            ));
        }
        Ok(EtcdConfig {
            endpoints: raw.endpoints,
            prefix,
            tls,
            lease_ttl: Duration::from_secs(ttl as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_store_section_parses_with_defaults_and_bad_ones_say_what_to_fix() {
        let c = EtcdConfig::from_store_section(
            &json!({"etcd": {"endpoints": ["http://192.0.2.1:2379"], "prefix": "/t/"}}),
        )
        .unwrap();
        assert_eq!(c.prefix, "/t");
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert!(c.tls.is_none());
        let tls = EtcdConfig::from_store_section(&json!({"etcd": {
            "endpoints": ["https://e:2379"], "caFile": "/ca", "certFile": "/c", "keyFile": "/k"}}))
        .unwrap();
        assert!(tls.tls.unwrap().client.is_some());
        for bad in [
            json!({"etcd": {"endpoints": []}}),
            json!({"etcd": {"endpoints": ["192.0.2.1:2379"]}}),
            json!({"etcd": {"endpoints": ["http://e:2379"], "certFile": "/c"}}),
            json!({"etcd": {"endpoints": ["http://e:2379"], "leaseTtlSeconds": 1}}),
            json!({"consul": {}}),
        ] {
            assert!(EtcdConfig::from_store_section(&bad).is_err(), "{bad}");
        }
    }
}
