//! The container's /etc/resolv.conf: the nameservers the networks' CNI results name (tether's DNS
//! answers on 127.0.0.11 inside the container when the network has DNS on), else the host's own
//! nameservers minus loopback ones, which mean nothing inside another network namespace.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::cni::Dns;

/// tetherd's resolver address inside every container namespace (as Docker's embedded DNS).
pub use crate::resolv_conf::RESOLVER_ADDRESS as EMBEDDED_RESOLVER;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    /// Why the file looks the way it does, written as a comment.
    pub origin: &'static str,
}

impl ResolvConf {
    /// From the DNS sections of the container's CNI results, else from the host's resolv.conf text.
    pub fn for_container(results: &[&Dns], host_resolv_conf: Option<&str>) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for dns in results {
            push_unique(&mut conf.nameservers, dns.nameservers.iter().cloned());
            push_unique(&mut conf.search, dns.search.iter().cloned());
            push_unique(&mut conf.options, dns.options.iter().cloned());
        }
        if !conf.nameservers.is_empty() {
            conf.origin = "from the networks' DNS settings";
            if conf.nameservers.iter().any(|ns| ns == EMBEDDED_RESOLVER)
                && !conf.options.iter().any(|o| o.starts_with("ndots:"))
            {
                // Container names are single labels: ask for them as they are, before any search domain.
                conf.options.push("ndots:0".into());
            }
            return conf;
        }
        let host = crate::resolv_conf::parse(host_resolv_conf.unwrap_or(""));
        ResolvConf {
            nameservers: host
                .nameservers
                .into_iter()
                .filter(|ns| !is_loopback(ns))
                .collect(),
            // `domain` stands for a one-entry search list (resolv.conf(5)).
            search: if host.search.is_empty() {
                host.domain.into_iter().collect()
            } else {
                host.search
            },
            options: host.options,
            origin: "copied from the host without its loopback nameservers",
        }
    }

    pub fn render(&self) -> String {
        // Entries with control characters are refused where they are parsed; one that got past (an old
        // cached result) is left out rather than allowed to add a line.
        let words = |list: &[String]| -> Vec<String> {
            list.iter()
                .filter(|w| !w.chars().any(char::is_control))
                .cloned()
                .collect()
        };
        let (nameservers, search, options) = (
            words(&self.nameservers),
            words(&self.search),
            words(&self.options),
        );
        let mut text = format!("# written by tether hook: {}\n", self.origin);
        if nameservers.is_empty() {
            text.push_str("# no usable nameserver\n");
        }
        for ns in &nameservers {
            let _ = writeln!(text, "nameserver {ns}");
        }
        if !search.is_empty() {
            let _ = writeln!(text, "search {}", search.join(" "));
        }
        if !options.is_empty() {
            let _ = writeln!(text, "options {}", options.join(" "));
        }
        text
    }
}

fn is_loopback(nameserver: &str) -> bool {
    // A zone index (fe80::1%eth0) is not an IpAddr; such a server is not loopback anyway.
    nameserver
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn push_unique(into: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_a_newline_never_adds_a_line() {
        let conf = ResolvConf {
            nameservers: vec!["127.0.0.11".into(), "6.6.6.6\nsearch evil".into()],
            search: vec!["ok.example".into(), "evil\nnameserver 6.6.6.6".into()],
            options: vec!["ndots:0".into()],
            origin: "test",
        };
        let text = conf.render();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.contains("6.6.6.6"), "{text}");
    }

    const HOST: &str = "# host\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\n\
                        search corp.example\noptions edns0 trust-ad\n";

    #[test]
    fn a_network_with_embedded_dns_gets_127_0_0_11_and_ndots_0() {
        let dns = Dns {
            nameservers: vec![EMBEDDED_RESOLVER.into()],
            ..Dns::default()
        };
        let conf = ResolvConf::for_container(&[&dns], Some(HOST));
        assert_eq!(conf.nameservers, vec!["127.0.0.11"]);
        assert_eq!(conf.options, vec!["ndots:0"]);
        let text = conf.render();
        assert!(text.contains("nameserver 127.0.0.11\n"), "{text}");
        assert!(text.contains("options ndots:0\n"), "{text}");
    }

    #[test]
    fn two_networks_with_dns_name_the_server_once() {
        let dns = Dns {
            nameservers: vec![EMBEDDED_RESOLVER.into()],
            search: vec!["dns.tether".into()],
            ..Dns::default()
        };
        let conf = ResolvConf::for_container(&[&dns, &dns], None);
        assert_eq!(conf.nameservers, vec!["127.0.0.11"]);
        assert_eq!(conf.search, vec!["dns.tether"]);
    }

    #[test]
    fn without_network_dns_the_hosts_servers_are_copied_minus_loopback() {
        let conf = ResolvConf::for_container(&[&Dns::default()], Some(HOST));
        assert_eq!(conf.nameservers, vec!["192.0.2.53"]);
        assert_eq!(conf.search, vec!["corp.example"]);
        assert_eq!(conf.options, vec!["edns0", "trust-ad"]);
    }

    #[test]
    fn a_host_with_only_loopback_servers_leaves_a_file_that_says_so() {
        let conf = ResolvConf::for_container(&[], Some("nameserver 127.0.0.53\n"));
        assert!(conf.nameservers.is_empty());
        assert!(conf.render().contains("no usable nameserver"));
    }
}
