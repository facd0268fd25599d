//! The plain allocators (`alloc=lockedheap|talc|buddy|rlsf`): each crate's
//! own locked allocator as a book chapter would make it the
//! `#[global_allocator]`, with its own spin lock and nothing else: no
//! interrupt masking, no timestamps, no counters, no lock-holder record, no
//! trace hook and no `dyn` dispatch. They are the baselines the slab heap
//! and the instrumented `locked*` variants are measured against
//! (`docs/benchmarks.md`). The global allocator (`global.rs`) sends every
//! call here from its cold path, once the empty slab-core heap's fast path
//! has missed, when one of them was chosen at boot.
//!
//! What they cannot do: serve an interrupt handler that interrupted an
//! allocation on its CPU (the handler would spin on a lock its own CPU
//! holds: tests that allocate in interrupt handlers are ignored with
//! `Needs::InterruptSafeHeap`), keep the slab heap's counters (its
//! `HEAPSTATS` counters are null) or check for corruption (`heapcheck=on`
//! is refused at boot).
use core::{
    alloc::{GlobalAlloc, Layout},
    cell::UnsafeCell,
    ptr::{self, NonNull},
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed},
};

use spin::Mutex;
use talc::{ErrOnOom, Span, Talc, Talck};

use super::{
    backend::{BUDDY_ORDERS, RlsfPool},
    slabmalloc::{self, SlabMalloc},
};

/// Which plain allocator serves the heap region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PlainKind {
    /// `linked_list_allocator::LockedHeap`, the chapter's allocator.
    LockedHeap = 1,
    /// `talc::Talck<spin::Mutex<()>, ErrOnOom>`.
    Talc = 2,
    /// `buddy_system_allocator::LockedHeap`.
    Buddy = 3,
    /// `spin::Mutex<rlsf::Tlsf>`.
    Rlsf = 4,
    /// The `slabmalloc` crate's per-CPU `ZoneAllocator`s (`slabmalloc.rs`):
    /// plain from here (no slab-core heap, no counters), per-CPU inside,
    /// and unlike the others it masks interrupts.
    SlabMalloc = 5,
}

impl PlainKind {
    const ALL: [PlainKind; 5] =
        [Self::LockedHeap, Self::Talc, Self::Buddy, Self::Rlsf, Self::SlabMalloc];

    /// Whether an interrupt handler may allocate from it: only slabmalloc
    /// here, which masks interrupts around every zone operation and lock.
    pub fn is_interrupt_safe(self) -> bool {
        self == Self::SlabMalloc
    }

    fn from_u8(value: u8) -> Option<PlainKind> {
        Self::ALL.into_iter().find(|&kind| kind as u8 == value)
    }
}

/// `ACTIVE` while the slab-core heap serves (no plain allocator chosen).
const NONE: u8 = 0;

/// The plain allocator chosen at boot, if any, as a `PlainKind` byte.
static ACTIVE: BootByte = BootByte(UnsafeCell::new(NONE));

/// A byte written once at boot, before any other CPU can read it, and only
/// read after: so a plain load, which the compiler folds into one
/// `cmpb $0, ACTIVE` (an atomic load took a third instruction per call when
/// this compare stood in front of the slab fast path, measured with
/// `tools/exact-counts`; it now costs only the plain allocators' calls).
struct BootByte(UnsafeCell<u8>);

// SAFETY: the byte is written only by `init`, on the bootstrap CPU during
// boot, before the first allocation; the other CPUs (idle since bring-up,
// with no heap use) first allocate in a job `smp::run_on_all_cpus` hands
// them, whose Release/Acquire hand-off orders that write before every read
// of theirs. So no read races the write.
unsafe impl Sync for BootByte {}

impl BootByte {
    #[inline(always)]
    fn get(&self) -> u8 {
        // SAFETY: no write races this read (`Sync` above).
        unsafe { *self.0.get() }
    }
}

