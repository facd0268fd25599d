//! The host heap's backend: TLSF (`rlsf`, constant time, no list walk)
//! over one address-space reservation. The reservation is mapped
//! inaccessible up front and made writable in steps as the heap grows, so
//! the heap stays contiguous (`contains` is one range check) and large
//! objects need no walk of their own. Freed blocks of a slab's size or
//! more (empty slabs, large objects) give their whole pages back to the OS
//! (`MADV_DONTNEED`) before TLSF takes them back, but not at once: the most
//! recently freed ones, up to [`DIRTY_BLOCKS`] blocks and [`DIRTY_BYTES`]
//! bytes, keep their pages for an allocation that fits them (a slab of the
//! same class, a buffer of the same alignment and at least half the size),
//! which then takes no page faults; the oldest goes back when a newer one
//! needs the room. A program that allocates and frees thousands of objects
//! in rounds (Hoard's `threadtest`, Leijen's `mstress`) would otherwise give
//! its slabs' pages back and fault them in again every round.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use rlsf::Tlsf;

use crate::backend::{Backend, range_contains};

/// Address space reserved for the heap: 1 TiB, inaccessible until used
/// (an x86_64 process has 128 TiB; the reservation costs no memory).
const RESERVE_BYTES: usize = 1 << 40;
/// The heap grows by at least this much at a time.
const GROW_BYTES: usize = 64 << 20;
/// Freed blocks of at least this many bytes (the smallest slab) return
/// their whole pages to the OS.
pub(crate) const RETURN_BYTES: usize = 16 << 10;
const PAGE_BYTES: usize = 4096;
/// Freed blocks kept with their pages, at most (docs/host.md: `mstress`
/// at 2 threads took 34,661 page faults with 1,024 and 32 MiB, 16,832
/// with 4,096 and 64 MiB, 16,678 with 4,096 and 128 MiB).
pub(crate) const DIRTY_BLOCKS: usize = 4096;
/// Bytes of freed blocks kept with their pages, at most.
pub(crate) const DIRTY_BYTES: usize = 64 << 20;
/// `DirtyBlocks::per_align` has a count per power of two.
const ALIGNS: usize = usize::BITS as usize;
const _: () = assert!(DIRTY_BLOCKS <= u16::MAX as usize);

/// First-level TLSF classes: blocks up to 32 << 28 bytes (8 GiB) each.
const FIRST_LEVELS: usize = 28;
/// Second-level classes per first level.
const SECOND_LEVELS: usize = 32;
type Pool = Tlsf<'static, u32, u32, FIRST_LEVELS, SECOND_LEVELS>;

/// TLSF over the part of the reservation made writable so far.
pub(crate) struct HostBackend {
    tlsf: Pool,
    /// The reservation's first byte; 0 before `reserve`.
    start: usize,
    /// Bytes of the reservation made writable (and given to TLSF).
    committed: usize,
    /// Bytes TLSF took into its pools.
    pool_bytes: usize,
    /// Usable bytes of live blocks.
    used_bytes: usize,
    /// Freed blocks of `RETURN_BYTES` or more still holding their pages:
    /// allocated from TLSF, free for us.
    dirty: DirtyBlocks,
}

/// Freed blocks kept with their pages, oldest first: a ring of entries in
/// which a block taken out for reuse leaves a hole (`usable` 0) until the
/// ends pass it, so that taking and evicting move no other entry.
struct DirtyBlocks {
    ring: [DirtyBlock; DIRTY_BLOCKS],
    /// The ring index of the oldest entry.
    oldest: usize,
    /// Entries from `oldest` on, holes included.
    len: usize,
    /// Usable bytes of the entries that are blocks (0: there is none).
    bytes: usize,
    /// Blocks per alignment (index: its log2): a request of an alignment
    /// no block has skips the search.
    per_align: [u16; ALIGNS],
}

impl DirtyBlocks {
    const fn new() -> Self {
        Self {
            ring: [DirtyBlock { address: 0, align: 0, usable: 0 }; DIRTY_BLOCKS],
            oldest: 0,
            len: 0,
            bytes: 0,
            per_align: [0; ALIGNS],
        }
    }

