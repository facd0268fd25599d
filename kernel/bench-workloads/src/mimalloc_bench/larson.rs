//! `workload=larson`: Paul Larson and Murali Krishnan's server workload
//! ("Memory allocation for long-running server applications", ISMM 1998),
//! as in mimalloc-bench `bench/larson/larson.cpp` (via Hoard's copy; author
//! Paul Larson), which `bench.sh` runs as `larson 5 8 1000 5000 100 4141 N`.
//!
//! Kept: `lran2` seeded 4141; sizes `8 + lran2 % 992` (8..999 B); the
//! warm-up on the main thread (here CPU 0: allocate every slot, permute the
//! whole array with Fisher-Yates, 4 × slots random replacements); each
//! worker's seed drawn from the global generator in CPU order after the
//! warm-up; the loop (free a random victim slot, allocate into it, write
//! 'a' and 'b' into its first two bytes with a volatile read between);
//! thread "lives" of `num_rounds × slots` iterations after which a new
//! thread carries on with the same slice.
//!
//! Scaled: 1000 slots per CPU (5000 in bench.sh), fewer if `ops=` is small
//! (`ops / 20`), so the live set (about 0.5 MB per CPU) fits the 2 MiB per
//! CPU heap at 128 CPUs; 5 rounds per life instead of 100, so a CPU lives
//! `ops / (2 × 5 × slots)` lives (10 at the default) rather than never
//! finishing its first one under TCG; the run stops after `ops / 2`
//! iterations rather than after 5 s. Operations: a free and an allocation
//! per iteration (the original counts the pair as one).
//!
//! Threads: CPU i is thread i. A thread's exit and its respawn become a
//! hand-off: at the end of a life CPU i puts its slice (slots, sizes,
//! generator) in CPU i+1's mailbox and takes CPU i-1's, so every first free
//! in a life frees an object another CPU allocated (Larson's "bleeding").
//! On 1 CPU the slice comes back to the same CPU, as a new thread on the
//! same core would. The warm-up's objects (CPU 0's) are the first frees of
//! every slice. The slices are freed after the clock stops (the original
//! leaves them to process exit). `larson-sized` is not separate: Rust's
//! `dealloc` always passes the size.
use alloc::{boxed::Box, vec::Vec};
use core::{
    cell::Cell,
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};

use super::common::{CpuBarrier, Lran2, allocate, bytes, free};
use crate::{CpuRun, MAX_CPUS, Machine, timing::run_phases};

const SEED: i64 = 4141;
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 1000;
/// Slots per CPU (`chperthread`; 5000 in bench.sh).
const SLOTS_PER_CPU: usize = 1000;
/// Iterations per life, in slots (`num_rounds`; 100 in bench.sh).
const ROUNDS_PER_LIFE: u64 = 5;
/// Random replacements in the warm-up, per slot.
const WARMUP_REPLACEMENTS_PER_SLOT: usize = 4;

/// One thread's data (`thread_data`): its slots and generator.
struct Slice {
    blocks: Vec<*mut u8>,
    sizes: Vec<usize>,
    rgen: Lran2,
}

/// CPU i's incoming slice: set by CPU 0 after the warm-up and by CPU i-1 at
/// the end of each life.
static MAILBOXES: [AtomicPtr<Slice>; MAX_CPUS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CPUS];
static BARRIER: CpuBarrier = CpuBarrier::new();

fn random_size(rgen: &mut Lran2) -> usize {
    MIN_SIZE + rgen.draw() as usize % (MAX_SIZE - MIN_SIZE)
}

fn new_block<M: Machine>(size: usize) -> *mut u8 {
    allocate::<M>("larson", bytes(size))
}

/// # Safety
/// `block` came from [`new_block`] with `size` and is freed once.
unsafe fn free_block(block: *mut u8, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { free(block, bytes(size)) }
}

