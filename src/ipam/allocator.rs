//! ADD, DEL and CHECK on the store: one address per range set, static requests honoured, all or nothing.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::attachment::AttachmentId;
use super::config::IpamConfig;
use super::error::IpamError;
use super::range::RangeSet;
use super::store::{LockedStore, Store};

/// One address handed to an attachment, with the subnet's prefix, and the gateway of its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
}

/// Leases created by one ADD; dropped before `commit` they are removed again, so a failed ADD keeps nothing.
struct LeaseTransaction<'s, 'a> {
    store: &'s LockedStore<'a>,
    created: Vec<IpAddr>,
    /// Whether the lease it creates is the attachment's only address and becomes its index too.
    lease_is_index: bool,
    /// The index that a created lease became (removed again with it).
    indexed: Option<AttachmentId>,
    committed: bool,
}

impl<'s, 'a> LeaseTransaction<'s, 'a> {
    fn new(store: &'s LockedStore<'a>, lease_is_index: bool) -> Self {
        LeaseTransaction {
            store,
            created: Vec::new(),
            lease_is_index,
            indexed: None,
            committed: false,
        }
    }

    fn create(&mut self, ip: IpAddr, owner: &AttachmentId) -> Result<bool, IpamError> {
        let created = match self.lease_is_index {
            true => self.store.create_lease_with_index(ip, owner)?,
            false => self.store.create_lease(ip, owner)?,
        };
        if created {
            self.created.push(ip);
            if self.lease_is_index {
                self.indexed = Some(owner.clone());
            }
        }
        Ok(created)
    }

    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for LeaseTransaction<'_, '_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(owner) = self.indexed.take() {
            if let Err(e) = self.store.remove_attachment(&owner) {
                tracing::warn!(%owner, error = %e, "could not undo the index of a failed ADD; GC will remove it");
            }
        }
        for ip in self.created.drain(..).rev() {
            if let Err(e) = self.store.remove_lease(ip) {
                tracing::warn!(%ip, error = %e, "could not undo lease of a failed ADD; GC will free it");
            }
        }
    }
}

/// Addresses the index lists for `id` whose lease files still name `id`.
fn held_addresses(store: &LockedStore<'_>, id: &AttachmentId) -> Result<Vec<IpAddr>, IpamError> {
    let listed = store.attachment_ips(id)?;
    held_among(store, id, listed.as_deref().unwrap_or_default())
}

/// The addresses of `listed` (what the index says) whose lease files still name `id`.
fn held_among(
    store: &LockedStore<'_>,
    id: &AttachmentId,
    listed: &[IpAddr],
) -> Result<Vec<IpAddr>, IpamError> {
    let mut held = Vec::with_capacity(listed.len());
    for &ip in listed {
        match store.lease_owner(ip)? {
            Some(holder) if holder.is(id) => held.push(ip),
            _ => tracing::warn!(%ip, %id, "attachment index lists an address it does not hold"),
        }
    }
    Ok(held)
}

fn allocation(set: &RangeSet, ip: IpAddr) -> Allocation {
    let range = set
        .range_of(ip)
        .expect("address was chosen inside this set");
    Allocation {
        address: range.address_of(ip),
        gateway: Some(range.gateway()),
    }
}

/// Next free address of `set` after the round-robin mark, skipping gateways and leased addresses.
fn reserve_next(
    store: &LockedStore<'_>,
    txn: &mut LeaseTransaction<'_, '_>,
    set: &RangeSet,
    set_index: usize,
    owner: &AttachmentId,
) -> Result<IpAddr, IpamError> {
    let last = store.last_reserved(set.round_robin_slot(set_index))?;
    for ip in set.walk_after(last) {
        if set.is_gateway(ip) || store.lease_exists(ip)? {
            continue;
        }
        // A writer that ignores our lock could still race us; the exclusive create settles it.
        if txn.create(ip, owner)? {
            return Ok(ip);
        }
    }
    Err(IpamError::RangeExhausted {
        range: set.to_string(),
    })
}

