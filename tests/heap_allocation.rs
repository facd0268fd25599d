//! The heap-allocation chapter's tests, on the bootstrap CPU: a `Box`, a
//! large `Vec`, 10,000 allocations that only fit if memory is reused, and
//! many boxes beside one long-lived allocation.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

extern crate alloc;

use alloc::{boxed::Box, vec::Vec};
use kernel::{ExitCode, boot::BootInfo};

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

#[test_case]
fn many_boxes() {
    let heap_bytes = kernel::boot::info().heap_bytes;
    assert!(ITERATIONS * REUSED_OBJECT_BYTES > heap_bytes, "heap too large for the reuse test");
    for i in 0..ITERATIONS {
        let x = Box::new([i as u64; REUSED_OBJECT_BYTES / 8]);
        assert!(x.iter().all(|&w| w == i as u64), "box {i} lost its contents");
    }
}

#[test_case]
fn many_boxes_long_lived() {
    let long_lived = Box::new(1);
    for i in 0..ITERATIONS {
        let x = Box::new([i as u64; REUSED_OBJECT_BYTES / 8]);
        assert_eq!(x[0], i as u64);
    }
    assert_eq!(*long_lived, 1);
}
