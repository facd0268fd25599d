//! Host test support: a `Platform` where each thread stands for a CPU (its
//! index in a thread-local, settable so one thread can play several CPUs in
//! turn), recording the heap faults it is told of; an arena giving the
//! backend its memory, and block patterns.
#![allow(dead_code)]

use std::alloc::{Layout, alloc, dealloc};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use linked_list_allocator::Heap;
use slab_core::{Checking, HeapFault, Platform, ReclaimBroadcast, SlabHeap};

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread CPU `cpu` from now on.
pub fn set_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

/// The CPU the calling thread stands for.
pub fn cpu() -> usize {
    CPU.with(Cell::get)
}

/// How other CPUs are made to drain on reclaim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimStyle {
    /// One thread plays every CPU: drain each other CPU by becoming it.
    SwitchCpus,
    /// A thread per CPU: the reclaim handshake, which the threads serve
    /// between operations with [`serve_reclaim`] (their "interrupts").
    Broadcast,
}

/// Host platform: threads as CPUs, nothing to mask; heap faults are
/// recorded, not panicked on.
pub struct HostPlatform {
    cpus: usize,
    style: ReclaimStyle,
    pub broadcast: ReclaimBroadcast,
    pub reclaim_calls: AtomicUsize,
    faults: Mutex<Vec<HeapFault>>,
}

// SAFETY: a test gives each concurrently running thread its own CPU index
// below `MAX_CPUS` (`set_cpu`), and threads do not change CPU while inside
// the heap: there are no interrupts or preemption to mask on the host, so a
// thread is alone on its "CPU" by construction. Nothing here allocates from
// the heap under test (the host allocator is another one).
unsafe impl Platform for HostPlatform {
    type IrqGuard = ();

    fn mask_irqs(&self) {}

    fn current_cpu(&self) -> usize {
        cpu()
    }

    fn cpu_count(&self) -> usize {
        self.cpus
    }

    fn timestamp(&self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    fn reclaim_remote(&self, drain_this_cpu: &dyn Fn() -> bool) {
        self.reclaim_calls.fetch_add(1, Ordering::Relaxed);
        let me = cpu();
        match self.style {
            ReclaimStyle::SwitchCpus => {
                for other in (0..self.cpus).filter(|&c| c != me) {
                    set_cpu(other);
                    drain_this_cpu();
                }
                set_cpu(me);
            }
            ReclaimStyle::Broadcast => {
                self.broadcast.request_and_wait(me, self.cpus, || {}, &|| {}, drain_this_cpu);
            }
        }
    }

    fn heap_fault(&self, fault: &HeapFault) {
        self.faults.lock().unwrap().push(*fault);
    }
}

impl HostPlatform {
    /// A platform of `cpus` CPUs (`const`, so a heap can be a `static`).
    pub const fn new(cpus: usize, style: ReclaimStyle) -> Self {
        Self {
            cpus,
            style,
            broadcast: ReclaimBroadcast::new(),
            reclaim_calls: AtomicUsize::new(0),
            faults: Mutex::new(Vec::new()),
        }
    }

    /// The faults reported since the last call, oldest first.
    pub fn take_faults(&self) -> Vec<HeapFault> {
        std::mem::take(&mut *self.faults.lock().unwrap())
    }
}

pub type TestSlabHeap = SlabHeap<Heap, HostPlatform>;

/// Memory for the backend, from the host allocator.
struct Arena {
    base: *mut u8,
    layout: Layout,
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `TestHeap::new` with this layout.
        unsafe { dealloc(self.base, self.layout) };
    }
}

/// A heap over its own arena. The heap is dropped before the arena.
pub struct TestHeap {
    pub heap: TestSlabHeap,
    arena: Arena,
}

// SAFETY: the arena is only reached through the heap, which is `Sync`.
unsafe impl Sync for TestHeap {}
// SAFETY: as above; the arena pointer is owned memory.
unsafe impl Send for TestHeap {}

