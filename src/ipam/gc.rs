//! GC: free every lease whose attachment the runtime no longer knows, and repair the index on the way.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::attachment::AttachmentId;
use super::error::IpamError;
use super::store::{LeaseHolder, Store};

/// Free every lease not held by one of `valid` (container id, ifname) pairs; returns how many were freed.
///
/// Also repairs what a crash can leave: leases missing from their index are added to it, index lines
/// whose lease is gone or held by another attachment are dropped, and temporary files are removed.
pub fn gc(store: &Store, valid: &[(String, String)]) -> Result<usize, IpamError> {
    let valid: HashSet<AttachmentId> = valid
        .iter()
        .filter_map(|(c, i)| AttachmentId::new(c, i).ok())
        .collect();
    let locked = store.lock()?;
    locked.remove_stale_temp_files()?;

    let mut freed = 0;
    // What the lease files say each valid attachment holds; this is the truth the index is rebuilt from.
    let mut held: HashMap<String, (AttachmentId, Vec<IpAddr>)> = HashMap::new();
    for ip in locked.leases()? {
        match locked.lease_owner(ip)? {
            Some(LeaseHolder::Attachment(id)) if valid.contains(&id) => {
                held.entry(id.index_name())
                    .or_insert_with(|| (id.clone(), Vec::new()))
                    .1
                    .push(ip);
            }
            Some(holder) => {
                tracing::info!(%ip, %holder, "GC frees lease of an attachment that is gone");
                locked.remove_lease(ip)?;
                freed += 1;
            }
            None => {}
        }
    }

    for name in locked.attachment_names()? {
        match held.get(&name) {
            Some((id, ips)) => {
                let listed = locked.attachment_ips_by_name(&name)?.unwrap_or_default();
                // Keep the index order; append what only the lease files knew.
                let mut repaired: Vec<IpAddr> = listed
                    .iter()
                    .copied()
                    .filter(|ip| ips.contains(ip))
                    .collect();
                repaired.extend(ips.iter().filter(|ip| !listed.contains(ip)));
                if repaired != listed {
                    tracing::info!(%id, "GC repairs attachment index");
                    locked.write_attachment(id, &repaired)?;
                }
            }
            None => locked.remove_attachment_by_name(&name)?,
        }
    }
    // Valid attachments whose index file is missing entirely.
    let names: HashSet<String> = locked.attachment_names()?.into_iter().collect();
    for (name, (id, ips)) in &held {
        if !names.contains(name) {
            tracing::info!(%id, "GC recreates missing attachment index");
            locked.write_attachment(id, ips)?;
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::allocator::{allocate, check, release};
    use crate::ipam::config::IpamConfig;
    use crate::test_dir::TestDir;
    use serde_json::json;
    use std::fs;
    use std::path::Path;

    fn pair(c: &str, i: &str) -> (String, String) {
        (c.to_string(), i.to_string())
    }

    #[test]
    fn gc_frees_leases_of_attachments_not_in_the_valid_set() {
        let dir = TestDir::new("gc");
        let store = Store::open(&dir, "net").unwrap();
        let c = IpamConfig::parse(&json!({"subnet": "10.1.0.0/24"}), Path::new("/x")).unwrap();
        for id in ["a", "b", "c"] {
            allocate(&c, &store, id, "eth0", &[]).unwrap();
        }
        assert_eq!(gc(&store, &[pair("b", "eth0")]).unwrap(), 2);
        assert!(check(&c, &store, "a", "eth0").is_err());
        assert_eq!(check(&c, &store, "b", "eth0").unwrap().len(), 1);
        assert_eq!(gc(&store, &[pair("b", "eth0")]).unwrap(), 0);
        assert_eq!(gc(&store, &[]).unwrap(), 1);
        assert!(fs::read_dir(store.dir().join("attachments"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn gc_repairs_a_lost_index_and_drops_stale_lines_and_temp_files() {
        let dir = TestDir::new("gc-repair");
        let store = Store::open(&dir, "net").unwrap();
        let c = IpamConfig::parse(&json!({"subnet": "10.1.0.0/24"}), Path::new("/x")).unwrap();
        allocate(&c, &store, "a", "eth0", &[]).unwrap();
        allocate(&c, &store, "b", "eth0", &[]).unwrap();
        fs::remove_file(store.dir().join("attachments/a.eth0")).unwrap();
        // A stale index of its own (b's index was a second name of its lease: replaced, not written through).
        fs::remove_file(store.dir().join("attachments/b.eth0")).unwrap();
        fs::write(
            store.dir().join("attachments/b.eth0"),
            "10.1.0.3\n10.1.0.77\n",
        )
        .unwrap();
        fs::write(store.dir().join(".tmp.10.1.0.9.1234"), "x").unwrap();
        fs::write(store.dir().join("10.1.0.50"), "garbage").unwrap();

        let valid = [pair("a", "eth0"), pair("b", "eth0")];
        assert_eq!(
            gc(&store, &valid).unwrap(),
            1,
            "the unreadable lease is freed"
        );
        assert_eq!(
            fs::read_to_string(store.dir().join("attachments/a.eth0")).unwrap(),
            "10.1.0.2\n"
        );
        assert_eq!(
            fs::read_to_string(store.dir().join("attachments/b.eth0")).unwrap(),
            "10.1.0.3\n"
        );
        assert!(!store.dir().join(".tmp.10.1.0.9.1234").exists());
        assert_eq!(release(&store, "a", "eth0").unwrap().len(), 1);
    }
}
