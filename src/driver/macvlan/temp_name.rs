//! The name a macvlan child is born under before it is renamed to CNI_IFNAME. Unique per call, so any number
//! of concurrent ADDs (in one namespace with `linkInContainer`, or on kernels that check names elsewhere)
//! never collide on it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// "tmv" + 12 hex digits: 15 bytes, the kernel's limit.
pub fn temporary_name(container_id: &str, ifname: &str) -> String {
    // RandomState is seeded from the OS per process (and per instance): two processes started the same
    // nanosecond for the same container still differ.
    let mut h = RandomState::new().build_hasher();
    h.write(container_id.as_bytes());
    h.write(ifname.as_bytes());
    h.write_u32(std::process::id());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    format!("tmv{:012x}", h.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_valid_and_differ_between_calls() {
        let names: HashSet<String> = (0..1000).map(|_| temporary_name("c1", "eth0")).collect();
        assert_eq!(names.len(), 1000);
        for n in &names {
            assert_eq!(crate::ifname::ifname_problem(n), None, "{n}");
            assert_eq!(n.len(), 15);
        }
    }
}
