//! The heap-allocation chapter's tests, on the bootstrap CPU: a `Box`, a
//! large `Vec`, 10,000 allocations that only fit if memory is reused, and
//! many boxes beside one long-lived allocation. Then requests no heap can
//! serve (absurd sizes and alignments): null or `Err` for the caller, no
//! panic inside the allocator, and the heap as before. Run in both modes:
//! `cargo test --test heap_allocation` and `... -- alloc=locked`.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

extern crate alloc;

use alloc::{boxed::Box, vec, vec::Vec};
use core::alloc::Layout;
use kernel::{ExitCode, boot::BootInfo, jobs::stress};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

/// Bytes per allocation in the reuse tests: 10,000 of them are more than
/// the whole heap, so they fit only if freed memory is reused.
const REUSED_OBJECT_BYTES: usize = 4096;
const ITERATIONS: usize = 10_000;

#[test_case]
fn simple_allocation() {
    let heap_value_1 = Box::new(41);
    let heap_value_2 = Box::new(13);
    assert_eq!(*heap_value_1, 41);
    assert_eq!(*heap_value_2, 13);
}

#[test_case]
fn large_vec() {
    let n = 1000u64;
    let mut vec = Vec::new();
    for i in 1..=n {
        vec.push(i);
    }
    assert_eq!(vec.iter().sum::<u64>(), n * (n + 1) / 2);
}

/// The chapter's 10,000 allocations, or more on a larger heap (the default
/// heap grows with the CPU count): together 1.25 times the heap, so the loop
/// passes only if freed memory is reused.
fn reuse_iterations() -> usize {
    let heap_bytes = kernel::boot::info().heap_bytes;
    let iterations = ITERATIONS.max(heap_bytes / REUSED_OBJECT_BYTES * 5 / 4);
    assert!(
        iterations * REUSED_OBJECT_BYTES > heap_bytes,
        "{iterations} allocations of {REUSED_OBJECT_BYTES} bytes do not exceed the {heap_bytes}-byte heap"
    );
    iterations
}

#[test_case]
fn many_boxes() {
    for i in 0..reuse_iterations() {
        let x = Box::new([i as u64; REUSED_OBJECT_BYTES / 8]);
        assert!(x.iter().all(|&w| w == i as u64), "box {i} lost its contents");
    }
}

#[test_case]
fn many_boxes_long_lived() {
    let long_lived = Box::new(1);
    for i in 0..reuse_iterations() {
        let x = Box::new([i as u64; REUSED_OBJECT_BYTES / 8]);
        assert_eq!(x[0], i as u64);
    }
    assert_eq!(*long_lived, 1);
}

/// Alignment no address in the kernel's half can have (the heap lives at
/// `0xffff_c000_0000_0000`, which is not a multiple of 2^62).
const UNSERVABLE_ALIGN: usize = 1 << 62;

/// `(size, align)` of requests that can never be served: sizes near
/// `isize::MAX`, larger than the heap, or aligned beyond any heap address.
fn impossible_layouts(heap_bytes: usize) -> [Layout; 6] {
    [
        (isize::MAX as usize - 4096, 1),
        (isize::MAX as usize / 2 + 1, 4096),
        (heap_bytes + 1, 8),
        (heap_bytes * 2, 1 << 20),
        (8, UNSERVABLE_ALIGN),
        (4096, UNSERVABLE_ALIGN),
    ]
    .map(|(size, align)| Layout::from_size_align(size, align).expect("a valid layout"))
}

