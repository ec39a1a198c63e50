//! The `"overlay"` section of tetherd's config: where this host listens, which cluster store it uses
//! (`store`: absent for the embedded gossip, `{"etcd": {...}}` for etcd), whom gossip asks first, the shared
//! key and the protocol's timings. Parsed once; the rest of the control plane never sees JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::OverlayError;
use super::etcd::EtcdConfig;
use super::ipsec::plan::SoftLimits;
use super::ipsec::{DataKey, Rotation, SECRET_LEN};
use super::seal::KEY_LEN;

/// The control-plane port when `bind` gives none (memberlist's, as Docker uses it).
pub const DEFAULT_PORT: u16 = 7946;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPeerConfig {
    bind: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    key: Option<String>,
    key_file: Option<PathBuf>,
    probe_period_ms: Option<u64>,
    failure_timeout_ms: Option<u64>,
    sync_interval_ms: Option<u64>,
    reconcile_interval_ms: Option<u64>,
    repair_interval_ms: Option<u64>,
    claim_grace_ms: Option<u64>,
    expected_hosts: Option<u32>,
    store: Option<serde_json::Value>,
    encryption: Option<RawEncryption>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEncryption {
    key_file: Option<PathBuf>,
    rotation_interval_s: Option<u64>,
    soft_limit_packets: Option<u64>,
    soft_limit_bytes: Option<u64>,
}

/// Keys of encrypted networks' data plane (docs/encryption.md).
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// The data-plane secret, from its own key file: never the control plane's key, never in the store.
    pub key: DataKey,
    pub rotation: Rotation,
    /// Past either, the sender of a pair rekeys it early.
    pub soft: SoftLimits,
}

/// Docker's data-plane keys rotate every 12 hours.
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(12 * 3600);
/// A pair rekeys early after 2^32 packets or 2^42 bytes (4 TiB) under one key, whichever comes first.
pub const DEFAULT_SOFT_PACKETS: u64 = 1 << 32;
pub const DEFAULT_SOFT_BYTES: u64 = 1 << 42;

/// The safety pass's default period: rare, since every change is worked on when it happens; it only
/// bounds how long an entry deleted by hand stays missing.
pub const DEFAULT_REPAIR_MS: u64 = 30_000;

/// Which cluster store keeps membership, claims and records.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded SWIM gossip, every datagram sealed with this pre-shared key.
    Gossip {
        key: [u8; KEY_LEN],
    },
    Etcd(EtcdConfig),
}

/// Validated control-plane settings.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// This host's control-plane address; its IP is also the host's name in every record.
    pub bind: SocketAddr,
    /// Static seeds: asked to let us in at start and whenever we know nobody.
    pub peers: Vec<SocketAddr>,
    pub store: StoreConfig,
    /// SWIM probe period; a probe unanswered for half of it goes indirect.
    pub probe_period: Duration,
    /// A suspected host is declared down after this long.
    pub failure_timeout: Duration,
    /// Push-pull of the whole record table with one random peer, which heals partitions.
    pub sync_interval: Duration,
    /// Encrypted networks' kernel pass (key epochs, rekeys) runs at least this often; also the gossip
    /// store's housekeeping period.
    pub reconcile_interval: Duration,
    /// The safety pass: the state directory read again and the kernel tables, remote names and service
    /// copies compared with the whole table at least this often (restores what was changed by hand).
    /// Between passes only what changed is worked on.
    pub repair_interval: Duration,
    /// A host down for this long loses its records, and so its address blocks.
    pub claim_grace: Duration,
    /// Roughly how many hosts the cluster has: SWIM repeats each membership update about
    /// 4·log10(n) times, so a too-small guess leaves late joiners unknown to some hosts for long.
    pub expected_hosts: u32,
    /// `encryption`: absent, and encrypted networks on this host never reach their peers.
    pub encryption: Option<EncryptionConfig>,
}

impl std::fmt::Debug for PeerConfig {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("bind", &self.bind)
            .field("peers", &self.peers)
            .field("probe_period", &self.probe_period)
            .field("failure_timeout", &self.failure_timeout)
            .field(
                "store",
                &match &self.store {
                    StoreConfig::Gossip { .. } => "gossip".to_string(),
                    StoreConfig::Etcd(e) => format!("etcd {:?}", e.endpoints),
                },
            )
            .finish_non_exhaustive()
    }
}

fn config_error(reason: impl Into<String>) -> OverlayError {
    OverlayError::Config {
        reason: reason.into(),
    }
}

fn parse_addr(field: &str, text: &str) -> Result<SocketAddr, OverlayError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| {
            config_error(format!(
                "{field} {text:?} is not an address like \"192.0.2.1:7946\""
            ))
        })
}

