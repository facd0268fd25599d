//! The per-CPU slot (this CPU's magazines for every size class and its
//! counters, on its own cache lines) and the fast-path state machine of one
//! class's cache: Bonwick's loaded/previous magazine pair for the CPU's own
//! objects, plus an outbox batching frees of other CPUs' objects.
//!
//! A slot's magazines are plain memory, reached only through [`LocalCpu`],
//! which holds the platform's interrupt guard: "own CPU, interrupts off" is
//! what makes the unsynchronised fast path sound.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use crate::magazine::Magazine;
use crate::size_class::{NUM_CLASSES, SizeClass};
use crate::stats::CpuCounters;

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
    loaded: Magazine,
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

/// One CPU's caches, one per size class.
#[derive(Debug)]
pub(crate) struct CpuCaches {
    pub(crate) classes: [ClassCache; NUM_CLASSES],
}

/// One CPU's slot in the heap: its caches (only it touches them) and its
/// counters (only it writes them). Aligned to a cache line so neighbours
/// never share one.
#[repr(align(64))]
pub(crate) struct CpuSlot {
    caches: UnsafeCell<CpuCaches>,
    counters: CpuCounters,
}

// SAFETY: the caches, the only part that is not `Sync`, are reached only
// through `CpuSlot::enter`, whose contract lets exactly one thread (the
// slot's CPU, interrupts masked) use them at a time; the counters are atomics.
unsafe impl Sync for CpuSlot {}
// SAFETY: the magazines hold pointers to free objects the heap owns;
// moving the slot (with its heap) moves that ownership along.
unsafe impl Send for CpuSlot {}

impl CpuSlot {
    pub(crate) const fn new() -> Self {
        Self {
            caches: UnsafeCell::new(CpuCaches {
                classes: [const { ClassCache::new() }; NUM_CLASSES],
            }),
            counters: CpuCounters::new(),
        }
    }

    /// The counters, for reading by anyone.
    pub(crate) fn counters(&self) -> &CpuCounters {
        &self.counters
    }

    /// Enters this slot as its CPU: the caches, for as long as `irqs` (kept
    /// inside the result) holds interrupts off.
    ///
    /// # Safety
    /// `index` must be the running CPU's index and this slot its slot, `irqs`
    /// a live guard from `Platform::mask_irqs` on this CPU (so nothing else
    /// runs on it until the result is dropped), and no other [`LocalCpu`]
    /// of this slot may be alive.
    #[inline]
    pub(crate) unsafe fn enter<G>(&self, index: usize, irqs: G) -> LocalCpu<'_, G> {
        LocalCpu {
            index,
            // SAFETY: by the contract above this is the only reference to
            // the caches until the `LocalCpu` (which keeps interrupts off)
            // is dropped: other CPUs use their own slots, and nothing else
            // runs on this CPU meanwhile.
            caches: unsafe { &mut *self.caches.get() },
            counters: &self.counters,
            _irqs: irqs,
        }
    }
}

/// Being on CPU `index` with interrupts masked: access to its caches.
pub(crate) struct LocalCpu<'h, G> {
    index: usize,
    caches: &'h mut CpuCaches,
    counters: &'h CpuCounters,
    /// Keeps interrupts masked; dropped last.
    _irqs: G,
}

impl<G> LocalCpu<'_, G> {
    /// The caches, and the proof of being on this CPU with interrupts
    /// masked (needed to take the global lock), borrowed together.
    #[inline]
    pub(crate) fn parts(&mut self) -> (&mut CpuCaches, Masked<'_>) {
        let masked = Masked { cpu: self.index, counters: self.counters };
        (&mut *self.caches, masked)
    }
}

/// Proof, for as long as it lives, of running on CPU `cpu` with interrupts
/// masked; carries that CPU's counters. Only [`LocalCpu::parts`] makes one.
#[derive(Clone, Copy)]
pub(crate) struct Masked<'a> {
    cpu: usize,
    counters: &'a CpuCounters,
}

impl<'a> Masked<'a> {
    /// The running CPU's index.
    #[inline]
    pub(crate) fn cpu(self) -> usize {
        self.cpu
    }

    /// The running CPU's counters (its to write).
    #[inline]
    pub(crate) fn counters(self) -> &'a CpuCounters {
        self.counters
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
