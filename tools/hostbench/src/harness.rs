//! The threads a workload runs on: their count, starting them for one run
//! (warm-up, then the timed part), how one waits for another, and all of
//! that as the `bench_workloads::Machine` the shared workloads run on
//! ([`HostThread`]). A thread here is what a CPU is in the kernel bench.
use core::fmt;
use std::sync::{
    Barrier,
    atomic::{AtomicUsize, Ordering},
};

use bench_workloads::{Body, CpuRun, Machine};

use crate::tsc;

/// The most threads a run may have.
pub const MAX_THREADS: usize = 64;
// The workloads' per-CPU statics have room for every thread.
const _: () = assert!(MAX_THREADS <= bench_workloads::MAX_CPUS);
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

/// The run's threads, each standing for a CPU.
pub struct HostThread;

impl Machine for HostThread {
    fn cpus() -> usize {
        threads()
    }

    #[inline(always)]
    fn now() -> u64 {
        tsc::now()
    }

    /// `pause` for the first `SPINS_BEFORE_YIELD` rounds, then
    /// `sched_yield` each time.
    #[inline]
    fn wait_for_another(spins: &mut u32) {
        if *spins < SPINS_BEFORE_YIELD {
            *spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }

    fn current() -> impl fmt::Display {
        ThreadName(std::thread::current())
    }
}

/// The thread's name (`thread N`) in failure messages.
struct ThreadName(std::thread::Thread);

impl fmt::Display for ThreadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name().unwrap_or("unnamed"))
    }
}
