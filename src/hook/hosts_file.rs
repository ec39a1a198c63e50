//! The container's /etc/hosts: the localhost lines and the container's own addresses under its
//! hostname, name and aliases, so it can resolve itself without DNS.

use std::fmt::Write as _;
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsFile {
    /// Each of the container's addresses, in attach order.
    pub addresses: Vec<IpAddr>,
    /// Hostname first, then name and aliases; duplicates are dropped on render.
    pub names: Vec<String>,
}

impl HostsFile {
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# written by tether hook\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        let mut names: Vec<&str> = Vec::new();
        for name in &self.names {
            // Names are refused with whitespace or control characters where they come in; a record
            // written before that check could still hold one, and it must not add a line here.
            let one_word = !name.chars().any(|c| c.is_control() || c.is_whitespace());
            if !name.is_empty() && one_word && !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return text;
        }
        let names = names.join(" ");
        for address in &self.addresses {
            let _ = writeln!(text, "{address}\t{names}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_a_newline_never_adds_a_line() {
        let hosts = HostsFile {
            addresses: vec!["10.0.0.2".parse().unwrap()],
            names: vec!["web".into(), "evil\n6.6.6.6 bank.example".into()],
        };
        let text = hosts.render();
        assert!(text.ends_with("10.0.0.2\tweb\n"), "{text}");
    }

    #[test]
    fn own_addresses_carry_hostname_name_and_aliases_once() {
        let hosts = HostsFile {
            addresses: vec!["10.88.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            names: vec!["web".into(), "web".into(), "www".into()],
        };
        let text = hosts.render();
        assert!(text.contains("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("10.88.0.5\tweb www\n"), "{text}");
        assert!(text.contains("fd00::5\tweb www\n"), "{text}");
    }

    #[test]
    fn without_names_only_localhost_is_written() {
        let hosts = HostsFile {
            addresses: vec!["10.88.0.5".parse().unwrap()],
            names: vec![],
        };
        assert!(!hosts.render().contains("10.88.0.5"));
    }
}
