use super::error::FirewallError;
use super::network_id::NetworkId;
use super::NetworkRules;

/// nft limits comments to 128 bytes.
const COMMENT_MAX: usize = 128;
/// Linux interface names hold at most IFNAMSIZ - 1 bytes.
const IFNAME_MAX: usize = 15;

/// A network's firewall settings, checked once so that names are valid in chains, sets and comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub id: NetworkId,
    pub bridge: String,
    pub masquerade: bool,
    pub isolation: bool,
}

/// What the forward chain's comment tells about an installed network: enough to tear it
/// down by name alone and to notice when its settings changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledNetwork {
    pub bridge: String,
    pub masquerade: bool,
    /// Chains written before isolation existed carry no `iso=`: they did not isolate.
    pub isolation: bool,
    /// `nat=iif`: NAT is dispatched by the bridge (`nat_in`). Networks installed by earlier tethers lack it
    /// and are installed again on their next ADD.
    pub nat_by_bridge: bool,
    /// The network name, possibly cut short to fit the comment.
    pub name: String,
}

impl NetworkSpec {
    pub fn parse(rules: &NetworkRules) -> Result<NetworkSpec, FirewallError> {
        validate_network_name(&rules.name)?;
        validate_bridge_name(&rules.name, &rules.bridge)?;
        Ok(NetworkSpec {
            name: rules.name.clone(),
            id: NetworkId::of(&rules.name),
            bridge: rules.bridge.clone(),
            masquerade: rules.masquerade,
            isolation: rules.isolation,
        })
    }

    /// The fingerprint stored in the forward chain's comment. The name goes last so that a
    /// long one is cut rather than the fields teardown needs.
    pub fn comment(&self) -> String {
        let mut comment = format!(
            "tether bridge={} masq={} iso={} nat=iif net={}",
            self.bridge,
            u8::from(self.masquerade),
            u8::from(self.isolation),
            self.name
        );
        // Names are ASCII (checked in parse), so any byte index is a char boundary.
        comment.truncate(COMMENT_MAX);
        comment
    }

    /// Whether an installed network with this comment is the same network as `self`,
    /// as opposed to another network whose name hashes to the same id.
    /// Whether the installed rules already are what this spec asks for.
    pub fn same_settings_as(&self, installed: &InstalledNetwork) -> bool {
        installed.bridge == self.bridge
            && installed.masquerade == self.masquerade
            && installed.isolation == self.isolation
            && installed.nat_by_bridge
    }

    pub fn same_network_as(&self, installed: &InstalledNetwork) -> bool {
        self.name.starts_with(&installed.name)
            && (installed.name.len() == self.name.len() || self.comment().len() == COMMENT_MAX)
    }
}

