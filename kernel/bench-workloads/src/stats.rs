//! The percentile of the batch timings, the same for the kernel's BENCH
//! record and the host bench's.

/// The `percent` percentile of sorted values (0 when there are none): the
/// value at index `(len - 1) × percent / 100`, rounded down.
pub fn percentile(sorted: &[f64], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() - 1) * percent / 100]
}
