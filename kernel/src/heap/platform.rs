//! What the allocator core needs from this kernel: the CPU index from GS,
//! interrupt masking, the TSC, and reclaim by IPI.
use slab_core::{Platform, ReclaimBroadcast};

use crate::{
    arch::{apic, interrupts::IrqGuard},
    smp, time,
};

/// The kernel as the allocator core's platform.
pub struct KernelPlatform;

/// Reclaim rounds: each CPU drains its caches in the reclaim IPI's handler.
static RECLAIM: ReclaimBroadcast = ReclaimBroadcast::new();

// SAFETY:
// 1. `IrqGuard` masks local interrupts until dropped and the kernel never
//    preempts or migrates code, so the holder stays on its CPU and no
//    allocating handler runs there meanwhile (the NMI handler never
//    allocates).
// 2. `current_cpu` reads the index from the running CPU's own per-CPU block
//    (GS), distinct per CPU and below `smp::MAX_CPUS` == `slab_core::MAX_CPUS`.
// 3. No method allocates: they read GS, the TSC and atomics, and send IPIs.
unsafe impl Platform for KernelPlatform {
    type IrqGuard = IrqGuard;

    #[inline(always)]
    fn mask_irqs(&self) -> IrqGuard {
        IrqGuard::new()
    }

    #[inline(always)]
    fn current_cpu(&self) -> usize {
        smp::current_cpu_index()
    }

    fn cpu_count(&self) -> usize {
        smp::online_cpus()
    }

    #[inline(always)]
    fn timestamp(&self) -> u64 {
        time::now()
    }

    fn reclaim_remote(&self, drain_this_cpu: &dyn Fn()) {
        let me = smp::current_cpu_index();
        let cpus = smp::online_cpus();
        let notify = || {
            smp::with_this_cpu(|this| {
                for cpu in (0..cpus).filter(|&cpu| cpu != me) {
                    apic::send_ipi(this, apic::RECLAIM_VECTOR, smp::cpu(cpu).lapic_id());
                }
            })
        };
        RECLAIM.request_and_wait(me, cpus, notify, drain_this_cpu);
    }
}

const _: () = assert!(smp::MAX_CPUS == slab_core::MAX_CPUS);

/// The reclaim IPI's work on the CPU that receives it.
pub fn on_reclaim_ipi() {
    RECLAIM.serve(smp::current_cpu_index(), || super::heap().drain_local_cpu());
}
