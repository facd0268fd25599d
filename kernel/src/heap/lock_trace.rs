//! The global-lock timeline behind `trace=on`: for each CPU, a bounded
//! buffer of its first `EVENTS_PER_CPU` acquisitions of the heap's global
//! lock after the trace started, each as TSC stamps (started waiting, got
//! it, let go), recorded from
//! `Platform::lock_released` and printed as `LOCKTRACE {json}` lines
//! (`docs/interface.md`) for the runner's `profile` timeline.
//!
//! The buffers are an array indexed by CPU index, of atomics: each CPU writes
//! only its own buffer (with interrupts masked, inside the heap's lock path),
//! and the bootstrap CPU reads them all once the traced run has ended. Off
//! (the default), recording costs one load and branch per lock release.
use core::{
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use crate::smp::MAX_CPUS;

/// Acquisitions each CPU keeps: the first ones after the start barrier, so
/// that all CPUs' events come from the same stretch of time (every CPU
/// starts together; the newest ones would not overlap when CPUs finish at
/// different times, and a CPU starved by a convoy would drop out).
pub const EVENTS_PER_CPU: usize = 512;

static TRACING: AtomicBool = AtomicBool::new(false);

/// One acquisition: `[wait_start, acquired, released]`.
struct Event([AtomicU64; 3]);

/// One CPU's buffer.
#[repr(align(64))]
struct CpuTrace {
    /// Acquisitions since the trace started; the first `EVENTS_PER_CPU` of
    /// them are in `events`.
    recorded: AtomicU64,
    events: [Event; EVENTS_PER_CPU],
}

static TRACES: [CpuTrace; MAX_CPUS] = [const {
    CpuTrace {
        recorded: AtomicU64::new(0),
        events: [const { Event([const { AtomicU64::new(0) }; 3]) }; EVENTS_PER_CPU],
    }
}; MAX_CPUS];

/// Empties every buffer and starts recording. Call while no CPU uses the heap
/// (before a run's start barrier).
pub fn start() {
    for trace in &TRACES {
        trace.recorded.store(0, Ordering::Relaxed);
    }
    TRACING.store(true, Ordering::Release);
}

/// Stops recording.
pub fn stop() {
    TRACING.store(false, Ordering::Release);
}

/// Records one acquisition by `cpu` (the running CPU, interrupts masked).
#[inline(always)]
pub fn record(cpu: usize, wait_start: u64, acquired: u64, released: u64) {
    if !TRACING.load(Ordering::Relaxed) {
        return;
    }
    let Some(trace) = TRACES.get(cpu) else { return };
    let recorded = trace.recorded.load(Ordering::Relaxed);
    if let Some(event) = trace.events.get(recorded as usize) {
        for (slot, stamp) in event.0.iter().zip([wait_start, acquired, released]) {
            slot.store(stamp, Ordering::Relaxed);
        }
    }
    // Release: a reader that sees the count sees the stamps.
    trace.recorded.store(recorded + 1, Ordering::Release);
}

/// Prints one `LOCKTRACE` line per CPU in `0..cpus`, in order,
/// stamps relative to `origin` (the run's start barrier). Call after
/// `stop`, once the traced CPUs are idle.
pub fn print(cpus: usize, origin: u64) {
    for (cpu, trace) in TRACES.iter().enumerate().take(cpus) {
        crate::println!("LOCKTRACE {}", TraceJson { cpu, trace, origin });
    }
}

/// One trace as the `LOCKTRACE` JSON object.
struct TraceJson<'a> {
    cpu: usize,
    trace: &'a CpuTrace,
    origin: u64,
}

impl fmt::Display for TraceJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded = self.trace.recorded.load(Ordering::Acquire);
        let kept = recorded.min(EVENTS_PER_CPU as u64);
        write!(f, "{{\"cpu\":{},\"recorded\":{recorded},\"events\":[", self.cpu)?;
        for (n, event) in self.trace.events.iter().take(kept as usize).enumerate() {
            let [wait_start, acquired, released] = event
                .0
                .each_ref()
                .map(|stamp| stamp.load(Ordering::Relaxed).saturating_sub(self.origin));
            let comma = if n == 0 { "" } else { "," };
            write!(f, "{comma}[{wait_start},{acquired},{released}]")?;
        }
        f.write_str("]}")
    }
}
