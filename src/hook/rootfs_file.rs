//! Writing a file under a container's root filesystem from the host side, without ever following a
//! symlink out of it. A rootfs may ship `/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf` or
//! even `/etc -> /host-etc`; resolved on the host, either would overwrite a host file. So: the directory
//! is resolved and must stay inside the rootfs, the file is written to a fresh temporary name with
//! O_EXCL|O_NOFOLLOW and renamed over the target (rename replaces a symlink, it does not follow it).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::HookError;

/// Writes `contents` to `<rootfs>/<dir>/<name>` (mode 0644), creating `dir` when missing.
pub fn write_in_rootfs(
    rootfs: &Path,
    dir: &str,
    name: &str,
    contents: &str,
) -> Result<PathBuf, HookError> {
    let target = rootfs.join(dir).join(name);
    let fail = |reason: String| HookError::RootfsFile {
        path: target.clone(),
        reason,
    };
    let root = rootfs
        .canonicalize()
        .map_err(|e| fail(format!("resolving the rootfs {}: {e}", rootfs.display())))?;
    let wanted = root.join(dir);
    if let Err(e) = std::fs::create_dir(&wanted) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(fail(format!("creating {}: {e}", wanted.display())));
        }
    }
    let parent = wanted
        .canonicalize()
        .map_err(|e| fail(format!("resolving {}: {e}", wanted.display())))?;
    if !parent.starts_with(&root) {
        return Err(fail(format!(
            "{} leads outside the container's rootfs (to {}); not writing through it",
            wanted.display(),
            parent.display()
        )));
    }
    let temporary = parent.join(format!(".{name}.tether-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)
        .and_then(|mut file| file.write_all(contents.as_bytes()));
    if let Err(e) = written.and_then(|()| std::fs::rename(&temporary, parent.join(name))) {
        let _ = std::fs::remove_file(&temporary);
        return Err(fail(e.to_string()));
    }
    Ok(parent.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tether-rootfs-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_etc_is_created_and_the_file_written() {
        let root = scratch("plain");
        let path = write_in_rootfs(&root, "etc", "hosts", "x\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_symlinked_file_is_replaced_not_followed() {
        let root = scratch("link");
        let outside = scratch("link-outside");
        let victim = outside.join("resolv.conf");
        std::fs::write(&victim, "host\n").unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("etc/resolv.conf")).unwrap();
        write_in_rootfs(&root, "etc", "resolv.conf", "container\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
        let written = root.join("etc/resolv.conf");
        assert!(!written.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(written).unwrap(), "container\n");
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn an_etc_symlink_leaving_the_rootfs_is_refused() {
        let root = scratch("escape");
        let outside = scratch("escape-outside");
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        let err = write_in_rootfs(&root, "etc", "hosts", "x\n").unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(!outside.join("hosts").exists());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }
}
