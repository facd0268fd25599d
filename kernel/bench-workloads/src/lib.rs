//! The allocator benchmark's workloads, written once and run in two places:
//! by the kernel's `job=bench` on its CPUs (`kernel/src/jobs/bench.rs`) and
//! by the host bench on real threads (`tools/hostbench`). Plain `no_std` +
//! `alloc`, no x86: what differs between a kernel CPU and a host thread (the
//! CPU count, the timestamp, how to wait for another CPU, what a failure
//! message calls the CPU) is the [`Machine`] each caller implements.
//!
//! Each workload is `fn(cpu, ops) -> CpuRun`, run on every CPU at once:
//! - `local` and `null` ([`local`]): batches of small allocations and frees
//!   on each CPU; `null` is the same loop with no allocator;
//! - `xfer` ([`xfer`]): CPU i hands objects to CPU i+1, which frees them;
//! - `larson`, `xmalloc-test`, `cache-scratch`, `cache-thrash`,
//!   `threadtest`, `mstress` ([`mimalloc_bench`]): mimalloc-bench's
//!   programs, scaled.
//!
//! They allocate through the global allocator (`alloc::alloc`), whichever
//! the binary has.
#![no_std]

extern crate alloc;

pub mod local;
pub mod machine;
pub mod mimalloc_bench;
pub mod stats;
pub mod timing;
pub mod xfer;

pub use machine::{MAX_CPUS, Machine};
pub use timing::{Body, CpuRun};

/// The workload `name` of this crate on machine `M`; `None` for a name it
/// does not have.
pub fn body<M: Machine>(name: &str) -> Option<Body> {
    Some(match name {
        "local" => local::local::<M>,
        "null" => local::null::<M>,
        "xfer" => xfer::xfer::<M>,
        "larson" => mimalloc_bench::larson::larson::<M>,
        "xmalloc-test" => mimalloc_bench::xmalloc::xmalloc_test::<M>,
        "cache-scratch" => mimalloc_bench::cache::cache_scratch::<M>,
        "cache-thrash" => mimalloc_bench::cache::cache_thrash::<M>,
        "threadtest" => mimalloc_bench::threadtest::threadtest::<M>,
        "mstress" => mimalloc_bench::mstress::mstress::<M>,
        _ => return None,
    })
}
