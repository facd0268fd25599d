//! [`KernelCpu`]: the kernel's CPUs as the `bench_workloads::Machine` the
//! shared workloads run on.
use core::fmt;

use bench_workloads::Machine;

use crate::{smp, time};

// The workloads' per-CPU statics have room for every CPU the kernel brings up.
const _: () = assert!(smp::MAX_CPUS <= bench_workloads::MAX_CPUS);

/// The online CPUs, each running the workload.
pub struct KernelCpu;

impl Machine for KernelCpu {
    fn cpus() -> usize {
        smp::online_cpus()
    }

    #[inline(always)]
    fn now() -> u64 {
        time::now()
    }

    /// `pause`, which also lets QEMU's single-threaded (icount) TCG move on
    /// to the other vCPUs instead of running the waiting loop until its
    /// 100 ms kick. A CPU is never preempted here, so it only spins.
    #[inline(always)]
    fn wait_for_another(_spins: &mut u32) {
        core::hint::spin_loop();
    }

    fn current() -> impl fmt::Display {
        CpuName(smp::current_cpu_index())
    }
}

/// `cpu N` in failure messages.
struct CpuName(usize);

impl fmt::Display for CpuName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu {}", self.0)
    }
}
