//! Network names: CNI's identifier rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), minus the names Docker and
//! podman give a meaning of their own, and short enough to be part of a file name.

use super::error::NetworkError;

/// `host` and `none` mean "no network of ours" to the hook and to Docker users.
const RESERVED: &[&str] = &["host", "none", "bridge"];

/// Long names still have to fit a file name and an nft comment.
const MAX_LEN: usize = 200;

pub fn validate(name: &str) -> Result<(), NetworkError> {
    let fail = |reason: &str| {
        Err(NetworkError::BadName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_LEN {
        return fail("it is longer than 200 characters");
    }
    if !crate::cni::env::is_valid_identifier(name) {
        return fail("use letters, digits, '_', '.' and '-', starting with a letter or digit");
    }
    if RESERVED.contains(&name) {
        return fail("host, none and bridge are reserved (the hook gives them a meaning)");
    }
    Ok(())
}

/// FNV-1a, written out so the names it makes never change between Rust releases.
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The bridge of a bridge network: `tb-<name>` when that fits IFNAMSIZ, else the name cut short plus a
/// hash of the whole name, so two long names with one prefix still get two bridges.
pub fn bridge_name(network: &str) -> String {
    let plain = format!("tb-{network}");
    if plain.len() <= crate::ifname::MAX_IFNAME_LEN {
        return plain;
    }
    format!("tb-{}-{:04x}", &network[..7], fnv1a(network) & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_names() {
        for good in ["web", "a", "my_net.v2-x", "0net"] {
            validate(good).unwrap();
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "host", "none", "bridge", "ä"] {
            assert!(validate(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate(&"x".repeat(201)).is_err());
    }

    #[test]
    fn bridge_names_fit_and_differ() {
        assert_eq!(bridge_name("web"), "tb-web");
        assert_eq!(bridge_name("twelve-chars"), "tb-twelve-chars");
        let a = bridge_name("frontend-network");
        let b = bridge_name("frontend-netwerk");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("tb-fronten-"));
        assert_ne!(a, b);
        assert!(crate::ifname::ifname_problem(&a).is_none());
    }
}
