//! The allocator of tether's short-lived processes (the CNI plugins and the CLI, which is also the OCI hook):
//! a process that lives a few milliseconds needs neither to give memory back to the kernel nor to fight
//! fragmentation.
//!
//! Blocks are cut in order from chunks mapped once and never unmapped (the kernel takes them at exit); a
//! freed block goes on a free list of its size class (powers of two from 16 bytes to 512 KiB) and the next
//! block of that class reuses it, so the pages an ADD touches stay those of its peak, not of all it ever
//! allocated. musl's allocator, which these binaries link when built with musl (no CPUID traps at start,
//! 0.3 ms less per process in a VM), unmaps and maps again so eagerly that an ADD made 125-349 mmap-family
//! calls and faulted each page anew; from chunks it makes under a dozen. Larger blocks, alignments over a
//! page, and whatever a process asks for once it holds `limit` bytes of chunks go to the system allocator.
//! Only for short-lived processes: tetherd, which runs for months, keeps the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// One chunk's size. A plugin's ADD takes well under one; pages are faulted only when touched.
const CHUNK_BYTES: usize = 8 << 20;
/// The smallest class holds the free list's link; the largest is half a megabyte (a larger block would
/// waste too much of a chunk when rounded up to a power of two).
const MIN_CLASS_SHIFT: u32 = 4;
const MAX_CLASS_BYTES: usize = 512 << 10;
const CLASSES: usize = (MAX_CLASS_BYTES.trailing_zeros() - MIN_CLASS_SHIFT + 1) as usize;
/// Chunks are page-aligned mappings, so no alignment above a page is served from them.
const MAX_ALIGN: usize = 4096;
/// At most this many chunks: a process that takes more (`limit` bytes) gets the system allocator's memory.
const MAX_CHUNKS: usize = 16;

/// Makes the arena the global allocator of the binary whose main file invokes it (each short-lived binary's
/// one line; tetherd never does).
#[macro_export]
macro_rules! short_lived_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::process_arena::ProcessArena =
            $crate::process_arena::ProcessArena::for_short_lived_processes();
    };
}

pub struct ProcessArena {
    state: Mutex<ArenaState>,
    limit: usize,
}

struct ArenaState {
    /// Where the next block is cut and where the current chunk ends (both 0 before the first chunk).
    next: usize,
    end: usize,
    /// Every chunk mapped: `dealloc` tells an arena block from a system one by address, since a block of
    /// a class size goes to the system once the limit is reached.
    chunks: [usize; MAX_CHUNKS],
    mapped: usize,
    /// Per class, the last block freed (0: none); each free block holds the address of the one before.
    free: [usize; CLASSES],
}

/// A power-of-two size class: index into `free`, and the block's size and alignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SizeClass(usize);

impl SizeClass {
    /// The class of a layout, or None for a block the system allocator serves.
    fn of(layout: Layout) -> Option<SizeClass> {
        if layout.align() > MAX_ALIGN {
            return None;
        }
        let bytes = layout.size().max(layout.align()).max(1 << MIN_CLASS_SHIFT);
        if bytes > MAX_CLASS_BYTES {
            return None;
        }
        let shift = bytes.next_power_of_two().trailing_zeros();
        Some(SizeClass((shift - MIN_CLASS_SHIFT) as usize))
    }

    fn bytes(self) -> usize {
        1 << (self.0 as u32 + MIN_CLASS_SHIFT)
    }

