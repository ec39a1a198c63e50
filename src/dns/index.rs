//! The names tetherd answers, built from the attachment records: per network, the container's name, its
//! aliases, and both as `NAME.NETWORK`, each mapped to the container's addresses; and per network the
//! reverse map for PTR. Rebuilt whole on every record change (cheap: 1000 records take about a
//! millisecond) and swapped in, so queries never see a half-built index.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::state::AttachmentRecord;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Addresses {
    fn add(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) if !self.v4.contains(&a) => self.v4.push(a),
            IpAddr::V6(a) if !self.v6.contains(&a) => self.v6.push(a),
            _ => {}
        }
    }

    fn extend(&mut self, other: &Addresses) {
        for a in &other.v4 {
            self.add(IpAddr::V4(*a));
        }
        for a in &other.v6 {
            self.add(IpAddr::V6(*a));
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct NetworkNames {
    by_name: HashMap<String, Addresses>,
    /// An address's name for PTR: the container's name (else its first alias), as `NAME.NETWORK`.
    by_addr: HashMap<IpAddr, String>,
}

/// Equality is what a lookup can tell apart: an index refreshed change by change equals a full build of
/// the same records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NameIndex {
    networks: HashMap<String, NetworkNames>,
}

/// What a lookup in the networks of one container found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Addresses),
    /// Not a local name; `owned_suffix` when it ends in `.NETWORK` of a network in scope (so it cannot
    /// exist anywhere else: answer NXDOMAIN instead of forwarding).
    Missing {
        owned_suffix: bool,
    },
}

/// A name as the index keeps it: lower case, no trailing dot; `None` when it can never be queried.
fn normalize(name: &str) -> Option<String> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && n.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(n)
}

impl NameIndex {
    pub fn build<'a>(records: impl IntoIterator<Item = &'a AttachmentRecord>) -> NameIndex {
        let mut index = NameIndex::default();
        for rec in records.into_iter().filter(|r| r.dns) {
            let Some(network) = normalize(&rec.network) else {
                continue;
            };
            let names: Vec<String> = rec
                .name
                .iter()
                .chain(rec.aliases.iter())
                .filter_map(|n| normalize(n))
                .collect();
            let net = index.networks.entry(network.clone()).or_default();
            let mut addrs = Addresses::default();
            for ip in &rec.ips {
                addrs.add(ip.ip());
            }
            for name in &names {
                for key in [name.clone(), format!("{name}.{network}")] {
                    net.by_name.entry(key).or_default().extend(&addrs);
                }
            }
            if let Some(primary) = names.first() {
                for ip in &rec.ips {
                    net.by_addr
                        .entry(ip.ip())
                        .or_insert_with(|| format!("{primary}.{network}"));
                }
            }
        }
        // As `refresh` leaves it: a network with nothing to answer is not kept.
        index
            .networks
            .retain(|_, n| !n.by_name.is_empty() || !n.by_addr.is_empty());
        index
    }

    /// Recomputes, from `records`, the entries of `keys` (normalized names, `NAME.NETWORK` forms included)
    /// and the reverse entries of `ips` in `network` (normalized): what one record's change can touch.
    /// Scans the records without allocating, so a change costs the same whatever their number.
    pub fn refresh(
        &mut self,
        records: &[AttachmentRecord],
        network: &str,
        keys: &[String],
        ips: &[IpAddr],
    ) {
        let in_network = |r: &&AttachmentRecord| {
            r.dns
                && r.network
                    .trim()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(network)
        };
        let net = self.networks.entry(network.to_string()).or_default();
        for key in keys {
            // A name held by a record with no address still exists (a full build keeps it, answering
            // NODATA): whether any record holds it decides, not whether it has addresses.
            let mut held = false;
            let mut addrs = Addresses::default();
            for r in records.iter().filter(in_network) {
                let names = r.name.iter().chain(r.aliases.iter());
                if names.into_iter().any(|n| answers_to(n, key, network)) {
                    held = true;
                    for ip in &r.ips {
                        addrs.add(ip.ip());
                    }
                }
            }
            if held {
                net.by_name.insert(key.clone(), addrs);
            } else {
                net.by_name.remove(key);
            }
        }
        for ip in ips {
            let owner = records
                .iter()
                .filter(in_network)
                .filter(|r| r.ips.iter().any(|n| n.ip() == *ip))
                .find_map(|r| {
                    r.name
                        .iter()
                        .chain(r.aliases.iter())
                        .find_map(|n| normalize(n))
                });
            match owner {
                Some(primary) => {
                    net.by_addr.insert(*ip, format!("{primary}.{network}"));
                }
                None => {
                    net.by_addr.remove(ip);
                }
            }
        }
        if net.by_name.is_empty() && net.by_addr.is_empty() {
            self.networks.remove(network);
        }
    }

    /// Looks `name` (normalized) up in the given networks only; addresses of every match, merged.
    pub fn lookup(&self, name: &str, networks: &[String]) -> Lookup {
        let mut found: Option<Addresses> = None;
        for net in networks {
            if let Some(addrs) = self.networks.get(net).and_then(|n| n.by_name.get(name)) {
                match &mut found {
                    None => found = Some(addrs.clone()),
                    Some(all) => all.extend(addrs),
                }
            }
        }
        match found {
            Some(addrs) => Lookup::Found(addrs),
            None => Lookup::Missing {
                owned_suffix: networks.iter().any(|net| {
                    name.len() > net.len() + 1
                        && name.ends_with(net.as_str())
                        && name.as_bytes()[name.len() - net.len() - 1] == b'.'
                }),
            },
        }
    }

    /// The name of `ip` in the given networks.
    pub fn reverse(&self, ip: IpAddr, networks: &[String]) -> Option<&str> {
        networks
            .iter()
            .filter_map(|net| self.networks.get(net))
            .find_map(|n| n.by_addr.get(&ip))
            .map(String::as_str)
    }

    pub fn network_count(&self) -> usize {
        self.networks.len()
    }

    pub fn name_count(&self) -> usize {
        self.networks.values().map(|n| n.by_name.len()).sum()
    }
}

