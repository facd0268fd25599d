//! The state behind the global lock: the backend, every CPU's partial slabs,
//! and the peak of the backend's usage. Refill (objects from slabs, making
//! slabs as needed) and flush (objects back to their slabs, freeing emptied
//! slabs) happen here, one batch per lock acquisition.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::backend::Backend;
use crate::check::{self, FaultKind, Finding, Trailer};
use crate::magazine::Magazine;
use crate::size_class::SizeClass;
use crate::slab::{SlabLists, SlabRef, WhenEmpty};

/// The backend could not provide a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfMemory;

/// Backend usage figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapUsage {
    /// Bytes the backend has handed out (slabs and large objects).
    pub used_bytes: usize,
    /// Bytes the backend has free.
    pub free_bytes: usize,
    /// The most `used_bytes` has ever been.
    pub peak_bytes: usize,
    /// Slabs alive.
    pub slabs: usize,
}

/// Everything the global lock protects.
pub(crate) struct Central<B> {
    backend: B,
    slabs: SlabLists,
    peak_used: usize,
}

impl<B: Backend> Central<B> {
    pub(crate) const fn new(backend: B) -> Self {
        Self { backend, slabs: SlabLists::new(), peak_used: 0 }
    }

    /// The backend itself (boot-time `init`, inspection).
    pub(crate) fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub(crate) fn usage(&self) -> HeapUsage {
        HeapUsage {
            used_bytes: self.backend.used_bytes(),
            free_bytes: self.backend.free_bytes(),
            peak_bytes: self.peak_used,
            slabs: self.slabs.slab_count(),
        }
    }

    /// A block straight from the backend (large objects; every object in
    /// locked mode).
    pub(crate) fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, OutOfMemory> {
        let block = self.backend.allocate(layout).ok_or(OutOfMemory)?;
        self.peak_used = self.peak_used.max(self.backend.used_bytes());
        Ok(block)
    }

