//! The return path of `--preserve-client-ip` across hosts, kept by tetherd on every host: a connection
//! another mesh host forwarded here keeps the outside client's address, so its replies must go back
//! through that host (whose conntrack un-NATs them), not straight to the client, who would reset them.
//!
//! Per mesh host H (every host named by a record of another host's container): H's MAC, from the
//! neighbour table, goes in the mesh table's `peers` map with `peer_mark(H)`, which marks the
//! connections H forwards here (`firewall::mesh_ports`); and a policy route sends replies so marked to
//! H: `ip rule fwmark M lookup M`, `default via H` in table M. All of it lives in this host's namespace:
//! a host that joins is one more element, rule and route here, and no container is touched.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use crate::firewall::mesh_ports::peer_mark;
use crate::link::{MarkRule, Netlink};

/// The priority of tether's fwmark rules: before the main table's (32766).
pub const RULE_PREF: u32 = 0x7e7e;
/// The discard service: a datagram to it makes the kernel resolve the host's MAC, and nothing else.
const DISCARD_PORT: u16 = 9;
/// How often the rules and routes are set again (one deleted by hand comes back).
const RESET_EVERY: Duration = Duration::from_secs(10);

/// The policy routes in place, per host its mark.
#[derive(Default)]
pub struct MeshReturn {
    routes: BTreeMap<Ipv4Addr, u32>,
    /// Whether rules a former tetherd left at [`RULE_PREF`] were looked for.
    swept: bool,
    /// When the rules and routes were last set.
    set_at: Option<Instant>,
}

impl MeshReturn {
    /// Puts the policy routes of `hosts` in place (and takes the others away), and returns the `peers`
    /// map's elements: each host's MAC and mark. A host whose MAC is not known yet is sent a datagram
    /// so the kernel resolves it, and is left out until a later call.
    pub fn sync(&mut self, hosts: &[Ipv4Addr]) -> HashMap<[u8; 6], u32> {
        let wanted = marks(hosts);
        let due = self.set_at.is_none_or(|t| t.elapsed() >= RESET_EVERY);
        if wanted != self.routes || !self.swept || (due && !wanted.is_empty()) {
            self.route(&wanted);
        }
        let known = neighbours(&std::fs::read_to_string("/proc/net/arp").unwrap_or_default());
        let mut peers = HashMap::new();
        for (host, mark) in &self.routes {
            match known.get(host) {
                Some(mac) => {
                    peers.insert(*mac, *mark);
                }
                None => ask_for_mac(*host),
            }
        }
        peers
    }

    /// Whether some host's routes are in place (its MAC may still be due).
    pub fn has_hosts(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Rules and routes to match `wanted`, on a thread of its own: the netlink facade blocks, and this
    /// runs on tetherd's runtime thread (a new thread starts in this thread's namespace, the host's).
    fn route(&mut self, wanted: &BTreeMap<Ipv4Addr, u32>) {
        let installed = self.routes.clone();
        let sweep = !self.swept;
        let job = {
            let wanted = wanted.clone();
            move || -> Result<(), String> {
                let nl = Netlink::new().map_err(|e| e.to_string())?;
                let mut stale: Vec<MarkRule> = installed
                    .iter()
                    .filter(|(h, m)| wanted.get(h) != Some(m))
                    .map(|(_, &m)| MarkRule { mark: m, table: m })
                    .collect();
                if sweep {
                    let left = nl.mark_rules(RULE_PREF).map_err(|e| e.to_string())?;
                    stale.extend(
                        left.into_iter()
                            .filter(|r| !wanted.values().any(|&m| m == r.mark)),
                    );
                }
                for rule in stale {
                    nl.del_mark_rule(rule, RULE_PREF)
                        .map_err(|e| e.to_string())?;
                    nl.del_table_default(rule.table)
                        .map_err(|e| e.to_string())?;
                }
                for (&host, &mark) in &wanted {
                    nl.set_table_default(mark, host)
                        .map_err(|e| e.to_string())?;
                    let rule = MarkRule { mark, table: mark };
                    match nl.add_mark_rule(rule, RULE_PREF) {
                        Ok(()) | Err(crate::link::LinkError::Exists { .. }) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(())
            }
        };
        match std::thread::spawn(job).join() {
            Ok(Ok(())) => {
                self.routes = wanted.clone();
                self.swept = true;
                self.set_at = Some(Instant::now());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "mesh return routes not set; trying again"),
            Err(_) => tracing::warn!("mesh return routes: the routing thread panicked"),
        }
    }
}

/// Each host's mark; of two hosts with one mark (addresses equal in their low 16 bits) the lower keeps it.
fn marks(hosts: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, u32> {
    let mut sorted = hosts.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut out = BTreeMap::new();
    for host in sorted {
        let mark = peer_mark(host);
        if out.values().any(|&m| m == mark) {
            tracing::warn!(%host, "mesh host shares its mark with another (same low 16 address bits); its forwarded connections keep no return route");
            continue;
        }
        out.insert(host, mark);
    }
    out
}

/// `/proc/net/arp`: `IP address  HW type  Flags  HW address  Mask  Device`, complete entries (flag 0x2).
fn neighbours(text: &str) -> HashMap<Ipv4Addr, [u8; 6]> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ip: Ipv4Addr = f.first()?.parse().ok()?;
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac: crate::mac::MacAddr = f.get(3)?.parse().ok()?;
            (flags & 0x2 != 0 && mac.octets() != [0; 6]).then_some((ip, mac.octets()))
        })
        .collect()
}

fn ask_for_mac(host: Ipv4Addr) {
    let sent = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.send_to(&[], (host, DISCARD_PORT)));
    if let Err(e) = sent {
        tracing::debug!(%host, error = %e, "asking for a mesh host's MAC");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_arp_entries_only() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device
192.168.77.2     0x1         0x2         02:aa:bb:cc:dd:02     *        ul0
192.168.77.3     0x1         0x0         00:00:00:00:00:00     *        ul0
";
        let n = neighbours(text);
        assert_eq!(n.len(), 1);
        assert_eq!(
            n[&Ipv4Addr::new(192, 168, 77, 2)],
            [2, 0xaa, 0xbb, 0xcc, 0xdd, 2]
        );
    }

    #[test]
    fn hosts_sharing_a_mark_keep_the_first() {
        let a = Ipv4Addr::new(10, 1, 77, 2);
        let b = Ipv4Addr::new(10, 2, 77, 2);
        let c = Ipv4Addr::new(10, 1, 77, 3);
        let m = marks(&[b, c, a, a]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&a], 0x4d02_0e7e);
        assert!(!m.contains_key(&b));
        assert_ne!(m[&a], m[&c]);
    }
}
