//! Memory pressure: live memory that fits only if the other CPUs' cached
//! objects are reclaimed. Every other CPU first fills its caches (and so
//! keeps partly used slabs); then CPU 0 allocates blocks until almost the
//! whole heap is live, more than the backend has free while those caches
//! are full. That passes only if the heap's out-of-memory path drains the
//! other CPUs through the reclaim IPI. The test checks that the other CPUs
//! held more than the slack it leaves (so it is not vacuous) and that their
//! caches are empty afterwards. It needs at least two CPUs and the per-CPU
//! caches (a slab allocator, `heapcheck=off`); elsewhere it is reported
//! ignored with the reason. Any heap size works; `tools/test-all` runs it at
//! `-smp 4` (the default `alloc=slab`), 2 and 8, and with a small heap
//! (`-- --smp 4 heap=4M`).
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

extern crate alloc;

use alloc::vec::Vec;
use core::{alloc::Layout, ptr::NonNull};
use kernel::{
    ExitCode,
    boot::BootInfo,
    heap::{self, SizeClass},
    jobs::stress,
    println, smp,
    testing::{Needs, Test},
};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

/// The blocks CPU 0 fills the heap with: large (served by the backend) and
/// a divisor of every slab size, so they tile the slabs the reclaim frees.
const BLOCK_BYTES: usize = 8 * 1024;
/// What CPU 0 leaves unallocated, for the backend's fragmentation.
const SLACK_BYTES: usize = 128 * 1024;
/// Magazines' worth of objects each other CPU allocates and frees per size
/// class to fill its caches.
const FILL_MAGAZINES: usize = 3;

/// Without a second CPU there are no other caches to reclaim; without the
/// per-CPU caches (`alloc=locked`, `heapcheck=on`) nothing is cached at all:
/// either way the test could not fail, so it is ignored there.
#[test_case]
const LIVE_MEMORY_FITS_ONLY_WITH_THE_OTHER_CPUS_CACHES_RECLAIMED: Test = Test::new(
    "live_memory_fits_only_with_the_other_cpus_caches_reclaimed",
    live_memory_fits_only_with_the_other_cpus_caches_reclaimed,
)
.needs(&[Needs::Cpus(2), Needs::CpuCaches]);

fn live_memory_fits_only_with_the_other_cpus_caches_reclaimed() {
    let heap_bytes = kernel::boot::info().heap_bytes;
    let block = Layout::from_size_align(BLOCK_BYTES, 8).unwrap();
    let mut blocks: Vec<NonNull<u8>> = Vec::with_capacity(heap_bytes / BLOCK_BYTES + 1);

    let drained_free = stress::drained_free_bytes();
    smp::run_on_all_cpus(|cpu| {
        if cpu != 0 {
            fill_this_cpus_caches(cpu);
        }
    });
    let before = heap::stats();
    let free_with_caches_full = before.heap.free_bytes;
    let stranded = drained_free - free_with_caches_full;
    let target = drained_free.saturating_sub(SLACK_BYTES);
    println!(
        "heap_pressure: {heap_bytes}-byte heap, alloc={}: {drained_free} bytes free with every cache drained, {free_with_caches_full} with the other cpus' caches full ({stranded} held by them); cpu 0 makes {target} bytes live",
        kernel::boot::info().allocator.name
    );
    for summary in &before.per_cpu()[1..] {
        println!("heap_pressure: cpu {} caches {} bytes", summary.cpu, summary.cached_bytes);
    }
    assert!(
        free_with_caches_full + BLOCK_BYTES <= target,
        "vacuous: the other cpus hold only {stranded} bytes, not more than the {SLACK_BYTES}-byte slack; cpu 0's {target} bytes would fit without a reclaim"
    );

    let mut live = 0;
    while live < target {
        // SAFETY: the layout has a non-zero size.
        let Some(address) = NonNull::new(unsafe { alloc::alloc::alloc(block) }) else {
            panic!(
                "cpu 0: allocating block {} ({BLOCK_BYTES} bytes) failed with {live} bytes live of {target}; the other cpus held {stranded} bytes",
                blocks.len()
            );
        };
        blocks.push(address);
        live += BLOCK_BYTES;
    }

    let after = heap::stats();
    println!(
        "heap_pressure: cpu 0 holds {live} bytes live; {} bytes free now",
        after.heap.free_bytes
    );
    for summary in &after.per_cpu()[1..] {
        println!("heap_pressure: cpu {} caches {} bytes now", summary.cpu, summary.cached_bytes);
        assert_eq!(
            summary.cached_bytes, 0,
            "cpu {}: its caches were not reclaimed under pressure",
            summary.cpu
        );
    }
    for address in blocks.drain(..) {
        // SAFETY: each block was allocated above with `block` and is freed once.
        unsafe { alloc::alloc::dealloc(address.as_ptr(), block) };
    }
    // The list of blocks was there for the first measurement too.
    let free_after = stress::drained_free_bytes();
    drop(blocks);
    assert_eq!(free_after, drained_free, "bytes free with caches drained, before and after");
}

/// Allocates [`FILL_MAGAZINES`] magazines' worth of objects of every size
/// class and frees them again, on this CPU: its caches end up full, each
/// cached object keeping its slab from the backend.
fn fill_this_cpus_caches(cpu: usize) {
    let mut objects: Vec<(NonNull<u8>, Layout)> = Vec::with_capacity(
        SizeClass::ALL.iter().map(|class| class.magazine_capacity() * FILL_MAGAZINES).sum(),
    );
    for class in SizeClass::ALL {
        let layout = Layout::from_size_align(class.size(), class.align()).unwrap();
        for _ in 0..class.magazine_capacity() * FILL_MAGAZINES {
            // SAFETY: the layout has a non-zero size.
            let address = unsafe { alloc::alloc::alloc(layout) };
            let address = NonNull::new(address)
                .unwrap_or_else(|| panic!("cpu {cpu}: allocating {layout:?} failed"));
            objects.push((address, layout));
        }
    }
    for (address, layout) in objects.drain(..).rev() {
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { alloc::alloc::dealloc(address.as_ptr(), layout) };
    }
}
