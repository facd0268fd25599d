//! The per-CPU slot (this CPU's magazines for every size class and its
//! counters, on its own cache lines) and the fast-path state machine of one
//! class's cache: Bonwick's loaded/previous magazine pair for the CPU's own
//! objects, plus an outbox batching frees of other CPUs' objects.
//!
//! A slot's magazines are plain memory. What makes using them without a
//! lock or masked interrupts sound is the slot's `state` byte: whoever
//! wants the magazines moves it from `OPEN` to `BUSY` ([`CpuSlot::try_use`])
//! and back when done ([`SlotUser`]'s drop). Only code running on the
//! slot's own CPU ever does that (the `Platform` contract), and on one CPU
//! the only code that can run in the middle of another is an interrupt
//! handler, which returns before the interrupted code goes on. So a handler
//! either finds the slot `OPEN` and completes its whole use of it before the
//! interrupted code looks again, or finds it `BUSY` and keeps out (it takes
//! the global-lock path instead). No two users overlap, without a `cli` or
//! an atomic read-modify-write on the fast path.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering, compiler_fence};

use crate::magazine::Magazine;
use crate::size_class::{NUM_CLASSES, SizeClass};
use crate::stats::{ClassStats, Counter, CpuCounters, CpuStats};

/// What a free left to do.
#[derive(Debug)]
#[must_use]
pub(crate) enum FreeOutcome {
    /// The object is cached; nothing else to do (a cache hit).
    Cached,
    /// The object is cached, and this full magazine must go back to its
    /// slabs under the global lock (a flush).
    Flush(Magazine),
}

/// One CPU's cache of one size class.
///
/// `loaded` serves allocations and takes frees; `previous` is always either
/// empty or full (Bonwick's invariant), so after any refill or flush at
/// least a magazine's worth of operations pass before the next one.
/// `outbox` collects objects owned by other CPUs until a batch is full.
#[derive(Debug)]
pub(crate) struct ClassCache {
    pub(crate) loaded: Magazine,
    previous: Magazine,
    outbox: Magazine,
}

impl ClassCache {
    const fn new() -> Self {
        Self { loaded: Magazine::new(), previous: Magazine::new(), outbox: Magazine::new() }
    }

    /// An object from the cache, swapping in the previous magazine if it is
    /// full and the loaded one empty; `None` means a refill is needed.
    #[inline]
    pub(crate) fn pop(&mut self, class: SizeClass) -> Option<NonNull<u8>> {
        if let Some(object) = self.loaded.pop() {
            return Some(object);
        }
        if self.previous.len() == class.magazine_capacity() {
            core::mem::swap(&mut self.loaded, &mut self.previous);
            return self.loaded.pop();
        }
        None
    }

    /// The magazine a refill fills: the loaded one, which (like `previous`)
    /// is empty whenever [`Self::pop`] returned `None`.
    pub(crate) fn magazine_to_refill(&mut self) -> &mut Magazine {
        debug_assert!(self.loaded.is_empty() && self.previous.is_empty());
        &mut self.loaded
    }

    /// Caches a freed object this CPU owns.
    ///
    /// # Safety
    /// `object` must be a free object of `class` owned by this CPU's slabs,
    /// handed over to the cache.
    #[inline]
    pub(crate) unsafe fn free_local(
        &mut self,
        class: SizeClass,
        object: NonNull<u8>,
    ) -> FreeOutcome {
        let capacity = class.magazine_capacity();
        let outcome = if self.loaded.len() < capacity {
            FreeOutcome::Cached
        } else if self.previous.is_empty() {
            core::mem::swap(&mut self.loaded, &mut self.previous);
            FreeOutcome::Cached
        } else {
            // Both full: the previous one goes back to the slabs, the loaded
            // one becomes previous, and the object starts an empty one.
            let full = self.previous.take();
            self.previous = self.loaded.take();
            FreeOutcome::Flush(full)
        };
        // SAFETY: forwarded from the caller.
        unsafe { self.loaded.push(object) };
        outcome
    }

    /// Queues a freed object owned by another CPU in the outbox.
    ///
    /// # Safety
    /// As [`Self::free_local`], for an object of another CPU's slab.
    #[inline]
    pub(crate) unsafe fn free_remote(
        &mut self,
        class: SizeClass,
        object: NonNull<u8>,
    ) -> FreeOutcome {
        let outcome = if self.outbox.len() == class.magazine_capacity() {
            FreeOutcome::Flush(self.outbox.take())
        } else {
            FreeOutcome::Cached
        };
        // SAFETY: forwarded from the caller.
        unsafe { self.outbox.push(object) };
        outcome
    }

