//! `SlabHeap`: the allocator the kernel makes its `#[global_allocator]`
//! from. Small requests go through the running CPU's cache (no lock, no
//! atomic read-modify-write); misses refill or flush a whole magazine under
//! the global lock; large requests, and every request in `locked` mode, go
//! to the backend under that lock. Also: draining, reclaim on out-of-memory,
//! the mode switch and statistics.

use core::alloc::Layout;
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::backend::Backend;
use crate::central::{Central, HeapUsage};
use crate::cpu_cache::{CpuCaches, CpuSlot, FreeOutcome, LocalCpu, Masked};
use crate::lock::{SpinGuard, SpinLock};
use crate::mode::{Mode, ModeLocked};
use crate::platform::{MAX_CPUS, Platform};
use crate::size_class::SizeClass;
use crate::slab::SlabRef;
use crate::stats::{CpuStats, HeapStats, LockCounters};
use crate::sync::const_unless_loom;

/// The kernel heap: per-CPU slab caches in front of backend `B` (mode
/// `slab`), or `B` alone under the lock (mode `locked`), on platform `P`.
///
/// Built by a `const fn`, so it can be a `static`; give the backend its
/// memory with [`with_backend`](Self::with_backend) and pick the mode with
/// [`set_mode`](Self::set_mode) at boot, before the first allocation.
pub struct SlabHeap<B, P> {
    mode: AtomicU8,
    platform: P,
    central: SpinLock<Central<B>>,
    /// The CPU holding `central`, or `NO_HOLDER`: written by the holder
    /// only, read by anyone (a hang report names the holder).
    lock_holder: AtomicUsize,
    cpus: [CpuSlot; MAX_CPUS],
}

/// `lock_holder` when nobody holds the global lock.
const NO_HOLDER: usize = usize::MAX;

impl<B: Backend, P: Platform> SlabHeap<B, P> {
    const_unless_loom! {
        /// A heap in `slab` mode over `backend` (which may still be empty:
        /// initialise it through `with_backend` before allocating).
        pub fn new(backend: B, platform: P) -> SlabHeap<B, P> {
            SlabHeap {
                mode: AtomicU8::new(Mode::Slab as u8),
                platform,
                central: SpinLock::new(Central::new(backend)),
                lock_holder: AtomicUsize::new(NO_HOLDER),
                cpus: [const { CpuSlot::new() }; MAX_CPUS],
            }
        }
    }

