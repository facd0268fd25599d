//! `slab_core::HostHeap` as the global allocator, and nothing else.
//! `tools/host-suites` links this crate into other crates' test binaries
//! (`--extern force:slab_core_global=...`), which makes every allocation of
//! their tests go through `HostHeap`.
#![no_std]

#[global_allocator]
static HEAP: slab_core::HostHeap = slab_core::HostHeap::new();
