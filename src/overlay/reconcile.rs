//! Keeps each overlay VXLAN device's static FDB and neighbour entries equal to the records: for every
//! live endpoint of another host that is up, `MAC -> VTEP` in the FDB and `IP -> MAC` in the neighbour
//! table (answered by the device's ARP proxy). Entries nobody wants are removed, deleted ones restored.
//! No all-zero flood entry is ever installed: nothing unknown crosses the underlay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::records::{RecordKey, RecordTable, RecordValue};
use crate::link::{FdbEntry, FdbWrite, LinkError, MacAddr, NeighbourEntry, Netlink};
use crate::state::overlay::NetworkFacts;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    pub fdb: BTreeSet<FdbEntry>,
    pub neighbours: BTreeSet<NeighbourEntry>,
}

/// An endpoint record of `facts`'s network: where [`Wanted`] keeps it (by host and address), with the
/// entries it wants on the device (`value` `None`: the record is gone), which only an endpoint of another
/// host that is up, on the same VNI, does. `None` for any other record: it wants nothing on this device.
#[allow(clippy::type_complexity)]
fn entries_of(
    facts: &NetworkFacts,
    key: &RecordKey,
    value: Option<&RecordValue>,
    me: IpAddr,
    is_up: impl Fn(IpAddr) -> bool,
) -> Option<((IpAddr, IpAddr), Option<(FdbEntry, NeighbourEntry)>)> {
    let RecordKey::Endpoint { host, network, ip } = key else {
        return None;
    };
    if network != &facts.network {
        return None;
    }
    let entries = match value {
        Some(RecordValue::Endpoint { vni, mac, vtep, .. })
            if *host != me && *vni == facts.vni && is_up(*host) =>
        {
            let mac = MacAddr::new(*mac);
            // IPv4 and IPv6 alike: the device's proxy answers ARP and neighbour solicitations from these.
            Some((
                FdbEntry { mac, dst: *vtep },
                NeighbourEntry { ip: *ip, mac },
            ))
        }
        _ => None,
    };
    Some(((*host, *ip), entries))
}

/// What the records want on `facts`'s device, counting only hosts `is_up` says are up.
pub fn desired(
    facts: &NetworkFacts,
    table: &RecordTable,
    me: IpAddr,
    is_up: impl Fn(IpAddr) -> bool,
) -> Desired {
    Wanted::from_table(facts, table, me, is_up).desired()
}

/// What the records want on one device, kept per record, so a batch of changed records costs work for
/// those records only (recomputing [`desired`] from the whole table per batch was O(records) per host).
#[derive(Debug, Default)]
pub struct Wanted {
    /// By the endpoint's host and address ([`entries_of`]): one device is one network, so the record
    /// key's network name (a heap string per record, ~0.1 kB with its B-tree share at 10 000 records)
    /// says nothing here.
    by_key: BTreeMap<(IpAddr, IpAddr), (FdbEntry, NeighbourEntry)>,
    /// How many records want each FDB entry (a dual-stack container's two records want one) and each MAC.
    fdb: BTreeMap<FdbEntry, usize>,
    macs: BTreeMap<MacAddr, usize>,
}

fn count_up<K: Ord>(map: &mut BTreeMap<K, usize>, k: K) -> bool {
    let n = map.entry(k).or_default();
    *n += 1;
    *n == 1
}

fn count_down<K: Ord>(map: &mut BTreeMap<K, usize>, k: K) -> bool {
    let std::collections::btree_map::Entry::Occupied(mut n) = map.entry(k) else {
        return false;
    };
    *n.get_mut() -= 1;
    if *n.get() == 0 {
        n.remove();
        return true;
    }
    false
}

impl Wanted {
    pub fn from_table(
        facts: &NetworkFacts,
        table: &RecordTable,
        me: IpAddr,
        is_up: impl Fn(IpAddr) -> bool,
    ) -> Wanted {
        let mut w = Wanted::default();
        for (key, value) in table.live() {
            if let Some((k, Some(entries))) = entries_of(facts, key, Some(value), me, &is_up) {
                w.insert(k, entries);
            }
        }
        w
    }

