//! The process heap as the kernel counts it.

/// Hands the heap's free memory back to the kernel. glibc keeps what a burst of allocations freed (a
/// reload's parsed JSON and old index, a full pass over a thousand hosts' records) for later use, so a
/// long-lived daemon's resident size would otherwise be its worst moment's.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory, at the top and in the middle of each arena.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    /// This process's anonymous resident memory, in kB.
    fn rss_anon_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    #[test]
    fn memory_freed_under_a_block_still_held_goes_back_to_the_kernel_only_when_trimmed() {
        // 64 MiB in small blocks, then one small block above them that stays: glibc cannot give the
        // freed blocks back by shrinking its heap from the top, so they stay resident until a trim.
        let burst: Vec<Box<[u8; 256]>> = (0..256 * 1024).map(|_| Box::new([1u8; 256])).collect();
        let held = Box::new([2u8; 256]);
        drop(burst);
        let before = rss_anon_kb();
        super::trim();
        let after = rss_anon_kb();
        assert_eq!(held[0], 2);
        assert!(
            before.saturating_sub(after) > 32 * 1024,
            "RssAnon {before} kB before the trim, {after} kB after"
        );
    }
}
