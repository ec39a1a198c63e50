//! The kernel's rule for interface names (dev_valid_name): 1 to 15 bytes (IFNAMSIZ is 16 with the NUL), not
//! "." or "..", no '/', ':' or whitespace. One place, so the CNI layer, the link layer and configs agree.

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// The bridge tether-bridge uses when its config names none; `network ls` reports it for such networks.
pub const DEFAULT_BRIDGE: &str = "tether0";

/// The kernel's interface-name rule as a type: a CNI_IFNAME, a host-side veth, a bridge.
pub type IfName = crate::checked_name::Checked<KernelIfname>;

/// The rule of [`IfName`].
pub struct KernelIfname;

impl crate::checked_name::NameRule for KernelIfname {
    const WHAT: &'static str = "interface name";
    fn problem(text: &str) -> Option<&'static str> {
        ifname_problem(text)
    }
}

/// Why `name` is not a valid interface name, or None when it is.
pub fn ifname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is \".\" or \"..\"")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        Some("it contains '/', ':', whitespace or NUL")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_rules() {
        assert_eq!(ifname_problem("eth0"), None);
        assert_eq!(ifname_problem("a23456789012345"), None);
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert!(ifname_problem(bad).is_some(), "{bad:?}");
        }
    }
}
