//! The allocator of tether's short-lived processes (the CNI plugins and the CLI, which is also the OCI hook):
//! a process that lives a few milliseconds never needs memory back one block at a time.
//!
//! Allocations are cut in order from chunks mapped once and are never freed one by one: the kernel takes the
//! whole mapping back at exit. musl's allocator, which the plugins link when built with musl (no CPUID traps
//! at start, 0.3 ms less per process in a VM), unmaps and maps again so eagerly that an ADD made 125-349
//! mmap-family calls and faulted each page anew; from chunks it makes under a dozen. Large blocks (buffers of
//! a megabyte and more) and a process that has taken `limit` bytes go to the system allocator instead, so a
//! process that loops is bounded as with any allocator. Only for short-lived processes: tetherd, which runs
//! for months, keeps the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// One chunk's size. A plugin's ADD takes under 2 MiB in all; pages are faulted only when touched.
const CHUNK_BYTES: usize = 8 << 20;
/// Blocks at least this large go to the system allocator: a whole chunk spent on one would waste the rest.
const LARGE_BYTES: usize = 1 << 20;
/// Chunks are page-aligned mappings, so no alignment above a page is served from them.
const MAX_ALIGN: usize = 4096;
/// At most this many chunks: a process that takes more (`limit` bytes) gets the system allocator's memory.
const MAX_CHUNKS: usize = 16;

pub struct ProcessArena {
    state: Mutex<ArenaState>,
    limit: usize,
}

struct ArenaState {
    /// Where the next block starts and where the current chunk ends (both 0 before the first chunk).
    next: usize,
    end: usize,
    /// Every chunk mapped: `dealloc` tells an arena block from a system one by address, since a block of
    /// arena size goes to the system once the limit is reached.
    chunks: [usize; MAX_CHUNKS],
    mapped: usize,
}

impl ProcessArena {
    /// An arena that maps chunks up to `limit` bytes in all (rounded down to whole chunks, at least one).
    pub const fn new(limit: usize) -> Self {
        ProcessArena {
            state: Mutex::new(ArenaState {
                next: 0,
                end: 0,
                chunks: [0; MAX_CHUNKS],
                mapped: 0,
            }),
            limit,
        }
    }

    /// The short-lived binaries' arena: 64 MiB before the system allocator takes over.
    pub const fn for_plugins() -> Self {
        Self::new(64 << 20)
    }

