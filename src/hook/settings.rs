//! What the hook should do for one container, gathered from two sources: annotations (`tether.*`, set
//! with `podman run --annotation` or in config.json) and the hook's own arguments. Each field that the
//! arguments give replaces the annotation's; fields neither gives keep their defaults.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::endpoint::PortSpec;
use crate::link::MacAddr;

use super::error::HookError;
use super::network_mode::NetworkMode;

pub const NETWORK_ANNOTATION: &str = "tether.network";
pub const PORTS_ANNOTATION: &str = "tether.ports";
pub const IP_ANNOTATION: &str = "tether.ip";
pub const MAC_ANNOTATION: &str = "tether.mac";
pub const ALIASES_ANNOTATION: &str = "tether.aliases";
pub const NAME_ANNOTATION: &str = "tether.name";

/// Where other tools put a container's name, tried in order when `tether.name` is absent (containerd's
/// CRI and CRI-O). podman puts none in the OCI spec: pass `--annotation tether.name=NAME`.
const NAME_HINTS: &[&str] = &[
    "io.kubernetes.cri.container-name",
    "io.kubernetes.cri-o.ContainerName",
];

/// One source's settings; `None` means "this source says nothing".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSettings {
    pub networks: Option<NetworkMode>,
    /// `-p` specs (`[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]`), published on the first network.
    pub ports: Option<Vec<PortSpec>>,
    /// Requested addresses on the first network (one per family).
    pub ips: Option<Vec<IpAddr>>,
    /// MAC of the first network's interface.
    pub mac: Option<MacAddr>,
    pub aliases: Option<Vec<String>>,
    pub name: Option<String>,
}

impl HookSettings {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<HookSettings, HookError> {
        let get = |key: &str| annotations.get(key).map(String::as_str);
        let networks = get(NETWORK_ANNOTATION)
            .map(|list| NetworkMode::parse([list]))
            .transpose()?;
        let ports = get(PORTS_ANNOTATION)
            .map(|list| parse_ports(split_list(list), PORTS_ANNOTATION))
            .transpose()?;
        let ips = get(IP_ANNOTATION)
            .map(|list| parse_ips(split_list(list), IP_ANNOTATION))
            .transpose()?;
        let mac = get(MAC_ANNOTATION)
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(|text| parse_mac(text, MAC_ANNOTATION))
            .transpose()?;
        let aliases = get(ALIASES_ANNOTATION)
            .map(|list| parse_names(split_list(list), ALIASES_ANNOTATION))
            .transpose()?;
        let name = std::iter::once(NAME_ANNOTATION)
            .chain(NAME_HINTS.iter().copied())
            .filter_map(|key| get(key).map(|v| (key, v.trim())))
            .find(|(_, name)| !name.is_empty())
            .map(|(key, name)| parse_name(name.to_string(), key))
            .transpose()?;
        Ok(HookSettings {
            networks,
            ports,
            ips,
            mac,
            aliases,
            name,
        })
    }

    /// `self` with every field `other` sets replaced by `other`'s.
    pub fn overridden_by(self, other: HookSettings) -> HookSettings {
        HookSettings {
            networks: other.networks.or(self.networks),
            ports: other.ports.or(self.ports),
            ips: other.ips.or(self.ips),
            mac: other.mac.or(self.mac),
            aliases: other.aliases.or(self.aliases),
            name: other.name.or(self.name),
        }
    }
}

/// Items of a comma-separated list, trimmed, empty ones dropped.
pub(crate) fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// A container name or alias: it goes into the container's /etc/hosts as one word of a line, so
/// whitespace and control characters (a newline would add lines of the sender's choosing) are refused.
pub(crate) fn parse_name(text: String, source: &str) -> Result<String, HookError> {
    match text.chars().find(|c| c.is_control() || c.is_whitespace()) {
        Some(c) => Err(HookError::InvalidSetting {
            source_name: source.to_string(),
            value: text,
            reason: format!("a name holds no whitespace or control characters (found {c:?})"),
        }),
        None => Ok(text),
    }
}

pub(crate) fn parse_names(texts: Vec<String>, source: &str) -> Result<Vec<String>, HookError> {
    texts.into_iter().map(|t| parse_name(t, source)).collect()
}

pub(crate) fn parse_ips(texts: Vec<String>, source: &str) -> Result<Vec<IpAddr>, HookError> {
    texts
        .iter()
        .map(|text| {
            // An address with a prefix (`10.1.2.3/24`) is what IPAM would hand back; take the address.
            let bare = text.split('/').next().unwrap_or(text);
            bare.parse().map_err(|_| HookError::InvalidSetting {
                source_name: source.to_string(),
                value: text.clone(),
                reason: "expected an IPv4 or IPv6 address".into(),
            })
        })
        .collect()
}

