//! The per-CPU slots (each CPU's magazines for every size class and its
//! counters, on their own cache lines), how code claims the running CPU's
//! slot, and the state machine of one class's cache: Bonwick's
//! loaded/previous magazine pair for the CPU's own objects, a bucket
//! batching frees of another CPU's objects for that CPU's inbox (`inbox`),
//! with the buckets of other owners parked beside it (so frees of mixed
//! owners still travel in full batches), and the batches taken from this
//! CPU's own inbox, not yet loaded; off the
//! fast path's line, its *depot*: up to `SizeClass::depot_magazines` full
//! magazines of its own objects, and the batches of other CPUs' objects
//! that their owners' full inboxes refused.
//!
//! The depot is what makes one global-lock acquisition move several
//! magazines (`SizeClass::transfer_magazines`): a refill under the lock
//! loads one magazine and fills the depot; a free that finds both
//! magazines full moves the previous one into the depot, and only when the
//! depot is full too do the depot's magazines go back to the slabs (the
//! previous one staying as the new depot's first). Between two lock
//! acquisitions of one class there are at least two magazines of
//! operations (one without a depot, as in Bonwick's design), and a steady
//! stream of allocations or of frees takes the lock once per transfer.
//!
//! A slot's magazines are plain memory. What makes using them without a
//! lock or masked interrupts sound is the running CPU's *slot word*
//! (`Platform::take_this_cpu_word`, in the kernel a `mov` from GS): the byte
//! offset of the CPU's own slot in the heap's slot array while nobody uses
//! it, or [`BUSY_CPU_WORD`], the offset of the *spare* slot, while somebody
//! does. Claiming the slot ([`Claim::new`]) is two plain accesses: read the
//! word, write `BUSY_CPU_WORD`; letting go writes the word back. Only code
//! running on the CPU touches its word (the `Platform` contract), and on one
//! CPU the only code that can run in the middle of another is an interrupt
//! handler, which returns before the interrupted code goes on. So a handler
//! either reads the CPU's own offset and completes its whole use of the slot
//! (restoring the word) before the interrupted code goes on, or reads
//! `BUSY_CPU_WORD` and gets the spare slot, whose magazines are empty and
//! "full" at once and never change: its fast paths fail without writing
//! and it takes the global-lock path instead. No two users overlap, without
//! a `cli`, an atomic read-modify-write or even a test of the word on the
//! fast path. Locked mode and heap checking leave every word at
//! `BUSY_CPU_WORD` for good.
//!
//! Each class keeps its fast-path figures in one word, `ops_and_len`: the
//! operations through the cache (allocations plus frees) above
//! [`LEN_BITS`], the loaded magazine's length below, so an allocation or a
//! free is one `add`. Allocations and frees apart are derived: their
//! difference is the loaded length less `len_adjust`, the slow paths' own
//! changes to that length.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{Ordering, compiler_fence};

use crate::inbox::{Batches, InboxRow};
use crate::magazine::Magazine;
use crate::platform::{CpuWords, MAX_CPUS, Platform};
use crate::size_class::{BUCKETS_PER_CLASS, MAX_MAGAZINE_CAPACITY, NUM_CLASSES, SizeClass};
use crate::slab::SlabRef;
use crate::stats::{ClassStats, Counter, CpuCounters, CpuStats};

/// The slot word of CPU `cpu` while nobody uses its slot: the slot's byte
/// offset in the heap's slot array. Platforms that keep the words
/// themselves (the kernel, in its per-CPU blocks) start CPU `cpu`'s word
/// at this value.
pub const fn initial_cpu_word(cpu: usize) -> usize {
    cpu * size_of::<CpuSlot>()
}

/// The slot word while the slot is in use, or closed (locked mode, heap
/// checking): the offset of the spare slot after the `MAX_CPUS` real ones.
pub const BUSY_CPU_WORD: usize = initial_cpu_word(MAX_CPUS);

/// The heap's slots: one per CPU, then the spare.
pub(crate) type CpuSlots = [CpuSlot; MAX_CPUS + 1];

/// `ops_and_len`: the loaded magazine's length takes the bits below this.
pub(crate) const LEN_BITS: u32 = 8;
/// `ops_and_len`'s length part.
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// `ops_and_len` plus one operation.
const ONE_OP: u64 = 1 << LEN_BITS;
/// An allocation from the loaded magazine: one operation more, one object
/// less (the length is at least 1, so the carry makes it one `add`).
const ALLOC_STEP: u64 = ONE_OP - 1;
/// A free into the loaded magazine: one operation more, one object more.
const FREE_STEP: u64 = ONE_OP + 1;
/// The spare slot's loaded length: more than any magazine holds, so a free
/// fast path on it fails before it looks at the object.
const SPARE_LEN: u64 = LEN_MASK;
const _: () = assert!(MAX_MAGAZINE_CAPACITY < SPARE_LEN as usize);

/// What the fast path of a free did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FastFree {
    /// Freed into the loaded magazine.
    Done,
    /// Nothing: the object is another CPU's (from this slab), and the
    /// claim holds this CPU's own slot.
    Remote(SlabRef),
    /// Nothing: the loaded magazine is full, or the claim holds the spare.
    Miss,
}

/// The CPU whose slot word (while its slot is unused) is `word`.
#[inline]
pub(crate) const fn cpu_of_word(word: usize) -> usize {
    word / size_of::<CpuSlot>()
}