static LOCKED_HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();
static TALC: Talck<Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();
static BUDDY: buddy_system_allocator::LockedHeap<BUDDY_ORDERS> =
    buddy_system_allocator::LockedHeap::new();
static RLSF: LockedTlsf = LockedTlsf {
    tlsf: Mutex::new(RlsfPool::new()),
    pool: AtomicPtr::new(ptr::null_mut()),
    pool_bytes: AtomicUsize::new(0),
};

/// rlsf has no locked type of its own: a `spin::Mutex` around its `Tlsf`,
/// as the chapter wraps its heap, and the pool it was given (to walk for
/// the used and free bytes).
struct LockedTlsf {
    tlsf: Mutex<RlsfPool>,
    /// The pool's start and length, set once at boot.
    pool: AtomicPtr<u8>,
    pool_bytes: AtomicUsize,
}

// SAFETY: rlsf hands out disjoint blocks of its pool that fit the layout;
// the lock serialises every call.
unsafe impl GlobalAlloc for LockedTlsf {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.tlsf.lock().allocate(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a live block of ours (never null) with
        // the layout it was allocated with.
        unsafe { self.tlsf.lock().deallocate(NonNull::new_unchecked(ptr), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size` rounded up to the alignment
        // fits `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a live block of ours (never null), as for `dealloc`.
        unsafe { self.tlsf.lock().reallocate(NonNull::new_unchecked(ptr), new_layout) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}

/// Whether a plain allocator was chosen at boot: one byte compare, asked
/// by `global.rs` only after the slab heap's fast path missed (and by
/// `realloc` and the reports).
#[inline(always)]
pub fn is_active() -> bool {
    ACTIVE.get() != NONE
}

/// The chosen plain allocator.
pub fn active() -> Option<PlainKind> {
    PlainKind::from_u8(ACTIVE.get())
}

/// Runs `call` on the active allocator, each crate's own type statically
/// (no `dyn`): one match on the kind, then the crate's `GlobalAlloc` call.
macro_rules! on_active {
    (|$allocator:ident| $call:expr) => {
        match ACTIVE.get() {
            x if x == PlainKind::Talc as u8 => {
                let $allocator = &TALC;
                $call
            }
            x if x == PlainKind::Buddy as u8 => {
                let $allocator = &BUDDY;
                $call
            }
            x if x == PlainKind::Rlsf as u8 => {
                let $allocator = &RLSF;
                $call
            }
            x if x == PlainKind::SlabMalloc as u8 => {
                let $allocator = &SlabMalloc;
                $call
            }
            _ => {
                let $allocator = &LOCKED_HEAP;
                $call
            }
        }
    };
}

/// Gives `kind` the heap region and makes it the one every heap call uses.
///
/// # Safety
/// `start..start + bytes` is mapped, writable and used by nothing else for
/// ever; called once, at boot on the bootstrap CPU, before any allocation
/// and before the other CPUs run any job.
pub unsafe fn init(kind: PlainKind, start: *mut u8, bytes: usize) {
    match kind {
        // SAFETY: forwarded from the caller.
        PlainKind::LockedHeap => unsafe { LOCKED_HEAP.lock().init(start, bytes) },
        PlainKind::Talc => {
            // SAFETY: forwarded from the caller: the span is talc's to own.
            unsafe { TALC.lock().claim(Span::from_base_size(start, bytes)) }
                .expect("the heap region is large enough for talc");
        }
        // SAFETY: forwarded from the caller.
        PlainKind::Buddy => unsafe { BUDDY.lock().init(start.addr(), bytes) },
        PlainKind::Rlsf => {
            let block = NonNull::slice_from_raw_parts(
                NonNull::new(start).expect("the heap region does not start at address 0"),
                bytes,
            );
            // SAFETY: forwarded from the caller: memory rlsf may own for ever.
            unsafe { RLSF.tlsf.lock().insert_free_block_ptr(block) }
                .expect("the heap region is large enough for rlsf");
            RLSF.pool.store(start, Relaxed);
            RLSF.pool_bytes.store(bytes, Relaxed);
        }
        // SAFETY: forwarded from the caller.
        PlainKind::SlabMalloc => unsafe { slabmalloc::init(start, bytes) },
    }
    // SAFETY: the one write, at boot on the bootstrap CPU, before any
    // allocation and before other CPUs run jobs (`BootByte`'s `Sync`).
    unsafe { *ACTIVE.0.get() = kind as u8 };
}

/// `GlobalAlloc::alloc` of the active plain allocator.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[cold]
#[inline(never)]
pub unsafe fn alloc(layout: Layout) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { on_active!(|allocator| allocator.alloc(layout)) }
}

/// `GlobalAlloc::dealloc` of the active plain allocator.
///
/// # Safety
/// As `GlobalAlloc::dealloc`: `ptr` came from this allocator with `layout`.
#[cold]
#[inline(never)]
pub unsafe fn dealloc(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded from the caller.
    unsafe { on_active!(|allocator| allocator.dealloc(ptr, layout)) }
}

/// `GlobalAlloc::realloc` of the active plain allocator (the crate's own,
/// or the default of `alloc`, copy and `dealloc`).
///
/// # Safety
/// As `GlobalAlloc::realloc`.
#[cold]
#[inline(never)]
pub unsafe fn realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { on_active!(|allocator| allocator.realloc(ptr, layout, new_size)) }
}

/// Bytes in use and free, read from the allocator under its lock: what
/// each crate can tell (rlsf keeps no counts, so its pool is walked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainUsage {
    pub used_bytes: usize,
    pub free_bytes: usize,
}

/// The active allocator's usage (zero before `init`).
#[cold]
pub fn usage() -> PlainUsage {
    match active() {
        None => PlainUsage { used_bytes: 0, free_bytes: 0 },
        Some(PlainKind::LockedHeap) => {
            let heap = LOCKED_HEAP.lock();
            PlainUsage { used_bytes: heap.used(), free_bytes: heap.free() }
        }
        Some(PlainKind::Talc) => {
            let talc = TALC.lock();
            let counters = talc.get_counters();
            PlainUsage {
                used_bytes: counters.allocated_bytes,
                free_bytes: counters.available_bytes,
            }
        }
        Some(PlainKind::Buddy) => {
            let buddy = BUDDY.lock();
            let used_bytes = buddy.stats_alloc_actual();
            PlainUsage { used_bytes, free_bytes: buddy.stats_total_bytes() - used_bytes }
        }
        Some(PlainKind::Rlsf) => rlsf_usage(),
        Some(PlainKind::SlabMalloc) => {
            let usage = slabmalloc::usage();
            PlainUsage { used_bytes: usage.used_bytes, free_bytes: usage.free_bytes }
        }
    }
}

/// Gives the running CPU's cached memory back, where the allocator has
/// any: slabmalloc's empty pages go back to its page source.
#[cold]
pub fn drain_local_cpu() {
    if active() == Some(PlainKind::SlabMalloc) {
        slabmalloc::drain_local_cpu();
    }
}

/// rlsf's occupied block sizes (headers included) and free payload bytes,
/// from a walk of its pool under the lock.
fn rlsf_usage() -> PlainUsage {
    let tlsf = RLSF.tlsf.lock();
    let Some(start) = NonNull::new(RLSF.pool.load(Relaxed)) else {
        return PlainUsage { used_bytes: 0, free_bytes: 0 };
    };
    let pool = NonNull::slice_from_raw_parts(start, RLSF.pool_bytes.load(Relaxed));
    let mut usage = PlainUsage { used_bytes: 0, free_bytes: 0 };
    // SAFETY: `pool` is exactly the block given to `insert_free_block_ptr`
    // in `init`, and the lock keeps it unchanged while we walk it.
    for block in unsafe { tlsf.iter_blocks(pool) } {
        if block.is_occupied() {
            usage.used_bytes += block.size();
        } else {
            usage.free_bytes += block.max_payload_size();
        }
    }
    usage
}