/// The index keys a record adds to its (normalized) network: each valid name as is and as `NAME.NETWORK`.
pub fn keys_of(rec: &AttachmentRecord, network: &str) -> Vec<String> {
    rec.name
        .iter()
        .chain(rec.aliases.iter())
        .filter_map(|n| normalize(n))
        .flat_map(|n| {
            let long = format!("{n}.{network}");
            [n, long]
        })
        .collect()
}

/// Whether a record name `name` answers to index `key` in `network`, without allocating.
fn answers_to(name: &str, key: &str, network: &str) -> bool {
    let n = name.trim().trim_end_matches('.');
    if n.is_empty() {
        return false;
    }
    if n.eq_ignore_ascii_case(key) {
        return true;
    }
    // `key` is normalized ASCII, so any byte offset is a character boundary.
    key.len() == n.len() + 1 + network.len()
        && key.as_bytes()[..n.len()].eq_ignore_ascii_case(n.as_bytes())
        && key.as_bytes()[n.len()] == b'.'
        && &key[n.len() + 1..] == network
}

/// The network names as the index keys them, for building a scope.
pub fn network_key(network: &str) -> Option<String> {
    normalize(network)
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`) stands for.
pub fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        for (i, p) in parts.iter().rev().enumerate() {
            octets[i] = p.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 {
            return None;
        }
        let mut value: u128 = 0;
        for n in nibbles.iter().rev() {
            if n.len() != 1 {
                return None;
            }
            value = (value << 4) | u128::from_str_radix(n, 16).ok()?;
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(net: &str, cid: &str, name: &str, aliases: &[&str], ips: &[&str]) -> AttachmentRecord {
        serde_json::from_value(serde_json::json!({
            "network": net, "containerId": cid, "ifname": "eth0", "driver": "bridge",
            "ips": ips, "name": name, "aliases": aliases, "dns": true,
        }))
        .unwrap()
    }

    fn nets(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_aliases_and_network_forms_resolve_in_scope_only() {
        let records = [
            rec("net1", "a", "Web", &["www"], &["10.0.0.2/24", "fd00::2/64"]),
            rec("net1", "b", "db", &["www"], &["10.0.0.3/24"]),
            rec("net2", "c", "other", &[], &["10.1.0.2/24"]),
        ];
        let idx = NameIndex::build(&records);
        let n1 = nets(&["net1"]);
        let Lookup::Found(web) = idx.lookup("web", &n1) else {
            panic!()
        };
        assert_eq!(web.v4, vec![Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(web.v6.len(), 1);
        assert!(matches!(idx.lookup("web.net1", &n1), Lookup::Found(_)));
        let Lookup::Found(www) = idx.lookup("www", &n1) else {
            panic!()
        };
        assert_eq!(www.v4.len(), 2, "a shared alias answers every holder");
        assert_eq!(
            idx.lookup("other", &n1),
            Lookup::Missing {
                owned_suffix: false
            }
        );
        assert_eq!(
            idx.lookup("nope.net1", &n1),
            Lookup::Missing { owned_suffix: true }
        );
        assert!(matches!(
            idx.lookup("other", &nets(&["net1", "net2"])),
            Lookup::Found(_)
        ));
        assert_eq!(
            idx.reverse("10.0.0.2".parse().unwrap(), &n1),
            Some("web.net1")
        );
        assert_eq!(idx.reverse("10.1.0.2".parse().unwrap(), &n1), None);
    }

    #[test]
    fn a_refresh_after_one_change_equals_a_full_build() {
        let mut records = vec![
            rec("net1", "a", "web", &["www"], &["10.0.0.2/24"]),
            rec("net1", "b", "db", &["www"], &["10.0.0.3/24"]),
        ];
        let mut idx = NameIndex::build(&records);
        // b leaves: its keys and address are recomputed from what remains.
        let gone = records.remove(1);
        idx.refresh(
            &records,
            "net1",
            &keys_of(&gone, "net1"),
            &[gone.ips[0].ip()],
        );
        let n1 = nets(&["net1"]);
        assert!(matches!(idx.lookup("db", &n1), Lookup::Missing { .. }));
        let Lookup::Found(www) = idx.lookup("www.net1", &n1) else {
            panic!()
        };
        assert_eq!(www.v4, vec![Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(idx.reverse("10.0.0.3".parse().unwrap(), &n1), None);
        // c joins with a shared alias.
        let c = rec("net1", "c", "Cache", &["www"], &["10.0.0.4/24"]);
        records.push(c.clone());
        idx.refresh(&records, "net1", &keys_of(&c, "net1"), &[c.ips[0].ip()]);
        let Lookup::Found(www) = idx.lookup("www", &n1) else {
            panic!()
        };
        assert_eq!(www.v4.len(), 2);
        assert!(matches!(idx.lookup("cache.net1", &n1), Lookup::Found(_)));
        assert_eq!(
            idx.reverse("10.0.0.4".parse().unwrap(), &n1),
            Some("cache.net1")
        );
        assert_eq!(idx.name_count(), NameIndex::build(&records).name_count());
    }

    /// Issue 21: a name whose record has no address was NODATA after a full build and forwarded after
    /// a refresh.
    #[test]
    fn a_name_without_an_address_is_the_same_refreshed_or_rebuilt() {
        let mut records = vec![rec("net1", "a", "web", &[], &["10.0.0.2/24"])];
        let mut idx = NameIndex::build(&records);
        let bare = rec("net1", "b", "noaddr", &["alias"], &[]);
        records.push(bare.clone());
        idx.refresh(&records, "net1", &keys_of(&bare, "net1"), &[]);
        let rebuilt = NameIndex::build(&records);
        assert_eq!(idx, rebuilt);
        assert_eq!(
            idx.lookup("noaddr", &nets(&["net1"])),
            Lookup::Found(Addresses::default())
        );
    }

    /// Random sequences of joins, leaves and changes (names, aliases, addresses, networks, dns on/off,
    /// names that normalize alike), each applied as the service does (refresh the keys and addresses
    /// of the old and the new record), compared with a full build after every step.
    #[test]
    fn random_changes_refreshed_one_by_one_equal_a_full_build() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = [
            "web", "WEB", "db", "web.net1", "a b", "", "x.", "net1", "cache",
        ];
        let networks = ["net1", "net2", "NET1"];
        for _round in 0..200 {
            let mut records: Vec<AttachmentRecord> = Vec::new();
            let mut idx = NameIndex::default();
            for _step in 0..30 {
                let old = if !records.is_empty() && next(3) == 0 {
                    Some(records.remove(next(records.len() as u64) as usize))
                } else {
                    None
                };
                let new = if old.is_none() || next(2) == 0 {
                    let ips: Vec<String> = (0..next(3))
                        .map(|_| format!("10.0.0.{}/24", next(4)))
                        .collect();
                    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
                    let aliases: Vec<&str> =
                        (0..next(3)).map(|_| names[next(9) as usize]).collect();
                    let mut r = rec(
                        networks[next(3) as usize],
                        &format!("c{}", next(1000)),
                        names[next(9) as usize],
                        &aliases,
                        &ips,
                    );
                    r.dns = next(5) != 0;
                    let at = next(records.len() as u64 + 1) as usize;
                    records.insert(at, r.clone());
                    Some(r)
                } else {
                    None
                };
                for r in [&old, &new].into_iter().flatten().filter(|r| r.dns) {
                    let Some(network) = network_key(&r.network) else {
                        continue;
                    };
                    let ips: Vec<IpAddr> = r.ips.iter().map(|i| i.ip()).collect();
                    idx.refresh(&records, &network, &keys_of(r, &network), &ips);
                }
                assert_eq!(idx, NameIndex::build(&records), "records: {records:#?}");
            }
        }
    }

    #[test]
    fn records_without_dns_are_not_indexed() {
        let mut r = rec("net1", "a", "web", &[], &["10.0.0.2/24"]);
        r.dns = false;
        assert_eq!(NameIndex::build([&r]).name_count(), 0);
    }

    #[test]
    fn reverse_names_parse() {
        assert_eq!(
            reverse_address("2.0.0.10.in-addr.arpa"),
            Some("10.0.0.2".parse().unwrap())
        );
        let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(reverse_address(v6), Some("fd00::2".parse().unwrap()));
        assert_eq!(reverse_address("1.2.in-addr.arpa"), None);
        assert_eq!(reverse_address("x.0.0.10.in-addr.arpa"), None);
    }
}