    fn max_chunks(&self) -> usize {
        (self.limit / CHUNK_BYTES).clamp(1, MAX_CHUNKS)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ArenaState> {
        // A panic while holding the lock leaves the state whole (only plain integers are written).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serves(layout: Layout) -> bool {
        layout.size() < LARGE_BYTES && layout.align() <= MAX_ALIGN
    }

    /// A block from the current chunk, or from a new one; None when the limit is reached or mmap failed.
    fn carve(&self, state: &mut ArenaState, layout: Layout) -> Option<*mut u8> {
        let start = align_up(state.next, layout.align());
        if state.next != 0 && start + layout.size() <= state.end {
            state.next = start + layout.size();
            return Some(start as *mut u8);
        }
        if state.mapped >= self.max_chunks() {
            return None;
        }
        let chunk = map_chunk()?;
        state.chunks[state.mapped] = chunk;
        state.mapped += 1;
        state.next = chunk + layout.size();
        state.end = chunk + CHUNK_BYTES;
        Some(chunk as *mut u8)
    }

    fn owns(state: &ArenaState, ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        state.chunks[..state.mapped]
            .iter()
            .any(|&chunk| addr >= chunk && addr < chunk + CHUNK_BYTES)
    }
}

impl Drop for ProcessArena {
    fn drop(&mut self) {
        // Only arenas made by tests are dropped; the global one lives until exit.
        let state = self.lock();
        for &chunk in &state.chunks[..state.mapped] {
            // SAFETY: each chunk was mapped by `map_chunk` with this length and is unmapped once.
            unsafe { libc::munmap(chunk as *mut libc::c_void, CHUNK_BYTES) };
        }
    }
}

fn align_up(addr: usize, align: usize) -> usize {
    (addr + align - 1) & !(align - 1)
}

/// A fresh anonymous mapping: zero-filled, so `alloc_zeroed` needs no memset for blocks cut from it.
fn map_chunk() -> Option<usize> {
    // SAFETY: an anonymous private mapping touches no existing memory.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            CHUNK_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (addr != libc::MAP_FAILED).then_some(addr as usize)
}

// SAFETY: blocks never overlap (`next` only moves forward, under the lock) and each is aligned as asked;
// system blocks are told apart by address and given back to the system allocator.
unsafe impl GlobalAlloc for ProcessArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::serves(layout) {
            if let Some(block) = self.carve(&mut self.lock(), layout) {
                return block;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::serves(layout) {
            // Never handed out before (`next` never moves back), so still as mmap made it: zero.
            if let Some(block) = self.carve(&mut self.lock(), layout) {
                return block;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::serves(layout) && Self::owns(&self.lock(), ptr) {
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if Self::serves(layout) {
            let mut state = self.lock();
            if Self::owns(&state, ptr) {
                let addr = ptr as usize;
                // The chunk's last block grows (or shrinks) where it is: a Vec pushed to does not copy.
                if Self::serves(new_layout)
                    && addr + layout.size() == state.next
                    && addr + new_size <= state.end
                {
                    state.next = addr + new_size;
                    return ptr;
                }
                if new_size <= layout.size() {
                    return ptr;
                }
                drop(state);
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(ptr, moved, layout.size());
                }
                return moved;
            }
            drop(state);
            // A system block of arena size (taken after the limit): it stays with the system.
            return System.realloc(ptr, layout, new_size);
        }
        if Self::serves(new_layout) {
            // Large shrinking to small: moved into the arena so that dealloc's size rule holds.
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(ptr, moved, new_size);
                System.dealloc(ptr, layout);
            }
            return moved;
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(block: *mut u8, len: usize, byte: u8) {
        // SAFETY: the tests own `len` bytes at `block`.
        unsafe { ptr::write_bytes(block, byte, len) }
    }

    fn all(block: *const u8, len: usize, byte: u8) -> bool {
        // SAFETY: as in `fill`.
        unsafe { std::slice::from_raw_parts(block, len) }
            .iter()
            .all(|&b| b == byte)
    }

    #[test]
    fn blocks_are_aligned_as_asked_and_never_overlap() {
        let arena = ProcessArena::for_plugins();
        let mut blocks = Vec::new();
        for (i, align) in [1usize, 2, 8, 16, 64, 4096, 1, 32]
            .iter()
            .cycle()
            .take(400)
            .enumerate()
        {
            let layout = Layout::from_size_align(1 + (i * 37) % 3000, *align).unwrap();
            // SAFETY: a non-zero size.
            let block = unsafe { arena.alloc(layout) };
            assert!(!block.is_null());
            assert_eq!(block as usize % align, 0, "block {i} aligned to {align}");
            fill(block, layout.size(), (i % 251) as u8);
            blocks.push((block, layout, (i % 251) as u8));
        }
        for (i, (block, layout, byte)) in blocks.iter().enumerate() {
            assert!(
                all(*block, layout.size(), *byte),
                "block {i} was overwritten"
            );
            // SAFETY: allocated above with this layout.
            unsafe { arena.dealloc(*block, *layout) };
        }
        assert_eq!(arena.lock().mapped, 1, "400 small blocks fit one chunk");
    }

    #[test]
    fn large_blocks_and_large_alignments_come_from_the_system_and_go_back_to_it() {
        let arena = ProcessArena::for_plugins();
        for layout in [
            Layout::from_size_align(LARGE_BYTES, 8).unwrap(),
            Layout::from_size_align(3 * CHUNK_BYTES, 8).unwrap(),
            Layout::from_size_align(100, 2 * MAX_ALIGN).unwrap(),
        ] {
            // SAFETY: non-zero sizes.
            let block = unsafe { arena.alloc(layout) };
            assert!(!block.is_null());
            assert_eq!(block as usize % layout.align(), 0);
            assert!(
                !ProcessArena::owns(&arena.lock(), block),
                "{layout:?} is the system's"
            );
            fill(block, layout.size(), 0xa5);
            // SAFETY: allocated above with this layout.
            unsafe { arena.dealloc(block, layout) };
        }
        assert_eq!(arena.lock().mapped, 0, "no chunk mapped for large blocks");
    }

    #[test]
    fn zeroed_blocks_are_zero_even_after_other_blocks_were_written_and_freed() {
        let arena = ProcessArena::for_plugins();
        let layout = Layout::from_size_align(5000, 8).unwrap();
        for _ in 0..50 {
            // SAFETY: a non-zero size; each block is freed with its layout.
            unsafe {
                let dirty = arena.alloc(layout);
                fill(dirty, layout.size(), 0xff);
                arena.dealloc(dirty, layout);
                let clean = arena.alloc_zeroed(layout);
                assert!(all(clean, layout.size(), 0));
                arena.dealloc(clean, layout);
            }
        }
        // SAFETY: as above; a large block zeroed by the system.
        unsafe {
            let large = Layout::from_size_align(2 * LARGE_BYTES, 8).unwrap();
            let block = arena.alloc_zeroed(large);
            assert!(all(block, large.size(), 0));
            arena.dealloc(block, large);
        }
    }

    #[test]
    fn the_last_block_grows_in_place_and_any_other_moves_with_its_bytes() {
        let arena = ProcessArena::for_plugins();
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: blocks are used within their sizes and reallocated with their current layouts.
        unsafe {
            let first = arena.alloc(layout);
            fill(first, 64, 1);
            let grown = arena.realloc(first, layout, 4096);
            assert_eq!(grown, first, "the chunk's last block grows where it is");
            assert!(all(grown, 64, 1));
            let grown_layout = Layout::from_size_align(4096, 8).unwrap();

            let second = arena.alloc(layout);
            fill(second, 64, 2);
            let moved = arena.realloc(grown, grown_layout, 8192);
            assert_ne!(moved, grown, "a block with another after it moves");
            assert!(all(moved, 64, 1), "its bytes moved with it");
            assert!(all(second, 64, 2), "and the block after it is untouched");

            let shrunk = arena.realloc(second, layout, 16);
            assert_eq!(shrunk, second);
            assert!(all(shrunk, 16, 2));
        }
    }

    #[test]
    fn blocks_crossing_the_large_size_either_way_keep_their_bytes_and_their_owner() {
        let arena = ProcessArena::for_plugins();
        let small = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let block = arena.alloc(small);
            let _after = arena.alloc(small);
            fill(block, 1000, 7);
            let large = arena.realloc(block, small, 2 * LARGE_BYTES);
            assert!(
                !ProcessArena::owns(&arena.lock(), large),
                "a large block is the system's"
            );
            assert!(all(large, 1000, 7));
            let large_layout = Layout::from_size_align(2 * LARGE_BYTES, 8).unwrap();
            let back = arena.realloc(large, large_layout, 500);
            assert!(
                ProcessArena::owns(&arena.lock(), back),
                "a small block is the arena's again"
            );
            assert!(all(back, 500, 7));
            arena.dealloc(back, Layout::from_size_align(500, 8).unwrap());
        }
    }

    #[test]
    fn past_its_limit_the_arena_hands_out_the_systems_memory_and_frees_it_there() {
        let arena = ProcessArena::new(CHUNK_BYTES);
        let layout = Layout::from_size_align(LARGE_BYTES - 1, 8).unwrap();
        let mut from_system = Vec::new();
        // SAFETY: as above.
        unsafe {
            for _ in 0..(2 * CHUNK_BYTES / layout.size()) {
                let block = arena.alloc(layout);
                assert!(!block.is_null());
                fill(block, layout.size(), 3);
                if !ProcessArena::owns(&arena.lock(), block) {
                    from_system.push(block);
                }
            }
            assert_eq!(arena.lock().mapped, 1, "one chunk is the limit");
            assert!(from_system.len() >= CHUNK_BYTES / layout.size());
            for block in from_system {
                let grown = arena.realloc(block, layout, LARGE_BYTES + 10);
                assert!(all(grown, layout.size(), 3));
                arena.dealloc(grown, Layout::from_size_align(LARGE_BYTES + 10, 8).unwrap());
            }
        }
    }

    #[test]
    fn threads_allocating_at_once_get_blocks_of_their_own() {
        let arena = ProcessArena::for_plugins();
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                let arena = &arena;
                scope.spawn(move || {
                    let mut blocks = Vec::new();
                    for i in 0..2000usize {
                        let layout = Layout::from_size_align(8 + i % 200, 8).unwrap();
                        // SAFETY: a non-zero size.
                        let block = unsafe { arena.alloc(layout) };
                        fill(block, layout.size(), t);
                        blocks.push((block as usize, layout));
                    }
                    for (block, layout) in blocks {
                        assert!(
                            all(block as *const u8, layout.size(), t),
                            "thread {t}'s block"
                        );
                    }
                });
            }
        });
    }
}