    fn insert(
        &mut self,
        key: (IpAddr, IpAddr),
        (fdb, neighbour): (FdbEntry, NeighbourEntry),
    ) -> bool {
        count_up(&mut self.macs, fdb.mac);
        let new = count_up(&mut self.fdb, fdb);
        self.by_key.insert(key, (fdb, neighbour));
        new
    }

    /// Takes in `key`'s current value (`None`: gone) and adds what the device must change to `plan`.
    /// Finish a batch with [`Wanted::finish`].
    pub fn update(
        &mut self,
        facts: &NetworkFacts,
        key: &RecordKey,
        value: Option<&RecordValue>,
        me: IpAddr,
        is_up: impl Fn(IpAddr) -> bool,
        plan: &mut Plan,
    ) {
        // Another network's record wants nothing here (and may share a host and address with one of
        // this network's).
        let Some((k, new)) = entries_of(facts, key, value, me, is_up) else {
            return;
        };
        let old = self.by_key.remove(&k);
        if old == new {
            if let Some(entries) = old {
                self.by_key.insert(k, entries);
            }
            return;
        }
        if let Some((fdb, neighbour)) = old {
            count_down(&mut self.macs, fdb.mac);
            if count_down(&mut self.fdb, fdb) {
                plan.fdb_del.push(fdb);
            }
            if new.is_none() {
                plan.neighbour_del.push(neighbour);
            }
        }
        if let Some(entries) = new {
            if self.insert(k, entries) {
                plan.fdb_add.push(entries.0);
            }
            plan.neighbour_add.push(entries.1);
        }
    }

    /// Ends a batch: a MAC still wanted at another VTEP is replaced in place by its add, not deleted.
    pub fn finish(&self, plan: &mut Plan) {
        plan.fdb_del.retain(|e| !self.macs.contains_key(&e.mac));
    }

    pub fn desired(&self) -> Desired {
        Desired {
            fdb: self.fdb.keys().copied().collect(),
            neighbours: self.by_key.values().map(|(_, n)| *n).collect(),
        }
    }
}

/// Drops the entries of every peer VTEP `keep` refuses, with the neighbour entries of their MACs.
pub fn keep_only_peers(want: &mut Desired, keep: impl Fn(IpAddr) -> bool) {
    want.fdb.retain(|e| keep(e.dst));
    let macs: BTreeSet<MacAddr> = want.fdb.iter().map(|e| e.mac).collect();
    want.neighbours.retain(|n| macs.contains(&n.mac));
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub fdb_add: Vec<FdbEntry>,
    pub fdb_del: Vec<FdbEntry>,
    pub neighbour_add: Vec<NeighbourEntry>,
    pub neighbour_del: Vec<NeighbourEntry>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.fdb_add.is_empty()
            && self.fdb_del.is_empty()
            && self.neighbour_add.is_empty()
            && self.neighbour_del.is_empty()
    }
}

/// The changes that turn `fdb`/`neighbours` (the kernel's) into `want`. Flood and multicast FDB entries
/// are not ours and stay.
pub fn plan(want: &Desired, fdb: &[FdbEntry], neighbours: &[NeighbourEntry]) -> Plan {
    let have_fdb: BTreeSet<FdbEntry> = fdb
        .iter()
        .copied()
        .filter(|e| e.mac.is_unicast() && e.mac != MacAddr::new([0; 6]))
        .collect();
    let have_neigh: BTreeSet<NeighbourEntry> = neighbours.iter().copied().collect();
    Plan {
        fdb_add: want.fdb.difference(&have_fdb).copied().collect(),
        fdb_del: have_fdb
            .iter()
            // A MAC that only moved VTEP is replaced in place by its add.
            .filter(|e| !want.fdb.contains(e) && !want.fdb.iter().any(|w| w.mac == e.mac))
            .copied()
            .collect(),
        neighbour_add: want.neighbours.difference(&have_neigh).copied().collect(),
        neighbour_del: have_neigh
            .iter()
            .filter(|e| !want.neighbours.iter().any(|w| w.ip == e.ip))
            .copied()
            .collect(),
    }
}

/// Brings the device of `facts` to `want`; returns how many entries changed. A device that does not
/// exist (the last container left a moment ago) is nothing to do.
pub fn apply(nl: &Netlink, facts: &NetworkFacts, want: &Desired) -> Result<usize, LinkError> {
    let Some(dev) = nl.link_by_name(&facts.vxlan)? else {
        return Ok(0);
    };
    let plan = plan(
        want,
        &nl.fdb_entries(dev.index)?,
        &nl.permanent_neighbours(dev.index)?,
    );
    write_plan(nl, dev.index, facts, &plan)
}

