//! The heap stress cases, run at the same time on every CPU: the chapter's
//! cases (a `Box`, a large `Vec`, 10,000 allocations that only fit with
//! reuse, many boxes beside one long-lived one), frees on another CPU than
//! the allocation, and a storm of mixed sizes and alignments. Every object
//! carries a value or pattern that names its CPU, checked before it is freed.
//! `tests/smp_stress.rs` runs each case as a test; `job=stress` runs them all
//! and then checks the heap's books.
use alloc::{boxed::Box, vec::Vec};
use core::alloc::Layout;

use spin::Mutex;

use crate::{
    ExitCode,
    heap::{self, HeapStats, Mode},
    println,
    smp::{self, MAX_CPUS},
    time::Stopwatch,
};

/// Elements of the large `Vec`.
pub const LARGE_VEC_LEN: u64 = 1000;
/// Allocations in the reuse loop, per CPU.
pub const REUSE_ITERATIONS: usize = 10_000;
/// Bytes of each allocation in the reuse loop: together the CPUs allocate
/// far more than the heap holds, so the loop passes only if freed memory is
/// reused.
pub const REUSE_OBJECT_BYTES: usize = 4096;
/// Objects each CPU hands to its neighbour in the cross-CPU case.
pub const CROSS_CPU_OBJECTS: usize = 2000;
/// Operations per CPU in the mixed storm up to 16 CPUs, and objects it
/// keeps alive.
pub const STORM_OPERATIONS: usize = 20_000;
/// Above 16 CPUs the storm's operations per CPU shrink so that all CPUs
/// together do this many (2,500 each at 128 CPUs, still ten times the live
/// objects): its byte-by-byte checks made it the slowest case, 100 s at 64
/// CPUs under TCG on 2 host cores.
pub const STORM_TOTAL_OPERATIONS: usize = 16 * STORM_OPERATIONS;
const STORM_LIVE_OBJECTS: usize = 256;

/// A stress case: its name and the body every CPU runs.
pub struct StressCase {
    pub name: &'static str,
    pub run: fn(),
}

/// Every case, in the order `job=stress` runs them.
pub const CASES: &[StressCase] = &[
    StressCase { name: "simple_allocation_on_every_cpu", run: simple_allocation_on_every_cpu },
    StressCase { name: "large_vec_on_every_cpu", run: large_vec_on_every_cpu },
    StressCase { name: "many_boxes_on_every_cpu", run: many_boxes_on_every_cpu },
    StressCase {
        name: "many_boxes_long_lived_on_every_cpu",
        run: many_boxes_long_lived_on_every_cpu,
    },
    StressCase { name: "frees_on_the_next_cpu", run: frees_on_the_next_cpu },
    StressCase { name: "mixed_sizes_and_alignments_storm", run: mixed_sizes_and_alignments_storm },
];

/// A `Box` per CPU holding a value only that CPU would write.
pub fn simple_allocation_on_every_cpu() {
    smp::run_on_all_cpus(|cpu| {
        let heap_value_1 = Box::new(41 + cpu);
        let heap_value_2 = Box::new(13 * cpu as u64);
        assert_eq!(*heap_value_1, 41 + cpu, "cpu {cpu}: first box");
        assert_eq!(*heap_value_2, 13 * cpu as u64, "cpu {cpu}: second box");
    });
}

/// A large `Vec` per CPU, its sum checked against n(n+1)/2 plus the CPU's
/// offset.
pub fn large_vec_on_every_cpu() {
    smp::run_on_all_cpus(|cpu| {
        let offset = cpu as u64 * 1_000_000;
        let mut vec = Vec::new();
        for i in 1..=LARGE_VEC_LEN {
            vec.push(offset + i);
        }
        let expected = LARGE_VEC_LEN * (LARGE_VEC_LEN + 1) / 2 + LARGE_VEC_LEN * offset;
        let sum: u64 = vec.iter().sum();
        assert_eq!(sum, expected, "cpu {cpu}: sum of the large vec");
    });
}

/// 10,000 allocations per CPU, each freed before the next: together far
/// more than the heap's size.
pub fn many_boxes_on_every_cpu() {
    let total = smp::online_cpus() * REUSE_ITERATIONS * REUSE_OBJECT_BYTES;
    let heap_bytes = crate::boot::info().heap_bytes;
    assert!(
        total > heap_bytes,
        "the reuse loop allocates {total} bytes, not more than the {heap_bytes}-byte heap"
    );
    smp::run_on_all_cpus(|cpu| {
        for i in 0..REUSE_ITERATIONS {
            let page = Box::new([(cpu * REUSE_ITERATIONS + i) as u64; REUSE_OBJECT_BYTES / 8]);
            let expected = (cpu * REUSE_ITERATIONS + i) as u64;
            assert!(page.iter().all(|&w| w == expected), "cpu {cpu}: box {i} lost its contents");
        }
    });
}