/// What a free left to do.
#[derive(Debug)]
#[must_use]
pub(crate) enum FreeOutcome {
    /// The object is cached; nothing else to do (a cache hit).
    Cached,
    /// The object is cached, and these full magazines (a transfer's
    /// worth) must go back to their slabs under the global lock (a flush).
    Flush(Batches),
    /// The object is cached, and this batch of CPU `owner`'s objects (a
    /// full bucket, or one another owner's object pushed out) goes to
    /// `owner`'s inbox.
    Send { owner: usize, batch: Magazine },
}

/// Frees of one other CPU's objects, batched for its inbox: a magazine
/// with its owner, in two words.
#[derive(Debug)]
struct Bucket {
    head: Option<NonNull<u8>>,
    len: u32,
    /// The CPU whose objects these are, `MAX_CPUS` before the first; kept
    /// when the bucket empties, so the next free of that CPU's objects
    /// takes the same path (one compare) as the rest.
    owner: u32,
}

impl Bucket {
    const fn new() -> Self {
        Self { head: None, len: 0, owner: MAX_CPUS as u32 }
    }

    /// Takes the objects out as a magazine, leaving the bucket empty.
    fn take(&mut self) -> Magazine {
        let len = core::mem::take(&mut self.len) as usize;
        // SAFETY: `head` and `len` are kept as `Magazine::push` keeps them.
        unsafe { Magazine::from_parts(self.head.take(), len) }
    }

    /// Adds a free object of the bucket's owner.
    ///
    /// # Safety
    /// As `Magazine::push`, for an object of the bucket's owner.
    #[inline(always)]
    unsafe fn push(&mut self, object: NonNull<u8>) {
        // SAFETY: forwarded from the caller.
        unsafe { object.cast::<Option<NonNull<u8>>>().write(self.head) };
        self.head = Some(object);
        self.len += 1;
    }
}

/// A class's parked buckets, on a cache line of their own: the buckets of
/// owners other than the active bucket's (in `Spares`), bucket `i` for an
/// owner whose index is `i` modulo [`BUCKETS_PER_CLASS`]. A free of another
/// owner than the active bucket's parks the active bucket and activates
/// that owner's; only an owner with the same remainder pushes a parked
/// bucket out early. The active owner's place in the row stays empty.
#[repr(C, align(64))]
struct ParkedBuckets(UnsafeCell<[Bucket; BUCKETS_PER_CLASS]>);

impl ParkedBuckets {
    const fn new() -> Self {
        Self(UnsafeCell::new([const { Bucket::new() }; BUCKETS_PER_CLASS]))
    }
}

/// The magazines of a class cache besides the loaded one.
#[derive(Debug)]
struct Spares {
    /// Always empty or full (Bonwick's invariant).
    previous: Magazine,
    /// The active bucket: one other CPU's objects, until a batch is full
    /// (the fast path's remote free appends here) or another owner's
    /// object comes and it is parked.
    bucket: Bucket,
    /// Batches taken from this CPU's inbox, loaded one per refill.
    received: Batches,
}

/// One CPU's cache of one size class with its fast-path figures, one cache
/// line in all. The loaded magazine is kept apart as its top object and,
/// in `ops_and_len`, its length.
#[repr(C, align(64))]
pub(crate) struct ClassSlot {
    /// The loaded magazine's top object (slot user only).
    loaded_head: UnsafeCell<Option<NonNull<u8>>>,
    /// Operations through the cache `<< LEN_BITS`, plus the loaded
    /// magazine's length: written by the slot's user only, read by anyone.
    ops_and_len: Counter,
    spares: UnsafeCell<Spares>,
    /// What the slow paths added to the loaded length outside a counted
    /// allocation or free, wrapping: written by the slot's user only.
    len_adjust: Counter,
}

impl ClassSlot {
    const fn new(loaded_len: u64) -> Self {
        Self {
            loaded_head: UnsafeCell::new(None),
            ops_and_len: Counter::starting_at(loaded_len),
            spares: UnsafeCell::new(Spares {
                previous: Magazine::new(),
                bucket: Bucket::new(),
                received: Batches::new(),
            }),
            len_adjust: Counter::new(),
        }
    }

    /// The loaded magazine's length.
    ///
    /// # Safety
    /// The caller is the slot's one user, or the slot is the spare.
    #[inline(always)]
    unsafe fn loaded_len(&self) -> usize {
        // SAFETY: the slot's one user is the only writer of `ops_and_len`
        // (and nobody writes the spare's).
        (unsafe { self.ops_and_len.get_as_writer() } & LEN_MASK) as usize
    }

    /// Whether the loaded magazine holds fewer than a full magazine of
    /// `class`: one compare of the length's byte with a constant (a wider
    /// compare, LLVM turned into a mask and compare for capacities that are
    /// not powers of two).
    ///
    /// # Safety
    /// As [`Self::loaded_len`].
    #[inline(always)]
    unsafe fn loaded_has_room(&self, class: SizeClass) -> bool {
        const _: () = assert!(LEN_BITS == u8::BITS && MAX_MAGAZINE_CAPACITY <= u8::MAX as usize);
        // SAFETY: as in `loaded_len`.
        let len = unsafe { self.ops_and_len.get_as_writer() } as u8;
        len < class.magazine_capacity() as u8
    }

