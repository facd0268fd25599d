//! `job=bench`: one allocator workload on every CPU at once, timed with the
//! TSC, reported as a readable table and one `BENCH {json}` record
//! (`docs/interface.md`). Workloads (`workload=`):
//! - `local`: each CPU allocates a batch of small objects of mixed sizes and
//!   frees them (threadtest-like);
//! - `xfer`: CPU i allocates objects and passes them through a lock-free
//!   ring to CPU i+1, which frees them (larson / xmalloc-test-like);
//! - `seed`: the chapter's cases (a `Box`, a 1000-element `Vec`, a burst of
//!   boxes) repeated;
//! - `mixed`: sizes from 8 B to 64 KiB with realloc, so large objects reach
//!   the backing heap;
//! - `null`: `local`'s loop with no allocator, for the machine's own
//!   scaling (no allocator can scale better);
//! - `larson`, `xmalloc-test`, `cache-scratch`, `cache-thrash`,
//!   `threadtest`, `mstress`: mimalloc-bench's programs, scaled.
//!
//! All but `seed` and `mixed` live in the `bench-workloads` crate
//! (`kernel/bench-workloads`), shared with the host bench, and run here on
//! [`machine::KernelCpu`]; `seed` and `mixed` count their operations with
//! the kernel heap's counters and stay here.
//!
//! Each run: a warm-up job, then a timed job behind the start barrier;
//! `ops=` operations (allocations plus frees) per CPU. With `local` on one
//! CPU, a last pass counts each allocation's and free's own instructions
//! between markers (`exact`). After a mimalloc-bench port the heap, every
//! cache drained, must have as many free bytes as before its warm-up: the
//! port freed everything it allocated. (Not for the older workloads: the
//! drain before the warm-up changes the heap state the exact counts of
//! `local` were committed with.)
pub mod exact;
mod machine;

use alloc::{boxed::Box, vec, vec::Vec};

use bench_workloads::{Body, CpuRun, mimalloc_bench, stats::percentile, timing::timed_batches};
use machine::KernelCpu;

use crate::{
    ExitCode,
    boot::BootInfo,
    heap::{self, HeapStats, lock_trace},
    jobs::stress,
    json::{JsonArray, JsonOption, JsonStr},
    println,
    smp::{self, MAX_CPUS},
    time,
};

/// Operations per CPU when `ops=` is not given, up to 16 CPUs.
const DEFAULT_OPS_PER_CPU: u64 = 100_000;
/// Above 16 CPUs the default shrinks so that all CPUs together do this many
/// (12,500 each at 128): under TCG on 2 host cores `mixed` at 128 CPUs took
/// 390 s for 20,000 operations per CPU, so 100,000 would outlast the
/// runner's 600 s limit.
const DEFAULT_TOTAL_OPS: u64 = 16 * DEFAULT_OPS_PER_CPU;

/// The default operations per CPU on `cpus` CPUs.
fn default_ops_per_cpu(cpus: usize) -> u64 {
    DEFAULT_OPS_PER_CPU.min(DEFAULT_TOTAL_OPS / cpus.max(1) as u64)
}
/// Warm-up operations per CPU, as a fraction of the timed ones.
const WARMUP_DIVISOR: u64 = 10;

/// The workloads `workload=` accepts.
pub const WORKLOADS: &[&str] = &[
    "local",
    "xfer",
    "seed",
    "mixed",
    "null",
    "larson",
    "xmalloc-test",
    "cache-scratch",
    "cache-thrash",
    "threadtest",
    "mstress",
];

