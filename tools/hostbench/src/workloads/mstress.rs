//! `mstress`: the kernel's port of Daan Leijen's stress test
//! (`kernel/src/jobs/bench/mimalloc_bench/mstress.rs`, whose notes say what it
//! keeps of the original and what it scales down), with the same
//! parameters, on threads: the kernel's CPU i is thread i here. Waits for
//! another thread spin, then yield (`harness::wait_for_another`), since the
//! host may preempt the thread waited for.
use core::{
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};

use super::common::{allocate, free};
use crate::harness::{CpuRun, ThreadBarrier, run_phases, threads};

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
static BARRIER: ThreadBarrier = ThreadBarrier::new();

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
fn alloc_items(mut items: usize, r: &mut u64) -> *mut u64 {
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
    let p = allocate("mstress", words(items)).cast::<u64>();
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
fn stress(tid: usize, scale: u64) -> u64 {
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
            data.push(alloc_items(items, &mut r));
        } else {
            let items = 1 << (pick(&mut r) % MAX_ITEM_RETAINED_SHIFT);
            retained.push(alloc_items(items, &mut r));
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

pub fn mstress(cpu: usize, ops: u64) -> CpuRun {
    let scale = scale(ops, threads());
    // Main's generator lives across rounds, on CPU 0.
    let mut main_r = 43 * 43;
    run_phases(
        ROUNDS,
        || BARRIER.wait(),
        |round| {
            let mut done = stress(cpu, scale);
            BARRIER.wait();
            if cpu == 0 {
                for slot in &TRANSFER {
                    if chance(50, &mut main_r) || round + 1 == ROUNDS {
                        done += free_items(slot.swap(ptr::null_mut(), Ordering::AcqRel), cpu);
                    }
                }
            }
            BARRIER.wait();
            Some(done)
        },
        || {},
    )
}
