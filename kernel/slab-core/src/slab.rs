//! Slabs: chunks of `SizeClass::slab_bytes()` from the backend, aligned to
//! their size, carved into objects of one class for one owner CPU, with a
//! header in the first cache line. An object's slab (and so its owner and
//! class) is found by masking the object's address.
//!
//! The header's identity (magic, class, owner, capacity) is written once,
//! when the slab is made, and only read afterwards, by any CPU, without the
//! lock. Its state (free list, counts, partial-list links) is touched only
//! under the global lock, through [`SlabLists::state`], whose `&mut self`
//! is the proof.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use crate::cpu_cache::initial_cpu_word;
use crate::magazine::Magazine;
use crate::platform::MAX_CPUS;
use crate::size_class::{NUM_CLASSES, SLAB_HEADER_BYTES, SizeClass};

/// Mixed with the slab's address into `SlabIdentity::magic`, so heap
/// checking can tell a live slab's header from other memory (invalid
/// frees). Cleared when the slab goes back to the backend.
const SLAB_MAGIC: usize = 0x51ab_c0de_5eed_f00d;

/// What a slab is; never changes while the slab lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabIdentity {
    pub(crate) magic: usize,
    pub(crate) class: SizeClass,
    pub(crate) owner: u16,
    pub(crate) capacity: u16,
    /// The owner's slot word (`cpu_cache::initial_cpu_word(owner)`): what
    /// the free fast path compares with the running CPU's word, so telling
    /// a local free from a remote one is one `cmp` with memory.
    pub(crate) owner_word: usize,
}

/// A slab's mutable bookkeeping (global lock held).
#[derive(Debug)]
pub(crate) struct SlabState {
    /// Objects given back to the slab, ready to hand out again.
    free: Magazine,
    /// Objects handed out from the never-used tail so far (lazy carving:
    /// a fresh slab is not written beyond its header).
    carved: u16,
    /// Objects outside the slab: in some CPU cache or allocated. The slab
    /// goes back to the backend when this drops to zero.
    outstanding: u16,
    prev: Option<SlabRef>,
    next: Option<SlabRef>,
}

#[repr(C)]
struct SlabHeader {
    identity: SlabIdentity,
    state: UnsafeCell<SlabState>,
}

const _: () = assert!(size_of::<SlabHeader>() <= SLAB_HEADER_BYTES);
// `SlabIdentity::owner` holds a CPU index below `MAX_CPUS`.
const _: () = assert!(MAX_CPUS - 1 <= u16::MAX as usize);

/// A live slab (its header's address, which is the slab's base).
///
/// Invariant: points to a header written by [`SlabRef::init`] whose slab has
/// not been released since; the constructors are `unsafe` and promise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabRef(NonNull<SlabHeader>);

impl SlabRef {
    /// Writes a fresh header into `base` and returns the new slab.
    ///
    /// # Safety
    /// `base` must be a block of `class.slab_bytes()` bytes aligned to that
    /// size, owned by the caller and handed over to the slab.
    pub(crate) unsafe fn init(base: NonNull<u8>, class: SizeClass, owner: usize) -> SlabRef {
        debug_assert!(owner < MAX_CPUS, "slab owner {owner} is not below MAX_CPUS");
        let header = base.cast::<SlabHeader>();
        let identity = SlabIdentity {
            magic: SLAB_MAGIC ^ base.addr().get(),
            class,
            // Cannot truncate: `owner < MAX_CPUS`, which fits (asserted above).
            owner: owner as u16,
            capacity: class.objects_per_slab() as u16,
            owner_word: initial_cpu_word(owner),
        };
        let state =
            SlabState { free: Magazine::new(), carved: 0, outstanding: 0, prev: None, next: None };
        // SAFETY: the caller hands over the block, which is large and aligned
        // enough for the header (checked by the static assertion above).
        unsafe { header.write(SlabHeader { identity, state: UnsafeCell::new(state) }) };
        SlabRef(header)
    }

