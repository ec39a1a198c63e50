//! tether-macvlan's fields: the reference `macvlan` plugin's (`master`, `mode`, `mtu`, `linkInContainer`), so
//! `"type": "macvlan"` can become `"tether-macvlan"` unchanged, plus tether's `vlan` and `sourceMacs`.

use serde::Deserialize;

use crate::cni::plugin::Call;
use crate::error::Error;
use crate::ifname::ifname_problem;
use crate::link::{MacAddr, MacvlanMode, VLAN_ID_RANGE};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMacvlanConfig {
    master: Option<String>,
    mode: Option<String>,
    mtu: Option<u32>,
    #[serde(default)]
    link_in_container: bool,
    vlan: Option<u16>,
    #[serde(default)]
    source_macs: Vec<String>,
}

/// Where the parent comes from, before any link is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterSpec {
    /// `master` as written; `None` means the interface of the default route.
    pub name: Option<String>,
    /// `vlan`: the parent is the 802.1Q sub-interface `<master>.<vlan>`, made by tether when missing.
    pub vlan: Option<u16>,
}

/// Validated macvlan settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MacvlanConfig {
    pub master: MasterSpec,
    pub mode: MacvlanMode,
    /// `None`: the parent's MTU.
    pub mtu: Option<u32>,
    /// The parent lives in the container's namespace (an SR-IOV VF moved there, say), not on the host.
    pub link_in_container: bool,
    /// Source mode: the MACs whose frames the child receives.
    pub source_macs: Vec<MacAddr>,
}

fn invalid(msg: String) -> Error {
    Error::config(msg)
}

impl MacvlanConfig {
    pub fn from_call(call: &Call) -> Result<Self, Error> {
        Self::from_raw(call.conf.plugin_fields()?)
    }

    #[cfg(test)]
    fn from_json(value: serde_json::Value) -> Result<Self, Error> {
        let raw = serde_json::from_value(value)
            .map_err(|e| invalid(format!("invalid tether-macvlan config: {e}")))?;
        Self::from_raw(raw)
    }

