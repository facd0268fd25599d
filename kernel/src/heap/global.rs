//! The global allocator instance, its set-up at boot from the command line
//! (`heap=SIZE`, `alloc=slab|locked|lockedheap|...`, `heapcheck=on|off`),
//! and its reports. Every call first tries the slab-core heap's inline fast
//! path; only its cold slow path asks whether a plain allocator was chosen
//! at boot (`plain.rs`), so the choice costs the slab heap nothing.
use core::{
    alloc::{GlobalAlloc, Layout},
    ptr,
};

use spin::Once;

use super::{
    AllocatorChoice, AllocatorKind, HeapBackend, KernelHeap, KernelPlatform, PlainKind,
    backend::ALLOCATORS, plain, slabmalloc,
};
use crate::{
    cmdline::Cmdline,
    console,
    memory::heap_region::{self, HeapSetupError},
};
use slab_core::{Checking, HeapStats, HeapUsage, Mode};

/// The allocator when the command line names none.
const DEFAULT_ALLOCATOR: &str = "slab";

/// Requests up to this size and alignment fit any heap the kernel accepts
/// (at least `MIN_HEAP_BYTES`), so only larger ones are checked against the
/// heap region before they reach the allocator.
const ALWAYS_PLAUSIBLE_BYTES: usize = 4096;

/// `SlabHeap` as Rust's global allocator, with the region it manages (or,
/// chosen at boot, a plain allocator over that region: `plain.rs`).
struct GlobalHeap(KernelHeap, Once<HeapRegion>);

#[global_allocator]
static HEAP: GlobalHeap =
    GlobalHeap(KernelHeap::new(HeapBackend::empty(), KernelPlatform), Once::new());

/// The heap's address range.
struct HeapRegion {
    start: usize,
    end: usize,
}

impl HeapRegion {
    /// Whether some block of the region could ever have `layout`: an
    /// address in it aligned to `layout.align()` with the whole block
    /// inside, and no address of the region wrapping around when rounded up
    /// to that alignment (backends round up unchecked: without this,
    /// `linked_list_allocator` panics on an alignment of 2^62).
    fn could_hold(&self, layout: Layout) -> bool {
        let align = layout.align();
        let Some(first) = self.start.checked_next_multiple_of(align) else {
            return false;
        };
        first.checked_add(layout.size()).is_some_and(|block_end| block_end <= self.end)
            && self.end.checked_next_multiple_of(align).is_some()
    }
}

impl GlobalHeap {
    /// Every allocation the slab heap's fast path does not serve: the
    /// plain allocator's, if one was chosen, else the slab heap's slow path.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        if plain::is_active() {
            // SAFETY: forwarded: a layout of non-zero size (the caller's).
            return unsafe { plain::alloc(layout) };
        }
        self.0.alloc_slow(layout)
    }

    /// Every free the slab heap's fast path does not take, as `alloc_slow`.
    ///
    /// # Safety
    /// `GlobalAlloc::dealloc`'s.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        if plain::is_active() {
            // SAFETY: forwarded: `ptr` came from the plain allocator (the
            // only one since boot) with `layout`.
            return unsafe { plain::dealloc(ptr, layout) };
        }
        // SAFETY: forwarded: `ptr` came from this allocator with `layout`.
        unsafe { self.0.dealloc_slow(ptr, layout) }
    }

    /// Whether the heap could serve `layout` if it were empty. Requests that
    /// never can (absurd sizes or alignments) get null at once: no reclaim
    /// round, and no backend arithmetic that overflows.
    #[inline]
    fn could_ever_serve(&self, layout: Layout) -> bool {
        (layout.size() <= ALWAYS_PLAUSIBLE_BYTES && layout.align() <= ALWAYS_PLAUSIBLE_BYTES)
            || self.1.get().is_none_or(|region| region.could_hold(layout))
    }
}