/// `job=bench`.
pub fn run_job(boot: &'static BootInfo) -> ExitCode {
    let workload = boot.cmdline.get("workload").unwrap_or("local");
    let Some(body) = workload_body(workload) else {
        println!("bench: unknown workload '{workload}' (known: {})", WORKLOADS.join(", "));
        return ExitCode::Failure;
    };
    let ops_per_cpu = match boot.cmdline.get("ops").map(str::parse::<u64>) {
        None => default_ops_per_cpu(smp::online_cpus()),
        Some(Ok(ops)) if ops > 0 => ops,
        Some(_) => {
            println!("bench: ops= must be a positive number of operations per CPU");
            return ExitCode::Failure;
        }
    };
    let trace = match boot.cmdline.get("trace") {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => {
            println!("bench: trace={other}: expected on or off");
            return ExitCode::Failure;
        }
    };
    if boot.allocator.is_plain()
        && let Some(why) = needs_heap_counters(workload, trace)
    {
        println!(
            "bench: {why}, which alloc={} (a plain allocator) does not keep: use a slab-core allocator (alloc=slab, locked, locked-talc, ...) or another workload",
            boot.allocator.name
        );
        return ExitCode::Failure;
    }
    let leak_check = mimalloc_bench::PORTS.contains(&workload);
    let free_bytes_before = leak_check.then(stress::drained_free_bytes);
    // The workload's own cost, without the allocator, on this CPU alone.
    let harness = (workload == "local").then(|| {
        let run = local_harness(ops_per_cpu);
        let mut batches = run.batch_cycles_per_op;
        batches.sort_unstable_by(f64::total_cmp);
        percentile(&batches, 50)
    });
    smp::run_on_all_cpus(|cpu| body(cpu, (ops_per_cpu / WARMUP_DIVISOR).max(1)));
    let before = heap::stats();
    if trace {
        lock_trace::start();
    }
    let runs = smp::run_on_all_cpus(|cpu| body(cpu, ops_per_cpu));
    lock_trace::stop();
    let after = heap::stats();
    let mut report = Report::new(workload, boot.allocator.name, &runs, &before, &after);
    report.harness_cycles_per_op = harness;
    report.ticks_per_instruction = time::ticks_per_instruction();
    // After the timed run (and its heap snapshot), so the heap is warm.
    report.exact = (workload == "local" && smp::online_cpus() == 1).then(|| {
        let counts = exact::count_local(ops_per_cpu);
        (counts, exact::check_hand_counted(counts.marker_ticks))
    });
    report.print_table();
    report.print_record();
    if trace {
        // The profile's full contention report: per CPU and per size class
        // (the heap's counters since boot, warm-up included), then the
        // timeline.
        heap::print_report();
        heap::print_heapstats_record(&after);
        let origin = runs.iter().map(|(_, run)| run.start).min().unwrap_or(0);
        lock_trace::print(runs.len(), origin);
    }
    drop(runs);
    if let Some(free_bytes_before) = free_bytes_before {
        let free_bytes_after = stress::drained_free_bytes();
        println!(
            "bench: heap free bytes with every cache drained: {free_bytes_before} before, {free_bytes_after} after"
        );
        assert_eq!(
            free_bytes_after, free_bytes_before,
            "bench {workload}: heap leak: {free_bytes_before} bytes free before the warm-up, {free_bytes_after} after the run"
        );
    }
    ExitCode::Success
}

/// Why a run needs the slab-core heap's counters, if it does: `seed` and
/// `mixed` count their operations with them, `trace=on` records its lock.
fn needs_heap_counters(workload: &str, trace: bool) -> Option<&'static str> {
    match workload {
        "seed" => Some("workload=seed counts its operations with the heap's counters"),
        "mixed" => Some("workload=mixed counts its operations with the heap's counters"),
        _ if trace => Some("trace=on records the slab-core heap's global lock"),
        _ => None,
    }
}

/// The kernel's own workloads, then the shared ones on the kernel's CPUs.
fn workload_body(name: &str) -> Option<Body> {
    match name {
        "seed" => Some(seed),
        "mixed" => Some(mixed),
        _ => bench_workloads::body::<KernelCpu>(name),
    }
}

/// `local`'s loop with the allocator calls replaced by nothing (no-op
/// "allocations" from a scratch buffer, the `null` workload): what the
/// workload itself costs. Run on one CPU before the timed run, for
/// `harness_cycles_per_op`.
fn local_harness(ops: u64) -> CpuRun {
    bench_workloads::local::null::<KernelCpu>(smp::current_cpu_index(), ops)
}

