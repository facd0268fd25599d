//! The backing allocators the heap can sit on, one module each, and the
//! allocator choices `alloc=` names: each is a front end (per-CPU slab
//! caches, or none) over one backend, all over the same heap region and
//! behind the same instrumented global lock, so their figures compare.
mod buddy;
mod rlsf;
mod talc;

use core::{alloc::Layout, ptr::NonNull};

use slab_core::{Backend, Mode};

pub use self::{buddy::BuddyBackend, rlsf::RlsfBackend, talc::TalcBackend};

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

/// One allocator a user can pick with `alloc=NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorChoice {
    pub name: &'static str,
    pub mode: Mode,
    pub backend: BackendKind,
    pub kind: HeapKind,
}

/// Which allocator serves the global allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapKind {
    /// `slab_core::SlabHeap` in `mode` over `backend`.
    SlabCore,
    /// The `slabmalloc` crate's per-CPU zones (`heap::slabmalloc`); `mode`
    /// and `backend` are unused.
    SlabMalloc,
}

/// Every allocator `alloc=` accepts.
pub const ALLOCATORS: &[AllocatorChoice] = &[
    AllocatorChoice {
        name: "slab",
        mode: Mode::Slab,
        backend: BackendKind::LinkedList,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "locked",
        mode: Mode::Locked,
        backend: BackendKind::LinkedList,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "talc",
        mode: Mode::Locked,
        backend: BackendKind::Talc,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "buddy",
        mode: Mode::Locked,
        backend: BackendKind::Buddy,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "rlsf",
        mode: Mode::Locked,
        backend: BackendKind::Rlsf,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "slab-talc",
        mode: Mode::Slab,
        backend: BackendKind::Talc,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "slab-buddy",
        mode: Mode::Slab,
        backend: BackendKind::Buddy,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "slab-rlsf",
        mode: Mode::Slab,
        backend: BackendKind::Rlsf,
        kind: HeapKind::SlabCore,
    },
    AllocatorChoice {
        name: "slabmalloc",
        mode: Mode::Locked,
        backend: BackendKind::LinkedList,
        kind: HeapKind::SlabMalloc,
    },
];

impl AllocatorChoice {
    /// The allocator named `name`.
    pub fn named(name: &str) -> Option<Self> {
        ALLOCATORS.iter().copied().find(|choice| choice.name == name)
    }
}
