//! The kernel heap: `slab_core::SlabHeap` (per-CPU slab caches, or one
//! instrumented locked heap with `alloc=locked*`) over
//! `linked_list_allocator::Heap` in the heap region (or over `talc`, a
//! buddy allocator or TLSF, for comparison), or a plain allocator
//! (`plain.rs`, the baselines), as the global allocator.
//! `docs/allocator.md` has the design.
mod backend;
pub mod check;
mod exhausted;
mod global;
pub mod irq_churn;
pub mod lock_trace;
mod plain;
mod platform;

pub use backend::{ALLOCATORS, AllocatorChoice, AllocatorKind, BackendKind, HeapBackend};
pub use global::{heap, init, print_heapstats_record, print_report, stats, usage};
pub use irq_churn::IrqChurnCpu;
pub use plain::PlainKind;
pub use platform::{KernelPlatform, on_reclaim_ipi};
pub use slab_core::{
    Checking, FaultKind, HeapFault, HeapStats, Mode, POISON_BYTE, RED_ZONE_BYTE, SizeClass,
};

/// The kernel's heap type.
pub type KernelHeap = slab_core::SlabHeap<HeapBackend, KernelPlatform>;
