//! The host heap's backend: TLSF (`rlsf`, constant time, no list walk)
//! over one address-space reservation. The reservation is mapped
//! inaccessible up front and made writable in steps as the heap grows, so
//! the heap stays contiguous (`contains` is one range check) and large
//! objects need no walk of their own. Freed blocks of a slab's size or
//! more (empty slabs, large objects) give their whole pages back to the OS
//! (`MADV_DONTNEED`) before TLSF takes them back.

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
        Self { tlsf: Pool::new(), start: 0, committed: 0, pool_bytes: 0, used_bytes: 0 }
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
        let block = match self.tlsf.allocate(layout) {
            Some(block) => block,
            None => {
                // Room for the block, its alignment and TLSF's headers.
                let needed = layout.size().checked_add(layout.align())?.checked_add(PAGE_BYTES)?;
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
        if usable >= RETURN_BYTES {
            return_pages(block.addr().get(), usable);
        }
        // SAFETY: forwarded from the caller: from `allocate` with `layout`,
        // freed once.
        unsafe { self.tlsf.deallocate(block, layout.align()) };
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
