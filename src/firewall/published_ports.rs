//! Published ports (tether-portmap): DNAT through four maps in `inet tether`, shared by every
//! network (the plugin may be chained after the reference `bridge` plugin too).
//!
//! - `ports4_any` / `ports6_any`: `l4proto . dport -> addr . port`, for traffic to any local
//!   address (`fib daddr type local`);
//! - `ports4_bound` / `ports6_bound`: `daddr . l4proto . dport -> addr . port`, for
//!   mappings bound to one host address; looked up first.
//!
//! The chains jump to one `ports_dnat` chain from prerouting (traffic from elsewhere) and
//! output (traffic from the host itself). `ports_masq` holds the masquerade rules picked by
//! the options (localhost and hairpin for `snat`, everything for `masqAll`).
//!
//! Uniqueness is the kernel's job: each mapping is inserted with create semantics
//! (NLM_F_EXCL) in one batch, so a second container publishing the same key gets EEXIST and
//! nothing of its batch is applied. A mapping on any address and one bound to an address
//! overlap under different keys; that is checked after the insert (insert, then look at the
//! other map, then undo on overlap). Two racing callers therefore cannot both keep an
//! overlapping pair: the later look sees the earlier insert. At worst both are refused.

use std::collections::HashSet;

use super::error::FirewallError;
use super::netlink::replies;
use super::netlink::requests::{
    self, concat_bytes, ifname_bytes, ElementChange, ElementData, ElementOp, SetElement,
};
use super::port_mapping::{describe_target, PortEntry, PortMapping, PortmapOptions};
use super::render::{self, BaseChain, IpFamily, KeyType, MapValue, Rule, Statement};
use super::table::{self, Family};
use super::{kernel_error, Firewall};

impl Firewall {
    /// Makes sure the port maps and chains exist with these options: one netlink lookup
    /// when they do, one transaction otherwise.
    pub fn ensure_portmap(&self, opts: &PortmapOptions) -> Result<(), FirewallError> {
        let wanted = opts.fingerprint();
        let installed = self.inet_chain_comment(table::PORTS_MASQUERADE_CHAIN)?;
        if installed.as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        tracing::info!(
            snat = opts.snat,
            masq_all = opts.masq_all,
            reinstall = installed.is_some(),
            "installing published-port rules"
        );
        self.apply(
            &install(opts),
            Family::Inet,
            "published ports",
            "installing",
        )
    }

    /// Publishes all `maps` in one transaction, or none of them.
    pub fn add_ports(&self, maps: &[PortMapping]) -> Result<(), FirewallError> {
        let entries = entries_of(maps)?;
        if entries.is_empty() {
            return Ok(());
        }
        let changes: Vec<ElementChange> = entries
            .iter()
            .map(|entry| entry_change(entry, ElementOp::Create))
            .collect();
        if let Some((refused, code)) = self.send_batch(&changes)? {
            let index = changes
                .iter()
                .position(|c| std::ptr::eq(c, refused))
                .unwrap_or(0);
            return Err(match code {
                libc::EEXIST | libc::EBUSY => {
                    self.port_in_use(&maps[index], &entries[index], &entries[index].key)
                }
                libc::ENOENT => FirewallError::PortmapNotInstalled,
                _ => kernel_error(refused, code),
            });
        }
        for (mapping, entry) in maps.iter().zip(&entries) {
            if let Some(other) = self.overlapping_key(entry)? {
                tracing::info!(%mapping, "published port overlaps another mapping; undoing");
                let err = self.port_in_use(mapping, entry, &other);
                self.remove_entries(&entries)?;
                return Err(err);
            }
        }
        tracing::debug!(count = maps.len(), "published ports");
        Ok(())
    }