fn parse_key(text: &str) -> Result<[u8; KEY_LEN], OverlayError> {
    let text = text.trim();
    let bad = || {
        config_error(format!(
            "the key must be {} hex digits (32 random bytes, e.g. `openssl rand -hex 32`)",
            KEY_LEN * 2
        ))
    };
    if text.len() != KEY_LEN * 2 {
        return Err(bad());
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

fn read_key_file(path: &PathBuf) -> Result<[u8; KEY_LEN], OverlayError> {
    let text = std::fs::read_to_string(path).map_err(|source| OverlayError::KeyFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_key(&text)
}

fn encryption(
    raw: Option<RawEncryption>,
    store: &StoreConfig,
) -> Result<Option<EncryptionConfig>, OverlayError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let path = raw.key_file.ok_or_else(|| {
        config_error("`encryption.keyFile` is required: a file with the data-plane secret (64 hex digits, e.g. `openssl rand -hex 32`), the same on every host")
    })?;
    let secret: [u8; SECRET_LEN] = read_key_file(&path)?;
    if matches!(store, StoreConfig::Gossip { key } if *key == secret) {
        return Err(config_error(
            "`encryption.keyFile` holds the control plane's key: give the data plane a secret of its own",
        ));
    }
    let interval = raw
        .rotation_interval_s
        .unwrap_or(DEFAULT_ROTATION.as_secs());
    if interval < 2 {
        return Err(config_error(
            "`encryption.rotationIntervalS` must be at least 2 seconds (43200, 12 hours, by default)",
        ));
    }
    if raw.soft_limit_packets == Some(0) || raw.soft_limit_bytes == Some(0) {
        return Err(config_error(
            "`encryption.softLimitPackets` and `softLimitBytes` must be above 0",
        ));
    }
    Ok(Some(EncryptionConfig {
        key: DataKey::new(secret),
        rotation: Rotation::every(Duration::from_secs(interval)),
        soft: SoftLimits {
            packets: Some(raw.soft_limit_packets.unwrap_or(DEFAULT_SOFT_PACKETS)),
            bytes: Some(raw.soft_limit_bytes.unwrap_or(DEFAULT_SOFT_BYTES)),
        },
    }))
}

fn gossip_key(
    key: Option<String>,
    key_file: Option<PathBuf>,
) -> Result<[u8; KEY_LEN], OverlayError> {
    match (key, key_file) {
        (Some(k), None) => parse_key(&k),
        (None, Some(path)) => read_key_file(&path),
        _ => Err(config_error(
            "give exactly one of `key` (hex) or `keyFile`: every message is sealed with it",
        )),
    }
}

impl PeerConfig {
    /// Parses the section; `Ok(None)` when there is none (the host runs no overlay control plane).
    pub fn from_section(section: &serde_json::Value) -> Result<Option<PeerConfig>, OverlayError> {
        if section.is_null() {
            return Ok(None);
        }
        let raw: RawPeerConfig =
            serde_json::from_value(section.clone()).map_err(|e| config_error(e.to_string()))?;
        let bind = parse_addr(
            "bind",
            raw.bind.as_deref().ok_or_else(|| {
                config_error(
                    "`bind` is required: this host's underlay address, e.g. \"192.0.2.1:7946\"",
                )
            })?,
        )?;
        if bind.ip().is_unspecified() {
            return Err(config_error("`bind` must be a concrete address of this host, not 0.0.0.0: it names the host to its peers"));
        }
        let peers_len = u32::try_from(raw.peers.len()).unwrap_or(u32::MAX);
        let peers = raw
            .peers
            .iter()
            .map(|p| parse_addr("peer", p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| *p != bind)
            .collect();
        let etcd = match raw.store {
            None | Some(serde_json::Value::Null) => None,
            Some(section) => Some(EtcdConfig::from_store_section(&section)?),
        };
        // With etcd the store itself is the authority; `key` and `peers` stay unused (a config moving from
        // gossip to etcd may keep them).
        let store = match etcd {
            Some(etcd) => StoreConfig::Etcd(etcd),
            None => StoreConfig::Gossip {
                key: gossip_key(raw.key, raw.key_file)?,
            },
        };
        let encryption = encryption(raw.encryption, &store)?;
        let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default).max(1));
        let probe_period = ms(raw.probe_period_ms, 1000);
        Ok(Some(PeerConfig {
            bind,
            peers,
            store,
            probe_period,
            failure_timeout: ms(raw.failure_timeout_ms, 5000),
            sync_interval: ms(raw.sync_interval_ms, 5000),
            reconcile_interval: ms(raw.reconcile_interval_ms, 1000),
            repair_interval: ms(raw.repair_interval_ms, DEFAULT_REPAIR_MS),
            claim_grace: ms(raw.claim_grace_ms, 10 * 60 * 1000),
            expected_hosts: raw.expected_hosts.unwrap_or(16).max(peers_len + 1).max(3),
            encryption,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_section_parses_with_defaults() {
        let c = PeerConfig::from_section(
            &json!({"bind": "192.0.2.1", "peers": ["192.0.2.2:7000", "192.0.2.1"], "key": KEY}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.bind.to_string(), "192.0.2.1:7946");
        assert_eq!(
            c.peers,
            vec!["192.0.2.2:7000".parse().unwrap()],
            "self is dropped from the seeds"
        );
        assert!(matches!(c.store, StoreConfig::Gossip { key } if key[31] == 0x1f));
        assert!(
            !format!("{c:?}").contains("1f"),
            "the key stays out of Debug"
        );
        assert!(PeerConfig::from_section(&serde_json::Value::Null)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_example_tetherd_config_parses_up_to_its_key_file() {
        let config: serde_json::Value =
            serde_json::from_str(include_str!("../../conf/tetherd-overlay.json")).unwrap();
        let mut section = config["overlay"].clone();
        section["keyFile"] = serde_json::Value::Null;
        section["key"] = json!(KEY);
        let c = PeerConfig::from_section(&section).unwrap().unwrap();
        assert_eq!(
            c.peers.len(),
            2,
            "the host itself is dropped from its seeds"
        );
        assert_eq!(c.expected_hosts, 16);
    }

    #[test]
    fn the_example_etcd_config_parses_without_peers_or_key() {
        let config: serde_json::Value =
            serde_json::from_str(include_str!("../../conf/tetherd-overlay-etcd.json")).unwrap();
        let c = PeerConfig::from_section(&config["overlay"])
            .unwrap()
            .unwrap();
        let StoreConfig::Etcd(etcd) = c.store else {
            panic!("not etcd: {c:?}");
        };
        assert_eq!(etcd.endpoints.len(), 3);
        assert!(etcd.tls.is_some_and(|t| t.client.is_some()));
    }

    #[test]
    fn the_data_plane_key_comes_from_its_own_file() {
        let dir = std::env::temp_dir().join(format!("tether-enc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data.key");
        std::fs::write(&data, format!("{}\n", "ab".repeat(32))).unwrap();
        let c = PeerConfig::from_section(&json!({"bind": "192.0.2.1", "key": KEY,
            "encryption": {"keyFile": data, "rotationIntervalS": 30}}))
        .unwrap()
        .unwrap();
        let e = c.encryption.unwrap();
        assert_eq!(e.key, DataKey::new([0xab; 32]));
        assert_eq!(e.rotation.interval(), Duration::from_secs(30));
        assert_eq!(e.soft.packets, Some(DEFAULT_SOFT_PACKETS));
        let tiny = PeerConfig::from_section(&json!({"bind": "192.0.2.1", "key": KEY,
            "encryption": {"keyFile": data, "softLimitPackets": 64, "softLimitBytes": 4096}}))
        .unwrap()
        .unwrap()
        .encryption
        .unwrap();
        assert_eq!((tiny.soft.packets, tiny.soft.bytes), (Some(64), Some(4096)));
        let same = dir.join("same.key");
        std::fs::write(&same, KEY).unwrap();
        for bad in [
            json!({"bind": "192.0.2.1", "key": KEY, "encryption": {}}),
            json!({"bind": "192.0.2.1", "key": KEY, "encryption": {"keyFile": same}}),
            json!({"bind": "192.0.2.1", "key": KEY, "encryption": {"keyFile": dir.join("none")}}),
            json!({"bind": "192.0.2.1", "key": KEY, "encryption": {"keyFile": data, "rotationIntervalS": 1}}),
            json!({"bind": "192.0.2.1", "key": KEY, "encryption": {"keyFile": data, "softLimitPackets": 0}}),
            json!({"bind": "192.0.2.1", "key": KEY, "encryption": {"keyFile": data, "key": KEY}}),
        ] {
            assert!(PeerConfig::from_section(&bad).is_err(), "{bad} accepted");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_sections_say_what_to_fix() {
        for bad in [
            json!({"peers": [], "key": KEY}),
            json!({"bind": "0.0.0.0:7946", "key": KEY}),
            json!({"bind": "192.0.2.1"}),
            json!({"bind": "192.0.2.1", "key": "abcd"}),
            json!({"bind": "192.0.2.1", "key": KEY, "peers": ["nohost"]}),
            json!({"bind": "192.0.2.1", "key": KEY, "bogus": 1}),
        ] {
            assert!(PeerConfig::from_section(&bad).is_err(), "{bad} accepted");
        }
    }
}