impl TestHeap {
    /// A slab-mode heap of `bytes` bytes for `cpus` CPUs.
    pub fn new(bytes: usize, cpus: usize, style: ReclaimStyle) -> Box<TestHeap> {
        // Aligned like the largest slab, so slab padding is the same every run.
        let layout = Layout::from_size_align(bytes, 64 << 10).unwrap();
        // SAFETY: nonzero size.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null());
        let platform = HostPlatform::new(cpus, style);
        let test_heap = Box::new(TestHeap {
            heap: SlabHeap::new(Heap::empty(), platform),
            arena: Arena { base, layout },
        });
        // SAFETY: the arena is ours, unused, and outlives the heap.
        test_heap.heap.with_backend(|backend| unsafe { backend.init(base, bytes) });
        test_heap
    }

    /// A heap as [`TestHeap::new`], checking for corruption.
    pub fn checked(bytes: usize, cpus: usize, style: ReclaimStyle) -> Box<TestHeap> {
        let test_heap = TestHeap::new(bytes, cpus, style);
        test_heap.heap.set_checking(Checking::On).expect("a new heap is empty");
        test_heap
    }

    /// The backend's free bytes.
    pub fn free_bytes(&self) -> usize {
        HeapExt::free_bytes(&self.heap)
    }

    /// Drains CPUs `0..cpus` by becoming each in turn (single thread only).
    pub fn drain_all_cpus(&self, cpus: usize) {
        HeapExt::drain_all_cpus(&self.heap, cpus);
    }
}

/// [`TestHeap`]'s helpers on the heap itself, for tests that borrow
/// `&test_heap.heap` once and call through that reference: under miri's
/// Stacked Borrows every new reference to the heap (a `SlabHeap` of
/// `MAX_CPUS` slots and inboxes, thousands of cells) is retagged cell by
/// cell, and going through `TestHeap`'s `Deref` on every call makes several
/// such references per heap operation, more than the operation itself.
pub trait HeapExt {
    /// The backend's free bytes.
    fn free_bytes(&self) -> usize;
    /// Drains CPUs `0..cpus` by becoming each in turn (single thread only).
    fn drain_all_cpus(&self, cpus: usize);
}

impl HeapExt for TestSlabHeap {
    fn free_bytes(&self) -> usize {
        self.usage().free_bytes
    }

    fn drain_all_cpus(&self, cpus: usize) {
        let me = cpu();
        for c in 0..cpus {
            set_cpu(c);
            self.drain_local_cpu();
        }
        set_cpu(me);
    }
}

impl std::ops::Deref for TestHeap {
    type Target = TestSlabHeap;

    fn deref(&self) -> &TestSlabHeap {
        &self.heap
    }
}

/// Serves a pending reclaim request for the calling thread's CPU, as an
/// interrupt between two operations would.
pub fn serve_reclaim(heap: &TestSlabHeap) {
    heap.platform().broadcast.serve(cpu(), || heap.drain_local_cpu());
}

/// The byte a block tagged `tag` is filled with.
pub fn pattern_byte(tag: u64) -> u8 {
    (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 | 1
}

/// Fills `len` bytes at `block` with `tag`'s pattern.
///
/// # Safety
/// `block` must be valid for writes of `len` bytes.
pub unsafe fn fill(block: *mut u8, len: usize, tag: u64) {
    // SAFETY: forwarded.
    unsafe { std::ptr::write_bytes(block, pattern_byte(tag), len) };
}

/// Whether `len` bytes at `block` still hold `tag`'s pattern.
///
/// # Safety
/// `block` must be valid for reads of `len` initialised bytes.
pub unsafe fn holds(block: *const u8, len: usize, tag: u64) -> bool {
    // SAFETY: forwarded.
    let bytes = unsafe { std::slice::from_raw_parts(block, len) };
    let expected = pattern_byte(tag);
    if cfg!(miri) {
        // Miri checks for UB, not contents; a byte-by-byte scan of every
        // block would take minutes there. Sample both ends and a stride.
        let ends = bytes.iter().take(16).chain(bytes.iter().rev().take(16));
        return ends.chain(bytes.iter().step_by(61)).all(|&b| b == expected);
    }
    bytes.iter().all(|&b| b == expected)
}

/// A small deterministic generator (xorshift) for workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
