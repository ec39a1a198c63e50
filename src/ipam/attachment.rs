//! Who holds a lease: a container's interface, validated so it can name a file in the store.

use std::fmt;

use super::error::IpamError;

/// A (container id, interface name) pair whose parts are safe as file-name components.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentId {
    container_id: String,
    ifname: String,
}

fn check_component(what: &'static str, value: &str) -> Result<(), IpamError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value == "." || value == ".." {
        Some("`.` and `..` are not allowed")
    } else if value.contains(['/', '\0', '\n', '\r']) {
        Some("it contains '/', a newline or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(IpamError::InvalidName {
            what,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

impl AttachmentId {
    pub fn new(container_id: &str, ifname: &str) -> Result<Self, IpamError> {
        check_component("container id", container_id)?;
        check_component("interface name", ifname)?;
        Ok(AttachmentId {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        })
    }

    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// File name of this attachment's index: `<container_id>.<ifname>`.
    pub fn index_name(&self) -> String {
        format!("{}.{}", self.container_id, self.ifname)
    }

    /// Lease file content: `<container_id>\n<ifname>\n`.
    pub fn lease_content(&self) -> String {
        format!("{}\n{}\n", self.container_id, self.ifname)
    }

    /// Read a lease file's content back; `None` when it is not two lines of valid names.
    pub fn from_lease_content(text: &str) -> Option<Self> {
        // host-local writes "\r\n"; accept it too so a migrated store still reads.
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        let container_id = lines.next()?;
        let ifname = lines.next()?;
        AttachmentId::new(container_id, ifname).ok()
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "container {} interface {}",
            self.container_id, self.ifname
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_the_store_are_refused() {
        assert!(AttachmentId::new("../x", "eth0").is_err());
        assert!(AttachmentId::new("..", "eth0").is_err());
        assert!(AttachmentId::new("abc", "").is_err());
        assert!(AttachmentId::new("a\nb", "eth0").is_err());
        assert!(AttachmentId::new("abc-1.2_x", "eth0.100").is_ok());
    }

    #[test]
    fn lease_content_round_trips_and_reads_host_local_line_ends() {
        let id = AttachmentId::new("c1", "eth0").unwrap();
        assert_eq!(
            AttachmentId::from_lease_content(&id.lease_content()),
            Some(id.clone())
        );
        assert_eq!(AttachmentId::from_lease_content("c1\r\neth0"), Some(id));
        assert_eq!(AttachmentId::from_lease_content("c1"), None);
    }
}
