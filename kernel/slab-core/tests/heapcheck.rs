//! Corruption detection (`SlabHeap::set_checking`) on the host: each kind of
//! fault is committed on purpose and must be reported exactly once, naming
//! the CPU, the address, the size class and what was found, with the faulty
//! operation refused; a clean workload reports nothing and leaks nothing.
//! Small enough to run under miri.
//!
//! The faults are real bugs of the test program (a write to a freed object,
//! a free of a pointer never handed out) aimed at memory inside the test's
//! arena, which stays allocated, so they are defined behaviour for miri
//! while being exactly what the checks must catch.

mod support;

use std::alloc::Layout;

use slab_core::{Checking, FaultKind, HeapFault, Mode, POISON_BYTE, RED_ZONE_BYTE};
use support::{HeapExt, ReclaimStyle, Rng, TestHeap, TestSlabHeap, fill, holds, set_cpu};

const MIB: usize = 1 << 20;

/// A 40-byte request, checked, is served by the 64-byte class (40 + 16).
const SMALL: usize = 40;
const SMALL_CLASS: usize = 64;
/// Served straight by the backend.
const LARGE: usize = 10_000;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// A heap checking for corruption, on one thread playing `cpus` CPUs.
fn checked_heap(cpus: usize) -> Box<TestHeap> {
    TestHeap::checked(MIB, cpus, ReclaimStyle::SwitchCpus)
}

/// The one fault reported since the last look.
#[track_caller]
fn one_fault(heap: &TestSlabHeap) -> HeapFault {
    let faults = heap.platform().take_faults();
    assert_eq!(faults.len(), 1, "exactly one fault reported, got {faults:?}");
    faults[0]
}

#[track_caller]
fn no_fault(heap: &TestSlabHeap) {
    let faults = heap.platform().take_faults();
    assert!(faults.is_empty(), "no fault expected, got {faults:?}");
}

/// The fault the heap should report for `kind` at `address` on `cpu`,
/// before offset and values.
fn fault(
    kind: FaultKind,
    cpu: usize,
    address: *mut u8,
    class: Option<usize>,
    l: Layout,
) -> HeapFault {
    HeapFault {
        kind,
        cpu,
        address: address.addr(),
        size_class: class,
        size: l.size(),
        align: l.align(),
        offset: None,
        expected: None,
        found: None,
    }
}

/// Frees every CPU's emptied slabs and checks the backend has all its
/// memory back and nothing more was reported.
#[track_caller]
fn assert_all_returned(heap: &TestSlabHeap, cpus: usize, start: usize) {
    heap.drain_all_cpus(cpus);
    assert_eq!(heap.free_bytes(), start, "every byte went back to the backend");
    assert_eq!(heap.usage().slabs, 0);
    no_fault(heap);
}

#[test]
fn a_write_after_free_is_reported_when_the_object_would_be_handed_out_again() {
    let test_heap = checked_heap(2);
    let heap = &test_heap.heap;
    set_cpu(1);
    let l = layout(SMALL, 8);
    let freed = heap.alloc(l);
    // SAFETY: a fresh block of `SMALL` bytes.
    unsafe { fill(freed, SMALL, 1) };
    // SAFETY: allocated above with `l`.
    unsafe { heap.dealloc(freed, l) };
    // The bug: a store through the dangling pointer, into the poison.
    // SAFETY: inside the arena, which stays allocated (see the file's doc).
    unsafe { freed.add(20).write(0x41) };
    no_fault(heap);
    let next = heap.alloc(l);
    assert!(!next.is_null());
    assert_ne!(next, freed, "the damaged object is never handed out again");
    assert_eq!(
        one_fault(heap),
        HeapFault {
            offset: Some(20),
            expected: Some(POISON_BYTE.into()),
            found: Some(0x41),
            ..fault(FaultKind::WriteAfterFree, 1, freed, Some(SMALL_CLASS), l)
        }
    );

    // A store over the first word, where the free list links the object:
    // the link is checked before it is followed.
    let (first, second) = (heap.alloc(l), heap.alloc(l));
    // SAFETY: both allocated above with `l`; `second` then links to `first`.
    unsafe {
        heap.dealloc(first, l);
        heap.dealloc(second, l);
    }
    // SAFETY: as above: the arena stays allocated.
    unsafe { second.cast::<usize>().write(0) };
    let third = heap.alloc(l);
    assert!(!third.is_null() && third != second && third != first);
    assert_eq!(
        one_fault(heap),
        HeapFault {
            offset: Some(0),
            found: Some(0),
            ..fault(FaultKind::WriteAfterFree, 1, second, Some(SMALL_CLASS), l)
        }
    );
    // SAFETY: live blocks of `l`.
    unsafe {
        heap.dealloc(next, l);
        heap.dealloc(third, l);
    }
    no_fault(heap);
}