    /// Pops the loaded magazine's top object, counted.
    ///
    /// # Safety
    /// The caller is the slot's one user, or the slot is the spare (whose
    /// loaded magazine is empty, so nothing is written).
    #[inline(always)]
    unsafe fn pop_loaded(&self) -> Option<NonNull<u8>> {
        // SAFETY: by the caller's promise nobody else writes the head now.
        let object = unsafe { *self.loaded_head.get() }?;
        // SAFETY: `object` is in the loaded magazine, whose objects were
        // pushed by `push_loaded` (or a `Magazine`'s `push`) with their
        // first word the link, untouched since.
        let next = unsafe { object.cast::<Option<NonNull<u8>>>().read() };
        // SAFETY: as above: the one user (the spare never gets here).
        unsafe { *self.loaded_head.get() = next };
        self.ops_and_len.add(ALLOC_STEP);
        Some(object)
    }

    /// Pushes a free object onto the loaded magazine, counted.
    ///
    /// # Safety
    /// The caller is the slot's one user (not the spare), and `object` is a
    /// free object of the slot's class, owned by the CPU, handed over.
    #[inline(always)]
    unsafe fn push_loaded(&self, object: NonNull<u8>) {
        // SAFETY: the one user, so nobody else touches the head; the
        // object is free and ours, aligned and big enough for the link.
        unsafe {
            object.cast::<Option<NonNull<u8>>>().write(*self.loaded_head.get());
            *self.loaded_head.get() = Some(object);
        }
        self.ops_and_len.add(FREE_STEP);
    }

    /// Allocations and frees through the loaded magazine so far, frees into
    /// the bucket not included (`bucket_frees` counts those; exact while
    /// the slot is unused; read while its CPU runs, approximately
    /// consistent).
    fn cache_ops(&self) -> (u64, u64) {
        let word = self.ops_and_len.get();
        let ops = i128::from(word >> LEN_BITS);
        // frees - allocs = loaded length - len_adjust (an i64 wrapped).
        let difference = i128::from((word & LEN_MASK).wrapping_sub(self.len_adjust.get()) as i64);
        let allocs = ((ops - difference) / 2).clamp(0, ops);
        (allocs as u64, (ops - allocs) as u64)
    }
}

// One cache line: the loaded magazine, the counters, the previous magazine,
// the bucket and the received batches all fit (two words each at most).
const _: () = assert!(size_of::<ClassSlot>() == 64);

/// The slow paths' part of one CPU's cache of one size class.
#[derive(Debug)]
struct Depot {
    /// Magazines of the CPU's own objects, full unless a refill ran out of
    /// memory: at most `depot_magazines` magazines' worth of objects.
    full: Batches,
    /// Batches of other CPUs' objects that their owners' inboxes refused,
    /// going back to the slabs together once they reach a transfer's worth.
    refused: Batches,
}

/// A [`Depot`], used by its slot's one user.
struct DepotSlot(UnsafeCell<Depot>);

impl DepotSlot {
    const fn new() -> Self {
        Self(UnsafeCell::new(Depot { full: Batches::new(), refused: Batches::new() }))
    }
}

/// One CPU's cache of one size class, used by the slot's one user.
pub(crate) struct ClassCache<'a> {
    slot: &'a ClassSlot,
    depot: &'a DepotSlot,
    parked: &'a ParkedBuckets,
}