    /// The slab `object` was carved from.
    ///
    /// # Safety
    /// `object` must have been handed out from a slab of `class` (by
    /// [`SlabLists::take_object`]) and not given back since, so the slab is
    /// live.
    #[inline]
    pub(crate) unsafe fn containing(object: NonNull<u8>, class: SizeClass) -> SlabRef {
        // `ptr::mask` (LLVM's `ptrmask`): one `and` with the mask from the
        // table, and the base is one value the remote free reuses. Stepping
        // back by the offset within the slab took a `not` and a `sub` more
        // for a class known only at run time, and `map_addr` (the same
        // step back, to LLVM) left the remote free recomputing the offset
        // in three instructions (docs/allocator.md, "Remote frees").
        let base = object.as_ptr().mask(class.slab_address_mask());
        // SAFETY: slabs are aligned to their size, so masking the address
        // lands on the slab's base, inside the same block (whose provenance
        // `mask` keeps); the caller promises that block is a live slab, so
        // the base is not null.
        SlabRef(unsafe { NonNull::new_unchecked(base) }.cast())
    }

    /// The CPU owning the slab; reads only that field of the identity.
    #[inline]
    pub(crate) fn owner(self) -> u16 {
        // SAFETY: as in `identity`: a live header whose identity is never
        // written after the slab was published.
        unsafe { (*self.0.as_ptr()).identity.owner }
    }

    /// The owning CPU's slot word; reads only that field of the identity
    /// (the free fast path's one look at the header).
    #[inline(always)]
    pub(crate) fn owner_word(self) -> usize {
        // SAFETY: as in `owner`.
        unsafe { (*self.0.as_ptr()).identity.owner_word }
    }

    /// The slab's base address (for giving it back to the backend).
    pub(crate) fn base(self) -> NonNull<u8> {
        self.0.cast()
    }

    /// Heap checking: the live slab of `class` that `object` lies in, if
    /// the header at the object's masked address is one (the magic matches
    /// that address, the class is `class`).
    ///
    /// # Safety
    /// The `class.slab_bytes()` bytes at the masked address must be memory
    /// the heap owns and may read (inside the backend's region), and the
    /// caller must hold the global lock, so no slab is made or released
    /// meanwhile.
    pub(crate) unsafe fn probe(object: NonNull<u8>, class: SizeClass) -> Option<SlabRef> {
        let offset = object.addr().get() & !class.slab_address_mask();
        // SAFETY: stepping back to the masked address stays inside the
        // slab-sized range the caller vouches for.
        let base = unsafe { object.byte_sub(offset) };
        let magic_at = core::mem::offset_of!(SlabHeader, identity)
            + core::mem::offset_of!(SlabIdentity, magic);
        // SAFETY: the word lies inside that range, and is aligned (the base
        // is aligned to the slab size). A live slab's magic is written
        // before the slab is published and cleared only under the lock we
        // hold; any other memory there is read volatile, as plain bytes
        // whose value only feeds the comparison (if a user is writing it,
        // the free being checked is already a bug: this is how it is told).
        let magic = unsafe { base.byte_add(magic_at).cast::<usize>().read_volatile() };
        if magic != SLAB_MAGIC ^ base.addr().get() {
            return None;
        }
        // A matching magic is a live slab's header: the invariant holds.
        let slab = SlabRef(base.cast());
        (slab.identity().class == class).then_some(slab)
    }

    /// Where `address` lies in the slab: the index of the object it falls
    /// in and its offset inside that object; `None` in the header or the
    /// tail past the last object.
    pub(crate) fn locate(self, address: usize) -> Option<(usize, usize)> {
        let SlabIdentity { class, capacity, .. } = self.identity();
        let into_objects =
            address.checked_sub(self.base().addr().get() + class.first_object_offset())?;
        let (index, offset) = (into_objects / class.size(), into_objects % class.size());
        (index < capacity as usize).then_some((index, offset))
    }

