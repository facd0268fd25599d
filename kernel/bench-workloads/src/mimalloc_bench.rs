//! Ports of the multi-thread stress programs of mimalloc-bench
//! (`daanx/mimalloc-bench`, `bench/`, run by its `bench.sh`) and of Hoard's
//! `threadtest`, as workloads of the kernel's `job=bench` and of the host
//! bench (`tools/hostbench`). One CPU stands for one thread (on the host
//! bench, a thread for a CPU, so the port runs on threads again); each file
//! says what it keeps of the original, what it scales down and what stands
//! in for thread creation and exit. Read from `daanx/mimalloc-bench` at
//! commit ce5784f (2026-07-15) and `emeryberger/Hoard` at commit b29abf4
//! (2025-12-30).
//!
//! A CPU that waits for another (a barrier, a mailbox, a full or empty
//! stack) waits the machine's way (`Machine::wait_for_another`): `pause` in
//! the kernel; on the host `pause`, then `sched_yield`, since the host may
//! preempt the thread waited for.
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