    /// Cut at its own size's alignment (up to a page), a block serves every layout of its class.
    fn align(self) -> usize {
        self.bytes().min(MAX_ALIGN)
    }
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
                free: [0; CLASSES],
            }),
            limit,
        }
    }

    /// The short-lived binaries' arena: 64 MiB of chunks before the system allocator takes over.
    pub const fn for_short_lived_processes() -> Self {
        Self::new(64 << 20)
    }

    fn max_chunks(&self) -> usize {
        (self.limit / CHUNK_BYTES).clamp(1, MAX_CHUNKS)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ArenaState> {
        // A panic while holding the lock leaves the state whole (only plain integers are written).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A block of `class` and whether it was used before (so not known to be zero); None when the limit
    /// is reached or mmap failed.
    fn take(&self, class: SizeClass) -> Option<(*mut u8, bool)> {
        let mut state = self.lock();
        let head = state.free[class.0];
        if head != 0 {
            // SAFETY: a free block of this class holds the address of the next free one.
            state.free[class.0] = unsafe { *(head as *const usize) };
            return Some((head as *mut u8, true));
        }
        let start = align_up(state.next, class.align());
        if state.next != 0 && start + class.bytes() <= state.end {
            state.next = start + class.bytes();
            return Some((start as *mut u8, false));
        }
        if state.mapped >= self.max_chunks() {
            return None;
        }
        // The current chunk's tail is left unused: at most one block of the largest class.
        let chunk = map_chunk()?;
        let index = state.mapped;
        state.chunks[index] = chunk;
        state.mapped += 1;
        state.next = chunk + class.bytes();
        state.end = chunk + CHUNK_BYTES;
        Some((chunk as *mut u8, false))
    }

    fn owns(state: &ArenaState, ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        state.chunks[..state.mapped]
            .iter()
            .any(|&chunk| addr >= chunk && addr < chunk + CHUNK_BYTES)
    }

    /// The class of an arena block, None for a block of the system's.
    fn class_in_arena(&self, ptr: *mut u8, layout: Layout) -> Option<SizeClass> {
        SizeClass::of(layout).filter(|_| Self::owns(&self.lock(), ptr))
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

/// A fresh anonymous mapping: zero-filled, so a block cut from it for the first time needs no memset.
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

// SAFETY: a block is handed out once until it is freed (cut past `next`, which only moves forward, or
// popped from its class's free list, both under the lock), is at least its class's size and aligned to it;
// system blocks are told apart by size class and address and given back to the system allocator.
unsafe impl GlobalAlloc for ProcessArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match SizeClass::of(layout).and_then(|class| self.take(class)) {
            Some((block, _)) => block,
            None => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match SizeClass::of(layout).and_then(|class| self.take(class)) {
            Some((block, true)) => {
                ptr::write_bytes(block, 0, layout.size());
                block
            }
            // Cut for the first time: still as mmap made it.
            Some((block, false)) => block,
            None => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(class) = SizeClass::of(layout) {
            // One lock for the owner check and the push: a plugin frees thousands of blocks.
            let mut state = self.lock();
            if Self::owns(&state, ptr) {
                *(ptr as *mut usize) = state.free[class.0];
                state.free[class.0] = ptr as usize;
                return;
            }
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let class = self.class_in_arena(ptr, layout);
        if class.is_some() && class == SizeClass::of(new_layout) {
            return ptr;
        }
        if class.is_none() && SizeClass::of(new_layout).is_none() {
            return System.realloc(ptr, layout, new_size);
        }
        // Between the arena and the system, or between classes.
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        moved
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

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// Bytes cut from chunks so far (the pages a process may have touched).
    fn cut(arena: &ProcessArena) -> usize {
        let state = arena.lock();
        (state.mapped.max(1) - 1) * CHUNK_BYTES + state.next - (state.end - CHUNK_BYTES)
    }

    #[test]
    fn size_classes_are_powers_of_two_from_16_bytes_to_512_kib_and_honour_the_alignment() {
        assert_eq!(SizeClass::of(layout(1, 1)), Some(SizeClass(0)));
        assert_eq!(SizeClass::of(layout(16, 8)).map(SizeClass::bytes), Some(16));
        assert_eq!(SizeClass::of(layout(17, 8)).map(SizeClass::bytes), Some(32));
        assert_eq!(
            SizeClass::of(layout(24, 64)).map(SizeClass::bytes),
            Some(64)
        );
        assert_eq!(
            SizeClass::of(layout(MAX_CLASS_BYTES, 8)).map(SizeClass::bytes),
            Some(MAX_CLASS_BYTES)
        );
        assert_eq!(SizeClass::of(layout(MAX_CLASS_BYTES + 1, 8)), None);
        assert_eq!(SizeClass::of(layout(8, 2 * MAX_ALIGN)), None);
        assert_eq!(
            SizeClass::of(layout(MAX_CLASS_BYTES, 8)).map(|c| c.0),
            Some(CLASSES - 1)
        );
    }

    #[test]
    fn blocks_are_aligned_as_asked_and_never_overlap() {
        let arena = ProcessArena::for_short_lived_processes();
        let mut blocks = Vec::new();
        for (i, align) in [1usize, 2, 8, 16, 64, 4096, 1, 32]
            .iter()
            .cycle()
            .take(400)
            .enumerate()
        {
            let layout = layout(1 + (i * 37) % 3000, *align);
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
    fn a_freed_block_is_reused_by_its_class_so_churn_touches_no_new_memory() {
        let arena = ProcessArena::for_short_lived_processes();
        // SAFETY: each block is freed with the layout it was allocated with.
        unsafe {
            let first = arena.alloc(layout(3000, 8));
            arena.dealloc(first, layout(3000, 8));
            let again = arena.alloc(layout(2100, 8));
            assert_eq!(
                again, first,
                "same class (4 KiB): the freed block is taken again"
            );
            arena.dealloc(again, layout(2100, 8));
            let before = cut(&arena);
            for i in 0..10_000usize {
                let a = arena.alloc(layout(100 + i % 900, 8));
                let b = arena.alloc(layout(20_000, 8));
                fill(b, 20_000, 1);
                arena.dealloc(a, layout(100 + i % 900, 8));
                arena.dealloc(b, layout(20_000, 8));
            }
            let grown = cut(&arena) - before;
            // One block of each class used (128 B to 1 KiB, 32 KiB) and the padding before them, not 200 MB.
            assert!(
                grown <= 64 << 10,
                "10 000 rounds of churn cut {grown} more bytes"
            );
        }
    }

    #[test]
    fn large_blocks_and_large_alignments_come_from_the_system_and_go_back_to_it() {
        let arena = ProcessArena::for_short_lived_processes();
        for layout in [
            layout(MAX_CLASS_BYTES + 1, 8),
            layout(3 * CHUNK_BYTES, 8),
            layout(100, 2 * MAX_ALIGN),
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
    fn zeroed_blocks_are_zero_even_when_they_reuse_a_written_one() {
        let arena = ProcessArena::for_short_lived_processes();
        let layout = layout(5000, 8);
        // SAFETY: a non-zero size; each block is freed with its layout.
        unsafe {
            let fresh = arena.alloc_zeroed(layout);
            assert!(all(fresh, layout.size(), 0));
            fill(fresh, layout.size(), 0xff);
            arena.dealloc(fresh, layout);
            let reused = arena.alloc_zeroed(layout);
            assert_eq!(reused, fresh, "the written block is the one taken again");
            assert!(all(reused, layout.size(), 0));
            arena.dealloc(reused, layout);
            let large = Layout::from_size_align(2 * MAX_CLASS_BYTES, 8).unwrap();
            let block = arena.alloc_zeroed(large);
            assert!(all(block, large.size(), 0));
            arena.dealloc(block, large);
        }
    }

    #[test]
    fn a_block_grows_in_place_within_its_class_and_moves_with_its_bytes_to_another() {
        let arena = ProcessArena::for_short_lived_processes();
        // SAFETY: blocks are used within their sizes and reallocated with their current layouts.
        unsafe {
            let block = arena.alloc(layout(40, 8));
            fill(block, 40, 1);
            let grown = arena.realloc(block, layout(40, 8), 64);
            assert_eq!(grown, block, "40 and 64 bytes are one class");
            let moved = arena.realloc(grown, layout(64, 8), 4000);
            assert_ne!(moved, grown, "4000 bytes are another class");
            assert!(all(moved, 40, 1), "the bytes moved with the block");
            assert_eq!(
                arena.alloc(layout(64, 8)),
                block,
                "the old block was freed to its class"
            );
            let shrunk = arena.realloc(moved, layout(4000, 8), 10);
            assert!(all(shrunk, 10, 1));
        }
    }

    #[test]
    fn blocks_crossing_the_largest_class_either_way_keep_their_bytes_and_their_owner() {
        let arena = ProcessArena::for_short_lived_processes();
        let small = layout(1000, 8);
        // SAFETY: as above.
        unsafe {
            let block = arena.alloc(small);
            fill(block, 1000, 7);
            let large = arena.realloc(block, small, 2 * MAX_CLASS_BYTES);
            assert!(
                !ProcessArena::owns(&arena.lock(), large),
                "a large block is the system's"
            );
            assert!(all(large, 1000, 7));
            let back = arena.realloc(large, layout(2 * MAX_CLASS_BYTES, 8), 500);
            assert!(
                ProcessArena::owns(&arena.lock(), back),
                "a small block is the arena's again"
            );
            assert!(all(back, 500, 7));
            arena.dealloc(back, layout(500, 8));
        }
    }

    #[test]
    fn past_its_limit_the_arena_hands_out_the_systems_memory_and_frees_it_there() {
        let arena = ProcessArena::new(CHUNK_BYTES);
        let layout = layout(MAX_CLASS_BYTES, 8);
        let mut from_system = Vec::new();
        // SAFETY: as above.
        unsafe {
            for _ in 0..(2 * CHUNK_BYTES / MAX_CLASS_BYTES) {
                let block = arena.alloc(layout);
                assert!(!block.is_null());
                fill(block, layout.size(), 3);
                if !ProcessArena::owns(&arena.lock(), block) {
                    from_system.push(block);
                }
            }
            assert_eq!(arena.lock().mapped, 1, "one chunk is the limit");
            assert_eq!(from_system.len(), CHUNK_BYTES / MAX_CLASS_BYTES);
            for block in from_system {
                let grown = arena.realloc(block, layout, MAX_CLASS_BYTES + 10);
                assert!(all(grown, layout.size(), 3));
                arena.dealloc(
                    grown,
                    Layout::from_size_align(MAX_CLASS_BYTES + 10, 8).unwrap(),
                );
            }
        }
    }

    #[test]
    fn threads_allocating_and_freeing_at_once_get_blocks_of_their_own() {
        let arena = ProcessArena::for_short_lived_processes();
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                let arena = &arena;
                scope.spawn(move || {
                    let mut blocks = Vec::new();
                    for i in 0..4000usize {
                        let layout = layout(8 + i % 200, 8);
                        // SAFETY: a non-zero size; freed below with the same layout.
                        let block = unsafe { arena.alloc(layout) };
                        fill(block, layout.size(), t);
                        blocks.push((block as usize, layout));
                        if i % 3 == 0 {
                            let (old, old_layout) = blocks.swap_remove(i % blocks.len());
                            assert!(
                                all(old as *const u8, old_layout.size(), t),
                                "thread {t}'s block"
                            );
                            // SAFETY: allocated above with this layout.
                            unsafe { arena.dealloc(old as *mut u8, old_layout) };
                        }
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
