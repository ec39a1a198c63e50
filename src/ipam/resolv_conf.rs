//! The `resolvConf` option: a host resolv.conf whose settings go into the result's DNS, as host-local does.

use std::path::Path;

use crate::cni::result::Dns;

use super::error::IpamError;

/// Read `nameserver`, `domain`, `search` and `options` lines (resolv.conf(5)); other lines are ignored.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().map(str::to_string),
            // resolv.conf(5): the last `search` line wins.
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

pub fn read_resolv_conf(path: &Path) -> Result<Dns, IpamError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| IpamError::io("read resolvConf", path, e))?;
    Ok(parse_resolv_conf(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_search_domain_and_options_are_read() {
        let dns = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.53\nnameserver fd00::53 # v6\nsearch a.example b.example\n\
             domain example\noptions ndots:2 edns0\nsortlist 10.0.0.0\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(dns.search, ["a.example", "b.example"]);
        assert_eq!(dns.domain.as_deref(), Some("example"));
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }
}
