//! Heap corruption checking (`heapcheck=on`) on the real heap: each test
//! commits one kind of fault on purpose, with the faults recorded instead of
//! ending the run, and checks the report names the kind, the CPU that found
//! it, the address and the size class. The binary switches checking on
//! itself when booted without `heapcheck=on` (the heap is still empty when
//! main starts). The print-and-panic path is checked end to end by the
//! runner's tests (`kernel/examples/double_free.rs`).
//!
//! The faults are deliberate bugs (stores to freed memory, frees of
//! pointers never handed out) aimed at heap memory, which stays mapped.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

extern crate alloc;

use alloc::{alloc::Layout, boxed::Box, vec::Vec};
use kernel::{
    ExitCode,
    boot::BootInfo,
    heap::{self, Checking, FaultKind, HeapFault, Mode, check::FaultRecorder},
    smp,
    testing::{self, Needs},
};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    // A plain allocator has no checks: every test is ignored.
    if !testing::binary_needs(&[Needs::HeapCounters]) {
        test_main();
        return ExitCode::Success;
    }
    // The expected size classes below are slab mode's.
    assert_eq!(
        heap::heap().mode(),
        Mode::Slab,
        "heapcheck tests need alloc=slab, slab-talc, slab-buddy or slab-rlsf"
    );
    if heap::heap().checking() == Checking::Off {
        heap::check::switch_on().expect("heapcheck: the heap is empty when main starts");
    }
    test_main();
    ExitCode::Success
}

/// A 40-byte request, checked, is served by the 64-byte class (40 + 16).
const SMALL: usize = 40;
const SMALL_CLASS: usize = 64;
/// Served straight by the backend.
const LARGE: usize = 8000;
/// What freed objects and red zones hold, as faults report them.
const POISON: u64 = heap::POISON_BYTE as u64;
const RED_ZONE: u64 = heap::RED_ZONE_BYTE as u64;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn allocate(l: Layout) -> *mut u8 {
    // SAFETY: a non-zero size.
    let block = unsafe { alloc::alloc::alloc(l) };
    assert!(!block.is_null(), "heap exhausted allocating {l:?}");
    block
}

/// # Safety
/// As `alloc::alloc::dealloc`, except where a test breaks it on purpose.
unsafe fn free(block: *mut u8, l: Layout) {
    // SAFETY: forwarded from the caller.
    unsafe { alloc::alloc::dealloc(block, l) }
}

/// The fault expected for `kind` at `address` on `cpu`, before offset and
/// values.
fn fault(
    kind: FaultKind,
    cpu: usize,
    address: usize,
    class: Option<usize>,
    l: Layout,
) -> HeapFault {
    HeapFault {
        kind,
        cpu,
        address,
        size_class: class,
        size: l.size(),
        align: l.align(),
        offset: None,
        expected: None,
        found: None,
    }
}

/// The CPU the cross-CPU tests free on: the last one online.
fn last_cpu() -> usize {
    smp::online_cpus() - 1
}

#[test_case]
fn write_after_free_is_reported_when_the_object_would_be_reused() {
    let recorder = FaultRecorder::start();
    let l = layout(SMALL);
    let freed = allocate(l);
    // SAFETY: allocated above with `l`; then the bug: a store to it.
    unsafe {
        free(freed, l);
        freed.add(20).write_volatile(0x41);
    }
    assert_eq!(recorder.take().count, 0, "nothing is checked before reuse");
    let next = allocate(l);
    assert_ne!(next, freed, "the damaged object is never handed out again");
    assert_eq!(
        recorder.take_one(),
        HeapFault {
            offset: Some(20),
            expected: Some(POISON),
            found: Some(0x41),
            ..fault(FaultKind::WriteAfterFree, 0, freed.addr(), Some(SMALL_CLASS), l)
        }
    );
    // SAFETY: allocated above with `l`.
    unsafe { free(next, l) };
}

#[test_case]
fn overflow_into_the_red_zone_is_reported_on_free() {
    let recorder = FaultRecorder::start();
    for (size, class) in [(SMALL, Some(SMALL_CLASS)), (LARGE, None)] {
        let l = layout(size);
        let block = allocate(l);
        // SAFETY: a block of `size` bytes, written; then the bug: one byte
        // past its end.
        unsafe {
            block.write_bytes(0x5a, size);
            block.add(size).write_volatile(0);
            free(block, l);
        }
        assert_eq!(
            recorder.take_one(),
            HeapFault {
                offset: Some(size),
                expected: Some(RED_ZONE),
                found: Some(0),
                ..fault(FaultKind::Overflow, 0, block.addr(), class, l)
            },
            "{size}-byte block"
        );
        // Nothing was freed: with the red zone repaired, the block frees
        // cleanly.
        // SAFETY: still live with `l`.
        unsafe {
            block.add(size).write_volatile(heap::RED_ZONE_BYTE);
            free(block, l);
        }
        assert_eq!(recorder.take().count, 0, "{size}-byte block freed after repair");
    }
}