    fn from_raw(r: RawMacvlanConfig) -> Result<Self, Error> {
        let mode = match r.mode.as_deref() {
            None | Some("") => MacvlanMode::default(),
            Some(text) => text.parse().map_err(|e| invalid(format!("{e}")))?,
        };
        if let Some(master) = &r.master {
            if let Some(why) = ifname_problem(master) {
                return Err(invalid(format!(
                    "master {master:?} is not a valid interface name: {why}"
                )));
            }
        }
        if let Some(mtu) = r.mtu {
            crate::link::check_mtu(mtu)
                .map_err(|e| invalid(format!("{e} (at most the parent's)")))?;
        }
        if let Some(id) = r.vlan {
            if !VLAN_ID_RANGE.contains(&id) {
                return Err(invalid(format!(
                    "vlan {id} is out of range; 802.1Q VLAN ids run from 1 to 4094"
                )));
            }
            if r.link_in_container {
                return Err(Error::unsupported(
                    "`vlan` together with `linkInContainer` is not supported; create the VLAN \
                     sub-interface in the container yourself and name it in `master`",
                ));
            }
        }
        let source_macs = r
            .source_macs
            .iter()
            .map(|t| {
                t.parse::<MacAddr>().map_err(|_| {
                    invalid(format!(
                        "sourceMacs entry {t:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !source_macs.is_empty() && mode != MacvlanMode::Source {
            return Err(invalid(format!(
                "sourceMacs needs \"mode\": \"source\" (mode is {mode})"
            )));
        }
        Ok(Self {
            master: MasterSpec {
                name: r.master,
                vlan: r.vlan,
            },
            mode,
            mtu: r.mtu,
            link_in_container: r.link_in_container,
            source_macs,
        })
    }
}

/// `eth0.10` -> `("eth0", 10)`: the Docker/iproute2 naming of an 802.1Q sub-interface.
pub fn split_vlan_name(name: &str) -> Option<(&str, u16)> {
    let (lower, id) = name.rsplit_once('.')?;
    if lower.is_empty() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u16 = id.parse().ok()?;
    VLAN_ID_RANGE.contains(&id).then_some((lower, id))
}

/// The name tether gives the VLAN `id` sub-interface of `lower`, or why it cannot.
pub fn vlan_link_name(lower: &str, id: u16) -> Result<String, Error> {
    let name = format!("{lower}.{id}");
    match ifname_problem(&name) {
        None => Ok(name),
        Some(why) => Err(invalid(format!(
            "VLAN sub-interface name {name:?} is not a valid interface name ({why}); create the \
             sub-interface yourself under a shorter name and set `master` to it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_reference_plugin() {
        let c = MacvlanConfig::from_json(json!({"name": "n", "type": "tether-macvlan"})).unwrap();
        assert_eq!(c.mode, MacvlanMode::Bridge);
        assert_eq!(
            c.master,
            MasterSpec {
                name: None,
                vlan: None
            }
        );
        assert!(c.mtu.is_none() && !c.link_in_container && c.source_macs.is_empty());
    }

    #[test]
    fn reference_fields_are_read() {
        let c = MacvlanConfig::from_json(json!({
            "master": "eth1", "mode": "passthru", "mtu": 1400, "linkInContainer": true
        }))
        .unwrap();
        assert_eq!(c.master.name.as_deref(), Some("eth1"));
        assert_eq!(c.mode, MacvlanMode::Passthru);
        assert_eq!(c.mtu, Some(1400));
        assert!(c.link_in_container);
    }

    #[test]
    fn bad_values_are_config_errors_naming_the_field() {
        for bad in [
            json!({"mode": "passthrough"}),
            json!({"master": "a-very-long-interface"}),
            json!({"mtu": 20}),
            json!({"vlan": 4095}),
            json!({"vlan": 0}),
            json!({"sourceMacs": ["zz"], "mode": "source"}),
            json!({"sourceMacs": ["02:00:00:00:00:01"]}),
            json!({"linkInContainer": "yes"}),
        ] {
            let e = MacvlanConfig::from_json(bad.clone()).unwrap_err();
            assert_eq!(e.code(), 7, "{bad}: {e:?}");
        }
        let e = MacvlanConfig::from_json(json!({"vlan": 10, "linkInContainer": true})).unwrap_err();
        assert_eq!(e.code(), 2);
    }

    #[test]
    fn source_mode_takes_a_mac_list() {
        let c = MacvlanConfig::from_json(
            json!({"mode": "source", "sourceMacs": ["02:00:00:00:00:01"]}),
        )
        .unwrap();
        assert_eq!(c.source_macs.len(), 1);
    }

    #[test]
    fn dotted_names_split_into_parent_and_vlan() {
        assert_eq!(split_vlan_name("eth0.10"), Some(("eth0", 10)));
        assert_eq!(split_vlan_name("bond0.4094"), Some(("bond0", 4094)));
        assert_eq!(split_vlan_name("a.b.7"), Some(("a.b", 7)));
        for not_vlan in [
            "eth0",
            "eth0.",
            ".10",
            "eth0.0",
            "eth0.4095",
            "eth0.x1",
            "eth0.+1",
        ] {
            assert_eq!(split_vlan_name(not_vlan), None, "{not_vlan}");
        }
    }

    #[test]
    fn the_example_conflist_is_a_valid_network() {
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../../conf/tether-macvlan.conflist")).unwrap();
        let plugin = list["plugins"][0].clone();
        assert_eq!(plugin["type"], "tether-macvlan");
        let c = MacvlanConfig::from_json(plugin).unwrap();
        assert_eq!(c.master.name.as_deref(), Some("eth0"));
        assert_eq!(c.mode, MacvlanMode::Bridge);
    }

    #[test]
    fn sub_interface_names_must_fit_the_kernel_limit() {
        assert_eq!(vlan_link_name("eth0", 10).unwrap(), "eth0.10");
        assert_eq!(vlan_link_name("enp0s31f6abc", 4094).unwrap_err().code(), 7);
    }
}