/// The reuse loop beside one allocation that lives through it.
pub fn many_boxes_long_lived_on_every_cpu() {
    smp::run_on_all_cpus(|cpu| {
        let long_lived = Box::new(cpu as u64 + 1);
        for i in 0..REUSE_ITERATIONS {
            let x = Box::new(i ^ cpu);
            assert_eq!(*x, i ^ cpu, "cpu {cpu}: box {i}");
        }
        assert_eq!(*long_lived, cpu as u64 + 1, "cpu {cpu}: the long-lived box changed");
    });
}

/// Objects handed between CPUs: allocated on one CPU, freed on another.
type Handoff = Mutex<[Option<Vec<Box<[u64; 8]>>>; MAX_CPUS]>;

// `tag` keeps the CPU index in 16 bits.
const _: () = assert!(MAX_CPUS <= 1 << 16);

/// CPU i allocates; then CPU i checks and frees what CPU i+1 allocated.
pub fn frees_on_the_next_cpu() {
    static HANDOFF: Handoff = Mutex::new([const { None }; MAX_CPUS]);
    smp::run_on_all_cpus(|cpu| {
        let objects: Vec<Box<[u64; 8]>> =
            (0..CROSS_CPU_OBJECTS).map(|i| Box::new([tag(cpu, i); 8])).collect();
        HANDOFF.lock()[cpu] = Some(objects);
    });
    let cpus = smp::online_cpus();
    smp::run_on_all_cpus(|cpu| {
        let from = (cpu + 1) % cpus;
        let objects = HANDOFF.lock()[from].take().expect("every CPU handed its objects over");
        for (i, object) in objects.into_iter().enumerate() {
            assert!(
                object.iter().all(|&w| w == tag(from, i)),
                "cpu {cpu}: object {i} from cpu {from} holds {:#x}, not {:#x}",
                object[0],
                tag(from, i)
            );
        }
    });
}

/// A value naming CPU `cpu`'s object `i`: the CPU in bits 32..48.
fn tag(cpu: usize, i: usize) -> u64 {
    0x5a5a_0000_0000_0000 | (cpu as u64) << 32 | i as u64
}

