//! The on-disk lease store of one network: `<dataDir>/<network>/`.
//!
//! Layout: `lock` (flock'd for every critical section), one file per lease named by the address holding
//! `<container_id>\n<ifname>\n`, `attachments/<container_id>.<ifname>` naming that attachment's addresses
//! (so DEL never scans), and `last_reserved_ip.<set>` for round-robin. The index of an attachment with one
//! address is a second name (hard link) of its lease, whose content then ends with the address: one file
//! per ADD instead of two, which matters where creating a file is the dear part (ext4 without a journal
//! skips every recently freed inode). An index of its own lists one address per line; both are read. An index
//! is only ever replaced (rename), never written through: that would rewrite the lease it may share a file with. Leases and indexes are written to a
//! temporary name and moved into place, so a crash never leaves a half-written one under a real name; a lease
//! moves in with `renameat2(RENAME_NOREPLACE)`, which refuses an existing target like `link(2)` but needs no
//! unlink of the temporary name afterwards. `last_reserved_ip.<set>` is only a hint for where to search next,
//! so it is overwritten in place: a rename over it would make ext4 (auto_da_alloc) start writeback of the
//! file on every ADD, and a torn hint cannot hand out an address twice.
//!
//! No fsync: a lease that a power cut loses belonged to a container that the power cut killed too.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::attachment::AttachmentId;
use super::error::IpamError;
use crate::spare_files::{rename_no_replace, SpareFiles};

const LOCK_FILE: &str = "lock";
const ATTACHMENTS_DIR: &str = "attachments";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const TEMP_PREFIX: &str = ".tmp.";

/// The store directory of one network. Every read or write goes through [`Store::lock`].
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The store with its exclusive lock held; the lock is released when this is dropped.
#[derive(Debug)]
pub struct LockedStore<'a> {
    store: &'a Store,
    _lock: File,
}

impl Store {
    fn dir_of(data_dir: &Path, network: &str) -> Result<PathBuf, IpamError> {
        if network.is_empty() || network == "." || network == ".." || network.contains(['/', '\0'])
        {
            return Err(IpamError::InvalidName {
                what: "network name",
                value: network.to_string(),
                reason: "it must be a non-empty name without '/'",
            });
        }
        Ok(data_dir.join(network))
    }

    /// Open (creating if needed) the store of `network` under `data_dir`. One stat when it exists (no mkdir
    /// answered EEXIST, then a stat, as `create_dir_all` does).
    pub fn open(data_dir: &Path, network: &str) -> Result<Self, IpamError> {
        let store = Store {
            dir: Self::dir_of(data_dir, network)?,
        };
        match fs::metadata(store.dir.join(ATTACHMENTS_DIR)) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => store.create_dirs()?,
            Err(e) => return Err(IpamError::io("stat", &store.dir, e)),
        }
        Ok(store)
    }

    fn create_dirs(&self) -> Result<(), IpamError> {
        let attachments = self.dir.join(ATTACHMENTS_DIR);
        fs::create_dir_all(&attachments)
            .map_err(|e| IpamError::io("create directory", &attachments, e))
    }

    /// The store of `network` if it was ever created; DEL, GC and STATUS use this so they never create one.
    pub fn existing(data_dir: &Path, network: &str) -> Result<Option<Self>, IpamError> {
        let dir = Self::dir_of(data_dir, network)?;
        match fs::metadata(dir.join(ATTACHMENTS_DIR)) {
            Ok(_) => Ok(Some(Store { dir })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IpamError::io("stat", dir, e)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the network's exclusive lock; blocks while another process or thread holds it.
    pub fn lock(&self) -> Result<LockedStore<'_>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create_dirs()?;
                open()
            }
            other => other,
        }
        .map_err(|e| IpamError::io("open lock file", &path, e))?;
        // flock: held per open file description, so threads of one process exclude each other too.
        file.lock().map_err(|e| IpamError::io("lock", &path, e))?;
        Ok(LockedStore {
            store: self,
            _lock: file,
        })
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, IpamError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IpamError::io("read", path, e)),
    }
}

