//! The heap's statistics and its backend from a thread that is not one of
//! its CPUs (a host thread, a tool): `stats()`, `usage()` and
//! `with_backend()` ask the platform for no CPU index, so they are sound from
//! anywhere, even while the CPUs allocate. The platform here refuses to
//! name a CPU for a thread that never became one: any of those calls that
//! asked would panic, naming the call. Small enough to run under miri.

use std::alloc::{Layout, alloc, dealloc};
use std::cell::Cell;
use std::sync::Barrier;
use std::thread;

use linked_list_allocator::Heap;
use slab_core::{Platform, SlabHeap};

thread_local! {
    /// The CPU the thread stands for; `None` for a thread that is none.
    static CPU: Cell<Option<usize>> = const { Cell::new(None) };
}

/// CPUs of the heap, each a thread.
const CPUS: usize = 2;
const HEAP_BYTES: usize = 1 << 20;
/// Allocate-and-free rounds per CPU, and statistics rounds of the outsider.
const ROUNDS: usize = if cfg!(miri) { 20 } else { 2_000 };
/// Objects each CPU keeps live per round (of sizes `SIZES`).
const SIZES: [usize; 3] = [16, 200, 3000];

/// Threads as CPUs; a thread that is not one has no index.
struct ThreadCpus;

// SAFETY: each CPU thread sets a distinct index below `CPUS` before it uses
// the heap and keeps it; there are no interrupts or preemption to mask on
// the host. `current_cpu` panics rather than invent an index for a thread
// that is no CPU. Nothing here allocates from the heap under test.
unsafe impl Platform for ThreadCpus {
    type IrqGuard = ();

    fn mask_irqs(&self) {}

    fn current_cpu(&self) -> usize {
        CPU.with(Cell::get).unwrap_or_else(|| {
            panic!(
                "Platform::current_cpu asked on thread {:?}, which is not a CPU of the heap",
                thread::current().name()
            )
        })
    }

    fn cpu_count(&self) -> usize {
        CPUS
    }

    fn timestamp(&self) -> u64 {
        0
    }

    fn reclaim_remote(&self, _drain_this_cpu: &dyn Fn() -> bool) {
        panic!("the heap ran out of memory: {HEAP_BYTES} bytes should be plenty");
    }
}

/// The heap over an arena from the host allocator, freed after the heap.
struct ArenaHeap {
    heap: SlabHeap<Heap, ThreadCpus>,
    arena: *mut u8,
    layout: Layout,
}

// SAFETY: the arena is reached only through the heap, which is `Sync`.
unsafe impl Sync for ArenaHeap {}

impl ArenaHeap {
    fn new() -> Self {
        // Aligned like the largest slab, as `support::TestHeap`.
        let layout = Layout::from_size_align(HEAP_BYTES, 64 << 10).unwrap();
        // SAFETY: nonzero size.
        let arena = unsafe { alloc(layout) };
        assert!(!arena.is_null());
        let heap = SlabHeap::new(Heap::empty(), ThreadCpus);
        // SAFETY: the arena is ours, unused, and outlives the heap (`Drop`).
        heap.with_backend(|backend| unsafe { backend.init(arena, HEAP_BYTES) });
        Self { heap, arena, layout }
    }
}

impl Drop for ArenaHeap {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the heap is not used
        // after this (it is dropped with `self`, touching no arena memory).
        unsafe { dealloc(self.arena, self.layout) };
    }
}

/// On CPU `cpu`: `ROUNDS` times, allocates one object of each of `SIZES`
/// and frees them; then drains its caches.
fn churn_as_cpu(heap: &SlabHeap<Heap, ThreadCpus>, cpu: usize) {
    CPU.with(|c| c.set(Some(cpu)));
    let layouts = SIZES.map(|size| Layout::from_size_align(size, 8).unwrap());
    for _ in 0..ROUNDS {
        let blocks = layouts.map(|layout| {
            let block = heap.alloc(layout);
            assert!(!block.is_null(), "cpu {cpu}: allocating {layout:?} failed");
            block
        });
        for (block, layout) in blocks.into_iter().zip(layouts) {
            // SAFETY: allocated just above with `layout`, freed once.
            unsafe { heap.dealloc(block, layout) };
        }
    }
    assert!(heap.drain_local_cpu(), "cpu {cpu}: draining its own caches was refused");
}

/// What the outsider checks on each look: the backend's books add up, and
/// statistics cover the heap's CPUs.
fn look_from_outside(heap: &SlabHeap<Heap, ThreadCpus>) {
    let usage = heap.usage();
    assert_eq!(
        usage.used_bytes + usage.free_bytes,
        HEAP_BYTES,
        "outside thread: usage() {usage:?} does not add up to the {HEAP_BYTES}-byte heap"
    );
    let (used, free) = heap.with_backend(|backend| (backend.used(), backend.free()));
    assert_eq!(
        used + free,
        HEAP_BYTES,
        "outside thread: with_backend saw {used} used, {free} free"
    );
    let stats = heap.stats();
    assert_eq!(stats.cpus, CPUS, "outside thread: stats() covers {} cpus", stats.cpus);
    assert_eq!(stats.per_cpu().len(), CPUS);
}

#[test]
fn stats_usage_and_backend_are_readable_from_a_thread_that_is_no_cpu() {
    let heap = ArenaHeap::new();
    let heap = &heap.heap;
    let start = Barrier::new(CPUS + 1);
    thread::scope(|scope| {
        for cpu in 0..CPUS {
            let start = &start;
            thread::Builder::new()
                .name(format!("cpu {cpu}"))
                .spawn_scoped(scope, move || {
                    start.wait();
                    churn_as_cpu(heap, cpu);
                })
                .unwrap();
        }
        // The outsider looks while the CPUs run.
        thread::Builder::new()
            .name("outsider".into())
            .spawn_scoped(scope, || {
                start.wait();
                for _ in 0..ROUNDS / 10 {
                    look_from_outside(heap);
                }
            })
            .unwrap();
    });

    // Afterwards, still from a thread that is no CPU: every operation of
    // every CPU is counted, and all memory is back with the backend.
    thread::scope(|scope| {
        thread::Builder::new()
            .name("outsider after".into())
            .spawn_scoped(scope, || {
                let stats = heap.stats();
                let expected_ops = (CPUS * ROUNDS * SIZES.len() * 2) as u64;
                assert_eq!(
                    stats.total.small_ops, expected_ops,
                    "outside thread: small operations counted over {CPUS} cpus"
                );
                for summary in stats.per_cpu() {
                    assert_eq!(
                        summary.small_ops,
                        expected_ops / CPUS as u64,
                        "cpu {}: small operations counted",
                        summary.cpu
                    );
                    assert_eq!(summary.cached_bytes, 0, "cpu {}: caches drained", summary.cpu);
                }
                assert_eq!(heap.usage().used_bytes, 0, "outside thread: memory still in use");
            })
            .unwrap();
    });
}