// SAFETY: `SlabHeap::alloc` and the plain allocators return null or a block
// valid for the layout that overlaps no live block; `dealloc` and `realloc`
// are forwarded with the caller's guarantees, which are exactly `SlabHeap`'s
// and `GlobalAlloc`'s requirements, to the allocator that served the block
// (the choice is made once at boot, before any allocation); the region
// check only turns requests into null.
unsafe impl GlobalAlloc for GlobalHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.could_ever_serve(layout) {
            return ptr::null_mut();
        }
        // The slab heap's fast path first: with a plain allocator chosen
        // the slab heap is in locked mode, so it always misses there, and
        // the choice costs the slab fast path nothing (docs/allocator.md).
        match self.0.alloc_fast(layout) {
            Some(object) => object.as_ptr(),
            None => self.alloc_slow(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded: `ptr` came from this allocator with `layout`:
        // from the slab heap, or from the plain allocator while the slab
        // heap is in locked mode, which `dealloc_fast` allows.
        if unsafe { !self.0.dealloc_fast(ptr, layout) } {
            // SAFETY: forwarded, as above.
            unsafe { self.dealloc_slow(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        if !self.could_ever_serve(new_layout) {
            return ptr::null_mut();
        }
        if plain::is_active() {
            // SAFETY: forwarded, as below.
            return unsafe { plain::realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded: `ptr` came from this allocator with `layout`
        // and `new_size` is non-zero and fits `isize` when aligned.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// The slab-core heap (empty and unused when a plain allocator serves:
/// ask [`stats`] and [`usage`] for the figures of whichever serves).
pub fn heap() -> &'static KernelHeap {
    &HEAP.0
}

/// Why the heap could not be set up.
#[derive(Debug, Clone, Copy)]
pub enum HeapInitError {
    Region(HeapSetupError),
    UnknownMode(&'static str),
    UnknownChecking(&'static str),
    /// `heapcheck=on` with a plain allocator, which cannot check.
    CheckingNeedsSlabCore(&'static str),
}

impl core::fmt::Display for HeapInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Region(e) => write!(f, "{e}"),
            Self::UnknownMode(name) => {
                write!(f, "alloc={name}: unknown allocator (known:")?;
                for choice in ALLOCATORS {
                    write!(f, " {}", choice.name)?;
                }
                f.write_str(")")
            }
            Self::UnknownChecking(value) => write!(f, "heapcheck={value}: expected on or off"),
            Self::CheckingNeedsSlabCore(name) => write!(
                f,
                "heapcheck=on needs the slab-core heap's checks, but alloc={name} is a plain allocator \
                 without them: drop heapcheck=on, or pick a slab-core allocator (alloc=slab, locked, \
                 locked-talc, ...)"
            ),
        }
    }
}

/// Maps the heap region and sets the heap up as the command line says.
/// Returns the allocator chosen and the heap's size in bytes.
pub fn init(cmdline: &Cmdline) -> Result<(AllocatorChoice, usize), HeapInitError> {
    let name = cmdline.get("alloc").unwrap_or(DEFAULT_ALLOCATOR);
    let choice = AllocatorChoice::named(name).ok_or(HeapInitError::UnknownMode(name))?;
    let cpus = crate::smp::online_cpus();
    let bytes = match (cmdline.get("heap"), choice.kind) {
        (Some(text), _) => heap_region::parse_size(text).map_err(HeapInitError::Region)?,
        (None, AllocatorKind::Plain(PlainKind::SlabMalloc)) => {
            slabmalloc::default_heap_bytes(cpus, crate::memory::frames::free_bytes())
        }
        (None, _) => heap_region::default_heap_bytes(cpus),
    };
    let checking = match cmdline.get("heapcheck") {
        Some(value) => Checking::from_name(value).ok_or(HeapInitError::UnknownChecking(value))?,
        None => Checking::Off,
    };
    if choice.is_plain() && checking == Checking::On {
        return Err(HeapInitError::CheckingNeedsSlabCore(choice.name));
    }
    let (start, length) = heap_region::map(bytes).map_err(HeapInitError::Region)?;
    HEAP.1.call_once(|| HeapRegion { start, end: start + length });
    ALLOCATOR_NAME.call_once(|| choice.name);
    match choice.kind {
        AllocatorKind::SlabCore { mode, backend: kind } => {
            HEAP.0.with_backend(|backend| {
                // SAFETY: `heap_region::map` just mapped `start..start + length`,
                // writable, for the heap alone; nothing else uses that range.
                *backend = unsafe { HeapBackend::over(kind, start as *mut u8, length) };
            });
            HEAP.0.set_mode(mode).expect("the heap is empty at boot, so its mode can be set");
            HEAP.0
                .set_checking(checking)
                .expect("the heap is empty at boot, so checking can be set");
        }
        AllocatorKind::Plain(kind) => {
            // The slab heap stays empty, in locked mode: its fast path then
            // always misses, and `GlobalHeap`'s slow path hands every call
            // to the plain allocator.
            HEAP.0
                .set_mode(Mode::Locked)
                .expect("the heap is empty at boot, so its mode can be set");
            // SAFETY: as above; and nothing has allocated yet (boot).
            unsafe { plain::init(kind, start as *mut u8, length) }
        }
    }
    Ok((choice, length))
}

/// A snapshot of the heap's statistics: the slab-core heap's, or a plain
/// allocator's used and free bytes with no counters
/// ([`HeapStats::uncounted`]).
pub fn stats() -> HeapStats {
    let mut stats = if plain::is_active() {
        let usage = plain::usage();
        HeapStats::uncounted(usage.used_bytes, usage.free_bytes, crate::smp::online_cpus())
    } else {
        HEAP.0.stats()
    };
    stats.allocator = ALLOCATOR_NAME.get().copied();
    stats
}

/// The heap's usage now (a plain allocator's read under its lock; it keeps
/// no peak or slabs, which read 0).
pub fn usage() -> HeapUsage {
    if plain::is_active() {
        let usage = plain::usage();
        HeapUsage {
            used_bytes: usage.used_bytes,
            free_bytes: usage.free_bytes,
            ..HeapUsage::default()
        }
    } else {
        HEAP.0.usage()
    }
}

/// Empties the running CPU's caches (a plain allocator's, if it has any:
/// slabmalloc's empty pages); false if the slab-core heap's slot was busy.
pub fn drain_local_cpu() -> bool {
    if plain::is_active() {
        plain::drain_local_cpu();
        return true;
    }
    HEAP.0.drain_local_cpu()
}

/// The `alloc=` choice, for the stats' `alloc` key (set once at boot).
static ALLOCATOR_NAME: Once<&'static str> = Once::new();

/// Prints the readable report: totals, then a table per CPU.
pub fn print_report() {
    console::write_fmt(format_args!("{}", ReportLines));
}

struct ReportLines;

impl core::fmt::Display for ReportLines {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if plain::is_active() { write!(f, "{}", stats()) } else { HEAP.0.write_report(f) }
    }
}

/// Prints the `HEAPSTATS {json}` record (`docs/interface.md`).
pub fn print_heapstats_record(stats: &HeapStats) {
    crate::println!("HEAPSTATS {}", stats.json());
}
