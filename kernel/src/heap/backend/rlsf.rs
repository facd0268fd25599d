//! `rlsf` as a backend: a TLSF (two-level segregated fit) allocator, the
//! constant-time design of real-time kernels, as another global-lock peer.
//! rlsf keeps no byte counts of its own, so this wrapper counts the payload
//! bytes it hands out.
use core::{alloc::Layout, ptr::NonNull};

use rlsf::{GRANULARITY, Tlsf};
use slab_core::{Backend, range_contains};

/// First-level size classes: blocks up to `GRANULARITY << 28` bytes
/// (8 GiB), more than any heap the kernel maps; rlsf splits a larger pool.
const FIRST_LEVELS: usize = 28;
/// Second-level classes per first level: 32, rlsf's finest with a `u32`.
const SECOND_LEVELS: usize = 32;

/// The header rlsf writes in front of every block it hands out.
const USED_HEADER_BYTES: usize = GRANULARITY / 2;

/// rlsf's allocator with the kernel's size classes.
pub type Pool = Tlsf<'static, u32, u32, FIRST_LEVELS, SECOND_LEVELS>;

/// TLSF over the heap region `start..end`.
pub struct RlsfBackend {
    tlsf: Pool,
    start: usize,
    end: usize,
    /// Bytes rlsf took into its pool (the region less its rounding).
    pool_bytes: usize,
    /// Payload bytes of live blocks, with rlsf's rounding.
    used_bytes: usize,
    live_blocks: usize,
}

impl RlsfBackend {
    /// TLSF over `start..start + bytes`.
    ///
    /// # Safety
    /// The range is mapped, writable and used by nothing else for ever.
    pub unsafe fn over(start: *mut u8, bytes: usize) -> Self {
        let mut tlsf = Pool::new();
        let block = NonNull::slice_from_raw_parts(
            NonNull::new(start).expect("the heap region does not start at address 0"),
            bytes,
        );
        // SAFETY: forwarded from the caller: the block is memory rlsf may own
        // for ever ('static).
        let pool_bytes = unsafe { tlsf.insert_free_block_ptr(block) }
            .expect("the heap region is large enough for rlsf")
            .get();
        Self {
            tlsf,
            start: start.addr(),
            end: start.addr() + bytes,
            pool_bytes,
            used_bytes: 0,
            live_blocks: 0,
        }
    }
}

// SAFETY: `Tlsf` owns no thread-bound state; its pointers are into the heap
// region, which the kernel never unmaps.
unsafe impl Send for RlsfBackend {}

// SAFETY: rlsf hands out disjoint blocks of its pool that fit the layout and
// never calls a global allocator.
unsafe impl Backend for RlsfBackend {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let block = self.tlsf.allocate(layout)?;
        // SAFETY: `block` was just allocated by this `Tlsf` and is live.
        self.used_bytes += unsafe { Pool::allocation_usable_size(block) };
        self.live_blocks += 1;
        Some(block)
    }

    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded: the block came from `allocate` with `layout` and
        // is live until the `deallocate` below.
        self.used_bytes -= unsafe { Pool::allocation_usable_size(block) };
        self.live_blocks -= 1;
        // SAFETY: forwarded: the block came from `allocate` with this
        // alignment and is freed once.
        unsafe { self.tlsf.deallocate(block, layout.align()) }
    }

    fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// The pool less live payloads and their headers. Padding rlsf inserts
    /// for alignments above 16 bytes is not known here, so this is an upper
    /// bound by at most `align - 16` bytes per such live block.
    fn free_bytes(&self) -> usize {
        self.pool_bytes - self.used_bytes - self.live_blocks * USED_HEADER_BYTES
    }

    fn contains(&self, address: usize, bytes: usize) -> bool {
        range_contains(self.start, self.end, address, bytes)
    }
}