#[test]
fn an_overflow_into_the_red_zone_is_reported_on_free_and_frees_nothing() {
    let test_heap = checked_heap(1);
    let heap = &test_heap.heap;
    set_cpu(0);
    let start = heap.free_bytes();
    for (size, class) in [(SMALL, Some(SMALL_CLASS)), (LARGE, None)] {
        let l = layout(size, 8);
        let block = heap.alloc(l);
        // SAFETY: a fresh block of `size` bytes, filled, then the bug: one
        // byte written three past its end, into the red zone.
        unsafe {
            fill(block, size, 2);
            block.add(size + 3).write(0);
        }
        // SAFETY: allocated above with `l`.
        unsafe { heap.dealloc(block, l) };
        assert_eq!(
            one_fault(heap),
            HeapFault {
                offset: Some(size + 3),
                expected: Some(RED_ZONE_BYTE.into()),
                found: Some(0),
                ..fault(FaultKind::Overflow, 0, block, class, l)
            }
        );
        // Nothing was freed: with the red zone repaired, the block frees
        // cleanly (no double free).
        // SAFETY: still live with `l`.
        unsafe {
            block.add(size + 3).write(RED_ZONE_BYTE);
            heap.dealloc(block, l);
        }
        no_fault(heap);
    }
    assert_all_returned(heap, 1, start);
}

#[test]
fn a_double_free_is_reported_and_frees_nothing() {
    let test_heap = checked_heap(2);
    let heap = &test_heap.heap;
    let start = heap.free_bytes();
    for (size, class) in [(SMALL, Some(SMALL_CLASS)), (LARGE, None)] {
        let l = layout(size, 8);
        set_cpu(0);
        let block = heap.alloc(l);
        // SAFETY: allocated above with `l`.
        unsafe { heap.dealloc(block, l) };
        no_fault(heap);
        // The bug, on the other CPU: the same block freed again.
        set_cpu(1);
        // SAFETY: none: this is the double free under test.
        unsafe { heap.dealloc(block, l) };
        assert_eq!(one_fault(heap), fault(FaultKind::DoubleFree, 1, block, class, l));
        // Nothing was freed twice: two allocations get two blocks.
        set_cpu(0);
        let (a, b) = (heap.alloc(l), heap.alloc(l));
        assert_ne!(a, b);
        // SAFETY: allocated above with `l`.
        unsafe {
            heap.dealloc(a, l);
            heap.dealloc(b, l);
        }
    }
    assert_all_returned(heap, 2, start);
}

#[test]
fn a_free_of_a_pointer_never_handed_out_is_reported_and_frees_nothing() {
    let test_heap = checked_heap(1);
    let heap = &test_heap.heap;
    set_cpu(0);
    let start = heap.free_bytes();
    let small = layout(SMALL, 8);
    // A block of the program's own, outside the heap.
    let mut local = [0u64; 8];
    let outside = local.as_mut_ptr().cast::<u8>();
    // A pointer into the middle of a large block, where no slab is: 16 KiB
    // (a 64-byte class slab's size) past the block's first 16 KiB boundary.
    let big_layout = layout(64 << 10, 8);
    let big = heap.alloc(big_layout);
    // SAFETY: a fresh block of that size.
    unsafe { fill(big, big_layout.size(), 3) };
    let boundary = big.addr().next_multiple_of(16 << 10);
    let in_big = big.wrapping_add(boundary - big.addr() + (16 << 10) + 128);
    // An object of a live slab that was never handed out (the next one).
    let live = heap.alloc(small);
    let never = live.wrapping_add(SMALL_CLASS);
    // A live object freed with a layout of another class.
    let other_class = layout(400, 8);
    let cases = [
        (outside, small, Some(SMALL_CLASS)),
        (in_big, small, Some(SMALL_CLASS)),
        (never, small, Some(SMALL_CLASS)),
        (live, other_class, Some(512)),
    ];
    for (pointer, l, class) in cases {
        // SAFETY: none: an invalid free under test, aimed at memory that
        // stays allocated and written.
        unsafe { heap.dealloc(pointer, l) };
        assert_eq!(one_fault(heap), fault(FaultKind::InvalidFree, 0, pointer, class, l));
    }
    // A large free inside the big block: no allocated block's state word.
    let in_big_large = big.wrapping_add(4096);
    let large = layout(LARGE, 8);
    // SAFETY: as above.
    unsafe { heap.dealloc(in_big_large, large) };
    let reported = one_fault(heap);
    assert_eq!(
        (reported.kind, reported.address, reported.size_class),
        (FaultKind::InvalidFree, in_big_large.addr(), None),
        "{reported:?}"
    );
    // SAFETY: both live with these layouts, and untouched by the bad frees.
    unsafe {
        assert!(holds(big, big_layout.size(), 3));
        heap.dealloc(big, big_layout);
        heap.dealloc(live, small);
    }
    assert_all_returned(heap, 1, start);
}

