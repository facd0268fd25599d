//! The host's core-to-core round trip: how long one cache line takes to go
//! from one host CPU to another and back, measured around every bench boot.
//!
//! Under multi-threaded TCG the guest's shared lines are host lines, so a
//! workload that hands objects between CPUs (`xfer`) runs at whatever speed
//! the host's CPUs pass lines to each other. On a cloud VM that speed is
//! not fixed: the hypervisor moves the VM's CPUs, and on the 2-core AMD
//! EPYC dev VM the round trip flips between about 60 ns (CPUs sharing a
//! cache) and about 340 ns for tens of seconds at a time. Recording it
//! beside each boot lets a comparison keep like with like
//! (docs/benchmarks-tool.md).
use std::{
    hint::spin_loop,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use nix::{
    sched::{CpuSet, sched_getaffinity, sched_setaffinity},
    unistd::Pid,
};

/// Round trips per measurement: about 1.2 ms between CPUs that share a
/// cache, 7 ms between CPUs that do not.
const ROUND_TRIPS: u64 = 20_000;
/// A measurement gives up (and reports nothing) after this long, e.g. when
/// another process keeps one of the two CPUs busy.
const DEADLINE: Duration = Duration::from_secs(1);
/// The value the responder stores once it runs on its CPU.
const READY: u64 = 1;
/// The value either side stores to end the measurement early.
const ABANDONED: u64 = u64::MAX;

/// The line the two threads pass back and forth, alone in its 128 bytes
/// (adjacent-line prefetchers pair 64-byte lines).
#[repr(align(128))]
struct Line(AtomicU64);

/// The mean round trip in nanoseconds between the first two host CPUs this
/// process may run on, or `None` with fewer than two CPUs, when a thread
/// cannot be pinned, or past [`DEADLINE`]. Pins only the two threads it
/// starts, never the caller (QEMU inherits the caller's affinity).
pub fn measure() -> Option<f64> {
    measure_with(ROUND_TRIPS, DEADLINE)
}

/// Runs `boot` between two measurements: the round trip just before and
/// just after it (a flip during the boot shows as two different values).
pub fn around<T>(boot: impl FnOnce() -> T) -> (T, [Option<f64>; 2]) {
    let before = measure();
    let result = boot();
    (result, [before, measure()])
}

/// [`measure`] with `round_trips` round trips, giving up after `limit`.
fn measure_with(round_trips: u64, limit: Duration) -> Option<f64> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let mut cpus = (0..CpuSet::count()).filter(|&cpu| allowed.is_set(cpu).unwrap_or(false));
    let (initiator_cpu, responder_cpu) = (cpus.next()?, cpus.next()?);
    let line = Line(AtomicU64::new(0));
    std::thread::scope(|scope| {
        let deadline = Instant::now() + limit;
        let line = &line.0;
        // Both sides on threads of their own: pinning the caller would pin
        // the QEMU it starts next.
        scope.spawn(move || respond(line, responder_cpu, round_trips, deadline));
        let initiator = scope.spawn(move || initiate(line, initiator_cpu, round_trips, deadline));
        initiator.join().ok().flatten()
    })
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// Waits until `line` holds at least `value`; false if it was abandoned or
/// the deadline passed (then abandons it, so the other side stops too).
fn wait_for(line: &AtomicU64, value: u64, deadline: Instant) -> bool {
    let mut spins = 0u32;
    loop {
        let seen = line.load(Ordering::Acquire);
        if seen == ABANDONED {
            return false;
        }
        if seen >= value {
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) && Instant::now() > deadline {
            line.store(ABANDONED, Ordering::Release);
            return false;
        }
        spin_loop();
    }
}

/// Round trip `i` (from 0): the initiator stores `2i + 2`, the responder
/// answers `2i + 3`.
fn initiate(line: &AtomicU64, cpu: usize, round_trips: u64, deadline: Instant) -> Option<f64> {
    if !pin(cpu) {
        line.store(ABANDONED, Ordering::Release);
        return None;
    }
    if !wait_for(line, READY, deadline) {
        return None;
    }
    let start = Instant::now();
    for round in 0..round_trips {
        line.store(2 * round + 2, Ordering::Release);
        if !wait_for(line, 2 * round + 3, deadline) {
            return None;
        }
    }
    Some(start.elapsed().as_nanos() as f64 / round_trips as f64)
}

fn respond(line: &AtomicU64, cpu: usize, round_trips: u64, deadline: Instant) {
    if !pin(cpu) {
        line.store(ABANDONED, Ordering::Release);
        return;
    }
    line.store(READY, Ordering::Release);
    for round in 0..round_trips {
        if !wait_for(line, 2 * round + 2, deadline) {
            return;
        }
        line.store(2 * round + 3, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_takes_some_nanoseconds_between_two_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Fewer round trips and a long deadline: other tests share the CPUs.
        match measure_with(1000, Duration::from_secs(30)) {
            Some(ns) => assert!(cpus >= 2 && ns > 0.0 && ns < 1e7, "{ns} ns on {cpus} CPUs"),
            None => assert!(cpus < 2, "no measurement on {cpus} CPUs"),
        }
    }

    #[test]
    fn measuring_leaves_the_callers_cpus_alone() {
        let before = sched_getaffinity(Pid::from_raw(0)).unwrap();
        measure_with(100, Duration::from_secs(30));
        assert!(sched_getaffinity(Pid::from_raw(0)).unwrap() == before);
    }

    #[test]
    fn a_waiter_stops_at_an_abandoned_line_and_at_its_deadline() {
        let line = AtomicU64::new(ABANDONED);
        assert!(!wait_for(&line, 5, Instant::now() + DEADLINE));
        let line = AtomicU64::new(0);
        assert!(!wait_for(&line, 5, Instant::now()));
        assert_eq!(line.load(Ordering::Relaxed), ABANDONED, "the late side tells the other");
        let line = AtomicU64::new(7);
        assert!(wait_for(&line, 5, Instant::now()));
    }
}
