//! Every workload on host threads, with a counting global allocator: each
//! frees everything it allocates (no leak, every thread count), and the
//! operations `local` and `xfer` report are the ones they were asked for.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    fmt,
    sync::{
        Barrier,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use bench_workloads::{Machine, mimalloc_bench::PORTS};

/// The system allocator, counting the bytes live that the workloads'
/// threads allocated and freed while in a workload (not the test
/// harness's, nor thread start-up's).
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Whether this thread is running a workload.
    static IN_WORKLOAD: Cell<bool> = const { Cell::new(false) };
}

fn count(bytes: i64) {
    if IN_WORKLOAD.with(Cell::get) {
        LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; the counter only
// observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Plain host threads: spin then yield, time in nanoseconds.
struct TestThreads;

impl Machine for TestThreads {
    fn cpus() -> usize {
        THREADS.load(Ordering::Relaxed)
    }

    fn now() -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    fn wait_for_another(spins: &mut u32) {
        *spins += 1;
        if *spins < 64 { std::hint::spin_loop() } else { std::thread::yield_now() }
    }

    fn current() -> impl fmt::Display {
        std::thread::current().name().unwrap_or("unnamed").to_owned()
    }
}

/// What the test keeps of a thread's `CpuRun` (whose vector is freed on
/// the thread, while counted).
struct Done {
    ops: u64,
    start: u64,
    end: u64,
}

/// Runs workload `name` on `threads` threads, `ops` each.
fn run(name: &str, threads: usize, ops: u64) -> Vec<Done> {
    let body = bench_workloads::body::<TestThreads>(name)
        .unwrap_or_else(|| panic!("bench-workloads has no workload {name}"));
    THREADS.store(threads, Ordering::Relaxed);
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|cpu| {
                let start = &start;
                std::thread::Builder::new()
                    .name(format!("thread {cpu}"))
                    .spawn_scoped(scope, move || {
                        start.wait();
                        IN_WORKLOAD.with(|counting| counting.set(true));
                        let run = body(cpu, ops);
                        let done = Done { ops: run.ops, start: run.start, end: run.end };
                        drop(run);
                        IN_WORKLOAD.with(|counting| counting.set(false));
                        done
                    })
                    .expect("the OS starts a thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a workload thread panicked")).collect()
    })
}

const OPS: u64 = 5000;

#[test]
fn every_workload_frees_what_it_allocates_and_local_and_xfer_do_the_ops_asked() {
    let names = ["local", "null", "xfer"].iter().chain(PORTS);
    for threads in [1, 3] {
        for &name in names.clone() {
            let before = LIVE_BYTES.load(Ordering::Relaxed);
            let runs = run(name, threads, OPS);
            for (cpu, cpu_run) in runs.iter().enumerate() {
                assert!(
                    cpu_run.ops > 0,
                    "{name} on {threads} threads: thread {cpu} did no operation"
                );
                assert!(cpu_run.end >= cpu_run.start, "{name}: thread {cpu}: the clock ran back");
                let expected = match name {
                    // Whole batches of 32 allocations and 32 frees.
                    "local" | "null" => Some(OPS.div_ceil(64) * 64),
                    "xfer" => Some(OPS / 2 * 2),
                    _ => None,
                };
                if let Some(expected) = expected {
                    assert_eq!(cpu_run.ops, expected, "{name} on {threads} threads: thread {cpu}");
                }
            }
            let leaked = LIVE_BYTES.load(Ordering::Relaxed) - before;
            assert_eq!(
                leaked, 0,
                "{name} on {threads} threads: {leaked} bytes still live after the run"
            );
        }
    }
}

#[test]
fn an_unknown_name_has_no_body() {
    assert!(bench_workloads::body::<TestThreads>("seed").is_none());
    assert!(bench_workloads::body::<TestThreads>("").is_none());
}