#[test]
fn a_free_off_an_object_boundary_is_reported_as_misaligned_and_frees_nothing() {
    let test_heap = checked_heap(1);
    let heap = &test_heap.heap;
    set_cpu(0);
    let start = heap.free_bytes();
    let small = layout(SMALL, 8);
    let object = heap.alloc(small);
    let inside = object.wrapping_add(8);
    // SAFETY: none: a free 8 bytes into a live object, under test.
    unsafe { heap.dealloc(inside, small) };
    assert_eq!(
        one_fault(heap),
        HeapFault {
            offset: Some(8),
            ..fault(FaultKind::MisalignedFree, 0, inside, Some(SMALL_CLASS), small)
        }
    );
    let large = layout(LARGE, 64);
    let block = heap.alloc(large);
    let off = block.wrapping_add(8);
    // SAFETY: none: a free of a pointer not aligned as its layout says.
    unsafe { heap.dealloc(off, large) };
    assert_eq!(one_fault(heap), fault(FaultKind::MisalignedFree, 0, off, None, large));
    // SAFETY: both still live with their layouts.
    unsafe {
        heap.dealloc(object, small);
        heap.dealloc(block, large);
    }
    assert_all_returned(heap, 1, start);
}

#[test]
fn an_overwritten_state_word_is_reported_as_corrupted_and_frees_nothing() {
    let test_heap = checked_heap(1);
    let heap = &test_heap.heap;
    set_cpu(0);
    let l = layout(SMALL, 8);
    let object = heap.alloc(l);
    // The bug: a wild store past the red zone, over the state word (the
    // object's last 8 bytes).
    let state_offset = SMALL_CLASS - 8;
    // SAFETY: inside the object's class-sized slot, in the arena.
    unsafe { object.add(state_offset).cast::<u64>().write_unaligned(0x4242) };
    // SAFETY: allocated above with `l`.
    unsafe { heap.dealloc(object, l) };
    let reported = one_fault(heap);
    assert_eq!(
        HeapFault { expected: None, ..reported },
        HeapFault {
            offset: Some(state_offset),
            found: Some(0x4242),
            ..fault(FaultKind::Corrupted, 0, object, Some(SMALL_CLASS), l)
        }
    );
    assert!(reported.expected.is_some(), "the state word it should have held is named");
    assert_eq!(heap.usage().slabs, 1, "nothing was freed: the slab stays");
}

