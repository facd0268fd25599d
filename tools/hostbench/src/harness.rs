//! What every workload shares: the thread count, one timed run per thread
//! (`CpuRun`, as in the kernel bench), the batch and phase timers, and a
//! barrier for all the workload's threads. A thread here is what a CPU is
//! in the kernel bench.
use std::sync::{
    Barrier,
    atomic::{AtomicUsize, Ordering},
};

use crate::tsc;

/// The most threads a run may have (the ports keep per-thread statics).
pub const MAX_THREADS: usize = 64;
/// Warm-up operations per thread, as a fraction of the timed ones (as in
/// the kernel bench).
pub const WARMUP_DIVISOR: u64 = 10;
/// Spins of a waiting thread before it yields its core: the host preempts
/// threads (2 cores shared with other work), so a waiter that only spins
/// can burn a whole time slice while the thread it waits for is off-core.
const SPINS_BEFORE_YIELD: u32 = 64;

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// The threads of the current run (the kernel's `online_cpus`).
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// What one thread measured.
#[derive(Debug, Clone, Default)]
pub struct CpuRun {
    pub start: u64,
    pub end: u64,
    pub ops: u64,
    /// Cycles per operation of each batch.
    pub batch_cycles_per_op: Vec<f64>,
}

/// A workload's body: thread index and operations to do.
pub type Body = fn(usize, u64) -> CpuRun;

/// Runs `body` on `threads` threads: a warm-up of `ops / WARMUP_DIVISOR`,
/// a barrier, `at_start` on thread 0 alone (e.g. a snapshot of the heap's
/// counters), a start barrier, then the timed `ops` on each. Returns each
/// thread's timed run, in thread order.
pub fn run_on_threads(
    threads: usize,
    body: Body,
    ops: u64,
    at_start: &(dyn Fn() + Sync),
) -> Vec<CpuRun> {
    assert!((1..=MAX_THREADS).contains(&threads), "{threads} threads: expected 1 to {MAX_THREADS}");
    THREADS.store(threads, Ordering::Relaxed);
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let start = &start;
                std::thread::Builder::new()
                    .name(format!("thread {index}"))
                    .spawn_scoped(scope, move || {
                        body(index, (ops / WARMUP_DIVISOR).max(1));
                        start.wait();
                        if index == 0 {
                            at_start();
                        }
                        start.wait();
                        body(index, ops)
                    })
                    .expect("the OS starts a thread")
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(index, handle)| {
                handle.join().unwrap_or_else(|_| panic!("thread {index} panicked"))
            })
            .collect()
    })
}

/// Runs `batch` until `ops` operations are done; `batch` returns how many
/// it did.
pub fn timed_batches(ops: u64, mut batch: impl FnMut() -> u64) -> CpuRun {
    let mut batch_cycles_per_op = Vec::with_capacity(ops as usize / 16 + 1);
    let mut done = 0;
    let start = tsc::now();
    while done < ops {
        let batch_start = tsc::now();
        let batch_ops = batch();
        let cycles = tsc::now() - batch_start;
        done += batch_ops;
        if batch_ops > 0 {
            batch_cycles_per_op.push(cycles as f64 / batch_ops as f64);
        }
    }
    CpuRun { start, end: tsc::now(), ops: done, batch_cycles_per_op }
}

/// Runs `phase(0..phases)`, timing each as one batch; `phase` returns the
/// operations it did, or `None` to end early. The clock starts after
/// `prepare` (untimed set-up) and stops before `finish` (untimed
/// teardown), as in the kernel's ports.
pub fn run_phases(
    phases: u64,
    prepare: impl FnOnce(),
    mut phase: impl FnMut(u64) -> Option<u64>,
    finish: impl FnOnce(),
) -> CpuRun {
    prepare();
    let mut batch_cycles_per_op = Vec::with_capacity(phases.min(1024) as usize);
    let mut done = 0;
    let start = tsc::now();
    for index in 0..phases {
        let phase_start = tsc::now();
        let Some(ops) = phase(index) else { break };
        let cycles = tsc::now() - phase_start;
        done += ops;
        if ops > 0 {
            batch_cycles_per_op.push(cycles as f64 / ops as f64);
        }
    }
    let end = tsc::now();
    finish();
    CpuRun { start, end, ops: done, batch_cycles_per_op }
}

/// One round of waiting for another thread: `pause` for the first
/// `SPINS_BEFORE_YIELD` rounds, then `sched_yield` each time.
#[inline]
pub fn wait_for_another(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A reusable barrier for all of the run's threads, spinning then yielding
/// (the kernel's `CpuBarrier`). Every thread must call
/// [`wait`](Self::wait) the same number of times.
pub struct ThreadBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl ThreadBarrier {
    pub const fn new() -> Self {
        Self { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    /// Waits until every thread of the run has arrived.
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == threads() {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0;
            while self.generation.load(Ordering::Acquire) == generation {
                wait_for_another(&mut spins);
            }
        }
    }
}

impl Default for ThreadBarrier {
    fn default() -> Self {
        Self::new()
    }
}

/// The `percent` percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[f64], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() - 1) * percent / 100]
}