/// Random sizes (8 B to 16 KiB, so large requests reach the backend too) and
/// alignments (1 to 4096), reallocs, a few hundred objects alive per CPU,
/// each filled with a pattern from its address and checked before it goes.
pub fn mixed_sizes_and_alignments_storm() {
    let operations = storm_operations_per_cpu(smp::online_cpus());
    smp::run_on_all_cpus(|cpu| {
        let mut random =
            XorShift(0x9e37_79b9_7f4a_7c15 ^ (cpu as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
        let mut live: [Option<(*mut u8, Layout)>; STORM_LIVE_OBJECTS] = [None; STORM_LIVE_OBJECTS];
        for step in 0..operations {
            let slot = random.below(STORM_LIVE_OBJECTS as u64) as usize;
            if let Some((ptr, layout)) = live[slot].take() {
                check_pattern(cpu, step, ptr, layout.size());
                if random.below(4) == 0 {
                    let new_size = random_size(&mut random);
                    // SAFETY: `ptr` is live, from `alloc` with `layout`;
                    // `new_size` is non-zero and small.
                    let new = unsafe { alloc::alloc::realloc(ptr, layout, new_size) };
                    assert!(!new.is_null(), "cpu {cpu}: realloc to {new_size} bytes failed");
                    let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                    check_moved_pattern(cpu, step, ptr, new, layout.size().min(new_size));
                    fill_pattern(new, new_size);
                    live[slot] = Some((new, new_layout));
                    continue;
                }
                // SAFETY: `ptr` is live, from `alloc` with `layout`.
                unsafe { alloc::alloc::dealloc(ptr, layout) };
            }
            let size = random_size(&mut random);
            let align = 1 << random.below(13);
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: `layout` has a non-zero size.
            let ptr = unsafe { alloc::alloc::alloc(layout) };
            assert!(!ptr.is_null(), "cpu {cpu}: allocating {layout:?} failed");
            assert_eq!(ptr as usize % align, 0, "cpu {cpu}: {layout:?} got misaligned {ptr:p}");
            fill_pattern(ptr, size);
            live[slot] = Some((ptr, layout));
        }
        for (ptr, layout) in live.into_iter().flatten() {
            check_pattern(cpu, operations, ptr, layout.size());
            // SAFETY: `ptr` is live, from `alloc` with `layout`.
            unsafe { alloc::alloc::dealloc(ptr, layout) };
        }
    });
}

/// The storm's operations per CPU on `cpus` CPUs.
pub fn storm_operations_per_cpu(cpus: usize) -> usize {
    STORM_OPERATIONS.min(STORM_TOTAL_OPERATIONS / cpus.max(1))
}

/// A size for the storm: 1 in 25 large (4 to 16 KiB, served by the backing
/// heap under the global lock), 7 in 25 medium, the rest small, so the whole
/// stress keeps within one lock acquisition per 16 small operations in slab
/// mode even counting the large objects' acquisitions.
fn random_size(random: &mut XorShift) -> usize {
    match random.below(25) {
        0 => 4096 + random.below(12 * 1024) as usize,
        1..=7 => 256 + random.below(3840) as usize,
        _ => 8 + random.below(248) as usize,
    }
}

/// The byte expected at `address`: depends on the address, so a block that
/// overlaps another or moved without its contents shows up.
fn pattern_byte(address: usize) -> u8 {
    (address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()[7]
}

fn fill_pattern(ptr: *mut u8, size: usize) {
    for i in 0..size {
        // SAFETY: `ptr` is a live block of at least `size` bytes.
        unsafe { ptr.add(i).write(pattern_byte(ptr as usize + i)) };
    }
}

/// Checks that the `size` bytes at `ptr` still hold their pattern.
fn check_pattern(cpu: usize, step: usize, ptr: *mut u8, size: usize) {
    check_moved_pattern(cpu, step, ptr, ptr, size);
}

/// Checks that the `size` bytes at `now` hold the pattern they were filled
/// with at `filled_at` (the same address, or the old one before a realloc).
fn check_moved_pattern(cpu: usize, step: usize, filled_at: *mut u8, now: *mut u8, size: usize) {
    for i in 0..size {
        // SAFETY: `now` is a live block of at least `size` bytes.
        let found = unsafe { now.add(i).read() };
        let expected = pattern_byte(filled_at as usize + i);
        assert_eq!(
            found, expected,
            "cpu {cpu}, step {step}: byte {i} of the {size}-byte block at {now:p} (filled at {filled_at:p}) changed"
        );
    }
}

/// A small deterministic random-number generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Empties every CPU's caches into the backend.
pub fn drain_every_cpu() {
    let drained = smp::run_on_all_cpus(|_| heap::heap().drain_local_cpu());
    for (cpu, &drained) in drained.iter() {
        // A job runs outside any heap operation, so nothing can be busy.
        assert!(drained, "cpu {cpu}: its heap slot was busy while it ran a drain job");
    }
}

/// The heap's free bytes with every cache drained (a plain allocator's
/// own figure: it has no caches).
pub fn drained_free_bytes() -> usize {
    drain_every_cpu();
    heap::usage().free_bytes
}

/// Checks the slab front end's promise: in steady state at most one global
/// lock acquisition per 16 small-object operations.
pub fn assert_batching_bound(before: &HeapStats, after: &HeapStats) {
    let small_ops = after.total.small_ops - before.total.small_ops;
    let locks = after.total.lock.acquisitions - before.total.lock.acquisitions;
    let large_ops = after.total.large_ops - before.total.large_ops;
    // Large objects take the lock once per operation by design.
    let small_locks = locks - large_ops.min(locks);
    assert!(
        small_locks * 16 <= small_ops,
        "batching bound broken: {small_locks} lock acquisitions for {small_ops} small operations"
    );
}

/// `job=stress`: every case on every CPU, then the report, the `HEAPSTATS`
/// record and the heap's books: no leak, and in slab mode the batching bound
/// (a plain allocator keeps no lock counts: only the leak check applies).
pub fn run_job() -> ExitCode {
    let free_before = drained_free_bytes();
    let before = heap::stats();
    for case in CASES {
        let stopwatch = Stopwatch::start();
        (case.run)();
        println!(
            "stress: {} on {} cpus: ok ({} ms)",
            case.name,
            smp::online_cpus(),
            stopwatch.elapsed_ns() / 1_000_000
        );
    }
    let after = heap::stats();
    heap::print_report();
    heap::print_heapstats_record(&after);
    if after.mode == Some(Mode::Slab) {
        assert_batching_bound(&before, &after);
        // The whole run, large objects' acquisitions included.
        assert!(
            after.total.lock.acquisitions * 16 <= after.total.small_ops,
            "slab mode: {} lock acquisitions in all for {} small operations",
            after.total.lock.acquisitions,
            after.total.small_ops
        );
    }
    let free_after = drained_free_bytes();
    assert_eq!(
        free_after, free_before,
        "heap leak: {} bytes free before the stress, {} after",
        free_before, free_after
    );
    if after.counted() {
        println!(
            "stress: ok: {} lock acquisitions for {} small operations, {} bytes free before and after",
            after.total.lock.acquisitions - before.total.lock.acquisitions,
            after.total.small_ops - before.total.small_ops,
            free_after
        );
    } else {
        println!(
            "stress: ok: alloc={} keeps no lock counts; {} bytes free before and after",
            after.alloc_name(),
            free_after
        );
    }
    ExitCode::Success
}