pub(crate) fn parse_ports(texts: Vec<String>, source: &str) -> Result<Vec<PortSpec>, HookError> {
    texts
        .iter()
        .map(|text| {
            text.parse().map_err(
                |e: crate::endpoint::PortSpecError| HookError::InvalidSetting {
                    source_name: source.to_string(),
                    value: text.clone(),
                    reason: e.to_string(),
                },
            )
        })
        .collect()
}

pub(crate) fn parse_mac(text: &str, source: &str) -> Result<MacAddr, HookError> {
    text.parse()
        .map_err(|e: crate::link::MacAddrError| HookError::InvalidSetting {
            source_name: source.to_string(),
            value: text.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(text: &str) -> PortSpec {
        text.parse().unwrap()
    }

    #[test]
    fn a_bad_port_spec_names_the_annotation() {
        let err = HookSettings::from_annotations(&annotations(&[("tether.ports", "80:99999")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tether.ports") && err.contains("80:99999"),
            "{err}"
        );
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Issue 21: an alias holding a newline wrote extra lines into the container's /etc/hosts.
    #[test]
    fn names_with_newlines_or_spaces_are_refused() {
        for (key, value) in [
            ("tether.aliases", "web,evil\n6.6.6.6 bank.example"),
            ("tether.aliases", "a\rb"),
            ("tether.name", "web\n10.0.0.1 x"),
            ("tether.name", "two words"),
            ("io.kubernetes.cri.container-name", "c\u{0}"),
        ] {
            let err = HookSettings::from_annotations(&annotations(&[(key, value)])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn every_tether_annotation_is_read() {
        let settings = HookSettings::from_annotations(&annotations(&[
            ("tether.network", "front,back"),
            ("tether.ports", "8080:80, 127.0.0.1:53:53/udp"),
            ("tether.ip", "10.88.0.9, fd00::9"),
            ("tether.mac", "02:42:ac:11:00:09"),
            ("tether.aliases", "web,www"),
            ("tether.name", "web1"),
            ("other", "ignored"),
        ]))
        .unwrap();
        assert_eq!(
            settings.networks,
            Some(NetworkMode::Networks(vec!["front".into(), "back".into()]))
        );
        assert_eq!(
            settings.ports,
            Some(vec![port("8080:80"), port("127.0.0.1:53:53/udp")])
        );
        assert_eq!(
            settings.ips,
            Some(vec![
                "10.88.0.9".parse().unwrap(),
                "fd00::9".parse().unwrap()
            ])
        );
        assert_eq!(settings.mac.unwrap().to_string(), "02:42:ac:11:00:09");
        assert_eq!(
            settings.aliases,
            Some(vec!["web".to_string(), "www".to_string()])
        );
        assert_eq!(settings.name.as_deref(), Some("web1"));
    }

    #[test]
    fn no_annotations_say_nothing() {
        assert_eq!(
            HookSettings::from_annotations(&BTreeMap::new()).unwrap(),
            HookSettings::default()
        );
    }

    #[test]
    fn the_name_falls_back_to_cri_hints() {
        let settings = HookSettings::from_annotations(&annotations(&[(
            "io.kubernetes.cri.container-name",
            "nginx",
        )]))
        .unwrap();
        assert_eq!(settings.name.as_deref(), Some("nginx"));
        let own_wins = HookSettings::from_annotations(&annotations(&[
            ("io.kubernetes.cri.container-name", "nginx"),
            ("tether.name", "mine"),
        ]))
        .unwrap();
        assert_eq!(own_wins.name.as_deref(), Some("mine"));
    }

    #[test]
    fn bad_addresses_and_macs_name_the_annotation() {
        let bad_ip = HookSettings::from_annotations(&annotations(&[("tether.ip", "10.0.0.300")]));
        let message = bad_ip.unwrap_err().to_string();
        assert!(
            message.contains("tether.ip") && message.contains("10.0.0.300"),
            "{message}"
        );
        let bad_mac = HookSettings::from_annotations(&annotations(&[("tether.mac", "zz")]));
        assert!(bad_mac.unwrap_err().to_string().contains("tether.mac"));
    }

    #[test]
    fn arguments_override_annotations_field_by_field() {
        let from_annotations = HookSettings {
            networks: Some(NetworkMode::Networks(vec!["front".into()])),
            ports: Some(vec![port("80")]),
            name: Some("web".into()),
            ..HookSettings::default()
        };
        let from_args = HookSettings {
            networks: Some(NetworkMode::Networks(vec!["back".into()])),
            aliases: Some(vec!["api".into()]),
            ..HookSettings::default()
        };
        let merged = from_annotations.overridden_by(from_args);
        assert_eq!(
            merged.networks,
            Some(NetworkMode::Networks(vec!["back".into()]))
        );
        assert_eq!(merged.ports, Some(vec![port("80")]));
        assert_eq!(merged.aliases, Some(vec!["api".to_string()]));
        assert_eq!(merged.name.as_deref(), Some("web"));
    }
}
