//! Which driver made an attachment: the `driver` of every record, and what `network create -d` names.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Bridge,
    Macvlan,
    Overlay,
    /// Another host's overlay container, recorded by tetherd's control plane so the resolver answers its
    /// names; never made on this host, never created by a user.
    #[serde(rename = "overlay-remote")]
    RemoteOverlay,
}

impl DriverKind {
    /// The drivers a network can be created with.
    pub const LOCAL: [DriverKind; 3] =
        [DriverKind::Bridge, DriverKind::Macvlan, DriverKind::Overlay];

    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Bridge => "bridge",
            DriverKind::Macvlan => "macvlan",
            DriverKind::Overlay => "overlay",
            DriverKind::RemoteOverlay => "overlay-remote",
        }
    }

    /// The plugin that does the driver's work (the conflist's first plugin); for a remote container, the
    /// plugin that made it on its own host.
    pub fn plugin(self) -> &'static str {
        match self {
            DriverKind::Bridge => "tether-bridge",
            DriverKind::Macvlan => "tether-macvlan",
            DriverKind::Overlay | DriverKind::RemoteOverlay => "tether-overlay",
        }
    }

    /// The driver behind a plugin type, for `network ls`.
    pub fn of_plugin(plugin: &str) -> Option<DriverKind> {
        DriverKind::LOCAL.into_iter().find(|d| d.plugin() == plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spell_drivers_as_their_names() {
        for kind in [DriverKind::LOCAL.as_slice(), &[DriverKind::RemoteOverlay]].concat() {
            let text = serde_json::to_string(&kind).unwrap();
            assert_eq!(text, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<DriverKind>(&text).unwrap(), kind);
        }
        assert!(serde_json::from_str::<DriverKind>("\"ipvlan\"").is_err());
    }
}
