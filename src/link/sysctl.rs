//! Kernel parameters under /proc/sys.
//!
//! /proc/sys/net shows the network namespace of the thread that *opens* the file. To change a
//! setting of another namespace, wrap the call in [`crate::netns::NetNs::run`].

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::LinkError;

const PROC_SYS: &str = "/proc/sys";

/// Writes `value` to the sysctl `key`, given as a path below /proc/sys ("net/ipv4/ip_forward")
/// or as a full "/proc/sys/..." path. Slashes, not dots: interface names may contain dots.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), LinkError> {
    let path = sysctl_path(key)?;
    let write = || -> std::io::Result<()> {
        // No O_CREAT: a missing key means a missing feature, not a file to make.
        let mut file = OpenOptions::new().write(true).open(&path)?;
        file.write_all(value.as_bytes())
    };
    write().map_err(|source| LinkError::Sysctl {
        op: "writing",
        path,
        source,
    })?;
    tracing::trace!(key, value, "set sysctl");
    Ok(())
}

/// Reads the sysctl `key` (see [`set_sysctl`]), without the trailing newline.
pub fn get_sysctl(key: &str) -> Result<String, LinkError> {
    let path = sysctl_path(key)?;
    let read = || -> std::io::Result<String> {
        let mut text = String::new();
        std::fs::File::open(&path)?.read_to_string(&mut text)?;
        Ok(text)
    };
    let text = read().map_err(|source| LinkError::Sysctl {
        op: "reading",
        path,
        source,
    })?;
    Ok(text.trim_end_matches('\n').to_string())
}

fn sysctl_path(key: &str) -> Result<PathBuf, LinkError> {
    let relative = key
        .strip_prefix(PROC_SYS)
        .unwrap_or(key)
        .trim_start_matches('/');
    let invalid = |reason| LinkError::InvalidArgument {
        what: "sysctl key",
        value: key.to_string(),
        reason,
    };
    if relative.is_empty() {
        return Err(invalid("it is empty"));
    }
    if !Path::new(relative)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(invalid("it must stay below /proc/sys (no '..')"));
    }
    Ok(Path::new(PROC_SYS).join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_resolved_below_proc_sys() {
        assert_eq!(
            sysctl_path("net/ipv4/ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("/proc/sys/net/ipv6/conf/eth0.100/accept_ra").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/accept_ra")
        );
        assert!(sysctl_path("net/../../etc/passwd").is_err());
        assert!(sysctl_path("").is_err());
    }

    #[test]
    fn reads_a_sysctl() {
        let value = get_sysctl("net/ipv4/ip_forward").unwrap();
        assert!(value == "0" || value == "1", "{value:?}");
    }

    #[test]
    fn missing_key_names_the_path() {
        let err = get_sysctl("net/ipv4/no_such_key").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading sysctl /proc/sys/net/ipv4/no_such_key failed"),
            "{err}"
        );
    }
}
