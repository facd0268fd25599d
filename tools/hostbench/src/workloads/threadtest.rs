//! `threadtest`: the kernel's port of Hoard's threadtest
//! (`kernel/src/jobs/bench/mimalloc_bench/threadtest.rs`, whose notes say what it
//! keeps of the original and what it scales down), with the same
//! parameters, on threads: the kernel's CPU i is thread i here. Waits for
//! another thread spin, then yield (`harness::wait_for_another`), since the
//! host may preempt the thread waited for.
use super::common::{allocate, bytes, free};
use crate::harness::{CpuRun, run_phases, threads};

/// `nobjects`, over all CPUs.
const OBJECTS: usize = 10_000;
/// `objSize`: `Foo`s per object.
const FOOS_PER_OBJECT: usize = 8;
/// `Foo { x: 14, y: 29 }`, as `Foo()` constructs it.
const FOO: [u32; 2] = [14, 29];
const OBJECT_BYTES: usize = FOOS_PER_OBJECT * core::mem::size_of::<[u32; 2]>();

pub fn threadtest(_cpu: usize, ops: u64) -> CpuRun {
    let per_cpu = (OBJECTS / threads()).max(1);
    let rounds = (ops / (2 * per_cpu as u64)).max(1);
    let mut objects: Vec<*mut u8> = Vec::new();
    run_phases(
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
                let object = allocate("threadtest", bytes(OBJECT_BYTES));
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
