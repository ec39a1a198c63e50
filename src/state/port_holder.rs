//! Who holds a host port on this host: another service's routing-mesh publication, a container's
//! published port (table `inet tether`), or a socket bound in this namespace. Asked by `tether service
//! create/update --publish` and by tetherd before it takes another host's publication as a copy.

use std::net::IpAddr;
use std::path::Path;

use super::mesh::{MeshDir, Publish};
use super::RecordDir;

/// Who holds `p`'s host port now, besides `service`: another service, a container's published port, or
/// a socket on the host.
pub fn holder_of(state_dir: &Path, service: &str, p: &Publish) -> Option<String> {
    if let Some((other, publication)) = MeshDir::new(state_dir).holder(p.protocol, p.host_port) {
        if other != service {
            return Some(format!("service {other} (--publish {publication})"));
        }
    }
    let fw = crate::firewall::Firewall::open().ok()?;
    if let Ok(Some((addr, port))) = fw.published_port_target(p.protocol.protocol(), p.host_port) {
        let who = container_with(state_dir, addr)
            .map(|c| format!("container {c}"))
            .unwrap_or_else(|| "a container".into());
        return Some(format!("{who}'s published port (to {addr}:{port})"));
    }
    drop(fw);
    socket_holders::holder(p.protocol, p.host_port)
}

/// The container holding `addr` on any network of this host.
fn container_with(state_dir: &Path, addr: IpAddr) -> Option<String> {
    let root = crate::state::attachment::attachments_root(state_dir);
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .flat_map(|net| RecordDir::new(state_dir, &net).list().unwrap_or_default())
        .find(|r| r.ips.iter().any(|n| n.ip() == addr))
        .map(|r| r.name.unwrap_or_else(|| r.container_id.to_string()))
}

/// Sockets bound on the host (this namespace), from /proc/net: a TCP listener or any bound UDP/SCTP
/// socket on the port, named by the process holding it.
mod socket_holders {
    use crate::state::service::ProtocolName;

    /// tetherd holds published ports itself; which service a port is for is in the mesh files.
    const TETHERD: &str = "tetherd";
    const TCP_LISTEN: &str = "0A";

    pub fn holder(protocol: ProtocolName, port: u16) -> Option<String> {
        let files: &[&str] = match protocol {
            ProtocolName::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
            ProtocolName::Udp => &["/proc/net/udp", "/proc/net/udp6"],
            ProtocolName::Sctp => &["/proc/net/sctp/eps"],
        };
        let mut inodes = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            inodes.extend(bound_inodes(&text, protocol, port));
        }
        if inodes.is_empty() {
            return None;
        }
        let owners: Vec<(u32, String)> = inodes.iter().filter_map(|i| owner_of(*i)).collect();
        if owners.iter().any(|(_, comm)| comm == TETHERD) {
            return None;
        }
        let proto = protocol.protocol().name();
        Some(match owners.first() {
            Some((pid, comm)) => {
                format!("a socket on port {port}/{proto} of process {pid} ({comm})")
            }
            None => format!("a socket on port {port}/{proto} (its process is not visible here)"),
        })
    }

    /// The inodes of sockets bound to `port` in one /proc/net table.
    pub(super) fn bound_inodes(text: &str, protocol: ProtocolName, port: u16) -> Vec<u64> {
        let mut out = Vec::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local_port, inode) = if protocol == ProtocolName::Sctp {
                // ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS
                match (fields.get(5), fields.get(7)) {
                    (Some(p), Some(i)) => (p.parse::<u16>().ok(), i.parse::<u64>().ok()),
                    _ => continue,
                }
            } else {
                // sl local_address rem_address st ... inode (the 10th field)
                let Some(local) = fields.get(1) else { continue };
                if protocol == ProtocolName::Tcp && fields.get(3) != Some(&TCP_LISTEN) {
                    continue;
                }
                let port = local
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                (port, fields.get(9).and_then(|i| i.parse::<u64>().ok()))
            };
            if let (Some(p), Some(inode)) = (local_port, inode) {
                if p == port && inode != 0 {
                    out.push(inode);
                }
            }
        }
        out
    }

    /// The process with an fd on socket `inode`: its pid and name.
    fn owner_of(inode: u64) -> Option<(u32, String)> {
        let target = format!("socket:[{inode}]");
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .map(|l| l.as_os_str() == target.as_str())
                    .unwrap_or(false)
            });
            if holds {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, comm.trim().to_string()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::socket_holders::bound_inodes;
    use crate::state::service::ProtocolName;

    #[test]
    fn listeners_are_read_from_proc_net() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(bound_inodes(tcp, ProtocolName::Tcp, 8080), vec![4242]);
        assert!(bound_inodes(tcp, ProtocolName::Tcp, 8081).is_empty());
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  700: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 5151 2 0000000000000000 0
";
        assert_eq!(bound_inodes(udp, ProtocolName::Udp, 5353), vec![5151]);
    }
}
