//! `workload=threadtest`: Emery Berger's per-thread throughput test from
//! the Hoard suite (`emeryberger/Hoard`, `benchmarks/threadtest/
//! threadtest.cpp`, used in the Hoard paper, ASPLOS 2000). It is not in
//! mimalloc-bench; Hoard's `benchmarks/README` runs
//! `threadtest P 1000 10000 0 8`.
//!
//! Kept: `nobjects` 10,000 split among the CPUs (strong scaling), each
//! round allocating `nobjects / N` arrays of 8 `Foo`s (64 bytes; `Foo` is
//! two `int`s, constructed as 14 and 29, so every byte is written), then
//! freeing them in allocation order; the pointer array itself allocated
//! through the heap; `work` 0 (no busy loop). No frees cross CPUs.
//!
//! Scaled: `ops / (2 × nobjects / N)` rounds per CPU (at least one)
//! instead of 1000, e.g. 5 at 1 CPU and the default `ops=`. Operations:
//! each allocation and each free, the pointer array's two included.
//!
//! Threads: CPU i is thread i; `std::thread` creation and join are the
//! start barrier and the end of the job.
use alloc::vec::Vec;

use super::common::{allocate, bytes, free};
use crate::{CpuRun, Machine, timing::run_phases};

/// `nobjects`, over all CPUs.
const OBJECTS: usize = 10_000;
/// `objSize`: `Foo`s per object.
const FOOS_PER_OBJECT: usize = 8;
/// `Foo { x: 14, y: 29 }`, as `Foo()` constructs it.
const FOO: [u32; 2] = [14, 29];
const OBJECT_BYTES: usize = FOOS_PER_OBJECT * core::mem::size_of::<[u32; 2]>();

pub fn threadtest<M: Machine>(_cpu: usize, ops: u64) -> CpuRun {
    let per_cpu = (OBJECTS / M::cpus()).max(1);
    let rounds = (ops / (2 * per_cpu as u64)).max(1);
    let mut objects: Vec<*mut u8> = Vec::new();
    run_phases::<M>(
        rounds,
        || {},
        |round| {
            let mut done = 0;
            if round == 0 {
                // `new Foo * [nobjects / nthreads]`.
                objects = Vec::with_capacity(per_cpu);
                done += 1;
            }
            for _ in 0..per_cpu {
                let object = allocate::<M>("threadtest", bytes(OBJECT_BYTES));
                for index in 0..FOOS_PER_OBJECT {
                    // SAFETY: `object` has room for FOOS_PER_OBJECT `Foo`s
                    // and is 8-aligned.
                    unsafe { object.cast::<[u32; 2]>().add(index).write(FOO) };
                }
                objects.push(object);
            }
            for object in objects.drain(..) {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { free(object, bytes(OBJECT_BYTES)) };
            }
            done += 2 * per_cpu as u64;
            if round + 1 == rounds {
                // `delete [] a`.
                objects = Vec::new();
                done += 1;
            }
            Some(done)
        },
        || {},
    )
}
