//! `SlabHeap`: the allocator the kernel makes its `#[global_allocator]`
//! from. Small requests go through the running CPU's cache: no lock, no
//! atomic read-modify-write and no interrupt masking on the fast path (the
//! CPU's slot word keeps interrupt handlers out, `cpu_cache`); frees of
//! other CPUs' objects travel in batches to their owners' inboxes
//! (`inbox`), which owners empty before they refill under the global lock;
//! other misses refill or flush a whole magazine under that lock; large requests,
//! and every request in `locked` mode, go to the backend under that lock.
//! Also: draining, reclaim on out-of-memory, the mode switch, corruption
//! checking (its checked paths; the checks are `check.rs`'s), lock tracing
//! and statistics.

use core::alloc::Layout;
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::backend::Backend;
use crate::central::{Central, HeapUsage, Taken};
use crate::check::{self, Checking, CheckingLocked, HeapFault, Trailer};
use crate::cpu_cache::{
    BUSY_CPU_WORD, Claim, CpuSlot, CpuSlots, FastFree, FreeOutcome, SlotUser, initial_cpu_word,
};
use crate::inbox::{Batches, Inbox, Inboxes, new_inboxes};
use crate::lock::{SpinGuard, SpinLock};
use crate::magazine::Magazine;
use crate::mode::{Mode, ModeLocked};
use crate::platform::{CpuWords, MAX_CPUS, Platform};
use crate::size_class::{MAX_DEPOT_MAGAZINES, SizeClass};
use crate::slab::SlabRef;
use crate::stats::{CpuCounters, CpuStats, HeapStats, LockCounters};
use crate::sync::const_unless_loom;

