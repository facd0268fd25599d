//! The backing allocators the slab-core heap can sit on, one module each,
//! and the allocator choices `alloc=` names: the slab-core heap (a front
//! end, per-CPU slab caches or none, over one backend behind the heap's
//! instrumented global lock), or a plain allocator (`plain.rs`: the crate's
//! own locked type, uninstrumented). All serve the same heap region.
mod buddy;
mod rlsf;
mod talc;

use core::{alloc::Layout, ptr::NonNull};

use slab_core::{Backend, Mode};

pub use self::{
    buddy::{BuddyBackend, ORDERS as BUDDY_ORDERS},
    rlsf::{Pool as RlsfPool, RlsfBackend},
    talc::TalcBackend,
};
use super::plain::PlainKind;

/// Which backing allocator serves the heap region.
#[expect(
    clippy::large_enum_variant,
    reason = "one instance, inside the global heap's static; rlsf's free-list table is 7 KiB"
)]
pub enum HeapBackend {
    /// `linked_list_allocator::Heap`, the chapter's allocator.
    LinkedList(linked_list_allocator::Heap),
    /// `talc::Talc`.
    Talc(TalcBackend),
    /// `buddy_system_allocator::Heap`.
    Buddy(BuddyBackend),
    /// `rlsf::Tlsf`.
    Rlsf(RlsfBackend),
}

/// The kinds of [`HeapBackend`], as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    LinkedList,
    Talc,
    Buddy,
    Rlsf,
}

impl HeapBackend {
    /// An empty linked-list backend (what the heap starts with).
    pub const fn empty() -> Self {
        Self::LinkedList(linked_list_allocator::Heap::empty())
    }

    /// A backend of `kind` over `start..start + bytes`.
    ///
    /// # Safety
    /// The range is mapped, writable and used by nothing else for ever.
    pub unsafe fn over(kind: BackendKind, start: *mut u8, bytes: usize) -> Self {
        match kind {
            BackendKind::LinkedList => {
                let mut heap = linked_list_allocator::Heap::empty();
                // SAFETY: forwarded from the caller.
                unsafe { heap.init(start, bytes) };
                Self::LinkedList(heap)
            }
            // SAFETY: forwarded from the caller.
            BackendKind::Talc => Self::Talc(unsafe { TalcBackend::over(start, bytes) }),
            // SAFETY: forwarded from the caller.
            BackendKind::Buddy => Self::Buddy(unsafe { BuddyBackend::over(start, bytes) }),
            // SAFETY: forwarded from the caller.
            BackendKind::Rlsf => Self::Rlsf(unsafe { RlsfBackend::over(start, bytes) }),
        }
    }

    fn as_backend(&mut self) -> &mut dyn Backend {
        match self {
            Self::LinkedList(heap) => heap,
            Self::Talc(talc) => talc,
            Self::Buddy(buddy) => buddy,
            Self::Rlsf(rlsf) => rlsf,
        }
    }

    fn as_backend_ref(&self) -> &dyn Backend {
        match self {
            Self::LinkedList(heap) => heap,
            Self::Talc(talc) => talc,
            Self::Buddy(buddy) => buddy,
            Self::Rlsf(rlsf) => rlsf,
        }
    }
}

// SAFETY: every variant is a `Backend`, whose promises each call forwards.
unsafe impl Backend for HeapBackend {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.as_backend().allocate(layout)
    }

    unsafe fn deallocate(&mut self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded: the block came from this backend with `layout`.
        unsafe { self.as_backend().deallocate(block, layout) }
    }

    fn used_bytes(&self) -> usize {
        self.as_backend_ref().used_bytes()
    }

    fn free_bytes(&self) -> usize {
        self.as_backend_ref().free_bytes()
    }

    fn contains(&self, address: usize, bytes: usize) -> bool {
        self.as_backend_ref().contains(address, bytes)
    }
}

/// What serves the heap for one `alloc=` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// `slab_core::SlabHeap` in `mode` over `backend`: the slab heap, or
    /// (locked mode) a backend behind the heap's instrumented global lock.
    SlabCore { mode: Mode, backend: BackendKind },
    /// A plain allocator: the crate's own locked type, uninstrumented.
    Plain(PlainKind),
}

/// One allocator a user can pick with `alloc=NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorChoice {
    pub name: &'static str,
    pub kind: AllocatorKind,
}

/// A slab-core choice.
const fn slab_core(name: &'static str, mode: Mode, backend: BackendKind) -> AllocatorChoice {
    AllocatorChoice { name, kind: AllocatorKind::SlabCore { mode, backend } }
}

/// A plain choice.
const fn plain(name: &'static str, kind: PlainKind) -> AllocatorChoice {
    AllocatorChoice { name, kind: AllocatorKind::Plain(kind) }
}

/// Every allocator `alloc=` accepts.
pub const ALLOCATORS: &[AllocatorChoice] = &[
    slab_core("slab", Mode::Slab, BackendKind::LinkedList),
    plain("lockedheap", PlainKind::LockedHeap),
    plain("talc", PlainKind::Talc),
    plain("buddy", PlainKind::Buddy),
    plain("rlsf", PlainKind::Rlsf),
    slab_core("locked", Mode::Locked, BackendKind::LinkedList),
    slab_core("locked-talc", Mode::Locked, BackendKind::Talc),
    slab_core("locked-buddy", Mode::Locked, BackendKind::Buddy),
    slab_core("locked-rlsf", Mode::Locked, BackendKind::Rlsf),
    slab_core("slab-talc", Mode::Slab, BackendKind::Talc),
    slab_core("slab-buddy", Mode::Slab, BackendKind::Buddy),
    slab_core("slab-rlsf", Mode::Slab, BackendKind::Rlsf),
];

impl AllocatorChoice {
    /// The allocator named `name`.
    pub fn named(name: &str) -> Option<Self> {
        ALLOCATORS.iter().copied().find(|choice| choice.name == name)
    }

    /// Whether it is a plain allocator (no slab-core heap: no counters, no
    /// interrupt masking, no corruption checking).
    pub fn is_plain(&self) -> bool {
        matches!(self.kind, AllocatorKind::Plain(_))
    }
}
