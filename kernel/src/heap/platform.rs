//! What the allocator core needs from this kernel: the CPU index and the
//! heap's slot word from GS, interrupt masking, the TSC, reclaim by IPI, and heap-fault reports.
use slab_core::{CpuWords, HeapFault, Platform, ReclaimBroadcast};

use crate::{
    arch::{apic, interrupts::IrqGuard},
    smp, time,
};

/// The kernel as the allocator core's platform.
pub struct KernelPlatform;

/// Reclaim rounds: each CPU drains its caches in the reclaim IPI's handler.
static RECLAIM: ReclaimBroadcast = ReclaimBroadcast::new();

// SAFETY:
// 1. The kernel never preempts or migrates code: it has no scheduler, so
//    code stays on its CPU, and an interrupt handler runs to its end before
//    the code it interrupted goes on (handlers run with interrupts masked,
//    so they do not nest; the NMI handler never allocates).
// 2. `current_cpu` reads the index from the running CPU's own per-CPU block
//    (GS), distinct per CPU and below `smp::MAX_CPUS` (which is `slab_core::MAX_CPUS`).
// 3. `IrqGuard` masks local interrupts until dropped.
// 4. No method allocates: they read GS, the TSC and atomics, write the
//    lock trace, send IPIs, and print (or record) heap faults.
// 5. The slot words are the `heap_word` fields of the per-CPU blocks, one
//    per CPU, starting as `slab_core::initial_cpu_word(cpu)` (the blocks'
//    const initialiser), for the one kernel heap; `take_this_cpu_word` is
//    a `mov` from and a `mov` to `gs:[16]`, `set_this_cpu_word` one `mov`, which no
//    interrupt splits, and a handler on the CPU reads the same memory.
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

    #[inline(always)]
    fn take_this_cpu_word(&self, _words: &CpuWords) -> usize {
        smp::take_this_cpu_heap_word()
    }

    #[inline(always)]
    fn set_this_cpu_word(&self, _words: &CpuWords, word: usize) {
        smp::set_this_cpu_heap_word(word);
    }

    fn set_cpu_word(&self, _words: &CpuWords, cpu: usize, word: usize) {
        smp::set_heap_word(cpu, word);
    }

    fn cpu_count(&self) -> usize {
        smp::online_cpus()
    }

    #[inline(always)]
    fn timestamp(&self) -> u64 {
        time::now()
    }

    fn reclaim_remote(&self, drain_this_cpu: &dyn Fn() -> bool) {
        let me = smp::current_cpu_index();
        let cpus = smp::online_cpus();
        // Again and again only to CPUs that have not drained yet (their IPI
        // landed inside a heap operation).
        let notify = |only_pending: bool| {
            smp::with_this_cpu(|this| {
                for cpu in (0..cpus).filter(|&cpu| cpu != me) {
                    if !only_pending || RECLAIM.is_pending(cpu) {
                        apic::send_ipi(this, apic::RECLAIM_VECTOR, smp::cpu(cpu).lapic_id());
                    }
                }
            })
        };
        RECLAIM.request_and_wait(me, cpus, || notify(false), &|| notify(true), drain_this_cpu);
    }

    #[inline(always)]
    fn lock_released(&self, cpu: usize, wait_start: u64, acquired: u64, released: u64) {
        super::lock_trace::record(cpu, wait_start, acquired, released);
    }

    fn heap_fault(&self, fault: &HeapFault) {
        super::check::on_fault(fault);
    }
}

/// The reclaim IPI's work on the CPU that receives it.
pub fn on_reclaim_ipi() {
    RECLAIM.serve(smp::current_cpu_index(), || super::heap().drain_local_cpu());
}
