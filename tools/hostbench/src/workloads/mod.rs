//! The workloads, by name: the kernel bench's (`local`, `xfer`, `null` and
//! the six mimalloc-bench ports, from the `bench-workloads` crate, the same
//! code on threads) and two of the host's own (`pair`, `json`).
pub mod json;
pub mod pair;

use bench_workloads::Body;

use crate::harness::HostThread;

/// Every workload `--workload` accepts, in the order `all` runs them.
pub const WORKLOADS: &[&str] = &[
    "pair",
    "local",
    "xfer",
    "larson",
    "xmalloc-test",
    "cache-scratch",
    "cache-thrash",
    "threadtest",
    "mstress",
    "json",
    "null",
];

/// Operations per thread when `--ops` is not given: ten times the kernel
/// bench's default (real cores run 10 to 100 times faster than its TCG, and
/// a run should last milliseconds, not microseconds), `json` less (a
/// record sent and received is tens of allocations and 5 to 10 µs).
pub fn default_ops(workload: &str) -> u64 {
    match workload {
        "json" => 50_000,
        _ => 1_000_000,
    }
}

/// The body of the workload `name`: the host's own, or the kernel bench's
/// on the run's threads.
pub fn body(name: &str) -> Option<Body> {
    match name {
        "pair" => Some(pair::pair),
        "json" => Some(json::json),
        _ => bench_workloads::body::<HostThread>(name),
    }
}