    /// The count of blocks of alignment `align`.
    fn count_of(&mut self, align: usize) -> &mut u16 {
        &mut self.per_align[align_index(align)]
    }

    /// Whether some block has alignment `align`.
    fn has_align(&self, align: usize) -> bool {
        self.per_align[align_index(align)] != 0
    }

    /// The ring index of the `i`th entry from the oldest.
    fn index(&self, i: usize) -> usize {
        (self.oldest + i) % DIRTY_BLOCKS
    }

    /// Adds the newest block; the ring must have room.
    fn push(&mut self, block: DirtyBlock) {
        debug_assert!(self.len < DIRTY_BLOCKS && block.usable != 0);
        let index = self.index(self.len);
        self.ring[index] = block;
        self.len += 1;
        self.bytes += block.usable;
        *self.count_of(block.align) += 1;
    }

    /// The newest block for which `fits` holds, taken out.
    fn take_newest(&mut self, fits: impl Fn(&DirtyBlock) -> bool) -> Option<DirtyBlock> {
        let i = (0..self.len).rev().find(|&i| {
            let block = &self.ring[self.index(i)];
            block.usable != 0 && fits(block)
        })?;
        let index = self.index(i);
        let block = self.ring[index];
        self.ring[index].usable = 0;
        self.bytes -= block.usable;
        *self.count_of(block.align) -= 1;
        // Holes at the newest end go at once (the oldest end skips its own).
        while self.len > 0 && self.ring[self.index(self.len - 1)].usable == 0 {
            self.len -= 1;
        }
        Some(block)
    }

    /// The oldest block, taken out.
    fn take_oldest(&mut self) -> Option<DirtyBlock> {
        while self.len > 0 {
            let block = self.ring[self.oldest];
            self.oldest = (self.oldest + 1) % DIRTY_BLOCKS;
            self.len -= 1;
            if block.usable != 0 {
                self.bytes -= block.usable;
                *self.count_of(block.align) -= 1;
                return Some(block);
            }
        }
        None
    }
}

/// Where `DirtyBlocks::per_align` counts blocks of alignment `align` (a
/// power of two): its log2.
fn align_index(align: usize) -> usize {
    align.trailing_zeros() as usize
}

/// A freed block kept with its pages.
#[derive(Clone, Copy)]
struct DirtyBlock {
    address: usize,
    align: usize,
    usable: usize,
}

// SAFETY: `Tlsf` holds pointers into the reservation only, which is never
// unmapped and belongs to no thread.
unsafe impl Send for HostBackend {}

/// The address space could not be reserved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReserveFailed {
    pub errno: i32,
}

impl HostBackend {
    /// A backend with no memory yet (`reserve` gives it its address space).
    pub(crate) const fn new() -> Self {
        Self {
            tlsf: Pool::new(),
            start: 0,
            committed: 0,
            pool_bytes: 0,
            used_bytes: 0,
            dirty: DirtyBlocks::new(),
        }
    }

    /// The newest dirty block that fits `layout` without wasting more than
    /// it: freed with the same alignment (TLSF finds a block's header from
    /// it), at least `layout.size()` usable bytes and at most twice that;
    /// taken out. The search walks the ring from the newest entry, so it
    /// runs only when some block has that alignment.
    fn take_dirty(&mut self, layout: Layout) -> Option<DirtyBlock> {
        if !self.dirty.has_align(layout.align()) {
            return None;
        }
        let fits = |block: &DirtyBlock| {
            block.align == layout.align()
                && (layout.size()..=layout.size().saturating_mul(2)).contains(&block.usable)
        };
        self.dirty.take_newest(fits)
    }

    /// Gives the oldest dirty block's pages back to the OS and the block
    /// to TLSF; `false` if there is none.
    fn release_oldest_dirty(&mut self) -> bool {
        let Some(block) = self.dirty.take_oldest() else {
            return false;
        };
        let pointer = NonNull::new(ptr::with_exposed_provenance_mut::<u8>(block.address))
            .expect("a dirty block is a TLSF block, not null");
        // SAFETY: a block TLSF handed out for this alignment, freed by its
        // user and kept here since, owned by nobody else.
        unsafe { self.give_back(pointer, block.align, block.usable) };
        true
    }