    /// Objects cached now (all three magazines).
    #[inline]
    pub(crate) fn cached_objects(&self) -> usize {
        self.loaded.len() + self.previous.len() + self.outbox.len()
    }

    /// Empties the cache, returning its magazines.
    pub(crate) fn take_all(&mut self) -> [Magazine; 3] {
        [self.loaded.take(), self.previous.take(), self.outbox.take()]
    }
}

/// One CPU's cache of one size class, with the two counters its fast path
/// bumps beside it (one cache line in all).
#[repr(C, align(64))]
pub(crate) struct ClassSlot {
    cache: UnsafeCell<ClassCache>,
    /// Allocations served from the cache (fast path or after a refill):
    /// written by the slot's user only, read by anyone.
    cache_allocs: Counter,
    /// Frees taken into the cache (own objects, or another CPU's into the
    /// outbox): written by the slot's user only, read by anyone.
    cache_frees: Counter,
}

impl ClassSlot {
    const fn new() -> Self {
        Self {
            cache: UnsafeCell::new(ClassCache::new()),
            cache_allocs: Counter::new(),
            cache_frees: Counter::new(),
        }
    }
}

/// `CpuSlot::state`: nobody is using the magazines.
const OPEN: u8 = 0;
/// `CpuSlot::state`: code on this CPU is using the magazines (an interrupt
/// handler that finds this keeps out).
const BUSY: u8 = 1;
/// `CpuSlot::state`: the heap is in locked mode; the magazines stay empty.
const CLOSED: u8 = 2;

/// One CPU's slot in the heap: its caches (only code on that CPU touches
/// them, one user at a time) and its counters (only it writes them).
/// Aligned to a cache line so neighbours never share one.
#[repr(C, align(64))]
pub(crate) struct CpuSlot {
    /// `OPEN`, `BUSY` or `CLOSED`: see the module documentation.
    state: AtomicU8,
    classes: [ClassSlot; NUM_CLASSES],
    counters: CpuCounters,
}

// SAFETY: the magazines, the only part that is not `Sync`, are reached only
// through a `SlotUser`, of which at most one exists per slot at a time (see
// `try_use`); everything else is atomics.
unsafe impl Sync for CpuSlot {}
// SAFETY: the magazines hold pointers to free objects the heap owns;
// moving the slot (with its heap) moves that ownership along.
unsafe impl Send for CpuSlot {}

