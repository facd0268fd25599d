//! `xmalloc-test`: the kernel's port of Lever and Boreham's producer/consumer test
//! (`kernel/src/jobs/bench/mimalloc_bench/xmalloc.rs`, whose notes say what it
//! keeps of the original and what it scales down), with the same
//! parameters, on threads: the kernel's CPU i is thread i here. Waits for
//! another thread spin, then yield (`harness::wait_for_another`), since the
//! host may preempt the thread waited for.
use core::{
    alloc::Layout,
    ptr,
    sync::atomic::{AtomicU64, Ordering},
};

use std::sync::Mutex;

use super::common::{allocate, bytes, free};
use crate::harness::{CpuRun, ThreadBarrier, run_phases, threads, wait_for_another};

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
static BARRIER: ThreadBarrier = ThreadBarrier::new();

/// `mem_allocator`'s loop body: one full batch.
fn fill_batch() -> *mut Batch {
    let batch = allocate("xmalloc-test", Layout::new::<Batch>()).cast::<Batch>();
    for i in 0..OBJECTS_PER_BATCH {
        let object = allocate("xmalloc-test", bytes(OBJECT_SIZE));
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
fn enqueue_batch(batch: *mut Batch) {
    let mut spins = 0;
    loop {
        {
            let mut stack = STACK.lock().expect("no thread panics holding the stack");
            if stack.batch_count < BATCH_COUNT_LIMIT {
                // SAFETY: we own `batch` until it is on the stack.
                unsafe { (&raw mut (*batch).next_batch).write(stack.batches) };
                stack.batches = batch;
                stack.batch_count += 1;
                return;
            }
        }
        wait_for_another(&mut spins);
    }
}

/// `dequeue_batch`: waits while the stack is empty; `None` once `total`
/// batches have been taken in this run.
fn dequeue_batch(total: u64) -> Option<*mut Batch> {
    let mut spins = 0;
    loop {
        {
            let mut stack = STACK.lock().expect("no thread panics holding the stack");
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
        wait_for_another(&mut spins);
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

pub fn xmalloc_test(cpu: usize, ops: u64) -> CpuRun {
    let cpus = threads();
    let prepare = || {
        if cpu == 0 {
            RELEASED.store(0, Ordering::Relaxed);
        }
        BARRIER.wait();
    };
    if cpus == 1 {
        let batches = (ops / (2 * OPS_PER_BATCH)).max(1);
        return run_phases(
            batches,
            prepare,
            |_| {
                enqueue_batch(fill_batch());
                release_batch(dequeue_batch(batches).expect("the batch just pushed"));
                Some(2 * OPS_PER_BATCH)
            },
            || {},
        );
    }
    let producers = cpus.div_ceil(2) as u64;
    let batches_per_producer = (ops / OPS_PER_BATCH).max(1);
    if cpu.is_multiple_of(2) {
        run_phases(
            batches_per_producer,
            prepare,
            |_| {
                enqueue_batch(fill_batch());
                Some(OPS_PER_BATCH)
            },
            || {},
        )
    } else {
        let total = producers * batches_per_producer;
        run_phases(
            u64::MAX,
            prepare,
            |_| {
                let batch = dequeue_batch(total)?;
                release_batch(batch);
                Some(OPS_PER_BATCH)
            },
            || {},
        )
    }
}