    /// Gives a freed block back to TLSF, and its whole pages to the OS
    /// first if it is of `RETURN_BYTES` or more.
    ///
    /// # Safety
    /// `block` is a block TLSF handed out for alignment `align`, with
    /// `usable` usable bytes, freed by its user and owned by nobody else.
    unsafe fn give_back(&mut self, block: NonNull<u8>, align: usize, usable: usize) {
        if usable >= RETURN_BYTES {
            return_pages(block.addr().get(), usable);
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.tlsf.deallocate(block, align) };
    }

    /// Reserves the heap's address space (once; later calls do nothing).
    pub(crate) fn reserve(&mut self) -> Result<(), ReserveFailed> {
        if self.start != 0 {
            return Ok(());
        }
        // SAFETY: a fresh private anonymous mapping at an address the kernel
        // picks: it overlaps nothing of ours.
        let start = unsafe {
            libc::mmap(
                ptr::null_mut(),
                RESERVE_BYTES,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(ReserveFailed {
                errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            });
        }
        self.start = start.expose_provenance();
        Ok(())
    }

    /// Makes at least `bytes` more of the reservation writable and gives it
    /// to TLSF; `false` if the reservation is used up or the OS refuses.
    fn grow(&mut self, bytes: usize) -> bool {
        let Some(step) = bytes.checked_next_multiple_of(GROW_BYTES).map(|b| b.max(GROW_BYTES))
        else {
            return false;
        };
        if self.start == 0 || step > RESERVE_BYTES - self.committed {
            return false;
        }
        let chunk = self.start + self.committed;
        // SAFETY: `chunk..chunk + step` lies inside our reservation (checked
        // above) and is not yet in use: only this backend changes it.
        let made_writable = unsafe {
            libc::mprotect(
                ptr::with_exposed_provenance_mut(chunk),
                step,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } == 0;
        if !made_writable {
            return false;
        }
        let block = NonNull::slice_from_raw_parts(
            NonNull::new(ptr::with_exposed_provenance_mut::<u8>(chunk))
                .expect("the reservation does not start at address 0"),
            step,
        );
        let added = if self.committed == 0 {
            // SAFETY: writable memory that nothing else uses, for ever.
            unsafe { self.tlsf.insert_free_block_ptr(block) }.map_or(0, |n| n.get())
        } else {
            // SAFETY: as above; it starts where the previous chunk (the end
            // of the last pool) ended.
            unsafe { self.tlsf.append_free_block_ptr(block) }
        };
        self.committed += step;
        self.pool_bytes += added;
        added > 0
    }
}

// SAFETY: TLSF hands out disjoint blocks of its pools that fit the layout;
// the pools are writable memory of our reservation; nothing here allocates
// from any global allocator (mmap, mprotect and madvise are system calls).
unsafe impl Backend for HostBackend {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() >= RETURN_BYTES
            && let Some(dirty) = self.take_dirty(layout)
        {
            self.used_bytes += dirty.usable;
            return NonNull::new(ptr::with_exposed_provenance_mut(dirty.address));
        }
        let block = match self.tlsf.allocate(layout) {
            Some(block) => block,
            // The dirty blocks go back first: TLSF may merge them into room.
            None if self.dirty.bytes > 0 => {
                while self.release_oldest_dirty() {}
                return self.allocate(layout);
            }
            None => {
                // Room for the block, its alignment and TLSF's headers, and
                // for TLSF's good-fit search, which looks only in lists
                // whose smallest block is at least the request rounded up
                // to its list's granularity (1/32 of its power of two).
                let slack = layout.size() / (SECOND_LEVELS / 2);
                let needed = (layout.size().checked_add(slack)?)
                    .checked_add(layout.align())?
                    .checked_add(PAGE_BYTES)?;
                if !self.grow(needed) {
                    return None;
                }
                self.tlsf.allocate(layout)?
            }
        };
        // SAFETY: a live block of this TLSF.
        self.used_bytes += unsafe { Pool::allocation_usable_size(block) };
        Some(block)
    }

    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded: a live block of this TLSF.
        let usable = unsafe { Pool::allocation_usable_size(block) };
        self.used_bytes -= usable;
        if (RETURN_BYTES..=DIRTY_BYTES).contains(&usable) {
            // Kept with its pages; the oldest ones go back to make room.
            while self.dirty.len == DIRTY_BLOCKS || self.dirty.bytes + usable > DIRTY_BYTES {
                self.release_oldest_dirty();
            }
            self.dirty.push(DirtyBlock {
                address: block.as_ptr().expose_provenance(),
                align: layout.align(),
                usable,
            });
            return;
        }
        // SAFETY: forwarded from the caller: from `allocate` with `layout`,
        // freed once.
        unsafe { self.give_back(block, layout.align(), usable) };
    }

    fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    fn free_bytes(&self) -> usize {
        self.pool_bytes - self.used_bytes
    }

    fn contains(&self, address: usize, bytes: usize) -> bool {
        self.committed != 0
            && range_contains(self.start, self.start + self.committed, address, bytes)
    }
}

/// Gives the whole pages inside the block `start..start + bytes` (whose
/// contents no longer matter) back to the OS; they read as zero when next
/// touched. TLSF's own headers lie outside the block's usable bytes.
fn return_pages(start: usize, bytes: usize) {
    let first = start.next_multiple_of(PAGE_BYTES);
    let end = (start + bytes) & !(PAGE_BYTES - 1);
    if end > first {
        // SAFETY: whole pages of a block being freed, ours alone: dropping
        // their contents changes nothing anyone may read.
        unsafe {
            libc::madvise(ptr::with_exposed_provenance_mut(first), end - first, libc::MADV_DONTNEED)
        };
    }
}

// The backend's tests map memory with `PROT_NONE`, which Miri cannot run.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A byte of `block` at `offset`.
    fn byte_at(block: NonNull<u8>, offset: usize) -> u8 {
        // SAFETY: the tests read inside blocks of the backend's reservation,
        // which stays mapped and readable once committed.
        unsafe { block.as_ptr().add(offset).read_volatile() }
    }

    #[test]
    fn a_freed_slab_comes_back_with_its_pages_until_newer_ones_push_it_out() {
        let mut backend = HostBackend::new();
        backend.reserve().unwrap();
        let layout = Layout::from_size_align(64 << 10, 64 << 10).unwrap();
        let first = backend.allocate(layout).unwrap();
        // SAFETY: a fresh block of `layout.size()` bytes.
        unsafe { first.as_ptr().write_bytes(0xa5, layout.size()) };
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { backend.deallocate(first, layout) };
        assert_eq!(backend.used_bytes(), 0);
        let again = backend.allocate(layout).unwrap();
        assert_eq!(again, first, "an allocation of the same layout gets the freed block");
        assert_eq!(byte_at(again, 8192), 0xa5, "with its pages: no fault, no zeroing");

        // Freed first, then DIRTY_BYTES of newer blocks: it goes back to the
        // OS (its pages read as zero) and to TLSF.
        let newer: Vec<_> =
            (0..DIRTY_BYTES / layout.size()).map(|_| backend.allocate(layout).unwrap()).collect();
        // SAFETY: as above.
        unsafe { backend.deallocate(again, layout) };
        for &block in &newer {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { backend.deallocate(block, layout) };
        }
        assert_eq!(byte_at(first, 8192), 0, "the oldest freed block's pages went back");
        assert!(backend.dirty.bytes <= DIRTY_BYTES && backend.dirty.len <= DIRTY_BLOCKS);
        assert_eq!(backend.used_bytes(), 0);
        assert_eq!(backend.free_bytes(), backend.pool_bytes);
    }

    /// The blocks per alignment, counted from the ring's entries.
    fn recount(dirty: &DirtyBlocks) -> [u16; ALIGNS] {
        let mut counts = [0; ALIGNS];
        for i in 0..dirty.len {
            let block = &dirty.ring[dirty.index(i)];
            if block.usable != 0 {
                counts[align_index(block.align)] += 1;
            }
        }
        counts
    }

    #[test]
    fn the_counts_per_alignment_follow_every_push_take_and_eviction() {
        let mut backend = HostBackend::new();
        backend.reserve().unwrap();
        let layouts = [(16 << 10, 16 << 10), (20_000, 8), (24 << 10, 4096), (1 << 20, 64)]
            .map(|(size, align)| Layout::from_size_align(size, align).unwrap());
        let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
        // A fixed pseudo-random walk (xorshift) of allocations and frees,
        // long enough to fill the ring and evict from it.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let layout = layouts[(state % 4) as usize];
            if live.len() < 64 || state.is_multiple_of(3) {
                let block = backend.allocate(layout).expect("room in the reservation");
                live.push((block, layout));
            } else {
                let (block, layout) = live.swap_remove((state >> 8) as usize % live.len());
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { backend.deallocate(block, layout) };
            }
            assert_eq!(backend.dirty.per_align, recount(&backend.dirty), "step {step}");
        }
        // A request of an alignment no block has finds none at once.
        let unseen = Layout::from_size_align(16 << 10, 1 << 20).unwrap();
        assert!(!backend.dirty.has_align(unseen.align()));
        assert!(backend.take_dirty(unseen).is_none());
        for (block, layout) in live {
            // SAFETY: as above.
            unsafe { backend.deallocate(block, layout) };
        }
        assert_eq!(backend.dirty.per_align, recount(&backend.dirty));
    }

    #[test]
    fn dirty_blocks_go_back_to_tlsf_before_the_heap_grows() {
        let mut backend = HostBackend::new();
        backend.reserve().unwrap();
        let small = Layout::from_size_align(32 << 10, 32 << 10).unwrap();
        // 32 KiB blocks over most of the first 64 MiB chunk and into the
        // next, all freed: the newest stay dirty, between free ranges.
        let blocks: Vec<_> =
            (0..GROW_BYTES / small.size()).map(|_| backend.allocate(small).unwrap()).collect();
        for &block in &blocks {
            // SAFETY: allocated above with `small`, freed once.
            unsafe { backend.deallocate(block, small) };
        }
        assert!(backend.dirty.bytes > 0);
        // A block TLSF cannot place as things are (checked): the dirty
        // blocks go back to TLSF before the heap grows for it.
        let big = Layout::from_size_align(GROW_BYTES - (1 << 20), 4096).unwrap();
        assert!(backend.tlsf.allocate(big).is_none(), "the test needs a request TLSF refuses");
        let block = backend.allocate(big).expect("room after giving back and growing");
        assert_eq!((backend.dirty.len, backend.dirty.bytes), (0, 0));
        // SAFETY: allocated above with `big`, freed once.
        unsafe { backend.deallocate(block, big) };
    }

    #[test]
    fn a_block_just_below_the_growth_step_fits_a_fresh_heap() {
        let mut backend = HostBackend::new();
        backend.reserve().unwrap();
        let big = Layout::from_size_align(GROW_BYTES - (1 << 20), 4096).unwrap();
        let block = backend.allocate(big).expect("the heap grows by enough for TLSF's search");
        // SAFETY: allocated above with `big`, freed once.
        unsafe { backend.deallocate(block, big) };
    }

    #[test]
    fn a_freed_buffer_serves_a_request_of_the_same_alignment_and_at_least_half_its_size() {
        let mut backend = HostBackend::new();
        backend.reserve().unwrap();
        let freed = Layout::from_size_align(40_000, 8).unwrap();
        let block = backend.allocate(freed).unwrap();
        // SAFETY: allocated above with `freed`, freed once.
        unsafe { backend.deallocate(block, freed) };
        // Too large, too small (more than half would be wasted), another
        // alignment: kept, so that they do not become dirty blocks too.
        let others: Vec<_> = [(50_000, 8), (19_000, 8), (30_000, 16)]
            .into_iter()
            .map(|(size, align)| {
                let layout = Layout::from_size_align(size, align).unwrap();
                let other = backend.allocate(layout).unwrap();
                assert_ne!(other, block, "{size} bytes aligned {align}");
                (other, layout)
            })
            .collect();
        let smaller = Layout::from_size_align(30_000, 8).unwrap();
        let again = backend.allocate(smaller).unwrap();
        assert_eq!(again, block, "30,000 bytes aligned 8 get the 40,000-byte block");
        // SAFETY: allocated above with `smaller`, freed once.
        unsafe { backend.deallocate(again, smaller) };
        for (other, layout) in others {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { backend.deallocate(other, layout) };
        }
        assert_eq!(backend.used_bytes(), 0);
    }
}
