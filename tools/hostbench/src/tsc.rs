//! The timestamp counter: reads, and its frequency measured against the
//! monotonic clock (the "cycles" of every figure are TSC ticks).
use std::time::{Duration, Instant};

/// How long the frequency measurement runs.
const CALIBRATION: Duration = Duration::from_millis(100);

/// The TSC now.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: `rdtsc` has no preconditions on x86_64 (user mode may read
    // it unless the kernel set CR4.TSD, which Linux does not by default).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per second, over `CALIBRATION` of the monotonic clock.
pub fn measure_hz() -> u64 {
    let (start_clock, start_tsc) = (Instant::now(), now());
    while start_clock.elapsed() < CALIBRATION {
        std::hint::spin_loop();
    }
    let ticks = now() - start_tsc;
    (ticks as f64 / start_clock.elapsed().as_secs_f64()) as u64
}