    /// The platform the heap was built with.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The current mode.
    #[inline]
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Relaxed))
    }

    /// Switches the mode. Allowed only while the backend has nothing
    /// allocated (at boot; or after every object was freed and every CPU
    /// drained), since each mode frees small objects its own way; otherwise
    /// the mode stays and `ModeLocked` says which it is. Call it before
    /// other CPUs allocate: a CPU allocating meanwhile may still use the
    /// old mode.
    pub fn set_mode(&self, mode: Mode) -> Result<(), ModeLocked> {
        let mut local = self.enter_cpu();
        let (_, masked) = local.parts();
        let central = self.lock_central(masked);
        let current = self.mode();
        if current != mode {
            if central.usage().used_bytes != 0 {
                return Err(ModeLocked { current });
            }
            self.mode.store(mode as u8, Relaxed);
        }
        Ok(())
    }

    /// Runs `f` on the backend under the global lock (interrupts masked):
    /// for boot-time setup such as `linked_list_allocator::Heap::init`, or
    /// inspection. `f` must not use this heap.
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        let mut local = self.enter_cpu();
        let (_, masked) = local.parts();
        let mut central = self.lock_central(masked);
        f(central.backend_mut())
    }

    /// Allocates a block for `layout`, or returns null when even after
    /// reclaiming every CPU's caches the backend has no room.
    ///
    /// Sizes up to 4 KiB (aligned up to their class size) are served by the
    /// CPU's cache; others by the backend. A zero size is served as one
    /// byte.
    #[inline]
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(block) = self.try_alloc(layout) {
            return block.as_ptr();
        }
        self.reclaim();
        self.try_alloc(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    /// Frees a block.
    ///
    /// Any CPU may free any block: a block allocated on another CPU goes to
    /// this CPU's outbox for that size class and back to its slab in a
    /// batch (and counts as a cross-CPU free).
    ///
    /// # Safety
    /// `ptr` must have been returned by [`alloc`](Self::alloc) or
    /// [`realloc`](Self::realloc) of this heap for `layout` (for `realloc`,
    /// the layout with the new size), and not freed since. Null is ignored.
    #[inline]
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(block) = NonNull::new(ptr) else {
            return;
        };
        let class = SizeClass::for_layout(layout);
        let mut local = self.enter_cpu();
        let (caches, masked) = local.parts();
        match class {
            Some(class) if self.mode() == Mode::Slab => {
                // SAFETY: forwarded from the caller: a live block of ours
                // whose layout maps to `class`, so slab mode carved it from
                // a slab of `class`.
                unsafe { self.free_small(caches, masked, block, class) }
            }
            _ => {
                // SAFETY: forwarded from the caller: in locked mode, or for
                // a layout with no class, `alloc` took the block from the
                // backend with exactly this layout.
                unsafe { self.lock_central(masked).deallocate(block, layout) };
                let counters = masked.counters();
                match class {
                    Some(class) => counters.classes[class.index()].frees.add(1),
                    None => counters.large_frees.add(1),
                }
            }
        }
    }

    /// Resizes a block to `new_size` (same alignment), moving it if needed;
    /// returns null (and keeps the old block) when there is no room. A block
    /// that stays in its size class is returned as is.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc) for `ptr` and `layout`; `new_size`
    /// rounded up to `layout.align()` must not overflow `isize`.
    pub unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        if self.mode() == Mode::Slab {
            let old_class = SizeClass::for_layout(layout);
            if old_class.is_some() && old_class == SizeClass::for_layout(new_layout) {
                return ptr;
            }
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            // SAFETY: `ptr` is live with `layout.size()` bytes (caller),
            // `new` is a fresh block of `new_size` bytes, so both ranges are
            // valid and cannot overlap.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: forwarded from the caller; the contents were copied.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }

    /// Gives everything the running CPU caches back to the slabs (and
    /// emptied slabs back to the backend), under one lock acquisition. The
    /// kernel calls it in its reclaim IPI handler; on the host, each thread
    /// standing for a CPU calls it to drain that CPU.
    pub fn drain_local_cpu(&self) {
        let mut local = self.enter_cpu();
        let (caches, masked) = local.parts();
        if caches.classes.iter().all(|cache| cache.cached_objects() == 0) {
            return;
        }
        let mut central = self.lock_central(masked);
        for ((cache, counters), class) in
            caches.classes.iter_mut().zip(&masked.counters().classes).zip(SizeClass::ALL)
        {
            for magazine in cache.take_all() {
                // SAFETY: cached objects are free objects of `class` that
                // came out of `refill_from_slabs` (ours) or were freed to
                // this CPU (another CPU's), owned by the cache alone.
                unsafe { central.flush_to_slabs(class, magazine) };
            }
            counters.cached_objects.set(0);
        }
    }

    /// What the heap does when the backend is out of memory: drains this
    /// CPU, then has every other CPU drain itself
    /// (`Platform::reclaim_remote`). `alloc` calls it before giving up.
    pub fn reclaim(&self) {
        self.drain_local_cpu();
        self.platform.reclaim_remote(&|| self.drain_local_cpu());
    }

    /// The CPU holding the global lock right now, if any. Lock-free and
    /// allocation-free, so an NMI handler may call it to report a hang; the
    /// answer may be stale by the time it is read.
    pub fn lock_holder(&self) -> Option<usize> {
        match self.lock_holder.load(Relaxed) {
            NO_HOLDER => None,
            cpu => Some(cpu),
        }
    }

    /// The backend's usage now.
    pub fn usage(&self) -> HeapUsage {
        let mut local = self.enter_cpu();
        let (_, masked) = local.parts();
        self.lock_central(masked).usage()
    }

    /// A snapshot of every online CPU's figures and the backend's usage.
    /// Other CPUs' counters are read as they are (Relaxed), so a snapshot
    /// taken while they run is only approximately consistent.
    pub fn stats(&self) -> HeapStats {
        let mut stats = HeapStats::new(self.mode(), self.usage(), self.platform.cpu_count());
        for (cpu, slot) in self.cpus.iter().enumerate().take(stats.cpus) {
            stats.record_cpu(slot.counters().snapshot(cpu).summary());
        }
        stats
    }

    /// One CPU's figures, per size class (`None` past `MAX_CPUS`).
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        Some(self.cpus.get(cpu)?.counters().snapshot(cpu))
    }

    /// The readable report: [`HeapStats`]'s table, then each online CPU's
    /// per-class table.
    pub fn write_report(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let stats = self.stats();
        write!(out, "{stats}")?;
        for cpu in 0..stats.cpus {
            if let Some(cpu_stats) = self.cpu_stats(cpu) {
                write!(out, "{cpu_stats}")?;
            }
        }
        Ok(())
    }

    /// One attempt at `alloc`, without reclaiming.
    #[inline]
    fn try_alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        let class = SizeClass::for_layout(layout);
        let mut local = self.enter_cpu();
        let (caches, masked) = local.parts();
        match class {
            Some(class) if self.mode() == Mode::Slab => self.alloc_small(caches, masked, class),
            _ => {
                let block = self.lock_central(masked).allocate(layout).ok()?;
                let counters = masked.counters();
                match class {
                    Some(class) => counters.classes[class.index()].allocs.add(1),
                    None => counters.large_allocs.add(1),
                }
                Some(block)
            }
        }
    }

    /// The fast path, and the refill when it misses.
    #[inline]
    fn alloc_small(
        &self,
        caches: &mut CpuCaches,
        masked: Masked<'_>,
        class: SizeClass,
    ) -> Option<NonNull<u8>> {
        let cache = &mut caches.classes[class.index()];
        let counters = &masked.counters().classes[class.index()];
        let object = match cache.pop(class) {
            Some(object) => {
                counters.cache_hits.add(1);
                object
            }
            None => {
                self.lock_central(masked).refill_from_slabs(
                    masked.cpu(),
                    class,
                    cache.magazine_to_refill(),
                );
                // Out of memory leaves the magazine partly filled or empty.
                let object = cache.pop(class);
                counters.cached_objects.set(cache.cached_objects() as u64);
                let object = object?;
                counters.refills.add(1);
                object
            }
        };
        counters.allocs.add(1);
        counters.cached_objects.set(cache.cached_objects() as u64);
        Some(object)
    }

    /// Frees a small object into this CPU's cache, flushing a batch under
    /// the lock when the cache is full.
    ///
    /// # Safety
    /// `object` must be a live object of `class` handed out by this heap in
    /// slab mode, handed back now.
    #[inline]
    unsafe fn free_small(
        &self,
        caches: &mut CpuCaches,
        masked: Masked<'_>,
        object: NonNull<u8>,
        class: SizeClass,
    ) {
        // SAFETY: forwarded from the caller: the object is outstanding, so
        // its slab is live.
        let owner = unsafe { SlabRef::containing(object, class) }.identity().owner;
        let cache = &mut caches.classes[class.index()];
        let counters = &masked.counters().classes[class.index()];
        let outcome = if usize::from(owner) == masked.cpu() {
            // SAFETY: forwarded from the caller; the object is this CPU's.
            unsafe { cache.free_local(class, object) }
        } else {
            counters.cross_cpu_frees.add(1);
            // SAFETY: forwarded from the caller; the object is another CPU's.
            unsafe { cache.free_remote(class, object) }
        };
        match outcome {
            FreeOutcome::Cached => counters.cache_hits.add(1),
            FreeOutcome::Flush(magazine) => {
                // SAFETY: a full magazine of free objects of `class` that
                // came out of this heap's slabs, now owned by nobody else.
                unsafe { self.lock_central(masked).flush_to_slabs(class, magazine) };
                counters.flushes.add(1);
            }
        }
        counters.frees.add(1);
        counters.cached_objects.set(cache.cached_objects() as u64);
    }

    /// The one way into a CPU's slot: masks interrupts, then finds the
    /// running CPU (which cannot change until the guard is dropped).
    #[inline]
    fn enter_cpu(&self) -> LocalCpu<'_, P::IrqGuard> {
        let irqs = self.platform.mask_irqs();
        let cpu = self.platform.current_cpu();
        let slot = &self.cpus[cpu];
        // SAFETY: `Platform`'s contract: with `irqs` alive this thread stays
        // on CPU `cpu`, which no other running thread reports, and nothing
        // else runs on it; so the slot is used by this call alone. No other
        // `LocalCpu` of this slot is alive: every public entry point makes
        // exactly one and calls nothing that re-enters the heap while it
        // lives (Backend and Platform promise not to allocate; the reclaim
        // callback runs only after the entry's `LocalCpu` is dropped).
        unsafe { slot.enter(cpu, irqs) }
    }

    /// Takes the global lock as `masked`'s CPU: a `try_lock` first, whose
    /// failure counts as contention, then spinning, timed.
    #[inline]
    fn lock_central<'a>(&'a self, masked: Masked<'a>) -> CentralGuard<'a, B, P> {
        let counters = &masked.counters().lock;
        let guard = match self.central.try_lock() {
            Some(guard) => guard,
            None => {
                let started = self.platform.timestamp();
                let guard = self.central.lock();
                let waited = self.platform.timestamp().saturating_sub(started);
                counters.contended.add(1);
                counters.wait_cycles.add(waited);
                counters.max_wait_cycles.raise_to(waited);
                guard
            }
        };
        counters.acquisitions.add(1);
        self.lock_holder.store(masked.cpu(), Relaxed);
        CentralGuard {
            guard,
            holder: &self.lock_holder,
            platform: &self.platform,
            counters,
            acquired_at: self.platform.timestamp(),
        }
    }
}

/// The global lock held, timing how long for the holding CPU's counters.
struct CentralGuard<'a, B, P: Platform> {
    guard: SpinGuard<'a, Central<B>>,
    holder: &'a AtomicUsize,
    platform: &'a P,
    counters: &'a LockCounters,
    acquired_at: u64,
}

impl<B, P: Platform> core::ops::Deref for CentralGuard<'_, B, P> {
    type Target = Central<B>;

    fn deref(&self) -> &Central<B> {
        &self.guard
    }
}

impl<B, P: Platform> core::ops::DerefMut for CentralGuard<'_, B, P> {
    fn deref_mut(&mut self) -> &mut Central<B> {
        &mut self.guard
    }
}

impl<B, P: Platform> Drop for CentralGuard<'_, B, P> {
    fn drop(&mut self) {
        let held = self.platform.timestamp().saturating_sub(self.acquired_at);
        self.counters.hold_cycles.add(held);
        self.holder.store(NO_HOLDER, Relaxed);
        // `guard` is dropped (unlocked) right after this.
    }
}
