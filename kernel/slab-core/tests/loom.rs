//! Loom models of the state CPUs share: the global spin lock (and the slab
//! lists and backend behind it, reached by refills, flushes and drains from
//! two CPUs at once), the inboxes of cross-CPU frees (a batch pushed while
//! its owner takes everything or drains; a full inbox's fallback to the
//! lock) and the reclaim handshake.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p slab-core --target
//! x86_64-unknown-linux-gnu --release --test loom`.
#![cfg(loom)]

use std::alloc::Layout;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use linked_list_allocator::Heap;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use loom::thread;
use slab_core::{Platform, ReclaimBroadcast, SizeClass, SlabHeap, SpinLock};

loom::thread_local! {
    static CPU: Cell<usize> = Cell::new(0);
}

fn set_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

/// Loom threads as CPUs.
struct LoomPlatform;

// SAFETY: every loom thread sets its own CPU index first and no two share
// one; nothing here allocates from the heap under test.
unsafe impl Platform for LoomPlatform {
    type IrqGuard = ();

    fn mask_irqs(&self) {}

    fn current_cpu(&self) -> usize {
        CPU.with(Cell::get)
    }

    fn cpu_count(&self) -> usize {
        2
    }

    fn timestamp(&self) -> u64 {
        static CLOCK: AtomicU64 = AtomicU64::new(0);
        CLOCK.fetch_add(1, Relaxed)
    }

    fn reclaim_remote(&self, _drain_this_cpu: &dyn Fn() -> bool) {}
}

/// `loom::model` with a preemption bound unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise, to keep the heap model to seconds.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Runs `f` on a loom thread with a stack big enough for a `SlabHeap`
/// (about 110 KiB; the model's own coroutine stack is smaller).
fn spawn_big<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new().stack_size(4 << 20).spawn(f).unwrap()
}

#[test]
fn the_spin_lock_admits_one_holder_at_a_time() {
    model(|| {
        let lock = Arc::new(SpinLock::new(0usize));
        let other = {
            let lock = lock.clone();
            thread::spawn(move || {
                *lock.lock() += 1;
            })
        };
        match lock.try_lock() {
            Some(mut guard) => *guard += 1,
            None => *lock.lock() += 1,
        }
        other.join().unwrap();
        assert_eq!(*lock.lock(), 2);
    });
}

#[test]
fn a_reclaim_round_sees_every_other_cpus_drain() {
    model(|| {
        let broadcast = Arc::new(ReclaimBroadcast::<3>::new());
        // Each CPU's "cache": drained (set to 0) by its own CPU only.
        let caches: Arc<[UnsafeCell<usize>; 3]> =
            Arc::new([UnsafeCell::new(1), UnsafeCell::new(1), UnsafeCell::new(1)]);
        let mut servers = Vec::new();
        let drain_self = || {
            // SAFETY: only CPU 0 touches its cache.
            caches[0].with_mut(|c| unsafe { *c = 0 });
            true
        };
        broadcast.request_and_wait(
            0,
            3,
            || {
                // The IPI: each other CPU takes it and runs the handler.
                for cpu in 1..3 {
                    let (broadcast, caches) = (broadcast.clone(), caches.clone());
                    servers.push(thread::spawn(move || {
                        // SAFETY: only CPU `cpu` touches its cache.
                        let drain = || {
                            caches[cpu].with_mut(|c| unsafe { *c = 0 });
                            true
                        };
                        assert!(broadcast.serve(cpu, drain), "the round is pending");
                    }));
                }
            },
            &|| {},
            &drain_self,
        );
        // Loom reports a causality violation here if a drain were not
        // ordered before the requester's return.
        for cache in &caches[1..] {
            // SAFETY: the drains happened-before (that is what is checked).
            assert_eq!(cache.with(|c| unsafe { *c }), 0);
        }
        for server in servers {
            server.join().unwrap();
        }
    });
}

