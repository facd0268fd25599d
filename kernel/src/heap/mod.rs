//! The kernel heap: `slab_core::SlabHeap` (per-CPU slab caches, or the
//! chapter's single locked heap with `alloc=locked`) over
//! `linked_list_allocator::Heap` in the heap region (or over `talc`, a
//! buddy allocator or `rlsf`, for comparison), or the `slabmalloc` crate's
//! per-CPU zones (`alloc=slabmalloc`), as the global allocator.
//! `docs/allocator.md` has the design.
mod backend;
pub mod check;
mod exhausted;
mod global;
pub mod irq_churn;
pub mod lock_trace;
mod platform;
mod slabmalloc;

pub use backend::{ALLOCATORS, AllocatorChoice, BackendKind, HeapBackend, HeapKind};
pub use global::{
    cpu_ops, drain_local_cpu, free_bytes, heap, init, print_heapstats_record, print_report, stats,
};
pub use irq_churn::IrqChurnCpu;
pub use platform::{KernelPlatform, on_reclaim_ipi};
pub use slab_core::{
    Checking, Counters, FaultKind, HeapFault, HeapStats, Mode, POISON_BYTE, RED_ZONE_BYTE,
    SizeClass,
};

/// The kernel's heap type.
pub type KernelHeap = slab_core::SlabHeap<HeapBackend, KernelPlatform>;
