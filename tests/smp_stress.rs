//! The heap under every CPU at once: the chapter's cases concurrently on
//! each CPU (distinct values per CPU, contents checked), frees on another
//! CPU than the allocation, a storm of mixed sizes and alignments, and the
//! heap's books afterwards. Run in both modes: `cargo test --test smp_stress`
//! (slab) and `cargo test --test smp_stress -- alloc=locked`, and with a
//! plain allocator (`alloc=lockedheap`), whose books are its free bytes.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

use kernel::{
    ExitCode,
    boot::BootInfo,
    heap::{self, Checking, Mode},
    jobs::stress,
    testing::{Needs, Test},
};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

#[test_case]
fn simple_allocation_on_every_cpu() {
    stress::simple_allocation_on_every_cpu();
}

#[test_case]
fn large_vec_on_every_cpu() {
    stress::large_vec_on_every_cpu();
}

#[test_case]
fn many_boxes_on_every_cpu() {
    stress::many_boxes_on_every_cpu();
}

#[test_case]
fn many_boxes_long_lived_on_every_cpu() {
    stress::many_boxes_long_lived_on_every_cpu();
}

#[test_case]
fn frees_on_the_next_cpu() {
    stress::frees_on_the_next_cpu();
}

#[test_case]
fn mixed_sizes_and_alignments_storm() {
    stress::mixed_sizes_and_alignments_storm();
}

#[test_case]
const CROSS_CPU_FREES_ARE_COUNTED_IN_SLAB_MODE: Test =
    Test::new("cross_cpu_frees_are_counted_in_slab_mode", cross_cpu_frees_are_counted_in_slab_mode)
        .needs(&[Needs::HeapCounters]);

fn cross_cpu_frees_are_counted_in_slab_mode() {
    let before = heap::stats();
    stress::frees_on_the_next_cpu();
    let after = heap::stats();
    let counted = after.total.cross_cpu_frees - before.total.cross_cpu_frees;
    let cpus = after.cpus as u64;
    let expected = if cpus > 1 && after.mode == Some(Mode::Slab) {
        cpus * stress::CROSS_CPU_OBJECTS as u64
    } else {
        0
    };
    assert_eq!(
        counted, expected,
        "cross-CPU frees counted on {cpus} cpus in {:?} mode",
        after.mode
    );
}

#[test_case]
fn every_case_leaves_the_heap_as_it_found_it() {
    let free_before = stress::drained_free_bytes();
    let before = heap::stats();
    for case in stress::CASES {
        (case.run)();
    }
    let after = heap::stats();
    match (after.mode, heap::heap().checking()) {
        (Some(Mode::Slab), Checking::Off) => stress::assert_batching_bound(&before, &after),
        // A plain allocator keeps no counts: the books below are all.
        (None, _) => {}
        // Locked mode, and heap checking, take the lock for every operation.
        (Some(_), _) => {
            let ops = after.total.small_ops + after.total.large_ops
                - before.total.small_ops
                - before.total.large_ops;
            let locks = after.total.lock.acquisitions - before.total.lock.acquisitions;
            assert!(locks >= ops, "locked mode: {locks} lock acquisitions for {ops} operations");
        }
    }
    let free_after = stress::drained_free_bytes();
    assert_eq!(
        free_after, free_before,
        "bytes free with caches drained, before and after the cases"
    );
}