    /// Unpublishes `maps`. Mappings already gone, or now held by another container (an ADD
    /// of this one that was refused), are left alone.
    pub fn remove_ports(&self, maps: &[PortMapping]) -> Result<(), FirewallError> {
        let entries = maps
            .iter()
            .map(PortEntry::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.remove_entries(&entries)
    }

    /// Whether every mapping is published to its container (for CNI CHECK).
    pub fn ports_present(&self, maps: &[PortMapping]) -> Result<bool, FirewallError> {
        for mapping in maps {
            let entry = PortEntry::of(mapping)?;
            if self.current_value(&entry)?.as_ref() != Some(&entry.value) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hairpin masquerade for a bridge that is not a tether network (the reference `bridge`
    /// plugin with tether-portmap chained after it). tether networks are added by
    /// `ensure_network`. Needs `ensure_portmap` first.
    pub fn add_hairpin_interface(&self, bridge: &str) -> Result<(), FirewallError> {
        let change = hairpin_change(bridge, ElementOp::Add)?;
        match self.send_batch(std::slice::from_ref(&change))? {
            None => Ok(()),
            Some((_, libc::ENOENT)) => Err(FirewallError::PortmapNotInstalled),
            Some((refused, code)) => Err(kernel_error(refused, code)),
        }
    }

    pub fn remove_hairpin_interface(&self, bridge: &str) -> Result<(), FirewallError> {
        self.remove_elements(&[hairpin_change(bridge, ElementOp::Destroy)?])
    }

    /// The container a published port (on any host address or bound to one) goes to, as `(address,
    /// port)`: the routing mesh must not take a port a container publishes.
    pub fn published_port_target(
        &self,
        protocol: super::Protocol,
        host_port: u16,
    ) -> Result<Option<(std::net::IpAddr, u16)>, FirewallError> {
        let tail = concat_bytes(&[&[protocol.number()], &host_port.to_be_bytes()]);
        for map in [
            table::PORTS_ANY_V4_MAP,
            table::PORTS_ANY_V6_MAP,
            table::PORTS_BOUND_V4_MAP,
            table::PORTS_BOUND_V6_MAP,
        ] {
            // Keys are `proto . port` or `addr . proto . port`.
            let found = self
                .dump_set(Family::Inet, map)?
                .into_iter()
                .find(|e| e.key.ends_with(&tail));
            if let Some(value) = found.and_then(|e| e.value) {
                return Ok(decode_target(&value));
            }
        }
        Ok(None)
    }

    /// Deletes the entries whose current target is ours, in one batch.
    fn remove_entries(&self, entries: &[PortEntry]) -> Result<(), FirewallError> {
        let mut ours = Vec::new();
        for entry in entries {
            if self.current_value(entry)?.as_ref() == Some(&entry.value) {
                ours.push(entry_change(entry, ElementOp::Destroy));
            }
        }
        self.remove_elements(&ours)
    }

    /// The DNAT target now stored under the entry's key.
    fn current_value(&self, entry: &PortEntry) -> Result<Option<Vec<u8>>, FirewallError> {
        Ok(self
            .lookup_elements(Family::Inet, entry.map, std::slice::from_ref(&entry.key))?
            .and_then(|found| found.into_iter().find(|e| e.key == entry.key))
            .and_then(|e| e.value))
    }

    /// A key in the other map that publishes the same protocol and port.
    fn overlapping_key(&self, entry: &PortEntry) -> Result<Option<Vec<u8>>, FirewallError> {
        if entry.bound {
            let key = entry.proto_port.clone();
            let found = self.lookup_elements(
                Family::Inet,
                entry.overlapping_map,
                std::slice::from_ref(&key),
            )?;
            return Ok(found.map(|_| key));
        }
        // Bound mappings are few (mostly 127.0.0.1): listing them is cheap.
        Ok(self
            .dump_set(Family::Inet, entry.overlapping_map)?
            .into_iter()
            .map(|e| e.key)
            .find(|key| entry.overlaps_key(key)))
    }

    fn port_in_use(
        &self,
        mapping: &PortMapping,
        entry: &PortEntry,
        held_key: &[u8],
    ) -> FirewallError {
        let map = if held_key == entry.key.as_slice() {
            entry.map
        } else {
            entry.overlapping_map
        };
        let existing = self
            .lookup_elements(Family::Inet, map, &[held_key.to_vec()])
            .ok()
            .flatten()
            .and_then(|found| found.into_iter().next())
            .and_then(|e| e.value)
            .map(|value| {
                let how = if map == entry.map {
                    ""
                } else if entry.bound {
                    " on all host addresses"
                } else {
                    " on a specific host address"
                };
                format!("{how} to {}", describe_target(&value))
            })
            .unwrap_or_default();
        FirewallError::PortInUse {
            host: mapping.host_side(),
            existing,
        }
    }

    /// The comment of a chain of `inet tether`: None when the chain is absent.
    fn inet_chain_comment(&self, chain: &str) -> Result<Option<String>, FirewallError> {
        let socket = self.socket();
        let seq = socket.reserve_seqs(1);
        let answer = socket
            .request(&requests::get_chain(chain, seq), seq)
            .map_err(|source| FirewallError::SocketIo {
                op: "looking up a chain",
                source,
            })?;
        match answer {
            Ok(payloads) => Ok(Some(
                payloads
                    .first()
                    .and_then(|p| replies::chain(p).comment)
                    .unwrap_or_default(),
            )),
            Err(libc::ENOENT) => Ok(None),
            Err(code) => Err(FirewallError::Kernel {
                op: "looking up chain",
                set: chain.to_string(),
                source: std::io::Error::from_raw_os_error(code),
                hint: "",
            }),
        }
    }
}

/// Entries for `maps`, refusing a request that publishes one key twice.
fn entries_of(maps: &[PortMapping]) -> Result<Vec<PortEntry>, FirewallError> {
    let mut seen = HashSet::new();
    let mut entries = Vec::with_capacity(maps.len());
    for mapping in maps {
        let entry = PortEntry::of(mapping)?;
        if !seen.insert((entry.map, entry.key.clone())) {
            return Err(FirewallError::InvalidPortMapping {
                mapping: mapping.to_string(),
                reason: "the same host port is published twice in one request",
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// One message per mapping, so that a refusal names the mapping it is about.
fn entry_change(entry: &PortEntry, op: ElementOp) -> ElementChange {
    ElementChange {
        counted: true,
        family: Family::Inet,
        op,
        set: entry.map.into(),
        elements: vec![SetElement {
            key: entry.key.clone(),
            data: matches!(op, ElementOp::Add | ElementOp::Create)
                .then(|| ElementData::Value(entry.value.clone())),
        }],
    }
}

/// `addr . port` as the port maps hold it.
fn decode_target(value: &[u8]) -> Option<(std::net::IpAddr, u16)> {
    let (addr, rest) = match value.len() {
        8 => (
            std::net::IpAddr::from(<[u8; 4]>::try_from(&value[..4]).ok()?),
            &value[4..],
        ),
        20 => (
            std::net::IpAddr::from(<[u8; 16]>::try_from(&value[..16]).ok()?),
            &value[16..],
        ),
        _ => return None,
    };
    Some((addr, u16::from_be_bytes([rest[0], rest[1]])))
}

fn hairpin_change(bridge: &str, op: ElementOp) -> Result<ElementChange, FirewallError> {
    if bridge.is_empty() || bridge.len() > 15 {
        return Err(FirewallError::InvalidInterfaceName {
            name: bridge.to_string(),
        });
    }
    let name = ifname_bytes(bridge);
    Ok(ElementChange {
        counted: false,
        family: Family::Inet,
        op,
        set: table::HAIRPIN_SET.into(),
        elements: vec![SetElement::key_only(concat_bytes(&[&name, &name]))],
    })
}

/// The sysctl that lets traffic to `127.0.0.1:hostPort` reach containers behind `bridge`:
/// without it the kernel drops packets with a loopback source routed out of a non-loopback
/// interface. The reference portmap sets it on the bridge too.
pub fn route_localnet_sysctl(bridge: &str) -> String {
    format!("net.ipv4.conf.{bridge}.route_localnet")
}

/// Maps, chains and rules for published ports, with the table's shared parts (so it works
/// on an empty table). Safe to apply again and from racing callers: every chain is flushed
/// and refilled, and the masquerade chain is made again so its comment (the options) is new.
pub(super) fn install(opts: &PortmapOptions) -> Vec<Statement> {
    let mut s = render::table_statements();
    s.extend(port_maps());
    s.extend(dnat_chains());
    s.extend(masquerade_chains(opts));
    s
}

fn rule(chain: &str, rule: Rule) -> Statement {
    Statement::AddRule {
        chain: chain.to_string(),
        rule,
    }
}

/// The four maps from a published (protocol, port) or (address, protocol, port) to its container.
fn port_maps() -> Vec<Statement> {
    let mut s = Vec::new();
    let data_map = |name: &str, key, value| Statement::AddMap {
        name: name.into(),
        key,
        value: MapValue::Data(value),
    };
    s.extend([
        data_map(
            table::PORTS_ANY_V4_MAP,
            KeyType::ProtoPort,
            KeyType::Ipv4Port,
        ),
        data_map(
            table::PORTS_ANY_V6_MAP,
            KeyType::ProtoPort,
            KeyType::Ipv6Port,
        ),
        data_map(
            table::PORTS_BOUND_V4_MAP,
            KeyType::Ipv4ProtoPort,
            KeyType::Ipv4Port,
        ),
        data_map(
            table::PORTS_BOUND_V6_MAP,
            KeyType::Ipv6ProtoPort,
            KeyType::Ipv6Port,
        ),
    ]);
    s
}

/// The DNAT chain and the two base chains (prerouting, output) that jump to it.
fn dnat_chains() -> Vec<Statement> {
    let mut s = Vec::new();
    let dnat = table::PORTS_DNAT_CHAIN.to_string();
    s.extend([
        Statement::AddChain {
            name: dnat.clone(),
            comment: None,
        },
        Statement::FlushChain(dnat.clone()),
        // Bound mappings first: 127.0.0.1:8080 wins over *:8080 (which add_ports refuses
        // anyway) and a bound address that is not local still works.
        rule(
            &dnat,
            Rule::DnatBoundAddress {
                family: IpFamily::V4,
                map: table::PORTS_BOUND_V4_MAP,
            },
        ),
        rule(
            &dnat,
            Rule::DnatAnyLocalAddress {
                family: IpFamily::V4,
                map: table::PORTS_ANY_V4_MAP,
            },
        ),
        rule(
            &dnat,
            Rule::DnatBoundAddress {
                family: IpFamily::V6,
                map: table::PORTS_BOUND_V6_MAP,
            },
        ),
        rule(
            &dnat,
            Rule::DnatAnyLocalAddress {
                family: IpFamily::V6,
                map: table::PORTS_ANY_V6_MAP,
            },
        ),
    ]);
    for (base, name) in [
        (BaseChain::PortsPrerouting, table::PORTS_PREROUTING_CHAIN),
        (BaseChain::PortsOutput, table::PORTS_OUTPUT_CHAIN),
    ] {
        s.extend([
            Statement::AddBaseChain(base),
            Statement::FlushChain(name.into()),
            rule(name, Rule::Jump(dnat.clone())),
        ]);
    }
    s
}

/// The masquerade chain, made again so its comment carries the options, and postrouting's jump to it.
fn masquerade_chains(opts: &PortmapOptions) -> Vec<Statement> {
    let mut s = Vec::new();
    let post = table::PORTS_POSTROUTING_CHAIN;
    let masq = table::PORTS_MASQUERADE_CHAIN.to_string();
    s.extend([
        Statement::AddBaseChain(BaseChain::PortsPostrouting),
        // Drops the jump so the masquerade chain can be deleted and made again.
        Statement::FlushChain(post.into()),
        Statement::AddChain {
            name: masq.clone(),
            comment: None,
        },
        Statement::FlushChain(masq.clone()),
        Statement::DeleteChain(masq.clone()),
        Statement::AddChain {
            name: masq.clone(),
            comment: Some(opts.fingerprint()),
        },
    ]);
    if opts.masq_all {
        s.push(rule(&masq, Rule::MasqueradePublished));
    } else if opts.snat {
        s.push(rule(&masq, Rule::MasqueradePublishedFromLoopback));
        s.push(rule(&masq, Rule::MasqueradeHairpin));
    }
    s.push(rule(post, Rule::Jump(masq)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(opts: &PortmapOptions) -> String {
        render::render(&install(opts), Family::Inet)
    }

    #[test]
    fn install_script_has_dnat_for_both_families_and_snat_rules() {
        let script = rendered(&PortmapOptions::default());
        let tail = "\
add map inet tether ports4_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet tether ports6_any { type inet_proto . inet_service : ipv6_addr . inet_service; }
add map inet tether ports4_bound { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet tether ports6_bound { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
add chain inet tether ports_dnat
flush chain inet tether ports_dnat
add rule inet tether ports_dnat dnat ip to ip daddr . meta l4proto . th dport map @ports4_bound
add rule inet tether ports_dnat fib daddr type local dnat ip to meta l4proto . th dport map @ports4_any
add rule inet tether ports_dnat dnat ip6 to ip6 daddr . meta l4proto . th dport map @ports6_bound
add rule inet tether ports_dnat fib daddr type local dnat ip6 to meta l4proto . th dport map @ports6_any
add chain inet tether ports_prerouting { type nat hook prerouting priority dstnat; policy accept; }
flush chain inet tether ports_prerouting
add rule inet tether ports_prerouting jump ports_dnat
add chain inet tether ports_output { type nat hook output priority -100; policy accept; }
flush chain inet tether ports_output
add rule inet tether ports_output jump ports_dnat
add chain inet tether ports_postrouting { type nat hook postrouting priority srcnat; policy accept; }
flush chain inet tether ports_postrouting
add chain inet tether ports_masq
flush chain inet tether ports_masq
delete chain inet tether ports_masq
add chain inet tether ports_masq { comment \"tether portmap snat=1 masqall=0\"; }
add rule inet tether ports_masq ct status dnat ip saddr 127.0.0.0/8 masquerade
add rule inet tether ports_masq meta mark & 0x2000 == 0x2000 masquerade
add rule inet tether ports_postrouting jump ports_masq
";
        assert!(script.starts_with("add table inet tether\n"), "{script}");
        assert!(script.ends_with(tail), "{script}");
    }

    #[test]
    fn masq_all_masquerades_every_published_flow() {
        let script = rendered(&PortmapOptions {
            snat: true,
            masq_all: true,
        });
        assert!(script.contains("add rule inet tether ports_masq ct status dnat masquerade\n"));
        assert!(!script.contains("127.0.0.0/8"));
        let none = rendered(&PortmapOptions {
            snat: false,
            masq_all: false,
        });
        assert!(!none.contains("masquerade\n"), "{none}");
    }

    #[test]
    fn creates_are_exclusive_and_carry_the_target() {
        let mapping = PortMapping {
            host_ip: None,
            host_port: 8080,
            container_ip: "10.0.0.2".parse().unwrap(),
            container_port: 80,
            protocol: super::super::Protocol::Tcp,
        };
        let entry = PortEntry::of(&mapping).unwrap();
        let create = entry_change(&entry, ElementOp::Create);
        assert_eq!(create.op, ElementOp::Create);
        assert_eq!(
            create.elements[0].data,
            Some(ElementData::Value(vec![10, 0, 0, 2, 0, 80, 0, 0]))
        );
        assert_eq!(
            entry_change(&entry, ElementOp::Destroy).elements[0].data,
            None
        );
    }

    #[test]
    fn one_request_cannot_publish_a_port_twice() {
        let mapping = PortMapping {
            host_ip: None,
            host_port: 8080,
            container_ip: "10.0.0.2".parse().unwrap(),
            container_port: 80,
            protocol: super::super::Protocol::Tcp,
        };
        let mut other = mapping;
        other.container_port = 81;
        assert!(entries_of(&[mapping, other]).is_err());
        other.protocol = super::super::Protocol::Udp;
        assert_eq!(entries_of(&[mapping, other]).unwrap().len(), 2);
    }
}