#[test_case]
fn impossible_requests_return_null() {
    let heap_bytes = kernel::boot::info().heap_bytes;
    let free_before = stress::drained_free_bytes();
    // With one object alive, even the whole heap's size is too much: that
    // request gets past every plausibility check, through reclaim, to the
    // backend.
    let pin = core::hint::black_box(Box::new(1u64));
    let whole_heap = Layout::from_size_align(heap_bytes, 8).unwrap();
    for layout in impossible_layouts(heap_bytes).into_iter().chain([whole_heap]) {
        // SAFETY: the layout has a non-zero size.
        let block = unsafe { alloc::alloc::alloc(layout) };
        assert!(
            block.is_null(),
            "alloc({layout:?}) returned {block:p} from a {heap_bytes}-byte heap"
        );
    }
    drop(pin);
    // An alignment that only the heap's first address could have: null or
    // a correctly aligned block, never a panic.
    let huge_align = Layout::from_size_align(8, 1 << 40).unwrap();
    // SAFETY: the layout has a non-zero size.
    let block = unsafe { alloc::alloc::alloc(huge_align) };
    if !block.is_null() {
        assert_eq!(block as usize % huge_align.align(), 0, "{huge_align:?} gave {block:p}");
        // SAFETY: just allocated with `huge_align`.
        unsafe { alloc::alloc::dealloc(block, huge_align) };
    }
    assert_heap_works_as_before(free_before);
}

#[test_case]
fn impossible_growth_leaves_the_block_alone() {
    let heap_bytes = kernel::boot::info().heap_bytes;
    let free_before = stress::drained_free_bytes();
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: the layout has a non-zero size.
    let block = unsafe { alloc::alloc::alloc(layout) };
    assert!(!block.is_null(), "allocating {layout:?} failed");
    // SAFETY: `block` is a live 64-byte block.
    unsafe { block.write_bytes(0xa5, layout.size()) };
    for new_size in [isize::MAX as usize - 4096, heap_bytes + 1] {
        // SAFETY: `block` is live with `layout`; `new_size` rounded up to 8
        // does not overflow `isize`.
        let moved = unsafe { alloc::alloc::realloc(block, layout, new_size) };
        assert!(moved.is_null(), "realloc to {new_size} bytes returned {moved:p}");
        // SAFETY: a failed realloc leaves `block` live and unchanged.
        let intact = (0..layout.size()).all(|i| unsafe { block.add(i).read() } == 0xa5);
        assert!(intact, "the block at {block:p} changed after a failed realloc to {new_size}");
    }
    // SAFETY: `block` is live with `layout`.
    unsafe { alloc::alloc::dealloc(block, layout) };
    assert_heap_works_as_before(free_before);
}

#[test_case]
fn impossible_reservations_are_errors() {
    let heap_bytes = kernel::boot::info().heap_bytes;
    let free_before = stress::drained_free_bytes();
    let mut empty: Vec<u8> = Vec::new();
    for extra in [usize::MAX, isize::MAX as usize - 8, heap_bytes * 2] {
        assert!(empty.try_reserve(extra).is_err(), "try_reserve({extra}) on an empty Vec");
    }
    let mut words: Vec<u64> = Vec::new();
    assert!(words.try_reserve_exact(isize::MAX as usize / 8 - 1).is_err());
    let mut full = vec![7u64; 100];
    for extra in [isize::MAX as usize / 8 - 200, heap_bytes] {
        assert!(full.try_reserve(extra).is_err(), "try_reserve({extra}) on a 100-element Vec");
        assert!(full.len() == 100 && full.iter().all(|&w| w == 7), "the Vec changed");
    }
    drop((empty, words, full));
    assert_heap_works_as_before(free_before);
}

/// The heap serves ordinary requests and, with every cache drained, has
/// `free_before` bytes free again.
fn assert_heap_works_as_before(free_before: usize) {
    let boxed = Box::new([3u64; 64]);
    assert!(boxed.iter().all(|&w| w == 3));
    let vec: Vec<u32> = (0..10_000).collect();
    assert_eq!(vec.iter().map(|&x| u64::from(x)).sum::<u64>(), 49_995_000);
    drop((boxed, vec));
    let free_after = stress::drained_free_bytes();
    assert_eq!(free_after, free_before, "bytes free with caches drained, before and after");
}