/// Requested addresses sorted into their range sets (at most one per set).
fn requested_per_set(
    conf: &IpamConfig,
    requested: &[IpAddr],
) -> Result<Vec<Option<IpAddr>>, IpamError> {
    let mut per_set = vec![None; conf.range_sets.len()];
    for &ip in requested {
        let index = conf.set_index_of(ip).ok_or_else(|| IpamError::NotInRange {
            ip,
            ranges: conf.describe_ranges(),
        })?;
        let set = &conf.range_sets[index];
        if set.is_gateway(ip) {
            return Err(IpamError::AddressInUse {
                ip,
                by: format!("the gateway of range set {set}"),
            });
        }
        match per_set[index] {
            Some(first) if first != ip => {
                return Err(IpamError::RequestConflict {
                    first,
                    second: ip,
                    range: set.to_string(),
                })
            }
            _ => per_set[index] = Some(ip),
        }
    }
    Ok(per_set)
}

/// Give `container_id`/`ifname` one address from each range set, `requested` ones where given.
/// Idempotent: an attachment that already holds an address in a set gets that address again.
pub fn allocate(
    conf: &IpamConfig,
    store: &Store,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<Allocation>, IpamError> {
    let owner = AttachmentId::new(container_id, ifname)?;
    let wanted = requested_per_set(conf, requested)?;
    let locked = store.lock()?;
    // Read once: compared again below to skip rewriting an index that already says the same.
    let listed = locked.attachment_ips(&owner)?;
    let held = held_among(&locked, &owner, listed.as_deref().unwrap_or_default())?;

    // An attachment new to the store that gets one address: its lease is its index too (one file).
    let lease_is_index = listed.is_none() && conf.range_sets.len() == 1;
    let mut txn = LeaseTransaction::new(&locked, lease_is_index);
    let mut chosen = Vec::with_capacity(conf.range_sets.len());
    let mut round_robin_marks = Vec::new();
    for (index, set) in conf.range_sets.iter().enumerate() {
        let held_here = held.iter().copied().find(|ip| set.contains(*ip));
        let ip = match (held_here, wanted[index]) {
            (Some(held), Some(requested)) if held != requested => {
                return Err(IpamError::AlreadyAllocated {
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                    held,
                    requested,
                    range: set.to_string(),
                })
            }
            (Some(held), _) => held,
            (None, Some(requested)) => {
                match locked.lease_owner(requested)? {
                    // Our own lease that the index lost: take it back into the index.
                    Some(holder) if holder.is(&owner) => {}
                    Some(holder) => {
                        return Err(IpamError::AddressInUse {
                            ip: requested,
                            by: holder.to_string(),
                        })
                    }
                    None => {
                        if !txn.create(requested, &owner)? {
                            return Err(IpamError::AddressInUse {
                                ip: requested,
                                by: "a writer outside the store lock".to_string(),
                            });
                        }
                    }
                }
                requested
            }
            (None, None) => {
                let ip = reserve_next(&locked, &mut txn, set, index, &owner)?;
                round_robin_marks.push((set.round_robin_slot(index), ip));
                ip
            }
        };
        chosen.push(allocation(set, ip));
    }

    // The index keeps addresses held outside today's ranges too, so DEL still frees them.
    let mut index: Vec<IpAddr> = held.clone();
    for a in &chosen {
        if !index.contains(&a.address.ip()) {
            index.push(a.address.ip());
        }
    }
    let linked = txn.indexed.is_some() && index.len() == 1;
    if !linked && listed.as_deref() != Some(&index[..]) {
        locked.write_attachment(&owner, &index)?;
    }
    txn.commit();
    for (set, ip) in round_robin_marks {
        // Only a hint for where to search next; losing it cannot hand out an address twice.
        if let Err(e) = locked.set_last_reserved(set, ip) {
            tracing::warn!(set, %ip, error = %e, "could not record round-robin position");
        }
    }
    tracing::debug!(%owner, addresses = ?chosen, "allocated");
    Ok(chosen)
}

/// Free every address `container_id`/`ifname` holds; `Ok(empty)` when it holds none (DEL of a gone
/// attachment succeeds).
pub fn release(store: &Store, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
    let owner = AttachmentId::new(container_id, ifname)?;
    let locked = store.lock()?;
    let Some(listed) = locked.attachment_ips(&owner)? else {
        return Ok(Vec::new());
    };
    let mut released = Vec::with_capacity(listed.len());
    for ip in listed {
        // Never free an address that has since been handed to someone else.
        match locked.lease_owner(ip)? {
            Some(holder) if holder.is(&owner) => {
                locked.remove_lease(ip)?;
                released.push(ip);
            }
            _ => tracing::warn!(%ip, %owner, "index lists an address the attachment does not hold"),
        }
    }
    locked.remove_attachment(&owner)?;
    tracing::debug!(%owner, addresses = ?released, "released");
    Ok(released)
}

/// The addresses `container_id`/`ifname` holds; an error when it holds none.
pub fn check(
    conf: &IpamConfig,
    store: &Store,
    container_id: &str,
    ifname: &str,
) -> Result<Vec<IpAddr>, IpamError> {
    let owner = AttachmentId::new(container_id, ifname)?;
    let locked = store.lock()?;
    let held = held_addresses(&locked, &owner)?;
    if held.is_empty() {
        return Err(IpamError::NotAllocated {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        });
    }
    for ip in &held {
        if conf.set_index_of(*ip).is_none() {
            return Err(IpamError::NotInRange {
                ip: *ip,
                ranges: conf.describe_ranges(),
            });
        }
    }
    Ok(held)
}

/// Free addresses per range set, in config order (scans the store: for STATUS, not the hot path).
pub fn free_counts(conf: &IpamConfig, store: &Store) -> Result<Vec<u128>, IpamError> {
    let locked = store.lock()?;
    let mut free: Vec<u128> = conf.range_sets.iter().map(|s| s.capacity()).collect();
    for ip in locked.leases()? {
        if let Some(index) = conf.set_index_of(ip) {
            if !conf.range_sets[index].is_gateway(ip) {
                free[index] = free[index].saturating_sub(1);
            }
        }
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use serde_json::json;
    use std::path::Path;

    fn conf(ipam: serde_json::Value) -> IpamConfig {
        IpamConfig::parse(&ipam, Path::new("/unused")).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addresses(allocs: &[Allocation]) -> Vec<String> {
        allocs.iter().map(|a| a.address.to_string()).collect()
    }

    fn assert_no_attachments(store: &Store) {
        let left: Vec<_> = std::fs::read_dir(store.dir().join("attachments"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "attachments left: {left:?}");
    }

    fn store_files(store: &Store) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn first_add_gets_the_address_after_the_gateway_with_the_subnet_prefix() {
        let dir = TestDir::new("first");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"subnet": "10.88.0.0/16"}));
        let a = allocate(&c, &store, "c1", "eth0", &[]).unwrap();
        assert_eq!(
            a,
            vec![Allocation {
                address: "10.88.0.2/16".parse().unwrap(),
                gateway: Some(ip("10.88.0.1"))
            }]
        );
    }

    #[test]
    fn repeated_add_returns_the_same_addresses() {
        let dir = TestDir::new("idem");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
        let first = allocate(&c, &store, "c1", "eth0", &[]).unwrap();
        let again = allocate(&c, &store, "c1", "eth0", &[]).unwrap();
        assert_eq!(first, again);
        assert_eq!(addresses(&first), ["10.1.0.2/24", "fd00::2/64"]);
        let other = allocate(&c, &store, "c1", "eth1", &[]).unwrap();
        assert_eq!(addresses(&other), ["10.1.0.3/24", "fd00::3/64"]);
    }

    #[test]
    fn repeated_add_after_a_set_was_added_keeps_the_old_address_and_adds_one() {
        let dir = TestDir::new("grow");
        let store = Store::open(&dir, "net").unwrap();
        let v4 = conf(json!({"subnet": "10.1.0.0/24"}));
        allocate(&v4, &store, "a", "eth0", &[]).unwrap();
        let dual =
            conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
        let a = allocate(&dual, &store, "a", "eth0", &[]).unwrap();
        assert_eq!(addresses(&a), ["10.1.0.2/24", "fd00::2/64"]);
        assert_eq!(release(&store, "a", "eth0").unwrap().len(), 2);
    }

    #[test]
    fn allocation_is_round_robin_and_does_not_reuse_a_freed_address_at_once() {
        let dir = TestDir::new("rr");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"subnet": "10.1.0.0/29"}));
        // Usable: .2 .3 .4 .5 .6 (.1 is the gateway, .7 the broadcast).
        let a = allocate(&c, &store, "a", "eth0", &[]).unwrap();
        assert_eq!(addresses(&a), ["10.1.0.2/29"]);
        release(&store, "a", "eth0").unwrap();
        let b = allocate(&c, &store, "b", "eth0", &[]).unwrap();
        assert_eq!(addresses(&b), ["10.1.0.3/29"]);
        for id in ["c", "d", "e"] {
            allocate(&c, &store, id, "eth0", &[]).unwrap();
        }
        // Wraps around past the gateway to the freed .2.
        let f = allocate(&c, &store, "f", "eth0", &[]).unwrap();
        assert_eq!(addresses(&f), ["10.1.0.2/29"]);
        let err = allocate(&c, &store, "g", "eth0", &[]).unwrap_err();
        assert!(matches!(err, IpamError::RangeExhausted { .. }), "{err}");
        assert!(err.to_string().contains("10.1.0.0/29"), "{err}");
        assert_eq!(free_counts(&c, &store).unwrap(), vec![0]);
    }

    #[test]
    fn static_requests_are_honoured_and_checked() {
        let dir = TestDir::new("static");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
        let a = allocate(&c, &store, "a", "eth0", &[ip("fd00::99")]).unwrap();
        assert_eq!(addresses(&a), ["10.1.0.2/24", "fd00::99/64"]);

        let err = allocate(&c, &store, "b", "eth0", &[ip("fd00::99")]).unwrap_err();
        assert!(matches!(err, IpamError::AddressInUse { .. }));
        assert!(
            err.to_string().contains("container a interface eth0"),
            "{err}"
        );

        let err = allocate(&c, &store, "b", "eth0", &[ip("192.168.1.1")]).unwrap_err();
        assert!(matches!(err, IpamError::NotInRange { .. }));
        assert!(err.to_string().contains("10.1.0.0/24"), "{err}");

        let err = allocate(&c, &store, "b", "eth0", &[ip("10.1.0.1")]).unwrap_err();
        assert!(err.to_string().contains("gateway"), "{err}");

        let err = allocate(&c, &store, "b", "eth0", &[ip("10.1.0.7"), ip("10.1.0.8")]).unwrap_err();
        assert!(matches!(err, IpamError::RequestConflict { .. }));

        let err = allocate(&c, &store, "a", "eth0", &[ip("fd00::98")]).unwrap_err();
        assert!(matches!(err, IpamError::AlreadyAllocated { .. }));
        // Asking again for what it holds is fine.
        assert_eq!(
            allocate(&c, &store, "a", "eth0", &[ip("fd00::99")]).unwrap(),
            a
        );
    }

    #[test]
    fn a_failed_add_keeps_nothing() {
        let dir = TestDir::new("atomic");
        let store = Store::open(&dir, "net").unwrap();
        // Set 0 has room, set 1 has exactly one address.
        let c = conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}],
            [{"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.5", "rangeEnd": "10.2.0.5"}]]}));
        allocate(&c, &store, "a", "eth0", &[]).unwrap();
        let before = store_files(&store);
        let err = allocate(&c, &store, "b", "eth0", &[]).unwrap_err();
        assert!(matches!(err, IpamError::RangeExhausted { .. }), "{err}");
        assert_eq!(store_files(&store), before);
        assert_eq!(free_counts(&c, &store).unwrap(), vec![252, 0]);
    }

    #[test]
    fn release_frees_everything_and_tolerates_unknown_attachments() {
        let dir = TestDir::new("release");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
        allocate(&c, &store, "a", "eth0", &[]).unwrap();
        assert_eq!(
            release(&store, "a", "eth0").unwrap(),
            vec![ip("10.1.0.2"), ip("fd00::2")]
        );
        assert_eq!(release(&store, "a", "eth0").unwrap(), Vec::<IpAddr>::new());
        assert_eq!(
            release(&store, "never", "eth0").unwrap(),
            Vec::<IpAddr>::new()
        );
        assert_eq!(
            store_files(&store),
            [
                "attachments",
                "last_reserved_ip.0",
                "last_reserved_ip.1",
                "lock"
            ]
        );
    }

    #[test]
    fn a_single_address_attachment_is_one_file_whose_second_name_is_its_index() {
        use std::os::unix::fs::MetadataExt;
        let dir = TestDir::new("folded");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"subnet": "10.1.0.0/24"}));
        allocate(&c, &store, "a", "eth0", &[]).unwrap();
        let lease = std::fs::metadata(store.dir().join("10.1.0.2")).unwrap();
        let index = std::fs::metadata(store.dir().join("attachments/a.eth0")).unwrap();
        assert_eq!(
            (lease.ino(), lease.nlink()),
            (index.ino(), 2),
            "the index is the lease's second name"
        );
        assert_eq!(
            std::fs::read_to_string(store.dir().join("10.1.0.2")).unwrap(),
            "a\neth0\n10.1.0.2\n"
        );
        // ADD again is idempotent and keeps the one file; CHECK and DEL read the folded index.
        assert_eq!(
            allocate(&c, &store, "a", "eth0", &[]).unwrap()[0]
                .address
                .ip(),
            ip("10.1.0.2")
        );
        assert_eq!(
            check(&c, &store, "a", "eth0").unwrap(),
            vec![ip("10.1.0.2")]
        );
        assert_eq!(release(&store, "a", "eth0").unwrap(), vec![ip("10.1.0.2")]);
        assert_eq!(
            store_files(&store),
            ["attachments", "last_reserved_ip.0", "lock"]
        );
        assert_no_attachments(&store);
        // The released file is kept as a spare and is the next ADD's lease: no new inode.
        let lease_ino = lease.ino();
        allocate(&c, &store, "b", "eth0", &[]).unwrap();
        assert_eq!(
            std::fs::metadata(store.dir().join("10.1.0.3"))
                .unwrap()
                .ino(),
            lease_ino
        );
        release(&store, "b", "eth0").unwrap();
        assert_no_attachments(&store);
    }

    #[test]
    fn an_index_of_its_own_from_an_older_store_still_reads() {
        let dir = TestDir::new("old-index");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"subnet": "10.1.0.0/24"}));
        // What tether wrote before the index was folded into the lease.
        std::fs::write(store.dir().join("10.1.0.7"), "a\neth0\n").unwrap();
        std::fs::write(store.dir().join("attachments/a.eth0"), "10.1.0.7\n").unwrap();
        assert_eq!(
            check(&c, &store, "a", "eth0").unwrap(),
            vec![ip("10.1.0.7")]
        );
        assert_eq!(
            allocate(&c, &store, "a", "eth0", &[]).unwrap()[0]
                .address
                .ip(),
            ip("10.1.0.7")
        );
        assert_eq!(release(&store, "a", "eth0").unwrap(), vec![ip("10.1.0.7")]);
        assert_no_attachments(&store);
    }

    #[test]
    fn check_reports_held_addresses_or_an_error() {
        let dir = TestDir::new("check");
        let store = Store::open(&dir, "net").unwrap();
        let c = conf(json!({"subnet": "10.1.0.0/24"}));
        let err = check(&c, &store, "a", "eth0").unwrap_err();
        assert!(matches!(err, IpamError::NotAllocated { .. }));
        allocate(&c, &store, "a", "eth0", &[]).unwrap();
        assert_eq!(
            check(&c, &store, "a", "eth0").unwrap(),
            vec![ip("10.1.0.2")]
        );
        let moved = conf(json!({"subnet": "10.9.0.0/24"}));
        assert!(matches!(
            check(&moved, &store, "a", "eth0").unwrap_err(),
            IpamError::NotInRange { .. }
        ));
    }

    #[test]
    fn hundred_concurrent_adds_get_distinct_addresses_and_releases_empty_the_store() {
        let dir = TestDir::new("concurrent");
        let c = conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120"}]]}));
        let results: Vec<Vec<Allocation>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..100)
                .map(|i| {
                    let (c, dir) = (&c, &dir);
                    scope.spawn(move || {
                        // Each thread opens its own store and lock file, as separate processes would.
                        let store = Store::open(dir, "net").unwrap();
                        allocate(c, &store, &format!("c{i}"), "eth0", &[]).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<IpAddr> = results.iter().flatten().map(|a| a.address.ip()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200, "every address handed out once");
        let store = Store::open(&dir, "net").unwrap();
        assert_eq!(free_counts(&c, &store).unwrap(), vec![253 - 100, 254 - 100]);

        std::thread::scope(|scope| {
            for i in 0..100 {
                let dir = &dir;
                scope.spawn(move || {
                    let store = Store::open(dir, "net").unwrap();
                    assert_eq!(release(&store, &format!("c{i}"), "eth0").unwrap().len(), 2);
                });
            }
        });
        assert_eq!(
            store_files(&store),
            [
                "attachments",
                "last_reserved_ip.0",
                "last_reserved_ip.1",
                "lock"
            ]
        );
        assert_no_attachments(&store);
    }

    /// Child side of the multi-process test: does nothing unless the parent set the variables.
    #[test]
    #[ignore = "run by hundred_processes_allocate_distinct_addresses"]
    fn allocate_in_child_process() {
        let (Some(dir), Some(id)) = (
            std::env::var_os("TETHER_IPAM_TEST_DIR"),
            std::env::var("TETHER_IPAM_TEST_ID").ok(),
        ) else {
            return;
        };
        let c = conf(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120"}]]}));
        let store = Store::open(Path::new(&dir), "net").unwrap();
        for a in allocate(&c, &store, &id, "eth0", &[]).unwrap() {
            println!("ALLOCATED {}", a.address.ip());
        }
    }

    #[test]
    fn hundred_processes_allocate_distinct_addresses() {
        let dir = TestDir::new("processes");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..100)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "ipam::allocator::tests::allocate_in_child_process",
                    ])
                    .args(["--ignored", "--nocapture", "--test-threads=1"])
                    .env("TETHER_IPAM_TEST_DIR", &*dir)
                    .env("TETHER_IPAM_TEST_ID", format!("p{i}"))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut all = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let text = String::from_utf8(out.stdout).unwrap();
            all.extend(
                text.lines()
                    // The harness may print "test ... " on the same line before ours.
                    .filter_map(|l| l.split("ALLOCATED ").nth(1))
                    .map(|ip| ip.parse::<IpAddr>().unwrap()),
            );
        }
        assert_eq!(all.len(), 200);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200, "no address handed out twice");
        let store = Store::open(&dir, "net").unwrap();
        for i in 0..100 {
            assert_eq!(release(&store, &format!("p{i}"), "eth0").unwrap().len(), 2);
        }
        assert_eq!(
            store_files(&store),
            [
                "attachments",
                "last_reserved_ip.0",
                "last_reserved_ip.1",
                "lock"
            ]
        );
    }
}