/// `warmup()` and the per-thread set-up of `runthreads()`, on CPU 0.
fn warm_up<M: Machine>(cpus: usize, slots: usize) {
    let mut rgen = Lran2::new(SEED);
    let total = cpus * slots;
    let mut blocks = Vec::with_capacity(total);
    let mut sizes = Vec::with_capacity(total);
    for _ in 0..total {
        let size = random_size(&mut rgen);
        blocks.push(new_block::<M>(size));
        sizes.push(size);
    }
    for i in (1..total).rev() {
        let j = rgen.draw() as usize % total;
        blocks.swap(i, j);
        sizes.swap(i, j);
    }
    for _ in 0..WARMUP_REPLACEMENTS_PER_SLOT * total {
        let victim = rgen.draw() as usize % total;
        // SAFETY: the slot holds a live block of its recorded size.
        unsafe { free_block(blocks[victim], sizes[victim]) };
        let size = random_size(&mut rgen);
        blocks[victim] = new_block::<M>(size);
        sizes[victim] = size;
    }
    for (cpu, mailbox) in MAILBOXES.iter().enumerate().take(cpus) {
        let range = cpu * slots..(cpu + 1) * slots;
        let slice = Box::new(Slice {
            blocks: blocks[range.clone()].to_vec(),
            sizes: sizes[range].to_vec(),
            rgen: Lran2::new(rgen.draw() as i64),
        });
        mailbox.store(Box::into_raw(slice), Ordering::Release);
    }
}

/// Takes this CPU's incoming slice, waiting until there is one.
fn take<M: Machine>(cpu: usize) -> Box<Slice> {
    let mut spins = 0;
    loop {
        let slice = MAILBOXES[cpu].swap(ptr::null_mut(), Ordering::AcqRel);
        if !slice.is_null() {
            // SAFETY: `give` or `warm_up` made it with `Box::into_raw`, and
            // the swap took it out of the mailbox, so it is ours alone.
            return unsafe { Box::from_raw(slice) };
        }
        M::wait_for_another(&mut spins);
    }
}

/// Puts `slice` in `cpu`'s mailbox once that is empty (it holds at most one
/// slice: with N slices among N CPUs and N mailboxes, a full mailbox is
/// always emptied by its owner).
fn give<M: Machine>(cpu: usize, slice: Box<Slice>) {
    let slice = Box::into_raw(slice);
    let mut spins = 0;
    while MAILBOXES[cpu]
        .compare_exchange(ptr::null_mut(), slice, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        M::wait_for_another(&mut spins);
    }
}

/// `exercise_heap()` for `iterations`; returns the operations done.
fn exercise_heap<M: Machine>(slice: &mut Slice, iterations: u64) -> u64 {
    let slots = slice.blocks.len();
    for _ in 0..iterations {
        let victim = slice.rgen.draw() as usize % slots;
        // SAFETY: the slot holds a live block of its recorded size.
        unsafe { free_block(slice.blocks[victim], slice.sizes[victim]) };
        let size = random_size(&mut slice.rgen);
        let block = new_block::<M>(size);
        slice.blocks[victim] = block;
        slice.sizes[victim] = size;
        // "Write something!": 'a', a volatile read, 'b'.
        // SAFETY: `block` has at least MIN_SIZE (8) bytes.
        unsafe {
            ptr::write_volatile(block, b'a');
            core::hint::black_box(ptr::read_volatile(block));
            ptr::write_volatile(block.add(1), b'b');
        }
    }
    2 * iterations
}

/// The iterations per life and the number of lives, from `ops`.
fn plan(ops: u64) -> (usize, u64, u64) {
    let slots = SLOTS_PER_CPU.min((ops / 20) as usize).max(1);
    let iterations = (ops / 2).max(1);
    let lives = (iterations / (ROUNDS_PER_LIFE * slots as u64)).max(1);
    (slots, iterations / lives, lives)
}

pub fn larson<M: Machine>(cpu: usize, ops: u64) -> CpuRun {
    let cpus = M::cpus();
    let (slots, per_life, lives) = plan(ops);
    // The slice this CPU holds; shared by the three closures.
    let slice = Cell::new(None);
    run_phases::<M>(
        lives,
        || {
            if cpu == 0 {
                warm_up::<M>(cpus, slots);
            }
            BARRIER.wait::<M>();
            slice.set(Some(take::<M>(cpu)));
        },
        |life| {
            let mut current = slice.take().expect("a slice between lives");
            let done = exercise_heap::<M>(&mut current, per_life);
            if life + 1 < lives {
                // The thread exits and a new one continues its slice: on
                // the next CPU.
                give::<M>((cpu + 1) % cpus, current);
                slice.set(Some(take::<M>(cpu)));
            } else {
                slice.set(Some(current));
            }
            Some(done)
        },
        || {
            let current = slice.take().expect("the last life's slice");
            for (&block, &size) in current.blocks.iter().zip(&current.sizes) {
                // SAFETY: every slot holds a live block of its size.
                unsafe { free_block(block, size) };
            }
        },
    )
}