    /// What the slab is (read without the lock: it never changes).
    #[inline]
    pub(crate) fn identity(self) -> SlabIdentity {
        // SAFETY: by the type's invariant the header is live; the identity
        // was written before the slab was published and is never written
        // again, so reading it races with nothing. No reference to the
        // state, which others may be writing, is made.
        unsafe { (*self.0.as_ptr()).identity }
    }
}

/// What [`SlabLists::give_back`] does with a slab whose last outstanding
/// object came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenEmpty {
    /// Unlink it for the backend (normally: CPU caches hold the spares).
    Release,
    /// Keep it on its owner's partial list until the owner drains (heap
    /// checking: no CPU caches, and a double free of its last object is
    /// still told from an invalid one).
    Keep,
}

/// Per owner CPU and size class, the list of that CPU's slabs that have
/// objects to hand out; and the only way to reach a slab's state.
///
/// Lives inside the global lock, so `&mut SlabLists` proves the lock is
/// held, and borrowing one slab's state from it excludes every other.
pub(crate) struct SlabLists {
    partial: [[Option<SlabRef>; NUM_CLASSES]; MAX_CPUS],
    slabs: usize,
}

// SAFETY: the raw slab pointers lead to headers that, apart from the
// immutable identity, are only touched through `&mut SlabLists`, i.e. by
// whoever holds the lock around it, on whatever CPU that is.
unsafe impl Send for SlabLists {}

impl SlabLists {
    pub(crate) const fn new() -> Self {
        Self { partial: [[None; NUM_CLASSES]; MAX_CPUS], slabs: 0 }
    }

    /// How many slabs are live.
    pub(crate) fn slab_count(&self) -> usize {
        self.slabs
    }

    /// The state of `slab`, exclusively borrowed from the lists.
    #[inline]
    fn state(&mut self, slab: SlabRef) -> &mut SlabState {
        // SAFETY: the slab is live (type invariant). Its state is only ever
        // reached through this method, and `&mut self` is unique: held under
        // the global lock, and borrowed mutably for the result's lifetime, so
        // no other state reference can exist at the same time.
        unsafe { &mut *(*slab.0.as_ptr()).state.get() }
    }

    /// The first of `owner`'s slabs of `class` with an object to hand out.
    pub(crate) fn first_partial(&self, owner: usize, class: SizeClass) -> Option<SlabRef> {
        self.partial[owner][class.index()]
    }

    /// Registers a slab just made by [`SlabRef::init`] as partial.
    pub(crate) fn adopt(&mut self, slab: SlabRef) {
        self.slabs += 1;
        self.link(slab);
    }

    /// Hands out one object of `slab`, or `None` if it has none left (then
    /// it is also unlinked from its partial list).
    pub(crate) fn take_object(&mut self, slab: SlabRef) -> Option<NonNull<u8>> {
        let identity = slab.identity();
        let class = identity.class;
        let state = self.state(slab);
        let object = if let Some(object) = state.free.pop() {
            object
        } else if state.carved < identity.capacity {
            let offset = class.first_object_offset() + state.carved as usize * class.size();
            state.carved += 1;
            // SAFETY: `carved < capacity`, so the object lies wholly inside
            // the slab (`objects_per_slab` fits it), which is one block.
            unsafe { slab.base().byte_add(offset) }
        } else {
            return None;
        };
        state.outstanding += 1;
        let exhausted = state.free.is_empty() && state.carved == identity.capacity;
        if exhausted {
            self.unlink(slab);
        }
        Some(object)
    }

