//! The `dns` section of the tetherd config.

use std::time::Duration;

use serde::Deserialize;

use super::error::DnsError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DnsSettings {
    /// TTL of local answers: short, since containers come and go.
    pub local_ttl: u32,
    /// How long one upstream gets to answer before the next is tried.
    pub upstream_timeout_ms: u64,
    /// Upstream answers kept (0 turns the cache off).
    pub cache_entries: usize,
    /// Concurrent TCP clients per container.
    pub max_tcp_connections: usize,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            local_ttl: 10,
            upstream_timeout_ms: 1500,
            cache_entries: 4096,
            max_tcp_connections: 64,
        }
    }
}

impl DnsSettings {
    pub fn from_section(section: &serde_json::Value) -> Result<DnsSettings, DnsError> {
        if section.is_null() {
            return Ok(DnsSettings::default());
        }
        serde_json::from_value(section.clone()).map_err(|source| DnsError::Settings { source })
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms.max(50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_section_means_defaults_and_typos_are_refused() {
        assert_eq!(
            DnsSettings::from_section(&serde_json::Value::Null).unwrap(),
            DnsSettings::default()
        );
        let s = DnsSettings::from_section(&serde_json::json!({"localTtl": 5})).unwrap();
        assert_eq!(s.local_ttl, 5);
        assert!(DnsSettings::from_section(&serde_json::json!({"localTTL": 5})).is_err());
    }
}
