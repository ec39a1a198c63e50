//! resolv.conf(5), read in one place for everyone who needs it: IPAM's `resolvConf` option, tetherd's
//! forwarder (the host's resolvers) and `tether hook` (a container's file when no network names resolvers).

use crate::cni::result::Dns;

/// The address of tetherd's resolver inside every container (Docker's choice; on `lo`, so no route is
/// needed). Plugins put it in their result's `dns`, the hook in the container's resolv.conf.
pub const RESOLVER_ADDRESS: &str = "127.0.0.11";
/// The same address as a type, for sockets and rules.
pub const RESOLVER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// Reads `nameserver`, `domain`, `search` and `options` lines; comments (`#`, `;`) and other lines are
/// ignored. Nameservers stay text: a scoped IPv6 address (`fe80::1%eth0`) is not an `IpAddr`.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().map(str::to_string),
            // resolv.conf(5): the last `search` line wins.
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => {
                for opt in words {
                    if !dns.options.iter().any(|o| o == opt) {
                        dns.options.push(opt.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_search_domain_and_options_are_read() {
        let dns = parse(
            "# comment\nnameserver 10.0.0.53\nnameserver fd00::53 # v6\nsearch a.example b.example\n\
             domain example\noptions ndots:2 edns0\nsortlist 10.0.0.0\noptions edns0\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(dns.search, ["a.example", "b.example"]);
        assert_eq!(dns.domain.as_deref(), Some("example"));
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }
}
