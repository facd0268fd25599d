//! `workload=mstress`: Daan Leijen's stress test (Microsoft Research,
//! 2018-2019, MIT), mimalloc-bench `bench/mstress/mstress.c`, which
//! `bench.sh` runs as `mstress N 50 25` (N threads, SCALE 50, 25 rounds).
//!
//! Kept: the splitmix64 `pick` and `chance` (with its `<=`: `chance(50)` is
//! 51 %); seeds `(tid + 1) × 43` per thread and `43 × 43` for main; the
//! `tid % 8 + 1` imbalance (some CPUs do up to 8 times the work of
//! others); power-of-two sizes in words (1..16 for `data`, 1..64 for
//! `retained`), 2 % of them × 100; the 40 → 41 item quirk; every word
//! written as `(items - i) ^ cookie` and every word checked on free (a
//! mismatch panics naming the CPU and the values); 66 % chance of freeing
//! a random earlier `data` object, 25 % of swapping one with a random slot
//! of the 1000 shared `transfer` slots (an atomic exchange); the `data` and
//! `retained` arrays allocated and grown (`realloc`) through the heap; per
//! round, main frees about half the transfer slots, and all of them after
//! the last round.
//!
//! Scaled: 10 rounds (25 in bench.sh); SCALE from `ops=` so that the
//! average CPU does about `ops` operations (`ops / (10 × 300 × mean(tid %
//! 8 + 1))`, at least 1, rounded down: at the default 33 on 1 CPU, 13 on 4,
//! 7 on 8 to 16, 1 on 64);
//! `allow_large_objects` off (the original's switch: its × 1000 and
//! × 10000 objects, up to 5 MB each, do not fit the 2 MiB per CPU heap at
//! 64 or more CPUs), so the largest object is 64 × 100 words (51 KB); the
//! `data` array grows by `2000 × SCALE` entries (100,000 at SCALE 50, i.e.
//! in proportion). Operations: each allocation and each free (a `realloc`
//! is both; `free(NULL)` is none).
//!
//! Threads: CPU i is thread `tid = i` in every round, as in the original
//! (tids are not rotated). A round is one timed phase: all CPUs run
//! `stress(tid)` (thread death is the end of it; the per-CPU caches, unlike
//! a thread's heap, live on), meet at a barrier, CPU 0 (main) frees
//! transfer slots, and all meet again. Objects left in `transfer` are freed
//! by whichever CPU swaps them out, in a later round too. On 1 CPU the
//! swaps hand objects to the same CPU's later rounds.
use alloc::vec::Vec;
use core::{
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};

use super::common::{CpuBarrier, allocate, free};
use crate::{CpuRun, Machine, timing::run_phases};

const ROUNDS: u64 = 10;
const TRANSFERS: usize = 1000;
const COOKIE: u64 = 0xbf58_476d_1ce4_e5b9;
/// `max_item_shift`: `data` objects of 1..16 words.
const MAX_ITEM_SHIFT: u64 = 5;
/// `max_item_retained_shift`: retained objects of 1..64 words.
const MAX_ITEM_RETAINED_SHIFT: u64 = MAX_ITEM_SHIFT + 2;
/// `data` grows by this many entries per unit of SCALE (100,000 / 50).
const DATA_STEP_PER_SCALE: usize = 2000;
/// The largest object, in words: 64 × 100 (and 41 for the quirk).
const MAX_ITEMS: usize = (1 << (MAX_ITEM_RETAINED_SHIFT - 1)) * 100;

static TRANSFER: [AtomicPtr<u64>; TRANSFERS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; TRANSFERS];
static BARRIER: CpuBarrier = CpuBarrier::new();

/// `pick`: one splitmix64 mixing step of the state.
fn pick(r: &mut u64) -> u64 {
    let mut x = *r;
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    *r = x;
    x
}

fn chance(percent: u64, r: &mut u64) -> bool {
    pick(r) % 100 <= percent
}

fn words(items: usize) -> core::alloc::Layout {
    core::alloc::Layout::array::<u64>(items).expect("mstress objects are small")
}

/// `alloc_items`, with `allow_large_objects` off.
fn alloc_items<M: Machine>(mut items: usize, r: &mut u64) -> *mut u64 {
    if chance(1, r) {
        // `chance(1) && allow_large_objects` (×10000), else
        // `chance(10) && allow_large_objects` (×1000), else ×100: C draws
        // both chances before it looks at the switch.
        chance(1, r);
        chance(10, r);
        items *= 100;
    }
    if items == 40 {
        items += 1;
    }
    let p = allocate::<M>("mstress", words(items)).cast::<u64>();
    for i in 0..items {
        // SAFETY: `p` has room for `items` words.
        unsafe { p.add(i).write((items - i) as u64 ^ COOKIE) };
    }
    p
}

