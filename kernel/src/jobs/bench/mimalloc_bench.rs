//! Ports of the multi-thread stress programs of mimalloc-bench
//! (`daanx/mimalloc-bench`, `bench/`, run by its `bench.sh`) and of Hoard's
//! `threadtest`, as `job=bench` workloads. One CPU stands for one thread;
//! each file says what it keeps of the original, what it scales down and
//! what stands in for thread creation and exit. Read from
//! `daanx/mimalloc-bench` at commit ce5784f (2026-07-15) and
//! `emeryberger/Hoard` at commit b29abf4 (2025-12-30).
//!
//! Each workload runs a fixed number of phases, the same on every CPU (so
//! the CPUs meet at the same barriers), derived from `ops=`; each counts the
//! allocations and frees it really did, so `ops_per_cpu` can differ from
//! `ops=` and from CPU to CPU where the original is unbalanced.
pub mod cache;
pub mod common;
pub mod larson;
pub mod mstress;
pub mod threadtest;
pub mod xmalloc;

/// The ports' `workload=` names.
pub const PORTS: &[&str] =
    &["larson", "xmalloc-test", "cache-scratch", "cache-thrash", "threadtest", "mstress"];
