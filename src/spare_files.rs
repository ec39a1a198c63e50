//! Emptied state files kept for reuse. Creating a file can be the dearest step of an ADD: on ext4 without a
//! journal (this project's VMs) the inode allocator checks every inode freed in the last seconds
//! (`recently_deleted`), so while containers come and go a new file cost 0.6-1 ms with 1000 containers on
//! the network (strace of `portmap_scale`). A DEL that moves a record it is done with into `.spare/` at the
//! root of its tree (the state directory, an IPAM data directory: one file system, so a rename moves it), and
//! an ADD that renames one back out, allocate and free no inode in a steady state. A spare is only ever a
//! file with one name: one that has another (an IPAM lease that is also its index) is deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Spares kept per tree; a steady state needs one per kind of file written per ADD.
const SLOTS: usize = 4;
const DIR_NAME: &str = ".spare";

/// The spares of one tree, kept in `.spare/` at its root (slots `0`, `1`, ...).
#[derive(Debug, Clone)]
pub struct SpareFiles {
    dir: PathBuf,
}

impl SpareFiles {
    /// The spares for files anywhere under `root` (a rename across file systems fails and then a file
    /// is created or deleted as without spares).
    pub fn of(root: &Path) -> SpareFiles {
        SpareFiles {
            dir: root.join(DIR_NAME),
        }
    }

    fn slot(&self, n: usize) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// Writes `bytes` as the whole content of `path`, a new name nobody else writes (a temporary one): a spare
    /// renamed to it when there is one, else a new file. Never truncates to zero first, which would make
    /// ext4 (auto_da_alloc) start writeback of the file when it is closed.
    pub fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = self.take(path)?;
        file.write_all_at(bytes, 0)?;
        file.set_len(bytes.len() as u64)
    }

    fn take(&self, path: &Path) -> io::Result<File> {
        // Retire fills the lowest free slot, so the filled ones are `0..k`: take the highest, keeping that
        // so. Taking slot 0 first left `1..k` filled behind an empty 0, where the search stopped: every ADD
        // that writes two files to one tree created the second (about 1 ms here) and its DEL deleted it.
        for n in (0..SLOTS).rev() {
            match fs::rename(self.slot(n), path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(_) => break,
            }
            let file = OpenOptions::new().write(true).open(path)?;
            if file.metadata()?.nlink() == 1 {
                return Ok(file);
            }
            // Linked elsewhere behind our back: not ours to rewrite.
            fs::remove_file(path)?;
        }
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Removes `path`, keeping its file as a spare when it has no other name and a slot is free. `Ok(false)`
    /// when there was nothing to remove.
    pub fn retire(&self, path: &Path) -> io::Result<bool> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.is_file() && meta.nlink() == 1 && self.keep(path) {
            return Ok(true);
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves `path` into the first free slot; false when none is free or the move fails.
    fn keep(&self, path: &Path) -> bool {
        for n in 0..SLOTS {
            match rename_no_replace(path, &self.slot(n)) {
                Ok(()) => return true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == ErrorKind::NotFound && n == 0 => {
                    // The first retire in this directory: make `.spare/` (one inode, once).
                    if fs::create_dir(&self.dir).is_err()
                        || rename_no_replace(path, &self.slot(0)).is_err()
                    {
                        return false;
                    }
                    return true;
                }
                Err(_) => return false,
            }
        }
        false
    }
}

/// `renameat2(from, to, RENAME_NOREPLACE)`: AlreadyExists when `to` exists, EINVAL where unsupported.
/// The system call itself: nix and libc wrap it for glibc only, and the plugins also build with musl.
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that live across the call; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TestDir;
    fn ino(p: &Path) -> u64 {
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn a_rename_without_replace_moves_a_file_and_never_overwrites_one() {
        let d = TestDir::new("spare-noreplace");
        let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let refused = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
        rename_no_replace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&c).unwrap(), b"a");
    }

    #[test]
    fn a_retired_file_is_the_next_new_file_with_only_the_new_content() {
        let d = TestDir::new("spare-reuse");
        let spares = SpareFiles::of(&d);
        let (a, b) = (d.join("a.json"), d.join(".b.tmp"));
        spares.write_new(&a, b"a longer old content").unwrap();
        let old = ino(&a);
        assert!(spares.retire(&a).unwrap());
        assert!(!a.exists());
        spares.write_new(&b, b"new").unwrap();
        assert_eq!(ino(&b), old, "the spare's inode was reused");
        assert_eq!(fs::read(&b).unwrap(), b"new");
        assert!(fs::read_dir(d.join(DIR_NAME)).unwrap().next().is_none());
        assert!(!spares.retire(&a).unwrap(), "nothing to remove");
    }

    #[test]
    fn a_file_with_a_second_name_is_deleted_not_kept() {
        let d = TestDir::new("spare-linked");
        let spares = SpareFiles::of(&d);
        let (lease, index) = (d.join("10.0.0.2"), d.join("c1.eth0"));
        spares.write_new(&lease, b"c1\neth0\n10.0.0.2\n").unwrap();
        fs::hard_link(&lease, &index).unwrap();
        assert!(spares.retire(&lease).unwrap());
        assert!(!d.join(DIR_NAME).exists(), "no spare of a linked file");
        assert!(spares.retire(&index).unwrap());
        assert!(d.join(DIR_NAME).join("0").exists(), "its last name is kept");
    }

    #[test]
    fn two_files_written_and_retired_per_call_reuse_spares_and_make_no_new_inode() {
        let d = TestDir::new("spare-two-kinds");
        let spares = SpareFiles::of(&d);
        let (record, ports) = (d.join("c.eth0.json"), d.join("ports.json"));
        // The first call's files are new; from then on each call writes two files and retires two, as an
        // ADD writes an attachment record and a portmap record and their DEL retires both.
        let mut inodes = std::collections::BTreeSet::new();
        for call in 0..6 {
            spares.write_new(&ports, b"ports").unwrap();
            spares.write_new(&record, b"record").unwrap();
            inodes.insert(ino(&ports));
            inodes.insert(ino(&record));
            assert!(spares.retire(&ports).unwrap());
            assert!(spares.retire(&record).unwrap());
            assert_eq!(inodes.len(), 2, "call {call} made a new inode");
        }
    }

    #[test]
    fn at_most_the_slots_are_kept_and_the_rest_deleted() {
        let d = TestDir::new("spare-slots");
        let spares = SpareFiles::of(&d);
        let files: Vec<PathBuf> = (0..SLOTS + 2)
            .map(|n| d.join(format!("{n}.json")))
            .collect();
        for p in &files {
            spares.write_new(p, b"x").unwrap();
        }
        for p in &files {
            assert!(spares.retire(p).unwrap());
            assert!(!p.exists());
        }
        assert_eq!(fs::read_dir(d.join(DIR_NAME)).unwrap().count(), SLOTS);
    }
}
