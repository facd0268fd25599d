//! Physical memory allocator for the loader: first fit over free RAM below
//! 4 GiB, recording every claim (bootloader-reclaimable or
//! executable-and-modules) for the memory map.

use crate::memmap::{Kind, MAX_REGIONS, Region, Regions};
use crate::phys::{self, IDENTITY_LIMIT, PAGE, align_down, align_up};

const MAX_CLAIMS: usize = 32;

pub struct Allocator {
    free: Regions<MAX_REGIONS>,
    claims: Regions<MAX_CLAIMS>,
}

impl Allocator {
    /// Starts from the usable regions of a classified map, clipped to the
    /// identity-mapped 4 GiB and shrunk to whole pages.
    pub fn new(map: &Regions<MAX_REGIONS>) -> Self {
        let mut free = Regions::new();
        for r in map.as_slice().iter().filter(|r| r.kind == Kind::Usable) {
            let start = align_up(r.start, PAGE);
            let end = align_down(r.end.min(IDENTITY_LIMIT), PAGE);
            free.add(start, end, Kind::Usable);
        }
        Allocator { free, claims: Regions::new() }
    }

    /// Records memory the loader uses without having allocated it (its own
    /// image, the kernel module), so the memory map reports it.
    pub fn claim(&mut self, start: u64, end: u64, kind: Kind) {
        self.record(start, end, kind);
    }

    pub fn claims(&self) -> &[Region] {
        self.claims.as_slice()
    }

    fn record(&mut self, start: u64, end: u64, kind: Kind) {
        for c in self.claims.as_mut_slice() {
            if c.kind == kind && c.end == start {
                c.end = end;
                return;
            }
            if c.kind == kind && c.start == end {
                c.start = start;
                return;
            }
        }
        self.claims.add(start, end, kind);
    }

    /// Allocates `size` bytes (rounded up to pages) aligned to `align`, at or
    /// above `min`, from the lowest free address that fits. Zeroes the
    /// memory if `zero`.
    pub fn alloc(
        &mut self,
        size: u64,
        align: u64,
        min: u64,
        kind: Kind,
        zero: bool,
    ) -> Option<u64> {
        let size = align_up(size.max(1), PAGE);
        let align = align.max(PAGE);
        let found = self.free.as_slice().iter().enumerate().find_map(|(i, r)| {
            let start = align_up(r.start.max(min), align);
            (start.checked_add(size)? <= r.end).then_some((i, start))
        });
        let (index, start) = found?;
        self.take(index, start, size, kind, zero);
        Some(start)
    }

    /// Allocates one page as high as possible below `limit` (and not below
    /// `min`): for the AP trampoline, which must live below 1 MiB.
    pub fn alloc_page_below(&mut self, min: u64, limit: u64, kind: Kind) -> Option<u64> {
        let found = self.free.as_slice().iter().enumerate().rev().find_map(|(i, r)| {
            let top = align_down(r.end.min(limit), PAGE);
            (top >= PAGE && top - PAGE >= r.start.max(min)).then_some((i, top - PAGE))
        });
        let (index, start) = found?;
        self.take(index, start, PAGE, kind, true);
        Some(start)
    }

    fn take(&mut self, index: usize, start: u64, size: u64, kind: Kind, zero: bool) {
        let r = self.free.as_slice()[index];
        let end = start + size;
        self.free.remove(index);
        if end < r.end {
            self.free.insert(index, Region { start: end, end: r.end, kind: Kind::Usable });
        }
        if start > r.start {
            self.free.insert(index, Region { start: r.start, end: start, kind: Kind::Usable });
        }
        self.record(start, end, kind);
        if zero {
            // SAFETY: the range came from free RAM below 4 GiB (identity
            // mapped) and was just removed from the free list, so the loader
            // owns it exclusively.
            unsafe { phys::bytes_mut(start, size) }.fill(0);
        }
    }
}
