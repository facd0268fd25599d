//! True exhaustion: live memory that outgrows the heap ends the run through
//! the allocation error handler, which prints the failed layout, the heap's
//! figures and the bytes cached per CPU (`HEAP-EXHAUSTED {json}`,
//! `HEAPSTATS {json}`) and exits with `ExitCode::HeapExhausted` (0x12). Each
//! test here is a `ShouldExhaustHeap`: the runner counts that exit as its
//! pass and boots again for the next test (`docs/runner.md`).
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

extern crate alloc;

use alloc::boxed::Box;
use kernel::{ExitCode, boot::BootInfo, smp, testing::ShouldExhaustHeap};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

/// Words in each object of the filling test (1 KiB objects with the link).
const PAYLOAD_WORDS: usize = 127;

/// A link in one CPU's chain of live objects.
struct Node {
    next: Option<Box<Node>>,
    payload: [u64; PAYLOAD_WORDS],
}

#[test_case]
const LIVE_OBJECTS_ON_EVERY_CPU_EXHAUST_THE_HEAP: ShouldExhaustHeap =
    ShouldExhaustHeap::new("live_objects_on_every_cpu_exhaust_the_heap", || {
        let heap_bytes = kernel::boot::info().heap_bytes;
        // More objects than the heap can hold even if this CPU were alone.
        let most = heap_bytes / size_of::<Node>() + 1;
        smp::run_on_all_cpus(|cpu| {
            let mut chain: Option<Box<Node>> = None;
            for i in 0..most {
                let payload = [(cpu as u64) << 32 | i as u64; PAYLOAD_WORDS];
                chain = Some(Box::new(Node { next: chain.take(), payload }));
            }
            // Not reached if the heap works: count the chain, then leak it
            // (dropping it would recurse once per object).
            let mut count = 0;
            let mut node = chain.as_deref();
            while let Some(this) = node {
                assert_eq!(this.payload[0] >> 32, cpu as u64, "cpu {cpu}: object {count}");
                count += 1;
                node = this.next.as_deref();
            }
            assert_eq!(count, most, "cpu {cpu}: objects in the chain");
            core::mem::forget(chain);
        });
    });

#[test_case]
const ONE_REQUEST_LARGER_THAN_THE_HEAP_EXHAUSTS_IT: ShouldExhaustHeap =
    ShouldExhaustHeap::new("one_request_larger_than_the_heap_exhausts_it", || {
        let heap_bytes = kernel::boot::info().heap_bytes;
        let block = Box::<[u8]>::new_uninit_slice(heap_bytes + 1);
        assert!(block.len() > heap_bytes);
    });