fn remove_optional(path: &Path) -> Result<(), IpamError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(IpamError::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn parse_ip_lines(text: &str) -> Vec<IpAddr> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The addresses the index called `name` (`<container_id>.<ifname>`) lists: one per line in an index of its
/// own; after the holder's two lines in a lease that is also the index (its first lines then name `name`).
fn index_addresses(name: &str, text: &str) -> Vec<IpAddr> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let holder = (lines.next(), lines.next());
    match holder {
        (Some(id), Some(ifname))
            if name.strip_prefix(id).and_then(|r| r.strip_prefix('.')) == Some(ifname) =>
        {
            lines.filter_map(|l| l.trim().parse().ok()).collect()
        }
        _ => parse_ip_lines(text),
    }
}

impl LockedStore<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    fn lease_path(&self, ip: IpAddr) -> PathBuf {
        // IPv6 text with ':' is a valid Linux file name; host-local names leases the same way.
        self.path(&ip.to_string())
    }

    /// Files the stores of this data directory are done with, for their next lease or index (see
    /// `spare_files`): kept beside the networks' stores, so removing a network's store leaves nothing.
    fn spares(&self) -> SpareFiles {
        SpareFiles::of(self.store.dir.parent().unwrap_or(&self.store.dir))
    }

    /// Removes `path`, keeping its file as a spare when it has no other name.
    fn retire(&self, path: &Path) -> Result<(), IpamError> {
        self.spares()
            .retire(path)
            .map(drop)
            .map_err(|e| IpamError::io("remove", path, e))
    }

    fn index_path(&self, name: &str) -> PathBuf {
        self.store.dir.join(ATTACHMENTS_DIR).join(name)
    }

    /// Write `content` to a temporary file in the same directory as `target` and return its path.
    fn write_temp(&self, target: &Path, content: &str) -> Result<PathBuf, IpamError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = target.with_file_name(format!("{TEMP_PREFIX}{name}.{}", std::process::id()));
        self.spares()
            .write_new(&temp, content.as_bytes())
            .map_err(|e| IpamError::io("write", &temp, e))?;
        Ok(temp)
    }

    fn write_replacing(&self, target: &Path, content: &str) -> Result<(), IpamError> {
        let temp = match self.write_temp(target, content) {
            // attachments/ removed by hand under a live store: make it again.
            Err(IpamError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                self.store.create_dirs()?;
                self.write_temp(target, content)?
            }
            other => other?,
        };
        fs::rename(&temp, target).map_err(|e| {
            let _ = fs::remove_file(&temp);
            IpamError::io("rename into place", target, e)
        })
    }

    /// Whether a lease file exists for `ip`.
    pub fn lease_exists(&self, ip: IpAddr) -> Result<bool, IpamError> {
        let path = self.lease_path(ip);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(IpamError::io("stat", &path, e)),
        }
    }

    /// The holder of `ip`; `Ok(None)` when free. A lease whose content cannot be read back is reported as
    /// held by "an unreadable lease" so it is never handed out twice.
    pub fn lease_owner(&self, ip: IpAddr) -> Result<Option<LeaseHolder>, IpamError> {
        Ok(read_optional(&self.lease_path(ip))?.map(|text| {
            AttachmentId::from_lease_content(&text)
                .map(LeaseHolder::Attachment)
                .unwrap_or(LeaseHolder::Unreadable)
        }))
    }

    /// Create the lease file for `ip`. Returns `Ok(false)` if one already exists: the complete file moves in
    /// under a name that must not exist yet (O_EXCL semantics on top of the complete content).
    pub fn create_lease(&self, ip: IpAddr, owner: &AttachmentId) -> Result<bool, IpamError> {
        self.create_lease_holding(ip, &owner.lease_content())
    }

    /// [`LockedStore::create_lease`] for an attachment whose only address is `ip`, with its index made as a
    /// second name of the lease (see the module doc). `Ok(false)` when the lease exists. An index that
    /// cannot be linked is written as a file of its own.
    pub fn create_lease_with_index(
        &self,
        ip: IpAddr,
        owner: &AttachmentId,
    ) -> Result<bool, IpamError> {
        let content = format!("{}{ip}\n", owner.lease_content());
        if !self.create_lease_holding(ip, &content)? {
            return Ok(false);
        }
        let (lease, index) = (self.lease_path(ip), self.index_path(&owner.index_name()));
        let linked = match fs::hard_link(&lease, &index) {
            // attachments/ removed by hand under a live store: make it again.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.store.create_dirs()?;
                fs::hard_link(&lease, &index)
            }
            other => other,
        };
        if let Err(e) = linked {
            tracing::debug!(error = %e, index = %index.display(), "index not linked to its lease; writing it");
            self.write_attachment(owner, &[ip])?;
        }
        Ok(true)
    }

    /// Moves a complete lease file holding `content` in under `ip`'s name, unless one is there.
    fn create_lease_holding(&self, ip: IpAddr, content: &str) -> Result<bool, IpamError> {
        let target = self.lease_path(ip);
        let temp = self.write_temp(&target, content)?;
        let moved = match rename_no_replace(&temp, &target) {
            Ok(()) => Ok(()),
            // A file system without RENAME_NOREPLACE: link(2) refuses to replace too.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let linked = fs::hard_link(&temp, &target);
                let _ = fs::remove_file(&temp);
                linked
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        };
        match moved {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(IpamError::io("create lease", &target, e)),
        }
    }

    pub fn remove_lease(&self, ip: IpAddr) -> Result<(), IpamError> {
        self.retire(&self.lease_path(ip))
    }

    /// Every leased address (scans the directory; for GC and STATUS, never for ADD/DEL).
    pub fn leases(&self) -> Result<Vec<IpAddr>, IpamError> {
        let entries =
            fs::read_dir(&self.store.dir).map_err(|e| IpamError::io("list", &self.store.dir, e))?;
        let mut ips = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IpamError::io("list", &self.store.dir, e))?;
            if let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                ips.push(ip);
            }
        }
        Ok(ips)
    }

    /// Addresses listed in the index of `id`; `Ok(None)` when it has none.
    pub fn attachment_ips(&self, id: &AttachmentId) -> Result<Option<Vec<IpAddr>>, IpamError> {
        self.attachment_ips_by_name(&id.index_name())
    }

    pub fn attachment_ips_by_name(&self, name: &str) -> Result<Option<Vec<IpAddr>>, IpamError> {
        Ok(read_optional(&self.index_path(name))?.map(|t| index_addresses(name, &t)))
    }

    pub fn write_attachment(&self, id: &AttachmentId, ips: &[IpAddr]) -> Result<(), IpamError> {
        self.write_attachment_by_name(&id.index_name(), ips)
    }

    pub fn write_attachment_by_name(&self, name: &str, ips: &[IpAddr]) -> Result<(), IpamError> {
        let content: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        self.write_replacing(&self.index_path(name), &content)
    }

    pub fn remove_attachment(&self, id: &AttachmentId) -> Result<(), IpamError> {
        self.remove_attachment_by_name(&id.index_name())
    }

    pub fn remove_attachment_by_name(&self, name: &str) -> Result<(), IpamError> {
        self.retire(&self.index_path(name))
    }

    /// File names in `attachments/` (temporary files left by a crash excluded).
    pub fn attachment_names(&self) -> Result<Vec<String>, IpamError> {
        let dir = self.store.dir.join(ATTACHMENTS_DIR);
        let entries = fs::read_dir(&dir).map_err(|e| IpamError::io("list", &dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IpamError::io("list", &dir, e))?;
            if let Ok(name) = entry.file_name().into_string() {
                if !name.starts_with(TEMP_PREFIX) {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    /// Remove temporary files a crashed writer left behind; returns how many.
    pub fn remove_stale_temp_files(&self) -> Result<usize, IpamError> {
        let mut removed = 0;
        for dir in [self.store.dir.clone(), self.store.dir.join(ATTACHMENTS_DIR)] {
            let entries = fs::read_dir(&dir).map_err(|e| IpamError::io("list", &dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| IpamError::io("list", &dir, e))?;
                if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    remove_optional(&entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Where round-robin stopped in range set `set`.
    pub fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>, IpamError> {
        let path = self.path(&format!("{LAST_RESERVED_PREFIX}{set}"));
        // One read into a small buffer: an address is at most 45 bytes of text.
        let mut text = [0u8; 64];
        let read = match File::open(&path).and_then(|mut f| f.read(&mut text)) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IpamError::io("read", &path, e)),
        };
        Ok(std::str::from_utf8(&text[..read])
            .ok()
            .and_then(|t| t.trim().parse().ok()))
    }

    /// Overwrites the hint in place (see the module doc for why no temporary file).
    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.path(&format!("{LAST_RESERVED_PREFIX}{set}"));
        let content = format!("{ip}\n");
        let write = || -> std::io::Result<()> {
            // No O_TRUNC: ext4 treats truncate-to-zero-then-write like a rename over the file.
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.write_all_at(content.as_bytes(), 0)?;
            file.set_len(content.len() as u64)
        };
        write().map_err(|e| IpamError::io("write", &path, e))
    }
}

/// Who a lease file says holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseHolder {
    Attachment(AttachmentId),
    /// The file exists but its content is not `<container_id>\n<ifname>\n`.
    Unreadable,
}

impl LeaseHolder {
    pub fn is(&self, id: &AttachmentId) -> bool {
        matches!(self, LeaseHolder::Attachment(held) if held == id)
    }
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseHolder::Attachment(id) => write!(f, "{id}"),
            LeaseHolder::Unreadable => write!(f, "an unreadable lease file (run GC to repair)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TestDir;

    #[test]
    fn a_lease_is_created_once_and_reads_back_its_holder() {
        let dir = TestDir::new("lease");
        let store = Store::open(&dir, "net1").unwrap();
        let locked = store.lock().unwrap();
        let ip: IpAddr = "fd00::5".parse().unwrap();
        let a = AttachmentId::new("c1", "eth0").unwrap();
        let b = AttachmentId::new("c2", "eth0").unwrap();
        assert!(locked.create_lease(ip, &a).unwrap());
        assert!(!locked.create_lease(ip, &b).unwrap());
        assert!(locked.lease_owner(ip).unwrap().unwrap().is(&a));
        assert_eq!(
            fs::read_to_string(store.dir().join("fd00::5")).unwrap(),
            "c1\neth0\n"
        );
        assert_eq!(locked.leases().unwrap(), vec![ip]);
        locked.remove_lease(ip).unwrap();
        locked.remove_lease(ip).unwrap();
        assert_eq!(locked.lease_owner(ip).unwrap(), None);
    }

    #[test]
    fn attachment_index_and_last_reserved_round_trip() {
        let dir = TestDir::new("index");
        let store = Store::open(&dir, "net1").unwrap();
        let locked = store.lock().unwrap();
        let id = AttachmentId::new("c1", "eth0").unwrap();
        assert_eq!(locked.attachment_ips(&id).unwrap(), None);
        let ips: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        locked.write_attachment(&id, &ips).unwrap();
        assert_eq!(locked.attachment_ips(&id).unwrap(), Some(ips));
        assert_eq!(
            locked.attachment_names().unwrap(),
            vec!["c1.eth0".to_string()]
        );
        locked.remove_attachment(&id).unwrap();
        assert!(locked.attachment_names().unwrap().is_empty());
        assert_eq!(locked.last_reserved(0).unwrap(), None);
        locked
            .set_last_reserved(0, "10.0.0.9".parse().unwrap())
            .unwrap();
        assert_eq!(
            locked.last_reserved(0).unwrap(),
            Some("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn a_shorter_last_reserved_overwrites_a_longer_one_and_leases_leave_no_temp_file() {
        let dir = TestDir::new("inplace");
        let store = Store::open(&dir, "net1").unwrap();
        let locked = store.lock().unwrap();
        for ip in ["10.0.0.100", "10.0.0.9", "fd00::1234:5678", "10.0.0.10"] {
            locked.set_last_reserved(1, ip.parse().unwrap()).unwrap();
            assert_eq!(locked.last_reserved(1).unwrap(), Some(ip.parse().unwrap()));
            assert_eq!(
                fs::read_to_string(store.dir().join("last_reserved_ip.1")).unwrap(),
                format!("{ip}\n")
            );
        }
        let a = AttachmentId::new("c1", "eth0").unwrap();
        assert!(locked
            .create_lease("10.0.0.9".parse().unwrap(), &a)
            .unwrap());
        assert!(!locked
            .create_lease("10.0.0.9".parse().unwrap(), &a)
            .unwrap());
        assert_eq!(locked.remove_stale_temp_files().unwrap(), 0);
    }

    #[test]
    fn network_names_that_escape_the_data_dir_are_refused() {
        let dir = TestDir::new("names");
        assert!(Store::open(&dir, "../etc").is_err());
        assert!(Store::open(&dir, "..").is_err());
        assert!(Store::open(&dir, "").is_err());
        assert!(Store::existing(&dir, "net1").unwrap().is_none());
        Store::open(&dir, "net1").unwrap();
        assert!(Store::existing(&dir, "net1").unwrap().is_some());
    }
}
