//! What a container's networking should be: Docker's `none` (loopback only), `host` (the runtime's own
//! namespace, nothing to do) or a list of networks, the first of which carries the published ports.

use super::error::HookError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Loopback only.
    None,
    /// The container shares the host's namespace: the hook does nothing.
    Host,
    /// Attached in this order: eth0, eth1, ...
    Networks(Vec<String>),
}

impl NetworkMode {
    /// Parses one or more comma-separated lists (`tether.network` or repeated `--network`).
    pub fn parse<'a>(lists: impl IntoIterator<Item = &'a str>) -> Result<NetworkMode, HookError> {
        let mut names: Vec<String> = Vec::new();
        for name in lists
            .into_iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            check_network_name(name)?;
            if !names.iter().any(|known| known == name) {
                names.push(name.to_string());
            }
        }
        let special = names
            .iter()
            .find(|name| *name == "none" || *name == "host")
            .cloned();
        match special {
            Some(mode) if names.len() > 1 => Err(HookError::InvalidNetworks {
                networks: names.join(","),
                reason: format!("`{mode}` cannot be combined with other networks"),
            }),
            Some(mode) if mode == "host" => Ok(NetworkMode::Host),
            Some(_) => Ok(NetworkMode::None),
            None if names.is_empty() => Ok(NetworkMode::None),
            None => Ok(NetworkMode::Networks(names)),
        }
    }
}

/// The shape `tether network create` accepts; anything else cannot name a conflist we wrote.
fn check_network_name(name: &str) -> Result<(), HookError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(HookError::InvalidNetworks {
            networks: name.to_string(),
            reason:
                "a network name is a letter or digit followed by letters, digits, `_`, `.` or `-`"
                    .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> NetworkMode {
        NetworkMode::Networks(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn comma_separated_and_repeated_lists_keep_their_order_without_duplicates() {
        assert_eq!(
            NetworkMode::parse(["front, back"]).unwrap(),
            names(&["front", "back"])
        );
        assert_eq!(
            NetworkMode::parse(["front", "back,front", "db"]).unwrap(),
            names(&["front", "back", "db"])
        );
    }

    #[test]
    fn nothing_or_none_is_loopback_only_and_host_is_host() {
        assert_eq!(NetworkMode::parse([]).unwrap(), NetworkMode::None);
        assert_eq!(NetworkMode::parse([" , "]).unwrap(), NetworkMode::None);
        assert_eq!(NetworkMode::parse(["none"]).unwrap(), NetworkMode::None);
        assert_eq!(NetworkMode::parse(["host"]).unwrap(), NetworkMode::Host);
    }

    #[test]
    fn host_or_none_mixed_with_networks_and_bad_names_are_refused() {
        for bad in [
            &["host", "front"][..],
            &["front,none"],
            &["../etc"],
            &["-x"],
            &["a b"],
        ] {
            assert!(
                matches!(
                    NetworkMode::parse(bad.iter().copied()),
                    Err(HookError::InvalidNetworks { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