/// The kernel heap: per-CPU slab caches in front of backend `B` (mode
/// `slab`), or `B` alone under the lock (mode `locked`), on platform `P`.
///
/// Built by a `const fn`, so it can be a `static`; give the backend its
/// memory with [`with_backend`](Self::with_backend) and pick the mode with
/// [`set_mode`](Self::set_mode) (and, to check for corruption,
/// [`set_checking`](Self::set_checking)) at boot, before the first
/// allocation.
pub struct SlabHeap<B, P> {
    mode: AtomicU8,
    checking: AtomicU8,
    platform: P,
    central: SpinLock<Central<B>>,
    /// The CPU holding `central`, or `NO_HOLDER`: written by the holder
    /// only, read by anyone (a hang report names the holder).
    lock_holder: AtomicUsize,
    /// Every CPU's slot, then the spare (`cpu_cache`).
    cpus: CpuSlots,
    /// Per CPU and size class, batches of its objects other CPUs freed.
    inboxes: Inboxes,
    /// The CPUs' slot words, unless the platform keeps them itself.
    words: CpuWords,
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
                checking: AtomicU8::new(Checking::Off as u8),
                platform,
                central: SpinLock::new(Central::new(backend)),
                lock_holder: AtomicUsize::new(NO_HOLDER),
                cpus: CpuSlot::new_slots(),
                inboxes: new_inboxes(),
                words: CpuWords::new(),
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
        self.switch_while_empty(&self.mode, mode as u8)
            .map_err(|current| ModeLocked { current: Mode::from_u8(current) })
    }

    /// Whether the heap checks for corruption.
    pub fn checking(&self) -> Checking {
        Checking::from_u8(self.checking.load(Relaxed))
    }

    /// Switches corruption checking on or off (`docs/allocator.md`,
    /// "Corruption detection"). Like [`set_mode`](Self::set_mode), allowed
    /// only while the backend has nothing allocated, since checked objects
    /// are laid out differently; otherwise `CheckingLocked` says what stays.
    /// Faults found go to `Platform::heap_fault`.
    pub fn set_checking(&self, checking: Checking) -> Result<(), CheckingLocked> {
        self.switch_while_empty(&self.checking, checking as u8)
            .map_err(|current| CheckingLocked { current: Checking::from_u8(current) })
    }

    /// Sets one of the heap's settings (`mode`, `checking`) to `wanted`
    /// under the global lock, if it differs and the backend has nothing
    /// allocated; otherwise returns the setting that stays. Locked mode and
    /// checking close every CPU's magazines, so the fast paths fall through
    /// to the slow ones without reading either setting.
    fn switch_while_empty(&self, setting: &AtomicU8, wanted: u8) -> Result<(), u8> {
        let masked = self.mask_irqs();
        let central = self.lock_central(&masked);
        let current = setting.load(Relaxed);
        if current != wanted {
            if central.usage().used_bytes != 0 {
                return Err(current);
            }
            setting.store(wanted, Relaxed);
            let closed = self.mode() == Mode::Locked || self.checking() == Checking::On;
            for cpu in 0..MAX_CPUS {
                let word = if closed { BUSY_CPU_WORD } else { initial_cpu_word(cpu) };
                self.platform.set_cpu_word(&self.words, cpu, word);
            }
        }
        Ok(())
    }

    /// Runs `f` on the backend under the global lock (interrupts masked):
    /// for boot-time setup such as `linked_list_allocator::Heap::init`, or
    /// inspection. `f` must not use this heap. Any thread may call it, one
    /// of the heap's CPUs or not: it asks for no CPU index
    /// ([`lock_central_from_anywhere`](Self::lock_central_from_anywhere)).
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        let mut central = self.lock_central_from_anywhere();
        f(central.backend_mut())
    }

    /// Takes the global lock and keeps it after this call returns, until
    /// [`release_held_lock`](Self::release_held_lock): `HostHeap`'s `fork`
    /// handlers hold it across the fork, so that neither process is left
    /// with it held by a thread the child does not have. Taken as
    /// [`with_backend`](Self::with_backend) takes it (counted for no CPU),
    /// and its guard forgotten: interrupts, where a platform has them,
    /// stay masked until the release.
    #[cfg(feature = "host")]
    pub(crate) fn hold_lock(&self) {
        core::mem::forget(self.lock_central_from_anywhere());
    }

    /// Releases the global lock taken by [`hold_lock`](Self::hold_lock).
    ///
    /// # Safety
    /// The calling thread took it with `hold_lock` (in a forked child: the
    /// thread that forked did, whose copy the child's thread is), and has
    /// not released it since.
    #[cfg(feature = "host")]
    pub(crate) unsafe fn release_held_lock(&self) {
        // SAFETY: `hold_lock` forgot the guard of this thread's hold
        // (caller), released once, here.
        unsafe { self.central.unlock_forgotten() };
    }

    /// As [`with_backend`](Self::with_backend), for code on one of the
    /// heap's CPUs whose acquisition should be that CPU's: counted in its
    /// lock statistics, traced, and named by [`lock_holder`](Self::lock_holder)
    /// while `f` runs (as the heap's own operations are). Only one of the
    /// heap's CPUs may call it (`Platform::current_cpu` must name it).
    pub fn with_backend_as_this_cpu<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        let masked = self.mask_irqs();
        let mut central = self.lock_central(&masked);
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
        match self.alloc_fast(layout) {
            Some(object) => object.as_ptr(),
            None => self.alloc_slow(layout),
        }
    }

    /// `alloc`'s fast path alone: a common layout, this CPU's slot free to
    /// use, an object in the loaded magazine; `None` (having changed
    /// nothing) for everything else, which [`alloc_slow`](Self::alloc_slow)
    /// serves. For a caller that puts its own rare cases between the two at
    /// no cost to the fast path (the kernel's plain allocators).
    #[inline(always)]
    pub fn alloc_fast(&self, layout: Layout) -> Option<NonNull<u8>> {
        let class = SizeClass::for_common_layout(layout)?;
        self.claim_this_cpu().pop_loaded(class)
    }

    /// Frees a block.
    ///
    /// Any CPU may free any block: a block allocated on another CPU goes,
    /// in a batch, to that CPU's inbox for its size class (or, if that
    /// inbox is full, back to its slab under the global lock), and counts
    /// as a cross-CPU free.
    ///
    /// # Safety
    /// `ptr` must have been returned by [`alloc`](Self::alloc) or
    /// [`realloc`](Self::realloc) of this heap for `layout` (for `realloc`,
    /// the layout with the new size), and not freed since.
    #[inline]
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        if unsafe { !self.dealloc_fast(ptr, layout) } {
            // SAFETY: forwarded from the caller.
            unsafe { self.dealloc_slow(ptr, layout) }
        }
    }

    /// `dealloc`'s fast path alone: a common layout, this CPU's slot free
    /// to use, room in the loaded magazine, and the object one of this
    /// CPU's (into the loaded magazine) or another CPU's (into this CPU's
    /// bucket for that owner, if that leaves the bucket short of full).
    /// Returns whether it freed the block; if not, it changed nothing and
    /// [`dealloc_slow`](Self::dealloc_slow) must free it.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc), except in locked mode or with checking
    /// on, where `ptr` may be any pointer (say, a block of another allocator
    /// the caller chose instead of this heap): every CPU then claims the
    /// spare slot, whose room check fails before the block is read, so this
    /// returns `false` having touched nothing.
    #[inline(always)]
    pub unsafe fn dealloc_fast(&self, ptr: *mut u8, layout: Layout) -> bool {
        let Some(class) = SizeClass::for_common_layout(layout) else {
            return false;
        };
        // SAFETY: forwarded from the caller: a live block of ours (never
        // null) of a layout that maps to `class`.
        let object = unsafe { NonNull::new_unchecked(ptr) };
        let claim = self.claim_this_cpu();
        // SAFETY: as above, handed back now.
        match unsafe { claim.push_loaded_if_own(class, object) } {
            FastFree::Done => true,
            FastFree::Miss => false,
            // Another CPU's object: into this CPU's bucket for its owner,
            // inline (docs/allocator.md, "Remote frees"). A free that would
            // fill the bucket, or of another owner, changes nothing here
            // and goes on through `dealloc_slow` once the claim is dropped.
            // SAFETY: as above; the claim holds this CPU's own slot.
            FastFree::Remote(slab) => unsafe { claim.push_bucket_if_room(class, object, slab) },
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
        if self.mode() == Mode::Slab && self.checking() == Checking::Off {
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

    /// Gives everything the running CPU caches, and everything in any
    /// CPU's inbox, back to the slabs (and emptied slabs back to the
    /// backend), under one lock acquisition. The
    /// kernel calls it in its reclaim IPI handler; on the host, each thread
    /// standing for a CPU calls it to drain that CPU.
    ///
    /// Returns `false` if it could not, because it interrupted a heap
    /// operation on this CPU (which is using the caches): call it again
    /// once that has finished (the reclaim handshake re-sends its IPI).
    pub fn drain_local_cpu(&self) -> bool {
        let cpu = self.platform.current_cpu();
        if self.checking() == Checking::On {
            // No caches; the slabs emptied since the last drain go back.
            let masked = self.mask_irqs();
            self.lock_central(&masked).release_empty_slabs(cpu);
            return true;
        }
        let Some(mut user) = self.use_this_cpu() else {
            // Closed (locked mode) holds nothing; busy cannot be drained now.
            return self.mode() == Mode::Locked;
        };
        // Every CPU's inboxes, not only this one's: what this CPU sent to
        // an owner that drained before goes back too, so once every CPU
        // drained after its last free, nothing is left anywhere.
        let inboxes = &self.inboxes[..self.platform.cpu_count().min(MAX_CPUS)];
        let inboxes_empty = || inboxes.iter().all(|row| row.0.iter().all(|i| i.objects() == 0));
        if SizeClass::ALL.iter().all(|&class| user.cache(class).cached_objects() == 0)
            && inboxes_empty()
        {
            return true;
        }
        let masked = self.mask_irqs();
        let mut central = self.lock_central(&masked);
        for class in SizeClass::ALL {
            let counters = &user.counters().classes[class.index()];
            let (magazines, buckets, [mut received, mut depot, mut refused]) =
                user.cache(class).take_all();
            let mut inbox = Batches::new();
            let mut rows = inboxes.iter();
            let batches = core::iter::from_fn(|| {
                loop {
                    if let Some(batch) = (received.pop())
                        .or_else(|| depot.pop())
                        .or_else(|| refused.pop())
                        .or_else(|| inbox.pop())
                    {
                        return Some(batch);
                    }
                    inbox = rows.next()?.0[class.index()].take_all();
                    // In from an inbox (as a refill from it counts), then out.
                    counters.refilled_objects.add(inbox.objects() as u64);
                }
            });
            for magazine in magazines.into_iter().chain(buckets).chain(batches) {
                let objects = magazine.len() as u64;
                // SAFETY: cached objects are free objects of `class` that
                // came out of `refill_from_slabs` (ours) or were freed to
                // this CPU (another CPU's, in the bucket or refused), and inbox
                // batches are free objects of `class` some CPU freed, owned
                // by the cache or the batches alone.
                unsafe { central.flush_to_slabs(class, magazine) };
                counters.flushed_objects.add(objects);
            }
        }
        true
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
    /// answer may be stale by the time it is read. `None` also while code
    /// that names no CPU holds it (`with_backend`, `usage`, `stats`).
    pub fn lock_holder(&self) -> Option<usize> {
        match self.lock_holder.load(Relaxed) {
            NO_HOLDER => None,
            cpu => Some(cpu),
        }
    }

    /// The backend's usage now. Any thread may call it, one of the heap's
    /// CPUs or not (it asks for no CPU index).
    pub fn usage(&self) -> HeapUsage {
        self.lock_central_from_anywhere().usage()
    }

    /// A snapshot of every online CPU's figures and the backend's usage.
    /// Other CPUs' counters are read as they are (Relaxed), so a snapshot
    /// taken while they run is only approximately consistent. Any thread
    /// may call it, one of the heap's CPUs or not: it reads every CPU's
    /// counters through atomics and takes the lock as
    /// [`usage`](Self::usage) does.
    pub fn stats(&self) -> HeapStats {
        let mut stats = HeapStats::new(self.mode(), self.usage(), self.platform.cpu_count());
        for (cpu, slot) in self.cpus.iter().enumerate().take(stats.cpus) {
            stats.record_cpu(slot.snapshot(cpu, &self.inboxes[cpu]).summary());
        }
        stats
    }

    /// One CPU's figures, per size class (`None` past `MAX_CPUS`).
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        Some(self.cpus[..MAX_CPUS].get(cpu)?.snapshot(cpu, &self.inboxes[cpu]))
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

    /// Claims this CPU's slot: its own, or the spare if it is busy (we are
    /// an interrupt handler inside a heap operation of the code we
    /// interrupted) or closed (locked mode, checking).
    #[inline(always)]
    fn claim_this_cpu(&self) -> Claim<'_, P> {
        // SAFETY: our own slots and words; `Platform` promises the words
        // are kept as `Claim::new` needs, that the caller stays on its CPU
        // for the whole heap call, and that code interrupting it finishes
        // first.
        unsafe { Claim::new(&self.cpus, &self.platform, &self.words) }
    }

    /// This CPU's slot, to use its magazines; `None` if it is busy or
    /// closed.
    #[inline]
    fn use_this_cpu(&self) -> Option<SlotUser<'_, P>> {
        self.claim_this_cpu().into_user()
    }

    /// CPU `cpu`'s slot.
    #[inline(always)]
    fn slot(&self, cpu: usize) -> &CpuSlot {
        debug_assert!(cpu < MAX_CPUS);
        // SAFETY: `Platform::current_cpu`, where every index given here
        // comes from, returns indices below `MAX_CPUS`, the array's length.
        unsafe { self.cpus.get_unchecked(cpu) }
    }

    /// Everything `alloc`'s fast path does not do: a refill, an uncommon
    /// layout, a large block, locked mode, checking, a busy slot, out of
    /// memory.
    #[cold]
    #[inline(never)]
    pub fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        if let Some(block) = self.try_alloc_slow(layout) {
            return block.as_ptr();
        }
        self.reclaim();
        self.try_alloc_slow(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    /// One attempt at `alloc_slow`, without reclaiming.
    fn try_alloc_slow(&self, layout: Layout) -> Option<NonNull<u8>> {
        if self.checking() == Checking::On {
            return self.try_alloc_checked(layout);
        }
        let class = SizeClass::for_layout(layout);
        match class {
            Some(class) if self.mode() == Mode::Slab => match self.use_this_cpu() {
                Some(mut user) => self.alloc_cached(&mut user, class),
                None => {
                    // Busy slot: one object straight from a slab.
                    let masked = self.mask_irqs();
                    let mut one = Magazine::new();
                    self.lock_central(&masked).refill_from_slabs(masked.cpu, class, &mut one, 1);
                    let object = one.pop()?;
                    masked.counters.classes[class.index()].uncached_allocs.add(1);
                    Some(object)
                }
            },
            _ => {
                let masked = self.mask_irqs();
                let block = self.lock_central(&masked).allocate(layout).ok()?;
                match class {
                    Some(class) => masked.counters.classes[class.index()].uncached_allocs.add(1),
                    None => masked.counters.large_allocs.add(1),
                }
                Some(block)
            }
        }
    }

    /// An object of `class` from the cache, refilling it if it is empty:
    /// from the batches other CPUs sent to this CPU's inbox if there are
    /// any, else from the depot, else under the lock (a transfer's worth:
    /// one magazine loaded, the rest into the depot).
    fn alloc_cached(&self, user: &mut SlotUser<'_, P>, class: SizeClass) -> Option<NonNull<u8>> {
        let counters = &user.counters().classes[class.index()];
        let inbox = self.inbox(user.cpu(), class);
        let mut cache = user.cache(class);
        if let Some(object) = cache.pop(class) {
            return Some(object);
        }
        let mut loaded = cache.load_received();
        if !loaded {
            let batches = inbox.take_all();
            let objects = batches.objects() as u64;
            if objects != 0 {
                counters.refilled_objects.add(objects);
                cache.receive(batches);
                loaded = cache.load_received();
            }
        }
        if loaded || cache.load_from_depot() {
            return cache.pop(class);
        }
        let masked = self.mask_irqs();
        let capacity = class.magazine_capacity();
        let mut magazines = [const { Magazine::new() }; MAX_DEPOT_MAGAZINES];
        let mut central = self.lock_central(&masked);
        for magazine in &mut magazines[..class.transfer_magazines()] {
            central.refill_from_slabs(masked.cpu, class, magazine, capacity);
            // Out of memory leaves a magazine partly filled or empty.
            if magazine.len() < capacity {
                break;
            }
        }
        drop(central);
        if magazines[0].is_empty() {
            return None;
        }
        counters.refills.add(1);
        // SAFETY: free objects of `class` just taken from this CPU's slabs,
        // a transfer's worth at most; the loaded magazine and the depot are
        // empty (nothing to pop or load above).
        let objects = unsafe { cache.load_refill(class, magazines) };
        counters.refilled_objects.add(objects as u64);
        cache.pop(class)
    }

    /// Everything `dealloc`'s fast path does not do.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc).
    #[cold]
    #[inline(never)]
    pub unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        let Some(block) = NonNull::new(ptr) else {
            return;
        };
        if self.checking() == Checking::On {
            // SAFETY: forwarded from the caller (which the checks verify).
            unsafe { self.dealloc_checked(block, layout) };
            return;
        }
        let class = SizeClass::for_layout(layout);
        match class {
            Some(class) if self.mode() == Mode::Slab => match self.use_this_cpu() {
                // SAFETY: forwarded from the caller: a live block of ours
                // whose layout maps to `class`, so slab mode carved it from
                // a slab of `class`.
                Some(mut user) => unsafe { self.free_cached(&mut user, block, class) },
                None => {
                    // Busy slot: straight back to its slab.
                    let masked = self.mask_irqs();
                    let mut one = Magazine::new();
                    // SAFETY: as above; the magazine owns it now.
                    unsafe { one.push(block) };
                    // SAFETY: a free object of `class` from this heap's slabs.
                    unsafe { self.lock_central(&masked).flush_to_slabs(class, one) };
                    masked.counters.classes[class.index()].uncached_frees.add(1);
                }
            },
            _ => {
                let masked = self.mask_irqs();
                // SAFETY: forwarded from the caller: in locked mode, or for
                // a layout with no class, `alloc` took the block from the
                // backend with exactly this layout.
                unsafe { self.lock_central(&masked).deallocate(block, layout) };
                match class {
                    Some(class) => masked.counters.classes[class.index()].uncached_frees.add(1),
                    None => masked.counters.large_frees.add(1),
                }
            }
        }
    }

    /// Frees a small object into this CPU's cache, flushing a batch under
    /// the lock when the cache is full.
    ///
    /// # Safety
    /// `object` must be a live object of `class` handed out by this heap in
    /// slab mode, handed back now.
    unsafe fn free_cached(
        &self,
        user: &mut SlotUser<'_, P>,
        object: NonNull<u8>,
        class: SizeClass,
    ) {
        // SAFETY: forwarded from the caller: the object is outstanding, so
        // its slab is live.
        let owner = usize::from(unsafe { SlabRef::containing(object, class) }.owner());
        if owner != user.cpu() {
            // SAFETY: forwarded from the caller; the object is `owner`'s.
            return unsafe { self.free_remote_cached(user, class, object, owner) };
        }
        // SAFETY: forwarded from the caller; the object is this CPU's.
        let outcome = unsafe { user.cache(class).free_local(class, object) };
        if let FreeOutcome::Flush(magazines) = outcome {
            // SAFETY: full magazines of free objects of `class` from this
            // heap's slabs, owned by nobody else.
            unsafe { self.flush_locked(user, class, magazines) };
        }
    }

    /// Frees CPU `owner`'s object (not this CPU's) into this CPU's bucket,
    /// sending a batch to an inbox (or, if it is full, to the slabs under
    /// the lock) when one is ready.
    ///
    /// # Safety
    /// As [`Self::free_cached`], for an object of CPU `owner`'s slab.
    #[inline(always)]
    unsafe fn free_remote_cached(
        &self,
        user: &mut SlotUser<'_, P>,
        class: SizeClass,
        object: NonNull<u8>,
        owner: usize,
    ) {
        let counters = &user.counters().classes[class.index()];
        counters.bucket_frees.add(1);
        // SAFETY: forwarded from the caller.
        let FreeOutcome::Send { owner, batch } =
            (unsafe { user.cache(class).free_remote(class, object, owner) })
        else {
            return;
        };
        let objects = batch.len() as u64;
        // SAFETY: free objects of `class` from `owner`'s slabs, owned by
        // the batch alone (the bucket held them).
        match unsafe { self.inbox(owner, class).push(batch, class.inbox_capacity()) } {
            // Out of this CPU's cache, into the owner's inbox.
            Ok(()) => counters.flushed_objects.add(objects),
            // The inbox is full: to the slabs instead, with other refused
            // batches once they make a transfer's worth.
            Err(batch) => {
                // SAFETY: as above.
                if let Some(refused) = unsafe { user.cache(class).hold_refused(class, batch) } {
                    // SAFETY: free objects of `class` from this heap's
                    // slabs, owned by the refused batches alone.
                    unsafe { self.flush_locked(user, class, refused) };
                }
            }
        }
    }

    /// Gives `magazines` back to their slabs under one acquisition of the
    /// global lock, counted as a flush.
    ///
    /// # Safety
    /// `magazines` hold free objects of `class` from this heap's slabs,
    /// owned by nobody else.
    #[cold]
    unsafe fn flush_locked(
        &self,
        user: &SlotUser<'_, P>,
        class: SizeClass,
        mut magazines: Batches,
    ) {
        let counters = &user.counters().classes[class.index()];
        let objects = magazines.objects() as u64;
        let masked = self.mask_irqs();
        let mut central = self.lock_central(&masked);
        while let Some(magazine) = magazines.pop() {
            // SAFETY: a magazine of free objects of `class` that came out of
            // this heap's slabs, now owned by nobody else.
            unsafe { central.flush_to_slabs(class, magazine) };
        }
        drop(central);
        counters.flushes.add(1);
        counters.flushed_objects.add(objects);
    }

    /// CPU `cpu`'s inbox for `class`.
    #[inline]
    fn inbox(&self, cpu: usize, class: SizeClass) -> &Inbox {
        &self.inboxes[cpu].0[class.index()]
    }

    /// The size class a checked request is served from (slab mode), or
    /// `None` for a block straight from the backend.
    fn checked_class(&self, layout: Layout) -> Option<SizeClass> {
        match self.mode() {
            Mode::Slab => check::small_class(layout),
            Mode::Locked => None,
        }
    }

    /// `try_alloc_slow` when checking.
    fn try_alloc_checked(&self, layout: Layout) -> Option<NonNull<u8>> {
        match self.checked_class(layout) {
            Some(class) => self.alloc_checked_object(layout, class),
            None => self.alloc_checked_block(layout),
        }
    }

    /// A checked object of `class` for `layout`: one whose poison is intact
    /// (each one that is not is reported and never handed out), armed.
    fn alloc_checked_object(&self, layout: Layout, class: SizeClass) -> Option<NonNull<u8>> {
        loop {
            let masked = self.mask_irqs();
            let taken = self.lock_central(&masked).take_checked(masked.cpu, class)?;
            let verdict = match taken {
                // SAFETY: just taken out of a poisoned slab (checking was on
                // since the heap was empty), so ours and written.
                Taken::Linked(object) => unsafe { check::check_poison(object, class) }
                    .map(|()| object)
                    .map_err(|finding| (object, finding)),
                Taken::Damaged(object, finding) => Err((object, finding)),
            };
            match verdict {
                Ok(object) => {
                    // SAFETY: ours, and `class` serves `layout` plus the
                    // trailer (`small_class`).
                    unsafe { check::arm(object, Trailer::small(layout.size(), class)) };
                    masked.counters.classes[class.index()].uncached_allocs.add(1);
                    return Some(object);
                }
                Err((object, finding)) => {
                    let cpu = masked.cpu;
                    drop(masked);
                    self.report(finding.fault(cpu, object.addr().get(), Some(class), layout));
                }
            }
        }
    }

    /// A checked block straight from the backend for `layout`, armed.
    fn alloc_checked_block(&self, layout: Layout) -> Option<NonNull<u8>> {
        let (trailer, backend_layout) = Trailer::large(layout)?;
        let masked = self.mask_irqs();
        let block = self.lock_central(&masked).allocate(backend_layout).ok()?;
        // SAFETY: a fresh backend block of `backend_layout`, which holds the
        // trailer.
        unsafe { check::arm(block, trailer) };
        self.count_backend_op(&masked, layout, Op::Alloc);
        Some(block)
    }

    /// `dealloc_slow` when checking: the checks, and the free if they pass;
    /// a fault goes to `Platform::heap_fault` once the lock is released.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc); pointers that break that contract
    /// are reported, not freed, as far as the checks catch them.
    unsafe fn dealloc_checked(&self, block: NonNull<u8>, layout: Layout) {
        let class = self.checked_class(layout);
        let masked = self.mask_irqs();
        let verdict = {
            let mut central = self.lock_central(&masked);
            match class {
                // SAFETY: forwarded from the caller.
                Some(class) => unsafe { central.free_checked(block, layout.size(), class) }
                    .map(|owner| Some((class, owner))),
                // SAFETY: forwarded from the caller.
                None => unsafe { central.free_large_checked(block, layout) }.map(|()| None),
            }
        };
        match verdict {
            Ok(Some((class, owner))) => {
                let counters = &masked.counters.classes[class.index()];
                counters.uncached_frees.add(1);
                if owner != masked.cpu {
                    counters.uncached_cross_frees.add(1);
                }
            }
            Ok(None) => self.count_backend_op(&masked, layout, Op::Free),
            Err(finding) => {
                let cpu = masked.cpu;
                drop(masked);
                self.report(finding.fault(cpu, block.addr().get(), class, layout));
            }
        }
    }

    /// Counts a block served straight by the backend: as its layout's class
    /// if it has one (as locked mode counts), else as a large block.
    fn count_backend_op<G>(&self, masked: &Masked<'_, G>, layout: Layout, op: Op) {
        let counter = match (SizeClass::for_layout(layout), op) {
            (Some(class), Op::Alloc) => &masked.counters.classes[class.index()].uncached_allocs,
            (Some(class), Op::Free) => &masked.counters.classes[class.index()].uncached_frees,
            (None, Op::Alloc) => &masked.counters.large_allocs,
            (None, Op::Free) => &masked.counters.large_frees,
        };
        counter.add(1);
    }

    /// Hands a fault to the platform (no lock held, no slot in use).
    #[cold]
    fn report(&self, fault: HeapFault) {
        self.platform.heap_fault(&fault);
    }

    /// Masks interrupts on the running CPU: what taking the global lock
    /// needs (an interrupt handler on this CPU must never spin on a lock
    /// this CPU holds).
    #[inline]
    fn mask_irqs(&self) -> Masked<'_, P::IrqGuard> {
        let irqs = self.platform.mask_irqs();
        let cpu = self.platform.current_cpu();
        Masked { cpu, counters: self.slot(cpu).counters(), _irqs: irqs }
    }

    /// Takes the global lock for code that need not run on one of the
    /// heap's CPUs (statistics, setup; on the host, any thread; tools):
    /// with interrupts masked where it runs, as every holder of the lock,
    /// but without asking `Platform::current_cpu`, so no CPU's slot or
    /// counters are touched. The acquisition is counted for no CPU, not
    /// traced (`Platform::lock_released`), and `lock_holder` does not name
    /// it. The heap's own operations take the lock with `lock_central`.
    fn lock_central_from_anywhere(&self) -> AnywhereGuard<'_, B, P::IrqGuard> {
        let irqs = self.platform.mask_irqs();
        let central = self.central.lock_waiting(|spins| self.platform.relax(spins));
        AnywhereGuard { central, _irqs: irqs }
    }

    /// Takes the global lock as `masked`'s CPU: a `try_lock` first, whose
    /// failure counts as contention, then spinning, timed.
    #[inline]
    fn lock_central<'a, G>(&'a self, masked: &'a Masked<'a, G>) -> CentralGuard<'a, B, P> {
        let counters = &masked.counters.lock;
        let (guard, wait_start) = match self.central.try_lock() {
            Some(guard) => (guard, None),
            None => {
                let started = self.platform.timestamp();
                let guard = self.central.lock_waiting(|spins| self.platform.relax(spins));
                let waited = self.platform.timestamp().saturating_sub(started);
                counters.contended.add(1);
                counters.wait_cycles.add(waited);
                counters.max_wait_cycles.raise_to(waited);
                (guard, Some(started))
            }
        };
        counters.acquisitions.add(1);
        self.lock_holder.store(masked.cpu, Relaxed);
        let acquired_at = self.platform.timestamp();
        CentralGuard {
            guard,
            holder: &self.lock_holder,
            platform: &self.platform,
            cpu: masked.cpu,
            counters,
            wait_start: wait_start.unwrap_or(acquired_at),
            acquired_at,
        }
    }
}

