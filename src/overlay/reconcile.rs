//! Keeps each overlay VXLAN device's static FDB and neighbour entries equal to the records: for every
//! live endpoint of another host that is up, `MAC -> VTEP` in the FDB and `IP -> MAC` in the neighbour
//! table (answered by the device's ARP proxy). Entries nobody wants are removed, deleted ones restored.
//! No all-zero flood entry is ever installed: nothing unknown crosses the underlay.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::records::{RecordKey, RecordTable, RecordValue};
use crate::link::{FdbEntry, FdbWrite, LinkError, MacAddr, NeighbourEntry, Netlink};
use crate::state::overlay::NetworkFacts;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    pub fdb: BTreeSet<FdbEntry>,
    pub neighbours: BTreeSet<NeighbourEntry>,
}

/// What the records want on `facts`'s device, counting only hosts `is_up` says are up.
pub fn desired(
    facts: &NetworkFacts,
    table: &RecordTable,
    me: IpAddr,
    is_up: impl Fn(IpAddr) -> bool,
) -> Desired {
    let mut out = Desired::default();
    for (key, value) in table.live() {
        let (
            RecordKey::Endpoint { host, network, ip },
            RecordValue::Endpoint { vni, mac, vtep, .. },
        ) = (key, value)
        else {
            continue;
        };
        if *host == me || network != &facts.network || *vni != facts.vni || !is_up(*host) {
            continue;
        }
        let mac = MacAddr::new(*mac);
        out.fdb.insert(FdbEntry { mac, dst: *vtep });
        // IPv4 and IPv6 alike: the device's proxy answers ARP and neighbour solicitations from these.
        out.neighbours.insert(NeighbourEntry { ip: *ip, mac });
    }
    out
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
    if plan.is_empty() {
        return Ok(0);
    }
    tracing::debug!(network = %facts.network, ?plan, "reconciling overlay entries");
    for e in &plan.fdb_del {
        nl.fdb_del(dev.index, e)?;
    }
    for e in &plan.neighbour_del {
        nl.neighbour_del(dev.index, e.ip)?;
    }
    for e in &plan.fdb_add {
        nl.fdb_add(dev.index, e, FdbWrite::Replace)?;
    }
    for e in &plan.neighbour_add {
        nl.neighbour_replace(dev.index, e)?;
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
}