fn seed(cpu: usize, ops: u64) -> CpuRun {
    timed_batches::<KernelCpu>(ops, || {
        let before = own_ops();
        let value = Box::new(41 + cpu);
        assert_eq!(*value, 41 + cpu);
        let mut vec = Vec::new();
        for i in 1..=1000u64 {
            vec.push(i);
        }
        assert_eq!(vec.iter().sum::<u64>(), 500_500);
        drop(vec);
        for i in 0..100 {
            let page = Box::new([i as u64; 512]);
            assert_eq!(page[511], i as u64);
        }
        drop(value);
        own_ops() - before
    })
}

fn mixed(cpu: usize, ops: u64) -> CpuRun {
    let mut random = 0x2545_f491_4f6c_dd1d_u64 ^ (cpu as u64 + 1);
    let mut next = move |bound: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % bound
    };
    let mut live: Vec<Option<Vec<u8>>> = vec![None; 64];
    timed_batches::<KernelCpu>(ops, || {
        let before = own_ops();
        for _ in 0..16 {
            let slot = next(64) as usize;
            let size = match next(8) {
                0 => 4096 + next(60 * 1024) as usize,
                1 | 2 => 512 + next(3584) as usize,
                _ => 8 + next(504) as usize,
            };
            match &mut live[slot] {
                Some(buffer) if next(2) == 0 => buffer.resize(size, cpu as u8),
                entry => *entry = Some(vec![cpu as u8; size]),
            }
        }
        own_ops() - before
    })
}

/// Allocations plus frees this CPU has done, from the heap's counters.
fn own_ops() -> u64 {
    let cpu = smp::current_cpu_index();
    heap::heap().cpu_stats(cpu).map_or(0, |stats| {
        let summary = stats.summary();
        summary.small_ops + summary.large_ops
    })
}

/// The figures of one run.
struct Report<'a> {
    workload: &'a str,
    alloc: &'a str,
    cpus: usize,
    ops_per_cpu: [u64; MAX_CPUS],
    ops: u64,
    elapsed_cycles: u64,
    cycles_per_op_median: f64,
    cycles_per_op_p99: f64,
    /// `local` only: cycles per operation of the same loop without the
    /// allocator (`local_harness`).
    harness_cycles_per_op: Option<f64>,
    /// `time::ticks_per_instruction`: 1.0 when cycles are instructions.
    ticks_per_instruction: f64,
    /// `local` on one CPU: each operation counted between markers, and
    /// whether the hand-counted sequences counted right.
    exact: Option<(exact::ExactCounts, Result<(), exact::Miscount>)>,
    /// `None` for a plain allocator, which keeps no counters.
    delta: Option<Delta>,
}

/// Heap counters over the timed part.
struct Delta {
    lock_acquisitions: u64,
    lock_contended: u64,
    lock_wait_cycles: u64,
    lock_hold_cycles: u64,
    small_ops: u64,
    cache_hits: u64,
    cross_cpu_frees: u64,
}

impl Delta {
    /// The counters' change, if the heap keeps counters.
    fn between(before: &HeapStats, after: &HeapStats) -> Option<Self> {
        if !after.counted() {
            return None;
        }
        let (b, a) = (&before.total, &after.total);
        Some(Self {
            lock_acquisitions: a.lock.acquisitions - b.lock.acquisitions,
            lock_contended: a.lock.contended - b.lock.contended,
            lock_wait_cycles: a.lock.wait_cycles - b.lock.wait_cycles,
            lock_hold_cycles: a.lock.hold_cycles - b.lock.hold_cycles,
            small_ops: a.small_ops - b.small_ops,
            cache_hits: a.cache_hits - b.cache_hits,
            cross_cpu_frees: a.cross_cpu_frees - b.cross_cpu_frees,
        })
    }
}

impl<'a> Report<'a> {
    fn new(
        workload: &'a str,
        alloc: &'a str,
        runs: &smp::CpuResults<CpuRun>,
        before: &HeapStats,
        after: &HeapStats,
    ) -> Self {
        let cpus = runs.len();
        let mut ops_per_cpu = [0; MAX_CPUS];
        for (cpu, run) in runs.iter() {
            ops_per_cpu[cpu] = run.ops;
        }
        let start = runs.iter().map(|(_, r)| r.start).min().unwrap_or(0);
        let end = runs.iter().map(|(_, r)| r.end).max().unwrap_or(0);
        let mut batches: Vec<f64> =
            runs.iter().flat_map(|(_, r)| r.batch_cycles_per_op.iter().copied()).collect();
        batches.sort_unstable_by(f64::total_cmp);
        Self {
            workload,
            alloc,
            cpus,
            ops_per_cpu,
            ops: ops_per_cpu.iter().sum(),
            elapsed_cycles: end - start,
            cycles_per_op_median: percentile(&batches, 50),
            cycles_per_op_p99: percentile(&batches, 99),
            harness_cycles_per_op: None,
            ticks_per_instruction: 0.0,
            exact: None,
            delta: Delta::between(before, after),
        }
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 * time::timestamp_hz() as f64 / self.elapsed_cycles.max(1) as f64
    }

