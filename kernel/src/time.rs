//! Time from the CPU's timestamp counter, calibrated once at boot.
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch;

/// Used when calibration fails: a guess, said so in the boot log.
const FALLBACK_TIMESTAMP_HZ: u64 = 1_000_000_000;

static TIMESTAMP_HZ: AtomicU64 = AtomicU64::new(FALLBACK_TIMESTAMP_HZ);

/// Measures the timestamp frequency. Returns it, and whether it was measured
/// (rather than the fallback).
pub fn calibrate() -> (u64, bool) {
    match arch::tsc::calibrate_hz() {
        Some(hz) => {
            TIMESTAMP_HZ.store(hz, Ordering::Release);
            (hz, true)
        }
        None => (FALLBACK_TIMESTAMP_HZ, false),
    }
}

/// Timestamp ticks (cycles) per second.
pub fn timestamp_hz() -> u64 {
    TIMESTAMP_HZ.load(Ordering::Acquire)
}

/// Timestamp ticks per instruction, measured over a loop of known length:
/// 1.0 under QEMU's `-icount shift=0`, where ticks count instructions.
pub fn ticks_per_instruction() -> f64 {
    arch::tsc::ticks_per_instruction()
}

/// The timestamp counter now.
#[inline(always)]
pub fn now() -> u64 {
    arch::read_timestamp()
}

/// `ticks` timestamp ticks in nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(timestamp_hz())) as u64
}

/// `ms` milliseconds in timestamp ticks, exact (no rounding of the rate to
/// whole kHz first) and saturating instead of overflowing for huge `ms`.
pub fn ms_to_ticks(ms: u64) -> u64 {
    let ticks = u128::from(timestamp_hz()) * u128::from(ms) / 1000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The timestamp `ms` milliseconds from now.
pub fn deadline_after_ms(ms: u64) -> u64 {
    now().saturating_add(ms_to_ticks(ms))
}

/// Whether the timestamp `deadline` has passed.
pub fn passed(deadline: u64) -> bool {
    now() >= deadline
}

/// Measures elapsed time from its creation.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    start: u64,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self { start: now() }
    }

    /// Ticks since the start.
    pub fn elapsed_ticks(&self) -> u64 {
        now().wrapping_sub(self.start)
    }

    /// Nanoseconds since the start.
    pub fn elapsed_ns(&self) -> u64 {
        ticks_to_ns(self.elapsed_ticks())
    }
}
