//! What the ports share: Wolfram Gloger's `lran2` generator (larson,
//! xmalloc-test), a reusable barrier over all online CPUs, the checked
//! allocation call and the phase timer that fills a [`CpuRun`].
use core::{
    alloc::Layout,
    sync::atomic::{AtomicUsize, Ordering},
};

use crate::{jobs::bench::CpuRun, smp, time};

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
    pub fn next(&mut self) -> u64 {
        let j = (self.y % 97) as usize;
        self.y = self.v[j];
        self.x = (LRAN2_IA * self.x + LRAN2_IC) % LRAN2_MAX;
        self.v[j] = self.x;
        self.y as u64
    }
}

/// A barrier for every online CPU, reusable: the last CPU to arrive opens
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

    /// Waits until every online CPU has arrived.
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == smp::online_cpus() {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                core::hint::spin_loop();
            }
        }
    }
}

/// Allocates `layout` from the kernel heap; a failure panics naming the
/// workload, the CPU and the size.
pub fn allocate(workload: &str, layout: Layout) -> *mut u8 {
    // SAFETY: every caller's layout has a non-zero size.
    let ptr = unsafe { alloc::alloc::alloc(layout) };
    assert!(
        !ptr.is_null(),
        "bench {workload}: cpu {}: allocation of {} bytes (align {}) failed",
        smp::current_cpu_index(),
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

/// Runs `phase(0..phases)`, timing each as one batch; `phase` returns the
/// operations it did, or `None` to end early (a consumer that found the
/// producers done). The clock starts after `prepare` (untimed set-up,
/// e.g. the original's main thread filling arrays before it starts the
/// workers) and stops before `finish` (untimed teardown, freeing what the
/// original left to process exit). Both run on every CPU.
pub fn run_phases(
    phases: u64,
    prepare: impl FnOnce(),
    mut phase: impl FnMut(u64) -> Option<u64>,
    finish: impl FnOnce(),
) -> CpuRun {
    prepare();
    let mut batch_cycles_per_op = alloc::vec::Vec::with_capacity(phases.min(1024) as usize);
    let mut done = 0;
    let start = time::now();
    for index in 0..phases {
        let phase_start = time::now();
        let Some(ops) = phase(index) else { break };
        let cycles = time::now() - phase_start;
        done += ops;
        if ops > 0 {
            batch_cycles_per_op.push(cycles as f64 / ops as f64);
        }
    }
    let end = time::now();
    finish();
    CpuRun { start, end, ops: done, batch_cycles_per_op }
}
