//! What the ports share: Wolfram Gloger's `lran2` generator (larson,
//! xmalloc-test), a reusable barrier over all the run's CPUs and the checked
//! allocation call.
use core::{
    alloc::Layout,
    sync::atomic::{AtomicUsize, Ordering},
};

use crate::Machine;

/// `lran2` (Wolfram Gloger, 1996), as in mimalloc-bench's
/// `bench/larson/larson.cpp` and `bench/xmalloc-test/random.h`: a
/// 97-entry shuffle table over a linear congruential generator modulo
/// 714025. All arithmetic is on C `long` (64-bit), as here.
pub struct Lran2 {
    x: i64,
    y: i64,
    v: [i64; 97],
}

const LRAN2_MAX: i64 = 714_025;
const LRAN2_IA: i64 = 1366;
const LRAN2_IC: i64 = 150_889;

impl Lran2 {
    /// `lran2_init(d, seed)`.
    pub fn new(seed: i64) -> Self {
        let mut x = ((LRAN2_IC - seed) % LRAN2_MAX).abs();
        let mut v = [0; 97];
        for entry in &mut v {
            x = (LRAN2_IA * x + LRAN2_IC) % LRAN2_MAX;
            *entry = x;
        }
        let x = (LRAN2_IA * x + LRAN2_IC) % LRAN2_MAX;
        Self { x, y: x, v }
    }

    /// `lran2(d)`: the next value, in `0..714025`.
    pub fn draw(&mut self) -> u64 {
        let j = (self.y % 97) as usize;
        self.y = self.v[j];
        self.x = (LRAN2_IA * self.x + LRAN2_IC) % LRAN2_MAX;
        self.v[j] = self.x;
        self.y as u64
    }
}

/// A barrier for all the run's CPUs, reusable: the last CPU to arrive opens
/// it by bumping the generation. Every CPU must call [`wait`](Self::wait)
/// the same number of times.
pub struct CpuBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl CpuBarrier {
    pub const fn new() -> Self {
        Self { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    /// Waits until all `M::cpus()` CPUs have arrived.
    pub fn wait<M: Machine>(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == M::cpus() {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0;
            while self.generation.load(Ordering::Acquire) == generation {
                M::wait_for_another(&mut spins);
            }
        }
    }
}

impl Default for CpuBarrier {
    fn default() -> Self {
        Self::new()
    }
}

/// Allocates `layout` from the global allocator; a failure panics naming
/// the workload, the CPU and the size.
pub fn allocate<M: Machine>(workload: &str, layout: Layout) -> *mut u8 {
    // SAFETY: every caller's layout has a non-zero size.
    let ptr = unsafe { alloc::alloc::alloc(layout) };
    assert!(
        !ptr.is_null(),
        "bench {workload}: {}: allocation of {} bytes (align {}) failed",
        M::current(),
        layout.size(),
        layout.align()
    );
    ptr
}

/// Frees what [`allocate`] returned.
///
/// # Safety
/// `ptr` came from [`allocate`] (or the global allocator) with `layout`,
/// is no longer used, and is freed once.
pub unsafe fn free(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded from the caller.
    unsafe { alloc::alloc::dealloc(ptr, layout) }
}

/// Byte layout with the alignment of `malloc`'s smallest (8).
pub fn bytes(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("sizes of the ports are small")
}
