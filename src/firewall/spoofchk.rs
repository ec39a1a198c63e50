//! macspoofchk (the reference bridge plugin's semantics): a frame entering the bridge from
//! a container's host-side veth must carry the container's own source MAC, or it is dropped.
//!
//! Frames crossing a bridge are seen only by the `bridge` (and `netdev`) families, so this
//! lives in a second table of ours, `bridge tether`, with one rule over two sets:
//! `iifname @spoofchk_ports iifname . ether saddr != @spoofchk_ok drop`. Watching a port
//! is then two element insertions in one netlink batch. ARP payloads are not checked (the
//! reference checks the Ethernet source only).

use super::error::FirewallError;
use super::netlink::requests::{concat_bytes, ifname_bytes, ElementChange, ElementOp, SetElement};
use super::render::{BaseChain, KeyType, Rule, Statement};
use super::table::{self, Family};
use super::Firewall;

impl Firewall {
    /// Lets only `mac` enter the bridge from port `host_ifname`. Installs table
    /// `bridge tether` on first use.
    pub fn add_spoofchk(&self, host_ifname: &str, mac: [u8; 6]) -> Result<(), FirewallError> {
        validate_port_name(host_ifname)?;
        let changes = spoofchk_changes(host_ifname, mac, ElementOp::Add);
        match self.send_batch(&changes)? {
            None => return Ok(()),
            Some((_, libc::ENOENT)) => {}
            Some((change, code)) => return Err(super::kernel_error(change, code)),
        }
        tracing::info!("installing table bridge tether for macspoofchk");
        self.apply(&install(), Family::Bridge, "macspoofchk", "installing")?;
        match self.send_batch(&changes)? {
            None => Ok(()),
            Some((change, code)) => Err(super::kernel_error(change, code)),
        }
    }

    /// Stops watching the port. Elements or a table already gone are fine.
    pub fn remove_spoofchk(&self, host_ifname: &str, mac: [u8; 6]) -> Result<(), FirewallError> {
        validate_port_name(host_ifname)?;
        self.remove_elements(&spoofchk_changes(host_ifname, mac, ElementOp::Destroy))
    }

    /// Whether the port is watched and `mac` is the one allowed through it (for CNI CHECK).
    pub fn spoofchk_present(&self, host_ifname: &str, mac: [u8; 6]) -> Result<bool, FirewallError> {
        validate_port_name(host_ifname)?;
        for change in spoofchk_changes(host_ifname, mac, ElementOp::Add) {
            if !self.elements_present(&change)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The allowed pair goes first so that a watched port never exists without its MAC.
fn spoofchk_changes(port: &str, mac: [u8; 6], op: ElementOp) -> Vec<ElementChange> {
    let name = ifname_bytes(port);
    vec![
        ElementChange {
            counted: false,
            family: Family::Bridge,
            op,
            set: table::SPOOFCHK_ALLOWED_SET.into(),
            elements: vec![SetElement::key_only(concat_bytes(&[&name, &mac]))],
        },
        ElementChange {
            counted: false,
            family: Family::Bridge,
            op,
            set: table::SPOOFCHK_PORTS_SET.into(),
            elements: vec![SetElement::key_only(name.to_vec())],
        },
    ]
}

/// Table `bridge tether`, its two sets and its one rule; safe to apply again and from
/// racing callers (the chain is flushed and refilled in the same transaction).
pub(super) fn install() -> Vec<Statement> {
    let chain = table::SPOOFCHK_CHAIN.to_string();
    vec![
        Statement::AddTable,
        Statement::AddSet {
            name: table::SPOOFCHK_PORTS_SET.into(),
            key: KeyType::Interface,
        },
        Statement::AddSet {
            name: table::SPOOFCHK_ALLOWED_SET.into(),
            key: KeyType::InterfaceMac,
        },
        Statement::AddBaseChain(BaseChain::BridgePrerouting),
        Statement::FlushChain(chain.clone()),
        Statement::AddRule {
            chain,
            rule: Rule::DropSpoofedSource {
                ports: table::SPOOFCHK_PORTS_SET,
                allowed: table::SPOOFCHK_ALLOWED_SET,
            },
        },
    ]
}

fn validate_port_name(name: &str) -> Result<(), FirewallError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', '\0']) {
        return Err(FirewallError::InvalidInterfaceName {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_script_is_one_rule_over_two_sets() {
        assert_eq!(
            crate::firewall::render::render(&install(), Family::Bridge),
            "\
add table bridge tether
add set bridge tether spoofchk_ports { type ifname; }
add set bridge tether spoofchk_ok { type ifname . ether_addr; }
add chain bridge tether prerouting { type filter hook prerouting priority filter; policy accept; }
flush chain bridge tether prerouting
add rule bridge tether prerouting iifname @spoofchk_ports iifname . ether saddr != @spoofchk_ok drop
"
        );
    }

    #[test]
    fn port_and_mac_keys_are_laid_out_like_nft() {
        let changes = spoofchk_changes("tv1", [2, 0, 0, 0, 0, 2], ElementOp::Add);
        // As `nft --debug=netlink` prints it: 16 bytes of name, then the MAC padded to 8.
        let mut pair = b"tv1".to_vec();
        pair.resize(16, 0);
        pair.extend([2, 0, 0, 0, 0, 2, 0, 0]);
        assert_eq!(changes[0].elements[0].key, pair);
        assert_eq!(changes[1].elements[0].key, pair[..16].to_vec());
        assert!(changes
            .iter()
            .all(|c| c.family == Family::Bridge && c.elements[0].data.is_none()));
    }

    #[test]
    fn bad_port_names_are_refused() {
        assert!(validate_port_name("").is_err());
        assert!(validate_port_name("a-very-long-veth-name").is_err());
        assert!(validate_port_name("tv0123456789abc").is_ok());
    }
}
