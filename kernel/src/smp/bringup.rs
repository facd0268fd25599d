//! Bringing up the application processors the bootloader parked, through
//! the Limine MP response: each one is sent to [`application_processor_entry`]
//! with its CPU index as the extra argument.
use limine::mp::MpInfo;

use super::{
    MAX_CPUS, ThisCpu, online_cpus,
    percpu::{install, mark_online},
    run_on_all,
};
use crate::{
    arch::{apic, interrupts::IrqGuard},
    time,
};

/// How long the bootstrap CPU waits for the others to check in.
/// Nominal: the timestamp frequency is not calibrated yet at this point,
/// and with 64 emulated CPUs on 2 host cores bring-up takes seconds.
const CHECK_IN_TIMEOUT_MS: u64 = 60_000;

/// Why not every CPU came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BringupError {
    /// The bootloader reported more CPUs than the kernel supports.
    TooManyCpus { reported: usize },
    /// These many CPUs never reported online within the timeout.
    CpusMissing { online: usize, expected: usize, first_missing_lapic_id: u32 },
}

/// Starts every CPU in `cpus` but the bootstrap one (`bsp_lapic_id`) and
/// waits until all are online. Returns the number of CPUs online.
pub fn start_application_processors(
    cpus: &[&MpInfo],
    bsp_lapic_id: u32,
) -> Result<usize, BringupError> {
    if cpus.len() > MAX_CPUS {
        return Err(BringupError::TooManyCpus { reported: cpus.len() });
    }
    let application_processors = cpus.iter().filter(|info| info.lapic_id != bsp_lapic_id);
    for (index, info) in (1..).zip(application_processors) {
        info.bootstrap(application_processor_entry, index);
    }
    let expected = cpus.len();
    let deadline = time::deadline_after_ms(CHECK_IN_TIMEOUT_MS);
    while online_cpus() < expected {
        if time::passed(deadline) {
            let first_missing_lapic_id = cpus
                .iter()
                .map(|info| info.lapic_id)
                .find(|id| {
                    !(0..MAX_CPUS)
                        .any(|i| super::cpu(i).is_online() && super::cpu(i).lapic_id() == *id)
                })
                .unwrap_or(u32::MAX);
            return Err(BringupError::CpusMissing {
                online: online_cpus(),
                expected,
                first_missing_lapic_id,
            });
        }
        crate::arch::pause();
    }
    Ok(expected)
}

/// Where each application processor starts, on the stack the bootloader gave
/// it, interrupts masked.
unsafe extern "C" fn application_processor_entry(info: &MpInfo) -> ! {
    let index = info.extra_argument() as usize;
    // SAFETY: the bootstrap CPU gives each application processor a distinct
    // index (1, 2, ...) and index 0 is its own.
    unsafe { install(index) };
    let guard = IrqGuard::new();
    let this = ThisCpu::new(&guard);
    let (_, lapic_id) = apic::init_this_cpu(&this);
    mark_online(&this, lapic_id);
    drop(guard);
    run_on_all::serve_jobs()
}