impl InstalledNetwork {
    pub fn from_comment(comment: &str) -> Option<InstalledNetwork> {
        let rest = comment.strip_prefix("tether bridge=")?;
        let (bridge, rest) = rest.split_once(" masq=")?;
        let (flags, name) = rest.split_once(" net=")?;
        let flag = |text: &str| match text {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        // `masq=` first, then fields added since, each optional: an older comment lacks the later ones.
        let mut fields = flags.split(' ');
        let masquerade = flag(fields.next()?)?;
        let (mut isolation, mut nat_by_bridge) = (false, false);
        for field in fields {
            match field.split_once('=')? {
                ("iso", value) => isolation = flag(value)?,
                ("nat", "iif") => nat_by_bridge = true,
                _ => return None,
            }
        }
        Some(InstalledNetwork {
            bridge: bridge.to_string(),
            masquerade,
            isolation,
            nat_by_bridge,
            name: name.to_string(),
        })
    }
}

/// CNI spec: network names match `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_network_name(name: &str) -> Result<(), FirewallError> {
    let invalid = |reason| FirewallError::InvalidNetworkName {
        name: name.to_string(),
        reason,
    };
    let first = name.chars().next().ok_or_else(|| invalid("it is empty"))?;
    if !first.is_ascii_alphanumeric() {
        return Err(invalid("it must start with a letter or digit"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(invalid(
            "only letters, digits, '_', '.' and '-' are allowed",
        ));
    }
    Ok(())
}

fn validate_bridge_name(network: &str, bridge: &str) -> Result<(), FirewallError> {
    let invalid = |reason| FirewallError::InvalidBridgeName {
        network: network.to_string(),
        bridge: bridge.to_string(),
        reason,
    };
    if bridge.is_empty() || bridge.len() > IFNAME_MAX {
        return Err(invalid("it must be 1 to 15 bytes long"));
    }
    if bridge == "." || bridge == ".." {
        return Err(invalid("'.' and '..' are reserved"));
    }
    // The kernel forbids '/' and whitespace; quotes and backslashes would break nft quoting.
    if !bridge
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '"' | '\\'))
    {
        return Err(invalid(
            "it may hold only printable ASCII without '/', '\"' or '\\'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(name: &str, bridge: &str, masquerade: bool) -> NetworkRules {
        NetworkRules {
            name: name.into(),
            bridge: bridge.into(),
            masquerade,
            isolation: true,
        }
    }

    #[test]
    fn comment_round_trips() {
        let spec = NetworkSpec::parse(&rules("web.prod-1", "tether0", true)).unwrap();
        assert_eq!(
            spec.comment(),
            "tether bridge=tether0 masq=1 iso=1 nat=iif net=web.prod-1"
        );
        let installed = InstalledNetwork::from_comment(&spec.comment()).unwrap();
        assert_eq!(installed.bridge, "tether0");
        assert!(installed.masquerade);
        assert!(installed.isolation);
        assert!(spec.same_network_as(&installed));
        assert!(spec.same_settings_as(&installed));
    }

    #[test]
    fn comment_without_isolation_field_is_read_as_not_isolated() {
        let spec = NetworkSpec::parse(&rules("old", "br0", true)).unwrap();
        let installed = InstalledNetwork::from_comment("tether bridge=br0 masq=1 net=old").unwrap();
        assert!(!installed.isolation);
        assert!(spec.same_network_as(&installed));
        assert!(!spec.same_settings_as(&installed));
    }

    #[test]
    fn a_network_installed_before_nat_by_bridge_is_installed_again() {
        let spec = NetworkSpec::parse(&rules("old", "br0", true)).unwrap();
        let installed =
            InstalledNetwork::from_comment("tether bridge=br0 masq=1 iso=1 net=old").unwrap();
        assert!(installed.isolation && !installed.nat_by_bridge);
        assert!(spec.same_network_as(&installed));
        assert!(!spec.same_settings_as(&installed));
    }

    #[test]
    fn long_name_is_cut_but_still_recognised() {
        let name = "a".repeat(200);
        let spec = NetworkSpec::parse(&rules(&name, "br0", false)).unwrap();
        assert_eq!(spec.comment().len(), 128);
        let installed = InstalledNetwork::from_comment(&spec.comment()).unwrap();
        assert!(spec.same_network_as(&installed));
    }

    #[test]
    fn other_network_with_same_id_is_told_apart() {
        let spec = NetworkSpec::parse(&rules("alpha", "br0", false)).unwrap();
        let other = InstalledNetwork::from_comment("tether bridge=br0 masq=0 net=beta").unwrap();
        assert!(!spec.same_network_as(&other));
        let prefix = InstalledNetwork::from_comment("tether bridge=br0 masq=0 net=alph").unwrap();
        assert!(!spec.same_network_as(&prefix));
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(NetworkSpec::parse(&rules("", "br0", false)).is_err());
        assert!(NetworkSpec::parse(&rules("-x", "br0", false)).is_err());
        assert!(NetworkSpec::parse(&rules("a b", "br0", false)).is_err());
        assert!(NetworkSpec::parse(&rules("ok", "", false)).is_err());
        assert!(NetworkSpec::parse(&rules("ok", "a-very-long-bridge", false)).is_err());
        assert!(NetworkSpec::parse(&rules("ok", "br\"0", false)).is_err());
        assert!(NetworkSpec::parse(&rules("ok", "br/0", false)).is_err());
    }

    #[test]
    fn foreign_comment_is_not_ours() {
        assert!(InstalledNetwork::from_comment("something else").is_none());
        assert!(InstalledNetwork::from_comment("tether bridge=b masq=2 net=x").is_none());
    }
}
