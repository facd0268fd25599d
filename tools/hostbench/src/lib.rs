//! The kernel bench's workloads (the `bench-workloads` crate: `local`,
//! `xfer`, `null` and the mimalloc-bench ports) on the host's real threads
//! (`harness::HostThread`), plus two host-only
//! workloads, timed with the TSC (docs/host-bench.md). The worker binary
//! (`hostbench-worker`) is built once per allocator, that allocator as its
//! `#[global_allocator]`, and runs one cell; the driver (`hostbench`)
//! builds the workers, runs the matrix and writes the results folder.
pub mod driver;
pub mod harness;
pub mod report;
pub mod tsc;
pub mod workloads;
