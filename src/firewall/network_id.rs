use std::fmt;

/// Short, stable name for a network's chains and sets (`n` + 8 hex digits).
///
/// CNI network names may hold `-` and `.` and can be long, while nft object names are easier
/// to handle when they are plain identifiers; the real name is kept in the chain comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkId(u32);

impl NetworkId {
    /// FNV-1a over the name: written out here because std's hasher may change between Rust
    /// releases, and the id must stay the same for the lifetime of the rules in the kernel.
    pub fn of(name: &str) -> NetworkId {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in name.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        NetworkId(hash)
    }

    pub fn forward_chain(self) -> String {
        format!("{self}_fwd")
    }

    pub fn nat_chain(self) -> String {
        format!("{self}_nat")
    }

    pub fn ipv4_set(self) -> String {
        format!("{self}_c4")
    }

    pub fn ipv6_set(self) -> String {
        format!("{self}_c6")
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{:08x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_n_and_eight_hex_digits() {
        let id = NetworkId::of("my-net.example").to_string();
        assert_eq!(id.len(), 9);
        assert!(id.starts_with('n'));
        assert!(id[1..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn id_is_stable_across_builds() {
        // FNV-1a 32 test vectors: "" -> 811c9dc5, "a" -> e40c292c.
        assert_eq!(NetworkId::of("").to_string(), "n811c9dc5");
        assert_eq!(NetworkId::of("a").to_string(), "ne40c292c");
    }

    #[test]
    fn object_names_share_the_id() {
        let id = NetworkId::of("a");
        assert_eq!(id.forward_chain(), "ne40c292c_fwd");
        assert_eq!(id.nat_chain(), "ne40c292c_nat");
        assert_eq!(id.ipv4_set(), "ne40c292c_c4");
        assert_eq!(id.ipv6_set(), "ne40c292c_c6");
    }
}