impl CpuSlot {
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU8::new(OPEN),
            classes: [const { ClassSlot::new() }; NUM_CLASSES],
            counters: CpuCounters::new(),
        }
    }

    /// The slow-path counters, for reading by anyone (and writing as their
    /// documentation says).
    #[inline]
    pub(crate) fn counters(&self) -> &CpuCounters {
        &self.counters
    }

    /// Becomes the slot's one user, or `None` if it is in use (an interrupt
    /// handler running inside a heap operation of the code it interrupted)
    /// or closed (locked mode).
    ///
    /// # Safety
    /// The caller must run on CPU `cpu`, whose slot this is, and not move to
    /// another CPU before the result is dropped; every piece of code that
    /// calls this for the slot must either run on its CPU, or run while no
    /// code runs on that CPU (a test thread standing for it). Code that
    /// interrupts the caller must finish before the caller continues.
    #[inline]
    pub(crate) unsafe fn try_use(&self, cpu: usize) -> Option<SlotUser<'_>> {
        // A plain load and store, not a compare-exchange: by the contract
        // only code on this CPU competes for the slot, and an interrupt
        // landing between the two restores `OPEN` before we continue.
        if self.state.load(Ordering::Relaxed) != OPEN {
            return None;
        }
        self.state.store(BUSY, Ordering::Relaxed);
        // Keep the compiler from moving magazine accesses above the store
        // (an interrupt handler reads `state` on this CPU).
        compiler_fence(Ordering::SeqCst);
        Some(SlotUser { slot: self, cpu })
    }

    /// Opens or closes the magazines for good (locked mode closes them).
    /// Only at boot, while no CPU uses the slot.
    pub(crate) fn set_closed(&self, closed: bool) {
        self.state.store(if closed { CLOSED } else { OPEN }, Ordering::Relaxed);
    }

    /// Whether the slot is in use right now (for reports).
    pub(crate) fn is_busy(&self) -> bool {
        self.state.load(Ordering::Relaxed) == BUSY
    }

    /// The CPU's figures. Other CPUs' counters are read as they are
    /// (Relaxed), so a snapshot of a running CPU is approximate.
    pub(crate) fn snapshot(&self, cpu: usize) -> CpuStats {
        let mut stats = CpuStats::empty(cpu);
        for (i, (class_slot, counters)) in
            self.classes.iter().zip(&self.counters.classes).enumerate()
        {
            let class = SizeClass::ALL[i];
            let cache_allocs = class_slot.cache_allocs.get();
            let cache_frees = class_slot.cache_frees.get();
            let refills = counters.refills.get();
            let flushes = counters.flushes.get();
            // Objects in = refilled + freed into the cache; out = allocated
            // from it + flushed. Read one by one while the CPU runs, so
            // clamp at zero.
            let cached = (counters.refilled_objects.get() + cache_frees)
                .saturating_sub(cache_allocs + counters.flushed_objects.get());
            stats.classes[i] = ClassStats {
                allocs: cache_allocs + counters.uncached_allocs.get(),
                frees: cache_frees + counters.uncached_frees.get(),
                cache_hits: (cache_allocs + cache_frees).saturating_sub(refills + flushes),
                refills,
                flushes,
                cross_cpu_frees: counters.cross_cpu_frees.get(),
                uncached_ops: counters.uncached_allocs.get() + counters.uncached_frees.get(),
                cached_bytes: cached * class.size() as u64,
            };
        }
        self.counters.snapshot_into(&mut stats);
        stats
    }
}

/// Being the one user of a CPU's slot (state `BUSY`): access to its
/// magazines. Dropping it opens the slot again.
pub(crate) struct SlotUser<'h> {
    slot: &'h CpuSlot,
    cpu: usize,
}

impl<'h> SlotUser<'h> {
    /// The CPU whose slot this is.
    #[inline]
    pub(crate) fn cpu(&self) -> usize {
        self.cpu
    }

    /// The slow-path counters of this CPU (this user may write those the
    /// counters' documentation gives to the slot's user).
    #[inline]
    pub(crate) fn counters(&self) -> &'h CpuCounters {
        &self.slot.counters
    }

    /// The cache of `class`.
    #[inline]
    pub(crate) fn cache(&mut self, class: SizeClass) -> &mut ClassCache {
        // SAFETY: this `SlotUser` is the slot's only user (`try_use`), and
        // `&mut self` makes this the only reference it hands out now.
        unsafe { &mut *self.slot.classes[class.index()].cache.get() }
    }

    /// The fast path of an allocation: an object from the loaded magazine,
    /// counted; `None` when the magazine is empty.
    #[inline(always)]
    pub(crate) fn pop_loaded(&mut self, class: SizeClass) -> Option<NonNull<u8>> {
        let class_slot = &self.slot.classes[class.index()];
        // SAFETY: this `SlotUser` is the slot's only user (`try_use`), and
        // `&mut self` makes this the only reference to the cache now.
        let cache = unsafe { &mut *class_slot.cache.get() };
        let object = cache.loaded.pop()?;
        class_slot.cache_allocs.add(1);
        Some(object)
    }

    /// The fast path of a free of one of this CPU's objects: into the loaded
    /// magazine if it has room, counted. Returns whether it did.
    ///
    /// # Safety
    /// `object` must be a free object of `class` carved from this CPU's
    /// slabs, handed over to the cache.
    #[inline(always)]
    pub(crate) unsafe fn push_loaded(&mut self, class: SizeClass, object: NonNull<u8>) -> bool {
        let class_slot = &self.slot.classes[class.index()];
        // SAFETY: as in `pop_loaded`.
        let cache = unsafe { &mut *class_slot.cache.get() };
        if cache.loaded.len() >= class.magazine_capacity() {
            return false;
        }
        // SAFETY: forwarded from the caller.
        unsafe { cache.loaded.push(object) };
        class_slot.cache_frees.add(1);
        true
    }

    /// Counts an allocation from the cache made by the slow path.
    pub(crate) fn count_cache_alloc(&self, class: SizeClass) {
        self.slot.classes[class.index()].cache_allocs.add(1);
    }

    /// Counts a free into the cache made by the slow path.
    pub(crate) fn count_cache_free(&self, class: SizeClass) {
        self.slot.classes[class.index()].cache_frees.add(1);
    }
}