/// `free_items`: checks every word, then frees; returns the operations (0
/// for a null pointer).
fn free_items(p: *mut u64, cpu: usize) -> u64 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a non-null pointer here came from `alloc_items`, whose first
    // word holds its item count.
    let items = (unsafe { p.read() } ^ COOKIE) as usize;
    assert!(
        (1..=MAX_ITEMS).contains(&items),
        "bench mstress: cpu {cpu}: object {p:p}: first word gives {items} items, not 1 to {MAX_ITEMS}"
    );
    for i in 0..items {
        // SAFETY: `p` has `items` words.
        let word = unsafe { p.add(i).read() };
        let expected = (items - i) as u64 ^ COOKIE;
        assert!(
            word == expected,
            "bench mstress: cpu {cpu}: object {p:p} of {items} words: word {i} is {word:#x}, expected {expected:#x}"
        );
    }
    // SAFETY: allocated by `alloc_items` with this layout; whoever holds
    // the pointer frees it once.
    unsafe { free(p.cast(), words(items)) };
    1
}

/// What SCALE gives about `ops` operations per CPU: a thread does
/// `150 × SCALE × (tid % 8 + 1)` allocations per round and as many frees.
fn scale(ops: u64, cpus: usize) -> u64 {
    let multipliers: u64 = (0..cpus as u64).map(|tid| tid % 8 + 1).sum();
    (ops * cpus as u64 / (ROUNDS * 300 * multipliers)).max(1)
}

/// `stress(tid)`: one thread's life; returns the operations it did.
fn stress<M: Machine>(tid: usize, scale: u64) -> u64 {
    let mut ops = 0;
    let mut r = (tid as u64 + 1) * 43;
    let mut allocs = 100 * scale as usize * (tid % 8 + 1);
    let mut retain = allocs / 2;
    let data_step = DATA_STEP_PER_SCALE * scale as usize;
    let mut data: Vec<*mut u64> = Vec::new();
    let mut retained: Vec<*mut u64> = Vec::with_capacity(retain);
    ops += 1;
    while allocs > 0 || retain > 0 {
        if retain == 0 || (chance(50, &mut r) && allocs > 0) {
            allocs -= 1;
            if data.len() == data.capacity() {
                // `realloc(data, (data_size + 100000) * sizeof(void*))`.
                ops += if data.capacity() == 0 { 1 } else { 2 };
                data.reserve_exact(data_step);
            }
            let items = 1 << (pick(&mut r) % MAX_ITEM_SHIFT);
            data.push(alloc_items::<M>(items, &mut r));
        } else {
            let items = 1 << (pick(&mut r) % MAX_ITEM_RETAINED_SHIFT);
            retained.push(alloc_items::<M>(items, &mut r));
            retain -= 1;
        }
        ops += 1;
        if chance(66, &mut r) && !data.is_empty() {
            let idx = pick(&mut r) as usize % data.len();
            ops += free_items(data[idx], tid);
            data[idx] = ptr::null_mut();
        }
        if chance(25, &mut r) && !data.is_empty() {
            let data_idx = pick(&mut r) as usize % data.len();
            let transfer_idx = pick(&mut r) as usize % TRANSFERS;
            data[data_idx] = TRANSFER[transfer_idx].swap(data[data_idx], Ordering::AcqRel);
        }
    }
    for &p in retained.iter().chain(&data) {
        ops += free_items(p, tid);
    }
    ops += if data.capacity() > 0 { 2 } else { 1 };
    ops
}

pub fn mstress<M: Machine>(cpu: usize, ops: u64) -> CpuRun {
    let scale = scale(ops, M::cpus());
    // Main's generator lives across rounds, on CPU 0.
    let mut main_r = 43 * 43;
    run_phases::<M>(
        ROUNDS,
        || BARRIER.wait::<M>(),
        |round| {
            let mut done = stress::<M>(cpu, scale);
            BARRIER.wait::<M>();
            if cpu == 0 {
                for slot in &TRANSFER {
                    if chance(50, &mut main_r) || round + 1 == ROUNDS {
                        done += free_items(slot.swap(ptr::null_mut(), Ordering::AcqRel), cpu);
                    }
                }
            }
            BARRIER.wait::<M>();
            Some(done)
        },
        || {},
    )
}
