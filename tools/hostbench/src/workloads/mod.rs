//! The workloads, by name: the kernel bench's (`local`, `xfer`, `null` and
//! the six mimalloc-bench ports, same parameters) and two of the host's own
//! (`pair`, `json`).
pub mod basic;
pub mod cache;
pub mod common;
pub mod json;
pub mod larson;
pub mod mstress;
pub mod threadtest;
pub mod xmalloc;

use crate::harness::Body;

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

/// The body of the workload `name`.
pub fn body(name: &str) -> Option<Body> {
    Some(match name {
        "pair" => basic::pair,
        "local" => basic::local,
        "xfer" => basic::xfer,
        "null" => basic::null,
        "larson" => larson::larson,
        "xmalloc-test" => xmalloc::xmalloc_test,
        "cache-scratch" => cache::cache_scratch,
        "cache-thrash" => cache::cache_thrash,
        "threadtest" => threadtest::threadtest,
        "mstress" => mstress::mstress,
        "json" => json::json,
        _ => return None,
    })
}
