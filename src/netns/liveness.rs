//! Whether a container's network namespace still lives. A namespace is gone when no process (no thread:
//! threads can `setns`) is in it and the path ADD was given no longer refers to it. A socket in the
//! namespace (tetherd's resolver) does not count: it is what must be let go, not a reason to keep.
//!
//! One scan of `/proc` answers for every namespace at once, and only a path that no longer names its
//! namespace asks for it: while the runtime keeps each container's path (its bind mount lives until DEL),
//! a periodic check reads one `statx` per container and no `/proc` at all.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::NsId;

/// The namespaces some thread of some process is in, as seen in one scan.
#[derive(Debug, Clone, Default)]
pub struct Occupied(HashSet<NsId>);

impl Occupied {
    /// Scans `<root>/<pid>/task/<tid>/ns/net` (a test points it at a fake tree).
    pub fn scan_under(root: &Path) -> Occupied {
        let mut seen = HashSet::new();
        let Ok(pids) = fs::read_dir(root) else {
            return Occupied(seen);
        };
        for pid in pids.flatten() {
            let name = pid.file_name();
            if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            // A process that exits meanwhile has no task directory: it is in nothing any more.
            let Ok(tasks) = fs::read_dir(pid.path().join("task")) else {
                continue;
            };
            for task in tasks.flatten() {
                if let Some(id) = NsId::of_path(&task.path().join("ns/net")) {
                    seen.insert(id);
                }
            }
        }
        Occupied(seen)
    }

    pub fn contains(&self, id: &NsId) -> bool {
        self.0.contains(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// [`Occupied`], scanned the first time it is asked for and kept for the rest of one check.
#[derive(Debug)]
pub struct OccupiedOnDemand {
    root: PathBuf,
    scanned: Option<Occupied>,
}

impl OccupiedOnDemand {
    /// Of the real `/proc` (`/proc/*/task/*/ns/net`).
    pub fn of_proc() -> OccupiedOnDemand {
        OccupiedOnDemand::under(Path::new("/proc"))
    }

    /// Of a tree laid out as `/proc` (a test's fake one).
    pub fn under(root: &Path) -> OccupiedOnDemand {
        OccupiedOnDemand {
            root: root.to_path_buf(),
            scanned: None,
        }
    }

    pub fn get(&mut self) -> &Occupied {
        self.scanned
            .get_or_insert_with(|| Occupied::scan_under(&self.root))
    }

    /// Whether `/proc` was read.
    pub fn scanned(&self) -> bool {
        self.scanned.is_some()
    }
}

/// Whether the namespace given to ADD as `path` (identity `id` when it was recorded) is gone.
///
/// With an identity: gone when `path` refers to another namespace or to nothing and no thread is in it
/// (only then is `/proc` scanned). Without one (a record written before identities were kept, an entry of
/// another runtime): only the path can tell, so gone when it no longer refers to a namespace at all.
pub fn is_gone(path: &Path, id: Option<NsId>, occupied: &mut OccupiedOnDemand) -> bool {
    match id {
        Some(id) => NsId::of_path(path) != Some(id) && !occupied.get().contains(&id),
        None => super::NetNs::open(path).is_err_and(|e| {
            matches!(
                e,
                super::NetnsError::NotFound { .. } | super::NetnsError::NotNetns { .. }
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-live-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fake `/proc` where each task's `ns/net` is a file of its own (its inode stands for a namespace).
    fn fake_task(root: &Path, pid: &str, tid: &str) -> NsId {
        let dir = root.join(pid).join("task").join(tid).join("ns");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("net"), b"").unwrap();
        NsId::of_path(&dir.join("net")).unwrap()
    }

    #[test]
    fn every_thread_of_every_process_counts_and_other_entries_do_not() {
        let root = scratch("scan");
        let main = fake_task(&root, "10", "10");
        let thread = fake_task(&root, "10", "11");
        let other = fake_task(&root, "12", "12");
        let not_a_pid = fake_task(&root, "self", "1");
        let occupied = Occupied::scan_under(&root);
        assert_eq!(occupied.len(), 3);
        assert!(
            occupied.contains(&main) && occupied.contains(&thread) && occupied.contains(&other)
        );
        assert!(!occupied.contains(&not_a_pid));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_real_proc_shows_our_own_namespace() {
        let own = NsId::of_path(Path::new("/proc/thread-self/ns/net")).unwrap();
        assert!(OccupiedOnDemand::of_proc().get().contains(&own));
    }

    #[test]
    fn a_namespace_is_gone_only_when_neither_path_nor_thread_holds_it() {
        let root = scratch("gone");
        let path = root.join("netns-file");
        fs::write(&path, b"").unwrap();
        let id = NsId::of_path(&path).unwrap();
        let nobody_root = root.join("empty-proc");
        let nobody = || OccupiedOnDemand::under(&nobody_root);
        let mut asked = nobody();
        assert!(
            !is_gone(&path, Some(id), &mut asked),
            "the path still refers to it"
        );
        assert!(
            !asked.scanned(),
            "a path that names its namespace settles it without /proc"
        );

        // The path now refers to another namespace (a reused name or pid): the recorded one is gone.
        let replaced = NsId {
            dev: id.dev,
            ino: id.ino.wrapping_add(1),
        };
        let mut asked = nobody();
        assert!(is_gone(&path, Some(replaced), &mut asked));
        assert!(asked.scanned());

        let proc_root = root.join("proc");
        let held = fake_task(&proc_root, "40", "41");
        let mut occupied = OccupiedOnDemand::under(&proc_root);
        assert!(!is_gone(&root.join("missing"), Some(held), &mut occupied));
        // Scanned once for the whole check: a task that appears later is not seen by it.
        let later = fake_task(&proc_root, "50", "50");
        assert!(is_gone(&root.join("missing"), Some(later), &mut occupied));
        assert!(is_gone(&root.join("missing"), Some(held), &mut nobody()));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn without_an_identity_only_a_path_that_is_no_namespace_is_gone() {
        let mut nobody = OccupiedOnDemand::under(Path::new("/nonexistent-proc"));
        assert!(!is_gone(Path::new("/proc/self/ns/net"), None, &mut nobody));
        assert!(is_gone(
            Path::new("/run/netns/tt-no-such-namespace"),
            None,
            &mut nobody
        ));
        assert!(is_gone(Path::new("/proc/self/status"), None, &mut nobody));
        assert!(!nobody.scanned());
    }
}
