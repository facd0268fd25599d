//! The allocation error handler: when the heap cannot serve a request even
//! after reclaiming every CPU's caches, `alloc::alloc::handle_alloc_error`
//! (called by `Box`, `Vec` and the other infallible collections) lands here.
//! It prints the failed layout, the heap's figures and the bytes cached per
//! CPU, stops the other CPUs and ends the run with
//! `ExitCode::HeapExhausted` (`docs/interface.md`). Fallible requests
//! (`try_reserve`, a raw `alloc` returning null) never get here.
use core::{alloc::Layout, fmt};

use super::{HeapStats, stats};
use crate::{
    ExitCode, arch, console,
    exit::exit,
    json::JsonOption,
    panic::{FatalReport, claim_fatal_report},
    smp, testing,
};

#[alloc_error_handler]
fn heap_exhausted(layout: Layout) -> ! {
    // A tick allocating in the handler's own interrupt would fail again.
    arch::interrupts::disable();
    let cpu = smp::current_cpu_index();
    match claim_fatal_report() {
        FatalReport::First => {}
        FatalReport::Nested => {
            console::write_fmt_for_panic(format_args!(
                "heap exhausted: cpu {cpu} could not allocate {layout:?} while reporting a failure\n"
            ));
            exit(ExitCode::HeapExhausted);
        }
        FatalReport::Another => arch::halt_forever(),
    }
    // The figures first, while the other CPUs still run: one of them may
    // hold the heap's lock, and only a running CPU lets it go.
    let stats = stats();
    smp::stop_other_cpus();
    console::write_fmt_for_panic(format_args!("{}", Report { cpu, layout, stats: &stats }));
    if !testing::heap_exhaustion_was_expected() {
        testing::report_running_test_failed();
    }
    exit(ExitCode::HeapExhausted)
}

/// The handler's lines: a readable one, then `HEAP-EXHAUSTED {json}` and
/// `HEAPSTATS {json}`.
struct Report<'a> {
    cpu: usize,
    layout: Layout,
    stats: &'a HeapStats,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { cpu, layout, stats } = self;
        let usage = &stats.heap;
        // A plain allocator keeps no peak and no caches: null.
        let kept = |value: u64| JsonOption(stats.counted().then_some(value));
        writeln!(
            f,
            "heap exhausted: cpu {cpu} could not allocate {} bytes aligned to {} (alloc={}, {} bytes used, {} free, {} cached by CPUs)",
            layout.size(),
            layout.align(),
            stats.alloc_name(),
            usage.used_bytes,
            usage.free_bytes,
            kept(stats.total.cached_bytes)
        )?;
        write!(
            f,
            "HEAP-EXHAUSTED {{\"cpu\":{cpu},\"size\":{},\"align\":{},\"alloc\":\"{}\",\"heap_used_bytes\":{},\"heap_free_bytes\":{},\"heap_peak_bytes\":{},\"cached_bytes\":{},\"cached_bytes_per_cpu\":",
            layout.size(),
            layout.align(),
            stats.alloc_name(),
            usage.used_bytes,
            usage.free_bytes,
            kept(usage.peak_bytes as u64),
            kept(stats.total.cached_bytes)
        )?;
        if stats.counted() {
            f.write_str("[")?;
            for (i, summary) in stats.per_cpu().iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                write!(f, "{comma}{}", summary.cached_bytes)?;
            }
            f.write_str("]")?;
        } else {
            f.write_str("null")?;
        }
        writeln!(f, "}}")?;
        writeln!(f, "HEAPSTATS {}", stats.json())
    }
}