impl ClassCache<'_> {
    fn spares(&mut self) -> &mut Spares {
        // SAFETY: a `ClassCache` exists only for the slot's one user (made
        // by `SlotUser::cache` from `&mut`), and `&mut self` makes this the
        // only reference to the spares now.
        unsafe { &mut *self.slot.spares.get() }
    }

    fn depot(&mut self) -> &mut Depot {
        // SAFETY: as in `spares`.
        unsafe { &mut *self.depot.0.get() }
    }

    /// CPU `owner`'s place in the row of parked buckets (shared with the
    /// owners of the same index modulo [`BUCKETS_PER_CLASS`]).
    fn parked_place(&mut self, owner: usize) -> &mut Bucket {
        &mut self.parked()[owner % BUCKETS_PER_CLASS]
    }

    fn parked(&mut self) -> &mut [Bucket; BUCKETS_PER_CLASS] {
        // SAFETY: as in `spares`.
        unsafe { &mut *self.parked.0.get() }
    }

    /// Takes the loaded magazine out, leaving it empty.
    fn take_loaded(&mut self) -> Magazine {
        // SAFETY: the slot's one user (see `spares`).
        let len = unsafe { self.slot.loaded_len() };
        // SAFETY: as above.
        let head = unsafe { (*self.slot.loaded_head.get()).take() };
        self.slot.ops_and_len.add((len as u64).wrapping_neg());
        self.slot.len_adjust.add((len as u64).wrapping_neg());
        // SAFETY: the loaded magazine's parts, kept as `push_loaded` and
        // `pop_loaded` keep them.
        unsafe { Magazine::from_parts(head, len) }
    }

    /// Makes `magazine` the loaded one, which must be empty.
    pub(crate) fn load(&mut self, magazine: Magazine) {
        // SAFETY: the slot's one user (see `spares`).
        debug_assert_eq!(unsafe { self.slot.loaded_len() }, 0);
        let (head, len) = magazine.into_parts();
        // SAFETY: the slot's one user (see `spares`).
        unsafe { *self.slot.loaded_head.get() = head };
        self.slot.ops_and_len.add(len as u64);
        self.slot.len_adjust.add(len as u64);
    }

    /// Swaps the loaded and the previous magazine.
    fn swap_loaded_and_previous(&mut self) {
        let loaded = self.take_loaded();
        let previous = core::mem::replace(&mut self.spares().previous, loaded);
        self.load(previous);
    }

    /// An object from the cache, counted, swapping in the previous magazine
    /// if it is full and the loaded one empty; `None` means a refill is
    /// needed (both are empty then: [`Self::load`] the refill).
    #[inline]
    pub(crate) fn pop(&mut self, class: SizeClass) -> Option<NonNull<u8>> {
        // SAFETY: the slot's one user (see `spares`).
        if let Some(object) = unsafe { self.slot.pop_loaded() } {
            return Some(object);
        }
        if self.spares().previous.len() == class.magazine_capacity() {
            self.swap_loaded_and_previous();
            // SAFETY: as above.
            return unsafe { self.slot.pop_loaded() };
        }
        None
    }

    /// Caches a freed object this CPU owns, counted.
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
        // SAFETY: the slot's one user (see `spares`).
        let outcome = if unsafe { self.slot.loaded_len() } < capacity {
            FreeOutcome::Cached
        } else if self.spares().previous.is_empty() {
            self.swap_loaded_and_previous();
            FreeOutcome::Cached
        } else {
            // Both full: the previous one goes to the depot (if the depot is
            // full, in place of its magazines, which go back to the slabs;
            // without a depot, back itself), the loaded one becomes
            // previous, and the object starts an empty one.
            let previous = self.spares().previous.take();
            let depot_capacity = class.depot_magazines() * capacity;
            let depot = &mut self.depot().full;
            let outcome = if depot.objects() + capacity <= depot_capacity {
                // SAFETY: a full magazine of this CPU's free objects of the
                // class (16 bytes or more, 16-aligned), handed over.
                unsafe { depot.push(previous) };
                FreeOutcome::Cached
            } else if depot_capacity == 0 {
                let mut flush = Batches::new();
                // SAFETY: as above.
                unsafe { flush.push(previous) };
                FreeOutcome::Flush(flush)
            } else {
                let flush = depot.take();
                // SAFETY: as above.
                unsafe { depot.push(previous) };
                FreeOutcome::Flush(flush)
            };
            self.spares().previous = self.take_loaded();
            outcome
        };
        // SAFETY: the slot's one user; the object is forwarded from the
        // caller.
        unsafe { self.slot.push_loaded(object) };
        outcome
    }

    /// Puts a freed object owned by CPU `owner` (not this one) into the
    /// bucket, not counted (the caller counts it as a bucket free). If the
    /// active bucket holds another owner's objects, it is parked and
    /// `owner`'s bucket made active; a bucket full now, or a parked one of
    /// another owner with the same place in the row, is handed back to be
    /// sent.
    ///
    /// # Safety
    /// As [`Self::free_local`], for an object of CPU `owner`'s slab.
    pub(crate) unsafe fn free_remote(
        &mut self,
        class: SizeClass,
        object: NonNull<u8>,
        owner: usize,
    ) -> FreeOutcome {
        let mut outcome = FreeOutcome::Cached;
        if self.spares().bucket.owner as usize != owner {
            let active = core::mem::replace(&mut self.spares().bucket, Bucket::new());
            if active.len != 0 {
                let place = self.parked_place(active.owner as usize);
                debug_assert_eq!(place.len, 0, "the active owner's place in the row is empty");
                *place = active;
            }
            let mut bucket = core::mem::replace(self.parked_place(owner), Bucket::new());
            if bucket.owner as usize != owner {
                if bucket.len != 0 {
                    // Another owner with the same place: its batch goes
                    // early.
                    outcome =
                        FreeOutcome::Send { owner: bucket.owner as usize, batch: bucket.take() };
                }
                // Cannot truncate: CPU indices are below `MAX_CPUS`.
                bucket.owner = owner as u32;
            }
            self.spares().bucket = bucket;
        }
        let bucket = &mut self.spares().bucket;
        // SAFETY: forwarded from the caller; the bucket holds that CPU's.
        unsafe { bucket.push(object) };
        if bucket.len as usize == class.magazine_capacity() {
            // Not both: a bucket pushed out leaves an empty one, which holds
            // one object now.
            const _: () = assert!(crate::size_class::MIN_BATCH > 1);
            outcome = FreeOutcome::Send { owner, batch: bucket.take() };
        }
        outcome
    }

    /// Keeps `batches` taken from this CPU's inbox (none kept before).
    pub(crate) fn receive(&mut self, batches: Batches) {
        debug_assert_eq!(self.spares().received.objects(), 0);
        self.spares().received = batches;
    }

    /// Loads the depot's top magazine into the empty loaded one (the
    /// previous one is empty too); returns whether there was one.
    pub(crate) fn load_from_depot(&mut self) -> bool {
        match self.depot().full.pop() {
            Some(magazine) => {
                self.load(magazine);
                true
            }
            None => false,
        }
    }

    /// Takes in a refill from the slabs (at most a transfer's worth, the
    /// loaded magazine and the depot empty): the first non-empty magazine
    /// loaded, the others into the depot. Returns the objects taken in.
    ///
    /// # Safety
    /// `magazines` hold free objects of `class` owned by this CPU's slabs,
    /// handed over to the cache.
    pub(crate) unsafe fn load_refill(
        &mut self,
        class: SizeClass,
        magazines: impl IntoIterator<Item = Magazine>,
    ) -> usize {
        let mut objects = 0;
        let mut magazines = magazines.into_iter().filter(|magazine| !magazine.is_empty());
        if let Some(first) = magazines.next() {
            objects += first.len();
            self.load(first);
        }
        for magazine in magazines {
            objects += magazine.len();
            // SAFETY: forwarded from the caller; the rest of a transfer fits
            // the empty depot.
            unsafe { self.stock_depot(class, magazine) };
        }
        objects
    }

    /// Puts a magazine of this CPU's objects from a refill under the lock
    /// into the depot, which must have room for it.
    ///
    /// # Safety
    /// `magazine` holds free objects of `class` owned by this CPU's slabs,
    /// handed over to the cache.
    unsafe fn stock_depot(&mut self, class: SizeClass, magazine: Magazine) {
        let depot = &mut self.depot().full;
        debug_assert!(
            depot.objects() + magazine.len() <= class.depot_magazines() * class.magazine_capacity()
        );
        // SAFETY: forwarded from the caller; objects of a class are at
        // least 16 bytes and 16-aligned.
        unsafe { depot.push(magazine) };
    }

    /// Keeps a batch of another CPU's objects its owner's full inbox
    /// refused; hands back every refused batch once they reach a
    /// transfer's worth, to go back to the slabs under one lock
    /// acquisition.
    ///
    /// # Safety
    /// `batch` holds free objects of `class` from this heap's slabs, owned
    /// by the batch alone, handed over to the cache.
    pub(crate) unsafe fn hold_refused(
        &mut self,
        class: SizeClass,
        batch: Magazine,
    ) -> Option<Batches> {
        let refused = &mut self.depot().refused;
        // SAFETY: forwarded from the caller; objects of a class are at
        // least 16 bytes and 16-aligned.
        unsafe { refused.push(batch) };
        let transfer = class.transfer_magazines() * class.magazine_capacity();
        (refused.objects() >= transfer).then(|| refused.take())
    }

    /// Loads the next received batch into the empty loaded magazine;
    /// returns whether there was one.
    pub(crate) fn load_received(&mut self) -> bool {
        match self.spares().received.pop() {
            Some(batch) => {
                self.load(batch);
                true
            }
            None => false,
        }
    }

    /// Objects cached now (both magazines, the buckets, received batches,
    /// the depot).
    #[inline]
    pub(crate) fn cached_objects(&mut self) -> usize {
        let parked: usize = self.parked().iter().map(|bucket| bucket.len as usize).sum();
        let spares = self.spares();
        let spare_objects =
            spares.previous.len() + spares.bucket.len as usize + parked + spares.received.objects();
        let depot = self.depot();
        let depot_objects = depot.full.objects() + depot.refused.objects();
        // SAFETY: the slot's one user (see `spares`).
        spare_objects + depot_objects + unsafe { self.slot.loaded_len() }
    }

    /// Empties the cache, returning its magazines (the active bucket's
    /// last), its parked buckets, and its batches: received, the depot's,
    /// refused.
    #[allow(clippy::type_complexity)]
    pub(crate) fn take_all(
        &mut self,
    ) -> ([Magazine; 3], [Magazine; BUCKETS_PER_CLASS], [Batches; 3]) {
        let loaded = self.take_loaded();
        let parked = self.parked().each_mut().map(Bucket::take);
        let spares = self.spares();
        let magazines = [loaded, spares.previous.take(), spares.bucket.take()];
        let received = spares.received.take();
        let depot = self.depot();
        (magazines, parked, [received, depot.full.take(), depot.refused.take()])
    }
}