impl Drop for SlotUser<'_> {
    #[inline]
    fn drop(&mut self) {
        // Every magazine access stays before the store that lets an
        // interrupt handler in.
        compiler_fence(Ordering::SeqCst);
        self.slot.state.store(OPEN, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Drives one class's cache with fake objects and checks Bonwick's
    /// invariants: `previous` is empty or full, the cache never holds more
    /// than its bound, and at least a magazine's worth of operations pass
    /// between two operations that need the lock.
    #[test]
    fn batching_and_bounds_hold_for_any_alloc_free_sequence() {
        for class in [SizeClass::ALL[0], SizeClass::ALL[7], SizeClass::ALL[15]] {
            let capacity = class.magazine_capacity();
            // A pool of fake 16-byte objects standing in for slabs.
            let mut storage = std::vec![[0u64; 2]; 1024];
            let mut pool: Vec<NonNull<u8>> =
                storage.iter_mut().map(|slot| NonNull::from(slot).cast()).collect();
            let mut live: Vec<NonNull<u8>> = Vec::new();
            let mut cache = ClassCache::new();
            let mut ops_since_lock = usize::MAX / 2;
            let mut lock_events = 0;
            let mut ops = 0;
            // A deterministic mix: runs of allocations and frees of varying
            // lengths, crossing magazine boundaries back and forth.
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..if cfg!(miri) { 200 } else { 4000 } {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let run = (rng % 40) as usize + 1;
                let allocate = (rng & (1 << 40) != 0 && live.len() < 600) || live.is_empty();
                for _ in 0..run {
                    ops += 1;
                    ops_since_lock += 1;
                    if allocate {
                        let object = match cache.pop(class) {
                            Some(object) => object,
                            None => {
                                assert!(ops_since_lock >= capacity, "lock after {ops_since_lock}");
                                ops_since_lock = 0;
                                lock_events += 1;
                                let magazine = cache.magazine_to_refill();
                                while magazine.len() < capacity {
                                    // SAFETY: fresh fake objects, owned here.
                                    unsafe { magazine.push(pool.pop().unwrap()) };
                                }
                                cache.pop(class).unwrap()
                            }
                        };
                        live.push(object);
                    } else if let Some(object) = live.pop() {
                        // SAFETY: a live fake object, handed back.
                        match unsafe { cache.free_local(class, object) } {
                            FreeOutcome::Cached => {}
                            FreeOutcome::Flush(mut full) => {
                                assert_eq!(full.len(), capacity);
                                assert!(ops_since_lock >= capacity, "lock after {ops_since_lock}");
                                ops_since_lock = 0;
                                lock_events += 1;
                                while let Some(object) = full.pop() {
                                    pool.push(object);
                                }
                            }
                        }
                    }
                    assert!(cache.previous.is_empty() || cache.previous.len() == capacity);
                    assert!(cache.loaded.len() <= capacity);
                    assert!(cache.cached_objects() <= 2 * capacity);
                }
            }
            assert!(lock_events * capacity <= ops, "{lock_events} lock events in {ops} ops");
            assert!(lock_events > 0);
        }
    }

    #[test]
    fn the_outbox_flushes_a_full_batch() {
        let class = SizeClass::ALL[3];
        let capacity = class.magazine_capacity();
        let mut storage = std::vec![[0u64; 2]; capacity + 1];
        let mut cache = ClassCache::new();
        for (i, slot) in storage.iter_mut().enumerate() {
            // SAFETY: distinct fake objects, handed over.
            let outcome = unsafe { cache.free_remote(class, NonNull::from(slot).cast()) };
            match outcome {
                FreeOutcome::Cached => assert!(i < capacity),
                FreeOutcome::Flush(full) => {
                    assert_eq!(i, capacity);
                    assert_eq!(full.len(), capacity);
                }
            }
        }
        assert_eq!(cache.cached_objects(), 1);
        let [loaded, previous, outbox] = cache.take_all();
        assert_eq!((loaded.len(), previous.len(), outbox.len()), (0, 0, 1));
        assert_eq!(cache.cached_objects(), 0);
    }
}
