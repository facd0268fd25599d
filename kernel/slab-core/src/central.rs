//! The state behind the global lock: the backend, every CPU's partial slabs,
//! and the peak of the backend's usage. Refill (objects from slabs, making
//! slabs as needed) and flush (objects back to their slabs, freeing emptied
//! slabs) happen here, one batch per lock acquisition.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::backend::Backend;
use crate::magazine::Magazine;
use crate::size_class::SizeClass;
use crate::slab::{SlabLists, SlabRef};

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
                None => match self.new_slab(owner, class) {
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
            if let Some(empty) = unsafe { self.slabs.give_back(object, class) } {
                // SAFETY: slabs are allocated by `new_slab` with exactly this
                // layout, and an empty, unlinked slab is referenced nowhere.
                unsafe { self.backend.deallocate(empty.base(), slab_layout(class)) };
            }
        }
    }

    fn new_slab(&mut self, owner: usize, class: SizeClass) -> Result<SlabRef, OutOfMemory> {
        let block = self.allocate(slab_layout(class))?;
        // SAFETY: a fresh backend block of the slab's size and alignment,
        // now owned by the slab.
        let slab = unsafe { SlabRef::init(block, class, owner) };
        self.slabs.adopt(slab);
        Ok(slab)
    }
}

/// The backend layout of one slab of `class`: its size, aligned to its size.
fn slab_layout(class: SizeClass) -> Layout {
    let bytes = class.slab_bytes();
    match Layout::from_size_align(bytes, bytes) {
        Ok(layout) => layout,
        Err(_) => unreachable!("slab sizes are small powers of two"),
    }
}
