//! The backing allocator behind the global lock: a trait, so the kernel can
//! start with `linked_list_allocator::Heap` and later plug in others, and
//! its implementation for `linked_list_allocator::Heap`.

use core::alloc::Layout;
use core::ptr::NonNull;

/// A single-threaded allocator over a fixed region. The heap wraps it in its
/// own instrumented spin lock, always taken with interrupts masked, and asks
/// it for large objects and for slabs (`slab_bytes`-sized, aligned to that).
///
/// # Safety
/// Implementors promise that `allocate` returns blocks valid for reads and
/// writes of `layout.size()` bytes, aligned to `layout.align()`, overlapping
/// no other live block, until they are passed to `deallocate`; and that no
/// method allocates from or frees to the heap that owns this backend.
pub unsafe trait Backend: Send {
    /// A block for `layout`, or `None` if there is no room.
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>>;

    /// Frees a block.
    ///
    /// # Safety
    /// `block` must come from `allocate` on this backend with this `layout`,
    /// and not have been freed since.
    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout);

    /// Bytes handed out (including rounding the backend adds).
    fn used_bytes(&self) -> usize;

    /// Bytes still free.
    fn free_bytes(&self) -> usize;

    /// Whether `address..address + bytes` lies wholly inside the memory this
    /// backend manages (handed out or not). Heap checking uses it to tell
    /// pointers the heap may have handed out from any others.
    fn contains(&self, address: usize, bytes: usize) -> bool;
}

/// Whether `address..address + bytes` lies inside `start..end`.
pub fn range_contains(start: usize, end: usize, address: usize, bytes: usize) -> bool {
    address >= start && address.checked_add(bytes).is_some_and(|last| last <= end)
}

// SAFETY: `Heap::allocate_first_fit` hands out disjoint blocks of its region
// that fit the layout, and never calls back into any global allocator.
unsafe impl Backend for linked_list_allocator::Heap {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.allocate_first_fit(layout).ok()
    }

    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller (a block of this heap, this
        // layout, freed once).
        unsafe { linked_list_allocator::Heap::deallocate(self, block, layout) }
    }

    fn used_bytes(&self) -> usize {
        self.used()
    }

    fn free_bytes(&self) -> usize {
        if self.bottom().is_null() { 0 } else { self.free() }
    }

    fn contains(&self, address: usize, bytes: usize) -> bool {
        // An empty heap (null bottom) contains nothing.
        !self.bottom().is_null()
            && range_contains(self.bottom().addr(), self.top().addr(), address, bytes)
    }
}
