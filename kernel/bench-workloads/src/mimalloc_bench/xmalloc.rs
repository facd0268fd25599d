//! `workload=xmalloc-test`: C. Lever and D. Boreham's producer/consumer
//! test ("malloc() Performance in a Multithreaded Linux Environment",
//! USENIX 2000 FREENIX), adapted by Christian Eder for xmalloc and by
//! Bradley C. Kuszmaul for SuperMalloc, as in mimalloc-bench
//! `bench/xmalloc-test/xmalloc-test.c`; `bench.sh` runs
//! `xmalloc-test -w N -t 5 -s 64`.
//!
//! Kept: batches of 4096 objects of 64 bytes, each filled with
//! `min(size, 128)` bytes of `i % 256`; the batch header (`next` plus 4096
//! pointers, 32,776 bytes) allocated through the heap under test; one
//! global lock-protected LIFO stack of batches with a limit, producers
//! waiting while it is full and releasers while it is empty; the releaser
//! frees every object and the header, so every free is remote.
//!
//! Scaled: the stack holds at most 16 batches (100 in bench.sh: 26 MB of
//! objects, most of the 32 MiB heap); the run is `ops / 4097` batches per
//! producer (at least one) instead of 5 seconds. Operations: each
//! allocation and each free (the original counts frees only).
//!
//! Threads: the original runs N producers and N releasers on N cores,
//! blocking on condition variables. With one thread per CPU and no
//! blocking, even CPUs produce and odd CPUs release (on an odd count one
//! more producer), waits spin (`Machine::wait_for_another`: `pause` in the
//! kernel, `pause` then `sched_yield` on the host), the stack's lock
//! included (taken with `try_lock`, so a CPU that finds it held waits the
//! same way). On 1 CPU the CPU alternates:
//! produce a batch, push it, pop it, free it (`ops / 8194` batches), so its
//! frees are local.
use core::{
    alloc::Layout,
    ptr,
    sync::atomic::{AtomicU64, Ordering},
};

use spin::Mutex;

use super::common::{CpuBarrier, allocate, bytes, free};
use crate::{CpuRun, Machine, timing::run_phases};

const OBJECTS_PER_BATCH: usize = 4096;
/// `-s 64`.
const OBJECT_SIZE: usize = 64;
/// How many bytes of each object the producer writes.
const FILL_BYTES: usize = if OBJECT_SIZE > 128 { 128 } else { OBJECT_SIZE };
/// Batches the stack holds at most (`batch_count_limit`, 100 in bench.sh).
const BATCH_COUNT_LIMIT: usize = 16;
/// Allocations (or frees) per batch: the objects and the header.
const OPS_PER_BATCH: u64 = OBJECTS_PER_BATCH as u64 + 1;

#[repr(C)]
struct Batch {
    next_batch: *mut Batch,
    objects: [*mut u8; OBJECTS_PER_BATCH],
}

/// The global LIFO of full batches.
struct Stack {
    batches: *mut Batch,
    batch_count: usize,
}

// SAFETY: the batches on the stack belong to the stack; whoever pops one
// owns it, and the lock around the stack orders the hand-over.
unsafe impl Send for Stack {}

static STACK: Mutex<Stack> = Mutex::new(Stack { batches: ptr::null_mut(), batch_count: 0 });
/// Batches taken off the stack in this run.
static RELEASED: AtomicU64 = AtomicU64::new(0);
static BARRIER: CpuBarrier = CpuBarrier::new();

/// `mem_allocator`'s loop body: one full batch.
fn fill_batch<M: Machine>() -> *mut Batch {
    let batch = allocate::<M>("xmalloc-test", Layout::new::<Batch>()).cast::<Batch>();
    for i in 0..OBJECTS_PER_BATCH {
        let object = allocate::<M>("xmalloc-test", bytes(OBJECT_SIZE));
        // SAFETY: `object` has OBJECT_SIZE >= FILL_BYTES bytes; `batch` is a
        // fresh block of a `Batch`'s layout, written field by field.
        unsafe {
            object.write_bytes((i % 256) as u8, FILL_BYTES);
            (&raw mut (*batch).objects[i]).write(object);
        }
    }
    batch
}

/// `enqueue_batch`: waits while the stack is full.
fn enqueue_batch<M: Machine>(batch: *mut Batch) {
    let mut spins = 0;
    loop {
        if let Some(mut stack) = STACK.try_lock()
            && stack.batch_count < BATCH_COUNT_LIMIT
        {
            // SAFETY: we own `batch` until it is on the stack.
            unsafe { (&raw mut (*batch).next_batch).write(stack.batches) };
            stack.batches = batch;
            stack.batch_count += 1;
            return;
        }
        M::wait_for_another(&mut spins);
    }
}

/// `dequeue_batch`: waits while the stack is empty; `None` once `total`
/// batches have been taken in this run.
fn dequeue_batch<M: Machine>(total: u64) -> Option<*mut Batch> {
    let mut spins = 0;
    loop {
        if let Some(mut stack) = STACK.try_lock() {
            if !stack.batches.is_null() {
                let batch = stack.batches;
                // SAFETY: a batch on the stack is a full `Batch`.
                stack.batches = unsafe { (*batch).next_batch };
                stack.batch_count -= 1;
                RELEASED.fetch_add(1, Ordering::Relaxed);
                return Some(batch);
            }
            if RELEASED.load(Ordering::Relaxed) == total {
                return None;
            }
        }
        M::wait_for_another(&mut spins);
    }
}

/// `mem_releaser`'s loop body: frees every object and the header.
fn release_batch(batch: *mut Batch) {
    for i in 0..OBJECTS_PER_BATCH {
        // SAFETY: `fill_batch` stored a live OBJECT_SIZE block here and the
        // batch, popped off the stack, is ours alone.
        unsafe { free((*batch).objects[i], bytes(OBJECT_SIZE)) };
    }
    // SAFETY: allocated by `fill_batch` with this layout, freed once.
    unsafe { free(batch.cast(), Layout::new::<Batch>()) };
}

pub fn xmalloc_test<M: Machine>(cpu: usize, ops: u64) -> CpuRun {
    let cpus = M::cpus();
    let prepare = || {
        if cpu == 0 {
            RELEASED.store(0, Ordering::Relaxed);
        }
        BARRIER.wait::<M>();
    };
    if cpus == 1 {
        let batches = (ops / (2 * OPS_PER_BATCH)).max(1);
        return run_phases::<M>(
            batches,
            prepare,
            |_| {
                enqueue_batch::<M>(fill_batch::<M>());
                release_batch(dequeue_batch::<M>(batches).expect("the batch just pushed"));
                Some(2 * OPS_PER_BATCH)
            },
            || {},
        );
    }
    let producers = cpus.div_ceil(2) as u64;
    let batches_per_producer = (ops / OPS_PER_BATCH).max(1);
    if cpu.is_multiple_of(2) {
        run_phases::<M>(
            batches_per_producer,
            prepare,
            |_| {
                enqueue_batch::<M>(fill_batch::<M>());
                Some(OPS_PER_BATCH)
            },
            || {},
        )
    } else {
        let total = producers * batches_per_producer;
        run_phases::<M>(
            u64::MAX,
            prepare,
            |_| {
                let batch = dequeue_batch::<M>(total)?;
                release_batch(batch);
                Some(OPS_PER_BATCH)
            },
            || {},
        )
    }
}