/// Which operation a counter counts.
#[derive(Clone, Copy)]
enum Op {
    Alloc,
    Free,
}

/// The global lock held by code that names no CPU
/// (`SlabHeap::lock_central_from_anywhere`). The fields drop in order: the
/// lock is released before interrupts are unmasked.
struct AnywhereGuard<'a, B, G> {
    central: SpinGuard<'a, Central<B>>,
    _irqs: G,
}

impl<B, G> core::ops::Deref for AnywhereGuard<'_, B, G> {
    type Target = Central<B>;

    fn deref(&self) -> &Central<B> {
        &self.central
    }
}

impl<B, G> core::ops::DerefMut for AnywhereGuard<'_, B, G> {
    fn deref_mut(&mut self) -> &mut Central<B> {
        &mut self.central
    }
}

/// Being on CPU `cpu` with interrupts masked (until dropped), with that
/// CPU's counters: what taking the global lock needs.
struct Masked<'h, G> {
    cpu: usize,
    counters: &'h CpuCounters,
    _irqs: G,
}

/// The global lock held, timing how long for the holding CPU's counters.
struct CentralGuard<'a, B, P: Platform> {
    guard: SpinGuard<'a, Central<B>>,
    holder: &'a AtomicUsize,
    platform: &'a P,
    cpu: usize,
    counters: &'a LockCounters,
    wait_start: u64,
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
        let released_at = self.platform.timestamp();
        self.counters.hold_cycles.add(released_at.saturating_sub(self.acquired_at));
        self.holder.store(NO_HOLDER, Relaxed);
        self.platform.lock_released(self.cpu, self.wait_start, self.acquired_at, released_at);
        // `guard` is dropped (unlocked) right after this.
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// One CPU, on the test's thread; no interrupts to mask.
    struct OneCpu;

    // SAFETY: a single thread is CPU 0; nothing here allocates from the heap.
    unsafe impl Platform for OneCpu {
        type IrqGuard = ();
        fn mask_irqs(&self) {}
        fn current_cpu(&self) -> usize {
            0
        }
        fn cpu_count(&self) -> usize {
            1
        }
        fn timestamp(&self) -> u64 {
            0
        }
        fn reclaim_remote(&self, _drain_this_cpu: &dyn Fn() -> bool) {}
    }

    /// A heap over `region` on `OneCpu`, whose `heap_fault` is the default.
    fn one_cpu_heap(region: &mut Vec<u64>) -> SlabHeap<linked_list_allocator::Heap, OneCpu> {
        let heap = SlabHeap::new(linked_list_allocator::Heap::empty(), OneCpu);
        // SAFETY: the region is unused and outlives the heap's use of it.
        heap.with_backend(|backend| unsafe {
            backend.init(region.as_mut_ptr().cast(), region.capacity() * 8)
        });
        heap
    }

    /// Unless the platform says otherwise, a corruption found is a panic
    /// with the one-line report.
    #[test]
    #[should_panic(expected = "heap corruption: double_free of 0x")]
    fn a_heap_fault_panics_by_default() {
        let mut region = Vec::<u64>::with_capacity(1 << 14);
        let heap = one_cpu_heap(&mut region);
        heap.set_checking(Checking::On).unwrap();
        let layout = Layout::from_size_align(24, 8).unwrap();
        let block = heap.alloc(layout);
        // SAFETY: allocated just above; the second free is the fault.
        unsafe {
            heap.dealloc(block, layout);
            heap.dealloc(block, layout);
        }
    }

    /// What an interrupt handler sees when it lands inside a heap operation
    /// of the code it interrupted: the CPU's slot is busy. Its allocations
    /// and frees must then bypass the magazines (which the interrupted code
    /// is in the middle of changing), go through the global lock straight to
    /// the slabs, be counted as such, and leave nothing behind.
    #[test]
    fn a_handler_inside_a_heap_operation_bypasses_the_busy_magazines() {
        let mut region = Vec::<u64>::with_capacity(1 << 17);
        let heap = one_cpu_heap(&mut region);
        let start = heap.usage().free_bytes;
        let layout = Layout::from_size_align(64, 8).unwrap();
        let class = SizeClass::for_layout(layout).unwrap();
        let warm = heap.alloc(layout);
        // SAFETY: allocated just above with `layout`.
        unsafe { heap.dealloc(warm, layout) };
        let cached_before = heap.cpu_stats(0).unwrap().classes[class.index()];

        // The interrupted operation: CPU 0's slot is in use.
        let interrupted = heap.use_this_cpu().expect("the slot is open");
        let object = heap.alloc(layout);
        assert!(!object.is_null());
        // SAFETY: a fresh 64-byte block.
        unsafe { object.write_bytes(0xa5, 64) };
        assert!(!heap.drain_local_cpu(), "a busy slot cannot be drained");
        // SAFETY: allocated just above with `layout`.
        unsafe { heap.dealloc(object, layout) };
        let stats = heap.cpu_stats(0).unwrap().classes[class.index()];
        assert_eq!(stats.allocs, cached_before.allocs + 1, "{stats:?}");
        assert_eq!(stats.frees, cached_before.frees + 1, "{stats:?}");
        assert_eq!(
            stats.cached_bytes, cached_before.cached_bytes,
            "the magazines were not touched"
        );
        let counters = &heap.cpus[0].counters().classes[class.index()];
        assert_eq!((counters.uncached_allocs.get(), counters.uncached_frees.get()), (1, 1));
        drop(interrupted);

        assert!(heap.drain_local_cpu());
        assert_eq!(heap.usage().free_bytes, start, "everything went back to the backend");
    }
}