#[test]
fn two_cpus_reclaiming_at_once_both_finish() {
    model(|| {
        let broadcast = Arc::new(ReclaimBroadcast::<2>::new());
        let drains = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let other = {
            let (broadcast, drains, done) = (broadcast.clone(), drains.clone(), done.clone());
            thread::spawn(move || {
                let drain = || {
                    drains.fetch_add(1, Ordering::Relaxed);
                    true
                };
                broadcast.request_and_wait(1, 2, || {}, &|| {}, &drain);
                // Back to work, interrupts enabled: a reclaim IPI that
                // arrives now is still served.
                while !done.load(Ordering::Acquire) {
                    broadcast.serve(1, drain);
                    thread::yield_now();
                }
            })
        };
        let drain = || {
            drains.fetch_add(1, Ordering::Relaxed);
            true
        };
        broadcast.request_and_wait(0, 2, || {}, &|| {}, &drain);
        done.store(true, Ordering::Release);
        other.join().unwrap();
        // Each served the other's round at least once.
        assert!(drains.load(Ordering::Relaxed) >= 2);
    });
}

/// Backend memory for the heap model, owned by the model iteration.
struct Region(*mut u8, Layout);

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `heap_model` with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) };
    }
}

#[test]
fn a_cross_cpu_free_and_both_drains_race_safely_and_leak_nothing() {
    model(|| spawn_big(heap_model).join().unwrap());
}

fn heap_model() {
    let layout = Layout::from_size_align(64 << 10, 64 << 10).unwrap();
    // SAFETY: nonzero size.
    let region = Region(unsafe { std::alloc::alloc(layout) }, layout);
    assert!(!region.0.is_null());
    let heap = Arc::new(SlabHeap::new(Heap::empty(), LoomPlatform));
    // SAFETY: the region is unused and outlives the heap's use of it.
    heap.with_backend(|backend| unsafe { backend.init(region.0, 64 << 10) });
    let start = heap.usage().free_bytes;
    let object = Layout::from_size_align(32, 8).unwrap();
    let handoff = Arc::new(AtomicPtr::new(std::ptr::null_mut::<u8>()));

    // CPU 1: waits for CPU 0's object, frees it (cross-CPU, into its
    // bucket) and drains, giving it back to CPU 0's slab under the lock.
    let cpu1 = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        spawn_big(move || {
            set_cpu(1);
            let block = loop {
                let block = handoff.load(Ordering::Acquire);
                if !block.is_null() {
                    break block;
                }
                thread::yield_now();
            };
            // SAFETY: CPU 0 allocated it with `object` and gave it up.
            unsafe { heap.dealloc(block, object) };
            heap.drain_local_cpu();
        })
    };

    // CPU 0: allocates (refill under the lock), hands the object over,
    // allocates and frees another, and drains, racing CPU 1's drain.
    set_cpu(0);
    let block = heap.alloc(object);
    assert!(!block.is_null());
    handoff.store(block, Ordering::Release);
    let own = heap.alloc(object);
    // SAFETY: allocated just above with `object`.
    unsafe { heap.dealloc(own, object) };
    heap.drain_local_cpu();
    cpu1.join().unwrap();

    let stats = heap.stats();
    assert_eq!(stats.per_cpu()[1].cross_cpu_frees, 1);
    assert_eq!(stats.heap.slabs, 0, "the slab went back once both drained");
    assert_eq!(heap.usage().free_bytes, start);
    drop(heap);
    drop(region);
}

/// A heap over a fresh `bytes`-byte region for a model iteration.
fn model_heap(bytes: usize) -> (Arc<SlabHeap<Heap, LoomPlatform>>, Region, usize) {
    let layout = Layout::from_size_align(bytes, 64 << 10).unwrap();
    // SAFETY: nonzero size.
    let region = Region(unsafe { std::alloc::alloc(layout) }, layout);
    assert!(!region.0.is_null());
    let heap = Arc::new(SlabHeap::new(Heap::empty(), LoomPlatform));
    // SAFETY: the region is unused and outlives the heap's use of it.
    heap.with_backend(|backend| unsafe { backend.init(region.0, bytes) });
    let start = heap.usage().free_bytes;
    (heap, region, start)
}