#[test_case]
fn double_free_is_reported_naming_the_cpu_that_freed_again() {
    let recorder = FaultRecorder::start();
    for (size, class) in [(SMALL, Some(SMALL_CLASS)), (LARGE, None)] {
        let l = layout(size);
        let block = allocate(l);
        // SAFETY: allocated above with `l`.
        unsafe { free(block, l) };
        let address = block.addr();
        let freeing = last_cpu();
        smp::run_on_all_cpus(|cpu| {
            if cpu == freeing {
                // SAFETY: none: the double free under test.
                unsafe { free(address as *mut u8, l) };
            }
        });
        assert_eq!(
            recorder.take_one(),
            fault(FaultKind::DoubleFree, freeing, address, class, l),
            "{size}-byte block"
        );
    }
}

#[test_case]
fn free_of_a_pointer_never_handed_out_is_reported() {
    let recorder = FaultRecorder::start();
    let l = layout(SMALL);
    let mut local = [0u64; 8];
    let outside = local.as_mut_ptr().cast::<u8>();
    // SAFETY: none: a free of a block on this stack, under test.
    unsafe { free(outside, l) };
    assert_eq!(
        recorder.take_one(),
        fault(FaultKind::InvalidFree, 0, outside.addr(), Some(SMALL_CLASS), l)
    );
    // A live object freed with the layout of another size class.
    let object = allocate(l);
    let other = layout(400);
    // SAFETY: none: the wrong layout under test.
    unsafe { free(object, other) };
    assert_eq!(
        recorder.take_one(),
        fault(FaultKind::InvalidFree, 0, object.addr(), Some(512), other)
    );
    // SAFETY: still live with `l`.
    unsafe { free(object, l) };
    assert_eq!(recorder.take().count, 0);
    core::hint::black_box(&mut local);
}

#[test_case]
fn free_off_an_object_boundary_is_reported_as_misaligned() {
    let recorder = FaultRecorder::start();
    let l = layout(SMALL);
    let object = allocate(l);
    let inside = object.wrapping_add(8);
    // SAFETY: none: a free 8 bytes into a live object, under test.
    unsafe { free(inside, l) };
    assert_eq!(
        recorder.take_one(),
        HeapFault {
            offset: Some(8),
            ..fault(FaultKind::MisalignedFree, 0, inside.addr(), Some(SMALL_CLASS), l)
        }
    );
    // SAFETY: still live with `l`.
    unsafe { free(object, l) };
    assert_eq!(recorder.take().count, 0);
}

#[test_case]
fn overwritten_state_word_is_reported_as_corrupted() {
    let recorder = FaultRecorder::start();
    let l = layout(SMALL);
    let object = allocate(l);
    let state_offset = SMALL_CLASS - 8;
    // SAFETY: inside the object's 64-byte slot: the bug, a wild store past
    // the red zone over the state word.
    unsafe {
        object.add(state_offset).cast::<u64>().write_volatile(0x4242);
        free(object, l);
    }
    let reported = recorder.take_one();
    assert_eq!(
        HeapFault { expected: None, ..reported },
        HeapFault {
            offset: Some(state_offset),
            found: Some(0x4242),
            ..fault(FaultKind::Corrupted, 0, object.addr(), Some(SMALL_CLASS), l)
        }
    );
    // The object is not freed: it stays allocated for good.
}

#[test_case]
fn ordinary_heap_use_on_every_cpu_reports_nothing() {
    let recorder = FaultRecorder::start();
    let results = smp::run_on_all_cpus(|cpu| {
        let mut boxes: Vec<Box<[u64]>> = Vec::new();
        for i in 0..300 {
            let len = [1, 5, 40, 200, 1100][i % 5];
            boxes.push(alloc::vec![(cpu * 1000 + i) as u64; len].into_boxed_slice());
            if i % 3 == 0 {
                boxes.swap_remove(i % boxes.len());
            }
        }
        boxes.iter().map(|b| b.len()).sum::<usize>()
    });
    assert!(results.iter().all(|(_, &words)| words > 0));
    assert_eq!(recorder.take(), heap::check::Recorded { count: 0, last: None });
}