    /// Frees a block from [`Self::allocate`].
    ///
    /// # Safety
    /// As `Backend::deallocate`: a block from `allocate` with `layout`,
    /// freed once.
    pub(crate) unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.backend.deallocate(block, layout) }
    }

    /// Fills `magazine` up to `up_to` objects with `owner`'s objects of
    /// `class`, carving new slabs as needed. When the backend runs out of
    /// memory the magazine keeps what it got (maybe nothing).
    pub(crate) fn refill_from_slabs(
        &mut self,
        owner: usize,
        class: SizeClass,
        magazine: &mut Magazine,
        up_to: usize,
    ) {
        while magazine.len() < up_to {
            let slab = match self.slabs.first_partial(owner, class) {
                Some(slab) => slab,
                None => match self.new_slab(owner, class, NewSlab::AsIs) {
                    Ok(slab) => slab,
                    Err(OutOfMemory) => return,
                },
            };
            while magazine.len() < up_to {
                let Some(object) = self.slabs.take_object(slab) else {
                    break;
                };
                // SAFETY: the object was just handed out of its slab, so it
                // is free, aligned and owned by us alone.
                unsafe { magazine.push(object) };
            }
        }
    }

    /// Gives every object in `magazine` back to its slab and frees slabs
    /// that become empty. The objects may belong to any owner.
    ///
    /// # Safety
    /// Every object in `magazine` must have been handed out by
    /// [`Self::refill_from_slabs`] for `class` and be free (owned by the
    /// magazine alone).
    pub(crate) unsafe fn flush_to_slabs(&mut self, class: SizeClass, mut magazine: Magazine) {
        while let Some(object) = magazine.pop() {
            // SAFETY: forwarded from the caller: an outstanding free object
            // of `class`, given back once (it left the magazine).
            if let Some(empty) = unsafe { self.slabs.give_back(object, class, WhenEmpty::Release) }
            {
                // SAFETY: slabs are allocated by `new_slab` with exactly this
                // layout, and an empty, unlinked slab is referenced nowhere.
                unsafe { self.backend.deallocate(empty.base(), slab_layout(class)) };
            }
        }
    }

    fn new_slab(
        &mut self,
        owner: usize,
        class: SizeClass,
        fill: NewSlab,
    ) -> Result<SlabRef, OutOfMemory> {
        let layout = slab_layout(class);
        let block = self.allocate(layout)?;
        if fill == NewSlab::Poisoned {
            let start = class.first_object_offset();
            // SAFETY: a fresh backend block of `layout`, ours; the range
            // starts past the header and ends at the block's end.
            unsafe { check::poison(block.byte_add(start), layout.size() - start) };
        }
        // SAFETY: a fresh backend block of the slab's size and alignment,
        // now owned by the slab.
        let slab = unsafe { SlabRef::init(block, class, owner) };
        self.slabs.adopt(slab);
        Ok(slab)
    }

    /// Heap checking: one of `owner`'s objects of `class`, from a partial
    /// slab or a new, poisoned one (`None`: out of memory).
    pub(crate) fn take_checked(&mut self, owner: usize, class: SizeClass) -> Option<Taken> {
        let slab = match self.slabs.first_partial(owner, class) {
            Some(slab) => slab,
            None => self.new_slab(owner, class, NewSlab::Poisoned).ok()?,
        };
        let object = self.slabs.take_object(slab)?;
        Some(match self.slabs.check_free_list(slab) {
            Ok(()) => Taken::Linked(object),
            Err(link) => Taken::Damaged(object, Finding::bad_link(link)),
        })
    }

    /// Heap checking: frees `object`, a block of `size` bytes the caller
    /// says the heap handed out as an object of `class`, if it is one:
    /// inside the backend's region, in a live slab of `class`, at the start
    /// of an object carved before, whose state word says allocated. Then
    /// checks its red zone, poisons it and gives it back to its slab (kept
    /// even when empty, until its owner drains) and returns the slab's
    /// owner. A finding means nothing was freed.
    ///
    /// # Safety
    /// If `object` is an object of this heap, it must be the caller's (as
    /// `SlabHeap::dealloc` requires); any other pointer is only compared
    /// and read as far as the checks above let it.
    pub(crate) unsafe fn free_checked(
        &mut self,
        object: NonNull<u8>,
        size: usize,
        class: SizeClass,
    ) -> Result<usize, Finding> {
        let address = object.addr().get();
        let base = address & class.slab_address_mask();
        if !self.backend.contains(base, class.slab_bytes()) {
            return Err(Finding::bare(FaultKind::InvalidFree));
        }
        // SAFETY: the slab-sized range at the masked address is inside the
        // backend's region (checked just above), memory this heap owns; we
        // hold the lock (`&mut self`).
        let slab = unsafe { SlabRef::probe(object, class) }
            .ok_or(Finding::bare(FaultKind::InvalidFree))?;
        let (index, offset) = slab.locate(address).ok_or(Finding::misaligned(None))?;
        if offset != 0 {
            return Err(Finding::misaligned(Some(offset)));
        }
        if index >= self.slabs.carved(slab) {
            return Err(Finding::bare(FaultKind::InvalidFree));
        }
        let trailer = Trailer::small(size, class);
        // SAFETY: an object handed out of a live slab of `class` (checked
        // above): armed when allocated, or disarmed when freed since, so its
        // bytes are written; allocated objects are the caller's, free ones
        // are only touched under the lock we hold.
        unsafe { check::check_free(object, trailer) }?;
        // SAFETY: an allocated object of `class` (its state word says so),
        // handed back by the caller.
        unsafe { check::disarm_small(object, class) };
        // SAFETY: an outstanding object of this heap's slabs of `class`,
        // given back once (its state word now says freed). An emptied slab
        // stays until its owner drains (`release_empty_slabs`).
        let kept = unsafe { self.slabs.give_back(object, class, WhenEmpty::Keep) };
        debug_assert!(kept.is_none());
        Ok(usize::from(slab.identity().owner))
    }

    /// Heap checking: gives `owner`'s empty slabs back to the backend (they
    /// stay after their last object is freed, see `WhenEmpty::Keep`).
    pub(crate) fn release_empty_slabs(&mut self, owner: usize) {
        for class in SizeClass::ALL {
            let backend = &mut self.backend;
            self.slabs.release_empty(owner, class, |slab| {
                // SAFETY: slabs are allocated by `new_slab` with exactly this
                // layout, and an empty, retired slab is referenced nowhere.
                unsafe { backend.deallocate(slab.base(), slab_layout(class)) };
            });
        }
    }

    /// Heap checking: frees a block straight from the backend (allocated by
    /// the checked path with `Trailer::large(layout)`), if it is one: inside
    /// the backend's region, aligned for `layout`, its state word saying
    /// allocated. Then checks its red zone and frees it. A finding means
    /// nothing was freed.
    ///
    /// # Safety
    /// As [`Self::free_checked`].
    pub(crate) unsafe fn free_large_checked(
        &mut self,
        block: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), Finding> {
        let (trailer, backend_layout) =
            Trailer::large(layout).ok_or(Finding::bare(FaultKind::InvalidFree))?;
        let address = block.addr().get();
        if !self.backend.contains(address, backend_layout.size()) {
            return Err(Finding::bare(FaultKind::InvalidFree));
        }
        if !address.is_multiple_of(layout.align()) {
            return Err(Finding::misaligned(None));
        }
        // SAFETY: the block's range is inside the backend's region (checked
        // above). A block the checked path handed out was armed, and only
        // its owner (the caller) writes it; any other pointer is a bug this
        // read exists to report.
        unsafe { check::check_free(block, trailer) }.map_err(check::as_backend_block)?;
        // SAFETY: an allocated block of the checked path (its state word
        // says so) with this layout, handed back by the caller.
        unsafe {
            check::mark_freed(block, trailer);
            self.backend.deallocate(block, backend_layout);
        }
        Ok(())
    }
}

/// An object heap checking took out of its slab.
#[derive(Debug)]
pub(crate) enum Taken {
    /// Its free-list link was sound (its poison is checked next).
    Linked(NonNull<u8>),
    /// Written after it was freed: its free-list link was not sound (see
    /// `SlabLists::check_free_list`). It stays outstanding for good, so it
    /// is never handed out again.
    Damaged(NonNull<u8>, Finding),
}

/// What a new slab's objects hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NewSlab {
    /// Whatever the backend left (never read before an object is written).
    AsIs,
    /// Poison, for heap checking.
    Poisoned,
}

/// The backend layout of one slab of `class`: its size, aligned to its size.
fn slab_layout(class: SizeClass) -> Layout {
    let bytes = class.slab_bytes();
    match Layout::from_size_align(bytes, bytes) {
        Ok(layout) => layout,
        Err(_) => unreachable!("slab sizes are small powers of two"),
    }
}
