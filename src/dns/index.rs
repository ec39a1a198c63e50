//! The names tetherd answers, built from the attachment records: per network, the container's name, its
//! aliases, and both as `NAME.NETWORK`, each mapped to the container's addresses; and per network the
//! reverse map for PTR. Built whole when tetherd (re)loads every record; after that each notified change
//! takes one record's contribution out and puts the new one in, whatever the number of records.

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

    fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4.iter().map(|a| IpAddr::V4(*a));
        v4.chain(self.v6.iter().map(|a| IpAddr::V6(*a)))
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

/// Identifies one record's contribution while it is in the index (the service numbers them).
pub type RecordId = u64;

/// One name's holders in the order they came; what a lookup answers is their addresses merged in that
/// order, kept ready so the query path merges nothing (and kept apart only when more than one holds it).
#[derive(Debug, Default)]
struct Holders {
    holders: Vec<(RecordId, Addresses)>,
    merged: Option<Addresses>,
}

impl Holders {
    /// Never called on an empty one: a name nobody holds leaves the index.
    fn answer(&self) -> &Addresses {
        self.merged.as_ref().unwrap_or(&self.holders[0].1)
    }

    fn add(&mut self, id: RecordId, addrs: &Addresses) {
        // Most names have one holder: a first push would reserve room for four (a thousand names, 300 KB).
        self.holders.reserve_exact(1);
        self.holders.push((id, addrs.clone()));
        match &mut self.merged {
            Some(merged) => merged.extend(addrs),
            None if self.holders.len() > 1 => self.remerge(),
            None => {}
        }
    }

    fn remerge(&mut self) {
        self.merged = (self.holders.len() > 1).then(|| {
            let mut merged = Addresses::default();
            for (_, addrs) in &self.holders {
                merged.extend(addrs);
            }
            merged
        });
    }
}

#[derive(Debug, Default)]
struct NetworkNames {
    by_name: HashMap<String, Holders>,
    /// An address's name for PTR: the container's name (else its first alias), as `NAME.NETWORK`, of the
    /// first record still holding the address.
    by_addr: HashMap<IpAddr, Vec<(RecordId, String)>>,
}

impl NetworkNames {
    fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.by_addr.is_empty()
    }
}

/// Every record's names, indexed by network. A change adds or removes one record's contribution, so it
/// costs the same whatever the number of records (a notify is on every ADD's path).
#[derive(Debug, Default)]
pub struct NameIndex {
    networks: HashMap<String, NetworkNames>,
}

/// Equality is what a lookup can tell apart: an index changed record by record equals a full build of the
/// same records in the same order.
impl PartialEq for NameIndex {
    fn eq(&self, other: &NameIndex) -> bool {
        let same_network = |a: &NetworkNames, b: &NetworkNames| {
            a.by_name.len() == b.by_name.len()
                && a.by_addr.len() == b.by_addr.len()
                && a.by_name
                    .iter()
                    .all(|(k, h)| b.by_name.get(k).is_some_and(|o| o.answer() == h.answer()))
                && a.by_addr.iter().all(|(ip, v)| {
                    b.by_addr.get(ip).and_then(|o| o.first()).map(|(_, n)| n)
                        == v.first().map(|(_, n)| n)
                })
        };
        self.networks.len() == other.networks.len()
            && self
                .networks
                .iter()
                .all(|(k, n)| other.networks.get(k).is_some_and(|o| same_network(n, o)))
    }
}

impl Eq for NameIndex {}

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

/// What one record put in the index, kept by the caller to take it out again.
#[derive(Debug, Clone)]
pub struct Contribution {
    id: RecordId,
    /// The record's network, normalized.
    network: String,
    keys: Vec<String>,
    addrs: Addresses,
}

