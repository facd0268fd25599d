//! [`Machine`]: what a workload needs from where it runs, a kernel CPU or a
//! host thread.
use core::fmt::Display;

/// The most CPUs (threads) a run may have: the workloads' per-CPU statics
/// (rings, mailboxes) have this many entries.
pub const MAX_CPUS: usize = 128;

/// The CPUs a workload runs on: the kernel's (`job=bench`) or the host
/// bench's threads, each of which stands for a CPU. The workloads call
/// these only as `M::cpus()`, ...; an implementation is a unit type.
pub trait Machine {
    /// The CPUs taking part in the run (at most [`MAX_CPUS`]), all running
    /// the same workload at once.
    fn cpus() -> usize;

    /// A timestamp for the batch timers: TSC ticks (instructions under
    /// QEMU's icount).
    fn now() -> u64;

    /// One round of waiting for another CPU (a barrier, a full or empty
    /// ring, mailbox or stack). `spins` counts this wait's rounds so far, 0
    /// at its start; the implementation may advance it.
    fn wait_for_another(spins: &mut u32);

    /// What a failure message calls the running CPU, e.g. `cpu 3`.
    fn current() -> impl Display;
}
