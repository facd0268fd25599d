//! `alloc=slabmalloc`: the `slabmalloc` crate (0.11.0, the per-core
//! `ZoneAllocator` of NrOS) as an in-field per-CPU peer of the slab heap.
//! One `ZoneAllocator` per CPU over a page source shared under one lock;
//! `docs/allocator.md` ("alloc=slabmalloc") has the design.
//!
//! ```text
//!  CPU 0 zone      CPU 1 zone   ...      one ZoneAllocator per CPU, touched
//!  8..256 B        8..256 B              only by its CPU, interrupts masked
//!  512 B..128 KiB  512 B..128 KiB
//!        \            /
//!   PAGE_SOURCE (one IrqSpinLock)        4 KiB pages from a free stack fed
//!   linked_list_allocator::Heap          with 64 KiB chunks; 2 MiB pages and
//!   over the whole heap region           blocks above 128 KiB straight from
//!                                        the linked-list heap
//! ```
//!
//! Lock order: a CPU's zone (interrupts masked), then `PAGE_SOURCE`; never
//! the other way round.
//!
//! Frees go to the freeing CPU's zone, as NrOS does: slabmalloc finds the
//! page from the address and clears the object's bit in that page's atomic
//! bitfield, so a free on another CPU returns the object to the page (and
//! the CPU) that allocated it and touches no zone's page lists. The owner
//! sees a slot freed in one of its full pages only at its next rebalance.
use core::{
    alloc::{GlobalAlloc, Layout},
    cell::UnsafeCell,
    ptr::{self, NonNull},
    sync::atomic::{Ordering, fence},
};

use slab_core::HeapUsage;
use slabmalloc::{AllocationError, Allocator, LargeObjectPage, ObjectPage, ZoneAllocator};

use crate::{
    arch::interrupts::IrqGuard,
    smp::{self, MAX_CPUS},
    sync::IrqSpinLock,
};

/// slabmalloc's small pages (`ObjectPage`), for classes up to 256 bytes.
const BASE_PAGE_BYTES: usize = 4096;
/// slabmalloc's large pages (`LargeObjectPage`), for 512 B..128 KiB.
const LARGE_PAGE_BYTES: usize = 2 << 20;
/// 4 KiB pages are carved from chunks this big (16 pages).
const BASE_PAGE_CHUNK_BYTES: usize = 64 << 10;

/// The heap when the command line names none: 16 MiB plus 18 MiB per CPU
/// (a CPU that uses all nine large classes pins nine 2 MiB pages), at most
/// three quarters of the memory left.
pub fn default_heap_bytes(cpus: usize, free_memory_bytes: u64) -> u64 {
    const BASE_BYTES: u64 = 16 << 20;
    const PER_CPU_BYTES: u64 = 18 << 20;
    (BASE_BYTES + PER_CPU_BYTES * cpus as u64).min(free_memory_bytes / 4 * 3)
}

/// Where every page and every block above 128 KiB comes from.
static PAGE_SOURCE: IrqSpinLock<PageSource> = IrqSpinLock::new(PageSource::empty());

/// The pages and large blocks over the heap region.
struct PageSource {
    heap: linked_list_allocator::Heap,
    /// Free 4 KiB pages, a stack linked through each page's first word.
    free_base_pages: Option<NonNull<FreeBasePage>>,
    free_base_page_count: usize,
    /// The most bytes ever handed out (pages and large blocks).
    peak_used_bytes: usize,
}

/// A free 4 KiB page on the source's stack.
struct FreeBasePage {
    next: Option<NonNull<FreeBasePage>>,
}

// SAFETY: the page source owns the heap region's memory, not any thread's;
// its pointers point into that region, which the kernel never unmaps.
unsafe impl Send for PageSource {}

impl PageSource {
    const fn empty() -> Self {
        Self {
            heap: linked_list_allocator::Heap::empty(),
            free_base_pages: None,
            free_base_page_count: 0,
            peak_used_bytes: 0,
        }
    }

    /// Bytes handed out: pages in zones and large blocks.
    fn used_bytes(&self) -> usize {
        self.heap.used() - self.free_base_page_count * BASE_PAGE_BYTES
    }

    fn free_bytes(&self) -> usize {
        self.heap.free() + self.free_base_page_count * BASE_PAGE_BYTES
    }

    fn note_peak(&mut self) {
        self.peak_used_bytes = self.peak_used_bytes.max(self.used_bytes());
    }

    /// A block of `layout` from the linked-list heap.
    fn block(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let block = self.heap.allocate_first_fit(layout).ok()?;
        self.note_peak();
        Some(block)
    }

