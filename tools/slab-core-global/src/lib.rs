//! `slab_core::HostHeap` as the global allocator, and nothing else.
//! `tools/host-suites` links this crate into other crates' test binaries
//! (`--extern force:slab_core_global=...`), which makes every allocation of
//! their tests go through `HostHeap`.
//!
//! Built with `--cfg slab_core_global_wrapped`, the heap is not the global
//! allocator but only `HEAP`: for a test that has a `#[global_allocator]`
//! of its own wrapping the system allocator, which `tools/host-suites`
//! patches to wrap `HEAP` instead.
#![no_std]

/// The heap every allocation of the test binary goes to.
#[cfg_attr(not(slab_core_global_wrapped), global_allocator)]
pub static HEAP: slab_core::HostHeap = slab_core::HostHeap::new();