/// One CPU's slot in the heap: its caches (only code on that CPU touches
/// them, one user at a time) and its counters (only it writes them).
/// Aligned to a cache line so neighbours never share one.
#[repr(C, align(64))]
pub(crate) struct CpuSlot {
    classes: [ClassSlot; NUM_CLASSES],
    depots: [DepotSlot; NUM_CLASSES],
    parked: [ParkedBuckets; NUM_CLASSES],
    counters: CpuCounters,
}

// SAFETY: the magazines and depots, the only parts that are not `Sync`, are
// written only by the slot's one user (see `Claim`), of which there is at most one per
// slot at a time; the spare's are never written; everything else is
// atomics.
unsafe impl Sync for CpuSlot {}
// SAFETY: the magazines hold pointers to free objects the heap owns;
// moving the slot (with its heap) moves that ownership along.
unsafe impl Send for CpuSlot {}

impl CpuSlot {
    const fn new() -> Self {
        Self {
            classes: [const { ClassSlot::new(0) }; NUM_CLASSES],
            depots: [const { DepotSlot::new() }; NUM_CLASSES],
            parked: [const { ParkedBuckets::new() }; NUM_CLASSES],
            counters: CpuCounters::new(),
        }
    }

    /// The spare: every loaded magazine empty and "full" at once.
    const fn spare() -> Self {
        Self {
            classes: [const { ClassSlot::new(SPARE_LEN) }; NUM_CLASSES],
            depots: [const { DepotSlot::new() }; NUM_CLASSES],
            parked: [const { ParkedBuckets::new() }; NUM_CLASSES],
            counters: CpuCounters::new(),
        }
    }

    /// Every CPU's slot, then the spare.
    pub(crate) const fn new_slots() -> CpuSlots {
        let mut slots = [const { CpuSlot::new() }; MAX_CPUS + 1];
        slots[MAX_CPUS] = CpuSlot::spare();
        slots
    }

    /// The slow-path counters, for reading by anyone (and writing as their
    /// documentation says).
    #[inline]
    pub(crate) fn counters(&self) -> &CpuCounters {
        &self.counters
    }

