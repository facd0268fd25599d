//! `workload=cache-scratch` and `workload=cache-thrash`: Emery Berger's
//! false-sharing tests from the Hoard suite (`benchmarks/cache-scratch`,
//! `benchmarks/cache-thrash`; "passive" and "active" false sharing in the
//! Hoard paper, ASPLOS 2000), as in mimalloc-bench
//! `bench/cache-scratch/cache-scratch.cpp` and
//! `bench/cache-thrash/cache-thrash.cpp`; `bench.sh` runs
//! `cache-scratch N 1000 1 2000000 N` and `cache-thrash N 1000 1 2000000 N`
//! (and the same with 1 thread: here, `--smp 1`).
//!
//! Kept: 1-byte objects; each iteration allocates one, writes and reads it
//! back `repetitions / N` times (`obj[k] = k; volatile ch = obj[k]; ch++`)
//! and frees it; the repetitions split among the CPUs (strong scaling).
//! cache-scratch only: the main thread (CPU 0) first allocates one 1-byte
//! object per CPU back to back, and each CPU starts by freeing "its" one
//! (a remote free, which an allocator may hand back to the freeing CPU:
//! passive false sharing). On 1 CPU that free is local.
//!
//! Scaled: `ops / 2` iterations per CPU (1000 in bench.sh), and 500
//! repetitions split among the CPUs (2,000,000 in bench.sh: 2·10⁹ writes,
//! minutes under TCG), at least one per CPU. The allocator is therefore a
//! larger share of the time than in the original, which is almost all
//! writes. Operations: each allocation and each free.
//!
//! Threads: CPU i is thread i; `pthread_create` and `join` are the start
//! barrier and the end of the job. Under TCG a guest store is a host store,
//! so false sharing between vCPUs is real, but emulation dilutes it.
use core::{
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};

use super::common::{CpuBarrier, allocate, bytes, free};
use crate::{CpuRun, MAX_CPUS, Machine, timing::run_phases};

/// `objSize`.
const OBJECT_SIZE: usize = 1;
/// All CPUs' repetitions together (2,000,000 in bench.sh).
const REPETITIONS: u64 = 500;
/// Iterations per timed phase.
const ITERATIONS_PER_PHASE: u64 = 100;

/// cache-scratch: the object CPU 0 allocated for each CPU.
static HANDED_OVER: [AtomicPtr<u8>; MAX_CPUS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CPUS];
static BARRIER: CpuBarrier = CpuBarrier::new();

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

pub fn cache_scratch<M: Machine>(cpu: usize, ops: u64) -> CpuRun {
    worker::<M>(cpu, ops, Start::FreeHandedOver)
}

pub fn cache_thrash<M: Machine>(cpu: usize, ops: u64) -> CpuRun {
    worker::<M>(cpu, ops, Start::Fresh)
}

/// One allocation, hammered `repetitions` times, freed.
fn iteration<M: Machine>(start: Start, repetitions: u64) {
    let object = allocate::<M>(start.workload(), bytes(OBJECT_SIZE));
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

fn worker<M: Machine>(cpu: usize, ops: u64, start: Start) -> CpuRun {
    let cpus = M::cpus();
    let repetitions = (REPETITIONS / cpus as u64).max(1);
    let iterations = (ops / 2).max(1);
    let phases = iterations.div_ceil(ITERATIONS_PER_PHASE);
    run_phases::<M>(
        phases,
        || {
            if start == Start::FreeHandedOver && cpu == 0 {
                for slot in HANDED_OVER.iter().take(cpus) {
                    slot.store(
                        allocate::<M>("cache-scratch", bytes(OBJECT_SIZE)),
                        Ordering::Release,
                    );
                }
            }
            BARRIER.wait::<M>();
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
                iteration::<M>(start, repetitions);
            }
            Some(done + 2 * count)
        },
        || {},
    )
}
