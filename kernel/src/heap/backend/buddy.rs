//! `buddy_system_allocator` as a backend: power-of-two blocks, the other
//! allocator a user might pick instead of the chapter's linked list.
use core::{alloc::Layout, ptr::NonNull};

use slab_core::{Backend, range_contains};

/// Block orders: up to 2^32 bytes, more than any heap the kernel maps.
pub const ORDERS: usize = 33;

/// The buddy allocator over the heap region `start..end`.
pub struct BuddyBackend {
    buddy: buddy_system_allocator::Heap<ORDERS>,
    start: usize,
    end: usize,
}

impl BuddyBackend {
    /// A buddy allocator over `start..start + bytes`.
    ///
    /// # Safety
    /// The range is mapped, writable and used by nothing else for ever.
    pub unsafe fn over(start: *mut u8, bytes: usize) -> Self {
        let mut heap = buddy_system_allocator::Heap::empty();
        // SAFETY: forwarded from the caller.
        unsafe { heap.init(start as usize, bytes) };
        Self { buddy: heap, start: start as usize, end: start as usize + bytes }
    }
}

// SAFETY: the buddy allocator hands out disjoint power-of-two blocks of its
// region that fit the layout and never calls a global allocator.
unsafe impl Backend for BuddyBackend {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.buddy.alloc(layout).ok()
    }

    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        self.buddy.dealloc(block, layout)
    }

    fn used_bytes(&self) -> usize {
        self.buddy.stats_alloc_actual()
    }

    fn free_bytes(&self) -> usize {
        self.buddy.stats_total_bytes() - self.buddy.stats_alloc_actual()
    }

    fn contains(&self, address: usize, bytes: usize) -> bool {
        range_contains(self.start, self.end, address, bytes)
    }
}
