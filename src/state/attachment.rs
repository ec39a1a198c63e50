//! The attachment record: what an ADD made, written to the state directory before the plugin answers, so
//! DEL works without prevResult, the last container of a network can be detected, and `tetherd`/the CLI can
//! rebuild everything after a restart (docs/design.md §1: plugins write their facts first).

use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::dir_scan;
use super::DriverKind;
use crate::container_id::ContainerId;
use crate::ifname::IfName;
use crate::link::MacAddr;
use crate::netns::NsId;
use crate::state_file;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    pub network: String,
    pub container_id: ContainerId,
    pub ifname: IfName,
    pub driver: DriverKind,
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The identity of the namespace `netns` referred to at ADD, so tetherd and `tether gc` can tell when it
    /// is gone even if the path now names another one (a reused pid or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_id: Option<NsId>,
    /// Host-side interface (veth) and the bridge it hangs on, when the driver made one.
    #[serde(default)]
    pub host_ifname: Option<IfName>,
    #[serde(default)]
    pub bridge: Option<IfName>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Whether ADD put the container's MAC into the macspoofchk sets (so DEL knows to remove it).
    #[serde(default)]
    pub macspoofchk: bool,
    pub ips: Vec<IpNetwork>,
    /// The container's name (CNI_ARGS `K8S_POD_NAME`: podman and tether's CLI pass the container name there).
    #[serde(default)]
    pub name: Option<String>,
    /// Further names on this network (the `aliases` capability).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether tetherd serves DNS to this container and resolves its names on the network.
    #[serde(default)]
    pub dns: bool,
    /// An internal network: tetherd answers its names but forwards nothing to the host's resolvers.
    #[serde(default)]
    pub internal: bool,
    /// The container held 127.0.0.11:53 itself at ADD: tetherd's resolver stays out of its namespace
    /// (its names still resolve for others).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_resolver: bool,
    /// Another host's overlay container (driver `overlay-remote`): where it lives and what its host
    /// says of it as a service backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteEndpoint>,
}

/// What the cluster store says of another host's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEndpoint {
    /// The host's control-plane address.
    pub host: std::net::IpAddr,
    /// The services its host balances it in (healthy by that host's probes or without checks, and not
    /// draining): only those put it in their maps here.
    #[serde(default)]
    pub healthy_for: Vec<String>,
}

pub use crate::state_file::StateFileError as RecordError;

/// `<state>/attachments`: one directory per network, holding that network's records. The one place that
/// names the layout.
pub fn attachments_root(state_dir: &Path) -> PathBuf {
    state_dir.join("attachments")
}

/// The records of one network: `<state>/attachments/<network>/<container>.<ifname>.json`.
pub struct RecordDir {
    dir: PathBuf,
}

impl RecordDir {
    pub fn new(state_dir: &Path, network: &str) -> Self {
        Self {
            dir: attachments_root(state_dir).join(network),
        }
    }

    pub fn for_network(network: &str) -> Self {
        Self::new(&crate::paths::state_dir(), network)
    }

    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}.{ifname}.json"))
    }

    pub fn write(&self, rec: &AttachmentRecord) -> Result<(), RecordError> {
        state_file::write_json(&self.path(&rec.container_id, &rec.ifname), rec)
    }

    pub fn read(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<AttachmentRecord>, RecordError> {
        state_file::read_json(&self.path(container_id, ifname))
    }

    /// Ok(false) when there was nothing to remove.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<bool, RecordError> {
        state_file::retire(&self.path(container_id, ifname))
    }

    /// True when no container is attached. Stops at the first record, reading the directory 1 KiB at a time:
    /// `read_dir` fills 32 KiB per call, about 800 entries, which every DEL paid with 1000 containers.
    pub fn is_empty(&self) -> bool {
        !dir_scan::has_entry(&self.dir, |name| name.ends_with(b".json")).unwrap_or(false)
    }

    pub fn list(&self) -> Result<Vec<AttachmentRecord>, RecordError> {
        state_file::list_json(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample(cid: &str) -> AttachmentRecord {
        AttachmentRecord {
            network: "n1".into(),
            container_id: cid.parse().unwrap(),
            ifname: "eth0".parse().unwrap(),
            driver: DriverKind::Bridge,
            netns: Some("/run/netns/x".into()),
            netns_id: Some(NsId {
                dev: 4,
                ino: 4026532000,
            }),
            host_ifname: Some("tv0123".parse().unwrap()),
            bridge: Some("tether0".parse().unwrap()),
            mac: None,
            macspoofchk: false,
            ips: vec!["10.0.0.2/24".parse().unwrap()],
            name: Some("web".into()),
            aliases: vec!["www".into()],
            dns: true,
            internal: false,
            own_resolver: false,
            remote: None,
        }
    }

    #[test]
    fn write_read_list_remove_round_trip() {
        let tmp = std::env::temp_dir().join(format!("tether-rec-{}", std::process::id()));
        let dir = RecordDir::new(&tmp, "n1");
        assert!(dir.is_empty());
        dir.write(&sample("a")).unwrap();
        dir.write(&sample("b")).unwrap();
        assert!(!dir.is_empty());
        assert_eq!(dir.read("a", "eth0").unwrap(), Some(sample("a")));
        assert_eq!(dir.list().unwrap().len(), 2);
        assert!(dir.remove("a", "eth0").unwrap());
        assert!(!dir.remove("a", "eth0").unwrap());
        assert!(dir.remove("b", "eth0").unwrap());
        assert!(dir.is_empty());
        fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn records_written_before_dns_fields_still_read() {
        let old = r#"{"network":"n1","containerId":"a","ifname":"eth0","driver":"bridge","ips":["10.0.0.2/24"]}"#;
        let rec: AttachmentRecord = serde_json::from_str(old).unwrap();
        assert_eq!(rec.name, None);
        assert!(rec.aliases.is_empty() && !rec.dns && !rec.internal);
    }

    #[test]
    fn a_record_among_many_other_files_makes_the_directory_non_empty() {
        let tmp = std::env::temp_dir().join(format!("tether-rec-many-{}", std::process::id()));
        let dir = RecordDir::new(&tmp, "n1");
        fs::create_dir_all(&dir.dir).unwrap();
        // More names than one small getdents64 batch holds, none of them a record.
        for i in 0..300 {
            fs::write(dir.dir.join(format!(".tmp-leftover-{i:04}")), "").unwrap();
        }
        assert!(dir.is_empty());
        dir.write(&sample("late")).unwrap();
        assert!(!dir.is_empty());
        fs::remove_dir_all(tmp).unwrap();
    }
}