    /// # Safety
    /// `block` came from [`Self::block`] with `layout` and is freed once.
    unsafe fn free_block(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.heap.deallocate(block, layout) }
    }

    /// A 4 KiB-aligned 4 KiB page.
    fn base_page(&mut self) -> Option<NonNull<u8>> {
        if self.free_base_pages.is_none() {
            let chunk = self.heap.allocate_first_fit(base_chunk_layout()).ok()?;
            for page in 0..BASE_PAGE_CHUNK_BYTES / BASE_PAGE_BYTES {
                // SAFETY: inside the chunk just allocated, which is ours.
                let page = unsafe { chunk.add(page * BASE_PAGE_BYTES) };
                // SAFETY: `page` is a 4 KiB page of the chunk that nothing
                // else uses.
                unsafe { self.push_base_page(page) };
            }
        }
        let page = self.free_base_pages?;
        // SAFETY: pages on the stack are free and hold their link.
        self.free_base_pages = unsafe { page.as_ref().next };
        self.free_base_page_count -= 1;
        self.note_peak();
        Some(page.cast())
    }

    /// # Safety
    /// `page` is a 4 KiB page from [`Self::base_page`] (or a fresh chunk)
    /// that nothing uses any more.
    unsafe fn push_base_page(&mut self, page: NonNull<u8>) {
        let page = page.cast::<FreeBasePage>();
        // SAFETY: the page is ours, writable and aligned for the link.
        unsafe { page.write(FreeBasePage { next: self.free_base_pages }) };
        self.free_base_pages = Some(page);
        self.free_base_page_count += 1;
    }
}

fn base_chunk_layout() -> Layout {
    Layout::from_size_align(BASE_PAGE_CHUNK_BYTES, BASE_PAGE_BYTES).expect("a page-aligned chunk")
}

fn large_page_layout() -> Layout {
    Layout::from_size_align(LARGE_PAGE_BYTES, LARGE_PAGE_BYTES).expect("an aligned 2 MiB page")
}

/// Hands slabmalloc the heap region `start..start + bytes`.
///
/// # Safety
/// The range is mapped, writable and used by nothing else for ever; no
/// allocation has gone through slabmalloc yet.
pub unsafe fn init(start: *mut u8, bytes: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { PAGE_SOURCE.lock().heap.init(start, bytes) };
}

/// slabmalloc as a `GlobalAlloc` (what `plain.rs` dispatches to).
pub struct SlabMalloc;

// SAFETY: `alloc` returns null or a block of the layout's size and
// alignment (a zone slot of a class at least `max(size, align)` in an
// aligned page, or a linked-list block) that overlaps no live block;
// `dealloc` and `realloc` route by the layout exactly as `alloc` did.
unsafe impl GlobalAlloc for SlabMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { realloc(ptr, layout, new_size) }
    }
}