/// Makes the changes of `plan` on the device of `facts` (a device that does not exist: nothing to do).
pub fn apply_plan(nl: &Netlink, facts: &NetworkFacts, plan: &Plan) -> Result<usize, LinkError> {
    if plan.is_empty() {
        return Ok(0);
    }
    let Some(dev) = nl.link_by_name(&facts.vxlan)? else {
        return Ok(0);
    };
    write_plan(nl, dev.index, facts, plan)
}

fn write_plan(
    nl: &Netlink,
    dev: u32,
    facts: &NetworkFacts,
    plan: &Plan,
) -> Result<usize, LinkError> {
    if plan.is_empty() {
        return Ok(0);
    }
    tracing::debug!(network = %facts.network, ?plan, "reconciling overlay entries");
    for e in &plan.fdb_del {
        nl.fdb_del(dev, e)?;
    }
    for e in &plan.neighbour_del {
        nl.neighbour_del(dev, e.ip)?;
    }
    for e in &plan.fdb_add {
        nl.fdb_add(dev, e, FdbWrite::Replace)?;
    }
    for e in &plan.neighbour_add {
        nl.neighbour_replace(dev, e)?;
    }
    Ok(plan.fdb_add.len()
        + plan.fdb_del.len()
        + plan.neighbour_add.len()
        + plan.neighbour_del.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::records::Record;
    use std::net::Ipv4Addr;

    fn facts() -> NetworkFacts {
        NetworkFacts {
            network: "ovl".into(),
            vni: 7,
            subnet: Some("10.0.0.0/24".parse().unwrap()),
            block_prefix: 26,
            subnet6: None,
            block_prefix6: None,
            vtep: "192.0.2.1".parse().unwrap(),
            bridge: "tob7".into(),
            vxlan: "tvx7".into(),
            port: 4789,
            encrypted: false,
        }
    }

    fn ep(host: u8, last: u8, vni: u32) -> Record {
        Record {
            key: RecordKey::Endpoint {
                host: IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                network: "ovl".into(),
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            },
            version: 1,
            value: Some(RecordValue::endpoint(
                vni,
                MacAddr::new([2, 0, 0, 0, host, last]),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                Vec::new(),
            )),
        }
    }

    #[test]
    fn only_remote_endpoints_of_up_hosts_on_the_same_vni_are_wanted() {
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = RecordTable::new();
        t.merge(me, vec![ep(2, 10, 7), ep(3, 11, 7), ep(2, 12, 8)], 0);
        let down: IpAddr = "192.0.2.3".parse().unwrap();
        let want = desired(&facts(), &t, me, |h| h != down);
        assert_eq!(want.fdb.len(), 1);
        assert_eq!(
            want.neighbours.iter().next().unwrap().ip.to_string(),
            "10.0.0.10"
        );
    }

    #[test]
    fn peers_without_their_ipsec_states_get_no_entries() {
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = RecordTable::new();
        t.merge(me, vec![ep(2, 10, 7), ep(3, 11, 7)], 0);
        let mut want = desired(&facts(), &t, me, |_| true);
        let ready: IpAddr = "192.0.2.3".parse().unwrap();
        keep_only_peers(&mut want, |vtep| vtep == ready);
        assert_eq!(want.fdb.len(), 1);
        assert_eq!(want.fdb.iter().next().unwrap().dst, ready);
        assert_eq!(want.neighbours.len(), 1);
        assert_eq!(
            want.neighbours.iter().next().unwrap().ip.to_string(),
            "10.0.0.11"
        );
    }

    #[test]
    fn the_plan_adds_missing_removes_stale_and_keeps_flood_entries() {
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = RecordTable::new();
        t.merge(me, vec![ep(2, 10, 7)], 0);
        let want = desired(&facts(), &t, me, |_| true);
        let stale = FdbEntry {
            mac: MacAddr::new([2, 9, 9, 9, 9, 9]),
            dst: "192.0.2.9".parse().unwrap(),
        };
        let flood = FdbEntry {
            mac: MacAddr::new([0; 6]),
            dst: "192.0.2.9".parse().unwrap(),
        };
        let stale_n = NeighbourEntry {
            ip: "10.0.0.99".parse().unwrap(),
            mac: stale.mac,
        };
        let p = plan(&want, &[stale, flood], &[stale_n]);
        assert_eq!(p.fdb_add.len(), 1);
        assert_eq!(p.fdb_del, vec![stale]);
        assert_eq!(p.neighbour_add.len(), 1);
        assert_eq!(p.neighbour_del, vec![stale_n]);
        let w: Vec<_> = want.fdb.iter().copied().collect();
        let n: Vec<_> = want.neighbours.iter().copied().collect();
        assert!(plan(&want, &w, &n).is_empty(), "nothing to do when equal");
    }

    /// Applies `plan` to a simulated device, as `write_plan` does to the kernel.
    fn play(plan: &Plan, fdb: &mut BTreeSet<FdbEntry>, neigh: &mut BTreeSet<NeighbourEntry>) {
        for e in &plan.fdb_del {
            fdb.remove(e);
        }
        for e in &plan.neighbour_del {
            neigh.retain(|n| n.ip != e.ip);
        }
        for e in &plan.fdb_add {
            fdb.retain(|f| f.mac != e.mac);
            fdb.insert(*e);
        }
        for e in &plan.neighbour_add {
            neigh.retain(|n| n.ip != e.ip);
            neigh.insert(*e);
        }
    }

    #[test]
    fn per_record_updates_reach_what_a_full_pass_wants() {
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = RecordTable::new();
        // Host 2 has a dual-stack-like pair: two addresses, one MAC and VTEP.
        let mut twin = ep(2, 10, 7);
        twin.key = RecordKey::Endpoint {
            host: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            network: "ovl".into(),
            ip: "fd00::a".parse().unwrap(),
        };
        t.merge(me, vec![ep(2, 10, 7), twin.clone(), ep(3, 11, 7)], 0);
        let mut w = Wanted::from_table(&facts(), &t, me, |_| true);
        let start = w.desired();
        let (mut fdb, mut neigh) = (start.fdb.clone(), start.neighbours.clone());
        t.take_touched();

        // One of the pair goes (the shared FDB entry stays), host 3's container moves to host 4's VTEP
        // (same MAC: replaced, not deleted), and a new one arrives on another VNI (not wanted).
        let mut moved = ep(3, 11, 7);
        moved.version = 2;
        if let Some(RecordValue::Endpoint { vtep, .. }) = &mut moved.value {
            *vtep = "192.0.2.4".parse().unwrap();
        }
        let gone = Record {
            key: twin.key.clone(),
            version: 2,
            value: None,
        };
        t.merge(me, vec![gone, moved, ep(5, 12, 8)], 0);
        let mut plan = Plan::default();
        for key in t.take_touched() {
            w.update(&facts(), &key, t.get(&key), me, |_| true, &mut plan);
        }
        w.finish(&mut plan);
        play(&plan, &mut fdb, &mut neigh);
        let full = desired(&facts(), &t, me, |_| true);
        assert_eq!(w.desired(), full);
        assert_eq!((fdb, neigh), (full.fdb, full.neighbours));
        assert!(plan.fdb_del.is_empty(), "nothing deleted: {plan:?}");
    }

    #[test]
    fn another_networks_record_at_the_same_host_and_address_leaves_this_devices_entries_alone() {
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = RecordTable::new();
        t.merge(me, vec![ep(2, 10, 7)], 0);
        let mut w = Wanted::from_table(&facts(), &t, me, |_| true);
        let start = w.desired();
        assert_eq!(start.neighbours.len(), 1);
        // The same host and address on network "other" (its own VNI), written, then deleted.
        let mut theirs = ep(2, 10, 9);
        theirs.key = RecordKey::Endpoint {
            host: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            network: "other".into(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)),
        };
        let mut plan = Plan::default();
        w.update(
            &facts(),
            &theirs.key,
            theirs.value.as_ref(),
            me,
            |_| true,
            &mut plan,
        );
        w.update(&facts(), &theirs.key, None, me, |_| true, &mut plan);
        w.finish(&mut plan);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(w.desired(), start);
    }
}