    /// The allocator's own cycles per alloc+free pair: twice the median
    /// cycles per operation minus the harness's.
    fn allocator_cycles_per_pair(&self) -> Option<f64> {
        self.harness_cycles_per_op.map(|harness| 2.0 * (self.cycles_per_op_median - harness))
    }

    /// The counts between markers when they are instructions: one tick per
    /// instruction over the long loop of `ticks_per_instruction` (its few
    /// set-up instructions leave it a hair above 1 under icount) and the
    /// hand-counted sequences counted exactly.
    fn exact_instructions(&self) -> Option<&exact::ExactCounts> {
        match &self.exact {
            Some((counts, Ok(()))) if (self.ticks_per_instruction - 1.0).abs() < 1e-3 => {
                Some(counts)
            }
            _ => None,
        }
    }

    fn lock_wait_share(&self) -> Option<f64> {
        let delta = self.delta.as_ref()?;
        Some(delta.lock_wait_cycles as f64 / (self.cpus as f64 * self.elapsed_cycles.max(1) as f64))
    }

    fn cache_hit_rate(&self) -> Option<f64> {
        let delta = self.delta.as_ref()?;
        Some(if delta.small_ops == 0 {
            0.0
        } else {
            delta.cache_hits as f64 / delta.small_ops as f64
        })
    }

    /// One counter's change, `None` without counters.
    fn counted(&self, pick: fn(&Delta) -> u64) -> Option<u64> {
        self.delta.as_ref().map(pick)
    }

    fn print_table(&self) {
        println!("bench: workload {} alloc {} on {} cpus", self.workload, self.alloc, self.cpus);
        println!(
            "bench: {} ops in {} cycles: {:.0} ops/s; cycles/op median {:.1}, p99 {:.1}",
            self.ops,
            self.elapsed_cycles,
            self.ops_per_sec(),
            self.cycles_per_op_median,
            self.cycles_per_op_p99
        );
        println!(
            "bench: timestamp ticks per instruction {:.4} (1 under --accel icount)",
            self.ticks_per_instruction
        );
        match (&self.delta, self.lock_wait_share(), self.cache_hit_rate()) {
            (Some(delta), Some(wait_share), Some(hit_rate)) => println!(
                "bench: global lock {} acquisitions ({} contended), wait share {:.2}%, hold {} cycles; cache hit rate {:.2}%; {} cross-CPU frees",
                delta.lock_acquisitions,
                delta.lock_contended,
                wait_share * 100.0,
                delta.lock_hold_cycles,
                hit_rate * 100.0,
                delta.cross_cpu_frees
            ),
            _ => println!(
                "bench: alloc {} is a plain allocator: no lock, cache or cross-CPU counters",
                self.alloc
            ),
        }
        if let (Some(harness), Some(pair)) =
            (self.harness_cycles_per_op, self.allocator_cycles_per_pair())
        {
            println!(
                "bench: per alloc+free pair: {:.1} cycles in all, {:.1} of them the workload's loop, {pair:.1} the allocator's",
                2.0 * self.cycles_per_op_median,
                2.0 * harness
            );
        }
        match (&self.exact, self.exact_instructions()) {
            (_, Some(c)) => println!(
                "bench: counted exactly (icount): {:.3} instructions per alloc, {:.3} per free, {:.3} per pair over {} allocs and {} frees; cheapest alloc {}, free {}",
                c.per_alloc(),
                c.per_free(),
                c.per_pair(),
                c.allocs,
                c.frees,
                c.alloc_ticks_min,
                c.free_ticks_min
            ),
            (Some((_, Err(miscount))), None) => {
                println!("bench: no exact instruction counts: {miscount}")
            }
            (Some(_), None) => println!(
                "bench: no exact instruction counts: timestamp ticks are not instructions here (use --accel icount)"
            ),
            (None, None) => {}
        }
        for cpu in 0..self.cpus {
            println!("bench: cpu {cpu}: {} ops", self.ops_per_cpu[cpu]);
        }
    }