    /// The CPU's figures, counting the objects in its inboxes as cached.
    /// Other CPUs' counters are read as they are (Relaxed), so a snapshot
    /// of a running CPU is approximate.
    pub(crate) fn snapshot(&self, cpu: usize, inboxes: &InboxRow) -> CpuStats {
        let mut stats = CpuStats::empty(cpu);
        for (i, (class_slot, counters)) in
            self.classes.iter().zip(&self.counters.classes).enumerate()
        {
            let class = SizeClass::ALL[i];
            let (cache_allocs, own_frees) = class_slot.cache_ops();
            let cache_frees = own_frees + counters.bucket_frees.get();
            let refills = counters.refills.get();
            let flushes = counters.flushes.get();
            // Objects in = refilled + freed into the cache; out = allocated
            // from it + flushed (or sent). Read one by one while the CPU
            // runs, so clamp at zero. The inbox's are on their way in.
            let cached = (counters.refilled_objects.get() + cache_frees)
                .saturating_sub(cache_allocs + counters.flushed_objects.get())
                + inboxes.0[i].objects() as u64;
            stats.classes[i] = ClassStats {
                allocs: cache_allocs + counters.uncached_allocs.get(),
                frees: cache_frees + counters.uncached_frees.get(),
                cache_hits: (cache_allocs + cache_frees).saturating_sub(refills + flushes),
                refills,
                flushes,
                cross_cpu_frees: counters.bucket_frees.get() + counters.uncached_cross_frees.get(),
                uncached_ops: counters.uncached_allocs.get() + counters.uncached_frees.get(),
                cached_bytes: cached * class.size() as u64,
            };
        }
        self.counters.snapshot_into(&mut stats);
        stats
    }
}

/// The running CPU's claim on a slot: its own (the word was its offset) or,
/// if the slot was in use or closed, the spare. The word is `BUSY_CPU_WORD`
/// until the claim is dropped, which writes back the word it read.
pub(crate) struct Claim<'h, P: Platform> {
    slot: &'h CpuSlot,
    word: usize,
    platform: &'h P,
    words: &'h CpuWords,
}

impl<'h, P: Platform> Claim<'h, P> {
    /// Claims the running CPU's slot in `slots`.
    ///
    /// # Safety
    /// `slots` and `words` are one heap's, and `platform` keeps that heap's
    /// words as the `Platform` contract says: each CPU's word is its
    /// `initial_cpu_word` or `BUSY_CPU_WORD`, read and written only by code on
    /// that CPU (or while none runs there), every read and write one access
    /// an interrupt cannot split. The caller stays on this CPU until the
    /// claim is dropped, and code interrupting it finishes first.
    #[inline(always)]
    pub(crate) unsafe fn new(slots: &'h CpuSlots, platform: &'h P, words: &'h CpuWords) -> Self {
        let word = platform.take_this_cpu_word(words);
        // Keep the compiler from moving slot accesses above the store (an
        // interrupt handler reads the word on this CPU).
        compiler_fence(Ordering::SeqCst);
        debug_assert!(
            word <= BUSY_CPU_WORD && word.is_multiple_of(size_of::<CpuSlot>()),
            "slot word {word}"
        );
        // SAFETY: by the contract the word is the offset of one of the
        // `MAX_CPUS + 1` slots, so the result stays in the array.
        let slot = unsafe { &*slots.as_ptr().byte_add(word) };
        Self { slot, word, platform, words }
    }

    /// The fast path of an allocation: an object from the loaded magazine,
    /// counted; `None` when it is empty (always on the spare).
    #[inline(always)]
    pub(crate) fn pop_loaded(&self, class: SizeClass) -> Option<NonNull<u8>> {
        // SAFETY: a claim is its slot's one user, or holds the spare, whose
        // loaded magazine is empty.
        unsafe { self.slot.classes[class.index()].pop_loaded() }
    }

    /// The fast path of a free: into the loaded magazine if it has room and
    /// the object is one of this CPU's, counted.
    ///
    /// # Safety
    /// `object` must be a live object the heap handed out for a layout of
    /// `class` (`SizeClass::for_common_layout`), handed back now.
    #[inline(always)]
    pub(crate) unsafe fn push_loaded_if_own(
        &self,
        class: SizeClass,
        object: NonNull<u8>,
    ) -> FastFree {
        let class_slot = &self.slot.classes[class.index()];
        // On the spare (slot busy, locked mode, checking) this fails first,
        // before anything assumes the heap is in slab mode.
        // SAFETY: a claim is its slot's one user, or holds the spare.
        if !unsafe { class_slot.loaded_has_room(class) } {
            return FastFree::Miss;
        }
        // SAFETY: the claim holds its own slot, so the heap is in slab mode
        // without checking, which carved the object from a slab of `class`
        // that is live while the object is outstanding (caller).
        let slab = unsafe { SlabRef::containing(object, class) };
        if slab.owner_word() != self.word {
            // Out of the cache hit's line of code (block placement only).
            core::hint::cold_path();
            return FastFree::Remote(slab);
        }
        // SAFETY: the claim is the slot's one user, and the object is one of
        // this CPU's of `class` (caller; its owner's word is ours).
        unsafe { class_slot.push_loaded(object) };
        FastFree::Done
    }

    /// A remote free's common case, inlined in `SlabHeap::dealloc_fast`:
    /// after [`Self::push_loaded_if_own`] said the object is another CPU's
    /// (of `slab`), pushes it onto the bucket if the bucket holds that
    /// CPU's objects and stays short of full, counted. Returns whether it
    /// did; if not, it changed nothing and the free goes on through
    /// `SlabHeap::dealloc_slow` (to [`ClassCache::free_remote`]).
    ///
    /// # Safety
    /// `push_loaded_if_own` returned `Remote(slab)` for `object` and
    /// `class` on this claim (which holds the CPU's own slot, then).
    #[inline(always)]
    pub(crate) unsafe fn push_bucket_if_room(
        &self,
        class: SizeClass,
        object: NonNull<u8>,
        slab: SlabRef,
    ) -> bool {
        // SAFETY: the claim holds its own slot (caller), so it is the slot's
        // one user and nothing else refers to the spares now.
        let bucket = unsafe { &mut (*self.slot.classes[class.index()].spares.get()).bucket };
        // The owner's index, as the bucket keeps it.
        let owner = slab.owner();
        if bucket.owner != u32::from(owner) || bucket.len as usize + 1 >= class.magazine_capacity()
        {
            return false;
        }
        // SAFETY: a live object of the bucket's owner, handed back (caller).
        unsafe { bucket.push(object) };
        self.slot.counters.classes[class.index()].bucket_frees.add(1);
        true
    }

