//! One cell's figures as a `BENCH {json}` line, the kernel bench's record
//! (`docs/interface.md`) with host keys: `threads` (also as `cpus`, so the
//! runner's tables read it), `elapsed_seconds` and `peak_rss_kib`. The
//! heap-counter keys of the kernel (`lock_acquisitions`, `lock_wait_share`,
//! `cache_hit_rate`, ...) come from `HostHeap::stats` over the timed part
//! for `slab`, and are null for the others, which have no such counters.
use serde_json::{Map, Value, json};

use bench_workloads::{CpuRun, stats::percentile};

/// The record of one run of `workload` on `alloc`.
pub fn bench_record(
    workload: &str,
    alloc: &str,
    runs: &[CpuRun],
    timestamp_hz: u64,
    warmup_ops: u64,
) -> Map<String, Value> {
    let start = runs.iter().map(|r| r.start).min().unwrap_or(0);
    let end = runs.iter().map(|r| r.end).max().unwrap_or(0);
    let elapsed_cycles = end.saturating_sub(start).max(1);
    let ops: u64 = runs.iter().map(|r| r.ops).sum();
    let mut batches: Vec<f64> =
        runs.iter().flat_map(|r| r.batch_cycles_per_op.iter().copied()).collect();
    batches.sort_unstable_by(f64::total_cmp);
    let median = percentile(&batches, 50);
    let elapsed_seconds = elapsed_cycles as f64 / timestamp_hz as f64;
    let record = json!({
        "workload": workload,
        "alloc": alloc,
        "cpus": runs.len(),
        "threads": runs.len(),
        "ops": ops,
        "ops_per_cpu": runs.iter().map(|r| r.ops).collect::<Vec<_>>(),
        "warmup_ops_per_thread": warmup_ops,
        "timestamp_hz": timestamp_hz,
        "elapsed_cycles": elapsed_cycles,
        "elapsed_seconds": round(elapsed_seconds, 6),
        "ops_per_sec": round(ops as f64 / elapsed_seconds, 1),
        "cycles_per_op_median": round(median, 2),
        "cycles_per_op_p99": round(percentile(&batches, 99), 2),
        "cycles_per_pair_median": round(2.0 * median, 2),
        "lock_acquisitions": null,
        "lock_wait_share": null,
        "cache_hit_rate": null,
        "peak_rss_kib": peak_rss_kib(),
    });
    match record {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The process's peak resident set (`VmHWM` of /proc/self/status), if
/// Linux tells.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The slab heap's counters (`HostHeap::stats().total`) at one moment.
#[derive(Debug, Clone, Copy)]
pub struct HeapCounters {
    pub lock_acquisitions: u64,
    pub lock_contended: u64,
    pub lock_wait_cycles: u64,
    pub lock_hold_cycles: u64,
    pub small_ops: u64,
    pub cache_hits: u64,
    pub cross_cpu_frees: u64,
}

/// Sets the heap-counter keys of `record` to their change from `before`
/// to `after` (the timed part); `lock_wait_share` is the wait over all
/// threads' time.
pub fn add_heap_counters(
    record: &mut Map<String, Value>,
    before: &HeapCounters,
    after: &HeapCounters,
    threads: usize,
) {
    let elapsed = record.get("elapsed_cycles").and_then(Value::as_f64).unwrap_or(1.0);
    let wait = after.lock_wait_cycles.saturating_sub(before.lock_wait_cycles);
    let small_ops = after.small_ops.saturating_sub(before.small_ops);
    let cache_hits = after.cache_hits.saturating_sub(before.cache_hits);
    let hit_rate = if small_ops == 0 { 0.0 } else { cache_hits as f64 / small_ops as f64 };
    let entries = [
        ("lock_acquisitions", json!(after.lock_acquisitions - before.lock_acquisitions)),
        ("lock_wait_share", json!(round(wait as f64 / (threads as f64 * elapsed), 6))),
        ("cache_hit_rate", json!(round(hit_rate, 6))),
        ("lock_contended", json!(after.lock_contended - before.lock_contended)),
        ("lock_wait_cycles", json!(wait)),
        ("lock_hold_cycles", json!(after.lock_hold_cycles - before.lock_hold_cycles)),
        ("small_ops", json!(small_ops)),
        ("cache_hits", json!(cache_hits)),
        ("cross_cpu_frees", json!(after.cross_cpu_frees - before.cross_cpu_frees)),
    ];
    for (key, value) in entries {
        record.insert(key.to_string(), value);
    }
}
