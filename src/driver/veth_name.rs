//! Host-side veth names are derived from (container id, ifname), so DEL finds the link without the container's
//! namespace (which may be gone) and without a record (which may be lost): `tv` + 11 hex digits (13 bytes,
//! inside IFNAMSIZ). FNV-1a is written out because std's hasher may change between Rust releases, and a name
//! computed at ADD must equal the one computed at DEL by a newer binary.
use crate::ifname::IfName;

pub fn host_veth_name(container_id: &str, ifname: &str) -> IfName {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0u8]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    IfName::new(format!("tv{:011x}", h >> 20)).expect("tv and 11 hex digits is an interface name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_short_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("tv"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
        // The separator keeps ("ab","ceth0") apart from ("abc","eth0").
        assert_ne!(host_veth_name("ab", "ceth0"), a);
    }
}