/// Addresses of blocks handed to another loom thread.
struct Blocks(Vec<usize>);

#[test]
fn a_batch_pushed_while_its_owner_refills_and_drains_is_taken_whole() {
    model(|| spawn_big(inbox_model).join().unwrap());
}

/// CPU 0 allocates a magazine's worth, CPU 1 frees them all (one full
/// batch, one CAS into CPU 0's inbox) and drains, while CPU 0 allocates
/// once more (its cache is empty: it takes its inbox with one swap, finding
/// the batch or not, else refills under the lock), frees that and drains.
/// Whatever the order, the batch is taken whole once, and nothing leaks.
fn inbox_model() {
    let (heap, region, start) = model_heap(64 << 10);
    let object = Layout::from_size_align(32, 8).unwrap();
    let capacity = SizeClass::for_layout(object).unwrap().magazine_capacity();
    set_cpu(0);
    let blocks = Blocks((0..capacity).map(|_| heap.alloc(object) as usize).collect());
    assert!(blocks.0.iter().all(|&block| block != 0));
    let cpu1 = {
        let heap = heap.clone();
        spawn_big(move || {
            set_cpu(1);
            for &block in &blocks.0 {
                // SAFETY: CPU 0 allocated it with `object` and gave it up.
                unsafe { heap.dealloc(block as *mut u8, object) };
            }
            assert_eq!(heap.stats().per_cpu()[1].flushes, 0, "the batch went to the inbox");
            heap.drain_local_cpu();
        })
    };
    let again = heap.alloc(object);
    assert!(!again.is_null());
    // SAFETY: allocated just above with `object`.
    unsafe { heap.dealloc(again, object) };
    heap.drain_local_cpu();
    cpu1.join().unwrap();

    let stats = heap.stats();
    assert_eq!(stats.per_cpu()[1].cross_cpu_frees, capacity as u64);
    assert_eq!(stats.total.cached_bytes, 0, "both drained after their last free");
    assert_eq!(stats.heap.slabs, 0);
    assert_eq!(heap.usage().free_bytes, start);
    drop(heap);
    drop(region);
}

#[test]
fn a_full_inbox_sends_the_batch_back_under_the_lock_racing_its_owner() {
    model(|| spawn_big(full_inbox_model).join().unwrap());
}

/// CPU 1 frees one batch more than CPU 0's inbox holds, while CPU 0
/// allocates once (perhaps taking the inbox, making room) and drains:
/// the batch that finds the inbox full goes back to its slab under the
/// lock, and nothing is lost either way.
fn full_inbox_model() {
    let (heap, region, start) = model_heap(512 << 10);
    let object = Layout::from_size_align(1024, 8).unwrap();
    let class = SizeClass::for_layout(object).unwrap();
    let (capacity, inbox) = (class.magazine_capacity(), class.inbox_capacity());
    assert_eq!(inbox % capacity, 0);
    set_cpu(0);
    let blocks = Blocks((0..inbox + capacity).map(|_| heap.alloc(object) as usize).collect());
    assert!(blocks.0.iter().all(|&block| block != 0));
    let cpu1 = {
        let heap = heap.clone();
        spawn_big(move || {
            set_cpu(1);
            for &block in &blocks.0 {
                // SAFETY: CPU 0 allocated it with `object` and gave it up.
                unsafe { heap.dealloc(block as *mut u8, object) };
            }
            let flushes = heap.stats().per_cpu()[1].flushes;
            assert!(flushes <= 1, "{flushes} batches found the inbox full");
            heap.drain_local_cpu();
        })
    };
    let again = heap.alloc(object);
    assert!(!again.is_null());
    // SAFETY: allocated just above with `object`.
    unsafe { heap.dealloc(again, object) };
    heap.drain_local_cpu();
    cpu1.join().unwrap();

    let stats = heap.stats();
    assert_eq!(stats.total.cached_bytes, 0, "both drained after their last free");
    assert_eq!(stats.heap.slabs, 0);
    assert_eq!(heap.usage().free_bytes, start);
    drop(heap);
    drop(region);
}