/// One CPU's zone, on its own cache lines.
#[repr(align(64))]
struct CpuZone(UnsafeCell<ZoneAllocator<'static>>);

// SAFETY: the zone is only reached through `with_local_zone`, which hands
// it to the CPU it belongs to alone, with interrupts masked (see there).
unsafe impl Sync for CpuZone {}

static ZONES: [CpuZone; MAX_CPUS] =
    [const { CpuZone(UnsafeCell::new(ZoneAllocator::new())) }; MAX_CPUS];

/// Runs `f` on the running CPU's zone with local interrupts masked.
fn with_local_zone<R>(f: impl FnOnce(&mut ZoneAllocator<'static>) -> R) -> R {
    let _irqs_masked = IrqGuard::new();
    let cpu = &ZONES[smp::current_cpu_index()];
    // SAFETY: the only `&mut` to this zone while it lives:
    // 1. `cpu` is the running CPU's own zone; other CPUs reach it only
    //    through the same function on themselves (never this index), and
    //    their frees into this CPU's pages touch only the pages' atomic
    //    bitfields, never the zone.
    // 2. Interrupts stay masked until `f` returns, so no handler on this CPU
    //    can enter a heap operation in the middle (the NMI handler never
    //    allocates), and the kernel never preempts or migrates code.
    // 3. `f` never calls `with_local_zone` again (nothing below allocates
    //    through the global allocator).
    let zone = unsafe { &mut *cpu.0.get() };
    f(zone)
}

/// The layout slabmalloc routes by: size at least the alignment, so the
/// class's slots (at multiples of its power-of-two size in an aligned page)
/// are aligned enough. Alloc and free route identically.
fn class_layout(layout: Layout) -> Layout {
    Layout::from_size_align(layout.size().max(layout.align()), layout.align())
        .expect("size rounded up to its alignment still fits a Layout")
}

/// Whether `layout` goes to a zone (else to the page source as a block).
fn in_zone(class: Layout) -> bool {
    class.size() <= ZoneAllocator::MAX_ALLOC_SIZE
}

/// Allocates `layout`; null when the heap has no page left for it.
fn alloc(layout: Layout) -> *mut u8 {
    let class = class_layout(layout);
    if !in_zone(class) {
        return alloc_large(layout);
    }
    let block = with_local_zone(|zone| {
        loop {
            match zone.allocate(class) {
                Ok(block) => return block.as_ptr(),
                Err(AllocationError::OutOfMemory) => {
                    if refill(zone, class).is_none() {
                        return ptr::null_mut();
                    }
                }
                Err(AllocationError::InvalidLayout) => {
                    unreachable!("slabmalloc refused {class:?}, which is in its range")
                }
            }
        }
    });
    // Pairs with the release fence of the free (maybe on another CPU) that
    // gave this slot back: its writes happen before ours.
    fence(Ordering::Acquire);
    block
}

/// Gives `zone` a fresh page for `class` from the page source, after
/// reclaiming this zone's empty pages into the source if it has none.
fn refill(zone: &mut ZoneAllocator<'static>, class: Layout) -> Option<()> {
    let base = class.size() <= ZoneAllocator::MAX_BASE_ALLOC_SIZE;
    let take = || {
        let mut source = PAGE_SOURCE.lock();
        if base { source.base_page() } else { source.block(large_page_layout()) }
    };
    let page = match take() {
        Some(page) => page,
        None => {
            reclaim_empty_pages(zone);
            take()?
        }
    };
    let refilled = if base {
        // SAFETY: a 4 KiB-aligned 4 KiB page from the source that nothing
        // else uses, handed to the zone until it is reclaimed empty;
        // slabmalloc initialises the page's metadata itself (`refill` asks
        // for an unused page of the class's page size).
        unsafe { zone.refill(class, page.cast::<ObjectPage<'static>>().as_mut()) }
    } else {
        // SAFETY: the same for a 2 MiB-aligned 2 MiB page.
        unsafe { zone.refill_large(class, page.cast::<LargeObjectPage<'static>>().as_mut()) }
    };
    refilled.expect("the page has the size slabmalloc's class for this layout wants");
    Some(())
}

/// Hands every empty page of this CPU's `zone` back to the page source.
fn reclaim_empty_pages(zone: &mut ZoneAllocator<'static>) {
    zone.try_reclaim_base_pages(usize::MAX, |page| {
        // SAFETY: slabmalloc hands over a page of its empty list: a 4 KiB
        // page from `base_page` with no live object, no longer in the zone.
        unsafe { PAGE_SOURCE.lock().push_base_page(NonNull::new(page.cast()).expect("a page")) }
    });
    zone.try_reclaim_large_pages(usize::MAX, |page| {
        let page = NonNull::new(page.cast::<u8>()).expect("a page");
        // SAFETY: as above, a 2 MiB page from `block(large_page_layout())`.
        unsafe { PAGE_SOURCE.lock().free_block(page, large_page_layout()) }
    });
}

fn alloc_large(layout: Layout) -> *mut u8 {
    with_local_zone(|zone| {
        // The first guard must be gone before the reclaim takes the lock.
        let first_try = PAGE_SOURCE.lock().block(layout);
        let block = first_try.or_else(|| {
            reclaim_empty_pages(zone);
            PAGE_SOURCE.lock().block(layout)
        });
        block.map_or(ptr::null_mut(), NonNull::as_ptr)
    })
}

/// Frees `block`.
///
/// # Safety
/// `block` came from [`alloc`] (or [`realloc`]) with `layout` and is freed
/// once.
unsafe fn dealloc(block: *mut u8, layout: Layout) {
    let block = NonNull::new(block).expect("the global allocator never frees null");
    let class = class_layout(layout);
    if !in_zone(class) {
        // SAFETY: forwarded: a block of `layout` from `alloc_large`.
        unsafe { PAGE_SOURCE.lock().free_block(block, layout) };
        return;
    }
    // Our writes to the object happen before its next owner's (the
    // allocating CPU's zone may hand the slot out again at once).
    fence(Ordering::Release);
    with_local_zone(|zone| {
        zone.deallocate(block, class).expect("the class of a live block takes it back");
    });
}

/// Resizes `block` in place when the new size routes to the same class
/// (as NrOS does), else moves it.
///
/// # Safety
/// As `GlobalAlloc::realloc`: `block` came from [`alloc`] with `layout`,
/// `new_size` is non-zero and fits `isize` when aligned.
unsafe fn realloc(block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
        return ptr::null_mut();
    };
    let (old_class, new_class) = (class_layout(layout), class_layout(new_layout));
    if in_zone(old_class)
        && ZoneAllocator::get_max_size(old_class.size())
            == ZoneAllocator::get_max_size(new_class.size())
    {
        return block;
    }
    let moved = alloc(new_layout);
    if !moved.is_null() {
        // SAFETY: both blocks are live, distinct and at least this long.
        unsafe { ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
        // SAFETY: forwarded from the caller; freed once, here.
        unsafe { dealloc(block, layout) };
    }
    moved
}

/// Hands the running CPU's empty pages back to the page source, so the
/// source's free bytes count every page with no live object (the heap
/// books `drained_free_bytes` checks).
pub fn drain_local_cpu() {
    with_local_zone(reclaim_empty_pages);
}

/// The page source's usage: `used_bytes` is pages held by zones plus
/// large blocks, `slabs` is not kept (0).
pub fn usage() -> HeapUsage {
    let source = PAGE_SOURCE.lock();
    HeapUsage {
        used_bytes: source.used_bytes(),
        free_bytes: source.free_bytes(),
        peak_bytes: source.peak_used_bytes,
        slabs: 0,
    }
}
