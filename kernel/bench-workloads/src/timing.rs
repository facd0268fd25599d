//! What one CPU measured ([`CpuRun`]) and the two timers that fill it:
//! [`timed_batches`] for the loops that run until `ops` operations are done,
//! [`run_phases`] for the ports' fixed number of phases.
use alloc::vec::Vec;

use crate::Machine;

/// What one CPU measured.
#[derive(Debug, Clone, Default)]
pub struct CpuRun {
    /// `Machine::now` at the start and the end of the timed part.
    pub start: u64,
    pub end: u64,
    /// Allocations plus frees done.
    pub ops: u64,
    /// Cycles per operation of each batch.
    pub batch_cycles_per_op: Vec<f64>,
}

/// A workload's body: this CPU's index and the operations to do.
pub type Body = fn(usize, u64) -> CpuRun;

/// Runs `batch` until `ops` operations are done; `batch` returns how many
/// it did.
pub fn timed_batches<M: Machine>(ops: u64, mut batch: impl FnMut() -> u64) -> CpuRun {
    let mut batch_cycles_per_op = Vec::with_capacity(ops as usize / 16 + 1);
    let mut done = 0;
    let start = M::now();
    while done < ops {
        let batch_start = M::now();
        let batch_ops = batch();
        let cycles = M::now() - batch_start;
        done += batch_ops;
        if batch_ops > 0 {
            batch_cycles_per_op.push(cycles as f64 / batch_ops as f64);
        }
    }
    CpuRun { start, end: M::now(), ops: done, batch_cycles_per_op }
}

/// Runs `phase(0..phases)`, timing each as one batch; `phase` returns the
/// operations it did, or `None` to end early (a consumer that found the
/// producers done). The clock starts after `prepare` (untimed set-up,
/// e.g. the original's main thread filling arrays before it starts the
/// workers) and stops before `finish` (untimed teardown, freeing what the
/// original left to process exit). Both run on every CPU.
pub fn run_phases<M: Machine>(
    phases: u64,
    prepare: impl FnOnce(),
    mut phase: impl FnMut(u64) -> Option<u64>,
    finish: impl FnOnce(),
) -> CpuRun {
    prepare();
    let mut batch_cycles_per_op = Vec::with_capacity(phases.min(1024) as usize);
    let mut done = 0;
    let start = M::now();
    for index in 0..phases {
        let phase_start = M::now();
        let Some(ops) = phase(index) else { break };
        let cycles = M::now() - phase_start;
        done += ops;
        if ops > 0 {
            batch_cycles_per_op.push(cycles as f64 / ops as f64);
        }
    }
    let end = M::now();
    finish();
    CpuRun { start, end, ops: done, batch_cycles_per_op }
}