    /// The slot's one user, unless the claim holds the spare.
    #[inline]
    pub(crate) fn into_user(self) -> Option<SlotUser<'h, P>> {
        (self.word != BUSY_CPU_WORD).then_some(SlotUser { claim: self })
    }
}

impl<P: Platform> Drop for Claim<'_, P> {
    #[inline(always)]
    fn drop(&mut self) {
        // Every slot access stays before the store that lets an interrupt
        // handler in.
        compiler_fence(Ordering::SeqCst);
        self.platform.set_this_cpu_word(self.words, self.word);
    }
}

/// Being the one user of a CPU's slot (its word `BUSY_CPU_WORD` meanwhile):
/// access to its magazines. Dropping it opens the slot again.
pub(crate) struct SlotUser<'h, P: Platform> {
    claim: Claim<'h, P>,
}

impl<'h, P: Platform> SlotUser<'h, P> {
    /// The CPU whose slot this is.
    #[inline]
    pub(crate) fn cpu(&self) -> usize {
        cpu_of_word(self.claim.word)
    }

    /// The slow-path counters of this CPU (this user may write those the
    /// counters' documentation gives to the slot's user).
    #[inline]
    pub(crate) fn counters(&self) -> &'h CpuCounters {
        &self.claim.slot.counters
    }

    /// The cache of `class`.
    #[inline]
    pub(crate) fn cache(&mut self, class: SizeClass) -> ClassCache<'_> {
        let slot = self.claim.slot;
        ClassCache {
            slot: &slot.classes[class.index()],
            depot: &slot.depots[class.index()],
            parked: &slot.parked[class.index()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A fake free object: 16 bytes, 16-aligned like every object of a
    /// class (batches keep a tag in the low bits of their addresses).
    #[derive(Clone, Copy)]
    #[repr(align(16))]
    struct FakeObject {
        _words: [u64; 2],
    }

    /// A refill under the lock as `SlabHeap::alloc_cached` does it: a
    /// transfer's worth of fake objects from `pool`, one magazine loaded,
    /// the rest into the depot.
    fn refill(cache: &mut ClassCache<'_>, class: SizeClass, pool: &mut Vec<NonNull<u8>>) {
        let capacity = class.magazine_capacity();
        let magazines = (0..class.transfer_magazines()).map(|_| {
            let mut magazine = Magazine::new();
            while magazine.len() < capacity {
                // SAFETY: fresh fake objects, owned here.
                unsafe { magazine.push(pool.pop().unwrap()) };
            }
            magazine
        });
        // SAFETY: as above.
        let objects = unsafe { cache.load_refill(class, magazines) };
        assert_eq!(objects, class.transfer_magazines() * capacity);
    }

    /// Drives one class's cache with fake objects and checks Bonwick's
    /// invariants with the depot: `previous` is empty or full, the cache
    /// never holds more than its two magazines and its depot, at least a
    /// magazine's worth of operations (two with a depot) pass between two
    /// operations that need the lock, and each moves a transfer's worth.
    #[test]
    fn batching_and_bounds_hold_for_any_alloc_free_sequence() {
        for class in [SizeClass::ALL[0], SizeClass::ALL[3], SizeClass::ALL[7], SizeClass::ALL[15]] {
            let capacity = class.magazine_capacity();
            let transfer = class.transfer_magazines() * capacity;
            let bound = (2 + class.depot_magazines()) * capacity;
            let spacing = if class.depot_magazines() == 0 { capacity } else { 2 * capacity };
            // A pool of fake 16-byte objects standing in for slabs.
            let mut storage = std::vec![FakeObject { _words: [0; 2] }; 2048];
            let mut pool: Vec<NonNull<u8>> =
                storage.iter_mut().map(|slot| NonNull::from(slot).cast()).collect();
            let mut live: Vec<NonNull<u8>> = Vec::new();
            let slot = ClassSlot::new(0);
            let depot = DepotSlot::new();
            let parked = ParkedBuckets::new();
            let mut cache = ClassCache { slot: &slot, depot: &depot, parked: &parked };
            let mut ops_since_lock = usize::MAX / 2;
            let mut lock_events = 0;
            let mut ops = 0;
            let (mut allocs, mut frees) = (0, 0);
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
                            None if cache.load_from_depot() => cache.pop(class).unwrap(),
                            None => {
                                assert!(ops_since_lock >= spacing, "lock after {ops_since_lock}");
                                ops_since_lock = 0;
                                lock_events += 1;
                                refill(&mut cache, class, &mut pool);
                                cache.pop(class).unwrap()
                            }
                        };
                        live.push(object);
                        allocs += 1;
                    } else if let Some(object) = live.pop() {
                        frees += 1;
                        // SAFETY: a live fake object, handed back.
                        match unsafe { cache.free_local(class, object) } {
                            FreeOutcome::Cached => {}
                            FreeOutcome::Flush(mut magazines) => {
                                assert_eq!(magazines.objects(), transfer);
                                assert!(ops_since_lock >= spacing, "lock after {ops_since_lock}");
                                ops_since_lock = 0;
                                lock_events += 1;
                                while let Some(mut full) = magazines.pop() {
                                    assert_eq!(full.len(), capacity);
                                    while let Some(object) = full.pop() {
                                        pool.push(object);
                                    }
                                }
                            }
                            FreeOutcome::Send { .. } => panic!("a local free never sends"),
                        }
                    }
                    let previous = cache.spares().previous.len();
                    assert!(previous == 0 || previous == capacity);
                    // SAFETY: this test is the slot's one user.
                    assert!(unsafe { slot.loaded_len() } <= capacity);
                    assert!(cache.cached_objects() <= bound);
                }
            }
            assert!(lock_events * spacing <= ops, "{lock_events} lock events in {ops} ops");
            assert!(lock_events > 0);
            assert_eq!(
                slot.cache_ops(),
                (allocs, frees),
                "class {} B: allocations and frees derived from the one word",
                class.size()
            );
        }
    }

    #[test]
    fn buckets_send_full_batches_or_one_pushed_out_by_an_owner_of_the_same_place() {
        let class = SizeClass::ALL[3];
        let capacity = class.magazine_capacity();
        let mut storage = std::vec![FakeObject { _words: [0; 2] }; 2 * capacity + 4];
        let mut objects = storage.iter_mut().map(|slot| NonNull::from(slot).cast::<u8>());
        let class_slot = ClassSlot::new(0);
        let depot = DepotSlot::new();
        let parked = ParkedBuckets::new();
        let mut cache = ClassCache { slot: &class_slot, depot: &depot, parked: &parked };
        let mut free = |owner: usize| {
            // SAFETY: distinct fake objects, handed over.
            unsafe { cache.free_remote(class, objects.next().unwrap(), owner) }
        };
        // CPU 1's and CPU 2's objects interleaved: each fills its own
        // bucket, and each bucket goes when full.
        let mut sent = Vec::new();
        for _ in 0..capacity {
            for owner in [1, 2] {
                match free(owner) {
                    FreeOutcome::Cached => {}
                    FreeOutcome::Send { owner, batch } => sent.push((owner, batch.len())),
                    FreeOutcome::Flush(_) => panic!("a remote free never flushes"),
                }
            }
        }
        assert_eq!(sent, [(1, capacity), (2, capacity)], "full batches only");
        // CPU 1 + BUCKETS_PER_CLASS has CPU 1's place: it pushes out the
        // objects parked there.
        assert!(matches!(free(1), FreeOutcome::Cached));
        assert!(matches!(free(2), FreeOutcome::Cached), "CPU 1's bucket parked");
        match free(1 + BUCKETS_PER_CLASS) {
            FreeOutcome::Send { owner, batch } => assert_eq!((owner, batch.len()), (1, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(cache.cached_objects(), 2);
        assert_eq!(
            class_slot.cache_ops(),
            (0, 0),
            "bucket frees stay out of the fast path's word (the caller counts them)"
        );
        let ([loaded, previous, active], parked, [received, ..]) = cache.take_all();
        assert_eq!((loaded.len(), previous.len(), received.objects()), (0, 0, 0));
        assert_eq!(active.len(), 1, "CPU 5's object");
        assert_eq!(parked.each_ref().map(Magazine::len), [0, 0, 1, 0], "CPU 2's, parked");
        assert_eq!(cache.cached_objects(), 0);
    }

    /// A steady stream of allocations, then of frees, takes the lock once
    /// per transfer (four magazines of 32 for 64-byte objects), not once
    /// per magazine.
    #[test]
    fn steady_streams_take_the_lock_once_per_transfer() {
        let class = SizeClass::for_layout(core::alloc::Layout::new::<[u64; 8]>()).unwrap();
        assert_eq!(
            (class.size(), class.transfer_magazines(), class.magazine_capacity()),
            (64, 4, 32)
        );
        let mut storage = std::vec![FakeObject { _words: [0; 2] }; 1280];
        let mut pool: Vec<NonNull<u8>> =
            storage.iter_mut().map(|slot| NonNull::from(slot).cast()).collect();
        let (slot, depot, parked) = (ClassSlot::new(0), DepotSlot::new(), ParkedBuckets::new());
        let mut cache = ClassCache { slot: &slot, depot: &depot, parked: &parked };
        let mut live = Vec::new();
        let mut refills = 0;
        for _ in 0..1024 {
            let object = match cache.pop(class) {
                Some(object) => object,
                None if cache.load_from_depot() => cache.pop(class).unwrap(),
                None => {
                    refills += 1;
                    refill(&mut cache, class, &mut pool);
                    cache.pop(class).unwrap()
                }
            };
            live.push(object);
        }
        assert_eq!(refills, 1024 / 128, "refills for 1024 allocations");
        let mut flushes = 0;
        for object in live {
            // SAFETY: a live fake object, handed back.
            if let FreeOutcome::Flush(magazines) = unsafe { cache.free_local(class, object) } {
                assert_eq!(magazines.objects(), 128);
                flushes += 1;
            }
        }
        // The first flush comes once the two magazines and the depot hold
        // 6 × 32 objects; then one per 128 frees.
        assert_eq!(flushes, (1024 - 6 * 32) / 128 + 1, "flushes for 1024 frees");
        assert_eq!(cache.cached_objects(), 1024 - 128 * flushes);
    }
}
