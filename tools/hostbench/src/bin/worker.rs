//! `hostbench-worker`: runs one workload on N threads with the allocator it
//! was built with as `#[global_allocator]` (a cargo feature: none is
//! glibc's malloc) and prints one `BENCH {json}` line. The driver
//! (`hostbench`) builds one worker per allocator and runs them.
use anyhow::{Context, bail};
use clap::Parser;
use hostbench::{harness, report, tsc, workloads};

#[cfg(any(
    all(feature = "alloc-mimalloc", feature = "alloc-jemalloc"),
    all(feature = "alloc-mimalloc", feature = "alloc-slab"),
    all(feature = "alloc-jemalloc", feature = "alloc-slab"),
))]
compile_error!("a worker has one allocator: enable at most one alloc-* feature");

#[cfg(feature = "alloc-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "alloc-jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "alloc-slab")]
#[global_allocator]
static GLOBAL: slab_core::HostHeap = slab_core::HostHeap::new();

/// The allocator this worker was built with (`--alloc` names).
const ALLOC: &str = if cfg!(feature = "alloc-mimalloc") {
    "mimalloc"
} else if cfg!(feature = "alloc-jemalloc") {
    "jemalloc"
} else if cfg!(feature = "alloc-slab") {
    "slab"
} else {
    "glibc"
};

#[derive(Parser)]
#[command(about = "One hostbench cell: a workload on threads, with this binary's allocator")]
struct Args {
    /// The allocator the caller expects this worker to have.
    #[arg(long)]
    alloc: String,
    #[arg(long)]
    workload: String,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Operations per thread (default: `workloads::default_ops`).
    #[arg(long)]
    ops: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.alloc != ALLOC {
        bail!("this worker was built with {ALLOC}, not {}", args.alloc);
    }
    let body = workloads::body(&args.workload).with_context(|| {
        format!("unknown workload '{}' (known: {})", args.workload, workloads::WORKLOADS.join(", "))
    })?;
    if !(1..=harness::MAX_THREADS).contains(&args.threads) {
        bail!("--threads {}: expected 1 to {}", args.threads, harness::MAX_THREADS);
    }
    let ops = args.ops.unwrap_or_else(|| workloads::default_ops(&args.workload));
    if ops == 0 {
        bail!("--ops must be a positive number of operations per thread");
    }
    let hz = tsc::measure_hz();
    let before = std::sync::Mutex::new(None);
    let runs = harness::run_on_threads(args.threads, body, ops, &|| {
        *before.lock().expect("one thread takes the snapshot") = heap_counters();
    });
    let after = heap_counters();
    let warmup = (ops / harness::WARMUP_DIVISOR).max(1);
    let mut record = report::bench_record(&args.workload, ALLOC, &runs, hz, warmup);
    let before = before.into_inner().expect("the snapshot's thread ended");
    if let (Some(before), Some(after)) = (before, after) {
        report::add_heap_counters(&mut record, &before, &after, args.threads);
    }
    println!("BENCH {}", serde_json::Value::Object(record));
    Ok(())
}

/// The slab heap's counters now (`HostHeap::stats`); none for the other
/// allocators.
fn heap_counters() -> Option<report::HeapCounters> {
    #[cfg(feature = "alloc-slab")]
    {
        let total = GLOBAL.stats().total;
        Some(report::HeapCounters {
            lock_acquisitions: total.lock.acquisitions,
            lock_contended: total.lock.contended,
            lock_wait_cycles: total.lock.wait_cycles,
            lock_hold_cycles: total.lock.hold_cycles,
            small_ops: total.small_ops,
            cache_hits: total.cache_hits,
            cross_cpu_frees: total.cross_cpu_frees,
        })
    }
    #[cfg(not(feature = "alloc-slab"))]
    None
}
