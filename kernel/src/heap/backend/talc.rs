//! `talc` as a backend: the allocator a user might pick instead of the
//! chapter's linked list (its counters give the used and free bytes).
use core::{alloc::Layout, ptr::NonNull};

use slab_core::{Backend, range_contains};
use talc::{ErrOnOom, Span, Talc};

/// Talc over the heap region `start..end`.
pub struct TalcBackend {
    talc: Talc<ErrOnOom>,
    start: usize,
    end: usize,
}

// SAFETY: `Talc` owns no thread-bound state; its pointers are into the heap
// region, which the kernel never unmaps.
unsafe impl Send for TalcBackend {}

impl TalcBackend {
    /// Talc over `start..start + bytes`.
    ///
    /// # Safety
    /// The range is mapped, writable and used by nothing else for ever.
    pub unsafe fn over(start: *mut u8, bytes: usize) -> Self {
        let mut talc = Talc::new(ErrOnOom);
        // SAFETY: forwarded from the caller: the span is memory talc may own.
        unsafe { talc.claim(Span::from_base_size(start, bytes)) }
            .expect("the heap region is large enough for talc");
        Self { talc, start: start.addr(), end: start.addr() + bytes }
    }
}

// SAFETY: talc hands out disjoint blocks of its claimed span that fit the
// layout and never calls a global allocator.
unsafe impl Backend for TalcBackend {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: `layout` has a non-zero size (the heap never asks for 0).
        unsafe { self.talc.malloc(layout) }.ok()
    }

    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded: the block came from `malloc` with `layout`.
        unsafe { self.talc.free(block, layout) }
    }

    fn used_bytes(&self) -> usize {
        self.talc.get_counters().allocated_bytes
    }

    fn free_bytes(&self) -> usize {
        self.talc.get_counters().available_bytes
    }

    fn contains(&self, address: usize, bytes: usize) -> bool {
        range_contains(self.start, self.end, address, bytes)
    }
}
