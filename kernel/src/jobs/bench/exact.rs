//! Exact instruction counts of the allocator's own code, without an
//! estimated harness: `local`'s loop runs once more on one CPU with a
//! timestamp marker on each side of every `alloc::alloc::alloc` and
//! `dealloc` call. Under QEMU's `-icount shift=0` a marker difference is the
//! number of instructions between the markers plus the markers' own
//! constant, which an empty pair of markers measures; the hand-counted
//! sequences of `arch::HAND_COUNTED` check the method.
//!
//! What lies between the markers of one operation: the call's argument
//! set-up as the compiler placed it, the call, everything the global
//! allocator runs (rustc's allocator shim included) and the return.
use core::{alloc::Layout, cell::Cell};

use crate::arch;
use bench_workloads::local::{LOCAL_BATCH_OBJECTS, PairAllocator, local_batch};

/// Empty marker pairs measured; the least difference is the markers' cost
/// (every pair costs the same under icount; elsewhere the least is the
/// truest).
const MARKER_SAMPLES: usize = 64;

/// Instructions (under icount; timestamp ticks elsewhere) of `local`'s
/// allocations and frees, counted one by one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactCounts {
    /// Ticks between two markers with nothing between them.
    pub marker_ticks: u64,
    pub allocs: u64,
    /// Ticks of all allocations, less `marker_ticks` each.
    pub alloc_ticks: u64,
    /// The cheapest allocation (the fast path).
    pub alloc_ticks_min: u64,
    pub frees: u64,
    pub free_ticks: u64,
    pub free_ticks_min: u64,
}

impl ExactCounts {
    /// Ticks per allocation (instructions under icount), 0 without any.
    pub fn per_alloc(&self) -> f64 {
        per_op(self.alloc_ticks, self.allocs)
    }

    /// Ticks per free, 0 without any.
    pub fn per_free(&self) -> f64 {
        per_op(self.free_ticks, self.frees)
    }

    /// Ticks per allocation plus free.
    pub fn per_pair(&self) -> f64 {
        self.per_alloc() + self.per_free()
    }
}

/// `total / ops`, 0 without ops.
fn per_op(total: u64, ops: u64) -> f64 {
    if ops == 0 { 0.0 } else { total as f64 / ops as f64 }
}

/// A hand-counted sequence that did not count as its instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miscount {
    pub instructions: u64,
    pub counted: u64,
}

impl core::fmt::Display for Miscount {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "a hand-counted sequence of {} instructions counted as {} between markers",
            self.instructions, self.counted
        )
    }
}

/// The markers' own cost: the least difference of an empty pair.
pub fn marker_ticks() -> u64 {
    (0..MARKER_SAMPLES)
        .map(|_| {
            let start = arch::timestamp_marker();
            arch::timestamp_marker() - start
        })
        .min()
        .unwrap_or(0)
}

/// Counts each hand-counted sequence between markers; `Ok` when every one
/// counts as exactly its instructions (true under icount only).
pub fn check_hand_counted(marker_ticks: u64) -> Result<(), Miscount> {
    for (index, &instructions) in arch::HAND_COUNTED.iter().enumerate() {
        let counted = arch::marked_hand_counted(index).wrapping_sub(marker_ticks);
        if counted != instructions {
            return Err(Miscount { instructions, counted });
        }
    }
    Ok(())
}

/// Runs `local`'s loop for at least `ops` operations on this CPU with
/// markers around every allocation and free. Only meaningful with one CPU
/// online: under icount, time also advances with other CPUs' instructions.
pub fn count_local(ops: u64) -> ExactCounts {
    let heap = MarkedGlobalHeap {
        marker_ticks: marker_ticks(),
        counts: Cell::new(ExactCounts {
            alloc_ticks_min: u64::MAX,
            free_ticks_min: u64::MAX,
            ..ExactCounts::default()
        }),
    };
    let mut objects = [core::ptr::null_mut(); LOCAL_BATCH_OBJECTS];
    let mut done = 0;
    while done < ops {
        done += local_batch(&heap, &mut objects);
    }
    ExactCounts { marker_ticks: heap.marker_ticks, ..heap.counts.get() }
}

/// The global allocator with a marker on each side of each call.
struct MarkedGlobalHeap {
    marker_ticks: u64,
    counts: Cell<ExactCounts>,
}

impl MarkedGlobalHeap {
    fn record(
        &self,
        ticks: u64,
        of: impl FnOnce(&mut ExactCounts) -> (&mut u64, &mut u64, &mut u64),
    ) {
        let mut counts = self.counts.get();
        let (ops, total, min) = of(&mut counts);
        let own = ticks.saturating_sub(self.marker_ticks);
        *ops += 1;
        *total += own;
        *min = (*min).min(own);
        self.counts.set(counts);
    }
}

impl PairAllocator for MarkedGlobalHeap {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = arch::timestamp_marker();
        // SAFETY: `local` uses only layouts of non-zero size.
        let ptr = unsafe { alloc::alloc::alloc(layout) };
        let ticks = arch::timestamp_marker() - start;
        self.record(ticks, |c| (&mut c.allocs, &mut c.alloc_ticks, &mut c.alloc_ticks_min));
        ptr
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        let start = arch::timestamp_marker();
        // SAFETY: forwarded from the caller.
        unsafe { alloc::alloc::dealloc(ptr, layout) };
        let ticks = arch::timestamp_marker() - start;
        self.record(ticks, |c| (&mut c.frees, &mut c.free_ticks, &mut c.free_ticks_min));
    }
}
