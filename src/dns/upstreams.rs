//! The host's resolvers, from its resolv.conf (`TETHER_RESOLV_CONF` overrides the path). The file is
//! re-read when it changes (checked at most once a second, by mtime, size and inode), so a DHCP renewal
//! or a VPN that rewrites it is followed without a restart.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

const RECHECK: Duration = Duration::from_secs(1);

/// The host's resolvers as its resolv.conf names them: servers in order, and glibc's `timeout`/`attempts` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResolvers {
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for HostResolvers {
    fn default() -> Self {
        HostResolvers {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

impl HostResolvers {
    pub fn parse(text: &str) -> HostResolvers {
        let file = crate::resolv_conf::parse(text);
        let mut conf = HostResolvers::default();
        for ns in &file.nameservers {
            // A scoped IPv6 address (fe80::1%eth0) does not parse and is skipped: the scope names a host
            // interface. Our own address would forward to ourselves forever.
            match ns.parse::<IpAddr>() {
                Ok(ip) if ip != IpAddr::from(crate::resolv_conf::RESOLVER_IP) => {
                    conf.servers.push(SocketAddr::new(ip, 53))
                }
                _ => {}
            }
        }
        for opt in &file.options {
            if let Some(v) = opt.strip_prefix("timeout:").and_then(|v| v.parse().ok()) {
                conf.timeout = Duration::from_secs(u64::clamp(v, 1, 30));
            } else if let Some(v) = opt.strip_prefix("attempts:").and_then(|v| v.parse().ok()) {
                conf.attempts = u32::clamp(v, 1, 5);
            }
        }
        conf
    }
}

/// The current resolv.conf, re-read when the file changes.
pub struct Upstreams {
    path: PathBuf,
    stamp: Option<(SystemTime, u64, u64)>,
    checked: Option<Instant>,
    conf: HostResolvers,
}

impl Upstreams {
    pub fn new(path: PathBuf) -> Upstreams {
        let mut u = Upstreams {
            path,
            stamp: None,
            checked: None,
            conf: HostResolvers::default(),
        };
        u.refresh();
        u
    }

    /// The servers to use now.
    pub fn current(&mut self) -> &HostResolvers {
        if self.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            self.refresh();
        }
        &self.conf
    }

    fn refresh(&mut self) {
        self.checked = Some(Instant::now());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())));
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        self.conf = match std::fs::read_to_string(&self.path) {
            Ok(text) => HostResolvers::parse(&text),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read resolv.conf; forwarding is off until it is readable");
                HostResolvers::default()
            }
        };
        tracing::info!(path = %self.path.display(), servers = ?self.conf.servers, "upstream resolvers loaded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_options_are_read_and_our_own_address_skipped() {
        let c = HostResolvers::parse(
            "# comment\nnameserver 10.0.0.53\nnameserver 127.0.0.11\nnameserver fe80::1%eth0\n\
             nameserver fd00::53\nsearch example.com\noptions ndots:2 timeout:3 attempts:4\n",
        );
        assert_eq!(
            c.servers,
            vec![
                "10.0.0.53:53".parse().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.attempts, 4);
    }

    #[test]
    fn a_rewritten_file_is_picked_up() {
        let path = std::env::temp_dir().join(format!("tether-resolv-{}", std::process::id()));
        std::fs::write(&path, "nameserver 10.0.0.1\n").unwrap();
        let mut u = Upstreams::new(path.clone());
        assert_eq!(u.current().servers.len(), 1);
        std::fs::write(&path, "nameserver 10.0.0.1\nnameserver 10.0.0.2\n").unwrap();
        u.checked = None; // skip the once-a-second wait
        assert_eq!(u.current().servers.len(), 2);
        std::fs::remove_file(path).unwrap();
    }
}