impl NameIndex {
    pub fn build<'a>(records: impl IntoIterator<Item = &'a AttachmentRecord>) -> NameIndex {
        let mut index = NameIndex::default();
        for (id, rec) in records.into_iter().enumerate() {
            index.insert(id as RecordId, rec);
        }
        index
    }

    /// Adds the record's names and addresses, after those already held; `None` when it adds nothing
    /// (no DNS, or a network name that can never be queried).
    pub fn insert(&mut self, id: RecordId, rec: &AttachmentRecord) -> Option<Contribution> {
        if !rec.dns {
            return None;
        }
        let network = normalize(&rec.network)?;
        let mut keys = Vec::new();
        for key in keys_of(rec, &network) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys.shrink_to_fit();
        let mut addrs = Addresses::default();
        for ip in &rec.ips {
            addrs.add(ip.ip());
        }
        // The PTR answer for its addresses: `NAME.NETWORK` of the record's first valid name.
        let primary = keys.first().map(|n| format!("{n}.{network}"));
        let c = Contribution {
            id,
            network,
            keys,
            addrs,
        };
        let net = self.networks.entry(c.network.clone()).or_default();
        for key in &c.keys {
            net.by_name
                .entry(key.clone())
                .or_default()
                .add(id, &c.addrs);
        }
        if let Some(primary) = &primary {
            for ip in c.addrs.iter() {
                let names = net.by_addr.entry(ip).or_default();
                names.reserve_exact(1);
                names.push((id, primary.clone()));
            }
        }
        if net.is_empty() {
            self.networks.remove(&c.network);
        }
        Some(c)
    }

    /// Takes out what `insert` put in for one record; the names and addresses others hold stay.
    pub fn remove(&mut self, c: &Contribution) {
        let Some(net) = self.networks.get_mut(&c.network) else {
            return;
        };
        for key in &c.keys {
            if let Some(held) = net.by_name.get_mut(key) {
                held.holders.retain(|(id, _)| *id != c.id);
                if held.holders.is_empty() {
                    net.by_name.remove(key);
                } else {
                    held.remerge();
                }
            }
        }
        for ip in c.addrs.iter() {
            if let Some(names) = net.by_addr.get_mut(&ip) {
                names.retain(|(id, _)| *id != c.id);
                if names.is_empty() {
                    net.by_addr.remove(&ip);
                }
            }
        }
        if net.is_empty() {
            self.networks.remove(&c.network);
        }
    }

    /// Looks `name` (normalized) up in the given networks only; addresses of every match, merged.
    pub fn lookup(&self, name: &str, networks: &[String]) -> Lookup {
        let mut found: Option<Addresses> = None;
        for net in networks {
            if let Some(addrs) = self
                .networks
                .get(net)
                .and_then(|n| n.by_name.get(name))
                .map(Holders::answer)
            {
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
            .find_map(|n| n.by_addr.get(&ip).and_then(|v| v.first()))
            .map(|(_, name)| name.as_str())
    }

    pub fn network_count(&self) -> usize {
        self.networks.len()
    }

    pub fn name_count(&self) -> usize {
        self.networks.values().map(|n| n.by_name.len()).sum()
    }
}

/// The index keys a record adds to its (normalized) network: each valid name as is and as `NAME.NETWORK`.
fn keys_of(rec: &AttachmentRecord, network: &str) -> Vec<String> {
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
    fn a_change_record_by_record_equals_a_full_build() {
        let mut records = vec![
            rec("net1", "a", "web", &["www"], &["10.0.0.2/24"]),
            rec("net1", "b", "db", &["www"], &["10.0.0.3/24"]),
        ];
        let mut idx = NameIndex::default();
        let mut held: Vec<Contribution> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| idx.insert(i as RecordId, r))
            .collect();
        assert_eq!(idx, NameIndex::build(&records));
        // b leaves: what a holds stays.
        records.remove(1);
        idx.remove(&held.remove(1));
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
        held.extend(idx.insert(7, &c));
        let Lookup::Found(www) = idx.lookup("www", &n1) else {
            panic!()
        };
        assert_eq!(www.v4.len(), 2);
        assert!(matches!(idx.lookup("cache.net1", &n1), Lookup::Found(_)));
        assert_eq!(
            idx.reverse("10.0.0.4".parse().unwrap(), &n1),
            Some("cache.net1")
        );
        assert_eq!(idx, NameIndex::build(&records));
    }

    /// Issue 21: a name whose record has no address was NODATA after a full build and forwarded after
    /// a refresh.
    #[test]
    fn a_name_without_an_address_is_the_same_changed_or_rebuilt() {
        let mut records = vec![rec("net1", "a", "web", &[], &["10.0.0.2/24"])];
        let mut idx = NameIndex::build(&records);
        let bare = rec("net1", "b", "noaddr", &["alias"], &[]);
        records.push(bare.clone());
        idx.insert(1, &bare);
        assert_eq!(idx, NameIndex::build(&records));
        assert_eq!(
            idx.lookup("noaddr", &nets(&["net1"])),
            Lookup::Found(Addresses::default())
        );
    }

    /// Random sequences of joins, leaves and changes (names, aliases, addresses, networks, dns on/off,
    /// names that normalize alike, shared names and addresses), each applied as the service does (the
    /// old record's contribution out, the new one in at the end, as the snapshot appends it), compared
    /// with a full build after every step.
    #[test]
    fn random_changes_record_by_record_equal_a_full_build() {
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
            let mut records: Vec<(AttachmentRecord, Option<Contribution>)> = Vec::new();
            let mut idx = NameIndex::default();
            let mut ids = 0..;
            for _step in 0..30 {
                let changed = if !records.is_empty() && next(3) == 0 {
                    let (_, old) = records.remove(next(records.len() as u64) as usize);
                    if let Some(old) = old {
                        idx.remove(&old);
                    }
                    next(2) == 0
                } else {
                    true
                };
                if changed {
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
                    let c = idx.insert(ids.next().unwrap(), &r);
                    records.push((r, c));
                }
                let now: Vec<&AttachmentRecord> = records.iter().map(|(r, _)| r).collect();
                assert_eq!(
                    idx,
                    NameIndex::build(now.iter().copied()),
                    "records: {now:#?}"
                );
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
