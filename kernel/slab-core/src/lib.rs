//! The kernel heap's core, `no_std` and free of x86: per-CPU slab caches of
//! small objects in front of a pluggable backend behind one instrumented
//! global lock, tested on the host. `docs/allocator.md` has the design.
//! This file only declares the modules and what they export.
#![no_std]
// `ptr::mask`, for `SlabRef::containing` (the free path); the crate builds
// with the project's pinned nightly, like the kernel.
#![feature(ptr_mask)]

#[cfg(any(test, feature = "host"))]
extern crate std;

mod backend;
mod central;
mod check;
mod cpu_cache;
mod heap;
#[cfg(feature = "host")]
mod host;
mod inbox;
mod lock;
mod magazine;
mod mode;
mod platform;
mod reclaim;
mod size_class;
mod slab;
mod stats;
mod sync;

pub use backend::{Backend, range_contains};
pub use central::HeapUsage;
pub use check::{Checking, CheckingLocked, FaultKind, HeapFault, POISON_BYTE, RED_ZONE_BYTE};
pub use cpu_cache::{BUSY_CPU_WORD, initial_cpu_word};
pub use heap::SlabHeap;
#[cfg(feature = "host")]
pub use host::{HostHeap, LockWait, SettingError, Settings};
pub use lock::{SpinGuard, SpinLock};
pub use mode::{Mode, ModeLocked, UnknownMode};
pub use platform::{CpuWords, MAX_CPUS, Platform};
pub use reclaim::ReclaimBroadcast;
pub use size_class::{
    INBOX_BYTES, MAX_INBOX_OBJECTS, MAX_SMALL_SIZE, MIN_BATCH, NUM_CLASSES, SizeClass,
};
pub use stats::{ClassStats, CpuStats, CpuSummary, HeapStats, LockStats};
