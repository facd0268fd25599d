//! Stopping the other CPUs when one panics, through an NMI that even a CPU
//! spinning with interrupts masked takes.
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{self, apic};

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Halts every other CPU for good (best effort: only once this CPU's local
/// APIC is up). Returns whether the NMIs were sent.
pub fn stop_other_cpus() -> bool {
    STOPPING.store(true, Ordering::SeqCst);
    super::with_this_cpu(apic::try_send_nmi_to_others)
}

/// Halts for good if the machine is being stopped (the NMI handler,
/// `crate::nmi`, asks this first).
pub fn on_nmi() {
    if STOPPING.load(Ordering::SeqCst) {
        arch::halt_forever();
    }
}