    fn print_record(&self) {
        println!(
            "BENCH {{\"workload\":{},\"alloc\":{},\"cpus\":{},\"ops\":{},\"ops_per_cpu\":{},\"timestamp_hz\":{},\"ticks_per_instruction\":{:.4},\"elapsed_cycles\":{},\"ops_per_sec\":{:.1},\"cycles_per_op_median\":{:.2},\"cycles_per_op_p99\":{:.2},\"cycles_per_pair_median\":{:.2},\"harness_cycles_per_pair\":{:.2},\"allocator_cycles_per_pair\":{:.2},\"lock_acquisitions\":{},\"lock_contended\":{},\"lock_wait_cycles\":{},\"lock_hold_cycles\":{},\"lock_wait_share\":{:.6},\"small_ops\":{},\"cache_hits\":{},\"cache_hit_rate\":{:.6},\"cross_cpu_frees\":{},{}}}",
            JsonStr(self.workload),
            JsonStr(self.alloc),
            self.cpus,
            self.ops,
            JsonArray(&self.ops_per_cpu[..self.cpus]),
            time::timestamp_hz(),
            self.ticks_per_instruction,
            self.elapsed_cycles,
            self.ops_per_sec(),
            self.cycles_per_op_median,
            self.cycles_per_op_p99,
            2.0 * self.cycles_per_op_median,
            JsonOption(self.harness_cycles_per_op.map(|harness| 2.0 * harness)),
            JsonOption(self.allocator_cycles_per_pair()),
            JsonOption(self.counted(|d| d.lock_acquisitions)),
            JsonOption(self.counted(|d| d.lock_contended)),
            JsonOption(self.counted(|d| d.lock_wait_cycles)),
            JsonOption(self.counted(|d| d.lock_hold_cycles)),
            JsonOption(self.lock_wait_share()),
            JsonOption(self.counted(|d| d.small_ops)),
            JsonOption(self.counted(|d| d.cache_hits)),
            JsonOption(self.cache_hit_rate()),
            JsonOption(self.counted(|d| d.cross_cpu_frees)),
            ExactKeys(self),
        );
    }
}

/// The BENCH keys of the exact counts (`docs/interface.md`).
struct ExactKeys<'a>(&'a Report<'a>);

impl core::fmt::Display for ExactKeys<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let report = self.0;
        let counts = report.exact.as_ref().map(|(counts, _)| counts);
        let field = |pick: fn(&exact::ExactCounts) -> u64| JsonOption(counts.map(pick));
        let check = match &report.exact {
            None => "null",
            Some((_, Ok(()))) => "\"ok\"",
            Some((_, Err(_))) => "\"miscount\"",
        };
        let exact = report.exact_instructions();
        let per = |of: fn(&exact::ExactCounts) -> f64| JsonOption(exact.map(of));
        write!(
            f,
            "\"marker_ticks\":{},\"marked_allocs\":{},\"marked_alloc_ticks\":{},\"marked_frees\":{},\"marked_free_ticks\":{},\"hand_counted_check\":{check},\"instructions_per_alloc\":{:.3},\"instructions_per_free\":{:.3},\"instructions_per_pair\":{:.3},\"instructions_per_alloc_min\":{},\"instructions_per_free_min\":{}",
            field(|c| c.marker_ticks),
            field(|c| c.allocs),
            field(|c| c.alloc_ticks),
            field(|c| c.frees),
            field(|c| c.free_ticks),
            per(exact::ExactCounts::per_alloc),
            per(exact::ExactCounts::per_free),
            per(exact::ExactCounts::per_pair),
            JsonOption(exact.map(|c| c.alloc_ticks_min)),
            JsonOption(exact.map(|c| c.free_ticks_min)),
        )
    }
}