#[test]
fn a_clean_workload_with_checking_on_reports_nothing_and_leaks_nothing() {
    let cpus = 3;
    let test_heap = TestHeap::checked(4 * MIB, cpus, ReclaimStyle::SwitchCpus);
    let heap = &test_heap.heap;
    let start = heap.free_bytes();
    let mut rng = Rng(0x0bad_cafe_f00d_5eed);
    let mut live: Vec<(*mut u8, Layout, u64)> = Vec::new();
    // Under miri 100 operations (each checked one scans poison and red
    // zones byte by byte there): they still make every kind of request of
    // the 200 before, on all three CPUs: about 50 small and 15 large
    // allocations (zero-sized ones too), 9 reallocs, 5 of them between
    // small and large, and 23 frees or reallocs on another CPU than the
    // allocating one.
    let ops = if cfg!(miri) { 100 } else { 20_000 };
    for tag in 0..ops {
        set_cpu(rng.below(cpus as u64) as usize);
        if live.len() < 150 && (rng.below(3) != 0 || live.is_empty()) {
            let size = [0, 1, 16, 33, 48, 64, 500, 2048, 4080, 4096, 6000][rng.below(11) as usize];
            let align = 1 << rng.below(8);
            let l = layout(size, align);
            let block = heap.alloc(l);
            assert!(!block.is_null());
            assert_eq!(block.addr() % align, 0, "{l:?}");
            // SAFETY: a fresh block of `size` bytes.
            unsafe { fill(block, size, tag) };
            live.push((block, l, tag));
        } else {
            let at = rng.below(live.len() as u64) as usize;
            let (block, l, tag) = live.swap_remove(at);
            // SAFETY: live and filled with `tag`.
            assert!(unsafe { holds(block, l.size(), tag) }, "{l:?} kept its contents");
            if rng.below(4) == 0 {
                let new_size = rng.below(5000) as usize;
                // SAFETY: live with `l`; a size that fits `isize`.
                let moved = unsafe { heap.realloc(block, l, new_size) };
                assert!(!moved.is_null());
                let kept = l.size().min(new_size);
                // SAFETY: realloc copied the first `kept` bytes.
                assert!(unsafe { holds(moved, kept, tag) });
                let new_layout = layout(new_size, l.align());
                // SAFETY: refill the block so the later check holds.
                unsafe { fill(moved, new_size, tag) };
                live.push((moved, new_layout, tag));
            } else {
                // SAFETY: allocated with `l`, freed once.
                unsafe { heap.dealloc(block, l) };
            }
        }
    }
    for (block, l, tag) in live {
        // SAFETY: as above.
        assert!(unsafe { holds(block, l.size(), tag) });
        // SAFETY: as above.
        unsafe { heap.dealloc(block, l) };
    }
    let stats = heap.stats();
    assert!(stats.total.small_ops > 0);
    assert_eq!(stats.total.cache_hits, 0, "checking bypasses the CPU caches");
    assert_eq!(stats.total.cached_bytes, 0);
    assert_all_returned(heap, cpus, start);
}

#[test]
fn checking_is_switched_only_while_the_heap_is_empty_and_also_checks_locked_mode() {
    let test_heap = TestHeap::new(MIB, 1, ReclaimStyle::SwitchCpus);
    let heap = &test_heap.heap;
    set_cpu(0);
    let start = heap.free_bytes();
    let l = layout(SMALL, 8);
    let block = heap.alloc(l);
    assert_eq!(heap.set_checking(Checking::On).unwrap_err().current, Checking::Off);
    // SAFETY: allocated above with `l`.
    unsafe { heap.dealloc(block, l) };
    heap.drain_local_cpu();
    heap.set_mode(Mode::Locked).unwrap();
    heap.set_checking(Checking::On).unwrap();
    assert_eq!(heap.checking(), Checking::On);

    // Locked mode: every block comes from the backend, with a red zone and
    // a state word, so overflows and double frees are caught there too.
    let block = heap.alloc(l);
    // SAFETY: a fresh block of `SMALL` bytes; then one byte past its end.
    unsafe {
        fill(block, SMALL, 4);
        block.add(SMALL).write(7);
    }
    // SAFETY: allocated above with `l`.
    unsafe { heap.dealloc(block, l) };
    assert_eq!(
        one_fault(heap),
        HeapFault {
            offset: Some(SMALL),
            expected: Some(RED_ZONE_BYTE.into()),
            found: Some(7),
            ..fault(FaultKind::Overflow, 0, block, None, l)
        }
    );
    // SAFETY: still live with `l`, its red zone repaired.
    unsafe {
        block.add(SMALL).write(RED_ZONE_BYTE);
        heap.dealloc(block, l);
    }
    no_fault(heap);
    let block = heap.alloc(l);
    // SAFETY: allocated above with `l`; then the double free under test.
    unsafe {
        heap.dealloc(block, l);
        heap.dealloc(block, l);
    }
    assert_eq!(one_fault(heap), fault(FaultKind::DoubleFree, 0, block, None, l));
    assert_eq!(heap.free_bytes(), start);
    heap.set_checking(Checking::Off).unwrap();
    heap.set_mode(Mode::Slab).unwrap();
    assert_all_returned(heap, 1, start);
}
