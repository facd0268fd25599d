//! `cache-scratch` and `cache-thrash`: the kernel's ports of Hoard's false-sharing tests
//! (`kernel/src/jobs/bench/mimalloc_bench/cache.rs`, whose notes say what it
//! keeps of the original and what it scales down), with the same
//! parameters, on threads: the kernel's CPU i is thread i here. Waits for
//! another thread spin, then yield (`harness::wait_for_another`), since the
//! host may preempt the thread waited for.
use core::{
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};

use super::common::{allocate, bytes, free};
use crate::harness::{CpuRun, MAX_THREADS, ThreadBarrier, run_phases, threads};

/// `objSize`.
const OBJECT_SIZE: usize = 1;
/// All CPUs' repetitions together (2,000,000 in bench.sh).
const REPETITIONS: u64 = 500;
/// Iterations per timed phase.
const ITERATIONS_PER_PHASE: u64 = 100;

/// cache-scratch: the object CPU 0 allocated for each CPU.
static HANDED_OVER: [AtomicPtr<u8>; MAX_THREADS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_THREADS];
static BARRIER: ThreadBarrier = ThreadBarrier::new();

/// Whether each CPU starts by freeing an object CPU 0 allocated for it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// cache-scratch.
    FreeHandedOver,
    /// cache-thrash.
    Fresh,
}

impl Start {
    fn workload(self) -> &'static str {
        match self {
            Self::FreeHandedOver => "cache-scratch",
            Self::Fresh => "cache-thrash",
        }
    }
}

pub fn cache_scratch(cpu: usize, ops: u64) -> CpuRun {
    worker(cpu, ops, Start::FreeHandedOver)
}

pub fn cache_thrash(cpu: usize, ops: u64) -> CpuRun {
    worker(cpu, ops, Start::Fresh)
}

/// One allocation, hammered `repetitions` times, freed.
fn iteration(start: Start, repetitions: u64) {
    let object = allocate(start.workload(), bytes(OBJECT_SIZE));
    for _ in 0..repetitions {
        for k in 0..OBJECT_SIZE {
            // SAFETY: `object` has OBJECT_SIZE bytes.
            unsafe {
                ptr::write_volatile(object.add(k), k as u8);
                let ch = ptr::read_volatile(object.add(k));
                core::hint::black_box(ch.wrapping_add(1));
            }
        }
    }
    // SAFETY: allocated above with this layout, freed once.
    unsafe { free(object, bytes(OBJECT_SIZE)) };
}

fn worker(cpu: usize, ops: u64, start: Start) -> CpuRun {
    let cpus = threads();
    let repetitions = (REPETITIONS / cpus as u64).max(1);
    let iterations = (ops / 2).max(1);
    let phases = iterations.div_ceil(ITERATIONS_PER_PHASE);
    run_phases(
        phases,
        || {
            if start == Start::FreeHandedOver && cpu == 0 {
                for slot in HANDED_OVER.iter().take(cpus) {
                    slot.store(allocate("cache-scratch", bytes(OBJECT_SIZE)), Ordering::Release);
                }
            }
            BARRIER.wait();
        },
        |phase| {
            let mut done = 0;
            if start == Start::FreeHandedOver && phase == 0 {
                let object = HANDED_OVER[cpu].swap(ptr::null_mut(), Ordering::AcqRel);
                // SAFETY: CPU 0 allocated it for this CPU with this layout;
                // the swap took it, so it is freed once.
                unsafe { free(object, bytes(OBJECT_SIZE)) };
                done += 1;
            }
            let first = phase * ITERATIONS_PER_PHASE;
            let count = ITERATIONS_PER_PHASE.min(iterations - first);
            for _ in 0..count {
                iteration(start, repetitions);
            }
            Some(done + 2 * count)
        },
        || {},
    )
}