    /// Takes `object` back into its slab. Returns the slab if it is now
    /// entirely free and `when_empty` says to release it (then it is
    /// unlinked and no longer counted, for the caller to give back to the
    /// backend).
    ///
    /// # Safety
    /// `object` must have been handed out by [`Self::take_object`] from a
    /// slab of `class` and be given back once, owned by nobody now.
    pub(crate) unsafe fn give_back(
        &mut self,
        object: NonNull<u8>,
        class: SizeClass,
        when_empty: WhenEmpty,
    ) -> Option<SlabRef> {
        // SAFETY: forwarded from the caller: the object is outstanding, so
        // its slab is live.
        let slab = unsafe { SlabRef::containing(object, class) };
        let state = self.state(slab);
        let was_exhausted = state.free.is_empty() && state.carved == slab.identity().capacity;
        // SAFETY: the caller hands the object over; it is an aligned object
        // of at least 16 bytes.
        unsafe { state.free.push(object) };
        state.outstanding -= 1;
        let empty = state.outstanding == 0;
        if was_exhausted {
            self.link(slab);
        }
        if empty && when_empty == WhenEmpty::Release {
            self.retire(slab);
            Some(slab)
        } else {
            None
        }
    }

    /// Unlinks every one of `owner`'s empty slabs of `class` (kept by
    /// [`WhenEmpty::Keep`]) and hands each to `release`, which gives it
    /// back to the backend.
    pub(crate) fn release_empty(
        &mut self,
        owner: usize,
        class: SizeClass,
        mut release: impl FnMut(SlabRef),
    ) {
        let mut cursor = self.first_partial(owner, class);
        while let Some(slab) = cursor {
            let state = self.state(slab);
            cursor = state.next;
            if state.outstanding == 0 {
                self.retire(slab);
                release(slab);
            }
        }
    }

    /// Takes an empty, linked slab out of the lists for good.
    fn retire(&mut self, slab: SlabRef) {
        self.unlink(slab);
        self.slabs -= 1;
        // SAFETY: the slab is live (type invariant), and with no object
        // outstanding nobody reads its identity any more; the header is
        // written through the pointer the slab was made from. Heap checking
        // must not take the memory for a slab from now on.
        unsafe { (*slab.0.as_ptr()).identity.magic = 0 };
    }

    /// Heap checking: objects of `slab` handed out so far (an object past
    /// them never was).
    pub(crate) fn carved(&mut self, slab: SlabRef) -> usize {
        self.state(slab).carved as usize
    }

    /// Heap checking, right after [`Self::take_object`] took an object from
    /// `slab`: whether the free list's new head, read from that object's
    /// link word, is sound: absent exactly when the list is empty, else an
    /// object of the slab handed out before. If not, the object was written
    /// after it was freed: the rest of the list is dropped (those objects
    /// are lost, but they are not outstanding, so the slab can still go
    /// back to the backend), and the bad link is returned.
    pub(crate) fn check_free_list(&mut self, slab: SlabRef) -> Result<(), usize> {
        let capacity = slab.identity().capacity;
        let state = self.state(slab);
        let (head, len, carved) = (state.free.head(), state.free.len(), state.carved);
        let sound = match head {
            None => len == 0,
            Some(next) => {
                len > 0
                    && slab
                        .locate(next.addr().get())
                        .is_some_and(|(index, offset)| offset == 0 && index < carved as usize)
            }
        };
        if sound {
            return Ok(());
        }
        state.free = Magazine::new();
        // `take_object` unlinked the slab if it looked exhausted by length;
        // if it is exhausted only now, unlink it as it would have.
        if carved == capacity && len > 0 {
            self.unlink(slab);
        }
        Err(head.map_or(0, |next| next.addr().get()))
    }

    fn link(&mut self, slab: SlabRef) {
        let SlabIdentity { owner, class, .. } = slab.identity();
        let head = &mut self.partial[owner as usize][class.index()];
        let old_head = head.replace(slab);
        let state = self.state(slab);
        state.prev = None;
        state.next = old_head;
        if let Some(next) = old_head {
            self.state(next).prev = Some(slab);
        }
    }

    fn unlink(&mut self, slab: SlabRef) {
        let SlabIdentity { owner, class, .. } = slab.identity();
        let state = self.state(slab);
        let (prev, next) = (state.prev.take(), state.next.take());
        match prev {
            Some(prev) => self.state(prev).next = next,
            None => self.partial[owner as usize][class.index()] = next,
        }
        if let Some(next) = next {
            self.state(next).prev = prev;
        }
    }
}
